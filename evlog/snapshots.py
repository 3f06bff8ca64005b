"""Snapshots and projections: saved fold states and named fold definitions.

A snapshot is the state of a fold after the event at ``seq``, stored under
``digest + seq`` in the ``snapshots`` database, where ``digest`` hashes the
whole definition (:meth:`evlog.fold.FoldSpec.digest`: engine version, init,
every clause in order, ``--by``, every filter and the first seq). A changed
definition has another digest, so its old snapshots are simply never found.
Keys sort by digest, then seq, so "the newest snapshot at or before seq N"
is one cursor step.

A log may come from someone else, and its snapshots with it, so a snapshot
is built to be checked rather than trusted:

* Its value carries the chain hash of the event record at its seq, and it is
  used only when that hash matches the record there, read in the same
  transaction. The chain hash pins every event up to the seq, so a snapshot
  taken on another log, or on this one before its history was rewritten, is
  never used. Snapshots of the first form, without that hash, are never used.
* It carries its definition (fold-language text only) and first seq, so its
  key can be recomputed from it and its state recomputed by folding, which is
  what ``evlog verify --snapshots`` does (:mod:`evlog.snapshot_check`). The
  hash cannot prove the state is the fold's result: only a recomputation can.
* A value that does not decode is skipped when looking for one to use, shown
  with its problem by :func:`listing`, and can be dropped like any other.

A projection is a named definition (a CQRS read model) in the
``projections`` database; its snapshots are ordinary snapshots of its
definition. Its stored snapshot interval is the author's wish; the reader's
own floor decides (:mod:`evlog.snapshot_limits`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from .backends.lmdb.store import Store
from .errors import BadInputError, DamagedLogError, UsageError
from .foldspec import FoldSpec, PythonFoldFileError
from .record import HASH_SIZE, record_hash, seq_key
from .snapshot_limits import DEFAULT_SNAPSHOT_EVERY as DEFAULT_SNAPSHOT_EVERY
from .snapshot_limits import DEFAULT_SNAPSHOT_MAX_SIZE as DEFAULT_SNAPSHOT_MAX_SIZE
from .snapshot_limits import allowed_interval as allowed_interval

_JSON_ONLY = "keep the state to objects, arrays (lists), text, numbers within 64 bits, booleans and null"

SNAPSHOT_FORMAT = 2
"""The format of a snapshot's value. 1 (no marker) had no chain hash and is never used."""


_KEY_SIZE = 16 + 8
_U64 = 1 << 64
# What decoding hostile bytes can raise (msgpack's errors are ValueErrors, and so is bad UTF-8).
_UNDECODABLE = (ValueError, TypeError, OverflowError, msgpack.UnpackException)


@dataclass(frozen=True)
class SnapshotInfo:
    """One stored snapshot, as ``evlog snapshot list`` shows it.

    ``problem`` says why the snapshot is never used (old format, undecodable,
    made for another history); None for one that can be. ``seq``, ``ts`` and
    ``keys`` are None where the entry is too damaged to tell.
    """

    digest: str
    seq: int | None
    ts: int | None
    size: int
    keys: int | None
    problem: str | None = None


@dataclass(frozen=True)
class StoredSnapshot:
    """A snapshot value that decoded: what it claims, still to be checked against the log."""

    digest: bytes
    seq: int
    ts: int
    chain_hash: bytes
    definition: dict[str, Any]
    first: int
    pairs: list[list[Any]]
    keyed: dict[Any, Any]  # the pairs by key, built once while checking them

    def states(self) -> dict[Any, Any]:
        return self.keyed


def key_parts(key: bytes) -> tuple[str, int | None]:
    """The hex digest and seq of a snapshot key (the seq None for a key of the wrong size)."""
    if len(key) != _KEY_SIZE:
        return key[:16].hex(), None
    return key[:16].hex(), int.from_bytes(key[16:], "big")


def decode(key: bytes, value: bytes) -> StoredSnapshot | str:
    """The snapshot under ``key``, or what is wrong with it (a sentence)."""
    if len(key) != _KEY_SIZE:
        return f"its key is {len(key)} bytes, not a definition hash and a seq"
    try:
        record = msgpack.unpackb(value, strict_map_key=False)
    except _UNDECODABLE as exc:
        return f"its value does not decode ({exc})"
    if type(record) is not dict:
        return "its value is not a snapshot record"
    if "format" not in record:
        return "it is of the old format, without the chain hash of its seq, and is never used"
    if record["format"] != SNAPSHOT_FORMAT:
        return f"it has format {repr(record['format'])[:40]}; this evlog reads format {SNAPSHOT_FORMAT}"
    fields = {"ts": int, "hash": bytes, "definition": dict, "first": int, "states": list}
    for name, kind in fields.items():
        if type(record.get(name)) is not kind:
            return f"its {name!r} is missing or not {kind.__name__}"
    pairs = record["states"]
    if not 0 <= record["ts"] < _U64 or len(record["hash"]) != HASH_SIZE or not 1 <= record["first"] < _U64:
        return "its time, chain hash or first seq is out of range"
    # Checked and keyed in passes that run in C: the states of a large --by fold are many.
    if pairs and (set(map(type, pairs)) != {list} or set(map(len, pairs)) != {2}):
        return "its states are not pairs of key and state"
    try:
        keyed = {(tuple(name) if type(name) is list else name): state for name, state in pairs}
    except TypeError:
        return "a key of its states cannot be a fold key"
    seq = int.from_bytes(key[16:], "big")
    return StoredSnapshot(key[:16], seq, record["ts"], record["hash"], record["definition"], record["first"],
                          pairs, keyed)


def encode(spec: FoldSpec, first: int, seq: int, ts: int, chain_hash: bytes, states: dict[Any, Any]) -> bytes:
    """A snapshot value; raises :class:`BadInputError` for a state a snapshot cannot keep exactly.

    Only states that come back exactly as they were are stored: a tuple would
    come back a list, a set not at all; a fold resumed from such a snapshot
    could answer differently than one run from the start.
    """
    pairs = [[key, state] for key, state in states.items()]
    record = {"format": SNAPSHOT_FORMAT, "ts": ts, "saved": time.time_ns(), "hash": chain_hash,
              "definition": spec.to_record(), "first": first, "states": pairs}
    try:
        value: bytes = msgpack.packb(record, use_bin_type=True)
        same = msgpack.unpackb(value, strict_map_key=False)["states"] == pairs
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadInputError(f"the fold's state cannot be saved in a snapshot ({exc}); {_JSON_ONLY}") from None
    if not same:
        raise BadInputError(f"the fold's state holds a tuple, which a snapshot cannot keep; {_JSON_ONLY}")
    return value


def chain_hash_at(store: Store, seq: int) -> bytes:
    """The chain hash stored in the record at ``seq``."""
    with store.reading(buffers=False) as txn:
        value = txn.get(seq_key(seq), db=store.dbs[b"events"]) if seq >= 1 else None
    if value is None or len(value) <= HASH_SIZE:
        raise DamagedLogError("the event a snapshot is taken at is missing or too short", seq=seq)
    return record_hash(value)


def save(
    store: Store, spec: FoldSpec, first: int, seq: int, ts: int, states: dict[Any, Any], *,
    max_size: int | None = None,
) -> int:
    """Store the states of ``spec`` (folded from ``first``) after ``seq``; returns the size in bytes.

    A value larger than ``max_size`` is not stored; its size is returned all
    the same, so the caller can tell (``size > max_size``).
    """
    value = encode(spec, first, seq, ts, chain_hash_at(store, seq), states)
    if max_size is not None and len(value) > max_size:
        return len(value)
    key = spec.digest(first) + seq_key(seq)
    store.write(lambda txn: txn.put(key, value, db=store.dbs[b"snapshots"]))
    return len(value)


def latest(store: Store, spec: FoldSpec, first: int, until: int) -> tuple[int, dict[Any, Any]] | None:
    """The newest usable snapshot of ``spec`` folded from ``first``, at a seq in ``first - 1..until``.

    Usable: it decodes, holds this definition, and the chain hash it carries is
    the one of the log's record at its seq (read in the same transaction).
    Others are passed over for an older one.
    """
    digest = spec.digest(first)
    definition = spec.to_record()
    events = store.dbs[b"events"]
    with store.reading(buffers=False) as txn:
        cursor = txn.cursor(db=store.dbs[b"snapshots"])
        found = cursor.prev() if cursor.set_range(digest + seq_key(until + 1)) else cursor.last()
        while found:
            key: bytes = cursor.key()
            if key[:16] != digest or (len(key) == _KEY_SIZE and int.from_bytes(key[16:], "big") < first - 1):
                return None
            stored = decode(key, cursor.value())
            if isinstance(stored, StoredSnapshot) and stored.first == first and stored.definition == definition:
                record = txn.get(key[16:], db=events)
                if record is not None and len(record) > HASH_SIZE and record_hash(record) == stored.chain_hash:
                    return stored.seq, stored.states()
            found = cursor.prev()
    return None


def listing(store: Store) -> Iterator[SnapshotInfo]:
    """Every snapshot, by definition and seq, each marked with why it is never used if it is not."""
    with store.reading(buffers=False) as txn:
        events = store.dbs[b"events"]
        for key, value in txn.cursor(db=store.dbs[b"snapshots"]):
            digest, seq = key_parts(key)
            stored = decode(key, value)
            if isinstance(stored, str):
                yield SnapshotInfo(digest, seq, None, len(value), None, stored)
                continue
            record = txn.get(key[16:], db=events)
            problem = None
            if record is None or len(record) <= HASH_SIZE or record_hash(record) != stored.chain_hash:
                problem = f"it was made for another history: the log's record at seq {seq} is not the one it names"
            yield SnapshotInfo(digest, seq, stored.ts, len(value), len(stored.pairs), problem)


def drop(store: Store, *, digest: str | None = None, before: int | None = None, everything: bool = False) -> int:
    """Delete snapshots of one definition (hex digest prefix), before a seq, or all; returns how many.

    Damaged entries go the same way: by the hex of their key's first 16 bytes,
    or with ``everything``; ``before`` passes over a key without a seq.
    """
    if digest is None and before is None and not everything:
        raise UsageError("say which snapshots to drop: a definition hash, --before POS, or --all")
    prefix = digest.lower() if digest is not None else None
    if prefix is not None and (not prefix or any(char not in "0123456789abcdef" for char in prefix)):
        raise UsageError(f"{digest!r} is not a snapshot hash or a prefix of one (see evlog snapshot list)")

    def work(txn: Any) -> int:
        cursor = txn.cursor(db=store.dbs[b"snapshots"])
        doomed = []
        for raw in cursor.iternext(values=False):
            key = bytes(raw)
            hex_digest, seq = key_parts(key)
            if prefix is not None and not hex_digest.startswith(prefix):
                continue
            if before is not None and (seq is None or seq >= before):
                continue
            doomed.append(key)
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


def _name_key(name: str) -> bytes:
    # A name as the shell handed it over: undecodable bytes go back as they came.
    return name.encode(errors="surrogateescape")


def add_projection(store: Store, projection: Projection, *, replace: bool) -> Projection | None:
    """Store a projection; returns the one it replaced (or raises if it exists and not ``replace``)."""
    name = _name_key(projection.name)
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
        if old is None:
            return None
        try:
            return _projection(name, bytes(old))
        except DamagedLogError:  # replacing a damaged entry is how it is repaired
            return None

    return store.write(work)


def get_projection(store: Store, name: str) -> Projection:
    with store.reading(buffers=False) as txn:
        value: bytes | None = txn.get(_name_key(name), db=store.dbs[b"projections"])
    if value is None:
        raise UsageError(f"no projection named {name!r} (see evlog projection list)")
    return _projection(_name_key(name), value)


def list_projections(store: Store) -> list[Projection]:
    with store.reading(buffers=False) as txn:
        cursor = txn.cursor(db=store.dbs[b"projections"])
        return [_projection(bytes(key), bytes(value)) for key, value in cursor]


def remove_projection(store: Store, name: str) -> Projection | None:
    """Remove a projection; returns it, or None when its entry was too damaged to read (removed all the same)."""
    key = _name_key(name)

    def work(txn: Any) -> Projection | None:
        old = txn.get(key, db=store.dbs[b"projections"])
        if old is None:
            raise UsageError(f"no projection named {name!r} (see evlog projection list)")
        txn.delete(key, db=store.dbs[b"projections"])
        try:
            return _projection(key, bytes(old))
        except DamagedLogError:
            return None

    return store.write(work)


def check_projection_entry(key: bytes, value: bytes) -> None:
    """Decode one entry of the ``projections`` database as a reader would: :class:`DamagedLogError` if bad."""
    _projection(key, value)


def _shell_word(key: bytes) -> str:
    """A projection's name as a shell word that gives these bytes back (``$'bad\\xff'`` where need be)."""
    import shlex

    try:
        text = key.decode()
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable():
        return shlex.quote(text)
    escaped = "".join(chr(byte) if 0x20 <= byte < 0x7F and byte not in b"\\'" else f"\\x{byte:02x}" for byte in key)
    return f"$'{escaped}'"


def _projection(key: bytes, value: bytes) -> Projection:
    """A stored projection, every field checked: a bad one is :class:`DamagedLogError` naming it."""
    try:
        name = key.decode()
    except UnicodeDecodeError:
        raise DamagedLogError(f"projection {key!r}: its name is not UTF-8 text; "
                              f"remove it with evlog projection rm {_shell_word(key)}") from None

    def damaged(what: str) -> DamagedLogError:
        return DamagedLogError(f"projection {name!r}: {what}; remove it with evlog projection rm {_shell_word(key)}")

    try:
        record = msgpack.unpackb(value, strict_map_key=False)
    except _UNDECODABLE as exc:
        raise damaged(f"its entry does not decode ({exc})") from None
    if type(record) is not dict:
        raise damaged("its entry is not a projection record")
    spec_record, from_, every, created = (record.get(field) for field in ("spec", "from", "snapshot_every", "created"))
    if type(spec_record) is not dict:
        raise damaged("its definition is missing or not a map")
    if from_ is not None and type(from_) is not str:
        raise damaged("its start ('from') is not text")
    if type(every) is not int or not 1 <= every < _U64:
        raise damaged("its snapshot interval is not a whole number of events")
    if type(created) is not int or not 0 <= created < _U64:
        raise damaged("its creation time is not a time")
    try:
        spec = FoldSpec.from_record(spec_record)
    except DamagedLogError as exc:
        raise damaged(exc.what) from None
    except PythonFoldFileError:
        raise damaged("its definition holds Python code (stored by an older evlog), which evlog no longer "
                      "runs from a log; add it again with fold-language code") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise damaged(f"its definition does not decode ({type(exc).__name__}: {exc})") from None
    return Projection(name, spec, from_, every, created)
