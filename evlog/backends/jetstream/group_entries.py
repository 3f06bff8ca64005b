"""The groups of a log on a server: entries in the log's ``groups`` bucket, and a lease for the one follower.

A group here is what it is on an LMDB log (see :mod:`evlog.groups`): an entry
with its position, filters and dead letters, the same bytes under the same
keys, moved only by acknowledgements. It is not a durable JetStream consumer,
for reasons of meaning: a group's position is one number that ``group ack``
from any process may move and ``group reset`` may put anywhere; a plain
``tail --group`` moves nothing and must not have its events handed out again
every ack-wait; types and ``--where`` filter on the client, not on subjects;
and a key-value write is a stream message, acknowledged once the replicas
have it, where a consumer's acks were lost when a single server was killed.
The follower reads the events as any follower does (an ordered read).

Keys (``kv_key`` text parts): ``g.<name>`` holds a group's entry,
``d.<name>.<seq>`` a dead letter, ``lock.<name>`` the lease of its follower.
Revisions are the bucket's, so every write that must not lose another one is
a compare-and-set.

One follower per group across hosts is a lease: ``lock.<name>`` holds the
holder's host, pid and the time its hold ends, renewed by the holder while it
runs (:meth:`Lease.keep`, at most every :data:`RENEW_SECONDS`). A second
follower is refused with the holder named, unless the lease has run out, or
the holder is a process of this host that has ended (``kill -9`` leaves its
lease behind; its successor on the same host takes over at once, one on
another host after :data:`LEASE_SECONDS`). Lease ends are compared with the
local clock: hosts whose clocks differ by more than a few seconds shorten or
lengthen that wait.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import TYPE_CHECKING

import msgpack

from ...errors import GroupBusyError, StorageError
from ...textsafe import visible
from .kv import RevisionConflict
from .url import kv_key, kv_key_parts

if TYPE_CHECKING:
    from .backend import JetStreamBackend
    from .kv import Bucket

LEASE_SECONDS = 15.0
"""How long a follower's hold lasts without renewal."""
RENEW_SECONDS = 5.0
"""A holder renews at most this often (a renewal is one request)."""
_GROUP, _DEAD, _LOCK = "g", "d", "lock"
_MARK = b"\xff"


def _kv_key(key: bytes) -> str:
    """The bucket key of a groups entry key (as :mod:`evlog.groups` makes them: valid UTF-8 names)."""
    name, mark, rest = key.partition(_MARK)
    if not mark:
        return kv_key(_GROUP, name.decode())
    return kv_key(_DEAD, name.decode(), str(int.from_bytes(rest, "big")))


def _entry_key(key: str) -> bytes:
    """The groups entry key a bucket key stands for; one evlog never writes becomes a key read as damage."""
    with contextlib.suppress(ValueError):
        parts = kv_key_parts(key)
        if len(parts) == 2 and parts[0] == _GROUP:
            return parts[1].encode()
        if len(parts) == 3 and parts[0] == _DEAD and parts[2].isascii() and parts[2].isdigit():
            seq = int(parts[2])
            if seq < 1 << 64 and str(seq) == parts[2]:
                return parts[1].encode() + _MARK + seq.to_bytes(8, "big")
    return b"\x00" + key.encode()  # no name evlog keeps starts with a control character


class JetStreamGroups:
    """The ``groups`` bucket of one log on a server."""

    def __init__(self, backend: JetStreamBackend) -> None:
        self.backend = backend
        self._read: Bucket | None = None

    @property
    def bucket(self) -> Bucket:
        """The bucket, created if the log has none yet (for writing)."""
        return self.backend._bucket("groups")

    def _reading(self) -> Bucket | None:
        """The bucket if it exists: reading groups of a log that never had one creates nothing."""
        if self._read is None:
            from ...errors import LogNotFoundError
            from .kv import Bucket

            try:
                self._read = Bucket.open(self.backend.client, "groups", create=False)
            except LogNotFoundError:
                return None
        return self._read

    def get(self, key: bytes) -> tuple[bytes, object] | None:
        bucket = self._reading()
        entry = bucket.get(_kv_key(key)) if bucket is not None else None
        return None if entry is None else (entry.value, entry.revision)

    def items(self, prefix: bytes = b"") -> list[tuple[bytes, bytes, object]]:
        bucket = self._reading()
        if bucket is None:
            return []
        if prefix:
            name, mark, rest = prefix.partition(_MARK)
            if not mark or rest:
                raise ValueError(f"groups entries are listed all, or by a name and 0xFF, not by {prefix!r}")
            listed = bucket.items(kv_key(_DEAD, name.decode()))
        else:
            listed = bucket.items(_GROUP) + bucket.items(_DEAD)
        found: list[tuple[bytes, bytes, object]] = [(_entry_key(key), entry.value, entry.revision)
                                                     for key, entry in listed]
        return sorted(found, key=lambda item: item[0])

    def put(self, key: bytes, value: bytes) -> None:
        self.bucket.put(_kv_key(key), value)

    def swap(self, key: bytes, value: bytes, revision: object | None) -> bool:
        assert revision is None or isinstance(revision, int)
        try:
            self.bucket.update(_kv_key(key), value, revision=revision)
        except RevisionConflict:
            return False
        return True

    def delete(self, key: bytes, revision: object | None = None) -> bool:
        # Looked up first: a delete of a key without a value would still leave a marker in the bucket.
        bucket = self._reading()
        entry = bucket.get(_kv_key(key)) if bucket is not None else None
        if entry is None or (revision is not None and entry.revision != revision):
            return False
        try:
            self.bucket.delete(_kv_key(key), revision=entry.revision)
        except RevisionConflict:
            return False
        return True

    def hold(self, name: str) -> Lease:
        return Lease(self.bucket, name)

    def wake(self) -> None:
        """Nothing to send: a follower looks for queued dead letters each time it is idle (every poll)."""


class Lease:
    """One follower per group across hosts: a renewed entry naming the holder (see the module docstring)."""

    def __init__(self, bucket: Bucket, name: str, *, lease: float = LEASE_SECONDS) -> None:
        self.bucket, self.name, self.lease = bucket, name, lease
        self.key = kv_key(_LOCK, name)
        self.host = socket.gethostname()
        self.revision: int | None = None
        self.renewed = 0.0  # time.monotonic() of the last renewal

    def _value(self) -> bytes:
        value: bytes = msgpack.packb({"host": self.host, "pid": os.getpid(),
                                      "expires": time.time_ns() + int(self.lease * 1e9)})
        return value

    def acquire(self) -> None:
        from ...groups import busy_message

        for _ in range(10):  # each turn: someone else changed the entry meanwhile
            entry = self.bucket.get(self.key)
            if entry is not None:
                holder = _holder(entry.value)
                if holder is not None and not self._stale(*holder):
                    host, pid, expires = holder
                    ends = max(0.0, (expires - time.time_ns()) / 1e9)
                    raise GroupBusyError(busy_message(
                        self.name, f" (pid {pid} on host {visible(host)}; its hold ends in {ends:.0f} s "
                                   "unless it is renewed)"))
            try:
                self.revision = self.bucket.update(self.key, self._value(),
                                                   revision=None if entry is None else entry.revision)
            except RevisionConflict:
                continue
            self.renewed = time.monotonic()
            return
        raise GroupBusyError(busy_message(self.name, " (the hold changed hands ten times while asked for)"))

    def _stale(self, host: str, pid: int, expires: int) -> bool:
        """Whether a hold can be taken over: run out, or left by a process of this host that has ended."""
        if expires < time.time_ns():
            return True
        if host != self.host or pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def keep(self) -> None:
        """Renew the hold if it is due; GroupBusyError if another follower took it over meanwhile.

        A server that cannot be reached (a leader election) is tried again at
        the next call, until the hold has all but run out.
        """
        if self.revision is None or time.monotonic() - self.renewed < RENEW_SECONDS:
            return
        try:
            self.revision = self.bucket.update(self.key, self._value(), revision=self.revision)
        except RevisionConflict:
            self.revision = None
            entry = self.bucket.get(self.key)
            holder = _holder(entry.value) if entry is not None else None
            who = f"pid {holder[1]} on host {visible(holder[0])}" if holder else "another process"
            raise GroupBusyError(
                f"group {visible(self.name)!r}: {who} took the group over while this follower had not renewed "
                f"its hold for {time.monotonic() - self.renewed:.0f} s (it lasts {self.lease:g} s); this one stops"
            ) from None
        except StorageError:
            if time.monotonic() - self.renewed > self.lease - RENEW_SECONDS:
                raise
            return
        self.renewed = time.monotonic()

    def release(self, *, remove: bool = False) -> None:
        """Give the hold up (nothing is left behind either way)."""
        if self.revision is not None:
            with contextlib.suppress(StorageError):  # left behind, it runs out or its host sees the pid gone
                self.bucket.delete(self.key, revision=self.revision)
            self.revision = None

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _holder(value: bytes) -> tuple[str, int, int] | None:
    """(host, pid, end in ns) of a lease entry; None for one that does not decode (it can be taken over)."""
    try:
        found = msgpack.unpackb(value)
    except (ValueError, msgpack.UnpackException):
        return None
    if (type(found) is not dict or type(found.get("host")) is not str or type(found.get("pid")) is not int
            or type(found.get("expires")) is not int):
        return None
    return found["host"], found["pid"], found["expires"]
