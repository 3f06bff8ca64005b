"""Bulk appends from a file descriptor: NDJSON lines or msgpack maps, batched live.

Input is read in large chunks and parsed line by line outside any
transaction. A batch is committed when it reaches ``batch_size`` events, and
also once its oldest event has waited ``max_delay`` (about 20 ms): a live
producer's events then become visible at once, while a file still loads in
large transactions. While waiting for input no write transaction is open,
because LMDB has one writer at a time and a waiting writer cannot be
interrupted.

Stopping is exact: at the first bad input the events before it are
committed and :class:`~evlog.errors.AppendStopped` says what was written.

Reading is linear in the input however long its lines: a line that spans
chunks is gathered as a list of pieces and joined once, when its end
arrives. A line longer than ``max_line`` is bad input like any other, and
is dropped as it is read, never held whole.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import orjson

from .errors import AppendStopped, BadInputError, EvlogError, StorageError
from .event import AppendSummary, Event
from .ingest import (
    LINE,
    MAX_DEPTH,
    MAX_FUTURE,
    Pending,
    TimeGuard,
    check_depth,
    check_json_value,
    encode_data,
    exact_json,
    from_mapping,
    may_need_exact_json,
    pending,
)
from .log import DEFAULT_BATCH, Log, Reject

READ_SIZE = 1 << 20
MAX_DELAY = 0.02
MAX_LINE = 64 << 20
"""The longest input line (or msgpack item) in bytes, by default (``--max-line``)."""
_BOM = b"\xef\xbb\xbf"
# Stands in the list of lines for a line over the limit: no real line holds
# a newline, so only the parse-error path needs to look for it.
_OVERLONG = b"\n"

Placed = list["Event | int"]
"""The events of a committed batch in input order: each a new Event, or the seq of one already there by id."""
ReusedId = Callable[[int | None, str, int, str], None]
"""Called with the line, id, existing seq and what differs for an id given again with other content."""


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a batch is taken and committed.

    A handler that raises (Ctrl-C's KeyboardInterrupt, the command's SIGTERM
    handler) then runs only after the commit, so an interrupted append has
    either written a batch whole or kept it pending, to be committed by the
    caller's clean-up; never lost half-way.
    """
    deferred = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, deferred)
    except (AttributeError, ValueError, OSError):  # no sigmask here (not POSIX, or not main thread)
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _Reader:
    """Reads a descriptor, waiting at most a given time when asked to."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.can_wait = True

    def read(self, timeout: float | None) -> bytes | None:
        """Bytes read, ``b""`` at end of input, None when ``timeout`` passed first."""
        if timeout is not None and self.can_wait:
            try:
                ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
            except (OSError, ValueError):
                self.can_wait = False  # not selectable: read blocking, commit by size
            else:
                if not ready:
                    return None
        return os.read(self.fd, READ_SIZE)


class Feeder:
    """Appends what a descriptor delivers to a log, in live batches.

    The NDJSON and msgpack front ends below turn input items into
    :data:`~evlog.ingest.Pending` events with their line numbers.
    ``progress`` is called with the size in bytes of each chunk of input
    once its events are taken (added to the batch or committed), and
    ``on_commit`` after each commit (also the one before a stop) with the
    summary so far and, with ``keep_events``, the batch's events in input
    order (:data:`Placed`). ``max_line`` bounds a line (or msgpack item) in
    bytes, ``max_future`` how far ahead of the clock a given ``ts`` may be
    (seconds, None: any); ``strict_ids`` refuses an id given again with
    other content, which otherwise is a duplicate reported to ``on_reused_id``.
    """

    def __init__(
        self,
        log: Log,
        *,
        batch_size: int = DEFAULT_BATCH,
        atomic: bool = False,
        on_reject: Reject | None = None,
        keep_events: bool = False,
        max_delay: float = MAX_DELAY,
        on_commit: Callable[[AppendSummary, Placed], None] | None = None,
        progress: Callable[[int], None] | None = None,
        max_line: int = MAX_LINE,
        max_future: float | None = MAX_FUTURE,
        strict_ids: bool = False,
        on_reused_id: ReusedId | None = None,
    ) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be at least 1 byte, not {max_line}")
        self.log = log
        self.batch_size = max(1, batch_size)
        self.atomic = atomic
        self.on_reject = on_reject
        self.keep_events = keep_events
        self.max_delay = max_delay
        self.on_commit = on_commit
        self.progress = progress
        self.max_line = max_line
        self.time_guard = TimeGuard(max_future, check_units=True)
        self.strict_ids = strict_ids
        self.on_reused_id = on_reused_id
        self.summary = AppendSummary()
        self.batch: list[Pending] = []
        self.deadline: float | None = None
        # Of the batch being committed: line -> seq of duplicates, and lines rejected by the transaction.
        self._duplicate_seqs: dict[int | None, int] = {}
        self._rejected_lines: set[int | None] = set()

    def add(self, event: Pending) -> None:
        self.batch.append(event)
        if self.deadline is None:
            self.deadline = time.monotonic() + self.max_delay
        if not self.atomic and len(self.batch) >= self.batch_size:
            self.flush()

    def start_clock(self) -> None:
        """Note that events are pending: they must be committed within ``max_delay``."""
        if self.deadline is None and self.batch:
            self.deadline = time.monotonic() + self.max_delay

    def reject(self, error: BadInputError, raw: bytes | None) -> None:
        """An item failed validation: skip it, or commit what came before and stop."""
        if self.on_reject is not None:
            self.summary.skipped += 1
            self.on_reject(error.line, error, raw)
            return
        if not self.atomic:
            self.flush()
        raise Log.stopped(error, self.summary, atomic=self.atomic)

    def flush(self, *, final: bool = False) -> None:
        """Commit the pending batch (with ``atomic``, only the final one)."""
        if self.atomic and not final:
            return
        with _signals_deferred():
            # Taken in place: the NDJSON loop holds a reference to this list.
            batch = self.batch.copy()
            self.batch.clear()
            self.deadline = None
            if batch:
                already = len(self.summary.events)
                self._duplicate_seqs.clear()
                self._rejected_lines.clear()
                try:
                    self.log.commit(
                        batch, self.summary, atomic=self.atomic,
                        on_reject=self._rejected if self.on_reject is not None else None,
                        keep_events=self.keep_events, strict_ids=self.strict_ids, on_duplicate=self._duplicate,
                    )
                except StorageError as exc:
                    if self.atomic or not self.summary.appended:
                        written = "nothing was written"
                    else:
                        written = f"{self.summary.describe()} before it; the batch being written was not"
                    raise AppendStopped(exc, self.summary, written) from exc
                except AppendStopped:
                    self._committed(batch, already)  # the events before the stop were written
                    raise
                self._committed(batch, already)

    def _rejected(self, line: int | None, error: EvlogError, raw: bytes | None) -> None:
        self._rejected_lines.add(line)
        assert self.on_reject is not None
        self.on_reject(line, error, raw)

    def _duplicate(self, event: Pending, seq: int, difference: str | None) -> None:
        self._duplicate_seqs[event[LINE]] = seq
        if difference is not None and self.on_reused_id is not None:
            self.on_reused_id(event[LINE], event[4] or "", seq, difference)

    def _committed(self, batch: list[Pending], already: int) -> None:
        """Hand the commit to ``on_commit``: the new events, and duplicates' seqs, in input order."""
        if self.on_commit is not None:
            written = self.summary.events[already:]
            placed: Placed
            if self.keep_events and (self._duplicate_seqs or self._rejected_lines):
                placed = _in_input_order(batch, written, self._duplicate_seqs, self._rejected_lines)
            else:
                placed = list(written)
            self.on_commit(self.summary, placed)
        if not self.keep_events:
            del self.summary.events[already:]

    def timeout(self) -> float | None:
        """How long the next read may wait before the pending batch is due."""
        if self.atomic or self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def chunks(self, fd: int) -> Iterator[bytes]:
        """Input chunks; commits the pending batch whenever it falls due."""
        reader = _Reader(fd)
        while True:
            timeout = self.timeout()
            if timeout is not None and timeout <= 0:
                self.flush()
                timeout = None
            data = reader.read(timeout)
            if data is None:
                self.flush()
                continue
            if not data:
                return
            yield data
            if self.progress is not None:  # once per chunk (up to 1 MiB), never per event
                self.progress(len(data))


def _in_input_order(
    batch: list[Pending], written: list[Event], duplicates: dict[int | None, int], rejected: set[int | None]
) -> Placed:
    """Each event of a committed batch in input order: the written Event or the duplicate's seq.

    The transaction writes events in batch order and skips duplicates and
    rejected events, so the written ones pair with the others in turn; at a
    stop the written events run out.
    """
    placed: Placed = []
    new = iter(written)
    for event in batch:
        line = event[LINE]
        if line in duplicates:
            placed.append(duplicates[line])
        elif line not in rejected:
            stored = next(new, None)
            if stored is None:
                break
            placed.append(stored)
    return placed


def feed_ndjson(
    feeder: Feeder,
    fd: int,
    *,
    data_type: str | None = None,
    default_stream: str | None = None,
    default_meta: dict[str, Any] | None = None,
) -> AppendSummary:
    """Append NDJSON lines read from ``fd``; with ``data_type`` each line is the data of one event.

    Blank lines, a UTF-8 byte-order mark and CRLF line ends are accepted.
    """
    convert = _converter(data_type, default_stream, default_meta, feeder.time_guard)
    keep_raw = feeder.on_reject is not None
    guard = feeder.time_guard
    loads, decode_error, long_digits = orjson.loads, orjson.JSONDecodeError, may_need_exact_json
    batch = feeder.batch
    size = feeder.batch_size if not feeder.atomic else 0
    number = 0
    deep_enough = 2 * MAX_DEPTH  # only a line this long can nest too deep
    # The loop below runs once per input line: the common case is inlined and
    # uses only fast locals (no closure cells, no wrapper call).
    for lines, long_digits_in_chunk in _line_chunks(feeder, fd):
        for raw in lines:
            number += 1
            try:
                value = loads(raw)
            except decode_error as exc:
                if raw == _OVERLONG:
                    feeder.reject(BadInputError(_overlong(feeder.max_line, "the line"), line=number), None)
                elif raw.strip():
                    feeder.reject(BadInputError(f"not valid JSON ({exc})", line=number), raw)
                continue  # blank lines (and CR-only ones) are skipped
            try:
                if long_digits_in_chunk and long_digits(raw):
                    value = exact_json(raw, number)
                if len(raw) > deep_enough:
                    check_depth(value, number)
                if data_type is None:
                    event = from_mapping(
                        value, number, default_stream, default_meta, raw if keep_raw else None, guard
                    )
                else:
                    event = convert(value, number, raw if keep_raw else None)
            except BadInputError as exc:
                feeder.reject(exc, raw)
                continue
            batch.append(event)
            if len(batch) == size:
                feeder.flush()
    feeder.flush(final=True)
    return feeder.summary


def _line_chunks(feeder: Feeder, fd: int) -> Iterator[tuple[list[bytes], bool]]:
    """The input's lines, a chunk at a time, with whether the chunk has a 19-digit run.

    One digit search per chunk; the rare chunk with a hit gets its lines
    searched one by one (see :func:`evlog.ingest.exact_json`). A line that
    goes on past its chunk is kept as pieces, joined once its end arrives, so
    every byte is copied and searched a fixed number of times. A line longer
    than ``feeder.max_line`` becomes :data:`_OVERLONG` and the rest of it is
    dropped as it arrives.
    """
    limit = feeder.max_line
    pieces: list[bytes] = []  # the line being read, when it began in an earlier chunk
    pending = 0  # their length
    skipping = False  # inside an over-long line: drop input up to its end
    first = True
    for chunk in feeder.chunks(fd):
        if first and chunk.startswith(_BOM):
            chunk = chunk[len(_BOM) :]
        first = False
        if skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                continue
            chunk = chunk[cut + 1 :]
            skipping = False
        if not chunk:  # a chunk that was only a byte-order mark or an over-long line's end
            continue
        if b"\n" not in chunk:
            if pending + len(chunk) > limit:
                pieces.clear()
                pending, skipping = 0, True
                yield [_OVERLONG], False
            else:
                pieces.append(chunk)
                pending += len(chunk)
            continue
        if pieces:
            pieces.append(chunk)
            text = b"".join(pieces)
            pieces.clear()
        else:
            text = chunk
        lines = text.split(b"\n")
        rest = lines.pop()
        if len(text) > limit:  # never with the default limit and ordinary lines: 64 MiB against 1 MiB chunks
            lines = [_OVERLONG if len(line) > limit else line for line in lines]
            if len(rest) > limit:
                lines.append(_OVERLONG)
                rest, skipping = b"", True
        if rest:
            pieces.append(rest)
        pending = len(rest)
        yield lines, may_need_exact_json(text)
        feeder.start_clock()
    if pieces:
        rest = b"".join(pieces)
        yield [rest], may_need_exact_json(rest)


def _overlong(limit: int, what: str) -> str:
    return f"{what} is longer than {format_size(limit)}, the limit; it was not read (--max-line raises the limit)"


def format_size(size: int) -> str:
    """``67108864`` -> ``64 MiB``: bytes in the largest binary unit that divides them, else in bytes."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size:,} bytes"


def _converter(
    data_type: str | None, default_stream: str | None, default_meta: dict[str, Any] | None, guard: TimeGuard
) -> Callable[[Any, int, bytes | None], Pending]:
    """Input value -> Pending: an event object, or with ``data_type`` the data of one."""
    if data_type is None:

        def event_of(value: Any, number: int, raw: bytes | None) -> Pending:
            return from_mapping(value, number, default_stream, default_meta, raw, guard)

        return event_of

    def data_of(value: Any, number: int, raw: bytes | None) -> Pending:
        return pending(
            data_type, default_stream, encode_data(value, number), default_meta, None, None, None, number, raw
        )

    return data_of


def feed_msgpack(
    feeder: Feeder,
    fd: int,
    *,
    data_type: str | None = None,
    default_stream: str | None = None,
    default_meta: dict[str, Any] | None = None,
) -> AppendSummary:
    """Append a stream of msgpack maps read from ``fd`` (errors name the byte offset)."""
    convert = _converter(data_type, default_stream, default_meta, feeder.time_guard)
    limit = feeder.max_line
    # Holds at most the item being read (checked after each chunk) and one chunk.
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=limit + READ_SIZE)
    fed = 0
    number = 0
    consumed = 0  # where the item being read starts: the end of the last whole one

    def fail(reason: str, offset: int) -> None:
        feeder.reject(BadInputError(f"{reason} (event {number + 1})", offset=offset), None)

    for chunk in feeder.chunks(fd):
        unpacker.feed(chunk)
        fed += len(chunk)
        while True:
            offset = consumed
            try:
                value = unpacker.unpack()
            except msgpack.OutOfData:
                break
            except (ValueError, msgpack.FormatError, msgpack.StackError) as exc:
                # A msgpack stream cannot be resynchronised after a bad item:
                # stop even when invalid input is being skipped.
                feeder.on_reject = None
                reason = "a map key is not text" if "strict_map_key" in str(exc) else f"not valid msgpack ({exc})"
                fail(reason, offset)
            consumed = unpacker.tell()
            number += 1
            if consumed - offset > limit:
                # Stops even when skipping: an item found too long while it still arrives
                # cannot be skipped (its end is unknown), and chunking must not decide.
                feeder.on_reject = None
                feeder.reject(BadInputError(_overlong(limit, f"event {number}"), offset=offset), None)
            try:
                _check_json_compatible(value, number)
                event = convert(value, number, None)
            except BadInputError as exc:
                feeder.reject(BadInputError(f"{exc.reason} (event {number})", offset=offset), None)
                continue
            feeder.add(event)
        if fed - consumed > limit:  # an item still arriving is already too long: stop before holding it all
            feeder.on_reject = None
            feeder.reject(BadInputError(_overlong(limit, f"event {number + 1}"), offset=consumed), None)
    if consumed < fed:
        fail("truncated msgpack: the input ends inside an item", consumed)
    feeder.flush(final=True)
    return feeder.summary


def _check_json_compatible(value: Any, number: int) -> None:
    """msgpack can carry what JSON cannot (bytes, non-text keys, NaN); such input is refused."""
    check_json_value(value, "the event", number)


def reject_printer(write: Callable[[str], Any]) -> Reject:
    """An ``on_reject`` that writes ``line N: reason`` lines through ``write``."""

    def on_reject(line: int | None, error: EvlogError, raw: bytes | None) -> None:
        text = str(error)
        if line is not None and not text.startswith(f"line {line}:"):
            text = f"line {line}: {text}"
        write(f"evlog: skipped: {text}\n")

    return on_reject


def reject_recorder(out: Any) -> Reject:
    """An ``on_reject`` that writes each rejected input as NDJSON to a binary file."""

    def on_reject(line: int | None, error: EvlogError, raw: bytes | None) -> None:
        reason = getattr(error, "reason", str(error))
        text = raw.decode("utf-8", "replace") if raw is not None else None
        out.write(orjson.dumps({"line": line, "reason": reason, "input": text}, option=orjson.OPT_APPEND_NEWLINE))

    return on_reject

