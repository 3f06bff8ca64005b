"""The PostgreSQL target: read models in a PostgreSQL database, through psycopg 3 (the extra ``postgres``).

How it keeps the interface's promises (:mod:`evlog.sinks.target`):

- Rows go in with ``COPY``. Measured on a 2-core machine against a local
  PostgreSQL 15: inserting exported events, ``COPY`` ~550,000 rows/s against
  ~83,000 for ``executemany`` in pipeline mode; upserting 10,000 changed states
  per batch, ``COPY`` into a temporary table then one ``INSERT … ON CONFLICT``
  ~190,000 rows/s, deleting the keys then ``COPY`` ~150,000, ``executemany``
  in pipeline mode ~60,000. Binary ``COPY`` was not faster than text (the
  rows are Python values either way). A table created in the same
  transaction (a rebuild) is empty, so its rows are copied straight in, and
  its indexes are built once it is full (cheaper than row by row).
- A rebuild's swap keeps what users built on the table where it can: with
  the same columns the old table is emptied and refilled from the build in
  the swapping transaction, so views, grants, triggers and indexes of
  theirs stay (this writes the rows twice); with other columns it is dropped
  and the build renamed, its grants given again, and a view that depends on
  it stops the sync with its name (evlog never drops what it did not create).
- One transaction per batch; the connection is in autocommit mode otherwise,
  so reading a checkpoint never leaves a transaction open on the server.
- One syncer per table: a session-level advisory lock keyed by a hash of
  schema and table. It dies with the session, so with its process (kill -9
  included: the server ends the session when the socket closes). The
  holder's description goes into the session's ``application_name``, which
  every role can read in ``pg_stat_activity``: a refused syncer names it.
- Every name is schema-qualified with the schema the connection would create
  tables in (``current_schema()``), so a table named like a catalog table is
  still the one evlog means.
- JSON columns are ``jsonb``. PostgreSQL cannot store the character NUL in
  text or ``jsonb`` (SQLite can), nor a column named like a system column
  (``xmin``, ``ctid``, …): such a value or key is a
  :class:`~evlog.errors.TargetValueError` naming the row's key and column
  (found from the line number ``COPY`` reports, not by checking every value
  on the way in).
- A server that cannot be reached or refuses the login is one line, after at
  most :data:`CONNECT_TIMEOUT` seconds (unless the URL sets
  ``connect_timeout``), never a traceback.

psycopg is imported by this module only, and this module only for a
``postgresql://`` target; without psycopg the target says which extra to install.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import SyncBusyError, TargetError, TargetValueError, UsageError
from ..textsafe import visible
from .target import CHECKPOINT_TABLE, Batch, Checkpoint, Column, ColumnType, TableSpec, Target, without_password

if TYPE_CHECKING:
    import psycopg

SQL_TYPES: dict[ColumnType, str] = {
    "integer": "bigint", "real": "double precision", "text": "text", "boolean": "boolean", "json": "jsonb",
}
CONNECT_TIMEOUT = 10
"""Seconds to wait for the server to answer a connection (libpq's ``connect_timeout``)."""
LOCK_POLL = 0.1
"""Seconds between two tries of a busy lock with ``--wait``."""
_APPLICATION_NAME = 63
"""PostgreSQL keeps the first 63 bytes of ``application_name``."""
SYSTEM_COLUMNS = frozenset({"tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"})
"""Names every PostgreSQL table has already: no column of a state can take one."""
_COPY_LINE = re.compile(r"COPY [^,]*, line (\d+)(?:, column ([^:]*))?")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise UsageError(
            "a postgresql:// target needs the PostgreSQL client psycopg: pip install 'evlog-cli[postgres]'"
        ) from None
    return psycopg


def quote(name: str) -> str:
    """An identifier quoted for SQL (names are checked before they get here; quoting keeps their case)."""
    return '"' + name.replace('"', '""') + '"'


def _shown(url: str) -> str:
    """The URL for messages, without its password."""
    try:
        return without_password(url)
    except ValueError:  # not a URL urllib reads: keep only what follows the user part
        return "postgresql://" + url.rpartition("@")[2] if "@" in url else url


def one_line(exc: BaseException) -> str:
    """A psycopg error as one line: its message without the server's CONTEXT (which may quote a whole row)
    and HINT (which may advise a CASCADE that would drop a user's objects)."""
    text = str(exc).split("\nCONTEXT:", 1)[0]
    text = text.removeprefix("connection failed: ")
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.startswith("HINT:")]
    return "; ".join(lines) or type(exc).__name__


def _lock_key(schema: str, table: str) -> int:
    """The advisory lock of a table: 64 bits of a hash of its qualified name, as PostgreSQL's signed bigint."""
    digest = hashlib.blake2b(f"evlog sync {schema}.{table}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresTarget(Target):
    """A PostgreSQL database as a target; ``url`` is a libpq URL (``postgresql://user:password@host:port/db``)."""

    def __init__(self, url: str) -> None:
        pg = _psycopg()
        from psycopg.conninfo import conninfo_to_dict

        try:
            given = conninfo_to_dict(url)
        except pg.Error as exc:
            raise UsageError(f"--into {_shown(url)!r} is not a PostgreSQL URL: {one_line(exc)}") from None
        self.display = _shown(url)
        options: dict[str, Any] = {"autocommit": True, "client_encoding": "UTF8", "application_name": "evlog"}
        if "connect_timeout" not in given:
            options["connect_timeout"] = CONNECT_TIMEOUT
        try:
            self.connection: psycopg.Connection[tuple[Any, ...]] = pg.connect(url, **options)
        except pg.Error as exc:
            raise TargetError(
                f"cannot connect to PostgreSQL at {self.display}: {one_line(exc)}; check the URL (host, port, "
                "database, user) and the password (in the URL, $PGPASSWORD or ~/.pgpass)"
            ) from None
        self._psycopg = pg
        schema = self._query("SELECT current_schema()")[0][0]
        if schema is None:
            self.close()
            raise TargetError(f"{self.display} has no schema to create tables in: set the user's search_path")
        self.schema: str = schema
        self._has_checkpoints = False

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken connection may fail; the session ends anyway
            self.connection.close()  # ends the session: its advisory locks are released

    def lock(self, table: str, *, wait: bool, holder: str) -> None:
        key = _lock_key(self.schema, table)
        name = holder.encode("ascii", "replace")[:_APPLICATION_NAME].decode()
        self._query("SELECT set_config('application_name', %s, false)", (name,))
        while not self._query("SELECT pg_try_advisory_lock(%s)", (key,))[0][0]:
            if not wait:
                raise SyncBusyError(
                    f"table {table!r} of {self.display} is being synced by another process{self._holder(key)}; "
                    "one syncer per table: wait for it with --wait, or stop it"
                )
            time.sleep(LOCK_POLL)

    def _holder(self, key: int) -> str:
        unsigned = key & 0xFFFFFFFFFFFFFFFF
        found = self._query(
            "SELECT a.application_name, a.pid, host(a.client_addr), a.backend_start "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s",
            (unsigned >> 32, unsigned & 0xFFFFFFFF),
        )
        if not found:
            return ""  # released since: the next try will tell
        application, pid, client, since = found[0]
        words = [visible(application)] if application else []
        where = f" from {client}" if client else ""
        started = f" since {since:%Y-%m-%d %H:%M:%S %Z}" if since is not None else ""
        words.append(f"server process {pid}{where}{started}")
        return " (" + "; ".join(words) + ")"

    def table_exists(self, table: str) -> bool:
        # Any relation: a table, view, index or sequence of that name would all stop a CREATE TABLE.
        found = self._query(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (self.schema, table),
        )
        return bool(found)

    def checkpoint(self, table: str) -> Checkpoint | None:
        if not self._checkpoints_exist():
            return None
        rows = self._query(f"SELECT {_CHECKPOINT_COLUMNS} FROM {self._checkpoints()} WHERE table_name = %s", (table,))
        return _checkpoint(rows[0]) if rows else None

    def checkpoints(self) -> list[Checkpoint]:
        if not self._checkpoints_exist():
            return []
        rows = self._query(f"SELECT {_CHECKPOINT_COLUMNS} FROM {self._checkpoints()} ORDER BY table_name")
        return [_checkpoint(row) for row in rows]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Batch]:
        psycopg = self._psycopg
        try:
            with self.connection.transaction(), self.connection.cursor() as cursor:
                if not self._has_checkpoints:
                    # Two first syncs into one database would both create the table and one would
                    # fail on the catalog's unique index: the creation is serialized.
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.schema, CHECKPOINT_TABLE),))
                    cursor.execute(
                        f"CREATE TABLE IF NOT EXISTS {self._checkpoints()} (table_name text PRIMARY KEY, "
                        "source text NOT NULL, log_id text NOT NULL, definition text NOT NULL, "
                        "last_seq bigint NOT NULL, key_column text, columns jsonb NOT NULL, updated text NOT NULL)"
                    )
                batch = PostgresBatch(self, cursor)
                yield batch
                batch.finish()
        except psycopg.DataError as exc:
            raise TargetValueError(f"PostgreSQL cannot store it: {one_line(exc)}") from None
        except psycopg.Error as exc:
            raise TargetError(f"writing to {self.display} failed: {one_line(exc)}") from None
        self._has_checkpoints = True

    def read_rows(self, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        from psycopg.types.string import TextLoader

        names = ", ".join(quote(name) for name in columns)
        try:
            with self.connection.cursor() as cursor:
                # JSON as its text, as SQLite gives it: a decoded JSON string could not be told from JSON text.
                cursor.adapters.register_loader("jsonb", TextLoader)
                rows: list[tuple[Any, ...]] = cursor.execute(
                    f"SELECT {names} FROM {self.qualified(table)} ORDER BY 1").fetchall()
                return rows
        except self._psycopg.Error as exc:
            raise TargetError(f"reading {self.display} failed: {one_line(exc)}") from None

    def qualified(self, table: str) -> str:
        return f"{quote(self.schema)}.{quote(table)}"

    def _checkpoints(self) -> str:
        return self.qualified(CHECKPOINT_TABLE)

    def _checkpoints_exist(self) -> bool:
        if not self._has_checkpoints:
            self._has_checkpoints = self.table_exists(CHECKPOINT_TABLE)
        return self._has_checkpoints

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            rows: list[tuple[Any, ...]] = self.connection.execute(sql, parameters).fetchall()
            return rows
        except self._psycopg.Error as exc:
            raise TargetError(f"reading {self.display} failed: {one_line(exc)}") from None


_CHECKPOINT_COLUMNS = "table_name, source, log_id, definition, last_seq, key_column, columns, updated"


def _checkpoint(row: tuple[Any, ...]) -> Checkpoint:
    table, source, log_id, definition, last_seq, key_column, columns, updated = row
    return Checkpoint(
        table=table, source=source, log_id=log_id, definition=definition, last_seq=int(last_seq),
        key_column=key_column, columns=tuple(Column(name, kind) for name, kind in columns), updated=updated,
    )


class PostgresBatch(Batch):
    """The writes of one PostgreSQL transaction."""

    def __init__(self, target: PostgresTarget, cursor: psycopg.Cursor[tuple[Any, ...]]) -> None:
        self.target = target
        self.cursor = cursor
        self.created: set[str] = set()  # tables created by this transaction: still empty
        self.indexes: dict[str, list[tuple[str, ...]]] = {}  # of the tables created, to build at the end
        self._staged = 0

    def create_table(self, spec: TableSpec) -> None:
        for column in spec.columns:
            _check_column(column)
        parts = []
        if spec.key is not None:
            parts.append(f"{quote(spec.key.name)} {SQL_TYPES[spec.key.type]} PRIMARY KEY")
        parts += [f"{quote(column.name)} {SQL_TYPES[column.type]}" for column in spec.columns]
        self.cursor.execute(f"CREATE TABLE {self.target.qualified(spec.name)} ({', '.join(parts)})")
        self.created.add(spec.name)
        # Indexes are built when the table is full (at the end of the transaction, see finish()): building
        # one over the rows costs less than keeping it up to date row by row.
        self.indexes[spec.name] = list(spec.indexes)

    def finish(self) -> None:
        """Build the indexes of the tables this transaction created; called before it commits."""
        for table, indexes in self.indexes.items():
            for columns in indexes:
                # Index names share the schema's namespace with tables: a random token keeps them apart
                # from those of an earlier build of the same table.
                index = _truncate(f"{table}_{'_'.join(columns)}", 50) + "_" + secrets.token_hex(4)
                self.cursor.execute(f"CREATE INDEX {quote(index)} ON {self.target.qualified(table)} "
                                    f"({', '.join(quote(c) for c in columns)})")
        self.indexes = {}

    def add_column(self, table: str, column: Column) -> None:
        _check_column(column)
        self.cursor.execute(
            f"ALTER TABLE {self.target.qualified(table)} ADD COLUMN {quote(column.name)} {SQL_TYPES[column.type]}"
        )

    def drop_table(self, table: str) -> None:
        self.cursor.execute(f"DROP TABLE IF EXISTS {self.target.qualified(table)}")
        self.created.discard(table)
        self.indexes.pop(table, None)

    def upsert(
        self, table: str, key_column: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        qualified = self.target.qualified(table)
        if key_column is None:
            self.cursor.execute(f"DELETE FROM {qualified}")
            self._copy(qualified, list(columns), rows, key_column, shape=qualified)
            return
        names = [key_column, *columns]
        if table in self.created:  # empty, and the keys of one call are distinct
            self._copy(qualified, names, rows, key_column, shape=qualified)
            return
        # COPY into a temporary table shaped like the target (unlisted columns stay NULL there, as the
        # interface wants them), then one upsert of all of it.
        self._staged += 1
        staged = quote(f"evlog_staged_{self._staged}")
        self.cursor.execute(f"CREATE TEMPORARY TABLE {staged} (LIKE {qualified}) ON COMMIT DROP")
        self._copy(staged, names, rows, key_column, shape=qualified)
        every = [name for (name,) in self.cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum", (qualified,)).fetchall()]
        listed = ", ".join(quote(name) for name in every)
        others = [name for name in every if name != key_column]
        action = ("DO UPDATE SET " + ", ".join(f"{quote(name)} = EXCLUDED.{quote(name)}" for name in others)
                  if others else "DO NOTHING")
        self.cursor.execute(
            f"INSERT INTO {qualified} ({listed}) SELECT {listed} FROM {staged} "
            f"ON CONFLICT ({quote(key_column)}) {action}"
        )
        self.cursor.execute(f"DROP TABLE {staged}")

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        qualified = self.target.qualified(table)
        self._copy(qualified, list(columns), rows, columns[0] if columns else None, shape=qualified, located=True)

    def delete(self, table: str, key_column: str | None, keys: Sequence[Any]) -> None:
        qualified = self.target.qualified(table)
        if key_column is None:
            self.cursor.execute(f"DELETE FROM {qualified}")
            return
        self.cursor.execute(f"DELETE FROM {qualified} WHERE {quote(key_column)} = ANY(%s)", (list(keys),))

    def swap(self, build: str, table: str) -> None:
        new, old = self.target.qualified(build), self.target.qualified(table)
        grants: list[tuple[str, bool, str, bool]] = []
        replaced = self._layout(old)
        if replaced:
            if sorted(replaced) == sorted(self._layout(new)):
                # The same columns: refill the table in place, so that what users built on it (views,
                # grants, their own indexes) stays. Readers wait for the commit either way.
                names = ", ".join(quote(name) for name, _ in self._layout(new))
                self.cursor.execute(f"TRUNCATE {old}")
                self.cursor.execute(f"INSERT INTO {old} ({names}) SELECT {names} FROM {new}")
                self.cursor.execute(f"DROP TABLE {new}")
                self.created.discard(build)
                self.indexes.pop(build, None)  # the table keeps its own
                return
            grants = self.cursor.execute(
                "SELECT grantee::regrole::text, grantee = 0, privilege_type, is_grantable "
                "FROM pg_class c, aclexplode(c.relacl) WHERE c.oid = %s::regclass AND grantee <> c.relowner",
                (old,),
            ).fetchall()
            try:
                self.cursor.execute(f"DROP TABLE {old}")
            except self.target._psycopg.errors.DependentObjectsStillExist as exc:
                detail = " ".join((exc.diag.message_detail or "").split())
                raise TargetError(
                    f"the table {table!r} must be rebuilt with other columns, and other objects depend on it "
                    f"({detail}); evlog never drops them: drop them, sync, and create them again"
                ) from None
        self.cursor.execute(f"ALTER TABLE {new} RENAME TO {quote(table)}")
        if build in self.created:
            self.created.discard(build)
            self.created.add(table)
        if build in self.indexes:
            self.indexes[table] = self.indexes.pop(build)
        for role, public, privilege, grantable in grants:  # readers granted the old table keep reading
            option = " WITH GRANT OPTION" if grantable else ""
            self.cursor.execute(f"GRANT {privilege} ON {old} TO {'PUBLIC' if public else role}{option}")

    def _json_columns(self, qualified: str) -> set[str]:
        names = self.cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND atttypid = 'jsonb'::regtype "
            "AND attnum > 0 AND NOT attisdropped", (qualified,),
        ).fetchall()
        return {name for (name,) in names}

    def _layout(self, qualified: str) -> list[tuple[str, str]]:
        """The columns and types of a table, in order; [] if there is no such table."""
        rows: list[tuple[str, str]] = self.cursor.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (qualified,),
        ).fetchall()
        return rows

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        columns = orjson.dumps([[column.name, column.type] for column in checkpoint.columns]).decode()
        self.cursor.execute(
            f"INSERT INTO {self.target.qualified(CHECKPOINT_TABLE)} ({_CHECKPOINT_COLUMNS}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s) ON CONFLICT (table_name) DO UPDATE SET "
            "source = EXCLUDED.source, log_id = EXCLUDED.log_id, definition = EXCLUDED.definition, "
            "last_seq = EXCLUDED.last_seq, key_column = EXCLUDED.key_column, columns = EXCLUDED.columns, "
            "updated = EXCLUDED.updated",
            (checkpoint.table, checkpoint.source, checkpoint.log_id, checkpoint.definition, checkpoint.last_seq,
             checkpoint.key_column, columns, checkpoint.updated),
        )

    def forget_checkpoint(self, table: str) -> None:
        self.cursor.execute(f"DELETE FROM {self.target.qualified(CHECKPOINT_TABLE)} WHERE table_name = %s", (table,))

    def _copy(
        self, table: str, columns: list[str], rows: Sequence[Sequence[Any]], key_column: str | None, *,
        shape: str, located: bool = False,
    ) -> None:
        """COPY rows in; a value PostgreSQL refuses is a TargetValueError naming its row's key and column.

        ``shape`` is the table whose column types ``table`` has (itself, or the one a staging table is like).
        """
        if not rows:
            return
        psycopg = self.target._psycopg
        json_columns = self._json_columns(shape)
        exact = [number for number, name in enumerate(columns) if name in json_columns]
        index = -1
        try:
            with self.cursor.copy(f"COPY {table} ({', '.join(quote(c) for c in columns)}) FROM STDIN") as copy:
                for index, row in enumerate(rows):  # noqa: B007 - the except clause reads index
                    for number in exact:
                        text = row[number]
                        # Only a float of 1e16 or more is written with an exponent and no point, as "e+16"
                        # (cheap test first; a string that merely holds "e+" takes the slow path, which
                        # finds nothing to change).
                        if text is not None and "e+" in text:
                            row = [*row[:number], jsonb_text(text), *row[number + 1:]]
                    copy.write_row(row)
        except (psycopg.DataError, UnicodeError, ValueError) as exc:
            column = None
            found = _COPY_LINE.search(getattr(getattr(exc, "diag", None), "context", None) or "")
            if found:  # the server counts COPY lines from 1
                index = int(found.group(1)) - 1
                column = found.group(2)
            else:  # refused on the way out, while writing the row at ``index``
                column = _refused_column(columns, rows[index]) if 0 <= index < len(rows) else None
            key = rows[index][0] if key_column is not None and 0 <= index < len(rows) else None
            where = [f"{key_column} {key}"] if located and key is not None else []  # no engine names an inserted row
            if column:
                where.append(f"column {column!r}")
            raise TargetValueError(": ".join([", ".join(where), _reason(exc)] if where else [_reason(exc)]),
                                   key=key) from None


def jsonb_text(text: str) -> str:
    """JSON text that ``jsonb`` reads back as the same JSON values, floats included.

    ``jsonb`` keeps numbers as exact decimals with the scale they were written with: ``3.6e+16``
    (orjson's form of a float of 1e16 or more) has no digits after the point and would read back as the
    integer ``36000000000000000``. Written ``36000000000000000.0`` it reads back as a float.
    """
    value = orjson.loads(text)
    return _exact_json(value) if _has_big_float(value) else text


def _has_big_float(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return "e" in repr(value) and value == int(value)
    if kind is dict:
        return any(_has_big_float(item) for item in value.values())
    if kind is list:
        return any(_has_big_float(item) for item in value)
    return False


def _exact_json(value: Any) -> str:
    kind = type(value)
    if kind is float and "e" in repr(value) and value == int(value):
        return f"{int(value)}.0"
    if kind is dict:
        return "{" + ",".join(orjson.dumps(key).decode() + ":" + _exact_json(item) for key, item in value.items()) + "}"
    if kind is list:
        return "[" + ",".join(_exact_json(item) for item in value) + "]"
    return orjson.dumps(value).decode()


def _check_column(column: Column) -> None:
    if column.name in SYSTEM_COLUMNS:
        raise TargetValueError(
            f"the state key {column.name!r} cannot be a column in PostgreSQL, where every table has a system "
            "column of that name; rename the key in the fold"
        )


def _refused_column(columns: list[str], row: Sequence[Any]) -> str | None:
    """Which value of a row psycopg refused to send: the first text holding NUL or not encodable."""
    for name, value in zip(columns, row, strict=False):
        if isinstance(value, str) and ("\x00" in value or not _encodes(value)):
            return name
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    text = one_line(exc)
    if "NUL" in text or "\\u0000" in text:
        return "PostgreSQL cannot store the character NUL (\\u0000) in text or jsonb"
    return f"PostgreSQL refused the value: {text}"


def _truncate(name: str, size: int) -> str:
    """``name`` cut to at most ``size`` bytes of UTF-8 without splitting a character."""
    return name.encode()[:size].decode(errors="ignore")
