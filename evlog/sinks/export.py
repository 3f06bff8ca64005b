"""``evlog export``: the events themselves in a database table, one row each, exactly once.

Rows are inserted in statements of :data:`EXPORT_CHUNK` events, and
committed with the checkpoint every few seconds and at the end, so a long
export keeps its progress; a table being rebuilt (other filters, or
``rebuild``) is built whole under another name and swapped in by the
transaction that writes its checkpoint, as for projections
(:mod:`evlog.sinks.sync`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

import msgpack
import orjson

from ..errors import DamagedLogError
from ..timefmt import format_ts
from .rows import JSON_OPTIONS
from .sync import (
    COMMIT_SECONDS,
    EVENTS,
    Progress,
    Stop,
    StoppedWaiting,
    SyncReport,
    live_seqs,
    new_checkpoint,
    open_place,
    record_place,
    waited_out,
)
from .target import BUILD_PREFIX, Column, TableSpec

if TYPE_CHECKING:
    from ..log import Log

EXPORT_CHUNK = 10_000
"""Event rows per insert statement."""
EVENT_COLUMNS = (
    Column("ts", "text"), Column("type", "text"), Column("stream", "text"), Column("version", "integer"),
    Column("id", "text"), Column("data", "json"), Column("meta", "json"),
)
EVENT_INDEXES = (("type",), ("stream",))


def export_definition(streams: Iterable[str], types: Iterable[str], where: str | None) -> str:
    """The definition hash of an export: its filters (another filter is another table's content)."""
    canonical = orjson.dumps({"export": 1, "streams": list(streams), "types": list(types), "where": where})
    return blake2b(canonical, digest_size=16).hexdigest()


def export_events(
    log: Log,
    url: str,
    *,
    streams: Iterable[str] = (),
    types: Iterable[str] = (),
    where: str | None = None,
    follow: bool = False,
    table: str = EVENTS,
    rebuild: bool = False,
    wait: bool = False,
    stop: Stop | None = None,
    on_commit: Callable[[SyncReport], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> SyncReport:
    """Copy the log's events into the table ``table`` at ``url``, one row each, exactly once.

    Columns: ``seq`` (primary key), ``ts`` (RFC 3339 UTC text, as evlog prints
    it), ``type``, ``stream``, ``version``, ``id``, ``data`` and ``meta``
    (JSON). ``streams``, ``types`` (names or globs) and ``where`` (an
    expression, as ``--where``) choose the events; other filters than the
    table's make it be rebuilt. ``follow``, ``stop``, ``wait``, ``rebuild`` and
    the callbacks as for :func:`sync_projection`.
    """
    streams, types = list(streams), list(types)
    test = None
    if where is not None:
        from ..fold import compile_where

        test = compile_where(where)
    stopped = stop or (lambda: False)
    catching_up = True  # progress is for the catch-up, not for the events followed after it
    try:
        place = open_place(
            log, url, table=table, source=EVENTS, definition=export_definition(streams, types, where),
            rebuild=rebuild, wait=wait, what="evlog export", describe="the events", stop=stopped,
            on_wait=on_wait,
        )
    except StoppedWaiting:
        return waited_out(url, table, EVENTS)
    dumps, unpack = orjson.dumps, msgpack.unpackb

    def rows_after(done: int, until: int) -> Iterator[list[Any]]:
        if until <= done:
            return
        found = log.rows(from_=done + 1, until=until, streams=streams or None, types=types or None,
                         progress=progress if catching_up else None)
        if test is not None:
            found = (row for row in found if test(*row))
        # Rows straight from the envelopes (the export's hot loop): a payload that does not decode
        # or convert takes the way of evlog's own output, which names the damaged seq.
        for row in found:
            seq, (_, ts, version, etype, stream, id_, meta, data) = row
            try:
                payload = dumps(unpack(data, ext_hook=_no_ext), option=JSON_OPTIONS).decode()
            except (ValueError, TypeError):
                payload = _payload_of(row)
            yield [seq, format_ts(ts), etype, stream, version, id_, payload,
                   dumps(meta, option=JSON_OPTIONS).decode() if meta else "{}"]

    def write(done: int, until: int) -> int:
        """Export the events of ``done+1..until``; returns the seq the table reached (``until`` unless stopped)."""
        if until <= done and not place.build:
            return done
        rows = rows_after(done, until)
        names = ["seq"] + [column.name for column in EVENT_COLUMNS]
        finished = False
        while not finished:
            started = time.monotonic()
            reached = done
            with place.target.transaction() as batch:
                name = BUILD_PREFIX + place.table if place.build else place.table
                if place.build:
                    batch.drop_table(name)
                    batch.create_table(TableSpec(name, Column("seq", "integer"), EVENT_COLUMNS, EVENT_INDEXES))
                while True:
                    chunk = list(itertools.islice(rows, EXPORT_CHUNK))
                    if chunk:
                        batch.insert(name, names, chunk)
                        reached = chunk[-1][0]
                        place.report.rows_written += len(chunk)
                    if len(chunk) < EXPORT_CHUNK:
                        finished, reached = True, until
                        break
                    if stopped() or (not place.build and time.monotonic() - started > COMMIT_SECONDS):
                        break
                if place.build:
                    batch.swap(name, place.table)
                    batch.forget_checkpoint(name)
                    place.build = False
                    place.report.rebuilt = True
                batch.write_checkpoint(new_checkpoint(place, reached, "seq", EVENT_COLUMNS))
            done = place.report.last_seq = reached
            place.report.commits += 1
            if on_commit is not None:
                on_commit(place.report)
            if stopped():
                break
        return done

    try:
        record_place(log, place, on_warning)
        done = place.report.last_seq
        done = write(done, log.head())
        catching_up = False
        if follow and not stopped():
            for last in live_seqs(log, done, stopped):
                done = write(done, last)
        place.report.stopped = stopped()
        place.report.head = max(place.report.head, log.head())
        return place.report
    finally:
        place.target.close()


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError("an extension type")


def _payload_of(row: Any) -> str:
    """The JSON of a row's payload by evlog's output path: :class:`DamagedLogError` naming the seq if it has none."""
    from ..output import event_dicts

    event = next(event_dicts([row]))
    try:
        return orjson.dumps(event["data"], option=JSON_OPTIONS).decode()
    except TypeError:
        raise DamagedLogError("the payload is not a JSON value", seq=row[0]) from None
