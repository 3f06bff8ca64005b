"""``evlog tail``: the last events, and with ``-f`` every new one as it is committed."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Annotated, Any

import typer

from ..errors import UsageError
from ._common import (
    DEFAULT_LOG,
    DebugOption,
    LogOption,
    NoColorOption,
    Output,
    OutputOption,
    TemplateOption,
    binary_stdout,
    stdout_is_terminal,
)
from ._complete import complete_groups
from ._fold_options import StreamOption, TypeOption, WhereOption

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


@app.command(
    help=(
        "Print the last events; with --follow, then every new event as it is committed.\n\n"
        "Output and filters are those of replay; followed output is flushed as it is printed, so "
        "`evlog tail -f | jq` works live. Ctrl-C ends it (exit 130).\n\n"
        "With --group NAME the position is kept in the log: the next `tail --group NAME` starts after "
        "the last event it wrote out (at-least-once: after a crash, the events of the last unfinished "
        "write may come again). A new group starts at --from, else at the first event. One follower "
        "per group at a time: a second one is refused.\n\n"
        "Examples:\n\n"
        "  evlog tail -n 20\n\n"
        "  evlog tail -f --type 'order.*' | jq .data\n\n"
        "  evlog tail -f --group billing | ./bill-customers"
    ),
)
def tail(
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many of the last events to print.")] = 10,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Then print new events as they arrive.")] = False,
    from_: Annotated[
        str | None, typer.Option("--from", metavar="POS", help="Start at this position instead of the last N.")
    ] = None,
    stream: StreamOption = None,
    event_type: TypeOption = None,
    where: WhereOption = None,
    group: Annotated[
        str | None,
        typer.Option("--group", "-g", metavar="NAME", help="Resume after the group's last event.",
                     autocompletion=complete_groups),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="If the log does not exist yet, wait for it.")] = False,
    output: OutputOption = Output.auto,
    template: TemplateOption = None,
    no_color: NoColorOption = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import follow as following
    from .. import output as render
    from .. import scan
    from ..log import Log

    if template is not None and output is not Output.auto:
        raise UsageError("--template and --output are alternatives: give one")
    if output is Output.json and follow:
        raise UsageError("-o json writes one array, which a follower never closes: use -o ndjson")
    if template is not None:
        render.compile_template(template)
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

    def emit(rows: Iterable[Any]) -> None:
        """Write rows (one call per read when following; once for everything otherwise)."""
        nonlocal table_started
        if test is not None:
            rows = (row for row in rows if test(*row))
        if template is not None:
            render.write_template(out, rows, template)
        elif chosen is Output.table:
            table_started = render.write_table(rows, header=not table_started, last_seq=head,
                                              types=log_types) > 0 or table_started
        elif chosen is Output.json:
            render.write_json_array(out, rows, pretty=stdout_is_terminal())
        elif chosen is Output.msgpack:
            render.write_msgpack(out, rows)
        else:
            render.write_ndjson(out, rows)

    with Log(log) as opened:
        lock = None
        store = opened.store(write=group is not None)
        types = scan.matcher(event_type, prefix_star=False)
        streams = scan.matcher(stream, prefix_star=True)
        head = scan.head_seq(store)
        log_types = opened.types() if chosen is Output.table else {}
        before: list[Any] = []
        if group is not None:
            lock = following.GroupLock(log, group)
            lock.acquire()
            position = following.group_position(store, group)
            start = position + 1 if position is not None else opened.resolve(from_) if from_ else 1
        elif from_ is not None:
            start = opened.resolve(from_)
        elif waited and follow:
            start = 1  # the log appeared while we waited: every event in it is new
        else:
            start = head + 1
            before = following.last_rows(store, lines, head, types=types, streams=streams, where=test)
        try:
            if not follow:
                emit(itertools.chain(before, scan.scan(store, start, head, types=types, streams=streams)))
                if group is not None and head >= start:
                    following.set_group_position(store, group, head)
                return
            if before:
                emit(before)
            for rows, last in following.follow(opened, start, types=types, streams=streams):
                if rows:
                    emit(rows)  # each write is flushed: the rows are out before the checkpoint moves
                if group is not None:
                    following.set_group_position(store, group, last)
        finally:
            if lock is not None:
                lock.release()
