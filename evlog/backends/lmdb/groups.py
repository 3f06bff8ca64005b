"""The ``groups`` database of an LMDB log, and the lock file that allows one follower per group.

:mod:`evlog.groups` keeps the logic of groups (entries, acknowledgements, dead
letters) over the small operations of :class:`~evlog.backends.GroupEntries`;
here they are short transactions on the named database. LMDB has one writer
at a time, so a compare-and-set is a comparison inside the write transaction,
with the stored bytes themselves as the revision.

One follower per group is an exclusive ``flock`` on ``group-<hex name>.lock``
in the log directory: the operating system drops it when its process ends in
any way (even ``kill -9``), so a crashed follower never blocks its successor,
and nothing has to expire.
"""

from __future__ import annotations

import contextlib
import os
import stat

import lmdb

from ...errors import GroupBusyError, StorageError
from ...textsafe import visible
from .store import Store


class LmdbGroups:
    """The ``groups`` database of one open LMDB log."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.dbs[b"groups"]

    def get(self, key: bytes) -> tuple[bytes, object] | None:
        with self.store.reading(buffers=False) as txn:
            value = txn.get(key, db=self.db)
        return None if value is None else (bytes(value), bytes(value))

    def items(self, prefix: bytes = b"") -> list[tuple[bytes, bytes, object]]:
        found: list[tuple[bytes, bytes, object]] = []
        with self.store.reading(buffers=False) as txn:
            cursor = txn.cursor(db=self.db)
            if not cursor.set_range(prefix):
                return found
            for key, value in cursor:
                key, value = bytes(key), bytes(value)
                if not key.startswith(prefix):
                    break
                found.append((key, value, value))
        return found

    def put(self, key: bytes, value: bytes) -> None:
        self.store.write(lambda txn: txn.put(key, value, db=self.db), notify=False)

    def swap(self, key: bytes, value: bytes, revision: object | None) -> bool:
        def work(txn: lmdb.Transaction) -> bool:
            current = txn.get(key, db=self.db)
            if (None if current is None else bytes(current)) != revision:
                return False
            txn.put(key, value, db=self.db)
            return True

        done: bool = self.store.write(work, notify=False)
        return done

    def delete(self, key: bytes, revision: object | None = None) -> bool:
        if self.get(key) is None:
            return False  # a read, not a commit (most acknowledgements have no dead letter to remove)

        def work(txn: lmdb.Transaction) -> bool:
            if revision is not None:
                current = txn.get(key, db=self.db)
                if current is None or bytes(current) != revision:
                    return False
            return bool(txn.delete(key, db=self.db))

        done: bool = self.store.write(work, notify=False)
        return done

    def hold(self, name: str) -> GroupLock:
        return GroupLock(self.store.path, name)

    def wake(self) -> None:
        self.store.notify_followers()


class GroupLock:
    """Only one follower per group at a time: an exclusive lock on ``group-<hex>.lock`` in the log.

    The holder writes its pid into the file, so a refused process can say who
    holds it. The file must be a regular file: it is opened without following
    a symlink, and anything else in its place is refused.
    """

    def __init__(self, log_path: str, name: str) -> None:
        self.path = os.path.join(log_path, f"group-{name.encode(errors='surrogateescape').hex()}.lock")
        self.fd: int | None = None
        self.name = name

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        shown = f"{visible(self.path)}"
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if os.path.islink(self.path):
                raise StorageError(
                    f"{shown} is a symbolic link, not a lock file; remove it (evlog never makes one)"
                ) from None
            raise StorageError(f"cannot open {shown}: {exc.strerror}; check the log directory") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise StorageError(f"{shown} is not a regular file; remove it (evlog only ever makes a regular file)")
        return fd

    def acquire(self) -> None:
        import fcntl

        from ...groups import busy_message

        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise GroupBusyError(busy_message(self.name, holder)) from None
        with contextlib.suppress(OSError):  # who holds it is for messages only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def keep(self) -> None:
        """Nothing to renew: the lock lasts as long as its process."""

    def __enter__(self) -> GroupLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self, *, remove: bool = False) -> None:
        """Drop the lock; with ``remove`` (the group is gone) delete its file too."""
        if self.fd is not None:
            if remove:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            os.close(self.fd)
            self.fd = None


def _holder(fd: int) -> str:
    """`` (pid N)`` from a lock file's content, or nothing when it holds no plausible pid."""
    try:
        text = os.pread(fd, 24, 0).strip()
    except OSError:
        return ""
    return f" (pid {int(text)})" if text.isdigit() and 0 < int(text) < 1 << 32 else ""
