"""The files of a log directory, checked before LMDB opens them.

LMDB opens ``data.mdb`` and ``lock.mdb`` with ``O_CREAT`` and follows
symlinks, and maps ``data.mdb`` without looking at its length. A log may come
from someone else, so evlog looks first: every one of its files must be a
regular file (``lstat``: a ``lock.mdb`` linked elsewhere would have its target
overwritten by the lock table, a FIFO as ``data.mdb`` would hang), and
``data.mdb`` must be as long as its own meta pages say (a shorter one is read
past its end through the map, which kills the process with SIGBUS). The
files evlog creates itself are made with ``O_EXCL | O_NOFOLLOW`` and mode 0600.
"""

from __future__ import annotations

import os
import stat
import struct

from ...errors import DamagedLogError, StorageError

SIDECAR = "commits"  # touched after every commit; followers watch it
_FILE_MODE = 0o600


def create_file(path: str) -> None:
    """Create an empty file of a log, 0600 whatever the umask; never through a symlink, never over a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, _FILE_MODE)
    try:
        os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)


def check_log_files(path: str, names: list[str]) -> dict[str, int]:
    """Each of evlog's files in a log directory must be a regular file; their sizes by name.

    Checked with ``lstat`` before LMDB opens anything: LMDB follows
    symlinks, so a ``lock.mdb`` that links elsewhere would have its target
    overwritten by the lock table, and a FIFO as ``data.mdb`` would hang.
    """
    sizes: dict[str, int] = {}
    for name in names:
        if name != "data.mdb" and not is_log_file(name):
            continue
        full = os.path.join(path, name)
        try:
            info = os.lstat(full)
        except FileNotFoundError:
            continue  # removed meanwhile (a group lock, say)
        except OSError as exc:
            raise StorageError(f"cannot check {full}: {exc.strerror}") from exc
        if not stat.S_ISREG(info.st_mode):
            raise StorageError(
                f"{full} is {_file_kind(info.st_mode)}, not a regular file; a log's files must be "
                "regular files: nothing was opened (remove it if the log came from someone else)"
            )
        sizes[name] = info.st_size
    return sizes


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


_META = struct.Struct("<IIQQ")  # magic, version, address, map size: the start of an LMDB 0.9 MDB_meta
_META_PAGES = struct.Struct("<QQ")  # last used page number, transaction id: at offset 120 of MDB_meta
_PAGE_HEADER = 16  # an MDB_page header precedes the meta
_MAGIC = 0xBEEFC0DE


def check_data_size(path: str) -> None:
    """Refuse a ``data.mdb`` shorter than its own meta pages say it is.

    LMDB maps the file and would read pages past its end, which kills the
    process with SIGBUS; read the two meta pages first (the LMDB 0.9 layout:
    a 16-byte page header, then ``MDB_meta``, whose free database's pad
    field holds the page size) and take the newer one's last page.
    (A file truncated by someone else while it is open can still do that.)

    Another process may be committing meanwhile. A commit writes its pages
    before the meta page that counts them, so the file's size is taken after
    the meta pages are read; and a meta page read while it was being written
    could be torn, so a shortfall is only believed when a second look finds
    it too.
    """
    shortfall = _shortfall(path)
    if shortfall is not None:
        shortfall = _shortfall(path)
        if shortfall is not None:
            raise _cut_short(os.path.join(path, "data.mdb"), *shortfall)


def _shortfall(path: str) -> tuple[int, int] | None:
    """``(size, needed)`` when ``data.mdb`` is shorter than its meta pages say, else None."""
    data = os.path.join(path, "data.mdb")
    try:
        with open(data, "rb") as file:
            first = _read_meta(file.read(_PAGE_HEADER + 136))
            if first is None:
                size = os.fstat(file.fileno()).st_size
                return (size, 2 * 4096) if size < 2 * 4096 else None  # else not LMDB: opening it says so
            page_size = first[0]
            file.seek(page_size)
            second = _read_meta(file.read(_PAGE_HEADER + 136))
            size = os.fstat(file.fileno()).st_size  # after the meta pages: see check_data_size
    except OSError:
        return None  # LMDB says why when it opens the file
    if size < 2 * page_size:
        return size, 2 * page_size
    newer = first if second is None or second[2] < first[2] else second
    needed = (newer[1] + 1) * page_size
    return (size, needed) if size < needed else None


def _cut_short(data: str, size: int, needed: int) -> DamagedLogError:
    damaged = DamagedLogError(f"{data} is {size:,} bytes, the log needs {needed:,}")
    # Not "run evlog verify": verify cannot read a file that is cut short either.
    damaged.args = (
        f"damaged log: {data} is {size:,} bytes, the log needs {needed:,}: the file was cut short; "
        "restore the log from a backup",
    )
    return damaged


def _read_meta(raw: bytes) -> tuple[int, int, int] | None:
    """``(page size, last page, txnid)`` of one LMDB meta page, or None if it is not one."""
    if len(raw) < _PAGE_HEADER + 136:
        return None
    magic, version, _, _ = _META.unpack_from(raw, _PAGE_HEADER)
    page_size = struct.unpack_from("<I", raw, _PAGE_HEADER + 24)[0]
    last_page, txnid = _META_PAGES.unpack_from(raw, _PAGE_HEADER + 120)
    if magic != _MAGIC or version != 1 or page_size < 512 or page_size > 1 << 16 or page_size & (page_size - 1):
        return None
    return page_size, last_page, txnid


def is_log_file(name: str) -> bool:
    """Files a log directory may hold besides data.mdb."""
    return name in ("lock.mdb", SIDECAR) or (name.startswith("group-") and name.endswith(".lock"))
