"""The :class:`Log`: append events, read them back, resolve positions, describe.

Appending is two steps. First every event is validated and its payload
encoded (:mod:`evlog.ingest`), outside any transaction. Then one write
transaction per batch reads the head, assigns seq (last + 1), time
(max(now, last ts)) and stream versions, checks ``expect`` and ids, and
writes the records with LMDB's append fast path. Seqs are assigned inside
the transaction, so concurrent appending processes produce a gapless log.

When an event in a batch cannot be written (an ``expect`` conflict, a time
before the log's last one), the events before it are committed and the run
stops with :class:`~evlog.errors.AppendStopped`, which says what was
written; with ``atomic=True`` nothing is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import lmdb

from . import scan
from .errors import (
    AppendStopped,
    BadInputError,
    ConflictError,
    DamagedLogError,
    EvlogError,
    PositionError,
    StorageError,
)
from .event import AppendSummary, Event
from .ingest import LINE, MAX_FUTURE, Pending, TimeGuard, check_json_value, from_mapping, prepare, stored_difference
from .record import (
    GENESIS_HASH,
    HASH_SIZE,
    HEAD_NO_VERSION,
    HEAD_VERSION,
    RECORD_FORMAT,
    blake2b,
    decode_body,
    key_seq,
    record_hash,
    seq_key,
)
from .store import U64, Store, default_log_path, parse_format
from .timefmt import format_ts

DEFAULT_BATCH = 10_000
_LIKELY_EPOCH = 1_000_000_000
"""A --from seq this large and past the head was surely meant as a Unix time (2001 or later)."""

Reject = Callable[[int | None, EvlogError, "bytes | None"], None]
"""Called with the input line number, the reason and the raw input of each skipped event."""
Duplicate = Callable[[Pending, int, "str | None"], None]
"""Called with each event whose id is in the log, that event's seq, and what differs (``data``…) or None."""


class BatchOutcome:
    """What one write transaction did with a batch of pending events."""

    def __init__(self) -> None:
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.count = 0
        self.head_seq = 0
        self.heads: dict[bytes, int] = {}
        self.written: list[Event] = []
        self.rejections: list[tuple[int | None, EvlogError, bytes | None]] = []
        self.duplicates: list[tuple[Pending, int, str | None]] = []  # (event, existing seq, what differs)
        self.stop: tuple[Pending, EvlogError] | None = None


class Log:
    """An evlog log (an LMDB environment directory).

    Use it as a context manager. Nothing is opened until first use; reading
    a log that does not exist raises :class:`~evlog.errors.LogNotFoundError`
    and creates nothing, appending creates it. Do not open the same log
    twice in one process, and do not carry an open log across ``fork()``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = os.fspath(path) if path is not None else default_log_path()
        self._store: Store | None = None
        self._heads: dict[bytes, int] = {}
        self._heads_seq = -1

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _open(self, *, create: bool = False, write: bool = False, check_format: bool = True) -> Store:
        """The store: read-only for reading, writable for ``write``, created for ``create``."""
        writable = create or write
        if self._store is not None and writable and not self._store.writable:
            # LMDB cannot open one environment twice in a process: close, then reopen writable;
            # when that fails (a log the user cannot write) the reader is opened again, so that
            # a caller who only wanted to write something optional (snapshots) can read on.
            self.close()
            try:
                self._store = Store(self.path, create=create, writable=True)
            except StorageError:
                self._store = Store(self.path, create=False, writable=False, check_format=check_format)
                raise
        if self._store is None:
            self._store = Store(self.path, create=create, writable=writable, check_format=check_format or writable)
        return self._store

    def store(self, *, write: bool = False, check_format: bool = True) -> Store:
        """The underlying :class:`~evlog.store.Store` of an existing log (for extensions).

        ``check_format=False`` opens a log whose format marker is damaged (for
        verify, which reports it); everything else refuses such a log.
        """
        return self._open(write=write, check_format=check_format)

    # -- appending ---------------------------------------------------------

    def append(
        self,
        type: str,
        data: Any = None,
        *,
        stream: str | None = None,
        meta: Mapping[str, Any] | None = None,
        id: str | None = None,
        expect: int | None = None,
    ) -> Event:
        """Append one event and return it as stored.

        ``data`` defaults to an empty object. If ``id`` names an event that is
        already in the log, nothing is appended and that event is returned
        (the append is idempotent). ``expect`` is the version the stream must
        be at (0: the stream must not exist yet), else :class:`ConflictError`.
        """
        if meta is not None and not isinstance(meta, Mapping):
            raise BadInputError(f'"meta" must be a mapping, not {type(meta).__name__}')
        event = prepare(
            type, {} if data is None else data, stream=stream, meta=dict(meta) if meta else None, id=id, expect=expect
        )
        outcome = self.write_batch([event], keep_events=True)
        if outcome.stop is not None:
            raise outcome.stop[1]
        if outcome.duplicates:
            existing = self.get(outcome.duplicates[0][1])
            assert existing is not None
            return existing
        return outcome.written[0]

    def append_many(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = DEFAULT_BATCH,
        atomic: bool = False,
        on_reject: Reject | None = None,
        max_future: float | None = MAX_FUTURE,
        strict_ids: bool = False,
    ) -> AppendSummary:
        """Append events given as mappings (the NDJSON input form) in batches.

        Each mapping has ``type`` and optionally ``stream``, ``data``,
        ``meta``, ``id``, ``expect``, ``ts``. An invalid event stops the run
        after committing the batches before it (:class:`AppendStopped`); with
        ``atomic=True`` everything is one transaction and nothing is written;
        with ``on_reject`` invalid events are passed to it and skipped.
        A ``ts`` more than ``max_future`` seconds ahead of the clock (None:
        any) is invalid; so, with ``strict_ids``, is an ``id`` already in the
        log for an event of other type, stream or data.
        """
        guard = TimeGuard(max_future)
        summary = AppendSummary()
        batch: list[Pending] = []
        size = max(1, batch_size) if not atomic else 0
        for number, item in enumerate(events, 1):
            try:
                mapping = dict(item)
                check_json_value(mapping, "the event", number)  # Python values, not parsed JSON
                event = from_mapping(mapping, number, None, None, None, guard)
            except BadInputError as exc:
                if on_reject is not None:
                    summary.skipped += 1
                    on_reject(number, exc, None)
                    continue
                if not atomic:
                    self.commit(batch, summary, on_reject=on_reject, strict_ids=strict_ids)
                    batch = []
                raise self.stopped(exc, summary, atomic=atomic) from None
            batch.append(event)
            if size and len(batch) >= size:
                self.commit(batch, summary, on_reject=on_reject, strict_ids=strict_ids)
                batch = []
        self.commit(batch, summary, atomic=atomic, on_reject=on_reject, strict_ids=strict_ids)
        return summary

    def commit(
        self,
        batch: Sequence[Pending],
        summary: AppendSummary,
        *,
        atomic: bool = False,
        on_reject: Reject | None = None,
        keep_events: bool = False,
        strict_ids: bool = False,
        on_duplicate: Duplicate | None = None,
    ) -> BatchOutcome:
        """Write ``batch`` in one transaction and add the result to ``summary``.

        Raises :class:`AppendStopped` (after committing the events before the
        bad one unless ``atomic``) when an event cannot be written.
        """
        if not batch:
            return BatchOutcome()
        outcome = self.write_batch(
            batch, atomic=atomic, on_reject=on_reject, keep_events=keep_events, strict_ids=strict_ids,
            on_duplicate=on_duplicate,
        )
        if outcome.count:
            if summary.first_seq is None:
                summary.first_seq = outcome.first_seq
            summary.last_seq = outcome.last_seq
            summary.appended += outcome.count
            summary.events.extend(outcome.written)
        summary.duplicates += len(outcome.duplicates)
        summary.skipped += len(outcome.rejections)
        if outcome.stop is not None:
            raise self.stopped(outcome.stop[1], summary, atomic=atomic, line=outcome.stop[0][LINE])
        return outcome

    @staticmethod
    def stopped(
        cause: EvlogError, summary: AppendSummary, *, atomic: bool, line: int | None = None
    ) -> AppendStopped:
        """The error that ends a bulk append, saying what was written before it."""
        where = line if line is not None else getattr(cause, "line", None)
        offset = getattr(cause, "offset", None)
        if where is not None:
            place = f"line {where}"
        elif offset is not None:
            place = f"byte offset {offset}"
        else:
            place = "that event"
        if where is not None and not str(cause).startswith("line "):
            cause = _with_line(cause, where)
        if atomic:
            note = f"stopped at {place}; --atomic: nothing was written"
        else:
            note = f"{summary.describe()}; stopped at {place}, nothing after it was written"
        return AppendStopped(cause, summary, note)

    def write_batch(
        self,
        batch: Sequence[Pending],
        *,
        atomic: bool = False,
        on_reject: Reject | None = None,
        keep_events: bool = False,
        strict_ids: bool = False,
        on_duplicate: Duplicate | None = None,
    ) -> BatchOutcome:
        """One write transaction for ``batch`` (already validated).

        ``keep_events`` returns the stored events in ``written`` (costly for
        bulk appends, so off unless asked for). With ``strict_ids`` an id
        already in the log for an event of other type, stream or data is a
        bad event (rejected or stopping the run), not a duplicate.
        """
        store = self._open(create=True)
        outcome = store.write(
            lambda txn: self._write(txn, store, batch, atomic, on_reject is not None, keep_events, strict_ids)
        )
        if on_reject is not None:
            # Reported after the commit: a retried transaction (map growth) must not report twice.
            for line, problem, raw in outcome.rejections:
                on_reject(line, problem, raw)
        if on_duplicate is not None:
            for item, seq, difference in outcome.duplicates:
                on_duplicate(item, seq, difference)
        # Committed: the stream heads seen are valid until another writer appends.
        self._heads, self._heads_seq = outcome.heads, outcome.head_seq
        outcome.heads = {}
        return outcome

    def _write(
        self,
        txn: lmdb.Transaction,
        store: Store,
        batch: Sequence[Pending],
        atomic: bool,
        skip_rejects: bool,
        keep_events: bool,
        strict_ids: bool = False,
    ) -> BatchOutcome:
        """The body of an append transaction; runs again from scratch on a retry."""
        dbs = store.dbs
        events_db, streams_db, ids_db = dbs[b"events"], dbs[b"streams"], dbs[b"ids"]
        outcome = BatchOutcome()
        cursor = txn.cursor(db=events_db)
        if cursor.last():
            last_seq = key_seq(cursor.key())
            last_ts = decode_body(cursor.value(), last_seq)[1]
            previous = record_hash(cursor.value())
        else:
            last_seq, last_ts, previous = 0, 0, GENESIS_HASH
        # Stream heads from our previous batch stay valid only if no other
        # process appended since; then they save an index look-up per event.
        heads = dict(self._heads) if last_seq == self._heads_seq and len(self._heads) < 1_000_000 else {}
        clock = time.time_ns
        rows: list[tuple[bytes, bytes]] = []
        index_rows: list[tuple[bytes, bytes]] = []
        new_ids: dict[bytes, bytes] = {}
        type_counts: dict[str, int] = {}
        new_streams = 0
        written = outcome.written
        # Hot loop of bulk appends: locals only, one tuple unpack per event.
        add_row, add_index_row, count_get = rows.append, index_rows.append, type_counts.get
        pack_seq, head_v, head_nov = seq_key, HEAD_VERSION.pack, HEAD_NO_VERSION.pack
        for item in batch:
            etype, stream, stream_key, tail, event_id, expect, ts, line, data_bytes, meta, raw = item
            id_key = None
            if event_id is not None:
                id_key = event_id.encode()
                existing = new_ids.get(id_key) or txn.get(id_key, db=ids_db)
                if existing is not None:
                    # Only duplicates pay for this: is the stored event the same one?
                    seq = key_seq(existing)
                    first_new = last_seq - len(rows) + 1
                    stored = rows[seq - first_new][1] if seq >= first_new else txn.get(existing, db=events_db)
                    difference = stored_difference(item, stored, seq)
                    if difference is None or not strict_ids:
                        outcome.duplicates.append((item, seq, difference))
                        continue
                    reused = BadInputError(
                        f"id {event_id!r} is already in the log at seq {seq} with other {difference}; "
                        "an id names one event (--strict-ids)",
                        line=line,
                    )
                    if not skip_rejects:
                        outcome.stop = (item, reused)
                        break
                    outcome.rejections.append((line, reused, raw))
                    continue
            problem: EvlogError | None = None
            version = None
            if stream_key is not None:
                head = heads.get(stream_key)
                if head is None:
                    head = _stream_head(txn, streams_db, stream_key)
                if expect is not None and expect != head:
                    problem = ConflictError(
                        f"stream {stream!r} is at version {head}, expected {expect}; "
                        "nothing was written for this event",
                        stream=stream or "",
                        expected=expect,
                        actual=head,
                    )
                version = head + 1
            if ts is None:
                # Each event gets the time it is written, so that a time position can
                # tell apart the events of one batch. (Not max(): this runs per event.)
                now = clock()
                ts = now if now > last_ts else last_ts
            elif ts < last_ts and problem is None:
                previous_event = "the previous event" if rows else "the last event in the log"
                problem = BadInputError(
                    f'"ts" {format_ts(ts)} is before {previous_event} ({format_ts(last_ts)}); '
                    "times in a log never go backwards",
                    line=line,
                )
            if problem is not None:
                if not skip_rejects:
                    outcome.stop = (item, problem)
                    break
                outcome.rejections.append((line, problem, raw))
                continue
            last_seq += 1
            key = pack_seq(last_seq)
            if version is None:
                body = head_nov(0x98, RECORD_FORMAT, 0xCF, ts, 0xC0) + tail
            else:
                assert stream_key is not None  # a version implies a stream
                body = head_v(0x98, RECORD_FORMAT, 0xCF, ts, 0xCF, version) + tail
                heads[stream_key] = version
                add_index_row((stream_key, key))
                if version == 1:
                    new_streams += 1
            previous = blake2b(previous + key + body, digest_size=HASH_SIZE).digest()
            add_row((key, body + previous))
            if id_key is not None:
                new_ids[id_key] = key
            type_counts[etype] = count_get(etype, 0) + 1
            last_ts = ts
            if keep_events:
                written.append(Event(last_seq, ts, etype, stream, version, event_id, meta, data_bytes))
        if outcome.stop is not None and atomic:
            raise self.stopped(outcome.stop[1], AppendSummary(), atomic=True, line=outcome.stop[0][LINE])
        if rows:
            outcome.count = len(rows)
            outcome.first_seq = last_seq - len(rows) + 1
            outcome.last_seq = last_seq
            added = txn.cursor(db=events_db).putmulti(rows, append=True)[1]
            if added != len(rows):
                raise StorageError(
                    f"{self.path}: the log's head moved during an append ({added} of {len(rows)} "
                    "records placed); nothing was written, retry"
                )
            txn.cursor(db=streams_db).putmulti(index_rows, dupdata=True)
            for key, value in new_ids.items():
                txn.put(key, value, db=ids_db)
            _add_counts(txn, dbs[b"types"], {name.encode(): count for name, count in type_counts.items()})
            if new_streams:
                _add_counts(txn, dbs[b"meta"], {b"streams": new_streams})
        outcome.heads, outcome.head_seq = heads, last_seq
        return outcome

    # -- reading -----------------------------------------------------------

    def get(self, seq: int) -> Event | None:
        """The event at ``seq``, or None when the log has none there."""
        if seq < 1:
            return None
        for event in self.read(from_=seq, until=seq):
            return event
        return None

    def head(self) -> int:
        """The last seq (0 for an empty log)."""
        return scan.head_seq(self._open(create=False))

    def range(self, from_: str | int | None = None, until: str | int | None = None) -> tuple[int, int]:
        """The seqs ``(first, last)`` that ``from_`` and ``until`` select (``last`` not beyond the head).

        Positions written as text (as people write them) are checked: a range
        that is empty because it is reversed (``--from 500 --until 400``), and
        a seq so far beyond the head that it was surely meant as a Unix time,
        raise :class:`PositionError`. Integer seqs are a program's own
        arithmetic and select nothing when reversed.
        """
        from .positions import parse_position, reversed_range

        store = self._open(create=False)
        head = scan.head_seq(store)
        if isinstance(from_, str) and isinstance(until, str):
            problem = reversed_range(parse_position(from_), parse_position(until))
            if problem is not None:
                raise PositionError(problem)
        first = self.resolve(from_)
        if isinstance(from_, str) and first > head + 1 and first >= _LIKELY_EPOCH:
            last_event = f"the last event (seq {head})" if head else "the end (the log is empty)"
            raise PositionError(
                f"--from seq {first} is beyond {last_event}; for a time, write it as a date or as @{first} "
                "(seconds since 1970)"
            )
        return first, min(self.resolve(until, end=True), head)

    def resolve(self, position: str | int | None, *, end: bool = False) -> int:
        """The seq a position names: the first at/after it, or with ``end`` the last at/before it.

        ``None`` is the start (or with ``end``, the head). The result may lie
        outside ``1..head`` when no event qualifies (0, or head + 1).
        """
        from .positions import parse_position

        store = self._open(create=False)
        last = scan.head_seq(store)
        if position is None:
            return last if end else 1
        parsed = parse_position(position)
        if parsed.kind == "seq":
            return int(parsed.value)
        if parsed.kind == "from_end":
            return max(last - int(parsed.value) + 1, 0 if end else 1)
        if parsed.kind == "id":
            with store.reading() as txn:
                found = txn.get(str(parsed.value).encode(), db=store.dbs[b"ids"])
                if found is None:
                    raise PositionError(f"no event has id {parsed.value!r}")
                return key_seq(bytes(found))
        ns = int(parsed.value)
        if end:
            return scan.last_seq_at_or_before(store, ns, last)
        return scan.first_seq_at_or_after(store, ns, last)

    def rows(
        self,
        *,
        from_: str | int | None = None,
        until: str | int | None = None,
        streams: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        progress: scan.Progress | None = None,
    ) -> Iterator[scan.Row]:
        """Like :meth:`read` but yields ``(seq, envelope)`` tuples: for fast renderers."""
        store = self._open(create=False)
        first, last = self.range(from_, until)
        if first > last:
            return iter(())
        type_test = scan.matcher(types)
        if streams and not any(scan.is_glob(name) for name in streams):
            seqs = scan.merged_stream_seqs(store, streams, first, last)
            return scan.rows_by_seq(store, seqs, types=type_test, progress=progress)
        return scan.scan(store, first, last, types=type_test, streams=scan.matcher(streams), progress=progress)

    def read(
        self,
        *,
        from_: str | int | None = None,
        until: str | int | None = None,
        streams: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        progress: scan.Progress | None = None,
    ) -> Iterator[Event]:
        """Events in seq order, lazily and in constant memory.

        ``from_`` and ``until`` are positions (see :mod:`evlog.positions`),
        both inclusive. ``streams`` and ``types`` are names or shell globs
        (``order.*``, ``user-*0``, ``account-[12]``). ``progress`` is
        called after each chunk read with ``(done, total)``: the seqs of the
        range read so far and all of them, or, reading named streams
        through the stream index, the events read and None.
        """
        for seq, (_, ts, version, etype, stream, id_, meta, data) in self.rows(
            from_=from_, until=until, streams=streams, types=types, progress=progress
        ):
            yield Event(seq, ts, etype, stream, version, id_, meta, data)

    def types(self) -> dict[str, int]:
        """Each event type in the log with its number of events, by name."""
        store = self._open(create=False)
        with store.reading() as txn:
            return type_counts(txn, store.dbs[b"types"])

    def info(self) -> dict[str, Any]:
        """Facts about the log: counts, first and last event, head hash, format."""
        store = self._open(create=False)
        dbs = store.dbs
        with store.reading() as txn:
            cursor = txn.cursor(db=dbs[b"events"])
            first = last = None
            count = txn.stat(dbs[b"events"])["entries"]
            if cursor.first():
                first_seq = key_seq(bytes(cursor.key()))
                first = (first_seq, decode_body(cursor.value(), first_seq)[1])
                cursor.last()
                last_seq = key_seq(bytes(cursor.key()))
                last = (last_seq, decode_body(cursor.value(), last_seq)[1], record_hash(cursor.value()))
            types = type_counts(txn, dbs[b"types"])
            streams_count = _meta_counter(store.meta(txn, b"streams"), "streams count")
            created = _meta_counter(store.meta(txn, b"created"), "creation time")
            log_id = _meta_text(store.meta(txn, b"log_id"), "log id")
            log_format = parse_format(store.meta(txn, b"format") or b"")
        size = sum(
            os.path.getsize(os.path.join(self.path, name))
            for name in ("data.mdb", "lock.mdb")
            if os.path.exists(os.path.join(self.path, name))
        )
        return {
            "path": os.path.abspath(self.path),
            "size_bytes": size,
            "events": count,
            "first_seq": first[0] if first else None,
            "last_seq": last[0] if last else None,
            "first_ts": format_ts(first[1]) if first else None,
            "last_ts": format_ts(last[1]) if last else None,
            "streams": streams_count or 0,
            "types": dict(sorted(types.items(), key=lambda item: (-item[1], item[0]))),
            "format": log_format,
            "log_id": log_id,
            "created": format_ts(created) if created is not None else None,
            "head_hash": (last[2] if last else GENESIS_HASH).hex(),
        }


def type_counts(txn: lmdb.Transaction, types_db: Any) -> dict[str, int]:
    """The stored count of each event type, read in ``txn``; a bad name or count is damage."""
    counts: dict[str, int] = {}
    for key, value in txn.cursor(db=types_db):
        try:
            name = bytes(key).decode()
        except UnicodeDecodeError:
            raise DamagedLogError(f"the types index has a name that is not UTF-8: {bytes(key)[:40]!r}") from None
        if len(value) != 8:
            raise DamagedLogError(f"the types index counts {name!r} in {len(value)} bytes, not 8")
        counts[name] = U64.unpack(bytes(value))[0]
    return counts


def _meta_counter(raw: bytes | None, what: str) -> int | None:
    """An 8-byte counter of the ``meta`` database (None when absent)."""
    if raw is None:
        return None
    if len(raw) != 8:
        raise DamagedLogError(f"the meta {what} is {len(raw)} bytes, not 8")
    return int(U64.unpack(raw)[0])


def _meta_text(raw: bytes | None, what: str) -> str:
    if raw is None:
        return ""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise DamagedLogError(f"the meta {what} is not UTF-8 text") from None


def _with_line(cause: EvlogError, line: int) -> EvlogError:
    """The same error, its message prefixed with the input line it came from."""
    cause.args = (f"line {line}: {cause}",)
    return cause


def _add_counts(txn: lmdb.Transaction, db: Any, increments: Mapping[bytes, int]) -> None:
    """Add to the 8-byte big-endian counters stored under each key."""
    for key, increment in increments.items():
        old = txn.get(key, db=db)
        if old is not None and len(old) != 8:
            raise DamagedLogError(f"the counter of {key.decode(errors='replace')!r} is {len(old)} bytes, not 8")
        txn.put(key, U64.pack((U64.unpack(old)[0] if old else 0) + increment), db=db)


def _stream_head(txn: lmdb.Transaction, streams_db: Any, stream_key: bytes) -> int:
    """A stream's version: the number of its events in the index (0 when new)."""
    cursor = txn.cursor(db=streams_db)
    return int(cursor.count()) if cursor.set_key(stream_key) else 0
