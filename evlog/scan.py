"""Reading a log: seq ranges, filters, the stream index and time -> seq search.

Reads run in short read transactions of at most :data:`CHUNK` records each:
the records are decoded inside the transaction, the transaction ends, and
only then are they handed on. A slow consumer (a pager, a stalled pipe)
therefore never holds a transaction open, which in LMDB would pin old pages
and make the file grow under concurrent appends. The log is append-only, so
chunked reads of a fixed seq range are as consistent as one long read.
"""

from __future__ import annotations

import fnmatch
import heapq
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .errors import DamagedLogError
from .record import Envelope, decode_body, key_seq, seq_key
from .store import Store

CHUNK = 1024

Row = tuple[int, Envelope]
"""A seq with its decoded envelope ``(format, ts, version, type, stream, id, meta, data_bytes)``."""

Progress = Callable[[int, int | None], None]
"""Called after each chunk of work with the units done so far and all of them (None: not known).

For reporting only: readers call it once per chunk, never per event.
"""


def head_seq(store: Store) -> int:
    """The last seq in the log (0 when empty)."""
    with store.reading() as txn:
        cursor = txn.cursor(db=store.dbs[b"events"])
        return key_seq(bytes(cursor.key())) if cursor.last() else 0


def ts_at(store: Store, seq: int) -> int:
    """The ts of the event at ``seq``, which must exist (a missing one is a gap: damage)."""
    with store.reading() as txn:
        value = txn.get(seq_key(seq), db=store.dbs[b"events"])
        if value is None:
            raise DamagedLogError("missing: the log has a gap here", seq=seq)
        return decode_body(value, seq)[1]


def check_contiguous(txn: Any, store: Store, head: int) -> None:
    """Raise :class:`DamagedLogError` unless the events are exactly seqs 1 to ``head``.

    For results computed without reading the records (counts from the
    stored counters): one look at the database's entry count, and only
    when it disagrees a walk over the keys to name the first missing seq.
    """
    events = store.dbs[b"events"]
    cursor = txn.cursor(db=events)
    if txn.stat(events)["entries"] == head and (head == 0 or (cursor.first() and cursor.key() == seq_key(1))):
        return
    expected = 1
    for key in cursor.iternext(keys=True, values=False) if cursor.first() else ():
        if bytes(key) != seq_key(expected):
            break
        expected += 1
    raise DamagedLogError("missing: the log has a gap here", seq=expected)


def gap_before(cursor: Any, first: int, count: int) -> DamagedLogError | None:
    """Whether the ``count`` records a cursor read from seq ``first`` on had a gap; the error naming it.

    ``cursor`` is on the last record read. Readers count seqs instead of
    decoding every key, and check only the last key of each chunk: a gap
    anywhere in the chunk makes it a later seq than counted.
    """
    last_key = cursor.key()
    if last_key == seq_key(first + count - 1):
        return None
    # Rare: find the first seq that is not where it should be.
    expected = first
    cursor.set_key(seq_key(first))
    for key in cursor.iternext(keys=True, values=False):
        if bytes(key) != seq_key(expected):
            break
        expected += 1
    return DamagedLogError("missing: the log has a gap here", seq=expected)


def first_seq_at_or_after(store: Store, ns: int, last: int) -> int:
    """The first seq whose ts >= ns (``last + 1`` when none): binary search."""
    lo, hi = 1, last + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if ts_at(store, mid) >= ns:
            hi = mid
        else:
            lo = mid + 1
    return lo


def last_seq_at_or_before(store: Store, ns: int, last: int) -> int:
    """The last seq whose ts <= ns (0 when none)."""
    return first_seq_at_or_after(store, ns + 1, last) - 1


GLOB_CHARACTERS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    """Whether a ``--stream``/``--type`` pattern is a glob, not an exact name."""
    return not GLOB_CHARACTERS.isdisjoint(pattern)


def matcher(patterns: Sequence[str] | None, *, prefix_star: bool = False) -> Callable[[str | None], bool] | None:
    """A cached predicate for stream or type patterns: shell globs (``*``, ``?``, ``[...]``); None matches all.

    Streams and types take the same patterns. Exact names are a set look-up
    and a single trailing ``*`` a prefix test, the patterns people write
    most; anything else is one regular expression. Results are cached per
    name, the cache cleared before it grows large (streams are many).
    ``prefix_star`` is accepted for older callers and changes nothing.
    """
    if not patterns:
        return None
    exact = {p for p in patterns if not is_glob(p)}
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*") and not is_glob(p[:-1]))
    others = [p for p in patterns if is_glob(p) and not (p.endswith("*") and not is_glob(p[:-1]))]
    if others:
        regex = re.compile("|".join(fnmatch.translate(p) for p in others))

        def test(name: str | None) -> bool:
            return name is not None and (name in exact or name.startswith(prefixes) or regex.match(name) is not None)

    else:

        def test(name: str | None) -> bool:
            return name is not None and (name in exact or name.startswith(prefixes))

    cache: dict[str | None, bool] = {}

    def cached(name: str | None) -> bool:
        try:
            return cache[name]
        except KeyError:
            if len(cache) > 100_000:
                cache.clear()
            result = cache[name] = test(name)
            return result

    return cached


def scan(
    store: Store,
    first: int,
    last: int,
    *,
    types: Callable[[str | None], bool] | None = None,
    streams: Callable[[str | None], bool] | None = None,
    progress: Progress | None = None,
) -> Iterator[Row]:
    """Rows with seq in ``[first, last]`` that pass both filters, in seq order.

    ``progress`` is called after each chunk with the seqs read so far and
    the seqs in the range.
    """
    events = store.dbs[b"events"]
    next_seq = start = max(first, 1)
    total = max(last - start + 1, 0)
    while next_seq <= last:
        rows: list[Row] = []
        with store.reading() as txn:
            cursor = txn.cursor(db=events)
            if not cursor.set_key(seq_key(next_seq)):
                if not cursor.last() or key_seq(cursor.key()) < next_seq:
                    return  # past the head: the range ends with the log
                raise DamagedLogError("missing: the log has a gap here", seq=next_seq)
            seq = next_seq
            end = min(last, next_seq + CHUNK - 1)
            try:
                for value in cursor.iternext(keys=False, values=True):
                    envelope = decode_body(value, seq)
                    if (types is None or types(envelope[3])) and (
                        streams is None or streams(envelope[4])
                    ):
                        rows.append((seq, envelope))
                    if seq >= end:
                        break
                    seq += 1
            except DamagedLogError as damaged:
                # After a gap the counted seq is not this record's: name the gap instead.
                raise gap_before(cursor, next_seq, seq - next_seq + 1) or damaged from None
            gap = gap_before(cursor, next_seq, seq - next_seq + 1)
            if gap is not None:
                raise gap
            next_seq = seq + 1
        yield from rows
        if progress is not None:
            progress(next_seq - start, total)


def stream_seqs(store: Store, stream: str, first: int, last: int) -> Iterator[int]:
    """Seqs of one stream's events within ``[first, last]``, via the stream index."""
    stream_key = stream.encode()
    streams_db = store.dbs[b"streams"]
    start = seq_key(max(first, 1))
    while True:
        seqs: list[int] = []
        with store.reading() as txn:
            cursor = txn.cursor(db=streams_db)
            if not cursor.set_range_dup(stream_key, start):
                return
            for value in cursor.iternext_dup(keys=False, values=True):
                seq = key_seq(bytes(value))
                if seq > last:
                    break
                seqs.append(seq)
                if len(seqs) >= CHUNK:
                    break
        yield from seqs
        if len(seqs) < CHUNK:
            return
        start = seq_key(seqs[-1] + 1)


def rows_by_seq(
    store: Store,
    seqs: Iterable[int],
    *,
    types: Callable[[str | None], bool] | None = None,
    progress: Progress | None = None,
) -> Iterator[Row]:
    """Fetch the rows of the given (increasing) seqs, in chunks.

    ``progress`` is called after each chunk with the rows fetched so far
    (and None: how many an index holds in the range is not known up front).
    """
    events = store.dbs[b"events"]
    iterator = iter(seqs)
    fetched = 0
    while True:
        batch = list(itertools.islice(iterator, CHUNK))
        if not batch:
            return
        rows: list[Row] = []
        with store.reading() as txn:
            for seq in batch:
                value = txn.get(seq_key(seq), db=events)
                if value is None:
                    raise DamagedLogError("is in the streams index but missing from the events", seq=seq)
                envelope = decode_body(value, seq)
                if types is None or types(envelope[3]):
                    rows.append((seq, envelope))
        yield from rows
        if progress is not None:
            fetched += len(batch)
            progress(fetched, None)


def merged_stream_seqs(store: Store, names: Sequence[str], first: int, last: int) -> Iterator[int]:
    """Seqs of several streams merged into seq order."""
    unique = list(dict.fromkeys(names))
    if len(unique) == 1:
        return stream_seqs(store, unique[0], first, last)
    return heapq.merge(*(stream_seqs(store, name, first, last) for name in unique))
