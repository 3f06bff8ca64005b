"""What a database must do to hold evlog's read models: the interface a target implements.

A *target* is one database (``sqlite:///read.db``, ``postgresql://…``). The
sync engine (:mod:`evlog.sinks.sync`) folds the log and decides *what* to
write: which table, which columns with which logical types, which rows
changed, which keys were removed, the checkpoint. A target decides only *how*
its database spells that: placeholders, type names, upsert syntax, the JSON
type, identifier quoting, locking. The engine never knows which database it
writes, so everything dialect-specific lives behind the methods below and
nothing else.

The guarantee rests on one rule a target must keep: everything written
through one :class:`Batch` (rows, table changes, the checkpoint) commits in
ONE database transaction or not at all. Kill the process anywhere and the
table is exactly the state at the checkpoint's seq, which is what makes a
restart continue exactly once.

Names. The engine hands a target only names it has checked
(:func:`check_identifier`: 1 to :data:`MAX_IDENTIFIER` bytes of UTF-8
without control characters, not starting with ``evlog_`` in any case, and
no two columns of a table equal but for case); a state's keys such as
``order.created`` are fine. A target quotes every identifier it writes into
SQL (double quotes, a ``"`` doubled), so any such name works as a table or
column name. Tables evlog creates are recorded in the target's checkpoint
table :data:`CHECKPOINT_TABLE`; a table of the same name that is not
recorded there is the user's and is never dropped, altered or written
(:class:`~evlog.errors.ForeignTableError`).

Values. The engine converts every value before it reaches a target:

=========== ==================================== ===============================
logical     Python value handed to the target    suggested column type
=========== ==================================== ===============================
integer     ``int`` in -2**63 .. 2**63-1         SQLite INTEGER, PG bigint
real        ``float`` (finite)                   SQLite REAL, PG double precision
text        ``str``                              SQLite TEXT, PG text
boolean     ``bool``                             SQLite BOOLEAN (0/1), PG boolean
json        ``str``: compact JSON text           SQLite TEXT, PG jsonb
=========== ==================================== ===============================

``None`` is SQL NULL in any column. A target never converts one logical type
into another (in SQLite, a declared type with NUMERIC affinity would turn the
JSON text ``5`` into the integer 5: declare JSON columns TEXT there).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import UsageError

ColumnType = Literal["integer", "real", "text", "boolean", "json"]
"""The logical column types; a target maps each to its own SQL type (table above)."""

COLUMN_TYPES: tuple[ColumnType, ...] = ("integer", "real", "text", "boolean", "json")

CHECKPOINT_TABLE = "evlog_sync"
"""The table where a target keeps one :class:`Checkpoint` per table evlog built.

Suggested columns (a target may choose its own as long as :meth:`Target.checkpoint`
returns what :meth:`Batch.write_checkpoint` wrote): ``table_name`` text primary
key, ``source`` text, ``log_id`` text, ``definition`` text, ``last_seq``
integer, ``columns`` text (JSON), ``key_column`` text (NULL for a one-row
table), ``updated`` text. Created by the target when first needed, never
dropped."""

MAX_IDENTIFIER = 63
"""The longest table or column name, in bytes (PostgreSQL's limit; SQLite has none)."""

BUILD_PREFIX = "evlog_build_"
"""A table being rebuilt is built under ``BUILD_PREFIX + NAME`` and swapped in (:meth:`Batch.swap`).

No user table can have that name (names starting with ``evlog_`` are refused), so
table names are at most ``MAX_IDENTIFIER - len(BUILD_PREFIX)`` bytes."""
MAX_TABLE = MAX_IDENTIFIER - len(BUILD_PREFIX)

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def check_identifier(name: str, what: str, *, max_bytes: int = MAX_IDENTIFIER) -> str:
    """``name`` if a target can use it, quoted, as a table or column name; else :class:`UsageError`.

    ``what`` says what the name is for the message (``"--table"``,
    ``"state key"``). Targets compare names case-insensitively (SQLite folds
    ASCII case), so the engine also refuses two columns of one table that
    differ only in case.
    """
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        size = 0
    if not 0 < size <= max_bytes or _CONTROL.search(name) or name.lower().startswith("evlog_"):
        raise UsageError(
            f"{what} {name!r} cannot be a table or column name: use 1 to {max_bytes} bytes of text without "
            "control characters, not starting with evlog_"
        )
    return name


@dataclass(frozen=True)
class Column:
    """A column of a table evlog builds: its name and logical type."""

    name: str
    type: ColumnType


@dataclass(frozen=True)
class TableSpec:
    """A table to create.

    ``key`` is the primary key column (``key`` text for a ``--by`` projection,
    ``seq`` integer for exported events), or None for a one-row table (a
    projection without ``--by``): such a table has no key column and holds at
    most one row. ``columns`` follow the key, in this order. ``indexes`` are
    column tuples to index (non-unique); a target names the indexes itself so
    that they never collide with those of another table or of an earlier
    build of the same name (e.g. a suffix from a counter or random token).
    """

    name: str
    key: Column | None
    columns: tuple[Column, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Checkpoint:
    """Where the table ``table`` stands: the engine's whole memory of a sync.

    - ``source``: ``"projection NAME"`` for a projection, ``"events"`` for the
      event export.
    - ``log_id``: ``Log.info()["log_id"]`` of the log it was built from.
    - ``definition``: hex digest of everything that decides the table's
      content (the projection's definition, or the export's filters); a
      different one means rebuild.
    - ``last_seq``: the table holds exactly the result of the log up to this seq.
    - ``key_column``: the table's primary key column, None for a one-row table.
    - ``columns``: the table's columns after the key, in creation order.
    - ``updated``: when it was written, RFC 3339 UTC (for status only).

    A target stores and returns it as given; it interprets none of it.
    """

    table: str
    source: str
    log_id: str
    definition: str
    last_seq: int
    key_column: str | None
    columns: tuple[Column, ...] = field(default_factory=tuple)
    updated: str = ""


class Batch(ABC):
    """The writes of one transaction; obtained from :meth:`Target.transaction`.

    Every method runs inside that one transaction. None commits; the
    ``with`` block around the batch commits when it ends without an
    exception and rolls back when one escapes. A method that fails because
    of a *value* (too large, a character the database refuses) raises
    :class:`~evlog.errors.TargetValueError` with ``key`` set to the key of the
    failing row where the target can tell (the engine adds projection and
    seq); one that fails because of the database (connection lost, disk
    full) raises :class:`~evlog.errors.TargetError`. Either way the
    transaction is rolled back, so the checkpoint stays at the last good batch.
    """

    @abstractmethod
    def create_table(self, spec: TableSpec) -> None:
        """Create the table with its primary key, columns and indexes.

        The engine only creates tables it is allowed to: a name not in use, or
        its own build table. A target creates it with no other constraints
        (every column but the key nullable) and no defaults.
        """

    @abstractmethod
    def add_column(self, table: str, column: Column) -> None:
        """Add a nullable column to an evlog table (a key that appeared in a later state)."""

    @abstractmethod
    def drop_table(self, table: str) -> None:
        """Drop an evlog table if it exists (a stale build table, ``evlog_build_…``: names starting
        ``evlog_`` are evlog's, never a user's)."""

    @abstractmethod
    def upsert(
        self, table: str, key_column: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert or replace whole rows.

        With a ``key_column``, each row is ``(key, value of columns[0], …)``:
        the row with that key is replaced (every listed column set, columns
        not listed set to NULL, as for a new row); ``columns`` may be a
        subset of the table's columns. Without one (a one-row table), ``rows``
        holds at most one row and it replaces whatever row the table has.
        Keys within one call are distinct. Batches may hold many thousands of
        rows: use the database's fastest bulk form.
        """

    @abstractmethod
    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert new rows (exported events; their keys are never in the table yet)."""

    @abstractmethod
    def delete(self, table: str, key_column: str | None, keys: Sequence[Any]) -> None:
        """Delete the rows with these keys (removed states); without ``key_column``, the one row if any."""

    @abstractmethod
    def swap(self, build: str, table: str) -> None:
        """Put the table ``build`` in the place of ``table``: drop ``table`` if it exists, rename ``build``.

        Used by a rebuild inside the transaction that also writes the new
        checkpoint, so readers see the old table until the commit and the
        whole new one after it. The build table's indexes go with it. The
        engine then writes the checkpoint of ``table`` and forgets that of
        ``build`` (if any) in the same batch.
        """

    @abstractmethod
    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Insert or replace the checkpoint of ``checkpoint.table``."""

    @abstractmethod
    def forget_checkpoint(self, table: str) -> None:
        """Remove the checkpoint of ``table`` if there is one."""


class Target(ABC):
    """One database that holds evlog's tables, and the connection to it.

    Life cycle, as the engine uses it::

        target = open_target(url)                 # connects; TargetError if it cannot
        try:
            target.lock(table, wait=False, holder="pid 42 on host-a: projection sync balances")
            cp = target.checkpoint(table)         # None: never built; ForeignTableError: a user's table
            with target.transaction() as batch:   # one transaction
                batch.create_table(...); batch.upsert(...); batch.write_checkpoint(...)
            ...
        finally:
            target.close()                        # releases the lock too

    ``display`` is the URL to show in messages and to record in the log's list
    of its targets (:mod:`evlog.sinks.registry`): the one given with any
    password removed (:func:`without_password`), and a relative SQLite path
    made absolute, so that it names the same database from any directory.
    """

    display: str

    @abstractmethod
    def close(self) -> None:
        """Release the lock (if held) and close the connection; safe to call twice."""

    @abstractmethod
    def lock(self, table: str, *, wait: bool, holder: str) -> None:
        """Become the one syncer of ``table`` in this database until :meth:`close`.

        Another process holding the lock of the same table: without ``wait``,
        raise :class:`~evlog.errors.SyncBusyError` at once, its message naming
        the holder (the ``holder`` text that process passed, e.g. its pid and
        host, where the database can tell it; else whatever the database
        knows) and saying that ``--wait`` waits for it; with ``wait``, block
        until it is free (a loop with a short sleep is fine). The engine calls
        it without ``wait`` and polls, so that a signal is heard while it
        waits. The lock must die with its holder (kill -9 included): an
        advisory lock held by the session in PostgreSQL, a ``flock`` in
        SQLite. Locks of different tables are independent.
        """

    @abstractmethod
    def table_exists(self, table: str) -> bool:
        """Whether a table (or a view) of that name exists, whoever created it."""

    @abstractmethod
    def checkpoint(self, table: str) -> Checkpoint | None:
        """The checkpoint of ``table``, or None when evlog has none for it.

        Does not check the table itself: the engine calls :meth:`table_exists`
        to tell a user's table (exists, no checkpoint) from a new name.
        """

    @abstractmethod
    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint in this database (status listings), by table name; [] if there is no checkpoint table."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Batch]:
        """A :class:`Batch` whose writes commit together when the ``with`` block ends without an exception.

        The target creates :data:`CHECKPOINT_TABLE` inside the transaction if it
        does not exist yet. An exception rolls everything back and propagates
        (database errors translated as in :class:`Batch`).
        """

    @abstractmethod
    def read_rows(self, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """The values of ``columns`` of every row of ``table``, ordered by the first column.

        Values as the database's driver returns them (booleans may come back
        as 0/1, JSON as text or decoded): for status, tests and tools, not on
        the sync's path. Database errors are :class:`~evlog.errors.TargetError`.
        """


def without_password(url: str) -> str:
    """``url`` with any password left out (``postgresql://app:secret@host/db`` -> ``postgresql://app@host/db``).

    What is shown in messages, reports and status, and what the log records:
    a password is never written anywhere by evlog.
    """
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key == "password" for key, _ in pairs):
        query = urlencode([(key, value) for key, value in pairs if key != "password"])
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # as given (urlunsplit would also shorten sqlite:///x to sqlite:/x)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def open_target(url: str, *, create: bool = True) -> Target:
    """Connect to the target a URL names: ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``postgresql://…``.

    ``create=False`` is for looking only (status): a SQLite file that does not
    exist is then a :class:`~evlog.errors.TargetError` instead of a new empty
    database. (PostgreSQL never creates a database, so its target ignores it.)

    The PostgreSQL target lives in :mod:`evlog.sinks.postgres` (class
    ``PostgresTarget(url)``), imported only here, only for such a URL, so
    psycopg is loaded only when used; without it installed that module
    raises :class:`UsageError` naming the extra (``pip install
    'evlog-cli[postgres]'``).
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from .sqlite import SQLiteTarget

        return SQLiteTarget(url, create=create)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresTarget  # type: ignore[import-not-found,unused-ignore]

        target: Target = PostgresTarget(url)
        return target
    raise UsageError(
        f"--into {url!r}: give sqlite:///relative.db, sqlite:////absolute/path.db or postgresql://user@host/db"
    )
