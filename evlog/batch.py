"""What a batch of appends becomes: seqs, times, stream versions, chain hashes.

Every backend stores the same records, so this is computed once, against a
:class:`~evlog.backends.WriteTxn` whose head does not move until the batch
is stored. The computation may run again from scratch (LMDB after growing
its map, JetStream after another writer moved the head), so it has no
effects beyond what it hands to ``put``.

The rules (DESIGN.md, "Concepts"): seq is last + 1; ts is the time the event
is written, never before the previous one (an input ts that goes backwards
is refused); the n-th event of a stream gets version n and ``expect`` must
name the version the stream is at; an id already in the log appends nothing
and reports that event's seq (with ``strict_ids``, an id reused for other
content is refused instead); the chain hash covers the previous hash, the
seq key and the body.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .backends import WriteTxn
from .errors import AppendStopped, BadInputError, ConflictError, EvlogError
from .event import AppendSummary, Event
from .ingest import LINE, Pending, stored_difference
from .record import (
    GENESIS_HASH,
    HASH_SIZE,
    HEAD_NO_VERSION,
    HEAD_VERSION,
    RECORD_FORMAT,
    blake2b,
    decode_body,
    record_hash,
    seq_key,
)
from .timefmt import format_ts

MAX_CACHED_HEADS = 1_000_000


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


def stopped(cause: EvlogError, summary: AppendSummary, *, atomic: bool, line: int | None = None) -> AppendStopped:
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
        cause.args = (f"line {where}: {cause}",)
    if atomic:
        note = f"stopped at {place}; --atomic: nothing was written"
    else:
        note = f"{summary.describe()}; stopped at {place}, nothing after it was written"
    return AppendStopped(cause, summary, note)


def write_batch(
    txn: WriteTxn,
    batch: Sequence[Pending],
    *,
    atomic: bool,
    skip_rejects: bool,
    keep_events: bool,
    strict_ids: bool = False,
    cached_heads: tuple[int, dict[bytes, int]] = (-1, {}),
) -> BatchOutcome:
    """Assign seqs, times, versions and hashes to ``batch`` and hand the records to ``txn.put``.

    ``cached_heads`` is ``(head seq, stream versions)`` left by this
    writer's previous batch: valid only if no other writer appended since,
    and then it saves an index look-up per event.
    """
    outcome = BatchOutcome()
    last_seq, last_record = txn.last()
    if last_record is not None:
        last_ts = decode_body(last_record, last_seq)[1]
        previous = record_hash(last_record)
    else:
        last_ts, previous = 0, GENESIS_HASH
    heads_seq, known_heads = cached_heads
    heads = dict(known_heads) if last_seq == heads_seq and len(known_heads) < MAX_CACHED_HEADS else {}
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
    id_seq, stream_version = txn.id_seq, txn.stream_version
    for item in batch:
        etype, stream, stream_key, tail, event_id, expect, ts, line, data_bytes, meta, raw = item
        id_key = None
        if event_id is not None:
            id_key = event_id.encode()
            new_key = new_ids.get(id_key)
            seq = int.from_bytes(new_key, "big") if new_key is not None else id_seq(id_key)
            if seq is not None:
                # Only duplicates pay for this: is the stored event the same one?
                first_new = last_seq - len(rows) + 1
                stored = rows[seq - first_new][1] if seq >= first_new else txn.record(seq)
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
                head = stream_version(stream_key)
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
        raise stopped(outcome.stop[1], AppendSummary(), atomic=True, line=outcome.stop[0][LINE])
    if rows:
        outcome.count = len(rows)
        outcome.first_seq = last_seq - len(rows) + 1
        outcome.last_seq = last_seq
        txn.put(rows, index_rows, new_ids, type_counts, new_streams)
    outcome.heads, outcome.head_seq = heads, last_seq
    return outcome
