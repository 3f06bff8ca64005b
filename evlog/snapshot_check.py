"""Checking snapshots: each one recomputed from the definition it carries.

A snapshot's chain hash proves it was made for this definition on exactly
this log up to its seq; it cannot prove that its state is what the fold
gives there. Only folding again can, and the fold language is safe to run,
so :func:`check_snapshots` does, for every snapshot: the value decodes, the
definition it carries hashes to its key, the chain hash it carries is the
one of the record at its seq, and its state equals the definition folded
from its first seq to its seq without snapshots. States are compared as
their msgpack bytes, which is what a resumed fold would read back.

The snapshots of one definition are checked in seq order by one fold that
goes on from each seq to the next, so a definition costs one pass up to its
last snapshot, however many snapshots it has.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import msgpack

from .errors import DamagedLogError, EvlogError
from .foldspec import FoldSpec, PythonFoldFileError
from .record import HASH_SIZE, record_hash, seq_key
from .snapshots import StoredSnapshot, decode, key_parts

if TYPE_CHECKING:
    from .log import Log


@dataclass(frozen=True)
class SnapshotFinding:
    """One snapshot that is wrong or never used: its key's hex digest, its seq, and what is wrong."""

    digest: str
    seq: int | None
    problem: str

    def __str__(self) -> str:
        where = f"snapshot {self.digest[:12]}" + (f" at seq {self.seq}" if self.seq is not None else "")
        return f"{where}: {self.problem}; remove it with evlog snapshot drop {self.digest}"


class SnapshotCheck(Iterator[SnapshotFinding]):
    """The findings of one check, as an iterator; ``checked`` and ``problems`` count as it goes."""

    def __init__(self, log: Log, timeout: float | None = None) -> None:
        self.log = log
        self.timeout = timeout
        self.checked = 0
        self.problems = 0
        self._run = self._checks()

    def __next__(self) -> SnapshotFinding:
        finding = next(self._run)
        self.problems += 1
        return finding

    def _checks(self) -> Iterator[SnapshotFinding]:
        tables = self.log.backend()
        table = tables.table("snapshots")
        # Keys first, then each value on its own: snapshots can be large and many, and neither
        # they nor a long read transaction should be held for the whole check.
        keys = table.list_keys()
        # Keys sort by digest, then seq: each definition's entries come together, and its
        # findings are given in seq order once its sound snapshots have been recomputed.
        for _digest, group in itertools.groupby(keys, key=lambda key: key[:16]):
            findings: list[SnapshotFinding] = []
            sound: list[StoredSnapshot] = []
            for key in group:
                value = table.get(key)
                record = tables.record(int.from_bytes(key[16:], "big")) if len(key) == 24 else None
                if value is None:
                    continue  # dropped meanwhile
                self.checked += 1
                stored = decode(key, value)
                if isinstance(stored, str):
                    findings.append(SnapshotFinding(*key_parts(key), stored))
                    continue
                problem = _claims(stored, record)
                if problem is not None:
                    findings.append(SnapshotFinding(stored.digest.hex(), stored.seq, problem))
                else:
                    sound.append(replace(stored, pairs=[], keyed={}))  # the states are read again when compared
            if sound:
                findings.extend(self._recompute(sound))
            yield from sorted(findings, key=lambda finding: -1 if finding.seq is None else finding.seq)

    def _recompute(self, group: list[StoredSnapshot]) -> Iterator[SnapshotFinding]:
        from .runner import run_fold

        spec = FoldSpec.from_record(group[0].definition)  # decodable: _claims checked it
        if spec.fold_file is not None:
            for stored in group:
                yield SnapshotFinding(stored.digest.hex(), stored.seq, "its definition names a fold file, whose "
                                      "code verify does not run, so its state cannot be checked")
            return
        table = self.log.backend().table("snapshots")
        done: tuple[int, dict[Any, Any]] | None = None
        for index, stored in enumerate(group):
            try:
                result, _ = run_fold(self.log, spec, from_=stored.first, until=stored.seq, use_snapshots=False,
                                     start_state=done, timeout=self.timeout)
            except EvlogError as exc:
                # The fold fails (or the log is damaged) before this seq: no state there is the fold's.
                for rest in group[index:]:
                    yield SnapshotFinding(rest.digest.hex(), rest.seq,
                                          f"its state cannot be recomputed: folding its definition fails ({exc})")
                return
            value = table.get(stored.digest + seq_key(stored.seq))
            now = decode(stored.digest + seq_key(stored.seq), value) if value is not None else None
            if isinstance(now, StoredSnapshot) and _packed(list(result.states.items())) != _packed(now.pairs):
                yield SnapshotFinding(stored.digest.hex(), stored.seq,
                                      "its state differs from its definition folded from its first seq to its seq")
            done = (stored.seq, result.states)


def check_snapshots(log: Log, *, timeout: float | None = None) -> SnapshotCheck:
    """Check every snapshot of ``log``: iterate for the findings, then read ``checked`` and ``problems``.

    ``timeout`` bounds each recomputing fold in seconds: a definition from someone else's log may
    never end, and one that runs out of time is a finding, not a hang.
    """
    return SnapshotCheck(log, timeout)


def _claims(stored: StoredSnapshot, record: bytes | None) -> str | None:
    """What is wrong with what a decoded snapshot claims (its definition, its seq's chain hash), if anything."""
    try:
        spec = FoldSpec.from_record(stored.definition)
    except DamagedLogError as exc:
        return f"its definition does not decode ({exc.what})"
    except PythonFoldFileError:
        return "its definition holds Python code, which evlog never runs from a log"
    except (KeyError, TypeError, ValueError) as exc:
        return f"its definition does not decode ({type(exc).__name__}: {exc})"
    try:
        digest = spec.digest(stored.first)
    except (TypeError, ValueError) as exc:  # a value JSON cannot hold (orjson's errors are TypeErrors)
        return f"its definition cannot be hashed ({exc})"
    if digest != stored.digest:
        return "the definition it carries is not the one its hash names"
    if record is None or len(record) <= HASH_SIZE:
        return f"the log has no event at seq {stored.seq}, where it was taken"
    if record_hash(record) != stored.chain_hash:
        return (f"it was made for another history: the chain hash of seq {stored.seq} is not the log's "
                "(it is never used)")
    return None


def _packed(pairs: list[Any]) -> bytes | None:
    try:
        packed: bytes = msgpack.packb([list(pair) for pair in pairs], use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return None
    return packed
