"""Checking a log end to end: records, the hash chain and every index.

:func:`verify` walks the ``events`` database once, in seq order, and checks
what each record promises: seqs without gaps, records that decode in a known
format, times that never go backwards, stream versions that count up by one,
and each stored chain hash against the one recomputed from its predecessor.
It then walks the ``streams`` and ``ids`` indexes once each, sequentially,
and checks that they describe exactly the events seen, both ways; the
``types`` counts and the ``meta`` streams count are checked too when the
whole log is verified. Findings are yielded as they are found.

How it is built, and why:

* Reads run in short read transactions of :data:`CHUNK` records (as in
  :mod:`evlog.backends.lmdb.reading`), so verifying a large log never pins old pages while
  other processes append. The range checked is the log as it was when
  verify started (its head then); later appends are left alone.
* Transactions return ``bytes``, not buffers: on a 1M-event log, slicing and
  hashing bytes measured a third faster than going through memoryviews.
* The chain is recomputed from each record's *stored* predecessor hash, so
  an edited record is one finding at its own seq instead of a cascade over
  every later record. The chain from genesis (or from the record before
  ``from_``) is carried alongside only once it has diverged, and gives the
  recomputed head hash; in a sound log the two are one and computed once.
* The index cross-checks neither hold the events nor look up an index entry
  per event: each side sums ``hash((name, seq))`` over its entries, and the
  index pass compares each stream's entry count with the versions seen. Equal
  sums mean equal sets (but for a 64-bit hash collision). Only when they
  differ does a slower pass with look-ups run, to name each disagreeing seq.
* Per stream only its current version is kept (a dict), never its events.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
import orjson

from .backends.lmdb.store import U64, Store, parse_format
from .errors import DamagedLogError
from .record import GENESIS_HASH, HASH_SIZE, RECORD_FORMAT, blake2b, decode_payload, is_json, seq_key
from .timefmt import format_ts

# What decoding damaged bytes can raise: msgpack errors are ValueErrors, and the
# tuple unpacking of a wrong-sized record raises ValueError or TypeError.
DAMAGED = (ValueError, TypeError, OverflowError, msgpack.UnpackException)

if TYPE_CHECKING:
    from .log import Log

CHUNK = 2048
"""Records per read transaction: enough that starting one costs nothing, few enough to keep it short."""

_INDEX_CHUNK = 8192
_NAME_OR_NONE = (str, type(None))

Progress = Callable[[int, int], None]
"""Called after each chunk of records with (records checked, records in the range)."""

Checks = Generator["Finding", None, bool]
"""A pass that yields findings and returns whether an index agrees with the events."""


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a log; ``seq`` is the event it concerns, or None for the log as a whole."""

    seq: int | None
    problem: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.problem}" if self.seq is not None else f"log: {self.problem}"


def verify(log: Log, *, from_: str | int | None = None, progress: Progress | None = None) -> Verification:
    """Check ``log``: iterate the result for the findings (``for finding in run``), then read its summary.

    ``from_`` is a position (see :meth:`Log.resolve`): the records from there
    on are checked, the chain starting from the hash stored in the record
    before it. The ``types`` and ``meta`` counts are only checked from seq 1.
    """
    return Verification(log, from_, progress)


class Verification(Iterator[Finding]):
    """The findings of one verify run, as an iterator; the summary is set once it is exhausted.

    ``events`` is the number of records checked, ``first_seq``/``last_seq``
    the range, ``head_hash`` the chain hash recomputed up to ``last_seq``
    (hex; None when a gap or a missing predecessor leaves nothing to chain
    from) and ``stored_head_hash`` the hash stored there, which ``evlog
    info`` shows. ``ok`` is true once the run finished without findings.
    """

    def __init__(self, log: Log, from_: str | int | None, progress: Progress | None) -> None:
        self.log = log
        self.progress = progress
        self.first_seq = 1
        self.last_seq = 0
        self.events = 0
        self.findings = 0
        self.head_hash: str | None = None
        self.stored_head_hash: str | None = None
        self.complete = False
        self._from = from_
        self._run = self._checks()

    @property
    def ok(self) -> bool:
        return self.complete and self.findings == 0

    def __next__(self) -> Finding:
        finding = next(self._run)
        self.findings += 1
        return finding

    def summary(self) -> dict[str, Any]:
        """The outcome as a JSON-ready dict."""
        return {
            "ok": self.ok,
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "problems": self.findings,
            "head_hash": self.head_hash,
            "stored_head_hash": self.stored_head_hash,
        }

    # -- the passes ----------------------------------------------------------

    def _checks(self) -> Iterator[Finding]:
        store = self.log.store(check_format=False)
        if store.format_problem is not None:
            yield Finding(None, store.format_problem)
        # Resolved first: a position may read the log in its own transactions.
        self.first_seq = 1 if self._from is None else max(self.log.resolve(self._from), 1)
        yield from self._snapshot(store)
        yield from self._events(store)
        streams_agree = yield from self._streams_index(store)
        ids_agree = yield from self._ids_index(store)
        # Only when an index disagrees: the slow passes that name each seq where it does.
        if not streams_agree:
            yield from self._streams_index(store, locate=True)
        if not ids_agree:
            yield from self._ids_index(store, locate=True)
        if not (streams_agree and ids_agree):
            yield from self._events_to_indexes(store, streams=not streams_agree, ids=not ids_agree)
        if self.first_seq == 1:
            yield from self._counts()
        yield from self._past_head(store)
        yield from self._entries(store)
        self.complete = True

    def _snapshot(self, store: Store) -> Iterator[Finding]:
        """The head, the counters and where the chain starts, as of now."""
        found: list[Finding] = []
        # One transaction: appends update the head and the counters together,
        # so the counters describe exactly the events up to this head.
        with store.reading(buffers=False) as txn:
            cursor = txn.cursor(db=store.dbs[b"events"])
            # Keys the events pass never reaches: before seq 1, and after the head.
            positioned = cursor.first()
            while positioned and cursor.key() < seq_key(1):
                key = cursor.key()
                zero = Finding(0, "is a key in the events, but seqs start at 1")
                found.append(zero if len(key) == 8 else _foreign_key(key))
                positioned = cursor.next()
            positioned = cursor.last()
            while positioned and len(cursor.key()) != 8:
                found.append(_foreign_key(cursor.key()))
                positioned = cursor.prev()
            self.last_seq = last = int.from_bytes(cursor.key(), "big") if positioned else 0
            self._stored_types: dict[str, int] = {}
            for key, value in txn.cursor(db=store.dbs[b"types"]):
                if not _utf8(key):
                    found.append(Finding(None, f"the types index has a name that is not UTF-8: {key[:40]!r}"))
                if len(value) == 8:
                    self._stored_types[_name(key)] = U64.unpack(value)[0]
                else:
                    found.append(Finding(None, f"the types index holds a count for {_name(key)!r} of "
                                               f"{len(value)} bytes, not 8"))
            found.extend(_meta_findings(txn, store))
            raw = txn.get(b"streams", db=store.dbs[b"meta"])
            self._stored_streams = U64.unpack(raw)[0] if raw is not None and len(raw) == 8 else None
            # The chain starts at genesis, or at the hash stored in the record
            # before the range (the head itself when the range is past it).
            self._start_hash, self._start_ts = GENESIS_HASH, 0
            before = min(self.first_seq, last + 1) - 1
            value = txn.get(seq_key(before), db=store.dbs[b"events"]) if before >= 1 else None
            if value is not None:
                fields = _decode(value)
                self._start_hash = value[-HASH_SIZE:]
                self._start_ts = fields[1] if fields is not None and type(fields[1]) is int else 0
            elif before >= 1:
                self._start_hash = b""
                found.append(Finding(before, "is missing; the hash chain cannot be checked into the next record"))
        self._past: dict[str, int] = {}
        yield from found

    def _events(self, store: Store) -> Iterator[Finding]:
        """The pass over the records: gaps, decoding, format, time, versions, the chain."""
        events_db = store.dbs[b"events"]
        first, last = self.first_seq, self.last_seq
        total = max(last - first + 1, 0)
        strict = first == 1  # from seq 1 on, every stream's first version must be 1
        versions: dict[str, int] = {}
        types: dict[str, int] = {}
        skewed: dict[str, int] = {}  # stream -> its last version that was not its count
        unpackb, from_bytes, to_json = msgpack.unpackb, int.from_bytes, orjson.dumps
        stream_sum = id_sum = ids = 0
        # `prev` is the hash stored in the previous record, `chain` the chain
        # recomputed from the start; they part only where something changed.
        # b"" stands for unknown (after a gap).
        prev = chain = self._start_hash
        diverged = not prev
        prev_ts = self._start_ts
        expected, missing = first, 0
        while expected <= last:
            found: list[Finding] = []
            stop = expected + CHUNK - 1  # the last seq of this chunk's transaction
            more = False
            with store.reading(buffers=False) as txn:
                cursor = txn.cursor(db=events_db)
                if cursor.set_range(seq_key(expected)):
                    for key, value in cursor.iternext():
                        seq = from_bytes(key, "big")
                        if seq > last and len(key) == 8:
                            break  # appended after this run began: left for the next run
                        if seq != expected:
                            # Rare cases tested only here, off the common path. (A key
                            # that is not 8 bytes never reads as the seq it sorts at.)
                            if len(key) != 8:
                                found.append(_foreign_key(key))
                                continue
                            if seq > last:
                                break
                            found.append(_gap(expected, seq - 1))
                            missing += seq - expected
                            prev = chain = b""
                            diverged = True
                        expected = seq + 1
                        body, stored = value[:-HASH_SIZE], value[-HASH_SIZE:]
                        if diverged:
                            chain, diverged = _chain_step(seq, key, body, stored, prev, chain, found)
                        elif blake2b(prev + key + body, digest_size=HASH_SIZE).digest() != stored:
                            chain, diverged = _chain_step(seq, key, body, stored, prev, prev, found)
                        prev = stored
                        try:
                            fields = unpackb(body, use_list=False)
                            record_format, ts, version, etype, stream, id_, meta, data = fields
                        except DAMAGED:  # any damage to the bytes is a finding, not a crash
                            found.append(_not_a_record(seq, body))
                        else:
                            if (
                                record_format != RECORD_FORMAT
                                or type(fields) is not tuple
                                or type(ts) is not int
                                or type(etype) is not str
                                or type(data) is not bytes
                                or type(stream) not in _NAME_OR_NONE
                                or type(id_) not in _NAME_OR_NONE
                                or (meta is not None and (type(meta) is not dict or not is_json(meta)))
                            ):
                                found.append(_not_a_record(seq, body))
                            else:
                                try:
                                    # orjson refuses what JSON cannot hold (bytes, keys that are
                                    # not text), in C: a walk in Python doubled verify's time.
                                    to_json(decode_payload(data, seq))
                                except DamagedLogError as exc:
                                    found.append(Finding(seq, f"has a damaged payload ({exc.what})"))
                                except orjson.JSONEncodeError as exc:
                                    found.append(Finding(seq, f"has a payload that is not a JSON value ({exc})"))
                                if ts < prev_ts:
                                    found.append(Finding(seq, f"has ts {format_ts(ts)}, before {format_ts(prev_ts)}"))
                                prev_ts = ts
                                # Subscripts, not .get(): measured faster in this loop.
                                try:
                                    types[etype] += 1
                                except KeyError:
                                    types[etype] = 1
                                if stream is not None:
                                    try:
                                        want = versions[stream] + 1
                                    except KeyError:
                                        want = 1 if strict else _base(version)
                                    if version != want:
                                        _off_count(seq, stream, version, want, skewed, found)
                                    versions[stream] = want  # counted, not taken from the record
                                    stream_sum += hash((stream, seq))
                                elif version is not None:
                                    found.append(Finding(seq, f"has version {version!r} but no stream"))
                                if id_ is not None:
                                    id_sum += hash((id_, seq))
                                    ids += 1
                        if seq >= stop:
                            more = True
                            break
            yield from found
            if self.progress is not None:
                self.progress(min(expected - 1, last) - first + 1 - missing, total)
            if not more:
                break
        if expected <= last:
            yield _gap(expected, last)
        self.events = max(min(expected - 1, last) - first + 1 - missing, 0)
        self._versions, self._types = versions, types
        self._stream_sum, self._id_sum, self._ids = stream_sum, id_sum, ids
        head = chain if diverged else prev
        self.head_hash = head.hex() if head else None
        self.stored_head_hash = prev.hex() if prev else None

    def _streams_index(self, store: Store, *, locate: bool = False) -> Checks:
        """One pass over the ``streams`` index: its entries in range against the events seen.

        With ``locate`` (the slow pass) each entry is also looked up: is it
        an event of that stream, and the version its place in the index says?
        """
        first, last = self.first_seq, self.last_seq
        streams_db, events_db = store.dbs[b"streams"], store.dbs[b"events"]
        versions = self._versions
        from_key = seq_key(first)
        from_bytes = int.from_bytes
        total = past = version = 0
        agree = True
        misordered: set[str] = set()
        resume: bytes | None = None
        while True:
            found: list[Finding] = []
            with store.reading(buffers=False) as txn:
                cursor = txn.cursor(db=streams_db)
                more = cursor.set_range(resume) if resume is not None else cursor.first()
                budget = _INDEX_CHUNK
                while more and budget > 0:
                    key = cursor.key()
                    stream = _name(key)
                    count = cursor.count()
                    after = 0  # entries past `last`: appended since verify began
                    # From seq 1 every entry is in range; else skip to the range.
                    if first == 1 or cursor.set_range_dup(key, from_key):
                        entries: Iterable[bytes] = cursor.iternext_dup(keys=False, values=True)
                        if locate:  # the n-th entry is version n: count back from the last
                            entries = list(entries)
                            version = count - len(entries)
                        for raw in entries:
                            seq = from_bytes(raw, "big")
                            if seq > last:
                                after += 1
                                past = max(past, seq)
                            else:
                                total += hash((stream, seq))
                                if locate:
                                    version += 1
                                    value = txn.get(raw, db=events_db)
                                    found.extend(_locate_entry(seq, value, stream, version, misordered))
                        budget -= count
                    # The stream's entries up to the head end at the version seen
                    # last; from seq 1 a stream with entries must have events.
                    seen = versions.get(stream)
                    if (seen is not None and seen != count - after) or (seen is None and first == 1 and count > after):
                        agree = False
                    more = cursor.set_range(key + b"\x00")  # the next stream
                resume = cursor.key() if more else None
            yield from found
            if resume is None:
                break
        if past:
            self._past["streams"] = past
        return agree and total == self._stream_sum

    def _ids_index(self, store: Store, *, locate: bool = False) -> Checks:
        """One pass over the ``ids`` index: its entries in range against the ids seen.

        With ``locate`` (the slow pass) each entry is also looked up: does it
        point to an event with that id?
        """
        first, last = self.first_seq, self.last_seq
        total = count = past = 0
        for pairs in _chunks(store, store.dbs[b"ids"], b""):
            found: list[Finding] = []
            for key, raw in pairs:
                seq = _seq(raw)
                if first <= seq <= last:
                    total += hash((_name(key), seq))
                    count += 1
                elif seq > last:
                    past = max(past, seq)
                elif seq < 1:
                    found.append(Finding(None, f"the ids index maps {_name(key)!r} to {raw.hex()}: no seq"))
            if locate:
                with store.reading(buffers=False) as txn:
                    for key, raw in pairs:
                        seq = _seq(raw)
                        if not first <= seq <= last:
                            continue
                        value = txn.get(raw, db=store.dbs[b"events"])
                        fields = _decode(value) if value is not None else None
                        listed = f"is in the ids index as {_name(key)!r}"
                        if value is None:
                            found.append(Finding(seq, f"{listed} but there is no such event"))
                        elif fields is not None and fields[5] != _name(key):
                            found.append(Finding(seq, f"{listed} but its id is {fields[5]!r}"))
            yield from found
        if past:
            self._past["ids"] = past
        return total == self._id_sum and count == self._ids

    def _events_to_indexes(self, store: Store, *, streams: bool, ids: bool) -> Iterator[Finding]:
        """Each event in range: is it in the ``streams`` and ``ids`` indexes where it belongs?"""
        last = self.last_seq
        for pairs in _chunks(store, store.dbs[b"events"], seq_key(self.first_seq)):
            found: list[Finding] = []
            with store.reading(buffers=False) as txn:
                in_streams = txn.cursor(db=store.dbs[b"streams"])
                for key, value in pairs:
                    seq = int.from_bytes(key, "big")
                    fields = _decode(value) if len(key) == 8 and seq <= last else None
                    if fields is None:
                        continue
                    stream, id_ = fields[4], fields[5]
                    if streams and type(stream) is str and not in_streams.set_key_dup(stream.encode(), key):
                        found.append(Finding(seq, f"is an event of {stream!r} missing from the streams index"))
                    if ids and type(id_) is str:
                        indexed = txn.get(id_.encode(), db=store.dbs[b"ids"])
                        if indexed is None:
                            found.append(Finding(seq, f"has id {id_!r}, which is missing from the ids index"))
                        elif indexed != key:
                            found.append(Finding(seq, f"has id {id_!r}, which the ids index gives {_seq(indexed)}"))
            yield from found
            if int.from_bytes(pairs[-1][0], "big") >= last:
                return

    def _counts(self) -> Iterator[Finding]:
        """The ``types`` counts and the ``meta`` streams count against what the whole log holds."""
        stored, seen = self._stored_types, self._types
        for name in sorted(stored.keys() | seen.keys()):
            counted, held = stored.get(name, 0), seen.get(name, 0)
            if counted != held:
                yield Finding(None, f"the types index counts {counted} events of type {name!r}, the log holds {held}")
        if self._stored_streams != len(self._versions):
            held = len(self._versions)
            yield Finding(None, f"the meta streams count is {self._stored_streams}, the log holds {held} streams")

    def _entries(self, store: Store) -> Iterator[Finding]:
        """Projections and groups decode as their readers decode them (snapshots: ``verify --snapshots``)."""
        from .errors import DamagedLogError
        from .groups import check_entry
        from .snapshots import check_projection_entry

        for database, check in ((b"projections", check_projection_entry), (b"groups", check_entry)):
            with store.reading(buffers=False) as txn:
                entries: list[tuple[bytes, bytes]] = list(txn.cursor(db=store.dbs[database]))
            for key, value in entries:
                try:
                    check(key, value)
                except DamagedLogError as exc:
                    yield Finding(None, exc.what)

    def _past_head(self, store: Store) -> Iterator[Finding]:
        """Index entries beyond the head verify started from must be events appended since."""
        if not self._past:
            return
        with store.reading(buffers=False) as txn:
            cursor = txn.cursor(db=store.dbs[b"events"])
            head = int.from_bytes(cursor.key(), "big") if cursor.last() and len(cursor.key()) == 8 else 0
        for index, seq in sorted(self._past.items()):
            if seq > head:
                yield Finding(seq, f"is in the {index} index but past the last event (seq {head})")


def _chunks(store: Store, db: Any, start: bytes) -> Iterator[list[tuple[bytes, bytes]]]:
    """The (key, value) pairs of a database without duplicates from ``start`` on, each chunk read in its own
    short transaction (the slow passes then look things up in another)."""
    while True:
        with store.reading(buffers=False) as txn:
            cursor = txn.cursor(db=db)
            pairs = list(itertools.islice(cursor.iternext(), _INDEX_CHUNK)) if cursor.set_range(start) else []
        if pairs:
            yield pairs
        if len(pairs) < _INDEX_CHUNK:
            return
        start = pairs[-1][0] + b"\x00"  # the first key after the last one read


def _chain_step(
    seq: int, key: bytes, body: bytes, stored: bytes, prev: bytes, chain: bytes, found: list[Finding]
) -> tuple[bytes, bool]:
    """The chain check where the fast path cannot decide; returns the new (chain, diverged).

    ``prev`` is the hash stored in the previous record, ``chain`` the chain
    recomputed up to it (b"" for unknown). The record is sound if its stored
    hash follows from either: from ``chain`` alone it is the record *after*
    one whose stored hash was changed, and that one has been named already.
    """
    own = blake2b(prev + key + body, digest_size=HASH_SIZE).digest() if prev else b""
    true = blake2b(chain + key + body, digest_size=HASH_SIZE).digest() if chain else b""
    if own and own != stored and true != stored:
        found.append(
            Finding(
                seq,
                f"does not match its hash: the record or its stored hash was changed "
                f"(stored {stored.hex()}, recomputed {own.hex()})",
            )
        )
    return true, true != stored


def _locate_entry(seq: int, value: bytes | None, stream: str, version: int, misordered: set[str]) -> list[Finding]:
    """What is wrong with a ``streams`` entry that should name ``value``, version ``version`` of ``stream``."""
    fields = _decode(value) if value is not None else None
    listed = f"is in the streams index under {stream!r}"
    if value is None:
        return [Finding(seq, f"{listed} but there is no such event")]
    if fields is None:
        return []  # the events pass has named it
    if fields[4] != stream:
        return [Finding(seq, f"{listed} but its stream is {fields[4]!r}")]
    if fields[2] != version and stream not in misordered:
        # After one entry too many or too few, every later one is off by one: say so once per stream.
        misordered.add(stream)
        return [Finding(seq, f"{listed} as version {version} but it is version {fields[2]}")]
    return []


def _name(raw: bytes) -> str:
    # Index keys are UTF-8 names; a damaged one still gets a (never matching) str.
    return raw.decode("utf-8", "surrogateescape")


def _seq(raw: bytes) -> int:
    """An index value as a seq; -1 when it is not 8 bytes (never a valid seq)."""
    return int.from_bytes(raw, "big") if len(raw) == 8 else -1


def _decode(value: bytes) -> tuple[Any, ...] | None:
    """A record's fields, or None when it is not a readable record (the events pass names those)."""
    try:
        fields = msgpack.unpackb(value[:-HASH_SIZE], use_list=False)
    except DAMAGED:  # any damage to the bytes
        return None
    if type(fields) is tuple and len(fields) == 8 and fields[0] == RECORD_FORMAT:
        return fields
    return None


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _meta_findings(txn: Any, store: Store) -> Iterator[Finding]:
    """What is wrong with the ``meta`` entries: the format, the log id, the counters."""
    meta = store.dbs[b"meta"]
    raw = txn.get(b"format", db=meta)
    if raw is not None and store.format_problem is None:
        try:
            parse_format(raw)
        except DamagedLogError as exc:
            yield Finding(None, exc.what)
    log_id = txn.get(b"log_id", db=meta)
    if log_id is not None and not _utf8(log_id):
        yield Finding(None, "the meta log id is not UTF-8 text")
    for key, what in ((b"created", "creation time"), (b"streams", "streams count")):
        raw = txn.get(key, db=meta)
        if raw is not None and len(raw) != 8:
            yield Finding(None, f"the meta {what} is {len(raw)} bytes, not 8")


def _gap(first: int, last: int) -> Finding:
    if first == last:
        return Finding(first, "is missing: the log has a gap here")
    return Finding(first, f"is missing, and every seq up to {last}: the log has a gap here")


def _not_a_record(seq: int, body: bytes) -> Finding:
    """What is wrong with a record the events pass could not take (decoded again: a rare path)."""
    try:
        fields = msgpack.unpackb(body, use_list=False)
    except DAMAGED as exc:  # any damage to the bytes
        return Finding(seq, f"cannot be decoded ({str(exc) or type(exc).__name__})")
    if type(fields) is tuple and fields and type(fields[0]) is int and fields[0] != RECORD_FORMAT:
        return Finding(seq, f"has record format {fields[0]}; this evlog knows format {RECORD_FORMAT}")
    if type(fields) is not tuple or len(fields) != 8:
        return Finding(seq, "is not an evlog record (not an array of 8 fields)")
    return Finding(seq, "has a field of the wrong kind (ts, type, stream, id, meta or data)")


def _foreign_key(key: bytes) -> Finding:
    return Finding(None, f"the events database has a key that is not a seq: {key.hex()}")


def _base(version: object) -> int:
    """The version a stream's first event in a partial range must have: whatever it says, if plausible."""
    return version if type(version) is int and version >= 1 else 1


def _off_count(seq: int, stream: str, version: object, want: int, skewed: dict[str, int], found: list[Finding]) -> None:
    """A version that is not the stream's count of events: one finding per run of them.

    The count goes on, so one wrong version is one finding; a run of versions
    each one on from the last wrong one (after a lost event) is one too.
    """
    if skewed.get(stream, -1) + 1 != version:
        found.append(Finding(seq, f"is version {version!r} of {stream!r}, but it is event {want} of that stream"))
    skewed[stream] = version if type(version) is int else -2
