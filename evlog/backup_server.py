"""Backing up a log on a server (``nats://``) into a new local LMDB log.

There is no copy of a JetStream stream that LMDB could open, so the backup
reads the records in seq order (an ordered consumer, as replay does) and
writes them into a new log the way an append writes a batch
(:meth:`evlog.backends.Backend.write`): the records byte for byte, so the
copy's head hash is the source's and ``evlog verify`` agrees on both, and
beside them the ``streams``, ``ids`` and ``types`` indexes and the streams
count, built from the records. The copy takes the source's log id and
creation time, so it is the same log, kept elsewhere.

The copy is the log up to the head it had when the backup began; events
appended meanwhile are left for the next backup. Each record is checked as
it is indexed (it decodes, it is on its stream's subject, its version is
its stream's count, its time does not go backwards, its chain hash follows
from the previous one): a damaged source stops the backup with "damaged
log: seq N ...", and nothing is left behind, as for a damaged LMDB log.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from .errors import DamagedLogError
from .record import GENESIS_HASH, HASH_SIZE, chain_hash, decode_body, seq_key
from .scan import CHUNK, Progress

if TYPE_CHECKING:
    from .backends import WriteTxn
    from .backends.jetstream.backend import JetStreamBackend
    from .backends.lmdb import LmdbBackend
    from .log import Log


def copy_from_server(log: Log, target: str, progress: Progress | None) -> None:
    """Write every record of ``log`` (on a server) up to its current head into a new LMDB log at ``target``."""
    from .backends.jetstream.backend import JetStreamBackend
    from .backends.lmdb import LmdbBackend

    source = log.backend()
    assert isinstance(source, JetStreamBackend)
    info = source.client.stream_info()
    copy = LmdbBackend(target, create=True, writable=True)
    try:
        _take_identity(copy, info.log_id, info.created)
        _copy_records(source, copy, info.last_seq, progress)
    finally:
        copy.close()


def _take_identity(copy: LmdbBackend, log_id: str, created: str) -> None:
    """The source's log id and creation time, in place of those the new log was made with."""
    from .backends.lmdb.store import U64

    store = copy.store

    def put(txn: Any) -> None:
        meta = store.dbs[b"meta"]
        if log_id:
            txn.put(b"log_id", log_id.encode(), db=meta)
        if created.isdigit():
            txn.put(b"created", U64.pack(int(created)), db=meta)

    store.write(put, notify=False)


class _Indexer:
    """The index rows of records in seq order, each record checked against the ones before it."""

    def __init__(self, log_name: str) -> None:
        self.log_name = log_name
        self.expected = 1
        self.previous = GENESIS_HASH
        self.last_ts = 0
        self.versions: dict[str, int] = {}

    def batch(self, messages: list[Any]) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]],
                                                  dict[bytes, bytes], dict[str, int], int]:
        """What an append of these records stores: rows, stream index rows, ids, type counts, new streams."""
        from .backends.jetstream.url import stream_of_subject

        rows: list[tuple[bytes, bytes]] = []
        index_rows: list[tuple[bytes, bytes]] = []
        ids: dict[bytes, bytes] = {}
        types: dict[str, int] = {}
        new_streams = 0
        for message in messages:
            seq, value = message.seq, message.data
            if seq != self.expected:
                raise DamagedLogError("missing: the log has a gap here", seq=self.expected)
            self.expected = seq + 1
            key = seq_key(seq)
            _, ts, version, etype, stream, event_id, _, _ = decode_body(value, seq)
            if chain_hash(self.previous, key, value[:-HASH_SIZE]) != value[-HASH_SIZE:]:
                raise DamagedLogError("does not match its hash: the record or its stored hash was changed", seq=seq)
            self.previous = value[-HASH_SIZE:]
            try:
                subject_stream = stream_of_subject(self.log_name, message.subject)
            except ValueError:
                raise DamagedLogError(f"is on subject {message.subject!r}, not an event subject of this log",
                                      seq=seq) from None
            if subject_stream != stream:
                raise DamagedLogError(f"is an event of stream {stream!r} on the subject of {subject_stream!r}", seq=seq)
            if ts < self.last_ts:
                raise DamagedLogError("has a ts before the event's before it", seq=seq)
            self.last_ts = ts
            rows.append((key, value))
            types[etype] = types.get(etype, 0) + 1
            if stream is not None:
                count = self.versions.get(stream, 0) + 1
                if version != count:
                    raise DamagedLogError(f"is version {version} of {stream!r}, but it is event {count} of that "
                                          "stream", seq=seq)
                self.versions[stream] = count
                new_streams += count == 1
                index_rows.append((stream.encode(), key))
            if event_id is not None:
                ids[event_id.encode()] = key
        return rows, index_rows, ids, types, new_streams


def _put(txn: WriteTxn, batch: tuple[Any, ...]) -> None:
    txn.put(*batch)


def _copy_records(source: JetStreamBackend, copy: LmdbBackend, head: int, progress: Progress | None) -> None:
    indexer = _Indexer(source.name)
    done = 0
    for chunk in source.client.read(1, head, chunk=CHUNK):
        if not chunk:
            continue
        copy.write(functools.partial(_put, batch=indexer.batch(chunk)))
        done += len(chunk)
        if progress is not None:
            progress(done, head)
    if indexer.expected <= head:
        raise DamagedLogError("missing: the log has a gap here", seq=indexer.expected)
