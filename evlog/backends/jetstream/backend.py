"""A log in a NATS JetStream stream: the same records as on LMDB, replicated by the server.

Each event is one message whose payload is the record itself (the bytes of
:mod:`evlog.record`: body and chain hash), on the subject of its stream
(``evlog.<log>.s.<stream>``, or ``evlog.<log>.n``). So seq is the stream
sequence, gapless because the stream denies deletes and purges; a stream's
version is the count of its subject; and a log copied from LMDB and back has
the same head hash.

Appending. :mod:`evlog.batch` computes a batch against the head read from the
server (the last record, stream versions from direct gets or one per-subject
count); the batch goes out as one atomic batch whose first message carries
``Nats-Expected-Last-Sequence``. If another writer appended meanwhile the
server refuses it whole (nothing is stored) and the batch is computed again
against the new head: the same guarantee as LMDB's single writer, found out
after the fact instead of waited for. A batch that got no answer (a lost ack,
a leader election) is looked for in the log before it is sent again: the
records carry their chain hash, so the one at the batch's first seq is ours
exactly when it is byte for byte what we sent.

Ids. An event's id is its ``Nats-Msg-Id``, so the server refuses a second
event with the same id (in a ten-year window) however the writers race. A
batch is sent on the hope that its ids are new; a refusal for a duplicate id
makes the writer look them up (below) and compute the batch again, as LMDB
does up front.

Indexes. What LMDB keeps in databases beside the events (ids, type counts,
the number of streams) is kept here in the log's ``meta`` and ``ids``
key-value buckets, derived from the records and brought up to date lazily
from a checkpoint (the seq indexed up to) when it is asked for. The events
stay the only source of truth; the index can always be rebuilt from them.

Following. A core subscription on the log's subjects wakes a follower on
every publish (the server delivers to it as it stores into the stream); the
follower then reads what is new with direct gets.

The write path is in :mod:`~evlog.backends.jetstream.writing`, the wake-up
in :mod:`~evlog.backends.jetstream.waiting`; reading and the index are here.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgpack

from ...errors import DamagedLogError, LogNotFoundError, ServerUnavailableError, StorageError
from ...record import DECODE_ERRORS, GENESIS_HASH, decode_body, record_hash
from ...scan import CHUNK, Progress, Row
from ...timefmt import format_ts
from .. import Chunks, StreamEntry, Totals
from .client import MAX_BATCH, LogClient
from .messages import (
    LogStreamInfo,
    StoredMsg,
)
from .url import event_subject, kv_key, parse_location
from .writing import RETRY_SECONDS, UNAVAILABLE_SECONDS, HeadMoved, WriteTxn

if TYPE_CHECKING:
    from .group_entries import JetStreamGroups
    from .kv import Bucket
    from .overview import StreamIndex
    from .tables import JetStreamTable
    from .waiting import Waiter

T = TypeVar("T")

DIRECT_READ = 64
"""Ranges up to this many seqs are read with direct gets (no consumer to set up): what a follower reads."""
_INDEX_KEY = "index"


def open_jetstream(text: str, *, create: bool, writable: bool, check_config: bool = True) -> JetStreamBackend:
    """Open (with ``create``, make) the log a ``nats://`` location names.

    ``check_config=False`` (verify only) opens an evlog stream whose config was
    changed (deletes allowed, limits set), so that the change is reported.
    """
    return JetStreamBackend(text, create=create, check_config=check_config)


class JetStreamBackend:
    """An open log on a NATS server (see the module docstring)."""

    max_batch = MAX_BATCH

    def __init__(self, text: str, *, create: bool, check_config: bool = True) -> None:
        self.where = parse_location(text)
        self.location = self.where.display
        self.writable = True  # what may be written is the server's to say, per request
        self.client = LogClient.connect(self.where)
        self.client.check_config = check_config
        try:
            try:
                self.info = _patiently(self.client.open_log_stream)  # waits out an election
            except LogNotFoundError:
                if not create:
                    raise
                self.info = self._create()
        except BaseException:
            self.client.close()
            raise
        self.name = self.where.name
        self.check_ids = False  # set once the server refused a duplicate id: look ids up from then on
        # The last record this process wrote, taken as the head for the next batch without asking:
        # if another writer appended meanwhile, the server refuses the batch and we ask then.
        self.last_written: tuple[int, bytes] | None = None
        self._buckets: dict[str, Bucket] = {}
        self._tables: dict[str, JetStreamTable] = {}
        self._streams: StreamIndex | None = None  # the last stream listing, whose times it kept

    def close(self) -> None:
        for table in self._tables.values():
            table.close()
        self.client.close()

    def _create(self) -> LogStreamInfo:
        """Make the log's stream: three replicas where the servers can keep them, else one.

        A cluster of three or more keeps R3 (RAFT needs a majority to go on
        after losing a node); a single server refuses replicas ("not supported
        in non-clustered mode", 10074) and a smaller cluster cannot place them
        ("insufficient resources", 10023): then one.
        """
        created = str(time.time_ns())
        try:
            return self.client.create_log_stream(replicas=3, created=created)
        except StorageError as refused:
            if not any(f"JetStream error {code}" in str(refused) for code in (10074, 10023)):
                raise
        return self.client.create_log_stream(replicas=1, created=created)

    # -- reading -----------------------------------------------------------

    def head(self) -> int:
        return self.client.stream_info().last_seq

    def _get(self, seq: int) -> StoredMsg | None:
        """The message at ``seq``: a direct get (any replica answers), else the leader's word.

        A replica that lags the leader answers "no such message" for the
        newest ones; only the leader's answer says a seq is really missing.
        """
        return self.client.get(seq) or self.client.get(seq, leader=True)

    def ts_at(self, seq: int) -> int:
        found = self._get(seq)
        if found is None:
            raise DamagedLogError("missing: the log has a gap here", seq=seq)
        return decode_body(found.data, seq)[1]

    def _messages(self, first: int, last: int) -> Iterator[list[StoredMsg]]:
        """The messages of seqs ``first..last`` in chunks, checked to be exactly those seqs."""
        first = max(first, 1)
        if last < first:
            return
        expected = first
        chunks: Iterable[list[StoredMsg]]
        if last - first < DIRECT_READ:
            direct = []
            for seq in range(first, last + 1):
                message = self._get(seq)
                if message is None:
                    raise DamagedLogError("missing: the log has a gap here", seq=seq)
                direct.append(message)
            chunks = [direct]
        else:
            chunks = self.client.read(first, last, chunk=CHUNK)
        for chunk in chunks:
            for message in chunk:
                if message.seq != expected:
                    raise DamagedLogError("missing: the log has a gap here", seq=expected)
                expected += 1
            yield chunk
        if expected <= last:
            raise DamagedLogError("missing: the log has a gap here", seq=expected)

    def rows(
        self,
        first: int,
        last: int,
        *,
        types: Callable[[str | None], bool] | None = None,
        streams: Callable[[str | None], bool] | None = None,
        progress: Progress | None = None,
    ) -> Iterator[Row]:
        start = max(first, 1)
        last = min(last, self.head())
        total = max(last - start + 1, 0)
        for chunk in self._messages(start, last):
            rows: list[Row] = []
            for message in chunk:
                envelope = decode_body(message.data, message.seq)
                if (types is None or types(envelope[3])) and (streams is None or streams(envelope[4])):
                    rows.append((message.seq, envelope))
            yield from rows
            if progress is not None:
                progress(chunk[-1].seq - start + 1, total)

    def rows_by_seq(
        self,
        seqs: Iterable[int],
        *,
        types: Callable[[str | None], bool] | None = None,
        progress: Progress | None = None,
    ) -> Iterator[Row]:
        for fetched, seq in enumerate(seqs, 1):
            message = self._get(seq)
            if message is None:
                raise DamagedLogError("is in the streams index but missing from the events", seq=seq)
            envelope = decode_body(message.data, seq)
            if types is None or types(envelope[3]):
                yield seq, envelope
            if progress is not None and fetched % CHUNK == 0:
                progress(fetched, None)

    def stream_seqs(self, stream: str, first: int, last: int) -> Iterator[int]:
        first = max(first, 1)
        last = min(last, self.head())
        if last < first:
            return
        for chunk in self.client.read(first, last, chunk=CHUNK, subjects=event_subject(self.name, stream)):
            for message in chunk:
                yield message.seq

    def raw_range(self, first: int, last: int, progress: Progress | None = None) -> Chunks:
        start = max(first, 1)
        total = max(last - start + 1, 0)
        for chunk in self._messages(start, last):
            yield chunk[0].seq, [message.data for message in chunk]
            if progress is not None:
                progress(chunk[-1].seq - start + 1, total)

    def raw_seqs(self, seqs: Iterator[int], progress: Progress | None = None) -> Chunks:
        done = 0
        while True:
            batch = list(itertools.islice(seqs, CHUNK))
            if not batch:
                return
            values = []
            for seq in batch:
                message = self._get(seq)
                if message is None:
                    raise DamagedLogError("is in the streams index but missing from the events", seq=seq)
                values.append(message.data)
            yield batch, values
            if progress is not None:
                done += len(batch)
                progress(done, None)

    # -- the derived index: ids, type counts, streams ------------------------

    def _bucket(self, purpose: str) -> Bucket:
        bucket = self._buckets.get(purpose)
        if bucket is None:
            from .kv import Bucket

            bucket = self._buckets[purpose] = Bucket.open(self.client, purpose)
        return bucket

    def _index(self) -> _Index:
        """The index brought up to the head (at least the head when this was called)."""
        return _patiently(self._index_once)

    def _index_once(self) -> _Index:
        meta = self._bucket("meta")
        while True:
            entry = meta.get(_INDEX_KEY)
            index = _decode_index(entry.value) if entry is not None else _Index(0, {}, 0)
            head = self.head()
            if index.upto >= head:
                return index
            ids: dict[str, int] = {}
            types = index.types
            streams = index.streams
            for first, values in self.raw_range(index.upto + 1, head):
                assert isinstance(first, int)
                for seq, value in enumerate(values, first):
                    envelope = decode_body(value, seq)
                    types[envelope[3]] = types.get(envelope[3], 0) + 1
                    if envelope[2] == 1:
                        streams += 1
                    if envelope[5] is not None:
                        ids[envelope[5]] = seq
            self._put_ids(ids)
            index = _Index(head, types, streams)
            value = msgpack.packb({"upto": head, "types": types, "streams": streams})
            from .kv import RevisionConflict

            try:
                meta.update(_INDEX_KEY, value, revision=entry.revision if entry is not None else None)
            except RevisionConflict:
                continue  # another process indexed meanwhile: start from where it got to
            return index

    def _put_ids(self, ids: dict[str, int]) -> None:
        """Write many id -> seq entries at once (each is idempotent: the seq of an id never changes)."""
        if not ids:
            return
        bucket = self._bucket("ids")
        kv = bucket._kv

        async def put_all() -> None:
            pending = [kv.put(kv_key(event_id), str(seq).encode()) for event_id, seq in ids.items()]
            for start in range(0, len(pending), 1000):
                await asyncio.gather(*pending[start:start + 1000])

        bucket._call("writing the ids index", put_all())

    def id_seq(self, event_id: str) -> int | None:
        entry = self._bucket("ids").get(kv_key(event_id))
        if entry is None:
            self._index()
            entry = self._bucket("ids").get(kv_key(event_id))
            if entry is None:
                return None
        try:
            seq = int(entry.value)
        except ValueError:
            raise DamagedLogError(f"the ids index holds {entry.value[:40]!r} for id {event_id!r}, not a seq") from None
        message = self._get(seq)
        if message is None or decode_body(message.data, seq)[5] != event_id:
            raise DamagedLogError(f"the ids index says id {event_id!r} is here, but the event has another id", seq=seq)
        return seq

    def type_counts(self) -> dict[str, int]:
        return dict(self._index().types)

    def totals(self, top: int) -> Totals:
        from .overview import totals

        return totals(self, top)

    def stream_index(self, prefix: str) -> Iterator[StreamEntry]:
        from .overview import StreamIndex

        self._streams = StreamIndex(self)
        return self._streams.entries(prefix)

    def ts_of(self, seqs: Sequence[int]) -> list[int]:
        if self._streams is not None:
            return self._streams.ts_of(seqs)
        return [self.ts_at(seq) for seq in seqs]

    def describe(self) -> dict[str, Any]:
        info = self.client.stream_info()
        index = self._index()
        head = index.upto
        first = self._get(1) if head else None
        last = self._get(head) if head else None
        created = int(info.created) if info.created.isdigit() else None
        types = index.types
        return {
            "path": self.location,
            "size_bytes": info.bytes,
            "events": head,
            "first_seq": 1 if first else None,
            "last_seq": head or None,
            "first_ts": format_ts(decode_body(first.data, 1)[1]) if first else None,
            "last_ts": format_ts(decode_body(last.data, head)[1]) if last else None,
            "streams": index.streams,
            "types": dict(sorted(types.items(), key=lambda item: (-item[1], item[0]))),
            "format": info.format,
            "log_id": info.log_id,
            "created": format_ts(created) if created is not None else None,
            "head_hash": (record_hash(last.data) if last else GENESIS_HASH).hex(),
            "replicas": info.replicas,
            "storage": info.storage,
            "leader": info.leader,
        }

    # -- writing and following ----------------------------------------------

    def write(self, work: Callable[[Any], T]) -> T:
        """Run ``work`` against the head until its batch lands; ride out a leader election meanwhile.

        A server that is briefly unavailable (no responders while a new leader
        is elected) is waited for up to :data:`UNAVAILABLE_SECONDS` before the
        batch is computed again; nothing of the batch was sent by then, or
        :meth:`~evlog.backends.jetstream.writing.WriteTxn.send` has found out whether it landed.
        """
        deadline = time.monotonic() + UNAVAILABLE_SECONDS
        while True:
            txn = WriteTxn(self)
            try:
                return work(txn)
            except HeadMoved:
                self.last_written = None  # someone else wrote: ask the server from now on
                continue
            except ServerUnavailableError:
                # Once sent, a batch may have landed: computing it again could store it twice.
                if txn.sent or time.monotonic() > deadline:
                    raise
                time.sleep(RETRY_SECONDS)

    def waiter(self) -> Waiter:
        from .waiting import Waiter

        return Waiter(self.client, f"evlog.{self.name}.>")

    def table(self, name: str) -> JetStreamTable:
        table = self._tables.get(name)
        if table is None:
            from .tables import JetStreamTable

            if name not in ("snapshots", "projections", "meta"):
                raise ValueError(f"unknown table {name!r}")
            table = self._tables[name] = JetStreamTable(self.client, name)
        return table

    def record(self, seq: int) -> bytes | None:
        found = self._get(seq) if seq >= 1 else None
        return None if found is None else found.data

    def housekeeping(self) -> None:
        """Nothing to do: the server keeps its own house."""

    def groups(self) -> JetStreamGroups:
        from .group_entries import JetStreamGroups

        return JetStreamGroups(self)


def _patiently(action: Callable[[], T]) -> T:
    """Run ``action`` (safe to run again), waiting out a server that briefly does not answer.

    A bucket just created on a cluster, or a stream whose leader is being
    elected, has no responder for a few seconds.
    """
    deadline = time.monotonic() + UNAVAILABLE_SECONDS
    while True:
        try:
            return action()
        except ServerUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(RETRY_SECONDS)


@dataclass
class _Index:
    """What the index of a log on a server holds, up to seq ``upto``."""

    upto: int
    types: dict[str, int]
    streams: int


def _decode_index(value: bytes) -> _Index:
    """The stored index, checked: a damaged one is reported, never trusted."""
    try:
        index = msgpack.unpackb(value)
    except DECODE_ERRORS:
        index = None
    if (
        not isinstance(index, dict)
        or not isinstance(index.get("upto"), int)
        or not isinstance(index.get("streams"), int)
        or not isinstance(index.get("types"), dict)
        or not all(isinstance(k, str) and isinstance(v, int) for k, v in index["types"].items())
    ):
        raise DamagedLogError("the log's index in its meta bucket is damaged; run evlog verify")
    return _Index(index["upto"], index["types"], index["streams"])
