"""``evlog info``: what a log holds, for people (a table) and scripts (``-o json``)."""

from typing import Annotated, Any

import typer

from ._common import (
    DEFAULT_LOG,
    DebugOption,
    LogOption,
    NoColorOption,
    Output,
    binary_stdout,
    stdout_is_terminal,
)

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _draw(facts: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from ..output import make_console

    console = make_console()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("path", facts["path"]),
        ("size", _size(facts["size_bytes"])),
        ("events", str(facts["events"])),
        ("first", f"seq {facts['first_seq']}  {facts['first_ts']}" if facts["events"] else "-"),
        ("last", f"seq {facts['last_seq']}  {facts['last_ts']}" if facts["events"] else "-"),
        ("streams", str(facts["streams"])),
        ("format", str(facts["format"])),
        ("log id", facts["log_id"]),
        ("created", facts["created"] or "-"),
        ("head hash", facts["head_hash"]),
    ]
    for name, value in rows:
        table.add_row(name, Text(value))  # Text, not markup: a path or type may hold '[...]'
    console.print(table)
    if facts["types"]:
        types = Table(title=None, box=None, pad_edge=False)
        types.add_column("type", style="bold green")
        types.add_column("events", justify="right")
        for name, count in facts["types"].items():
            types.add_row(Text(name), str(count))
        console.print()
        console.print(types)


@app.command(
    help=(
        "Describe the log: counts, first and last event, streams, types and head hash.\n\n"
        "Shows the path, the size on disk, the number of events, the first and last seq and "
        "time, the number of streams, each event type with its count, the format, the log id "
        "and the head of the hash chain. Publish the head hash: anyone can later check that "
        "the history up to it is unchanged (evlog verify recomputes it).\n\n"
        "Examples:\n\n"
        "  evlog info\n\n"
        "  evlog info -o json | jq .events\n\n"
        "  evlog info --log /backups/events.lmdb"
    ),
)
def info(
    output: Annotated[
        Output, typer.Option("--output", "-o", help="auto: a table on a terminal, JSON when piped.")
    ] = Output.auto,
    no_color: NoColorOption = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    import orjson

    from ..log import Log

    with Log(log) as opened:
        facts = opened.info()
    if output is Output.table or (output is Output.auto and stdout_is_terminal()):
        _draw(facts)
        return
    option = orjson.OPT_APPEND_NEWLINE
    if stdout_is_terminal():
        option |= orjson.OPT_INDENT_2
    binary_stdout().write(orjson.dumps(facts, option=option))
