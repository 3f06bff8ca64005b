"""Overviews of a log: events over time, top types and streams, and each stream's summary.

:func:`stats` answers "what is in this log (or this part of it)?" without
reading more than it must. Times never decrease along the seqs, so without
stream or type filters the number of events in a time bin is the difference
of two seqs found by binary search. Over the whole log the type and stream
counts are the backend's (:meth:`~evlog.backends.Backend.totals`: on LMDB
the ``types`` counters and the number of duplicates under each key of the
stream index; on a server the derived index and the per-subject message
counts), so no record is read at all.
A sub-range, or a selection by stream or type, is one scan of the records'
headers (payloads stay undecoded) that counts types and streams and keeps a
histogram of times in bounded memory.

Bins start at the data: the first bin at the second of the first selected
event, each next one a bin size later, so the first bar holds a whole bin
of events and a quiet start is never drawn as a dip. (Bins aligned to round
times would start before the first event, and its bar would be partly
empty.) The UTC offset used for labels is fixed at the first event of the
range; across a daylight-saving change the labels shift by the hour that
really passed. :func:`stream_summaries` lists the stream index:
each stream's version and its first and last seq and time.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .backends import Backend, StreamEntry, Totals
from .errors import UsageError
from .log import Log
from .timefmt import format_ts

NS = 1_000_000_000
DAY = 86_400
TOP = 10
MAX_BINS = 32
"""At most this many bins: one line each in the drawn chart, so it fits a terminal, while
a month still gets a bin per day, a day one per hour and an hour one per two minutes."""

BIN_SIZES = (
    1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200,
    DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY, 91 * DAY, 182 * DAY, 364 * DAY,
)
"""Bin sizes in seconds. Every size from each :data:`_BUCKET_SIZES` step on is a multiple of it."""

_BUCKET_SIZES = (1, 60, 3600, DAY, 7 * DAY, 364 * DAY)
"""The histogram of a scan coarsens along these sizes, each a multiple of the one before."""
_BUCKET_LIMIT = 4096
"""Buckets kept before coarsening. Above the most bins times the largest step ratio (60),
the bin size finally chosen is a multiple of the bucket size (see :class:`_Histogram`)."""


Sort = Literal["name", "version", "last"]
CHUNK = 1024


@dataclass(frozen=True)
class Count:
    """One entry of a top list: a type or stream name, its events and their share (0-1)."""

    name: str
    count: int
    share: float


@dataclass(frozen=True)
class Bin:
    """The events whose time is in ``[start, start + bin size)`` (nanoseconds)."""

    start: int
    count: int


@dataclass(frozen=True)
class Stats:
    """An overview of the selected events; times are nanoseconds since the epoch."""

    events: int
    first_seq: int | None
    last_seq: int | None
    first_ts: int | None
    last_ts: int | None
    bin_seconds: int | None
    bins: tuple[Bin, ...]
    types: tuple[Count, ...]
    streams: tuple[Count, ...]
    distinct_types: int
    distinct_streams: int
    events_without_stream: int
    utc_offset: int
    """The offset (seconds east of UTC) that the bins are aligned to."""

    @property
    def span_seconds(self) -> float | None:
        """Seconds from the first to the last selected event (None without events)."""
        if self.first_ts is None or self.last_ts is None:
            return None
        return (self.last_ts - self.first_ts) / NS

    @property
    def events_per_second(self) -> float | None:
        """Events over the span; None when the span is empty (no events, or all at one time)."""
        span = self.span_seconds
        return self.events / span if span else None

    def to_dict(self) -> dict[str, Any]:
        """The ``evlog stats -o json`` object: a public interface, keys in a fixed order."""
        rate = self.events_per_second

        def top(key: str, counts: Sequence[Count]) -> list[dict[str, Any]]:
            return [{key: c.name, "count": c.count, "percent": round(100 * c.share, 2)} for c in counts]

        return {
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "first_ts": None if self.first_ts is None else format_ts(self.first_ts),
            "last_ts": None if self.last_ts is None else format_ts(self.last_ts),
            "span_seconds": self.span_seconds,
            "events_per_second": None if rate is None else float(f"{rate:.6g}"),
            "types": top("type", self.types),
            "streams": top("stream", self.streams),
            "distinct_types": self.distinct_types,
            "distinct_streams": self.distinct_streams,
            "events_without_stream": self.events_without_stream,
            "bin_seconds": self.bin_seconds,
            "bins": [{"start": format_ts(b.start), "count": b.count} for b in self.bins],
        }


def local_utc_offset(ns: int) -> int:
    """The local zone's offset from UTC in seconds at the time ``ns``."""
    return int(time.localtime(ns // NS).tm_gmtoff)


def bin_origin(first_ts: int) -> int:
    """The time (ns) the bins count from: the whole second of the first event."""
    return first_ts - first_ts % NS


def choose_bin_seconds(first_ts: int, last_ts: int, origin: int, max_bins: int = MAX_BINS) -> int:
    """The smallest bin size (seconds) that covers ``first_ts..last_ts`` in at most ``max_bins`` bins."""

    def bins(size: int) -> int:
        step = size * NS
        return (last_ts - origin) // step - (first_ts - origin) // step + 1

    for size in BIN_SIZES:
        if bins(size) <= max_bins:
            return size
    size = BIN_SIZES[-1]
    multiple = 2
    while bins(size * multiple) > max_bins:
        multiple += 1
    return size * multiple


def stats(
    log: Log,
    *,
    from_: str | int | None = None,
    until: str | int | None = None,
    streams: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    top: int = TOP,
    max_bins: int = MAX_BINS,
    utc_offset: int | None = None,
) -> Stats:
    """An overview of the events :meth:`Log.read` would yield for the same arguments.

    ``top`` is the length of the type and stream lists, ``max_bins`` bounds the
    number of time bins (the first starts at the first event), and
    ``utc_offset`` (seconds east of UTC) is the zone of their labels; by
    default the local zone's offset at the first event of the range.
    """
    if max_bins < 1:
        raise UsageError(f"max_bins must be at least 1, not {max_bins}")
    if top < 0:
        raise UsageError(f"top must be 0 or more, not {top}")
    backend = log.backend()
    first, last_wanted = log.range(from_, until)  # a reversed range is refused, as in replay
    head = backend.head()
    totals = None
    if not streams and not types and first == 1 and last_wanted >= head:
        # The whole log: the stored counters, taken with the head they describe.
        totals = backend.totals(top)
        head = totals.head
        if last_wanted < head:  # appended since: a part of the log after all
            totals = None
    last = min(last_wanted, head)
    if first > last:
        return _empty(utc_offset)
    first_ts, last_ts = backend.ts_of([first, last])
    offset = local_utc_offset(first_ts) if utc_offset is None else utc_offset
    if not streams and not types:
        origin = bin_origin(first_ts)
        size = choose_bin_seconds(first_ts, last_ts, origin, max_bins)
        bins = _bins_by_search(backend.ts_at, first, last, first_ts, last_ts, origin, size)
        if totals is not None:
            return _whole_log(totals, first_ts, last_ts, size, bins, top, offset)
    if not streams and not types:
        # A part of the log: its bins are known, its types and streams need a scan of its headers.
        tally = _Tally(None)
        tally.add_rows(log.rows(from_=first, until=last))
        return tally.result(first, last, first_ts, last_ts, size, bins, top, offset)
    tally = _Tally(_Histogram())  # its origin is the first selected event, found by the scan
    tally.add_rows(log.rows(from_=first, until=last, streams=streams, types=types))
    if tally.first_seq is None or tally.last_seq is None or tally.first_ts is None or tally.last_ts is None:
        return _empty(offset)
    assert tally.histogram is not None and tally.histogram.origin is not None
    size = choose_bin_seconds(tally.first_ts, tally.last_ts, tally.histogram.origin, max_bins)
    bins = tally.histogram.bins(tally.first_ts, tally.last_ts, size)
    return tally.result(tally.first_seq, tally.last_seq, tally.first_ts, tally.last_ts, size, bins, top, offset)


def _whole_log(
    totals: Totals, first_ts: int, last_ts: int, size: int, bins: tuple[Bin, ...], top: int, offset: int,
) -> Stats:
    """Stats of every event from the stored type counts and the stream counts: no record is read."""
    head = totals.head
    return Stats(
        head, 1, head, first_ts, last_ts, size, bins,
        _top(totals.types.items(), top, head), _shares(totals.top_streams, head),
        len(totals.types), totals.streams, head - totals.in_streams, offset,
    )


def _empty(utc_offset: int | None) -> Stats:
    offset = local_utc_offset(time.time_ns()) if utc_offset is None else utc_offset
    return Stats(0, None, None, None, None, None, (), (), (), 0, 0, 0, offset)


def _bins_by_search(
    ts_at: Callable[[int], int], first: int, last: int, first_ts: int, last_ts: int, origin: int, size: int
) -> tuple[Bin, ...]:
    """Bins of ``first..last`` (every event selected): each count is a difference of two seqs."""
    step = size * NS
    start_index = (first_ts - origin) // step
    end_index = (last_ts - origin) // step
    bins: list[Bin] = []
    low = first  # the first seq of the current bin
    for index in range(start_index, end_index + 1):
        edge = origin + (index + 1) * step
        # The first seq at or after the next edge, searched above the previous one: ts never decreases.
        lo, hi = low, last + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if ts_at(mid) >= edge:
                hi = mid
            else:
                lo = mid + 1
        bins.append(Bin(origin + index * step, lo - low))
        low = lo
    return tuple(bins)


def _top(counts: Iterable[tuple[str, int]], top: int, events: int) -> tuple[Count, ...]:
    return _shares(heapq.nsmallest(top, counts, key=lambda item: (-item[1], item[0])), events)


def _shares(counts: Iterable[tuple[str, int]], events: int) -> tuple[Count, ...]:
    return tuple(Count(name, count, count / events if events else 0.0) for name, count in counts)


class _Histogram:
    """Counts of event times in buckets aligned to an origin, in bounded memory.

    The origin is the whole second of the first time added (:func:`bin_origin`).
    Times arrive in order (seq order), so buckets are appended at the end.
    When more than :data:`_BUCKET_LIMIT` are kept, they are merged into the
    next size of :data:`_BUCKET_SIZES`. That happens only once the times span
    at least the limit times the old size, so the bin size finally chosen
    (span / 40 or more) is a multiple of the new size and the bins are exact.
    """

    def __init__(self) -> None:
        self.origin: int | None = None
        self.level = 0
        self.size = _BUCKET_SIZES[0] * NS
        self.indexes: list[int] = []
        self.counts: list[int] = []

    def add(self, index: int, count: int) -> None:
        """Add ``count`` times to the bucket ``index`` (of the current size)."""
        if self.indexes and self.indexes[-1] == index:
            self.counts[-1] += count
            return
        self.indexes.append(index)
        self.counts.append(count)
        while len(self.indexes) > _BUCKET_LIMIT and self.level + 1 < len(_BUCKET_SIZES):
            self._coarsen()

    def _coarsen(self) -> None:
        """Merge the buckets into those of the next size (sparse times may need several steps)."""
        self.level += 1
        size = _BUCKET_SIZES[self.level] * NS
        factor = size // self.size
        indexes: list[int] = []
        counts: list[int] = []
        for old, count in zip(self.indexes, self.counts, strict=True):
            index = old // factor
            if indexes and indexes[-1] == index:
                counts[-1] += count
            else:
                indexes.append(index)
                counts.append(count)
        self.size, self.indexes, self.counts = size, indexes, counts

    def bins(self, first_ts: int, last_ts: int, size: int) -> tuple[Bin, ...]:
        """The bins of ``size`` seconds from the one holding ``first_ts`` to the one holding ``last_ts``."""
        step = size * NS
        assert self.origin is not None, "no time was added"
        if step % self.size:
            raise AssertionError(f"bin size {size} s is not a multiple of the histogram's {self.size // NS} s")
        factor = step // self.size
        start = (first_ts - self.origin) // step
        counts = [0] * int((last_ts - self.origin) // step - start + 1)
        for index, count in zip(self.indexes, self.counts, strict=True):
            counts[index // factor - start] += count
        return tuple(Bin(self.origin + (start + i) * step, count) for i, count in enumerate(counts))


class _Tally:
    """Type and stream counts (and optionally a histogram of times) from one scan of rows."""

    def __init__(self, histogram: _Histogram | None) -> None:
        self.histogram = histogram
        self.types: dict[str, int] = {}
        self.streams: dict[str, int] = {}
        self.without_stream = 0
        self.events = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    def add_rows(self, rows: Iterable[tuple[int, Any]]) -> None:
        # Hot loop: one pass over up to millions of headers, so locals only.
        types, streams = self.types, self.streams
        type_get, stream_get = types.get, streams.get
        histogram = self.histogram
        origin = histogram.origin if histogram is not None and histogram.origin is not None else 0
        bucket_end = -1  # below any time: the first event starts a bucket
        bucket = run = events = without = 0
        seq = ts = 0
        for seq, envelope in rows:
            ts, etype, stream = envelope[1], envelope[3], envelope[4]
            if histogram is not None and ts >= bucket_end:
                if histogram.origin is None:
                    origin = histogram.origin = bin_origin(ts)
                if run:
                    histogram.add(bucket, run)
                size = histogram.size
                bucket = (ts - origin) // size
                bucket_end = origin + (bucket + 1) * size
                run = 0
            run += 1
            if events == 0:
                self.first_seq, self.first_ts = seq, ts
            events += 1
            types[etype] = type_get(etype, 0) + 1
            if stream is None:
                without += 1
            else:
                streams[stream] = stream_get(stream, 0) + 1
        if histogram is not None and run:
            histogram.add(bucket, run)
        if events:
            self.last_seq, self.last_ts = seq, ts
        self.events += events
        self.without_stream += without

    def result(
        self, first: int, last: int, first_ts: int, last_ts: int, size: int, bins: tuple[Bin, ...], top: int,
        offset: int,
    ) -> Stats:
        events = self.events
        return Stats(
            events, first, last, first_ts, last_ts, size, bins,
            _top(self.types.items(), top, events), _top(self.streams.items(), top, events),
            len(self.types), len(self.streams), self.without_stream, offset,
        )


# -- streams ------------------------------------------------------------------


@dataclass(frozen=True)
class StreamSummary:
    """A stream's version (its number of events) and its first and last event (seq, ns)."""

    stream: str
    version: int
    first_seq: int
    last_seq: int
    first_ts: int
    last_ts: int

    def to_dict(self) -> dict[str, Any]:
        """The object ``evlog streams`` prints for the stream."""
        return {
            "stream": self.stream,
            "version": self.version,
            "events": self.version,  # the same number: versions count a stream's events from 1
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "first_ts": format_ts(self.first_ts),
            "last_ts": format_ts(self.last_ts),
        }


def stream_summaries(
    log: Log, prefix: str | None = None, *, sort: Sort = "name", limit: int | None = None
) -> Iterator[StreamSummary]:
    """Each stream whose name starts with ``prefix`` (a trailing ``*`` is allowed), from the stream index.

    ``sort``: ``name`` (streamed in name order, constant memory), ``version``
    (most events first) or ``last`` (most recently appended to first; times
    never decrease along the seqs, so this is the order of the last seqs).
    Ties go by name. ``limit`` keeps the first N; for the other sorts it also
    bounds the memory used to N entries.
    """
    backend = log.backend()
    if sort not in ("name", "version", "last"):
        raise UsageError(f"sort {sort!r} is unknown; use name, version or last")
    if limit is not None and limit <= 0:
        return iter(())
    entries = backend.stream_index((prefix or "").removesuffix("*"))
    if sort == "name":
        if limit is not None:
            entries = _first(entries, limit)
        return _with_times(backend, entries)

    # UTF-8 bytes sort like the text: ties go by name as in the index.
    def rank(entry: StreamEntry) -> tuple[int, str]:
        return (-entry[1] if sort == "version" else -entry[3]), entry[0]

    chosen = sorted(entries, key=rank) if limit is None else heapq.nsmallest(limit, entries, key=rank)
    return _with_times(backend, chosen)


def _first(entries: Iterator[StreamEntry], limit: int) -> Iterator[StreamEntry]:
    for number, entry in enumerate(entries, 1):
        yield entry
        if number >= limit:
            return


def _with_times(backend: Backend, entries: Iterable[StreamEntry]) -> Iterator[StreamSummary]:
    """Summaries of index entries, the times of their first and last events read in chunks."""
    iterator = iter(entries)
    while True:
        chunk = list(itertools.islice(iterator, CHUNK))
        if not chunk:
            return
        times = backend.ts_of([seq for _, _, first, last in chunk for seq in (first, last)])
        yield from (
            StreamSummary(name, version, first, last, times[2 * n], times[2 * n + 1])
            for n, (name, version, first, last) in enumerate(chunk)
        )
