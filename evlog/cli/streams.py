"""``evlog streams``: every stream with its version and its first and last event.

The list comes from the stream index (:func:`evlog.stats.stream_summaries`):
no event is scanned, only each stream's first and last record is read for
its times. In name order the streams are printed as they are read, in
constant memory, whatever the output: NDJSON and the JSON array are written
element by element, and the table has column widths fixed up front from the
terminal width (like ``evlog replay``'s), so it needs no second pass.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import DEFAULT_LOG, DebugOption, LogOption, binary_stdout, local_time, stdout_is_terminal
from ._complete import complete_streams

if TYPE_CHECKING:
    from ..stats import StreamSummary

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


class StreamsOutput(str, Enum):
    """Output formats of ``evlog streams``."""

    auto = "auto"
    ndjson = "ndjson"
    json = "json"
    msgpack = "msgpack"
    table = "table"


class SortKey(str, Enum):
    """Orders of ``evlog streams``."""

    name = "name"
    version = "version"
    last = "last"


@app.command(
    help=(
        "List the streams with their versions and their first and last seq and time.\n\n"
        "A stream's version is its number of events. The list is read from the stream index, not from "
        "the events. In name order (the default) "
        "streams are printed as they are read, in constant memory; --sort version puts the streams "
        "with the most events first, --sort last the most recently active ones. On a terminal as a "
        'table; piped, as NDJSON ({"stream", "version", "first_seq", "last_seq", "first_ts", "last_ts"} '
        "per line); -o json prints one array.\n\n"
        "Examples:\n\n"
        "  evlog streams 'account-*'\n\n"
        "  evlog streams --sort last -n 10\n\n"
        "  evlog streams --sort version -n 1 | jq .stream"
    ),
)
def streams(
    prefix: Annotated[
        str | None,
        typer.Argument(metavar="[PREFIX]", help="Only streams whose names start with PREFIX (a trailing * too).",
                       autocompletion=complete_streams),
    ] = None,
    sort: Annotated[
        SortKey,
        typer.Option("--sort", help="name; version: the most events first; last: the most recently appended to first."),
    ] = SortKey.name,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=0, help="At most N streams.")] = None,
    output: Annotated[
        StreamsOutput, typer.Option("--output", "-o", help="auto: a table on a terminal, NDJSON when piped.")
    ] = StreamsOutput.auto,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from ..log import Log
    from ..stats import stream_summaries

    with Log(log) as opened:
        summaries = stream_summaries(opened, prefix, sort=sort.value, limit=limit)
        chosen = output
        if chosen is StreamsOutput.auto:
            chosen = StreamsOutput.table if stdout_is_terminal() else StreamsOutput.ndjson
        if chosen is StreamsOutput.table:
            write_table(summaries, head=opened.head())
        elif chosen is StreamsOutput.json:
            write_json(summaries, pretty=stdout_is_terminal())
        elif chosen is StreamsOutput.msgpack:
            write_msgpack(summaries)
        else:
            write_ndjson(summaries)


def write_ndjson(summaries: Iterable[StreamSummary]) -> None:
    import orjson

    out = binary_stdout()
    for summary in summaries:
        out.write(orjson.dumps(summary.to_dict(), option=orjson.OPT_APPEND_NEWLINE))
    out.flush()


def write_msgpack(summaries: Iterable[StreamSummary]) -> None:
    """One msgpack map per stream."""
    import msgpack

    out = binary_stdout()
    pack = msgpack.Packer(use_bin_type=True).pack
    for summary in summaries:
        out.write(pack(summary.to_dict()))
    out.flush()


def write_json(summaries: Iterable[StreamSummary], *, pretty: bool) -> None:
    """One JSON array, written element by element."""
    import orjson

    out = binary_stdout()
    option = orjson.OPT_INDENT_2 if pretty else 0
    count = 0
    out.write(b"[")
    for summary in summaries:
        out.write(b",\n" if count else b"\n")
        out.write(orjson.dumps(summary.to_dict(), option=option))
        count += 1
    out.write(b"\n]\n" if count else b"]\n")
    out.flush()


def write_table(summaries: Iterable[StreamSummary], *, head: int, console: Any = None) -> int:
    """Streams as aligned rows, printed as they come; the widths follow the console and the log's last seq.

    Rows never wrap: on a console too narrow for the fixed columns they are cut with an ellipsis.
    """
    from rich.text import Text

    from ..output import fit_cells, make_console
    from ..textsafe import visible

    if console is None:
        console = make_console(soft_wrap=False)
    width = console.width
    digits = len(str(max(head, 1)))
    version_w, first_w, last_w = max(digits, 7), max(digits, 9), max(digits, 8)
    # Narrower terminals lose the seconds, then the year (as replay's short times do).
    time_format = "%Y-%m-%d %H:%M:%S" if width >= 100 else "%Y-%m-%d %H:%M" if width >= 80 else "%m-%d %H:%M"
    ts_w = len(time.strftime(time_format, time.gmtime(0)))
    fixed = version_w + first_w + last_w + 2 * ts_w + 5  # five single-space gaps
    stream_w = max(8, min(width - fixed, 48))

    count = 0
    for summary in summaries:
        if count == 0:
            title = Text(style="bold")
            title.append(fit_cells("stream", stream_w) + " " + "version".rjust(version_w) + " ")
            title.append("first seq".rjust(first_w) + " " + "last seq".rjust(last_w) + " ")
            zone = " (local)" if ts_w >= len("first (local)") else ""
            title.append(fit_cells("first" + zone, ts_w) + " " + "last" + zone)
            console.print(title, no_wrap=True, overflow="ellipsis", crop=True)
        line = Text()
        line.append(fit_cells(visible(summary.stream), stream_w) + " ", style="magenta")
        line.append(str(summary.version).rjust(version_w) + " ", style="bold")
        line.append(str(summary.first_seq).rjust(first_w) + " " + str(summary.last_seq).rjust(last_w) + " ",
                    style="cyan")
        line.append(local_time(summary.first_ts, time_format) + " " + local_time(summary.last_ts, time_format),
                    style="dim")
        console.print(line, no_wrap=True, overflow="ellipsis", crop=True)
        count += 1
    if count == 0:
        console.print("No streams." if head else "No streams: the log is empty.")
    return count
