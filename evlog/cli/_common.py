"""Options shared by every command, and small helpers for terminals and streams."""

from __future__ import annotations

import os
import sys
import time
from enum import Enum
from typing import Annotated, Any, BinaryIO

import typer

LogOption = Annotated[
    str,
    typer.Option(
        "--log",
        "-L",
        envvar="EVLOG_PATH",
        show_envvar=True,
        help="The log (an LMDB directory).",
        metavar="PATH",
    ),
]
DEFAULT_LOG = "events.lmdb"

POSITION_HELP = (
    "seq, -N from the end, a date/time (2026-11-26T10:00, ...Z; local without a zone), "
    "-15m/-2h/-7d, now, today, yesterday, or id:KEY"
)
FromOption = Annotated[
    str | None, typer.Option("--from", metavar="POS", help=f"First position (inclusive): {POSITION_HELP}.")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", metavar="POS", help="Last position (inclusive), same forms as --from.")
]

DebugOption = Annotated[
    bool,
    typer.Option("--debug", help="Show the full traceback of an error.", hidden=False),
]


def _no_color(value: bool) -> None:
    if value:
        from ..output import disable_color

        disable_color()


NoColorOption = Annotated[
    bool,
    typer.Option("--no-color", callback=_no_color, is_eager=True,
                 help="Draw tables and charts without colour (as does NO_COLOR=1)."),
]


class Output(str, Enum):
    """Output formats of commands that print events."""

    auto = "auto"
    ndjson = "ndjson"
    json = "json"
    msgpack = "msgpack"
    table = "table"


OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="auto: a table on a terminal, NDJSON when piped.")
]
TemplateOption = Annotated[
    str | None,
    typer.Option("--template", metavar="FORMAT", help="One line per event, e.g. '{seq} {type} {data[amount]}'."),
]


def print_records(
    records: list[dict[str, Any]], output: Output, columns: list[str], *, noun: str, wrap: tuple[str, ...] = ()
) -> None:
    """Listings (groups, snapshots, projections): a table on a terminal, NDJSON when piped.

    ``-o json`` is one array, ``-o msgpack`` one map per record. An empty table
    is a sentence (``No snapshots.``), not a lone header. In a narrow terminal
    the cells of the ``wrap`` columns wrap, the others are cut with an ellipsis.
    """
    if draws_table(output):
        from rich.cells import cell_len
        from rich.table import Table
        from rich.text import Text

        from ..output import make_console

        if not records:
            make_console().print(Text(f"No {noun}."))
            return
        table = Table(box=None, header_style="bold")
        # The first column names the thing (a group, a snapshot's hash) that other
        # commands take: it is never cut, the others give way.
        widest = max(cell_len(_cell(record[columns[0]])) for record in records)
        table.add_column(columns[0], no_wrap=True, min_width=widest)
        for column in columns[1:]:
            table.add_column(column, no_wrap=column not in wrap, overflow="fold" if column in wrap else "ellipsis")
        for record in records:
            # Text, not markup: a name such as '[red]x' is shown as it is written.
            table.add_row(*(Text(_cell(record[column])) for column in columns))
        make_console().print(table)
        return
    import orjson

    out = binary_stdout()
    if output is Output.json:
        pretty = orjson.OPT_INDENT_2 if stdout_is_terminal() else 0
        out.write(orjson.dumps(records, option=orjson.OPT_APPEND_NEWLINE | pretty))
    elif output is Output.msgpack:
        import msgpack

        for record in records:
            out.write(msgpack.packb(record, use_bin_type=True))
    else:
        for record in records:
            out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))


def local_time(ns: int, time_format: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A ts in nanoseconds as local time, for tables (JSON keeps RFC 3339 UTC)."""
    return time.strftime(time_format, time.localtime(ns // 1_000_000_000))


def draws_table(output: Output) -> bool:
    """Whether ``output`` means a drawn table here: asked for, or ``auto`` on a terminal."""
    return output is Output.table or (output is Output.auto and stdout_is_terminal())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    import orjson

    return orjson.dumps(value).decode()


def stdout_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdout.fileno())
    except (OSError, ValueError):
        return False


def stdin_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (OSError, ValueError):
        return False


def binary_stdout() -> BinaryIO:
    """Stdout as bytes (flushing any text written before)."""
    sys.stdout.flush()
    return sys.stdout.buffer


def counted(count: int, noun: str) -> str:
    """``1 snapshot``, ``2 snapshots``, ``1,000 events``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def note(message: str) -> None:
    """A diagnostic line on stderr, prefixed like every evlog message."""
    print(f"evlog: {message}", file=sys.stderr)
