"""Folds: the reducer language of ``--fold``/``--on``/``--where``/``--by``, compiled once.

A fold definition (:class:`FoldSpec`) is compiled into one Python function
that runs the whole loop over the log: decode the envelope, filter, pick the
state for the event's key, apply every clause in order, and move on. Clauses
are never ``eval``'d per event. Compilation rewrites the user's code:

* ``s``/``state``, ``e``/``event`` and ``d`` (the event's data) are the names;
* attribute access is key access (``d.amount`` is ``d["amount"]``,
  ``s.balance += 1`` updates ``s["balance"]``) unless the attribute is called
  (``s.get("n", 0)``, ``s.update(d)`` stay methods);
* ``e.type``, ``e.stream``... become local variables of the loop, so a fold
  that never reads ``d`` or ``e.data`` never decodes a payload;
* an expression statement's value becomes the new state unless it is None.

The compiler refuses imports, definitions, ``global``/``nonlocal``,
generators, ``await``, dunder names and attributes, and names beginning with
``_``; only pure builtins are offered. This keeps folds deterministic, which
is what makes snapshots valid. It is not a security boundary against a
hostile author: folds are the user's own code, run with the user's rights.
"""

from __future__ import annotations

import ast
import builtins
import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from .errors import BadInputError, EvlogError, UsageError

FOLD_ENGINE = 1
"""Bumped whenever the meaning of a fold could change: part of every snapshot key."""

EVENT_FIELDS = ("seq", "ts", "type", "stream", "version", "id", "data", "meta")
_ALIASES = {"state": "s", "event": "e"}
_SAFE_BUILTINS = (
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float",
    "int", "isinstance", "len", "list", "map", "max", "min", "pow", "range", "reversed", "round",
    "sorted", "str", "sum", "tuple", "zip", "ArithmeticError", "Exception", "KeyError",
    "IndexError", "LookupError", "TypeError", "ValueError", "ZeroDivisionError",
)
_REFUSED = {
    ast.Import: "import", ast.ImportFrom: "import", ast.FunctionDef: "def", ast.AsyncFunctionDef: "def",
    ast.ClassDef: "class", ast.Global: "global", ast.Nonlocal: "nonlocal", ast.Yield: "yield",
    ast.YieldFrom: "yield", ast.Await: "await", ast.AsyncFor: "async for", ast.AsyncWith: "async with",
    ast.With: "with",
    # A set's order of iteration depends on the process's string hashing, so a
    # fold using one could answer differently in two runs: no sets.
    ast.Set: "a set (use a list, a tuple or the keys of an object)",
    ast.SetComp: "a set (use a list, a tuple or the keys of an object)",
}


class FoldSyntaxError(UsageError):
    """A fold clause is not valid or uses something folds do not offer."""


class FoldError(EvlogError):
    """A fold failed on an event (its seq, type and stream are named)."""

    exit_code = 65


@dataclass(frozen=True)
class FoldSpec:
    """Everything that decides a fold's result; :meth:`digest` keys its snapshots.

    ``clauses`` are ``(type_pattern, code)`` pairs in order; the pattern is
    None for ``--fold`` (every event) and a glob for ``--on``. ``by`` is
    ``"stream"`` or an expression; ``where`` an expression. ``fold_file`` is
    the source text of a reducer file (see :func:`load_fold_file`).
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
    def from_record(cls, record: dict[str, Any]) -> FoldSpec:
        return cls(
            init=record["init"],
            clauses=tuple((pattern, code) for pattern, code in record["clauses"]),
            by=record["by"],
            where=record["where"],
            streams=tuple(record["streams"]),
            types=tuple(record["types"]),
            fold_file=record["fold_file"],
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


def load_fold_file(path: str) -> str:
    """The source of a ``--fold-file`` (its content is part of the definition)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise UsageError(f"--fold-file {path}: {exc.strerror}") from None


# -- compiling clauses ---------------------------------------------------------


class _Rewriter(ast.NodeTransformer):
    """Checks one clause and rewrites it to the loop's local names."""

    def __init__(self, option: str, code: str) -> None:
        self.option = option
        self.code = code
        self.event_fields: set[str] = set()
        self.whole_event = False
        self.uses_data = False
        self.uses_state = False

    def refuse(self, node: ast.AST, what: str) -> FoldSyntaxError:
        column = getattr(node, "col_offset", None)
        pointer = ""
        if column is not None and "\n" not in self.code:
            pointer = f"\n  {self.code}\n  {' ' * column}^"
        return FoldSyntaxError(f"{self.option} {self.code!r}: {what} is not allowed in a fold{pointer}")

    def generic_visit(self, node: ast.AST) -> ast.AST:
        refused = _REFUSED.get(type(node))
        if refused is not None:
            raise self.refuse(node, refused if " " in refused else f"'{refused}'")
        return super().generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        name = _ALIASES.get(node.id, node.id)
        if name.startswith("_"):
            raise self.refuse(node, f"the name {node.id!r} (names starting with '_')")
        if name == "e":
            self.whole_event = True
        elif name == "d":
            self.uses_data = True
        elif name == "s":
            self.uses_state = True
        return ast.copy_location(ast.Name(id=name, ctx=node.ctx), node)

    def _event_field(self, node: ast.AST, key: object) -> ast.AST | None:
        """``e.type`` / ``e["type"]`` -> the loop's local for that field."""
        if isinstance(node, ast.Name) and _ALIASES.get(node.id, node.id) == "e" and key in EVENT_FIELDS:
            if key == "data":
                self.uses_data = True
                return ast.Name(id="d", ctx=ast.Load())
            self.event_fields.add(str(key))
            return ast.Name(id=f"_e_{key}", ctx=ast.Load())
        return None

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if node.attr.startswith("__"):
            raise self.refuse(node, f"the attribute {node.attr!r}")
        if isinstance(node.ctx, ast.Load):
            local = self._event_field(node.value, node.attr)
            if local is not None:
                return ast.copy_location(local, node)
        value = self.visit(node.value)
        key = ast.Subscript(value=value, slice=ast.Constant(node.attr), ctx=node.ctx)
        return ast.copy_location(key, node)

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if isinstance(node.ctx, ast.Load) and isinstance(node.slice, ast.Constant):
            local = self._event_field(node.value, node.slice.value)
            if local is not None:
                return ast.copy_location(local, node)
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr.startswith("_"):
                raise self.refuse(func, f"the method {func.attr!r}")
            method = ast.Attribute(value=self.visit(func.value), attr=func.attr, ctx=ast.Load())
            node.func = ast.copy_location(method, func)
        else:
            node.func = self.visit(func)
        node.args = [self.visit(arg) for arg in node.args]
        node.keywords = [self.visit(keyword) for keyword in node.keywords]
        return node


@dataclass
class _Clause:
    pattern: str | None
    body: list[ast.stmt]


@dataclass
class _Analysis:
    own_names: set[str] = field(default_factory=set)
    event_fields: set[str] = field(default_factory=set)
    whole_event: bool = False
    uses_data: bool = False


def _parse(option: str, code: str, analysis: _Analysis, *, expression: bool) -> Any:
    """The rewritten clause: a list of statements, or with ``expression`` one expression."""
    code = code.strip()  # so that error columns point into the text that is shown
    try:
        tree = ast.parse(code.strip(), mode="eval" if expression else "exec")
    except SyntaxError as exc:
        raise FoldSyntaxError(f"{option} {code!r}: {exc.msg} (column {exc.offset})") from None
    rewriter = _Rewriter(option, code)
    tree = rewriter.visit(tree)
    analysis.own_names |= _check_names(tree, rewriter) - _LOOP_NAMES
    analysis.event_fields |= rewriter.event_fields
    analysis.whole_event |= rewriter.whole_event
    analysis.uses_data |= rewriter.uses_data or rewriter.whole_event
    if expression:
        assert isinstance(tree, ast.Expression)
        return tree.body
    assert isinstance(tree, ast.Module)
    if not tree.body:
        raise FoldSyntaxError(f"{option} is empty")
    return tree.body


_LOOP_NAMES = {"s", "e", "d", "_e_seq", "_e_ts", "_e_type", "_e_stream", "_e_version", "_e_id", "_e_meta"}


def _check_names(tree: ast.AST, rewriter: _Rewriter) -> set[str]:
    """Every name a clause reads must be one of the fold's, a pure builtin, or its own; returns its own."""
    own = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load)}
    own |= {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)}
    offered = own | _LOOP_NAMES | set(_SAFE_BUILTINS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in offered:
            raise rewriter.refuse(
                node, f"the name {node.id!r} (folds have s, e, d and pure builtins such as len, sum, max)"
            )
    return own


def _new_state_rule(statements: list[ast.stmt]) -> list[ast.stmt]:
    """An expression statement's value becomes the state unless it is None."""
    result: list[ast.stmt] = []
    for statement in statements:
        if isinstance(statement, ast.Expr):
            assign = ast.parse("_v = None\nif _v is not None: s = _v").body
            assign[0].value = statement.value  # type: ignore[attr-defined]
            for node in assign:
                ast.copy_location(node, statement)
                ast.fix_missing_locations(node)
            result.extend(assign)
        else:
            result.append(statement)
    return result


class _AnyGlobCache(dict[str, bool]):
    """type -> whether any of several globs matches it, computed once per type."""

    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.regex = re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns))

    def __missing__(self, key: str) -> bool:
        matched = self[key] = self.regex.match(key) is not None
        return matched


class _GlobCache(dict[str, bool]):
    """type -> whether it matches a glob, computed once per type."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.regex = re.compile(fnmatch.translate(pattern))

    def __missing__(self, key: str) -> bool:
        matched = self[key] = self.regex.match(key) is not None
        return matched


# -- generating the loop ------------------------------------------------------

_LOOP = '''
def _fold(_chunks, _states, _init, _unpack, _format_ts, _on, _types, _streams, _fail, _bad_format,
          _snapshot, _snapshot_every, _last_snapshot, _relevant):
    {single_state}
    _prev_ts = 0
    for _seqs, _values in _chunks:
        for _e_seq, _v in zip(_seqs, _values):
            # Snapshots are taken here, before the event, of the state after the one
            # before: every event passes this point, also those a filter skips below.
            if _snapshot_every and _prev_ts and _e_seq - 1 - _last_snapshot >= _snapshot_every:
                {save_single}_snapshot(_e_seq - 1, _prev_ts, _states)
                _last_snapshot = _e_seq - 1
            _f, _ts, _e_version, _e_type, _e_stream, _e_id, _e_meta, _e_data = _unpack(_v[:-16], use_list=False)
            if _f != 1:
                _bad_format(_e_seq, _f)
            _prev_ts = _ts
    if _snapshot_every and _prev_ts and _e_seq - _last_snapshot >= _snapshot_every:
        {save_single}_snapshot(_e_seq, _prev_ts, _states)
    return _states
'''


class CompiledFold:
    """A fold definition compiled into one loop function."""

    def __init__(self, spec: FoldSpec, *, scan: bool = False) -> None:
        self.spec = spec
        self.scan = scan
        analysis = _Analysis()
        clauses = [
            _Clause(pattern, _parse("--fold" if pattern is None else f"--on {pattern}", code, analysis,
                                    expression=False))
            for pattern, code in spec.clauses
        ]
        where = _parse("--where", spec.where, analysis, expression=True) if spec.where else None
        by = None
        if spec.by is not None:
            by_code = "e.stream" if spec.by == "stream" else spec.by
            by = _parse("--by", by_code, analysis, expression=True)
        self.file_handlers = _FileHandlers(spec.fold_file) if spec.fold_file is not None else None
        if self.file_handlers is not None:
            analysis.whole_event = analysis.uses_data = True
        self.analysis = analysis
        self.patterns = [_GlobCache(c.pattern) if c.pattern is not None else None for c in clauses]
        # With only --on clauses, an event of a type none of them names changes
        # no state: it is skipped before its payload is decoded. (A --by stream
        # key still gets its initial state, as it would from a full run.)
        self.relevant = (
            _AnyGlobCache([c.pattern for c in clauses if c.pattern is not None])
            if clauses and all(c.pattern is not None for c in clauses) and where is None and not scan
            and self.file_handlers is None and spec.by in (None, "stream")
            else None
        )
        self.function = self._generate(clauses, where, by)

    def _generate(self, clauses: list[_Clause], where: ast.expr | None, by: ast.expr | None) -> Callable[..., Any]:
        analysis = self.analysis
        module = ast.parse(_LOOP.format(
            single_state="s = _states.get(None, _init())" if by is None else "pass",
            save_single="_states[None] = s; " if by is None else "",
        ))
        function = module.body[0]
        assert isinstance(function, ast.FunctionDef)
        outer = function.body[2]
        assert isinstance(outer, ast.For)
        inner = outer.body[0]
        assert isinstance(inner, ast.For)
        prelude: list[ast.stmt] = []
        code: list[str] = []
        # Filters first: cheapest, and skipping an event skips its decoding.
        code.append("if _types is not None and not _types[_e_type]: continue")
        code.append("if _streams is not None and not _streams[_e_stream]: continue")
        if self.relevant is not None:
            code.append(
                "if not _relevant[_e_type]:\n"
                + (" if _e_stream is not None and _e_stream not in _states: _states[_e_stream] = _init()\n"
                   if self.spec.by == "stream" else "")
                + " continue"
            )
        code.extend(_event_prelude(analysis))
        for line in code:
            prelude.extend(ast.parse(line).body)
        # --where, --by and the clauses run inside one try: any failure of the
        # user's code is reported with the event it failed on.
        body: list[ast.stmt] = []
        # A clause's own variables start every event unset (None): values kept
        # from the previous event would be state that snapshots do not hold.
        for name in sorted(analysis.own_names):
            body.extend(ast.parse(f"{name} = None").body)
        if where is not None:
            test = ast.parse("if not _w: continue").body[0]
            assert isinstance(test, ast.If)
            test.test = ast.UnaryOp(op=ast.Not(), operand=where)
            body.append(test)
        if by is not None:
            pick = ast.parse("_k = None\nif _k is None: continue\ns = _states.get(_k)\nif s is None: s = _init()").body
            pick[0].value = by  # type: ignore[attr-defined]
            body.extend(pick)
        for index, clause in enumerate(clauses):
            statements = _new_state_rule(clause.body)
            if clause.pattern is not None:
                guard = ast.parse(f"if _on[{index}][_e_type]: pass").body[0]
                assert isinstance(guard, ast.If)
                guard.body = statements
                body.append(guard)
            else:
                body.extend(statements)
        if self.file_handlers is not None:
            body.extend(ast.parse("_v = _file(_e_type, s, e)\nif _v is not None: s = _v").body)
        guarded = ast.parse("try:\n pass\nexcept Exception as _x:\n _fail(_x, _e_seq, _e_type, _e_stream)").body[0]
        assert isinstance(guarded, ast.Try)
        guarded.body = body or [ast.Pass()]
        after: list[ast.stmt] = []
        if by is not None:
            after.extend(ast.parse("_states[_k] = s").body)
        if self.scan:
            after.extend(ast.parse(
                "yield (_e_seq, _ts, _k, s)" if by is not None else "yield (_e_seq, _ts, None, s)"
            ).body)
        inner.body = [*inner.body, *prelude, guarded, *after]
        end = ast.parse("_states[None] = s").body if by is None else []
        function.body = [*function.body[:2], outer, *end, *function.body[3:]]
        if self.scan:
            function.body[-1] = ast.Return(value=None)
        ast.fix_missing_locations(module)
        namespace: dict[str, Any] = {"__builtins__": {name: getattr(builtins, name) for name in _SAFE_BUILTINS}}
        if self.file_handlers is not None:
            namespace["_file"] = self.file_handlers
        exec(compile(module, "<fold>", "exec"), namespace)  # the generated loop, compiled once
        return namespace["_fold"]  # type: ignore[no-any-return]

    def run(
        self,
        chunks: Iterator[tuple[Iterable[int], list[bytes]]],
        states: dict[Any, Any],
        *,
        types: Callable[[str | None], bool] | None,
        streams: Callable[[str | None], bool] | None,
        snapshot: Callable[[int, int, dict[Any, Any]], None] | None = None,
        snapshot_every: int = 0,
        start_seq: int = 0,
    ) -> Any:
        """Fold the chunks into ``states`` (key -> state; key None without ``--by``)."""
        from .timefmt import format_ts

        init_bytes = orjson.dumps(self.spec.init)
        init = (lambda: orjson.loads(init_bytes)) if isinstance(self.spec.init, (dict, list)) else (
            lambda: self.spec.init
        )
        if self.file_handlers is not None and self.file_handlers.init is not None:
            init = _guarded_init(self.file_handlers.init)
        return self.function(
            chunks, states, init, msgpack.unpackb, format_ts, self.patterns,
            _PredicateCache(types) if types else None, _PredicateCache(streams) if streams else None,
            _fail, _bad_format, snapshot, snapshot_every, start_seq, self.relevant,
        )


def _event_prelude(analysis: _Analysis) -> list[str]:
    """Lines that give a clause the parts of the event it reads, and no more."""
    lines = []
    if analysis.uses_data:
        lines.append("d = _unpack(_e_data)")
    if "ts" in analysis.event_fields or analysis.whole_event:
        lines.append("_e_ts = _format_ts(_ts)")
    if "meta" in analysis.event_fields or analysis.whole_event:
        lines.append("_e_meta = _e_meta or {}")
    if analysis.whole_event:
        lines.append(
            "e = {'seq': _e_seq, 'ts': _e_ts, 'type': _e_type, 'stream': _e_stream, 'version': _e_version,"
            " 'id': _e_id, 'data': d, 'meta': _e_meta}"
        )
    return lines


def compile_where(code: str) -> Callable[[int, tuple[Any, ...]], bool]:
    """``--where EXPR`` alone (no fold): a predicate over ``(seq, envelope)``."""
    analysis = _Analysis()
    expression = _parse("--where", code, analysis, expression=True)
    assert isinstance(expression, ast.expr)
    lines = ["_f, _ts, _e_version, _e_type, _e_stream, _e_id, _e_meta, _e_data = _envelope"]
    lines.extend(_event_prelude(analysis))
    module = ast.parse("def _where(_e_seq, _envelope):\n" + "".join(f"    {line}\n" for line in lines)
                       + "    try:\n        return bool(_x)\n"
                       "    except Exception as _exc:\n        _fail(_exc, _e_seq, _e_type, _e_stream, 'the filter')\n")
    function = module.body[0]
    assert isinstance(function, ast.FunctionDef)
    guarded = function.body[-1]
    assert isinstance(guarded, ast.Try) and isinstance(guarded.body[0], ast.Return)
    call = guarded.body[0].value
    assert isinstance(call, ast.Call)
    call.args = [expression]
    ast.fix_missing_locations(module)
    from .timefmt import format_ts

    namespace: dict[str, Any] = {
        "__builtins__": {name: getattr(builtins, name) for name in _SAFE_BUILTINS},
        "_unpack": msgpack.unpackb, "_format_ts": format_ts, "_fail": _fail,
    }
    exec(compile(module, "<where>", "exec"), namespace)  # compiled once, called per event
    return namespace["_where"]  # type: ignore[no-any-return]


def _guarded_init(init: Callable[[], Any]) -> Callable[[], Any]:
    """A fold file's ``init()``, its failures reported like any fold failure."""

    def guarded() -> Any:
        try:
            return init()
        except Exception as exc:
            raise FoldError(f"--fold-file: init() failed: {type(exc).__name__}: {exc}") from exc

    return guarded


class _PredicateCache(dict[Any, bool]):
    def __init__(self, predicate: Callable[[Any], bool]) -> None:
        super().__init__()
        self.predicate = predicate

    def __missing__(self, key: Any) -> bool:
        result = self[key] = self.predicate(key)
        return result


class _FileHandlers:
    """The functions of a ``--fold-file``: ``init()``, ``apply(s, e)``, ``on_<type>(s, e)``."""

    def __init__(self, source: str) -> None:
        namespace: dict[str, Any] = {"__name__": "evlog_fold_file"}
        try:
            exec(compile(source, "<fold-file>", "exec"), namespace)  # the user's own reducer module
        except SyntaxError as exc:
            raise FoldSyntaxError(f"--fold-file: {exc.msg} at line {exc.lineno}") from None
        except Exception as exc:
            raise FoldError(f"--fold-file failed while loading: {type(exc).__name__}: {exc}") from exc
        self.namespace = namespace
        self.init: Callable[[], Any] | None = namespace.get("init")
        self.apply: Callable[[Any, Any], Any] | None = namespace.get("apply")
        self.by_type: dict[str, Callable[[Any, Any], Any] | None] = {}
        if self.apply is None and not any(name.startswith("on_") for name in namespace):
            raise FoldSyntaxError("--fold-file defines neither apply(state, event) nor on_<type>(state, event)")

    def __call__(self, etype: str, state: Any, event: Any) -> Any:
        handler = self.by_type.get(etype, _UNSET)
        if handler is _UNSET:
            handler = self.namespace.get("on_" + re.sub(r"\W", "_", etype)) or self.apply
            self.by_type[etype] = handler
        return None if handler is None else handler(state, event)


_UNSET: Any = object()


def _fail(exc: BaseException, seq: int, etype: str, stream: str | None, what: str = "the fold") -> None:
    if isinstance(exc, EvlogError):
        raise exc
    reason = f"{type(exc).__name__}: {exc}"
    hint = ""
    if isinstance(exc, KeyError) and exc.args:
        key = exc.args[0]
        hint = (
            f"; hint: if the state has no {key!r} yet, start it with --init, e.g. --init '{{\"{key}\": 0}}'; "
            f"for a key some events lack, use .get(), e.g. d.get({key!r}, 0)"
        )
        reason = f"KeyError {key!r} (no such key)"
    elif isinstance(exc, NameError):
        hint = "; hint: the names are s (state), e (event) and d (its data)"
    elif isinstance(exc, TypeError) and "NoneType" in str(exc):
        hint = "; hint: a value is missing (null); check --init or use .get()"
    where = f"seq {seq} (type {etype!r}" + (f", stream {stream!r})" if stream is not None else ")")
    raise FoldError(f"{what} failed at {where}: {reason}{hint}") from exc


def _bad_format(seq: int, found: object) -> None:
    from .errors import NotALogError

    raise NotALogError(f"record at seq {seq} has format {found!r}; upgrade evlog to read this log")


def check_serialisable(state: Any) -> bytes:
    """The state as JSON bytes, or a clear error for values JSON cannot hold."""
    try:
        return orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise BadInputError(
            f"the fold's state cannot be written as JSON ({exc}); keep it to objects, arrays, "
            "strings, numbers, booleans and null (a set: use a list or an object of keys)"
        ) from None
