"""Copies of a log taken while it is in use: LMDB's own consistent copy, into a new directory.

LMDB copies an environment inside one read transaction, so the copy is the
log exactly as one commit left it even while other processes append, and it
needs no lock on the writers; ``compact`` also leaves out free pages (a
smaller file, a slower copy). The copy is a complete log of its own, with the
same log id, events, indexes and head hash. The price of one transaction: for
as long as the copy takes, pages that appends free cannot be reused, so a long
copy under heavy appends makes the source file grow a little.

The destination must be new, or an empty directory: a backup never writes
over anything. A copy that fails (or is interrupted) is removed again.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import lmdb

from .errors import StorageError, UsageError
from .log import Log

_LMDB_FILES = ("data.mdb", "lock.mdb")


def backup(log: Log, dest: str | os.PathLike[str], *, compact: bool = False) -> dict[str, Any]:
    """Copy ``log`` to the new or empty directory ``dest``; facts about the copy.

    Returns ``path``, ``events``, ``last_seq``, ``head_hash``, ``size_bytes``
    and ``compact``. Raises :class:`UsageError` when ``dest`` exists and is not
    an empty directory (nothing is changed then).
    """
    target = os.fspath(dest)
    store = log.store()  # the source must exist before anything is created
    created = _claim(target)
    try:
        store.env.copy(target, compact=compact)
    except BaseException as exc:
        _release(target, created)
        if isinstance(exc, lmdb.Error):
            raise StorageError(f"cannot copy {log.path} to {target}: {exc}") from exc
        raise
    with Log(target) as copy:
        facts = copy.info()
    return {
        "path": facts["path"],
        "events": facts["events"],
        "last_seq": facts["last_seq"],
        "head_hash": facts["head_hash"],
        "size_bytes": facts["size_bytes"],
        "compact": compact,
    }


def _claim(target: str) -> bool:
    """Make ``target`` an empty directory to copy into; True when this call created it."""
    try:
        os.mkdir(target)
        return True
    except FileExistsError:
        pass
    except FileNotFoundError:
        raise UsageError(
            f"cannot back up to {target}: the directory {os.path.dirname(os.path.abspath(target))} does not exist"
        ) from None
    except OSError as exc:
        raise StorageError(f"cannot create {target}: {exc.strerror}") from None
    if not os.path.isdir(target):
        raise UsageError(f"{target} exists and is not a directory; back up to a new or empty directory")
    if os.listdir(target):
        raise UsageError(f"{target} is not empty; a backup never overwrites: choose a new or empty directory")
    return False


def _release(target: str, created: bool) -> None:
    """Undo a failed copy: the files LMDB made, and the directory if this backup made it."""
    for name in _LMDB_FILES:
        path = os.path.join(target, name)
        if os.path.exists(path):
            os.remove(path)
    if created:
        with contextlib.suppress(OSError):  # someone put something there meanwhile: leave it
            os.rmdir(target)
