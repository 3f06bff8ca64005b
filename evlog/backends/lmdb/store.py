"""The LMDB environment behind a log: opening, sub-databases, keys and growth.

One log is one LMDB environment (a directory holding ``data.mdb`` and
``lock.mdb``) with named databases:

* ``events``   seq (8-byte big-endian) -> record (see :mod:`evlog.record`)
* ``streams``  stream -> seqs of its events (8-byte big-endian), as sorted
  duplicates (``dupsort``/``dupfixed``): the n-th is version n, their number
  is the stream's version. One key per stream keeps bulk appends from
  rewriting an index page per event: a key per (stream, version) made
  appends to 10,000 streams about three times slower (measured).
* ``ids``      idempotency id -> seq
* ``types``    event type -> number of events of that type
* ``meta``     format version, log id, creation time, number of streams
* ``snapshots``, ``projections``, ``groups``: reserved for folds and followers

Choices that follow from how LMDB behaves (measured, see the design notes):
the 0.9 engine (``lib_version=0``) so the standard ``mdb_*`` tools read the
files; never ``writemap``; a large map (1 TiB by default, which costs nothing
on 64-bit Linux because the file grows with the data) that still grows on
``MapFullError`` and follows other processes' growth on ``MapResizedError``;
``reader_check()`` on open so readers killed earlier do not pin pages.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import lmdb

from ...errors import DamagedLogError, EvlogError, LogNotFoundError, NotALogError, StorageError, UsageError
from .files import SIDECAR, check_data_size, check_log_files, create_file, is_log_file

if TYPE_CHECKING:
    from .tables import LmdbTable

LOG_FORMAT = 1
DEFAULT_MAP_SIZE = 1 << 40
_MIN_MAP_SIZE = 1 << 20
_MAX_MAP_SIZE = 1 << 48  # 256 TiB: the user address space of x86-64 and arm64 Linux
_FILE_MODE = 0o600  # new logs are private whatever the umask
_DIR_MODE = 0o700
_DATABASES = (b"events", b"streams", b"ids", b"types", b"meta", b"snapshots", b"projections", b"groups")

U64 = struct.Struct(">Q")

T = TypeVar("T")


def default_log_path() -> str:
    """``$EVLOG_PATH``, else ``./events.lmdb``."""
    return os.environ.get("EVLOG_PATH") or "events.lmdb"


def configured_map_size() -> int:
    """The initial map size: ``$EVLOG_MAP_SIZE`` (bytes, or with K/M/G/T) or 1 TiB."""
    text = os.environ.get("EVLOG_MAP_SIZE", "").strip()
    if not text:
        return DEFAULT_MAP_SIZE
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    factor = units.get(text[-1].upper(), 1)
    digits = text[:-1] if factor != 1 else text
    try:
        size = int(digits) * factor
    except ValueError:
        raise UsageError(
            f"EVLOG_MAP_SIZE={text!r} is not a size; use bytes or a number with K, M, G or T"
        ) from None
    # Beyond any 64-bit address space a size cannot even be passed to LMDB; an
    # unmappable one is quartered until it maps (see Store._open_env).
    return min(max(size, _MIN_MAP_SIZE), _MAX_MAP_SIZE)


class Store:
    """An open LMDB environment with evlog's databases.

    ``create=False`` is for readers: the environment is opened read-only, a
    missing log raises :class:`LogNotFoundError` and nothing is created.
    ``check_format=False`` (for verify) opens a log whose format marker is
    damaged and says what is wrong with it in ``format_problem``.
    """

    def __init__(
        self, path: str, *, create: bool, writable: bool | None = None, check_format: bool = True
    ) -> None:
        self.path = path
        self.check_format = check_format
        self.format_problem: str | None = None  # with check_format=False: what is wrong with the marker
        self.writable = create if writable is None else writable or create
        self.locked = True  # False: read without LMDB's lock (a log the user cannot write)
        self._check_path(create)
        self.env = self._open_env(create)
        try:
            self.env.reader_check()
            self.dbs = self._open_databases(create)
        except BaseException:
            self.env.close()
            raise

    def _check_path(self, create: bool) -> None:
        path = self.path
        if not path:
            raise UsageError("the log path is empty; name the log's directory (--log DIR or $EVLOG_PATH)")
        try:
            # One stat decides: isdir() then exists() would call a directory that
            # another process makes in between a file.
            is_dir: bool | None = stat.S_ISDIR(os.stat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            is_dir = None  # creating it says what is in the way
        except OSError as exc:
            raise StorageError(f"cannot use {path}: {exc.strerror}; check the path and its permissions") from exc
        if is_dir:
            # One listing decides: checking data.mdb apart from the listing would let a
            # log that another process creates in between look like a foreign directory.
            names = os.listdir(path)
            sizes = check_log_files(path, names)
            if "data.mdb" in names:
                if sizes["data.mdb"] == 0:
                    if not create:
                        # What a process killed while creating a log leaves behind.
                        raise LogNotFoundError(f"no log at {path}: its data.mdb is empty; append to create the log")
                else:
                    check_data_size(path)
                if "lock.mdb" not in names:
                    # Made here, not by LMDB, so that its mode is 0600 whatever the umask;
                    # a directory we cannot write to is read without a lock (see _open_env).
                    with contextlib.suppress(OSError):
                        create_file(os.path.join(path, "lock.mdb"))
                return
            others = [name for name in names if not is_log_file(name)]
            if others:
                raise NotALogError(
                    f"{path} is a directory with other files ({', '.join(sorted(others)[:3])}) and no log "
                    "in it; point --log at a new or empty directory"
                )
            if not create:
                raise LogNotFoundError(
                    f"no log at {path}: the directory holds no data.mdb; append an event to create a log there"
                )
            _create_files(path)
        elif is_dir is not None:
            raise NotALogError(f"{path} is a file, not a log; a log is a directory (data.mdb, lock.mdb)")
        elif not create:
            raise LogNotFoundError(
                f"no log at {path}; append an event to create it, or point --log "
                "(or $EVLOG_PATH) at an existing log"
            )
        else:
            try:
                os.mkdir(path, _DIR_MODE)
            except FileExistsError:
                pass  # another process is creating the same log: its files are checked as ours
            except OSError as exc:
                raise _directory_error(path, exc) from exc
            else:
                os.chmod(path, _DIR_MODE)  # whatever the umask
            self._check_path(create)

    def _open_env(self, create: bool) -> lmdb.Environment:
        map_size = configured_map_size()
        while True:
            try:
                return lmdb.open(
                    self.path,
                    map_size=map_size,
                    subdir=True,
                    create=create,
                    readonly=not self.writable,
                    lock=self.locked,
                    mode=_FILE_MODE,
                    max_dbs=len(_DATABASES),
                    max_readers=512,
                    lib_version=0,
                )
            except (MemoryError, lmdb.MemoryError):
                # An address-space limit (ulimit -v) refuses the mapping (LMDB
                # says ENOMEM): the file grows with the data anyway, so a
                # smaller map will do.
                if map_size <= _MIN_MAP_SIZE:
                    raise StorageError(f"cannot map {self.path}: not enough address space") from None
                map_size //= 4
            except lmdb.Error as exc:
                if self.locked and not self.writable and _cannot_write(exc):
                    # A log the user cannot write (another user's, a read-only mount):
                    # read it as `sqlite3 -readonly` would, without LMDB's lock table.
                    self.locked = False
                    _say_unlocked(self.path)
                    continue
                raise _storage_error(self.path, exc) from exc
            except OSError as exc:  # making the directory failed
                raise _directory_error(self.path, exc) from exc

    def _open_databases(self, create: bool) -> dict[bytes, lmdb._Database]:
        while True:
            try:
                return self._open_databases_once(create)
            except lmdb.MapResizedError:
                # Another process grew the map between our open and our first transaction.
                self.env.set_mapsize(0)

    def _open_databases_once(self, create: bool) -> dict[bytes, lmdb._Database]:
        env = self.env
        foreign = NotALogError(
            f"{self.path} is an LMDB environment of another program, not an evlog log; "
            "nothing was written to it"
        )
        try:
            with env.begin() as txn:
                names = set(env.dbs(txn))
                # In this transaction, not env.stat(): that would see a newer commit, and a
                # log another process has just created would look like a foreign environment.
                plain_keys = not names and txn.cursor().first()
            if plain_keys:
                raise foreign
            if not names:
                if not create:
                    raise LogNotFoundError(f"no log at {self.path}: the environment is empty")
                created = self._create_databases()
                if created is not None:
                    return created
            elif b"meta" not in names:
                raise foreign
            # Without a transaction py-lmdb opens handles in a short one that
            # commits (read-only for readers), so they outlive it.
            dbs = {name: env.open_db(name, create=False) for name in _DATABASES}
            with env.begin() as txn:
                found = txn.get(b"format", db=dbs[b"meta"])
        except lmdb.NotFoundError:
            raise foreign from None
        except lmdb.MapResizedError:
            raise
        except lmdb.Error as exc:
            raise _storage_error(self.path, exc) from exc
        if found is None:
            raise NotALogError(f"{self.path} has no evlog format marker; it is not an evlog log")
        try:
            log_format = parse_format(bytes(found))
        except DamagedLogError as exc:
            if self.check_format:
                raise
            self.format_problem = exc.what  # for verify, which names it among its findings
            return dbs
        if log_format > LOG_FORMAT:
            raise NotALogError(
                f"{self.path} is a log of format {log_format}, newer than this evlog "
                f"(format {LOG_FORMAT}); upgrade evlog to use it"
            )
        return dbs

    def _create_databases(self) -> dict[bytes, lmdb._Database] | None:
        """Create the databases of a new log; None if another process just did."""
        env = self.env
        with self.writing() as txn:
            if set(env.dbs(txn)) or txn.cursor().first():
                return None  # created meanwhile by another process (or foreign: checked next)
            dbs = {
                name: env.open_db(name, txn=txn, dupsort=name == b"streams", dupfixed=name == b"streams")
                for name in _DATABASES
            }
            meta = dbs[b"meta"]
            txn.put(b"format", str(LOG_FORMAT).encode(), db=meta)
            txn.put(b"log_id", os.urandom(16).hex().encode(), db=meta)
            txn.put(b"created", U64.pack(time.time_ns()), db=meta)
            txn.put(b"streams", U64.pack(0), db=meta)
        return dbs

    def close(self) -> None:
        self.env.close()

    @contextmanager
    def reading(self, *, buffers: bool = True) -> Iterator[Any]:
        """A short read transaction; follows another process's map growth.

        With ``buffers`` values are views that die with the transaction.
        """
        try:
            txn = self.env.begin(buffers=True) if buffers else self.env.begin()
        except lmdb.MapResizedError:
            self.env.set_mapsize(0)
            txn = self.env.begin(buffers=True) if buffers else self.env.begin()
        except lmdb.Error as exc:
            raise _storage_error(self.path, exc) from exc
        try:
            yield txn
        finally:
            txn.abort()

    @contextmanager
    def writing(self) -> Iterator[lmdb.Transaction]:
        """A write transaction without growth handling (see :meth:`write`)."""
        try:
            with self.env.begin(write=True) as txn:
                yield txn
        except (lmdb.MapFullError, lmdb.MapResizedError):
            raise
        except lmdb.Error as exc:
            raise _storage_error(self.path, exc) from exc

    def write(self, work: Callable[[lmdb.Transaction], T], *, notify: bool = True) -> T:
        """Run ``work`` in a write transaction and commit, growing the map as needed.

        ``work`` must be safe to run again: after a full or resized map the
        transaction is aborted and ``work`` runs anew on a fresh one.
        """
        while True:
            try:
                with self.writing() as txn:
                    result = work(txn)
                break
            except lmdb.MapFullError:
                size = self.env.info()["map_size"] * 2
                try:
                    self.env.set_mapsize(size)
                except lmdb.MemoryError:
                    raise StorageError(
                        f"{self.path}: the log needs a map of {size >> 20} MiB and the address space "
                        "allows no more (ulimit -v); raise that limit"
                    ) from None
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)
        if notify:
            self.notify_followers()
        return result

    def notify_followers(self) -> None:
        """Touch the sidecar file that followers watch, after a commit has returned.

        A change notification of data.mdb itself can arrive before the commit
        is visible to readers; the sidecar is touched only once it is.
        """
        try:
            # Never through a symlink: one planted in the log directory must not
            # make an append touch (or create) a file elsewhere.
            os.utime(self.sidecar, follow_symlinks=False)
        except FileNotFoundError:
            # Followers still poll: a directory we cannot write to must not fail an append.
            with contextlib.suppress(OSError):
                create_file(self.sidecar)
        except OSError:
            pass

    @property
    def sidecar(self) -> str:
        return os.path.join(self.path, SIDECAR)

    def meta(self, txn: lmdb.Transaction, key: bytes) -> bytes | None:
        value = txn.get(key, db=self.dbs[b"meta"])
        return None if value is None else bytes(value)

    def table(self, name: str) -> LmdbTable:
        """The named database ``name`` (snapshots, projections) as a :class:`~evlog.backends.Table`."""
        from .tables import LmdbTable

        return LmdbTable(self, name)

    def record(self, seq: int) -> bytes | None:
        """The record at ``seq``, or None."""
        if not 1 <= seq < 1 << 64:
            return None
        with self.reading(buffers=False) as txn:
            value: bytes | None = txn.get(seq.to_bytes(8, "big"), db=self.dbs[b"events"])
        return value


def parse_format(raw: bytes) -> int:
    """The log format stored in ``meta``: a short decimal number, else the log is damaged."""
    # Bounded before int(): thousands of digits would hit Python's conversion limit.
    if not (0 < len(raw) <= 6 and raw.isdigit()):
        shown = raw[:20].decode("ascii", "backslashreplace") + ("..." if len(raw) > 20 else "")
        raise DamagedLogError(f"the meta format entry is {shown!r} ({len(raw)} bytes), not a format number")
    return int(raw)


def _create_files(path: str) -> None:
    """Make a new log's data and lock files ourselves, so that their mode is ours and not the umask's."""
    for name in ("data.mdb", "lock.mdb"):
        try:
            create_file(os.path.join(path, name))
        except FileExistsError:
            pass  # another process creating the same log made it: it is checked on open
        except OSError as exc:
            raise _directory_error(path, exc) from exc


_said_unlocked: set[str] = set()


def _cannot_write(exc: lmdb.Error) -> bool:
    text = str(exc)
    return "Permission denied" in text or "Read-only file system" in text


def _say_unlocked(path: str) -> None:
    """Tell once per log that it is read without LMDB's lock (stderr: the reader must know)."""
    if path not in _said_unlocked:
        _said_unlocked.add(path)
        print(
            f"evlog: {path} is not writable here: reading it without a lock, "
            "which is safe only while nobody writes to it",
            file=sys.stderr,
        )


def _nearly_full(path: str) -> bool:
    try:
        disk = os.statvfs(path)
    except OSError:
        return False
    return disk.f_bavail * disk.f_frsize < max(4 << 20, disk.f_blocks * disk.f_frsize // 100)


def _directory_error(path: str, exc: OSError) -> EvlogError:
    """Why the directory of a new log could not be made, and what to do."""
    parent = os.path.dirname(os.path.abspath(path))
    if isinstance(exc, FileNotFoundError):
        return StorageError(
            f"cannot create a log at {path}: the directory {parent} does not exist; "
            f"create it first (mkdir -p {parent}) or point --log elsewhere"
        )
    if isinstance(exc, NotADirectoryError):
        return StorageError(f"cannot create a log at {path}: a part of that path is a file, not a directory")
    return StorageError(f"cannot create a log at {path}: {exc.strerror}; check the permissions of {parent}")


def _storage_error(path: str, exc: lmdb.Error) -> EvlogError:
    text = str(exc).removeprefix(f"{path}: ")  # py-lmdb names the path in some messages, and so do these
    if "Input/output error" in text and _nearly_full(path):
        # LMDB reports a short write on a full disk as EIO.
        return StorageError(f"{path}: the disk is full ({text}); free space and retry")
    if "No space left" in text or "ENOSPC" in text:
        return StorageError(f"{path}: the disk is full ({text}); free space and retry")
    if "Permission denied" in text or "Read-only" in text:
        return StorageError(f"{path}: {text}; check the permissions of the log directory")
    if "Invalid argument" in text or "MDB_INVALID" in text or "not an LMDB" in text:
        return NotALogError(f"{path} is not a readable LMDB environment ({text})")
    return StorageError(f"{path}: {text}")
