"""Fold definitions: :class:`FoldSpec`, the plain record it is stored and hashed as, and fold files.

A definition is data: what decides a fold's result (clauses, ``--init``,
``--by``, ``--where``, filters). It is stored in a log for projections and
hashed into snapshot keys, so reading one back (:meth:`FoldSpec.from_record`)
treats every field as untrusted input from whoever wrote the log: a field of
the wrong kind is a :class:`~evlog.errors.DamagedLogError`, and Python source
(which older evlog versions stored for ``--fold-file``) is refused, never run.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import DamagedLogError, UsageError

FOLD_ENGINE = 2
"""Bumped whenever the meaning of a fold could change: part of every snapshot key.

2: set operations on an object's keys and items give ordered lists, not sets."""


class PythonFoldFileError(UsageError):
    """A stored definition, or a command that stores one, holds a Python fold file."""



@dataclass(frozen=True)
class FoldSpec:
    """Everything that decides a fold's result; :meth:`digest` keys its snapshots.

    ``clauses`` are ``(type_pattern, code)`` pairs in order; the pattern is
    None for ``--fold`` (every event) and a glob for ``--on``. ``by`` is
    ``"stream"`` or an expression; ``where`` an expression. ``fold_file`` is
    the source text of a Python reducer file (see :func:`load_fold_file`):
    run by ``replay`` from the user's disk only, never stored in a log (a
    fold-language file is a clause like any ``--fold``).
    """

    init: Any = field(default_factory=dict)
    clauses: tuple[tuple[str | None, str], ...] = ()
    by: str | None = None
    where: str | None = None
    streams: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    fold_file: str | None = None

    def is_fold(self) -> bool:
        return bool(self.clauses) or self.fold_file is not None

    def to_record(self) -> dict[str, Any]:
        """A plain, stable form (stored for projections and hashed for snapshots)."""
        return {
            "engine": FOLD_ENGINE,
            "init": self.init,
            "clauses": [[pattern, code] for pattern, code in self.clauses],
            "by": self.by,
            "where": self.where,
            "streams": list(self.streams),
            "types": list(self.types),
            "fold_file": self.fold_file,
        }

    @classmethod
    def from_record(cls, record: Any) -> FoldSpec:
        """The definition a stored record holds; a malformed one is a :class:`DamagedLogError`.

        A record from an older evlog that carries a Python fold file is refused, never run.
        """
        if not isinstance(record, dict):
            raise DamagedLogError(f"the fold definition is a {type(record).__name__}, not an object")

        def text(name: str, value: Any, *, optional: bool = False) -> Any:
            if not (isinstance(value, str) or (optional and value is None)):
                kind = "a string or null" if optional else "a string"
                raise DamagedLogError(f"the fold definition's {name} is {_described(value)}, not {kind}")
            return value

        def listed(name: str) -> list[Any]:
            value = record.get(name, [])
            if not isinstance(value, list):
                raise DamagedLogError(f"the fold definition's {name} is {_described(value)}, not a list")
            return value

        for name in ("init", "clauses"):
            if name not in record:
                raise DamagedLogError(f"the fold definition has no {name}")
        if not _is_json(record["init"]):
            raise DamagedLogError("the fold definition's init is not a JSON value")
        if not isinstance(record.get("engine", FOLD_ENGINE), int):
            raise DamagedLogError(f"the fold definition's engine is {_described(record['engine'])}, not an integer")
        if record.get("fold_file") is not None:
            raise PythonFoldFileError(
                "this stored fold definition holds a Python fold file (written by an older evlog); evlog no "
                "longer runs Python stored in a log. Remove it (evlog projection rm NAME) and add it again "
                "with --fold, --on or a --fold-file of fold-language statements"
            )
        clauses: list[tuple[str | None, str]] = []
        for index, clause in enumerate(listed("clauses"), 1):
            if not (isinstance(clause, list) and len(clause) == 2):
                raise DamagedLogError(f"the fold definition's clause {index} is {_described(clause)}, "
                                      "not a pair of type pattern and code")
            clauses.append((text(f"clause {index}'s type", clause[0], optional=True),
                            text(f"clause {index}'s code", clause[1])))
        return cls(
            init=record["init"],
            clauses=tuple(clauses),
            by=text("by", record.get("by"), optional=True),
            where=text("where", record.get("where"), optional=True),
            streams=tuple(text("stream", value) for value in listed("streams")),
            types=tuple(text("type", value) for value in listed("types")),
        )

    def digest(self, first_seq: int = 1) -> bytes:
        """16 bytes naming this definition folded from ``first_seq``."""
        from .record import blake2b

        canonical = orjson.dumps([self.to_record(), first_seq], option=orjson.OPT_SORT_KEYS)
        return blake2b(canonical, digest_size=16).digest()


def parse_init(text: str | None) -> Any:
    """``--init JSON`` (default: an empty object)."""
    if text is None:
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"--init {text!r} is not valid JSON ({exc})") from None


def _is_json(value: Any, depth: int = 0) -> bool:
    """Whether a decoded value is one JSON can hold (objects with string keys, arrays, scalars)."""
    if value is None or type(value) in (str, int, float, bool):
        return True
    if depth > 500:
        return False
    if type(value) is list:
        return all(_is_json(item, depth + 1) for item in value)
    if type(value) is dict:
        return all(type(key) is str and _is_json(item, depth + 1) for key, item in value.items())
    return False


def _described(value: Any) -> str:
    """A stored value's kind, for a damage message (never the value itself: it came from the log)."""
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def load_fold_file(path: str) -> tuple[str, bool]:
    """The source of a ``--fold-file`` and whether it is a Python module (it defines functions).

    A file of fold-language statements is one clause; a file that defines
    ``init``/``apply``/``on_<type>`` functions is the user's own Python.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
    except OSError as exc:
        raise UsageError(f"--fold-file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--fold-file {path}: not UTF-8 text") from None
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source, False  # reported, with its line, when compiled as a clause
    return source, any(isinstance(node, ast.FunctionDef) for node in tree.body)
