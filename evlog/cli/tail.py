"""``evlog tail``: the last events, and with ``-f`` every new one as it is committed.

With ``--group`` it reads for a durable group (:mod:`evlog.groups`): a plain
run prints and moves nothing (the reader acknowledges with ``group ack``),
``--exec CMD`` acknowledges each event when CMD exits 0.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import sys
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer

from ..errors import EvlogError, UsageError
from ._common import (
    DEFAULT_LOG,
    DebugOption,
    LogOption,
    NoColorOption,
    Output,
    OutputOption,
    TemplateOption,
    binary_stdout,
    note,
    stdout_is_terminal,
)
from ._complete import complete_groups
from ._fold_options import StreamOption, TypeOption, WhereOption

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})

DEFAULT_LINES = 10


class _Done(Exception):
    """--count events were printed or handled."""


class PartlyParkedError(EvlogError):
    """A run with --exec parked events as dead letters."""


@app.command(
    help=(
        "Print the last events; with --follow, then every new event as it is committed.\n\n"
        "Output and filters are those of replay; followed output is flushed as it is printed, so "
        "`evlog tail -f | jq` works live. Ctrl-C ends it (exit 130); a follower whose reader has gone "
        "(`| head -1`) ends within a poll interval, whatever arrives.\n\n"
        "With --group NAME the log keeps the group's position: the last event whose work is known to "
        "be done. A run starts after it (after the group's queued dead letters). --exec CMD runs CMD "
        "once per event (the event's NDJSON on stdin, EVLOG_SEQ, EVLOG_TYPE, EVLOG_STREAM, EVLOG_ID, "
        "EVLOG_GROUP, EVLOG_ATTEMPT in its environment) and moves the group past the event when CMD "
        "exits 0; a failing CMD is retried after 0.1 s, doubling to at most 5 s, up to --max-attempts, "
        "then the event is parked as a dead letter and the group moves on. Without --exec, tail prints "
        "the events and moves nothing: the reader acknowledges with `evlog group ack NAME SEQ`. Either "
        "way every event is delivered at least once. A group keeps its filters (-s, -t, --where); other "
        "ones are refused unless --reset-filters. A new group starts at --from, at the last -n events, "
        "else at the first event. One follower per group at a time: a second one is refused.\n\n"
        "Examples:\n\n"
        "  evlog tail -f --type 'order.*' | jq .data\n\n"
        "  evlog tail -f -t order.paid --where 'd.order == \"o-17\"' --count 1\n\n"
        "  evlog tail -f --group billing --exec './bill-customer.sh'"
    ),
)
def tail(
    lines: Annotated[
        int | None, typer.Option("--lines", "-n", metavar="N", min=0, show_default=False,
                                 help="How many of the last events to print (default 10), e.g. -n 50.")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Then print new events as they arrive.")] = False,
    from_: Annotated[
        str | None,
        typer.Option("--from", metavar="POS",
                     help="Start at this position instead of the last N (with --group: where a new group starts)."),
    ] = None,
    stream: StreamOption = None,
    event_type: TypeOption = None,
    where: WhereOption = None,
    count: Annotated[
        int | None,
        typer.Option("--count", metavar="N", min=1,
                     help="Stop after N events (printed, or handled with --exec), e.g. --count 1."),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", "-g", metavar="NAME", help="Resume after the group's last acknowledged event.",
                     autocompletion=complete_groups),
    ] = None,
    exec_: Annotated[
        str | None,
        typer.Option("--exec", metavar="CMD",
                     help="With --group: run `sh -c CMD` per event, acknowledging it on exit 0, "
                          "e.g. --exec 'jq .data >> paid.ndjson'."),
    ] = None,
    max_attempts: Annotated[
        int | None,
        typer.Option("--max-attempts", metavar="N", min=1, show_default=False,
                     help="With --exec: attempts per event before it is parked as a dead letter "
                          "(default 5), e.g. --max-attempts 3."),
    ] = None,
    reset_filters: Annotated[
        bool,
        typer.Option("--reset-filters",
                     help="With --group: make this run's -s/-t/--where the group's filters from now on."),
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="If the log does not exist yet, wait for it.")] = False,
    output: OutputOption = Output.auto,
    template: TemplateOption = None,
    no_color: NoColorOption = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import follow as following
    from .. import groups, scan
    from .. import output as render
    from .. import template as templates
    from ..log import Log

    if template is not None and output is not Output.auto:
        raise UsageError("--template and --output are alternatives: give one")
    if output is Output.json and follow:
        raise UsageError("-o json writes one array, which a follower never closes: use -o ndjson")
    if group is None:
        for given, option in ((exec_, "--exec"), (max_attempts, "--max-attempts"), (reset_filters or None,
                                                                                   "--reset-filters")):
            if given is not None:
                raise UsageError(f"{option} works with a group: add --group NAME")
    if exec_ is None and max_attempts is not None:
        raise UsageError("--max-attempts counts the attempts of --exec CMD: add --exec")
    if exec_ is not None and (template is not None or output is not Output.auto):
        raise UsageError("--exec gives each event to CMD as NDJSON on its stdin; leave out -o and --template")
    if template is not None:
        templates.compile_template(template)
    test = None
    if where is not None:
        from ..fold import compile_where

        test = compile_where(where)
    from .._tuning import for_streaming

    for_streaming()
    waited = wait and following.wait_for_log(log)
    chosen = output
    if chosen is Output.auto:
        chosen = Output.table if stdout_is_terminal() else Output.ndjson
    out = binary_stdout()
    table_started = False
    remaining = count

    def emit(rows: Iterable[Any], *, filtered: bool = True) -> None:
        """Write rows (one call per read when following; once for everything otherwise)."""
        nonlocal table_started, remaining
        if test is not None and filtered:
            rows = (row for row in rows if test(*row))
        if remaining is not None:
            rows = itertools.islice(rows, remaining)
        if template is not None:
            written = templates.write_template(out, rows, template)
        elif chosen is Output.table:
            written = render.write_table(rows, header=not table_started, last_seq=head, types=log_types)
            table_started = written > 0 or table_started
        elif chosen is Output.json:
            written = render.write_json_array(out, rows, pretty=stdout_is_terminal())
        elif chosen is Output.msgpack:
            written = render.write_msgpack(out, rows)
        else:
            written = render.write_ndjson(out, rows)
        if remaining is not None:
            remaining -= written
            if remaining <= 0:
                raise _Done

    with Log(log) as opened, contextlib.ExitStack() as cleanup:
        backend = opened.backend(write=group is not None)
        store = backend.groups() if group is not None else None
        hold = None
        types = scan.matcher(event_type, prefix_star=False)
        streams = scan.matcher(stream, prefix_star=True)
        head = backend.head()
        log_types = opened.types() if chosen is Output.table else {}
        before: list[Any] = []
        queued: list[tuple[groups.DeadLetter, Any]] = []
        if group is not None:
            assert store is not None
            groups.check_group_name(group)
            hold = cleanup.enter_context(store.hold(group))  # released however the run ends
            filters = groups.Filters.of(stream, event_type, where)
            existing = groups.get_group(store, group)
            if existing is not None:
                start = _resume(store, existing, filters, from_=from_, lines=lines, reset_filters=reset_filters)
            else:
                if from_ is not None and lines is not None:
                    raise UsageError("--from and -n both say where a new group starts: give one")
                if from_ is not None:
                    start = opened.resolve(from_)
                elif lines is not None:
                    found = following.last_rows(backend, lines, head, types=types, streams=streams, where=test)
                    start = found[0][0] if found else head + 1
                else:
                    start = 1
                start = min(max(start, 1), head + 1)
                groups.create_group(store, group, start - 1, filters)
            queued = _queued_rows(opened, store, group)
        elif from_ is not None:
            start = opened.resolve(from_)
        elif waited and follow:
            start = 1  # the log appeared while we waited: every event in it is new
        else:
            start = head + 1
            before = following.last_rows(backend, DEFAULT_LINES if lines is None else lines, head,
                                         types=types, streams=streams, where=test)
        try:
            if exec_ is not None:
                assert group is not None and store is not None
                consumer = following.ExecConsumer(store, group, exec_,
                                               max_attempts=max_attempts or following.DEFAULT_MAX_ATTEMPTS,
                                               report=note, keepalive=hold.keep if hold is not None else None)
                _consume(opened, store, consumer, queued, start, head, follow=follow, count=count, test=test,
                         types=types, streams=streams)
                return
            printed_dead = {row[0] for _, row in queued}
            if queued:
                emit((row for _, row in queued), filtered=False)  # the group's own events, whatever its filters now
            if not follow:
                emit(itertools.chain(before, backend.rows(start, head, types=types, streams=streams)))
                return
            if before:
                emit(before)

            def print_retried() -> None:
                """Dead letters that `group retry` queued while following (it wakes the follower)."""
                assert group is not None and hold is not None
                hold.keep()
                fresh = [row for _, row in _queued_rows(opened, store, group) if row[0] not in printed_dead]
                printed_dead.update(row[0] for row in fresh)
                if fresh:
                    emit(fresh, filtered=False)

            for rows, _last in following.follow(opened, start, types=types, streams=streams,
                                                 on_idle=print_retried if group is not None else None,
                                                 output=_watched_output(), report=note):
                if rows:
                    emit(rows)  # each write is flushed as it is made
                if hold is not None:
                    hold.keep()
        except _Done:
            return


def _resume(store: Any, existing: Any, filters: Any, *, from_: str | None, lines: int | None,
            reset_filters: bool) -> int:
    """Where an existing group goes on, after checking that this run reads what the group reads."""
    from .. import groups
    from ..textsafe import visible

    name = visible(existing.name)
    if from_ is not None or lines is not None:
        option = "--from" if from_ is not None else "-n"
        raise UsageError(
            f"group {name!r} exists and goes on after seq {existing.position}; {option} only places a new group. "
            f"To move it: evlog group reset {name} --to POS"
        )
    if existing.filters != filters:
        if existing.filters is None or reset_filters:
            groups.set_filters(store, existing.name, filters)
        else:
            raise UsageError(
                f"group {name!r} reads {existing.filters.describe()}, this run asks for {filters.describe()}; "
                "give the group's filters, or add --reset-filters to make these its filters from now on "
                "(or use another group name)"
            )
    return int(existing.position) + 1


def _queued_rows(opened: Any, store: Any, group: str) -> list[tuple[Any, Any]]:
    """The group's dead letters queued by `group retry`, with their events, in seq order."""
    from .. import groups
    from ..errors import DamagedLogError
    from ..textsafe import visible

    found = []
    for letter in groups.dead_letters(store, group):
        if not letter.queued:
            continue
        rows = list(opened.backend().rows(letter.seq, letter.seq))
        if not rows:
            raise DamagedLogError(
                f"group {visible(group)!r}: a dead letter names seq {letter.seq}, which the log lacks"
            )
        found.append((letter, rows[0]))
    return found


def _consume(opened: Any, store: Any, consumer: Any, queued: list[tuple[Any, Any]], start: int, head: int, *,
             follow: bool, count: int | None, test: Callable[..., bool] | None, types: Any, streams: Any) -> None:
    """Hand the group's queued dead letters, then its events, to the --exec command."""
    from .. import follow as following
    from .. import groups
    from ..textsafe import visible

    handled = 0
    moved_to = 0

    def counted() -> None:
        nonlocal handled
        handled += 1
        if count is not None and handled >= count:
            raise _Done

    def retry_queued() -> None:
        for letter, row in queued:
            consumer.redeliver(row, letter)
            counted()
        queued.clear()

    def chunk(rows: Iterable[Any], last: int) -> None:
        nonlocal moved_to
        for row in rows:
            if test is None or test(*row):
                consumer.deliver(row)  # acknowledged (or parked) before the next one starts
                moved_to = row[0]
                counted()
        if last > moved_to:  # past the events the filters left out
            following.ride_out(lambda: groups.acknowledge(store, consumer.group, [last]), note)
            moved_to = last

    def on_idle() -> None:
        if consumer.keepalive is not None:
            consumer.keepalive()  # a hold that expires is renewed while the follower waits
        # `group retry` while following: it wakes the follower, which delivers them now.
        queued.extend(following.ride_out(lambda: _queued_rows(opened, store, consumer.group), note))
        retry_queued()

    try:
        retry_queued()
        if not follow:
            if head >= start:
                chunk(opened.backend().rows(start, head, types=types, streams=streams), head)
        else:
            for rows, last in following.follow(opened, start, types=types, streams=streams, on_idle=on_idle,
                                               output=_watched_output(), report=note):
                chunk(rows, last)
    except _Done:
        return
    if consumer.parked:
        raise PartlyParkedError(
            f"group {visible(consumer.group)!r}: {consumer.parked} of the events failed and are dead letters "
            f"(see evlog group dead {groups.shell_word(consumer.group)})"
        )


def _watched_output() -> int | None:
    """Stdout when a reader can leave it (a pipe or a socket), for the follower to watch."""
    try:
        fd = sys.stdout.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError):
        return None
    return fd if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else None
