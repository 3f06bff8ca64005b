"""The SQLite target: read models in a database file, through the standard library's sqlite3.

The embedded default: no server, no extra to install. How it keeps the
interface's promises (:mod:`evlog.sinks.target`):

- One transaction per batch, ``BEGIN IMMEDIATE`` so the write lock is taken
  at the start (no deadlock upgrading a read lock) and rows and checkpoint
  commit together. The connection runs in autocommit mode otherwise, so no
  implicit transaction of the sqlite3 module interferes.
- WAL journal: readers (``sqlite3 read.db``, an application) keep reading
  the committed table while a batch is written, and a batch never waits for
  them. ``synchronous=NORMAL``: a commit survives the process being killed;
  after a power loss the database is consistent, possibly a few commits
  older, and the checkpoint is with the rows, so a restart still continues
  exactly once.
- One syncer per table: SQLite has no lock that outlives a transaction, so
  the lock is a ``flock`` on a small file beside the database
  (``read.db-evlog-TABLE.lock``) holding the holder's description. The
  kernel releases it when its process dies, kill -9 included.
- A swap renames with ``legacy_alter_table`` on, so a user's views over the
  table (looked up by name when used) are neither rewritten nor checked.
- JSON columns are declared TEXT: a declared type of NUMERIC affinity would
  store the JSON text ``5`` as the integer 5.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from ..errors import SyncBusyError, TargetError, TargetValueError, UsageError
from ..textsafe import visible
from .target import BUILD_PREFIX, CHECKPOINT_TABLE, Batch, Checkpoint, Column, ColumnType, TableSpec, Target

SQL_TYPES: dict[ColumnType, str] = {
    "integer": "INTEGER", "real": "REAL", "text": "TEXT", "boolean": "BOOLEAN", "json": "TEXT",
}
BUSY_TIMEOUT = 30.0
"""Seconds a batch waits for another writer of the database (an application's own writes)."""
LOCK_POLL = 0.1


def sqlite_path(url: str) -> str:
    """The file a ``sqlite:`` URL names.

    ``sqlite:///relative.db`` is ``relative.db``, ``sqlite:////a.db`` is ``/a.db``.
    """
    rest = url[len("sqlite:"):]
    if not rest.startswith("///") or len(rest) == 3 or "?" in rest or "#" in rest:
        raise UsageError(
            f"--into {url!r}: a SQLite target is sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    return rest[3:]


def quote(name: str) -> str:
    """An identifier quoted for SQL (names are checked before they get here; quoting is for keywords)."""
    return '"' + name.replace('"', '""') + '"'


class SQLiteTarget(Target):
    """A SQLite database file as a target."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.path = sqlite_path(url)
        if not create and not os.path.exists(self.path):
            raise TargetError(f"there is no SQLite database {self.path!r}")
        self.display = "sqlite:///" + os.path.abspath(self.path)  # names the same file from anywhere
        self._locks: list[int] = []
        try:
            self.connection = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT,
                                              check_same_thread=False)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise TargetError(f"cannot open the SQLite database {self.path!r} ({exc}); check that its "
                              "directory exists and that you may write it") from exc

    def close(self) -> None:
        for fd in self._locks:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the file releases its flock
        self._locks = []
        with contextlib.suppress(sqlite3.Error):
            self.connection.close()

    def lock(self, table: str, *, wait: bool, holder: str) -> None:
        lock_path = f"{self.path}-evlog-{table}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise TargetError(f"cannot create the lock file {lock_path!r} beside the database: {exc.strerror}") from exc
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        raise SyncBusyError(
                            f"table {table!r} of {self.display} is being synced by another process"
                            f"{_holder(fd)}; one syncer per table: wait for it with --wait, or stop it"
                        ) from None
                    time.sleep(LOCK_POLL)
        except BaseException:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # who holds it is for messages only
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(errors="replace")[:500], 0)
        self._locks.append(fd)

    def table_exists(self, table: str) -> bool:
        found = self._query(
            "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ? COLLATE NOCASE", (table,)
        )
        return bool(found)

    def checkpoint(self, table: str) -> Checkpoint | None:
        if not self._has_checkpoints():
            return None
        rows = self._query(f"SELECT * FROM {CHECKPOINT_TABLE} WHERE table_name = ? COLLATE NOCASE", (table,))
        return _checkpoint(rows[0]) if rows else None

    def checkpoints(self) -> list[Checkpoint]:
        if not self._has_checkpoints():
            return []
        return [_checkpoint(row) for row in self._query(f"SELECT * FROM {CHECKPOINT_TABLE} ORDER BY table_name")]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Batch]:
        cursor = self.connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise TargetError(f"cannot write to {self.display}: {exc}") from exc
        try:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (table_name TEXT PRIMARY KEY, source TEXT NOT NULL, "
                "log_id TEXT NOT NULL, definition TEXT NOT NULL, last_seq INTEGER NOT NULL, key_column TEXT, "
                "columns TEXT NOT NULL, updated TEXT NOT NULL)"
            )
            yield SQLiteBatch(cursor, self.display)
            cursor.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(cursor)
            raise TargetError(f"writing to {self.display} failed: {exc}") from exc
        except BaseException:
            self._rollback(cursor)
            raise

    def read_rows(self, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        names = ", ".join(quote(name) for name in columns)
        return self._query(f"SELECT {names} FROM {quote(table)} ORDER BY {quote(columns[0])}")

    def _rollback(self, cursor: sqlite3.Cursor) -> None:
        with contextlib.suppress(sqlite3.Error):  # a failed COMMIT may have ended the transaction itself
            cursor.execute("ROLLBACK")

    def _has_checkpoints(self) -> bool:
        return bool(self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (CHECKPOINT_TABLE,)))

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.connection.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise TargetError(f"reading {self.display} failed: {exc}") from exc


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 500, 0).decode(errors="replace").strip()
        if text:
            return f" ({visible(text)})"
    return ""


def _checkpoint(row: tuple[Any, ...]) -> Checkpoint:
    table, source, log_id, definition, last_seq, key_column, columns, updated = row
    return Checkpoint(
        table=table, source=source, log_id=log_id, definition=definition, last_seq=int(last_seq),
        key_column=key_column, columns=tuple(Column(name, kind) for name, kind in orjson.loads(columns)),
        updated=updated,
    )


class SQLiteBatch(Batch):
    """The writes of one SQLite transaction."""

    def __init__(self, cursor: sqlite3.Cursor, display: str) -> None:
        self.cursor = cursor
        self.display = display

    def create_table(self, spec: TableSpec) -> None:
        parts = []
        if spec.key is not None:
            parts.append(f"{quote(spec.key.name)} {SQL_TYPES[spec.key.type]} PRIMARY KEY")
        parts += [f"{quote(column.name)} {SQL_TYPES[column.type]}" for column in spec.columns]
        self.cursor.execute(f"CREATE TABLE {quote(spec.name)} ({', '.join(parts)})")
        for columns in spec.indexes:
            # A random token keeps index names apart from those of an earlier build of the same table.
            index = f"{spec.name.removeprefix(BUILD_PREFIX)}_{'_'.join(columns)}_{secrets.token_hex(4)}"
            self.cursor.execute(
                f"CREATE INDEX {quote(index)} ON {quote(spec.name)} ({', '.join(quote(c) for c in columns)})"
            )

    def add_column(self, table: str, column: Column) -> None:
        self.cursor.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} {SQL_TYPES[column.type]}")

    def drop_table(self, table: str) -> None:
        self.cursor.execute(f"DROP TABLE IF EXISTS {quote(table)}")

    def upsert(
        self, table: str, key_column: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        if key_column is None:
            self.cursor.execute(f"DELETE FROM {quote(table)}")
            self._many(table, list(columns), rows, keyed=False, verb="INSERT")
            return
        self._many(table, [key_column, *columns], rows, keyed=True, verb="INSERT OR REPLACE")

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self._many(table, list(columns), rows, keyed=True, verb="INSERT")

    def delete(self, table: str, key_column: str | None, keys: Sequence[Any]) -> None:
        if key_column is None:
            self.cursor.execute(f"DELETE FROM {quote(table)}")
            return
        self.cursor.executemany(f"DELETE FROM {quote(table)} WHERE {quote(key_column)} = ?", [(k,) for k in keys])

    def swap(self, build: str, table: str) -> None:
        self.cursor.execute("PRAGMA legacy_alter_table = ON")
        try:
            self.cursor.execute(f"DROP TABLE IF EXISTS {quote(table)}")
            self.cursor.execute(f"ALTER TABLE {quote(build)} RENAME TO {quote(table)}")
        finally:
            self.cursor.execute("PRAGMA legacy_alter_table = OFF")

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        columns = orjson.dumps([[column.name, column.type] for column in checkpoint.columns]).decode()
        self.cursor.execute(
            f"INSERT OR REPLACE INTO {CHECKPOINT_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (checkpoint.table, checkpoint.source, checkpoint.log_id, checkpoint.definition, checkpoint.last_seq,
             checkpoint.key_column, columns, checkpoint.updated),
        )

    def forget_checkpoint(self, table: str) -> None:
        self.cursor.execute(f"DELETE FROM {CHECKPOINT_TABLE} WHERE table_name = ?", (table,))

    def _many(self, table: str, columns: list[str], rows: Sequence[Sequence[Any]], *, keyed: bool, verb: str) -> None:
        sql = (f"{verb} INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) "
               f"VALUES ({', '.join('?' * len(columns))})")
        # A savepoint lets a failed bulk statement be retried row by row, to name the row that failed.
        self.cursor.execute("SAVEPOINT evlog_many")
        try:
            self.cursor.executemany(sql, rows)
        except _VALUE_ERRORS as exc:
            self.cursor.execute("ROLLBACK TO evlog_many")
            for row in rows:
                try:
                    self.cursor.execute(sql, row)
                except _VALUE_ERRORS as one:
                    raise TargetValueError(f"SQLite cannot store it: {one}", key=row[0] if keyed else None) from one
            raise TargetValueError(f"SQLite cannot store it: {exc}") from exc
        self.cursor.execute("RELEASE evlog_many")


_VALUE_ERRORS = (OverflowError, UnicodeEncodeError, ValueError, sqlite3.DataError)
