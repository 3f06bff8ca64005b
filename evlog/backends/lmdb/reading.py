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

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ...errors import DamagedLogError
from ...record import decode_body, key_seq, seq_key
from ...scan import CHUNK, Progress, Row
from .. import StreamEntry, Totals
from .store import U64, Store

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




# -- overviews: counts and the stream index, without reading records ----------

_INDEX_CHUNK = 1024


def totals(store: Store, top: int) -> Totals:
    """The head, type counts and stream counts in one read transaction, so they describe the same events.

    No record is read: the types come from their counters, the streams from
    the number of duplicates under each key of the stream index (UTF-8 keys
    sort like the text, so ties among the ``top`` break by name).
    """
    with store.reading() as txn:
        cursor = txn.cursor(db=store.dbs[b"events"])
        head = key_seq(bytes(cursor.key())) if cursor.last() else 0
        check_contiguous(txn, store, head)  # the counts take the head for the number of events
        types = type_counts(txn, store.dbs[b"types"])
        streams = txn.cursor(db=store.dbs[b"streams"])
        distinct = 0

        def keys() -> Iterator[tuple[int, bytes]]:
            nonlocal distinct
            found = streams.first()
            while found:
                distinct += 1
                yield int(streams.count()), bytes(streams.key())
                found = streams.next_nodup()

        ranked = keys()
        best = heapq.nsmallest(top, ranked, key=lambda item: (-item[0], item[1]))
        for _ in ranked:  # nsmallest(0, ...) reads nothing, and every key must be counted
            pass
        in_streams = int(txn.stat(store.dbs[b"streams"])["entries"])  # every duplicate: one per event
    return Totals(head, types, in_streams, distinct, [(key.decode(), count) for count, key in best])


def stream_index(store: Store, prefix: str) -> Iterator[StreamEntry]:
    """The stream index under ``prefix`` in name order, read in short transactions of a chunk of keys each."""
    key_prefix = prefix.encode()
    streams_db = store.dbs[b"streams"]
    after: bytes | None = None
    while True:
        chunk: list[StreamEntry] = []
        done = False
        with store.reading() as txn:
            cursor = txn.cursor(db=streams_db)
            if after is not None:
                found = cursor.set_range(after)
                if found and bytes(cursor.key()) == after:
                    found = cursor.next_nodup()
            else:
                found = cursor.set_range(key_prefix) if key_prefix else cursor.first()
            while found and len(chunk) < _INDEX_CHUNK:
                key = bytes(cursor.key())
                if not key.startswith(key_prefix):
                    found = False
                    break
                version = int(cursor.count())
                first_seq = key_seq(bytes(cursor.value()))  # a new key starts at its first duplicate
                cursor.last_dup()
                chunk.append((key.decode(), version, first_seq, key_seq(bytes(cursor.value()))))
                found = cursor.next_nodup()
            done = not found
            after = key if chunk else None
        yield from chunk
        if done or not chunk:
            return


def ts_of(store: Store, seqs: Sequence[int]) -> list[int]:
    """The ts of each of these events, in one read transaction; a missing one is damage."""
    events = store.dbs[b"events"]
    out = []
    with store.reading() as txn:
        for seq in seqs:
            value = txn.get(seq_key(seq), db=events)
            if value is None:
                raise DamagedLogError("missing: the log has a gap here", seq=seq)
            out.append(decode_body(value, seq)[1])
    return out


def type_counts(txn: Any, types_db: Any) -> dict[str, int]:
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
