"""What ``projection sync`` and ``export`` share: options, stopping on signals, and the report.

Signals do not raise here. SIGTERM and Ctrl-C only ask the sync to stop
(:class:`StopRequest`, polled by the engine between spans of events and
while it waits), so it commits what it folded and exits 143 or 130 with the
table's seq in the message; a fold is never cut half-way through an event.
A second signal gives up at once (exit 130): what was not committed is
simply done again by the next run, which the checkpoint makes exactly once.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import Interrupted
from ._common import Output, print_records

if TYPE_CHECKING:
    from types import FrameType

    from ..sinks.sync import SyncReport

IntoOption = Annotated[
    str,
    typer.Option("--into", metavar="URL",
                 help="The database: sqlite:///relative.db, sqlite:////absolute.db or postgresql://user@host/db."),
]
FollowOption = Annotated[
    bool, typer.Option("--follow", "-f", help="Stay and keep the table current as events are appended.")
]
RebuildOption = Annotated[
    bool, typer.Option("--rebuild", help="Build the table anew and swap it in, even if nothing changed.")
]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="If another process syncs the same table, wait for it instead of exit 1.")
]
SyncOutputOption = Annotated[
    Output,
    typer.Option("--output", "-o", help="The report at the end. auto: a table on a terminal, NDJSON when piped."),
]
REPORT_COLUMNS = ["table", "source", "last_seq", "lag", "rows_written", "rows_deleted", "rebuilt"]
_SIGNALS: dict[int, tuple[str, int]] = {signal.SIGINT: ("Ctrl-C", 130), signal.SIGTERM: ("SIGTERM", 143)}


class StopRequest:
    """Set by SIGINT or SIGTERM; the sync polls it (``stop()``)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.signal is not None


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Ask the sync to stop on the first SIGINT/SIGTERM, give up on the second."""
    request = StopRequest()

    def handler(signum: int, frame: FrameType | None) -> None:
        if request.signal is not None:
            raise KeyboardInterrupt
        request.signal = signum

    previous = {number: signal.signal(number, handler) for number in _SIGNALS}
    try:
        yield request
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def finish(report: SyncReport, request: StopRequest, output: Output) -> None:
    """Print the report; a stop asked by a signal then ends with its exit status and where the table is."""
    from ..textsafe import visible

    if report.locked:
        print_records([report.record()], output, REPORT_COLUMNS, noun="syncs")
    if request.signal is not None:
        name, code = _SIGNALS.get(request.signal, ("a signal", 130))
        if not report.locked:
            raise Interrupted(
                f"interrupted by {name} while waiting for another sync of the table {visible(report.table)!r}; "
                "nothing was written", exit_code=code,
            )
        raise Interrupted(
            f"interrupted by {name}: the table {visible(report.table)!r} of {visible(report.target)} is at seq "
            f"{report.last_seq}, all of it committed",
            exit_code=code,
        )


def warn(message: str) -> None:
    from ._common import note

    note(f"warning: {message}")


def waiting(message: str) -> None:
    from ._common import note

    note(f"waiting (--wait): {message}")
