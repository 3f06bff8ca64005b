"""Snapshots and projections: saved fold states and named fold definitions.

A snapshot is the state of a fold after the event at ``seq``, stored under
``digest + seq`` in the log's ``snapshots`` table, where ``digest`` hashes the
whole definition (:meth:`evlog.fold.FoldSpec.digest`: engine version, init,
every clause in order, ``--by``, every filter and the first seq). A changed
definition has another digest, so its old snapshots are simply never found.
Keys sort by digest, then seq, so "the newest snapshot at or before seq N"
is the greatest key of the digest before ``digest + seq(N + 1)``.

Where the tables are kept is the backend's business (:class:`evlog.backends.Table`:
a named LMDB database, or a key-value bucket of a log on a server, keyed the
same); what an entry means, how it is checked and what is said about it is
this module's, once for every kind of log. The functions take the log's
:class:`~evlog.backends.Tables`: its backend (or an LMDB ``Store``).

A log may come from someone else, and its snapshots with it, so a snapshot
is built to be checked rather than trusted:

* Its value carries the chain hash of the event record at its seq, and it is
  used only when that hash matches the record there. The chain hash pins every event up to the seq, so a snapshot
  taken on another log, or on this one before its history was rewritten, is
  never used. Snapshots of the first form, without that hash, are never used.
* It carries its definition (fold-language text only) and first seq, so its
  key can be recomputed from it and its state recomputed by folding, which is
  what ``evlog verify --snapshots`` does (:mod:`evlog.snapshot_check`). The
  hash cannot prove the state is the fold's result: only a recomputation can.
* A value that does not decode is skipped when looking for one to use, shown
  with its problem by :func:`listing`, and can be dropped like any other.

A projection is a named definition (a CQRS read model) in the
``projections`` table; its snapshots are ordinary snapshots of its
definition. Its stored snapshot interval is the author's wish; the reader's
own floor decides (:mod:`evlog.snapshot_limits`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from .backends import Tables
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
MAX_NAME = 255
"""The longest projection name, in UTF-8 bytes (a key must fit LMDB's 511 bytes and a server's subject)."""
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


def chain_hash_at(tables: Tables, seq: int) -> bytes:
    """The chain hash stored in the record at ``seq``."""
    value = tables.record(seq) if seq >= 1 else None
    if value is None or len(value) <= HASH_SIZE:
        raise DamagedLogError("the event a snapshot is taken at is missing or too short", seq=seq)
    return record_hash(value)


def _matches(tables: Tables, seq: int, chain_hash: bytes) -> bool:
    """Whether the log's record at ``seq`` is the one whose chain hash a snapshot carries."""
    record = tables.record(seq)
    return record is not None and len(record) > HASH_SIZE and record_hash(record) == chain_hash


def room(tables: Tables, max_size: int | None) -> tuple[int | None, str]:
    """The largest snapshot value that is stored, and what sets it (for the message when one is larger).

    The reader's ``max_size`` (``--snapshot-max-size``), or a table's own
    limit where it is smaller (a server takes at most ``max_payload`` bytes in
    one value).
    """
    own = tables.table("snapshots").max_value
    if own is not None and (max_size is None or own < max_size):
        return own, f"the largest value the server takes ({own:,} bytes, its max_payload)"
    if max_size is None:
        return None, ""
    return max_size, f"the snapshot size limit ({max_size:,} bytes, --snapshot-max-size)"


def save(
    tables: Tables, spec: FoldSpec, first: int, seq: int, ts: int, states: dict[Any, Any], *,
    max_size: int | None = None, record: bytes | None = None,
) -> int:
    """Store the states of ``spec`` (folded from ``first``) after ``seq``; returns the size in bytes.

    ``record`` is the record at ``seq`` where the caller has it (the one it
    folded); else it is read from the log. A value larger than ``max_size``,
    or than the table can hold (:func:`room`), is not stored; its size is
    returned all the same, so the caller can tell.
    """
    folded = record is not None and len(record) > HASH_SIZE
    chain_hash = record_hash(record) if record is not None and folded else chain_hash_at(tables, seq)
    value = encode(spec, first, seq, ts, chain_hash, states)
    limit, _ = room(tables, max_size)
    if limit is not None and len(value) > limit:
        return len(value)
    tables.table("snapshots").put(spec.digest(first) + seq_key(seq), value)
    return len(value)


def latest(tables: Tables, spec: FoldSpec, first: int, until: int) -> tuple[int, dict[Any, Any]] | None:
    """The newest usable snapshot of ``spec`` folded from ``first``, at a seq in ``first - 1..until``.

    Usable: it decodes, holds this definition, and the chain hash it carries is
    the one of the log's record at its seq. Others are passed over for an older one.
    """
    digest = spec.digest(first)
    definition = spec.to_record()
    for key, value in tables.table("snapshots").newest(digest, digest + seq_key(until + 1)):
        if len(key) == _KEY_SIZE and int.from_bytes(key[16:], "big") < first - 1:
            return None
        stored = decode(key, value)
        if (isinstance(stored, StoredSnapshot) and stored.first == first and stored.definition == definition
                and _matches(tables, stored.seq, stored.chain_hash)):
            return stored.seq, stored.states()
    return None


def listing(tables: Tables) -> Iterator[SnapshotInfo]:
    """Every snapshot, by definition and seq, each marked with why it is never used if it is not."""
    table = tables.table("snapshots")
    for key in table.list_keys():
        value = table.get(key)
        if value is None:
            continue  # dropped meanwhile
        digest, seq = key_parts(key)
        stored = decode(key, value)
        if isinstance(stored, str):
            yield SnapshotInfo(digest, seq, None, len(value), None, stored)
            continue
        problem = None
        if not _matches(tables, stored.seq, stored.chain_hash):
            problem = f"it was made for another history: the log's record at seq {seq} is not the one it names"
        yield SnapshotInfo(digest, seq, stored.ts, len(value), len(stored.pairs), problem)


def drop(tables: Tables, *, digest: str | None = None, before: int | None = None, everything: bool = False) -> int:
    """Delete snapshots of one definition (hex digest prefix), before a seq, or all; returns how many.

    Damaged entries go the same way: by the hex of their key's first 16 bytes,
    or with ``everything``; ``before`` passes over a key without a seq.
    """
    if digest is None and before is None and not everything:
        raise UsageError("say which snapshots to drop: a definition hash, --before POS, or --all")
    prefix = digest.lower() if digest is not None else None
    if prefix is not None and (not prefix or any(char not in "0123456789abcdef" for char in prefix)):
        raise UsageError(f"{digest!r} is not a snapshot hash or a prefix of one (see evlog snapshot list)")

    table = tables.table("snapshots")
    doomed = []
    for key in table.list_keys():
        hex_digest, seq = key_parts(key)
        if prefix is not None and not hex_digest.startswith(prefix):
            continue
        if before is not None and (seq is None or seq >= before):
            continue
        doomed.append(key)
    # One key at a time: snapshots are a cache, so a drop cut short loses nothing and can be run again.
    for key in doomed:
        table.delete(key)
    return len(doomed)


def drop_digest(tables: Tables, digest: bytes) -> int:
    return drop(tables, digest=digest.hex())


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


def add_projection(tables: Tables, projection: Projection, *, replace: bool) -> Projection | None:
    """Store a projection; returns the one it replaced (or raises if it exists and not ``replace``).

    Two writers may race (two hosts adding the same name): the entry is
    changed only if it still holds what was read, else read again, so one of
    two adds without ``replace`` is refused and a replace returns the
    definition it really replaced.
    """
    name = _name_key(projection.name)
    try:
        name.decode()
    except UnicodeDecodeError:  # it would be read back as damage
        raise UsageError(f"a projection's name must be UTF-8 text; {projection.name!r} is not") from None
    if len(name) > MAX_NAME:
        raise UsageError(f"a projection's name is at most {MAX_NAME} bytes; {projection.name[:40]!r}... is "
                         f"{len(name)}")
    value = msgpack.packb(
        {
            "spec": projection.spec.to_record(),
            "from": projection.from_,
            "snapshot_every": projection.snapshot_every,
            "created": projection.created,
        },
        use_bin_type=True,
    )

    table = tables.table("projections")
    while True:
        old = table.get(name)
        if old is not None and not replace:
            raise UsageError(f"projection {projection.name!r} exists; use --replace to redefine it")
        if table.swap(name, value, expected=old):
            break
    if old is None:
        return None
    try:
        return _projection(name, old)
    except DamagedLogError:  # replacing a damaged entry is how it is repaired
        return None


def get_projection(tables: Tables, name: str) -> Projection:
    value = tables.table("projections").get(_name_key(name))
    if value is None:
        raise UsageError(f"no projection named {name!r} (see evlog projection list)")
    return _projection(_name_key(name), value)


def list_projections(tables: Tables) -> list[Projection]:
    table = tables.table("projections")
    found = []
    for key in table.list_keys():
        value = table.get(key)
        if value is not None:  # removed meanwhile
            found.append(_projection(key, value))
    return found


def remove_projection(tables: Tables, name: str) -> Projection | None:
    """Remove a projection; returns it, or None when its entry was too damaged to read (removed all the same)."""
    key = _name_key(name)
    table = tables.table("projections")
    while True:
        old = table.get(key)
        if old is None:
            raise UsageError(f"no projection named {name!r} (see evlog projection list)")
        # Only the definition read goes: one redefined meanwhile keeps its new snapshots.
        if table.swap(key, None, expected=old):
            break
    try:
        return _projection(key, old)
    except DamagedLogError:
        return None


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
