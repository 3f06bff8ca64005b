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
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ...errors import LogNotFoundError
from .kv import Bucket, RevisionConflict
from .url import kv_key

if TYPE_CHECKING:
    from .client import LogClient

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

    def _open(self, *, create: bool) -> Bucket | None:
        if self._bucket is None:
            try:
                self._bucket = Bucket.open(self.client, self.name, create=create)
            except LogNotFoundError:
                if create:
                    raise
                return None  # nothing stored yet, and a reader makes nothing
        return self._bucket

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
        bucket = self._open(create=False)
        entry = bucket.get(self._kv_key(key)) if bucket is not None else None
        return None if entry is None else entry.value

    def put(self, key: bytes, value: bytes) -> None:
        bucket = self._open(create=True)
        assert bucket is not None
        bucket.put(self._kv_key(key), value)

    def swap(self, key: bytes, value: bytes | None, *, expected: bytes | None) -> bool:
        bucket = self._open(create=value is not None)
        if bucket is None:  # no bucket: no key to delete
            return expected is None
        name = self._kv_key(key)
        entry = bucket.get(name)
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
        bucket = self._open(create=False)
        if bucket is not None:
            bucket.delete(self._kv_key(key))

    def list_keys(self) -> list[bytes]:
        bucket = self._open(create=False)
        if bucket is None:
            return []
        return sorted(self._key(text) for text in bucket.list_keys())

    def newest(self, prefix: bytes, before: bytes) -> Iterator[tuple[bytes, bytes]]:
        candidates = [key for key in self.list_keys() if key.startswith(prefix) and key < before]
        for key in reversed(candidates):
            value = self.get(key)
            if value is not None:  # dropped meanwhile
                yield key, value
