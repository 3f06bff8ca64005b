"""The log's small tables (snapshots, projections) on LMDB: named databases of the environment.

Each operation is one short transaction, so no reader holds one open while
it folds or prints. A compare-and-set (:meth:`LmdbTable.swap`) is a read and
a write in one write transaction, which LMDB's single writer makes atomic.
Looking for "the newest key before" steps a cursor backwards, one read
transaction per entry handed out: the caller checks each entry (against a
record read in a transaction of its own) before it asks for the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import Store

TABLES = ("snapshots", "projections", "meta")


class LmdbTable:
    """One named database of a :class:`~evlog.backends.lmdb.store.Store` as a :class:`~evlog.backends.Table`."""

    max_value: int | None = None  # LMDB values may be as large as the map grows

    def __init__(self, store: Store, name: str) -> None:
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}")
        self.store = store
        self.db = store.dbs[name.encode()]

    def get(self, key: bytes) -> bytes | None:
        with self.store.reading(buffers=False) as txn:
            value: bytes | None = txn.get(key, db=self.db)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self.store.write(lambda txn: txn.put(key, value, db=self.db))

    def swap(self, key: bytes, value: bytes | None, *, expected: bytes | None) -> bool:
        def work(txn: Any) -> bool:
            current = txn.get(key, db=self.db)
            if (None if current is None else bytes(current)) != expected:
                return False
            if value is None:
                txn.delete(key, db=self.db)
            else:
                txn.put(key, value, db=self.db)
            return True

        done: bool = self.store.write(work)
        return done

    def delete(self, key: bytes) -> None:
        self.store.write(lambda txn: txn.delete(key, db=self.db))

    def list_keys(self) -> list[bytes]:
        with self.store.reading(buffers=False) as txn:
            return [bytes(key) for key in txn.cursor(db=self.db).iternext(values=False)]

    def newest(self, prefix: bytes, before: bytes) -> Iterator[tuple[bytes, bytes]]:
        end = before
        while True:
            with self.store.reading(buffers=False) as txn:
                cursor = txn.cursor(db=self.db)
                found = cursor.prev() if cursor.set_range(end) else cursor.last()
                if not found:
                    return
                key: bytes = cursor.key()
                value: bytes = cursor.value()
            if not key.startswith(prefix):
                return
            yield key, value
            end = key
