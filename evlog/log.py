"""The :class:`Log`: append events, read them back, resolve positions, describe.

A log lives in a backend (:mod:`evlog.backends`): an LMDB directory on this
machine, or a JetStream stream on a NATS server. This class is the same over
both; it opens the backend its location names on first use.

Appending is two steps. First every event is validated and its payload
encoded (:mod:`evlog.ingest`), outside any transaction. Then each batch is
written against the log's head (:mod:`evlog.batch`), which assigns seq
(last + 1), time (never before the last one) and stream versions and checks
``expect`` and ids, in a write the backend guarantees no other writer can
interleave with, so concurrent appending processes produce a gapless log.

When an event in a batch cannot be written (an ``expect`` conflict, a time
before the log's last one), the events before it are committed and the run
stops with :class:`~evlog.errors.AppendStopped`, which says what was
written; with ``atomic=True`` nothing is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import scan
from .backends import Backend, is_url, open_backend
from .batch import BatchOutcome, stopped, write_batch
from .errors import AppendStopped, BadInputError, EvlogError, PositionError, StorageError, UsageError
from .event import AppendSummary, Event
from .ingest import LINE, MAX_FUTURE, Pending, TimeGuard, check_json_value, from_mapping, prepare

if TYPE_CHECKING:
    from .backends.lmdb.store import Store

DEFAULT_BATCH = 10_000
_LIKELY_EPOCH = 1_000_000_000
"""A --from seq this large and past the head was surely meant as a Unix time (2001 or later)."""

Reject = Callable[[int | None, EvlogError, "bytes | None"], None]
"""Called with the input line number, the reason and the raw input of each skipped event."""
Duplicate = Callable[[Pending, int, "str | None"], None]
"""Called with each event whose id is in the log, that event's seq, and what differs (``data``…) or None."""


def default_log_path() -> str:
    """``$EVLOG_PATH``, else ``./events.lmdb``."""
    return os.environ.get("EVLOG_PATH") or "events.lmdb"


class Log:
    """An evlog log: an LMDB environment directory, or a ``nats://`` URL.

    Use it as a context manager. Nothing is opened until first use; reading
    a log that does not exist raises :class:`~evlog.errors.LogNotFoundError`
    and creates nothing, appending creates it. Do not open the same log
    twice in one process, and do not carry an open log across ``fork()``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = os.fspath(path) if path is not None else default_log_path()
        self._backend: Backend | None = None
        self._heads: dict[bytes, int] = {}
        self._heads_seq = -1

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    @property
    def is_remote(self) -> bool:
        """Whether the log is on a server (a ``nats://`` URL) rather than in a local directory."""
        return is_url(self.path)

    def _open(self, *, create: bool = False, write: bool = False, check_format: bool = True) -> Backend:
        """The backend: read-only for reading, writable for ``write``, created for ``create``."""
        writable = create or write
        if self._backend is not None and writable and not self._backend.writable:
            # LMDB cannot open one environment twice in a process: close, then reopen writable;
            # when that fails (a log the user cannot write) the reader is opened again, so that
            # a caller who only wanted to write something optional (snapshots) can read on.
            self.close()
            try:
                self._backend = open_backend(self.path, create=create, writable=True)
            except StorageError:
                self._backend = open_backend(self.path, create=False, writable=False, check_format=check_format)
                raise
        if self._backend is None:
            self._backend = open_backend(
                self.path, create=create, writable=writable, check_format=check_format or writable
            )
        return self._backend

    def backend(self, *, write: bool = False, check_format: bool = True) -> Backend:
        """The open backend of an existing log (for the modules that read through it).

        ``check_format=False`` opens a log whose marker is damaged or whose
        stream config was changed (for verify, which reports it).
        """
        return self._open(write=write, check_format=check_format)

    def store(self, *, write: bool = False, check_format: bool = True) -> Store:
        """The LMDB :class:`~evlog.backends.lmdb.store.Store` of an existing local log (for extensions).

        ``check_format=False`` opens a log whose format marker is damaged (for
        verify, which reports it); everything else refuses such a log. What
        needs it is built for a log on a server through the backend; the rest
        says so (:class:`UsageError`).
        """
        backend = self._open(write=write, check_format=check_format)
        store: Store | None = getattr(backend, "store", None)
        if store is None:
            raise UsageError(
                f"this command is not yet available for a log on a NATS server ({backend.location}); "
                "it works on a local log (evlog backup copies one down)"
            )
        return store

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
        limit: int | None = getattr(self._open(create=True), "max_batch", None)
        if limit is not None and len(batch) > limit and not atomic:
            # Commit by commit, each counted as it lands: a failure later must not hide what was written.
            for start in range(0, len(batch), limit):
                part = batch[start:start + limit]
                try:
                    outcome = self.commit(
                        part, summary, on_reject=on_reject, keep_events=keep_events, strict_ids=strict_ids,
                        on_duplicate=on_duplicate,
                    )
                except StorageError as exc:
                    if not summary.appended:
                        raise
                    raise self.stopped(exc, summary, atomic=False, line=part[0][LINE]) from exc
            return outcome
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
        return stopped(cause, summary, atomic=atomic, line=line)

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
        backend = self._open(create=True)
        limit: int | None = getattr(backend, "max_batch", None)
        if limit is not None and len(batch) > limit:
            if atomic:
                raise UsageError(
                    f"--atomic: a log on a NATS server commits at most {limit} events at once "
                    f"(the server's limit for an atomic batch), and this input has more; "
                    "append without --atomic, or split the input"
                )
            return self._write_in_parts(
                batch, limit, on_reject=on_reject, keep_events=keep_events, strict_ids=strict_ids,
                on_duplicate=on_duplicate,
            )
        cached = (self._heads_seq, self._heads)
        outcome = backend.write(
            lambda txn: write_batch(
                txn, batch, atomic=atomic, skip_rejects=on_reject is not None, keep_events=keep_events,
                strict_ids=strict_ids, cached_heads=cached,
            )
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

    def _write_in_parts(
        self,
        batch: Sequence[Pending],
        limit: int,
        *,
        on_reject: Reject | None,
        keep_events: bool,
        strict_ids: bool,
        on_duplicate: Duplicate | None,
    ) -> BatchOutcome:
        """A batch larger than the backend commits at once, as consecutive commits of ``limit`` events.

        Not atomic (``--atomic`` is refused before this), as a bulk append's
        batches never are: each part is committed before the next is written,
        and a part that stops the run leaves the later ones unwritten.
        """
        total = BatchOutcome()
        for start in range(0, len(batch), limit):
            part = self.write_batch(
                batch[start:start + limit], on_reject=on_reject, keep_events=keep_events, strict_ids=strict_ids,
                on_duplicate=on_duplicate,
            )
            if part.count:
                total.first_seq = part.first_seq if total.first_seq is None else total.first_seq
                total.last_seq = part.last_seq
                total.count += part.count
            total.head_seq = part.head_seq
            total.written.extend(part.written)
            total.rejections.extend(part.rejections)
            total.duplicates.extend(part.duplicates)
            if part.stop is not None:
                total.stop = part.stop
                break
        return total

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
        return self._open(create=False).head()

    def range(self, from_: str | int | None = None, until: str | int | None = None) -> tuple[int, int]:
        """The seqs ``(first, last)`` that ``from_`` and ``until`` select (``last`` not beyond the head).

        Positions written as text (as people write them) are checked: a range
        that is empty because it is reversed (``--from 500 --until 400``), and
        a seq so far beyond the head that it was surely meant as a Unix time,
        raise :class:`PositionError`. Integer seqs are a program's own
        arithmetic and select nothing when reversed.
        """
        from .positions import parse_position, reversed_range

        head = self._open(create=False).head()
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

        backend = self._open(create=False)
        last = backend.head()
        if position is None:
            return last if end else 1
        parsed = parse_position(position)
        if parsed.kind == "seq":
            return int(parsed.value)
        if parsed.kind == "from_end":
            return max(last - int(parsed.value) + 1, 0 if end else 1)
        if parsed.kind == "id":
            found = backend.id_seq(str(parsed.value))
            if found is None:
                raise PositionError(f"no event has id {parsed.value!r}")
            return found
        ns = int(parsed.value)
        if end:
            return scan.last_seq_at_or_before(backend, ns, last)
        return scan.first_seq_at_or_after(backend, ns, last)

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
        backend = self._open(create=False)
        first, last = self.range(from_, until)
        if first > last:
            return iter(())
        type_test = scan.matcher(types)
        if streams and not any(scan.is_glob(name) for name in streams):
            seqs = scan.merged_stream_seqs(backend, streams, first, last)
            return backend.rows_by_seq(seqs, types=type_test, progress=progress)
        return backend.rows(first, last, types=type_test, streams=scan.matcher(streams), progress=progress)

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
        return self._open(create=False).type_counts()

    def info(self) -> dict[str, Any]:
        """Facts about the log: counts, first and last event, head hash, format.

        ``path`` is where the log is (a directory, or a server URL without its
        credentials); ``size_bytes`` what it takes there.
        """
        return self._open(create=False).describe()
