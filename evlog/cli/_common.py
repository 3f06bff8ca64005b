"""Options shared by every command, and small helpers for terminals and streams."""

from __future__ import annotations

import os
import sys
from enum import Enum
from typing import Annotated, BinaryIO

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

DebugOption = Annotated[
    bool,
    typer.Option("--debug", help="Show the full traceback of an error.", hidden=False),
]


class Output(str, Enum):
    """Output formats of commands that print events."""

    auto = "auto"
    ndjson = "ndjson"
    json = "json"
    msgpack = "msgpack"
    table = "table"


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


def note(message: str) -> None:
    """A diagnostic line on stderr, prefixed like every evlog message."""
    print(f"evlog: {message}", file=sys.stderr)
