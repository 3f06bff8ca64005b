"""Following a log as it grows: waking up on commits, reading each event once.

A follower remembers the next seq it has not printed. Seqs are gapless and
a commit appears whole, so reading ``next..head`` after every wake-up
prints each committed event exactly once, however many arrive at once.

Waking up: appenders touch a sidecar file (``commits``) after each commit
has returned, and followers watch it with inotify where the platform has
it. Change events of ``data.mdb`` are watched too, as a hint only (they can
arrive before the commit is visible, and other programs' writers do not
touch the sidecar), so after such an event the follower looks again a few
times over the next milliseconds. A bounded poll runs in every case, so a
follower without inotify, or one that missed an event, is late by at most
:data:`POLL_SECONDS`. Idle, a follower sleeps in ``select``: no CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import lmdb

from . import scan
from .errors import EvlogError, LogNotFoundError, UsageError
from .log import Log
from .store import U64, Store


class GroupBusyError(EvlogError):
    """Another process follows the same group."""

POLL_SECONDS = 0.25
"""Longest wait for a commit that sent no notification."""
RECHECK_SECONDS = (0.001, 0.003, 0.01, 0.03)
"""After a data.mdb change event with nothing new visible yet, look again after these delays."""
READER_CHECK_SECONDS = 10.0

_IN_MODIFY = 0x00000002
_IN_ATTRIB = 0x00000004
_IN_CLOSE_WRITE = 0x00000008
_IN_CREATE = 0x00000100
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")


class Watcher:
    """Waits for a change in the log directory, with inotify when available."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.fd: int | None = None
        self.sidecar_watch: int | None = None
        self._libc: ctypes.CDLL | None = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        except (OSError, AttributeError):
            return  # no inotify here: polling alone
        if fd < 0:
            return
        self._libc, self.fd = libc, fd
        self._watch_directory()

    def _watch_directory(self) -> None:
        """Watch the directory (sidecar created, data.mdb written) and the sidecar (touched)."""
        assert self._libc is not None and self.fd is not None
        self._libc.inotify_add_watch(
            self.fd, os.fsencode(self.directory), _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_CREATE
        )

    def wait(self, timeout: float) -> bool:
        """Sleep until a change or ``timeout``; True when something changed."""
        if self.fd is None:
            time.sleep(timeout)
            return False
        try:
            ready, _, _ = select.select([self.fd], [], [], timeout)
        except InterruptedError:  # pragma: no cover - retried by Python, kept for clarity
            return False
        if not ready:
            return False
        try:
            while os.read(self.fd, 65536):
                pass  # drain: one look at the log covers every queued event
        except BlockingIOError:
            pass
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def last_rows(
    store: Store,
    count: int,
    head: int,
    *,
    types: Callable[[str | None], bool] | None = None,
    streams: Callable[[str | None], bool] | None = None,
    where: Callable[[int, Any], bool] | None = None,
) -> list[scan.Row]:
    """The last ``count`` events up to ``head`` that pass the filters (``tail -n``)."""
    found: list[scan.Row] = []
    high = head
    span = max(count, 256)
    while high >= 1 and len(found) < count:
        low = max(1, high - span + 1)
        chunk = [row for row in scan.scan(store, low, high, types=types, streams=streams)
                 if where is None or where(*row)]
        found = chunk + found
        high = low - 1
        span = min(span * 4, 1 << 20)  # sparse matches: widen the window
    return found[-count:] if count else []


def wait_for_log(path: str, *, poll: float = 0.1) -> bool:
    """Block until a log exists at ``path`` (``evlog tail --wait``); True if it had to wait.

    Only a log that does not exist yet is waited for: a path that can never
    become one (a file, another program's data) fails at once, as without
    ``--wait``.
    """
    waited = False
    while True:
        try:
            Store(path, create=False).close()
            return waited
        except LogNotFoundError:
            waited = True
            time.sleep(poll)


def follow(
    log: Log,
    first: int,
    *,
    types: Callable[[str | None], bool] | None = None,
    streams: Callable[[str | None], bool] | None = None,
    on_idle: Callable[[], None] | None = None,
) -> Iterator[tuple[list[scan.Row], int]]:
    """Rows from seq ``first`` on, forever, as commits arrive.

    Yields ``(rows, last)``: the rows that passed the filters and the last
    seq read (a group's checkpoint moves to it once the rows are out).
    ``on_idle`` is called each time the follower has caught up and is about
    to wait.
    """
    store = log.store()
    watcher = Watcher(log.path)
    next_seq = max(first, 1)
    last_reader_check = time.monotonic()
    try:
        while True:
            head = scan.head_seq(store)
            if head >= next_seq:
                end = min(head, next_seq + 16 * scan.CHUNK - 1)
                rows = list(scan.scan(store, next_seq, end, types=types, streams=streams))
                next_seq = end + 1
                yield rows, end
                continue
            if on_idle is not None:
                on_idle()
            if time.monotonic() - last_reader_check > READER_CHECK_SECONDS:
                _reader_check(store)
                last_reader_check = time.monotonic()
            if watcher.wait(POLL_SECONDS):
                # A data.mdb event can come before its commit is visible: look again
                # shortly, waking at once on the sidecar touch that follows the commit.
                for delay in RECHECK_SECONDS:
                    if scan.head_seq(store) >= next_seq:
                        break
                    watcher.wait(delay)
    finally:
        watcher.close()


def _reader_check(store: Store) -> None:
    """Free reader slots of dead processes, so they cannot pin old pages."""
    with contextlib.suppress(lmdb.Error):  # housekeeping must never stop a follower
        store.env.reader_check()


# -- durable groups --------------------------------------------------------------

GROUP_NAME_BYTES = 200


def check_group_name(name: str) -> bytes:
    encoded = name.encode()
    if not name or len(encoded) > GROUP_NAME_BYTES or any(ord(char) < 32 for char in name):
        raise UsageError(
            f"group name {name!r}: give 1 to {GROUP_NAME_BYTES} bytes of text without control characters"
        )
    return encoded


def group_position(store: Store, name: str) -> int | None:
    """The last seq the group has delivered (None: the group does not exist)."""
    with store.reading(buffers=False) as txn:
        value = txn.get(check_group_name(name), db=store.dbs[b"groups"])
    return None if value is None else int(U64.unpack(value)[0])


def set_group_position(store: Store, name: str, seq: int) -> None:
    key = check_group_name(name)
    store.write(lambda txn: txn.put(key, U64.pack(seq), db=store.dbs[b"groups"]), notify=False)


def list_groups(store: Store) -> list[tuple[str, int]]:
    with store.reading(buffers=False) as txn:
        return [(key.decode(), int(U64.unpack(value)[0])) for key, value in txn.cursor(db=store.dbs[b"groups"])]


def remove_group(store: Store, name: str) -> bool:
    key = check_group_name(name)
    return bool(store.write(lambda txn: txn.delete(key, db=store.dbs[b"groups"]), notify=False))


class GroupLock:
    """Only one follower per group at a time: an exclusive lock on a file in the log.

    The operating system drops the lock when its process ends in any way
    (even ``kill -9``), so a crashed follower never blocks its successor.
    """

    def __init__(self, log_path: str, name: str) -> None:
        self.path = os.path.join(log_path, f"group-{check_group_name(name).hex()}.lock")
        self.fd: int | None = None
        self.name = name

    def acquire(self) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise GroupBusyError(
                f"group {self.name!r} is being followed by another process; one follower per group at a "
                "time (use another group name to read the log independently)"
            ) from None
        self.fd = fd

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
