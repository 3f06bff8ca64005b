"""``evlog replay``: print events in seq order, selected by position, stream and type."""

import itertools
from typing import Annotated

import typer

from ..errors import UsageError
from ._common import DEFAULT_LOG, DebugOption, LogOption, Output, binary_stdout, stdout_is_terminal

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})

POSITION_HELP = (
    "seq, -N from the end, a date/time (2026-11-26T10:00, ...Z; local without a zone), "
    "-15m/-2h/-7d, now, today, yesterday, or id:KEY"
)


@app.command(
    help=(
        "Print events in seq order.\n\n"
        "On a terminal events are shown as a table; piped, as NDJSON "
        '({"seq", "ts", "type", "stream", "version", "id", "data", "meta"} per line), '
        "which evlog append reads back as it is.\n\n"
        "Examples:\n\n"
        "  evlog replay --from -100\n\n"
        "  evlog replay --until 2026-11-01T12:00 -s 'account-*' -t deposit\n\n"
        "  evlog replay --template '{seq} {type} {data[amount]}'"
    ),
)
def replay(
    from_: Annotated[
        str | None, typer.Option("--from", metavar="POS", help=f"First position (inclusive): {POSITION_HELP}.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="POS", help="Last position (inclusive), same forms as --from.")
    ] = None,
    stream: Annotated[
        list[str] | None,
        typer.Option("--stream", "-s", help="Only this stream (repeatable; a trailing * matches a prefix)."),
    ] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="Only this type (repeatable; glob like 'order.*').")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=0, help="At most N events.")] = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", help="auto: a table on a terminal, NDJSON when piped.")
    ] = Output.auto,
    template: Annotated[
        str | None,
        typer.Option("--template", metavar="FORMAT", help="One line per event, e.g. '{seq} {type} {data[amount]}'."),
    ] = None,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import output as render
    from ..log import Log

    if template is not None and output is not Output.auto:
        raise UsageError("--template and --output are alternatives: give one")
    if template is not None:
        render.compile_template(template)  # report a bad template before reading
    from .._tuning import for_streaming

    for_streaming()
    with Log(log) as opened:
        rows = opened.rows(from_=from_, until=until, streams=stream, types=event_type)
        if limit is not None:
            rows = itertools.islice(rows, limit)
        chosen = output
        if chosen is Output.auto:
            chosen = Output.table if stdout_is_terminal() else Output.ndjson
        if template is not None:
            render.write_template(binary_stdout(), rows, template)
        elif chosen is Output.table:
            render.write_table(rows)
        elif chosen is Output.json:
            render.write_json_array(binary_stdout(), rows, pretty=stdout_is_terminal())
        elif chosen is Output.msgpack:
            render.write_msgpack(binary_stdout(), rows)
        else:
            render.write_ndjson(binary_stdout(), rows)
