"""Waking a follower of an LMDB log: inotify on the log directory, else a plain sleep.

Appenders touch a sidecar file (``commits``) after each commit has returned,
and followers watch it with inotify where the platform has it. Change events
of ``data.mdb`` are watched too, as a hint only: they can arrive before the
commit is visible, and other programs' writers do not touch the sidecar.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import time

_IN_MODIFY = 0x00000002
_IN_ATTRIB = 0x00000004
_IN_CLOSE_WRITE = 0x00000008
_IN_CREATE = 0x00000100
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_GONE = select.POLLERR | select.POLLHUP


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

    def wait(self, timeout: float, output: int | None = None) -> bool:
        """Sleep until a change, ``timeout``, or the reader of ``output`` leaving; True when something changed.

        A reader that left raises :class:`BrokenPipeError`, as a write would.
        """
        poller = select.poll()
        if self.fd is not None:
            poller.register(self.fd, select.POLLIN)
        if output is not None:
            poller.register(output, 0)  # POLLERR and POLLHUP are reported whatever is asked for
        if self.fd is None and output is None:
            time.sleep(timeout)
            return False
        ready = poller.poll(timeout * 1000)
        if output is not None and any(fd == output and events & _GONE for fd, events in ready):
            raise BrokenPipeError(f"the reader of file descriptor {output} has gone")
        if self.fd is None or not any(fd == self.fd for fd, _ in ready):
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
