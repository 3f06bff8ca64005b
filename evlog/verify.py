"""Checking a log end to end: records, the hash chain and every index.

:func:`verify` walks the records once, in seq order, and checks what each
promises: seqs without gaps, records that decode in a known format, times
that never go backwards, stream versions that count up by one, payloads
that are JSON values, and each stored chain hash against the one
recomputed from its predecessor. These checks are the same for every kind
of log and live here, once. What a backend keeps beside the records (LMDB:
the ``streams``, ``ids``, ``types`` and ``meta`` databases; JetStream: the
subject and headers of each message, the stream's config and the derived
index in the log's key-value buckets) is checked by that backend's own
checker (:mod:`evlog.backends.lmdb.verify`,
:mod:`evlog.backends.jetstream.verify`), which also hands this pass its
records. Findings are yielded as they are found.

How it is built, and why:

* The records come in chunks of ``(key, record)`` pairs, the key being the
  seq as 8 big-endian bytes (what LMDB stores, and what the chain hashes),
  read in short transactions or requests by the checker. The range checked
  is the log as it was when verify started (its head then); later appends
  are left alone.
* Records are ``bytes``, not buffers: on a 1M-event log, slicing and
  hashing bytes measured a third faster than going through memoryviews.
* The chain is recomputed from each record's *stored* predecessor hash, so
  an edited record is one finding at its own seq instead of a cascade over
  every later record. The chain from genesis (or from the record before
  ``from_``) is carried alongside only once it has diverged, and gives the
  recomputed head hash; in a sound log the two are one and computed once.
* Index cross-checks neither hold the events nor look up an index entry per
  event: this pass sums ``hash((name, seq))`` over the events' streams and
  ids, and a checker sums the same over its index entries. Equal sums mean
  equal sets (but for a 64-bit hash collision). Only when they differ does
  a slower pass with look-ups run, to name each disagreeing seq.
* Per stream only its current version is kept (a dict), never its events.
* Counters (types, streams) may describe the log only up to some seq (a
  JetStream log's derived index is caught up lazily): the checker says up
  to which (``counts_at``), gets a chunk boundary there, and the pass keeps
  what it had counted at that seq.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import msgpack
import orjson

from .errors import DamagedLogError
from .record import HASH_SIZE, RECORD_FORMAT, blake2b, decode_payload, is_json
from .timefmt import format_ts

# What decoding damaged bytes can raise: msgpack errors are ValueErrors, and the
# tuple unpacking of a wrong-sized record raises ValueError or TypeError.
DAMAGED = (ValueError, TypeError, OverflowError, msgpack.UnpackException)

if TYPE_CHECKING:
    from .log import Log

CHUNK = 2048
"""Records per read transaction or request: enough that starting one costs nothing, few enough to keep it short."""

_NAME_OR_NONE = (str, type(None))

Progress = Callable[[int, int], None]
"""Called after each chunk of records with (records checked, records in the range)."""

Pairs = list[tuple[bytes, bytes]]
"""A chunk of records as ``(key, record)``, in key order."""


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a log; ``seq`` is the event it concerns, or None for the log as a whole."""

    seq: int | None
    problem: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.problem}" if self.seq is not None else f"log: {self.problem}"


class Checker(Protocol):
    """A backend's part of verify: where the records come from, and its indexes."""

    side: list[Finding]
    """Findings about the records that the checker makes while handing them over (drained per chunk)."""

    def start(self, run: Verification) -> Iterator[Finding]:
        """Set ``run``'s head, where the chain starts and the stored counters; findings about them."""

    def records(self, first: int, last: int) -> Iterator[Pairs]:
        """The records of ``first..last`` in chunks (gaps and foreign keys show as they are)."""

    def indexes(self, run: Verification) -> Iterator[Finding]:
        """After the records pass: the backend's indexes against what the pass saw."""

    def finish(self, run: Verification) -> Iterator[Finding]:
        """Last: index entries past the head, other stored entries."""


def verify(log: Log, *, from_: str | int | None = None, progress: Progress | None = None) -> Verification:
    """Check ``log``: iterate the result for the findings (``for finding in run``), then read its summary.

    ``from_`` is a position (see :meth:`Log.resolve`): the records from there
    on are checked, the chain starting from the hash stored in the record
    before it. The type and stream counters are only checked from seq 1.
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
        # Set by the checker's start: where the chain starts, and the counters it stores.
        self.start_hash = b""
        self.start_ts = 0
        self.stored_types: dict[str, int] | None = None
        self.stored_streams: int | None = None
        self.counts_at = 0
        self.check_counts = True
        # Set by the records pass: what the events hold (up to ``counts_at``, the ``counted_`` ones).
        self.versions: dict[str, int] = {}
        self.stream_sum = self.id_sum = self.ids = 0
        self.counted_types: dict[str, int] = {}
        self.counted_streams = self.counted_id_sum = self.counted_ids = 0
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

    def _checker(self) -> Checker:
        backend = self.log.backend(check_format=False)
        if self.log.is_remote:
            from .backends.jetstream.backend import JetStreamBackend
            from .backends.jetstream.verify import JetStreamChecker

            assert isinstance(backend, JetStreamBackend)
            return JetStreamChecker(backend)
        from .backends.lmdb import LmdbBackend
        from .backends.lmdb.verify import LmdbChecker

        assert isinstance(backend, LmdbBackend)
        return LmdbChecker(backend)

    def _checks(self) -> Iterator[Finding]:
        checker = self._checker()
        # Resolved first: a position may read the log in its own transactions.
        self.first_seq = 1 if self._from is None else max(self.log.resolve(self._from), 1)
        yield from checker.start(self)
        yield from self._events(checker)
        yield from checker.indexes(self)
        if self.first_seq == 1 and self.check_counts:
            yield from self._counts()
        yield from checker.finish(self)
        self.complete = True

    def _events(self, checker: Checker) -> Iterator[Finding]:
        """The pass over the records: gaps, decoding, format, time, versions, the chain."""
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
        prev = chain = self.start_hash
        diverged = not prev
        prev_ts = self.start_ts
        expected, missing = first, 0
        counts_at = self.counts_at
        if counts_at < first:
            self._count(types, versions, id_sum, ids)
        for pairs in checker.records(first, last):
            found: list[Finding] = []
            for key, value in pairs:
                seq = from_bytes(key, "big")
                if seq != expected:
                    # Rare cases tested only here, off the common path. (A key
                    # that is not 8 bytes never reads as the seq it sorts at.)
                    if len(key) != 8:
                        found.append(foreign_key(key))
                        continue
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
                    continue
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
                    continue
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
            if checker.side:
                found.extend(checker.side)
                checker.side.clear()
            yield from found
            if expected - 1 == counts_at:
                self._count(types, versions, id_sum, ids)
            if self.progress is not None:
                self.progress(min(expected - 1, last) - first + 1 - missing, total)
        if expected <= last:
            yield _gap(expected, last)
        if counts_at >= expected:  # the range ended before the counters' seq (a gap): what was seen
            self._count(types, versions, id_sum, ids)
        self.events = max(min(expected - 1, last) - first + 1 - missing, 0)
        self.versions = versions
        self.stream_sum, self.id_sum, self.ids = stream_sum, id_sum, ids
        head = chain if diverged else prev
        self.head_hash = head.hex() if head else None
        self.stored_head_hash = prev.hex() if prev else None

    def _count(self, types: dict[str, int], versions: dict[str, int], id_sum: int, ids: int) -> None:
        """Keep what the events up to ``counts_at`` hold, for the counters stored as of there."""
        self.counted_types = dict(types)
        self.counted_streams = len(versions)
        self.counted_id_sum, self.counted_ids = id_sum, ids

    def _counts(self) -> Iterator[Finding]:
        """The stored type counts and streams count against what the log holds (up to ``counts_at``)."""
        stored, seen = self.stored_types or {}, self.counted_types
        for name in sorted(stored.keys() | seen.keys()):
            counted, held = stored.get(name, 0), seen.get(name, 0)
            if counted != held:
                yield Finding(None, f"the types index counts {counted} events of type {name!r}, the log holds {held}")
        if self.stored_streams != self.counted_streams:
            held = self.counted_streams
            yield Finding(None, f"the meta streams count is {self.stored_streams}, the log holds {held} streams")


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


def name(raw: bytes) -> str:
    """An index key as text: keys are UTF-8 names; a damaged one still gets a (never matching) str."""
    return raw.decode("utf-8", "surrogateescape")


def decode_fields(value: bytes) -> tuple[Any, ...] | None:
    """A record's fields, or None when it is not a readable record (the records pass names those)."""
    try:
        fields = msgpack.unpackb(value[:-HASH_SIZE], use_list=False)
    except DAMAGED:  # any damage to the bytes
        return None
    if type(fields) is tuple and len(fields) == 8 and fields[0] == RECORD_FORMAT:
        return fields
    return None


def sum_entries(entries: Iterable[tuple[str, int]]) -> tuple[int, int]:
    """The hash sum and count of index entries ``(name, seq)``, to compare with the records pass's sums."""
    total = count = 0
    for entry in entries:
        total += hash(entry)
        count += 1
    return total, count


def _gap(first: int, last: int) -> Finding:
    if first == last:
        return Finding(first, "is missing: the log has a gap here")
    return Finding(first, f"is missing, and every seq up to {last}: the log has a gap here")


def _not_a_record(seq: int, body: bytes) -> Finding:
    """What is wrong with a record the records pass could not take (decoded again: a rare path)."""
    try:
        fields = msgpack.unpackb(body, use_list=False)
    except DAMAGED as exc:  # any damage to the bytes
        return Finding(seq, f"cannot be decoded ({str(exc) or type(exc).__name__})")
    if type(fields) is tuple and fields and type(fields[0]) is int and fields[0] != RECORD_FORMAT:
        return Finding(seq, f"has record format {fields[0]}; this evlog knows format {RECORD_FORMAT}")
    if type(fields) is not tuple or len(fields) != 8:
        return Finding(seq, "is not an evlog record (not an array of 8 fields)")
    return Finding(seq, "has a field of the wrong kind (ts, type, stream, id, meta or data)")


def foreign_key(key: bytes) -> Finding:
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
