"""Options shared by every command, and small helpers for terminals and streams.

Every human-readable line built here from a log's text (listings, notes) goes
through :func:`evlog.textsafe.visible`, and JSON written to a terminal through
:func:`evlog.textsafe.json_for_terminal`: a log from someone else must not
drive the terminal that shows it.
"""

from __future__ import annotations

import os
import sys
import time
from enum import Enum
from typing import Annotated, Any, BinaryIO

import typer

from ..errors import UsageError

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
    typer.Option(
        "--template", metavar="FORMAT",
        help="One line per event, e.g. '{seq} {type} {data[amount]}' or '{ts:%H:%M:%S} {ts:epoch_ms} {ts_local}'.",
    ),
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
        from ..textsafe import visible

        if not records:
            make_console().print(Text(f"No {noun}."))
            return
        table = Table(box=None, header_style="bold")
        # The first column names the thing (a group, a snapshot's hash) that other
        # commands take: it is never cut, the others give way.
        widest = max(cell_len(visible(_cell(record[columns[0]]))) for record in records)
        table.add_column(columns[0], no_wrap=True, min_width=widest)
        for column in columns[1:]:
            table.add_column(column, no_wrap=column not in wrap, overflow="fold" if column in wrap else "ellipsis")
        for record in records:
            # Text, not markup: a name such as '[red]x' is shown as it is written.
            table.add_row(*(Text(visible(_cell(record[column]))) for column in columns))
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
    """Stdout as bytes (flushing any text written before).

    On a terminal, what is written is JSON or text already made visible, and
    goes through :func:`evlog.textsafe.json_for_terminal`, which leaves JSON's
    values exact and shows the characters a terminal would act on. Binary
    output never gets here on a terminal: ``-o msgpack`` is refused there.
    """
    sys.stdout.flush()
    if stdout_is_terminal():
        return _TerminalOutput(sys.stdout.buffer)  # type: ignore[return-value]  # write and flush suffice
    return sys.stdout.buffer


class _TerminalOutput:
    """A binary stdout on a terminal: JSON's raw C1, format and separator characters escaped."""

    def __init__(self, raw: BinaryIO) -> None:
        import codecs

        from ..textsafe import json_text_for_terminal

        self.raw = raw
        self.escape = json_text_for_terminal
        # A character split between two writes is kept back until it is whole.
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")

    def write(self, data: bytes) -> int:
        if data.isascii() and not self.decoder.getstate()[0]:
            return self.raw.write(data)
        text = self.decoder.decode(data)
        self.raw.write(self.escape(text).encode("utf-8", "surrogateescape"))
        return len(data)

    def flush(self) -> None:
        self.raw.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def refuse_binary_on_terminal(ctx: Any, param: Any, value: Any) -> Any:
    """An ``--output`` callback: ``-o msgpack`` to a terminal is refused (as ``gzip`` refuses), exit 2.

    Binary on a terminal is never what was meant, and its bytes can drive the
    terminal; a pipe or a file takes it (``| cat`` forces it, should anyone want to).
    """
    if getattr(value, "value", value) == "msgpack" and stdout_is_terminal():
        from typer._click.exceptions import UsageError

        command = ctx.command_path if ctx is not None else "evlog"
        raise UsageError(
            f"-o msgpack writes binary, which is not written to a terminal; "
            f"pipe it or redirect it ({command} -o msgpack > events.msgpack)",
            ctx,
        )
    return value


def counted(count: int, noun: str) -> str:
    """``1 snapshot``, ``2 snapshots``, ``1,000 events``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def note(message: str) -> None:
    """A diagnostic line on stderr, prefixed like every evlog message; names from a log are made visible."""
    from ..textsafe import visible_lines

    for line in visible_lines(message):
        print(f"evlog: {line}", file=sys.stderr)


_SIZE_SHIFTS = {"": 0, "K": 10, "M": 20, "G": 30}


def parse_size(text: str, option: str) -> int:
    """A size option: bytes, or a number with K, M or G (powers of 1024, ``B``/``iB`` allowed): ``64M``."""
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = cleaned[-1:] if cleaned[-1:] in ("K", "M", "G") else ""
    number = cleaned[: len(cleaned) - len(unit)]
    if not number.isdigit():
        raise UsageError(f"{option} {text!r} is not a size; give bytes, or a number with K, M or G (1024s), "
                         "as in 64M")
    return int(number) << _SIZE_SHIFTS[unit]
