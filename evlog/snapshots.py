"""Snapshots and projections: saved fold states and named fold definitions.

A snapshot is the state of a fold after the event at ``seq``, stored under
``digest + seq`` in the ``snapshots`` database, where ``digest`` hashes the
whole definition (:meth:`evlog.fold.FoldSpec.digest`: engine version, init,
every clause in order, ``--by``, every filter, the fold file's text and the
first seq). A changed definition has another digest, so its old snapshots
are simply never found. Keys sort by digest, then seq, so "the newest
snapshot at or before seq N" is one cursor step.

A projection is a named definition (a CQRS read model) in the
``projections`` database; its snapshots are ordinary snapshots of its
definition.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import BadInputError, UsageError
from .fold import FoldSpec
from .record import key_seq, seq_key
from .store import Store

_JSON_ONLY = "keep the state to objects, arrays (lists), text, numbers within 64 bits, booleans and null"


@dataclass(frozen=True)
class SnapshotInfo:
    """One stored snapshot, as ``evlog snapshot list`` shows it."""

    digest: str
    seq: int
    ts: int
    size: int
    keys: int


def save(store: Store, digest: bytes, seq: int, ts: int, states: dict[Any, Any]) -> int:
    """Store the states after ``seq``; returns the size in bytes.

    Only states that come back exactly as they were are stored: a tuple would
    come back a list, a set not at all; a fold resumed from such a snapshot
    could answer differently than one run from the start.
    """
    pairs = [[key, state] for key, state in states.items()]
    try:
        value = msgpack.packb({"ts": ts, "saved": time.time_ns(), "states": pairs}, use_bin_type=True)
        same = msgpack.unpackb(value, strict_map_key=False)["states"] == pairs
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadInputError(f"the fold's state cannot be saved in a snapshot ({exc}); {_JSON_ONLY}") from None
    if not same:
        raise BadInputError(f"the fold's state holds a tuple, which a snapshot cannot keep; {_JSON_ONLY}")
    store.write(lambda txn: txn.put(digest + seq_key(seq), value, db=store.dbs[b"snapshots"]))
    return len(value)


def latest(store: Store, digest: bytes, until: int) -> tuple[int, dict[Any, Any]] | None:
    """The newest snapshot of ``digest`` at or before seq ``until``: ``(seq, states)``."""
    with store.reading() as txn:
        cursor = txn.cursor(db=store.dbs[b"snapshots"])
        found = cursor.prev() if cursor.set_range(digest + seq_key(until + 1)) else cursor.last()
        if not found or bytes(cursor.key()[:16]) != digest:
            return None
        seq = key_seq(cursor.key()[16:])
        record = msgpack.unpackb(cursor.value(), strict_map_key=False)
    return seq, {_key(key): state for key, state in record["states"]}


def _key(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def listing(store: Store) -> Iterator[SnapshotInfo]:
    """Every snapshot, by definition and seq."""
    with store.reading(buffers=False) as txn:
        for key, value in txn.cursor(db=store.dbs[b"snapshots"]):
            record = msgpack.unpackb(value, strict_map_key=False)
            yield SnapshotInfo(key[:16].hex(), key_seq(key[16:]), record["ts"], len(value), len(record["states"]))


def drop(store: Store, *, digest: str | None = None, before: int | None = None, everything: bool = False) -> int:
    """Delete snapshots of one definition (hex digest prefix), before a seq, or all; returns how many."""
    if digest is None and before is None and not everything:
        raise UsageError("say which snapshots to drop: a definition hash, --before POS, or --all")
    prefix = digest.lower() if digest is not None else None
    if prefix is not None and (not prefix or any(char not in "0123456789abcdef" for char in prefix)):
        raise UsageError(f"{digest!r} is not a snapshot hash or a prefix of one (see evlog snapshot list)")

    def work(txn: Any) -> int:
        cursor = txn.cursor(db=store.dbs[b"snapshots"])
        doomed = [
            bytes(key)
            for key in cursor.iternext(values=False)
            if (prefix is None or bytes(key[:16]).hex().startswith(prefix))
            and (before is None or key_seq(key[16:]) < before)
        ]
        for key in doomed:
            txn.delete(key, db=store.dbs[b"snapshots"])
        return len(doomed)

    return store.write(work)


def drop_digest(store: Store, digest: bytes) -> int:
    return drop(store, digest=digest.hex())


# -- projections -------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """A named fold: its definition, where it starts, and its snapshot interval."""

    name: str
    spec: FoldSpec
    from_: str | None
    snapshot_every: int
    created: int


DEFAULT_SNAPSHOT_EVERY = 50_000


def add_projection(store: Store, projection: Projection, *, replace: bool) -> Projection | None:
    """Store a projection; returns the one it replaced (or raises if it exists and not ``replace``)."""
    name = projection.name.encode()
    value = msgpack.packb(
        {
            "spec": projection.spec.to_record(),
            "from": projection.from_,
            "snapshot_every": projection.snapshot_every,
            "created": projection.created,
        },
        use_bin_type=True,
    )

    def work(txn: Any) -> Projection | None:
        old = txn.get(name, db=store.dbs[b"projections"])
        if old is not None and not replace:
            raise UsageError(f"projection {projection.name!r} exists; use --replace to redefine it")
        txn.put(name, value, db=store.dbs[b"projections"])
        return None if old is None else _projection(projection.name, old)

    return store.write(work)


def get_projection(store: Store, name: str) -> Projection:
    with store.reading(buffers=False) as txn:
        value: bytes | None = txn.get(name.encode(), db=store.dbs[b"projections"])
    if value is None:
        raise UsageError(f"no projection named {name!r} (see evlog projection list)")
    return _projection(name, value)


def list_projections(store: Store) -> list[Projection]:
    with store.reading(buffers=False) as txn:
        cursor = txn.cursor(db=store.dbs[b"projections"])
        return [_projection(bytes(key).decode(), bytes(value)) for key, value in cursor]


def remove_projection(store: Store, name: str) -> Projection:
    def work(txn: Any) -> Projection:
        old = txn.get(name.encode(), db=store.dbs[b"projections"])
        if old is None:
            raise UsageError(f"no projection named {name!r} (see evlog projection list)")
        txn.delete(name.encode(), db=store.dbs[b"projections"])
        return _projection(name, old)

    return store.write(work)


def _projection(name: str, value: bytes) -> Projection:
    record = msgpack.unpackb(value)
    return Projection(
        name, FoldSpec.from_record(record["spec"]), record["from"], record["snapshot_every"], record["created"]
    )
