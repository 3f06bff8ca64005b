"""Copies of a log taken while it is in use: LMDB's own consistent copy, into a new directory.

(A log on a server is copied into a new local LMDB log record by record:
:mod:`evlog.backup_server`; the destination rules below are the same.)

LMDB copies an environment inside one read transaction, so the copy is the
log exactly as one commit left it even while other processes append, and it
needs no lock on the writers; ``compact`` also leaves out free pages (a
smaller file, a slower copy). The copy is a complete log of its own, with the
same log id, events, indexes and head hash. The price of one transaction: for
as long as the copy takes, pages that appends free cannot be reused, so a long
copy under heavy appends makes the source file grow a little.

The destination must be new, or an empty directory: a backup never writes
over anything. A copy that fails (or is interrupted) is removed again.

LMDB copies in one call that reports nothing, so progress is measured from
outside: a thread watches the copy's ``data.mdb`` grow, against the size the
copy will have (the source's used pages). The blocks allocated are counted,
not the file's length, which a plain copy sets only once per gigabyte written.

``compact`` is not LMDB's compacting copy: the LMDB 0.9 engine that evlog
pins crashes (a segmentation fault) compacting a log of a few hundred
thousand events with its dupsort stream index. Instead evlog copies every
database entry by entry, in key order, inside one read transaction of the
source, into a new log written with append-only puts: just as consistent, and
without free pages. Its progress is the copy's data file against the pages
the source's databases hold.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
from typing import Any

import lmdb

from .backends import is_url
from .backends.lmdb.files import SIDECAR
from .backends.lmdb.store import Store
from .errors import DamagedLogError, StorageError, UsageError
from .log import Log
from .scan import Progress

_LMDB_FILES = ("data.mdb", "lock.mdb", SIDECAR)
_COMPACT_BATCH = 50_000
"""Entries per write transaction of a compacting copy."""
_WATCH_EVERY = 0.1
"""Seconds between two looks at the growing copy."""


def backup(
    log: Log, dest: str | os.PathLike[str], *, compact: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Copy ``log`` to the new or empty directory ``dest``; facts about the copy.

    Returns ``path``, ``events``, ``last_seq``, ``head_hash``, ``size_bytes``
    and ``compact``. Raises :class:`UsageError` when ``dest`` exists and is not
    an empty directory (nothing is changed then). ``progress`` is called about
    ten times a second, from another thread, with the bytes copied so far and
    the size the copy will have (an estimate with ``compact``).
    """
    target = os.fspath(dest)
    if not target:
        raise UsageError("the backup destination is empty; name a new or empty directory")
    if log.is_remote:
        log.backend()  # the source must exist before anything is created
        _check_destination(log.path, target)
        created = _claim(target)
        try:
            from .backup_server import copy_from_server

            copy_from_server(log, target, progress)
        except BaseException:
            _release(target, created)
            raise
        return _facts(target, created, compact)
    store = log.store()  # the source must exist before anything is created
    _check_destination(log.path, target)
    created = _claim(target)
    try:
        if compact:
            _compact_copy(store, target, progress)
        elif progress is None:
            store.env.copy(target)
        else:
            _watched_copy(store, target, progress)
    except BaseException as exc:
        _release(target, created)
        if isinstance(exc, lmdb.Error):
            raise StorageError(f"cannot copy {log.path} to {target}: {exc}") from exc
        raise
    _private(os.path.join(target, "data.mdb"))  # LMDB's copy leaves it to the umask
    return _facts(target, created, compact)


def _facts(target: str, created: bool, compact: bool) -> dict[str, Any]:
    """What the finished copy holds, read back from it as a log of its own."""
    try:
        with Log(target) as copy:
            facts = copy.info()
    except DamagedLogError:
        # The copy is as damaged as the source: say so, and leave nothing half-done behind.
        _release(target, created)
        raise
    return {
        "path": facts["path"],
        "events": facts["events"],
        "last_seq": facts["last_seq"],
        "head_hash": facts["head_hash"],
        "size_bytes": facts["size_bytes"],
        "compact": compact,
    }


def _compact_copy(store: Store, target: str, progress: Progress | None) -> None:
    """Copy each database entry by entry into a new log at ``target``: no free pages.

    One read transaction of the source makes the copy one commit's state; the
    copy commits every :data:`_COMPACT_BATCH` entries (a backup of a large log
    must not build one huge write transaction). The new log's own meta
    entries (log id, creation time) are overwritten by the source's.
    """
    total = _compact_size(store)
    data = os.path.join(target, "data.mdb")
    copy = Store(target, create=True)
    try:
        with store.reading() as source:
            for name, db in store.dbs.items():
                entries = source.cursor(db=db).iternext(keys=True, values=True)
                # Into the empty databases entries go with MDB_APPEND (APPENDDUP for the
                # dupsort stream index); meta already holds the new log's own entries.
                append = name != b"meta"
                while batch := [(bytes(key), bytes(value)) for key, value in itertools.islice(entries, _COMPACT_BATCH)]:
                    copy.write(functools.partial(_put_all, db=copy.dbs[name], rows=batch, append=append),
                               notify=False)
                    if progress is not None:
                        progress(min(_written(data), total), total)
    finally:
        copy.close()
    if progress is not None:
        size = os.path.getsize(data)
        progress(size, size)


def _put_all(txn: lmdb.Transaction, db: Any, rows: list[tuple[bytes, bytes]], append: bool) -> None:
    placed = txn.cursor(db=db).putmulti(rows, append=append)[1]
    if placed != len(rows):
        raise StorageError(f"the copy placed {placed} of {len(rows)} entries; nothing more was copied")


def _watched_copy(store: Store, target: str, progress: Progress) -> None:
    """LMDB's copy, with a thread reporting how far the copy's data file has grown."""
    total = _copy_size(store)
    data = os.path.join(target, "data.mdb")
    done = threading.Event()

    def watch() -> None:
        while not done.wait(_WATCH_EVERY):
            progress(min(_written(data), total), total)

    watcher = threading.Thread(target=watch, name="evlog-backup-progress", daemon=True)
    watcher.start()
    try:
        store.env.copy(target)  # releases the GIL while it copies
    finally:
        done.set()
        watcher.join()
    size = os.path.getsize(data)  # exact once the copy is complete
    progress(size, size)


def _copy_size(store: Store) -> int:
    """The bytes a copy will hold: every page in use."""
    env = store.env
    return (int(env.info()["last_pgno"]) + 1) * int(env.stat()["psize"])


def _compact_size(store: Store) -> int:
    """About the bytes a compact copy will hold: the pages of the source's databases."""
    pages = 2  # the two meta pages
    with store.reading() as txn:
        for stat in (store.env.stat(), *(txn.stat(db) for db in store.dbs.values())):
            pages += int(stat["branch_pages"]) + int(stat["leaf_pages"]) + int(stat["overflow_pages"])
    return pages * int(store.env.stat()["psize"])


def _written(path: str) -> int:
    """How much of a file being written exists: its allocated blocks, or its length if that is more."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return 0
    return max(info.st_size, info.st_blocks * 512)


def _check_destination(log_path: str, target: str) -> None:
    """Refuse a destination that is a symlink, or that lies in the log itself.

    A copy inside the log would be copied into itself by the next backup
    and make the log directory one that evlog refuses; a symlink would let
    someone else's link decide where a copy of the events goes. The
    directories above the destination are the user's own choice and are
    followed (so a destination reached through a link into the log is
    caught by its real path).
    """
    if os.path.islink(target):
        raise UsageError(
            f"cannot back up to {target}: it is a symbolic link; name the real directory "
            f"({os.path.realpath(target)}) if that is where the copy should go"
        )
    if is_url(log_path):
        return  # a log on a server has no directory to be inside
    log_real, dest_real = os.path.realpath(log_path), os.path.realpath(target)
    if dest_real == log_real or dest_real.startswith(log_real.rstrip(os.sep) + os.sep):
        raise UsageError(
            f"cannot back up to {target}: it is inside the log {log_path}; choose a directory outside it"
        )


def _private(path: str) -> None:
    """Make a copied file 0600 (never through a symlink)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def _claim(target: str) -> bool:
    """Make ``target`` an empty directory to copy into; True when this call created it."""
    try:
        os.mkdir(target, 0o700)
        os.chmod(target, 0o700)  # whatever the umask, as for every new log
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
