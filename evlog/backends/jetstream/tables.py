"""The log's small tables (snapshots, projections) on the server: one key-value bucket each.

An entry is keyed exactly as on LMDB: the KV key is the hex of the LMDB
key's bytes (``url.kv_key`` of it, one token). Hex keeps every byte sequence
a valid KV key, and it sorts as the bytes do, digit for digit, so a snapshot
key (definition hash, then the seq as 8 big-endian bytes) still sorts by
definition, then seq, and "the newest snapshot at or before seq N" means the
same as on LMDB. The server has no ordered cursor over keys: the keys are
listed (a log keeps few: a snapshot every many thousand events) and picked
here.

A key in the bucket that is not such hex was not written by evlog; it is
handed out as ``b"\\xff"`` and the key's text, and such bytes map back to that
key, so that a listing shows it as damage and a drop or ``projection rm`` can
remove it. evlog never writes a key of that form itself: a projection's name
is UTF-8 (never a 0xff byte), and a snapshot key's seq bytes begin with 0x00.

Reading never creates anything: a bucket that does not exist yet is an empty
table, and it is made on the first write (a reader may lack the right to).
A compare-and-set is the bucket's update at the revision read; a value must
fit in one message (``max_payload``, 1 MiB by default), which :attr:`max_value` says.

Writes go through a connection of their own, made on the first write. A fold
saves snapshots while it reads the log through an ordered consumer, which
keeps the log's connection full of messages on their way; the answer to a
write sent on it waits behind them (measured here during a read of 200,000
events: 0.1-0.8 s a write on the log's connection, 0.02-0.13 s on its own;
with an earlier reader, a timeout after 5 s).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ...errors import LogNotFoundError
from .client import LogClient
from .kv import Bucket, RevisionConflict
from .url import kv_key

if TYPE_CHECKING:
    from .kv import Entry

_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_KV_TEXT = re.compile(rb"[-/_=.a-zA-Z0-9]+")
_FOREIGN = b"\xff"


class JetStreamTable:
    """One key-value bucket of a log as a :class:`~evlog.backends.Table`."""

    def __init__(self, client: LogClient, name: str) -> None:
        self.client = client
        self.name = name
        self.max_value: int | None = int(client.nc.max_payload)
        self._bucket: Bucket | None = None
        self._writer: LogClient | None = None
        self._written: Bucket | None = None

    def _open(self) -> Bucket | None:
        """The bucket on the log's connection, for reading; None while it does not exist."""
        if self._bucket is None:
            try:
                self._bucket = Bucket.open(self.client, self.name, create=False)
            except LogNotFoundError:
                return None  # nothing stored yet, and a reader makes nothing
        return self._bucket

    def _for_writing(self) -> Bucket:
        """The bucket on the connection for writes, made if missing."""
        if self._written is None:
            if self._writer is None:
                self._writer = LogClient.connect(self.client.location, timeout=self.client.timeout)
            self._written = Bucket.open(self._writer, self.name, create=True)
        return self._written

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = self._written = None

    @staticmethod
    def _kv_key(key: bytes) -> str:
        text = key[1:]
        if key[:1] == _FOREIGN and _KV_TEXT.fullmatch(text) and not _HEX.fullmatch(text.decode()):
            return text.decode()  # a key someone else put in the bucket, given back as it was
        return kv_key(key.hex())

    @staticmethod
    def _key(text: str) -> bytes:
        return bytes.fromhex(text) if _HEX.fullmatch(text) else _FOREIGN + text.encode()

    def get(self, key: bytes) -> bytes | None:
        bucket = self._open()
        entry = bucket.get(self._kv_key(key)) if bucket is not None else None
        return None if entry is None else entry.value

    def put(self, key: bytes, value: bytes) -> None:
        self._for_writing().put(self._kv_key(key), value)

    def swap(self, key: bytes, value: bytes | None, *, expected: bytes | None) -> bool:
        if value is None and self._open() is None:  # no bucket: no key to delete
            return expected is None
        bucket = self._for_writing()
        name = self._kv_key(key)
        entry: Entry | None = bucket.get(name)
        if (None if entry is None else entry.value) != expected:
            return False
        try:
            if value is None:
                if entry is not None:
                    bucket.delete(name, revision=entry.revision)
            else:
                bucket.update(name, value, revision=None if entry is None else entry.revision)
        except RevisionConflict:
            return False
        return True

    def delete(self, key: bytes) -> None:
        if self._open() is not None:
            self._for_writing().delete(self._kv_key(key))

    def list_keys(self) -> list[bytes]:
        bucket = self._open()
        if bucket is None:
            return []
        return sorted(self._key(text) for text in bucket.list_keys())

    def newest(self, prefix: bytes, before: bytes) -> Iterator[tuple[bytes, bytes]]:
        candidates = [key for key in self.list_keys() if key.startswith(prefix) and key < before]
        for key in reversed(candidates):
            value = self.get(key)
            if value is not None:  # dropped meanwhile
                yield key, value
