"""A log in an LMDB environment on this machine: evlog's embedded default.

:class:`~evlog.backends.lmdb.store.Store` opens the environment and its named
databases; :mod:`~evlog.backends.lmdb.reading` reads records in short
transactions; this module puts them behind the backend interface of
:mod:`evlog.backends`, and writes a batch in one write transaction (one
writer at a time across processes, so the head cannot move under it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import lmdb

from ...errors import DamagedLogError, StorageError
from ...record import GENESIS_HASH, decode_body, key_seq, record_hash, seq_key
from ...scan import Progress, Row
from ...timefmt import format_ts
from .. import Chunks, StreamEntry, Totals
from . import reading
from .reading import type_counts
from .store import U64, Store, parse_format

if TYPE_CHECKING:
    from .groups import LmdbGroups
    from .tables import LmdbTable
    from .watch import Watcher

T = TypeVar("T")


class LmdbBackend:
    """An open LMDB log (see :class:`Store` for how it is opened and checked)."""

    def __init__(self, path: str, *, create: bool, writable: bool, check_format: bool = True) -> None:
        self.store = Store(path, create=create, writable=writable, check_format=check_format)
        self.location = path
        self.writable = self.store.writable

    def close(self) -> None:
        self.store.close()

    # -- reading -----------------------------------------------------------

    def head(self) -> int:
        return reading.head_seq(self.store)

    def ts_at(self, seq: int) -> int:
        return reading.ts_at(self.store, seq)

    def rows(
        self,
        first: int,
        last: int,
        *,
        types: Callable[[str | None], bool] | None = None,
        streams: Callable[[str | None], bool] | None = None,
        progress: Progress | None = None,
    ) -> Iterator[Row]:
        return reading.scan(self.store, first, last, types=types, streams=streams, progress=progress)

    def rows_by_seq(
        self,
        seqs: Iterable[int],
        *,
        types: Callable[[str | None], bool] | None = None,
        progress: Progress | None = None,
    ) -> Iterator[Row]:
        return reading.rows_by_seq(self.store, seqs, types=types, progress=progress)

    def stream_seqs(self, stream: str, first: int, last: int) -> Iterator[int]:
        return reading.stream_seqs(self.store, stream, first, last)

    def raw_range(self, first: int, last: int, progress: Progress | None = None) -> Chunks:
        return reading.raw_range(self.store, first, last, progress)

    def raw_seqs(self, seqs: Iterator[int], progress: Progress | None = None) -> Chunks:
        return reading.raw_seqs(self.store, seqs, progress)

    def id_seq(self, event_id: str) -> int | None:
        with self.store.reading() as txn:
            found = txn.get(event_id.encode(), db=self.store.dbs[b"ids"])
            return None if found is None else key_seq(bytes(found))

    def type_counts(self) -> dict[str, int]:
        with self.store.reading() as txn:
            return type_counts(txn, self.store.dbs[b"types"])

    def totals(self, top: int) -> Totals:
        return reading.totals(self.store, top)

    def stream_index(self, prefix: str) -> Iterator[StreamEntry]:
        return reading.stream_index(self.store, prefix)

    def ts_of(self, seqs: Sequence[int]) -> list[int]:
        return reading.ts_of(self.store, seqs)

    def describe(self) -> dict[str, Any]:
        store = self.store
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
            os.path.getsize(os.path.join(self.location, name))
            for name in ("data.mdb", "lock.mdb")
            if os.path.exists(os.path.join(self.location, name))
        )
        return {
            "path": os.path.abspath(self.location),
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

    # -- writing and following ----------------------------------------------

    def write(self, work: Callable[[Any], T]) -> T:
        store = self.store
        return store.write(lambda txn: work(_WriteTxn(txn, store)))

    def table(self, name: str) -> LmdbTable:
        return self.store.table(name)

    def record(self, seq: int) -> bytes | None:
        return self.store.record(seq)

    def waiter(self) -> Watcher:
        from .watch import Watcher  # ctypes, for inotify: only followers pay for it

        return Watcher(self.location)

    def housekeeping(self) -> None:
        """Free reader slots of dead processes, so they cannot pin old pages."""
        with contextlib.suppress(lmdb.Error):  # housekeeping must never stop a follower
            self.store.env.reader_check()

    def groups(self) -> LmdbGroups:
        from .groups import LmdbGroups

        return LmdbGroups(self.store)


class _WriteTxn:
    """One LMDB write transaction as :mod:`evlog.batch` sees it."""

    def __init__(self, txn: lmdb.Transaction, store: Store) -> None:
        self.txn = txn
        self.store = store
        dbs = store.dbs
        self.events, self.streams, self.ids = dbs[b"events"], dbs[b"streams"], dbs[b"ids"]

    def last(self) -> tuple[int, bytes | None]:
        cursor = self.txn.cursor(db=self.events)
        if not cursor.last():
            return 0, None
        return key_seq(cursor.key()), bytes(cursor.value())

    def id_seq(self, id_key: bytes) -> int | None:
        found = self.txn.get(id_key, db=self.ids)
        return None if found is None else key_seq(found)

    def record(self, seq: int) -> bytes | None:
        value = self.txn.get(seq_key(seq), db=self.events)
        return None if value is None else bytes(value)

    def stream_version(self, stream_key: bytes) -> int:
        cursor = self.txn.cursor(db=self.streams)
        return int(cursor.count()) if cursor.set_key(stream_key) else 0

    def put(
        self,
        rows: Sequence[tuple[bytes, bytes]],
        index_rows: Sequence[tuple[bytes, bytes]],
        ids: dict[bytes, bytes],
        type_counts: dict[str, int],
        new_streams: int,
    ) -> None:
        txn = self.txn
        added = txn.cursor(db=self.events).putmulti(rows, append=True)[1]
        if added != len(rows):
            raise StorageError(
                f"{self.store.path}: the log's head moved during an append ({added} of {len(rows)} "
                "records placed); nothing was written, retry"
            )
        txn.cursor(db=self.streams).putmulti(index_rows, dupdata=True)
        for key, value in ids.items():
            txn.put(key, value, db=self.ids)
        dbs = self.store.dbs
        _add_counts(txn, dbs[b"types"], {name.encode(): count for name, count in type_counts.items()})
        if new_streams:
            _add_counts(txn, dbs[b"meta"], {b"streams": new_streams})


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


def _add_counts(txn: lmdb.Transaction, db: Any, increments: Mapping[bytes, int]) -> None:
    """Add to the 8-byte big-endian counters stored under each key."""
    for key, increment in increments.items():
        old = txn.get(key, db=db)
        if old is not None and len(old) != 8:
            raise DamagedLogError(f"the counter of {key.decode(errors='replace')!r} is {len(old)} bytes, not 8")
        txn.put(key, U64.pack((U64.unpack(old)[0] if old else 0) + increment), db=db)
