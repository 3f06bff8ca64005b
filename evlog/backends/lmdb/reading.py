"""Reading an LMDB log: chunks of records in short read transactions.

Reads run in short read transactions of at most :data:`~evlog.scan.CHUNK`
records each (:data:`RAW_CHUNK` for folds): the records are decoded inside
the transaction, the transaction ends, and only then are they handed on. A
slow consumer (a pager, a stalled pipe) therefore never holds a transaction
open, which in LMDB would pin old pages and make the file grow under
concurrent appends. The log is append-only, so chunked reads of a fixed seq
range are as consistent as one long read.

Seqs are counted, not decoded from every key: only the last key of each
chunk is checked, and a gap anywhere in a chunk shows there as a later seq.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ...errors import DamagedLogError
from ...record import decode_body, key_seq, seq_key
from ...scan import CHUNK, Progress, Row
from .store import Store

RAW_CHUNK = 4096


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


def raw_range(
    store: Store, first: int, last: int, progress: Progress | None = None
) -> Iterator[tuple[int | Iterable[int], list[bytes]]]:
    """Record bytes of seqs ``first..last`` in chunks, each read in its own short transaction.

    ``progress`` hears of each chunk once it has been folded: the seqs done so far, of all in the range.
    """
    events = store.dbs[b"events"]
    seq = start = max(first, 1)
    total = max(last - start + 1, 0)
    while seq <= last:
        with store.reading(buffers=False) as txn:
            cursor = txn.cursor(db=events)
            if not cursor.set_key(seq_key(seq)):
                raise DamagedLogError("missing: the log has a gap here", seq=seq)
            values: list[bytes] = list(itertools.islice(cursor.iternext(keys=False), min(RAW_CHUNK, last - seq + 1)))
            gap = gap_before(cursor, seq, len(values))  # the fold counts seqs: they must be contiguous
            if gap is not None:
                raise gap
        yield seq, values  # contiguous: the first seq stands for the run
        seq += len(values)
        if progress is not None:
            progress(seq - start, total)


def raw_seqs(
    store: Store, seqs: Iterator[int], progress: Progress | None = None
) -> Iterator[tuple[int | Iterable[int], list[bytes]]]:
    """Record bytes of the given increasing seqs (from the stream index), in chunks.

    ``progress`` hears of each chunk once it has been folded: the records done so far (the total is unknown).
    """
    events = store.dbs[b"events"]
    done = 0
    while True:
        batch = list(itertools.islice(seqs, RAW_CHUNK))
        if not batch:
            return
        with store.reading(buffers=False) as txn:
            values = [txn.get(seq_key(seq), db=events) for seq in batch]
        if None in values:
            missing = batch[values.index(None)]
            raise DamagedLogError("is in the streams index but missing from the events", seq=missing)
        yield batch, values
        if progress is not None:
            done += len(batch)
            progress(done, None)


