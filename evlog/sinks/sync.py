"""The sync engine: a projection's states, or the events themselves, kept in a database table exactly once.

What it decides, whatever the database (:mod:`evlog.sinks.target` says how a
database does it):

- **Rows from states.** A ``--by`` projection is one row per key (the key,
  as text, is the primary key ``key``); one without ``--by`` is a table of
  one row. An object state's top-level keys are columns, typed by their
  values; any other state is the column ``value`` (:mod:`evlog.sinks.rows`
  has the rules, and keeps every value as it is: a column whose values stop
  sharing a type becomes JSON, by a rebuild).
- **Removed keys.** A fold cannot delete a ``--by`` key: it ends one by
  setting its state to None (``s = None``), after which the key starts again
  from ``--init`` (DESIGN.md, Folds). A key whose state is None has no row.
- **Exactly once.** The states are folded in memory from the checkpoint's seq
  (:func:`evlog.runner.run_fold`, reusing snapshots to get there), and only
  the keys the fold touched are written, with the checkpoint, in one
  transaction. Killed anywhere, the table is the state at the checkpoint.
- **Rebuilds.** A changed definition (its hash differs from the
  checkpoint's), ``rebuild=True``, a table that was dropped, or a column whose
  type must become JSON: every state is written into a new table, swapped in
  by the same transaction that writes its checkpoint. Readers see the old
  table or the new one, never half of one.
- **Stopping.** ``stop`` is polled between folded spans and while waiting for
  events; when it says so, what was folded is committed and the call returns
  (``stopped``). The command's SIGTERM and Ctrl-C handlers only set it, so
  a signal never lands inside a half-applied event.

The log is read only through :class:`evlog.Log`, :func:`evlog.runner.run_fold`,
:func:`evlog.follow.follow` and the projection definitions; the only code
that reaches into the log's store is :func:`projection_definition` and
:mod:`evlog.sinks.registry` (where the log records its targets), so both
move with the storage layer in one step each.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ForeignTableError, SyncBusyError, TargetValueError, UsageError
from ..snapshot_limits import DEFAULT_SNAPSHOT_EVERY
from ..textsafe import visible
from ..timefmt import format_ts
from .rows import KEY_COLUMN, Layout, TouchedStates, column_type, infer_layout, key_text, state_fields
from .target import (
    BUILD_PREFIX,
    MAX_TABLE,
    Batch,
    Checkpoint,
    Column,
    TableSpec,
    Target,
    check_identifier,
    open_target,
    without_password,
)

if TYPE_CHECKING:
    from ..log import Log
    from ..snapshots import Projection

SPAN = 1 << 17
"""Events folded per call of the fold: the granularity of stopping and of periodic commits."""
LOCK_POLL = 0.1
"""Seconds between looks at a lock another syncer holds (``wait``)."""
COMMIT_SECONDS = 5.0
"""During a long catch-up, commit what was folded at least this often (except into a table being built)."""
EVENTS = "events"
"""The source name of the event export in checkpoints."""

Stop = Callable[[], bool]
Progress = Callable[[int, "int | None"], None]


@dataclass
class SyncReport:
    """What a sync did: where the table stands now, and how much was written to get there."""

    source: str
    target: str
    table: str
    last_seq: int = 0
    head: int = 0
    rows_written: int = 0
    rows_deleted: int = 0
    commits: int = 0
    rebuilt: bool = False
    stopped: bool = False
    locked: bool = True  # False: stopped while waiting for another syncer, nothing done

    @property
    def lag(self) -> int:
        """Events in the log that the table does not reflect yet (as of the last look at the head)."""
        return max(self.head - self.last_seq, 0)

    def record(self) -> dict[str, Any]:
        return {"table": self.table, "source": self.source, "target": self.target, "last_seq": self.last_seq,
                "lag": self.lag, "rows_written": self.rows_written, "rows_deleted": self.rows_deleted,
                "commits": self.commits, "rebuilt": self.rebuilt}


def projection_definition(log: Log, name: str) -> Projection:
    """A stored projection: the one place the sync reads the log's store directly (to be re-pointed as it moves)."""
    from ..snapshots import get_projection

    return get_projection(log.backend(), name)


def holder_text(what: str) -> str:
    """Who holds a sync lock, for the message another syncer gets."""
    return f"pid {os.getpid()} on {socket.gethostname()}: {what}"


# -- the engine --------------------------------------------------------------------


@dataclass
class Place:
    """Where a sync writes, and what it knows of the table there."""

    target: Target
    table: str
    source: str
    log_id: str
    definition: str
    checkpoint: Checkpoint | None
    build: bool
    report: SyncReport
    describe: str  # "projection 'balances'", for messages
    layout: Layout | None = None
    last_commit: float = field(default_factory=time.monotonic)


class StoppedWaiting(Exception):
    """``stop()`` said so while the sync waited for another syncer's lock (``wait``)."""


def open_place(
    log: Log, url: str, *, table: str, source: str, definition: str, rebuild: bool, wait: bool, what: str,
    describe: str, stop: Stop, on_wait: Callable[[str], None] | None = None,
) -> Place:
    """Connect, lock the table, read its checkpoint, and decide whether it must be (re)built.

    Waiting for another syncer polls the lock, so that ``stop()`` is heard meanwhile (:class:`StoppedWaiting`).
    """
    check_identifier(table, "the table name (choose one with --table)", max_bytes=MAX_TABLE)
    log_id = str(log.info()["log_id"])
    target = open_target(url)
    try:
        while True:
            try:
                target.lock(table, wait=False, holder=holder_text(what))
                break
            except SyncBusyError as busy:
                if not wait:
                    raise
                if on_wait is not None:
                    on_wait(str(busy).split("; ")[0])
                    on_wait = None  # said once
                if stop():
                    raise StoppedWaiting from None
                time.sleep(LOCK_POLL)
        checkpoint = target.checkpoint(table)
        exists = target.table_exists(table)
        if checkpoint is None and exists:
            raise ForeignTableError(
                f"the table {table!r} in {target.display} was not created by evlog; it is left alone. Sync into "
                "another table with --table NAME, or drop or rename that one yourself"
            )
        if checkpoint is not None and checkpoint.source != source:
            raise UsageError(
                f"the table {table!r} in {target.display} holds {_source_words(checkpoint.source)}, not "
                f"{describe}: give another --table"
            )
        if checkpoint is not None and checkpoint.log_id != log_id and not rebuild:
            raise UsageError(
                f"the table {table!r} in {target.display} was built from another log (id {checkpoint.log_id}); "
                "--rebuild rebuilds it from this one"
            )
        build = (rebuild or checkpoint is None or not exists or checkpoint.definition != definition
                 or checkpoint.last_seq > log.head())
    except BaseException:
        target.close()
        raise
    report = SyncReport(source=source, target=without_password(url), table=table, head=log.head())
    if checkpoint is not None and not build:
        report.last_seq = checkpoint.last_seq
    return Place(target, table, source, log_id, definition, checkpoint, build, report, describe)


def waited_out(url: str, table: str, source: str) -> SyncReport:
    """The report of a sync stopped while it waited for the lock: nothing was done."""
    return SyncReport(source=source, target=without_password(url), table=table, stopped=True, locked=False)


def _source_words(source: str) -> str:
    return "the events of a log" if source == EVENTS else visible(source)


def new_checkpoint(place: Place, last_seq: int, key_column: str | None, columns: tuple[Column, ...],
                table: str | None = None) -> Checkpoint:
    return Checkpoint(
        table=table or place.table, source=place.source, log_id=place.log_id, definition=place.definition,
        last_seq=last_seq, key_column=key_column, columns=columns, updated=format_ts(time.time_ns()),
    )


def record_place(log: Log, place: Place, warn: Callable[[str], None] | None) -> None:
    from .registry import record_target

    record_target(log, place.source, place.target.display, place.table, warn)


def sync_projection(
    log: Log,
    name: str,
    url: str,
    *,
    follow: bool = False,
    table: str | None = None,
    rebuild: bool = False,
    wait: bool = False,
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
    snapshot_max_size: int | None = None,
    timeout: float | None = None,
    stop: Stop | None = None,
    on_commit: Callable[[SyncReport], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> SyncReport:
    """Bring the table of projection ``name`` in the database at ``url`` up to the log's head.

    With ``follow``, stay and keep it current as events are appended, until
    ``stop()`` returns True (polled between spans of events and at least every
    quarter second while waiting). ``table`` defaults to the projection's
    name; ``rebuild`` rebuilds it even if its definition is unchanged;
    ``wait`` waits for another syncer of the same table instead of raising
    :class:`~evlog.errors.SyncBusyError`. ``snapshot_every`` is the reader's
    snapshot interval (the projection's own can only make it rarer), as for
    ``projection show``. ``on_commit`` hears of every commit, ``on_warning``
    of what does not stop the sync (snapshots not saved, say), ``on_wait`` of
    the syncer it waits for (once), ``progress`` of the catch-up: ``(events
    folded, events to fold)`` now and then.
    """
    from ..fold import CompiledFold
    from ..runner import run_fold
    from ..snapshot_limits import allowed_interval
    from ..snapshots import DEFAULT_SNAPSHOT_MAX_SIZE

    projection = projection_definition(log, name)
    spec = projection.spec
    first = log.resolve(projection.from_)
    definition = spec.digest(first).hex()
    keyed = spec.by is not None
    describe = f"projection {name!r}"
    stopped = stop or (lambda: False)
    try:
        place = open_place(
            log, url, table=table if table is not None else name, source=f"projection {name}",
            definition=definition, rebuild=rebuild, wait=wait, what=f"evlog projection sync {name}",
            describe=describe, stop=stopped, on_wait=on_wait,
        )
    except StoppedWaiting:
        return waited_out(url, table if table is not None else name, f"projection {name}")
    every = allowed_interval(projection.snapshot_every, snapshot_every)
    max_size = DEFAULT_SNAPSHOT_MAX_SIZE if snapshot_max_size is None else snapshot_max_size

    compiled = CompiledFold(spec, snapshots=every > 0)  # once: a live sync folds a few events per wake-up

    def fold(states: dict[Any, Any], done: int, until: int, meter: Progress | None = None) -> None:
        run_fold(log, spec, from_=first, until=until, start_state=(done, states), snapshot_every=every,
                 snapshot_max_size=max_size, on_snapshot_error=on_warning, timeout=timeout, compiled=compiled,
                 progress=meter)

    try:
        record_place(log, place, on_warning)
        states: dict[Any, Any]
        if place.build:
            done = first - 1
            states = {}  # a build writes every key: no need to learn which the fold reached
        else:
            assert place.checkpoint is not None
            done = place.checkpoint.last_seq
            place.layout = Layout(place.checkpoint.columns, keyed=keyed)
            if done >= first:
                result, _ = run_fold(log, spec, from_=first, until=done, snapshot_every=every,
                                     snapshot_max_size=max_size, on_snapshot_error=on_warning, timeout=timeout)
                states = TouchedStates(result.states)
            else:
                states = TouchedStates({})
        writer = _StateWriter(place, states, keyed=keyed, on_commit=on_commit)
        # Catch up in spans, committing now and then (a table being built commits once, at the end).
        head = log.head()
        if not keyed and done < first and head < first:
            # Nothing to fold yet: the one row is the initial state, as replay would print it.
            states[None] = orjson.loads(orjson.dumps(spec.init))
        start = done
        while done < head and not stopped():
            end = min(head, done + SPAN)
            span_start = done
            meter = None if progress is None else (
                lambda seqs, _total, base=span_start - start: progress(base + seqs, head - start))
            fold(writer.states, done, end, meter)
            done = end
            if not place.build and time.monotonic() - place.last_commit > COMMIT_SECONDS:
                writer.commit(done)
        writer.commit(done)
        if follow and not stopped():
            for last in live_seqs(log, done, stopped):
                fold(writer.states, place.report.last_seq, last)  # the writer swaps in a tracking dict after a build
                writer.commit(last)
        place.report.stopped = stopped()
        place.report.head = max(place.report.head, log.head())
        return place.report
    finally:
        place.target.close()


def live_seqs(log: Log, done: int, stopped: Stop) -> Iterator[int]:
    """The last seq of each run of new events, as they are committed, until ``stopped()``.

    :func:`evlog.follow.follow` is only the wake-up here: its rows are not used
    (the fold and the export read their own), so it is given a filter that
    passes none.
    """
    from ..follow import follow

    class _Stopped(Exception):
        pass

    def idle() -> None:
        if stopped():
            raise _Stopped

    try:
        for _, last in follow(log, done + 1, types=_nothing, on_idle=idle):
            yield last
            if stopped():
                return
    except _Stopped:
        return


def _nothing(_: str | None) -> bool:
    return False


class _StateWriter:
    """Writes the keys a fold touched, with the checkpoint, one transaction per commit."""

    def __init__(self, place: Place, states: dict[Any, Any], *, keyed: bool,
                 on_commit: Callable[[SyncReport], None] | None) -> None:
        self.place = place
        self.states = states
        self.keyed = keyed
        self.on_commit = on_commit
        self.key_column = KEY_COLUMN.name if keyed else None

    def commit(self, done: int) -> None:
        place = self.place
        touched = self.states.take() if isinstance(self.states, TouchedStates) else set()
        if not place.build and not touched and done == place.report.last_seq:
            return
        first_seq = place.report.last_seq + 1
        try:
            with place.target.transaction() as batch:
                if place.build:
                    self._build(batch, done)
                else:
                    self._update(batch, touched, done)
        except TargetValueError as exc:
            raise self._located(exc, first_seq, done) from exc
        except UsageError as exc:  # a state key that cannot be a column
            raise self._located(TargetValueError(str(exc)), first_seq, done) from exc
        if not isinstance(self.states, TouchedStates):
            # Built: from now on only the keys the fold reaches are written.
            self.states = TouchedStates(self.states)
        place.report.last_seq = done
        place.report.commits += 1
        place.last_commit = time.monotonic()
        if self.on_commit is not None:
            self.on_commit(place.report)

    def _located(self, exc: TargetValueError, first_seq: int, done: int) -> TargetValueError:
        place = self.place
        key = f", key {visible(key_text(exc.key))!r}" if exc.key is not None and self.keyed else ""
        seqs = f"seq {done}" if first_seq >= done else f"seqs {first_seq}-{done}"
        stays = f"seq {place.report.last_seq}" if not place.build else "as it was (nothing written)"
        return TargetValueError(
            f"{place.describe}{key}, state after {seqs}: {exc}; the table {place.table!r} stays at {stays}",
            key=exc.key,
        )

    def _rows(self, keys: Iterable[Any], layout: Layout, *, fitted: bool = False) -> tuple[list[list[Any]], list[Any]]:
        """Rows to upsert and keys to delete; a value that does not fit its column raises :class:`_Conflict`.

        ``fitted``: the layout was inferred from these very states, so every value fits it.
        """
        rows: list[list[Any]] = []
        removed: list[Any] = []
        present: list[tuple[Any, Any, dict[Any, Any]]] = []
        for key in keys:
            state = dict.get(self.states, key)
            shown = key_text(key) if self.keyed else None
            if state is None:
                removed.append(shown)
                continue
            fields = state_fields(state)
            present.append((key, shown, fields))
            if not fitted:  # every new column first: all rows of a batch have the same columns
                for name, value in fields.items():
                    if value is not None:
                        fits = layout.fits(name, value)
                        if fits is None:
                            layout.add(layout.check_new(name), column_type(value))
                        elif not fits:
                            raise _Conflict(name)
        for key, shown, fields in present:
            try:
                values = layout.cells(fields)
            except ValueError as exc:
                raise TargetValueError(str(exc), key=key) from None
            rows.append([shown, *values] if self.keyed else values)
        return rows, removed

    def _update(self, batch: Batch, touched: set[Any], done: int) -> None:
        place = self.place
        layout = place.layout
        assert layout is not None
        before = set(layout.columns)
        try:
            rows, removed = self._rows(touched, layout)
        except _Conflict:
            place.build = True  # a column must become JSON: write every state into a new table
            self._build(batch, done)
            return
        for name, kind in layout.columns.items():
            if name not in before:
                batch.add_column(place.table, Column(name, kind))
        names = list(layout.columns)
        if rows:
            batch.upsert(place.table, self.key_column, names, rows)
        if removed:
            batch.delete(place.table, self.key_column, removed)
        batch.write_checkpoint(new_checkpoint(place, done, self.key_column, layout.as_columns()))
        place.report.rows_written += len(rows)
        place.report.rows_deleted += len(removed)

    def _build(self, batch: Batch, done: int) -> None:
        place = self.place
        layout = infer_layout(dict.values(self.states), keyed=self.keyed)
        rows, _ = self._rows(list(dict.keys(self.states)), layout, fitted=True)
        build = BUILD_PREFIX + place.table
        batch.drop_table(build)  # left by a build that was killed before its commit
        batch.create_table(TableSpec(build, KEY_COLUMN if self.keyed else None, layout.as_columns()))
        if rows:
            batch.upsert(build, self.key_column, list(layout.columns), rows)
        batch.swap(build, place.table)
        batch.forget_checkpoint(build)
        batch.write_checkpoint(new_checkpoint(place, done, self.key_column, layout.as_columns()))
        place.layout = layout
        place.build = False
        place.report.rebuilt = True
        place.report.rows_written += len(rows)


class _Conflict(Exception):
    """A value of another type than its column's: the column must become JSON."""
