"""``evlog backup``: a consistent copy of a log while other processes append to it (from a server: a local copy)."""

from __future__ import annotations

import signal
from enum import Enum
from typing import Annotated

import typer

from ._common import DEFAULT_LOG, DebugOption, LogOption, binary_stdout

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


def _terminated(signum: int, frame: object) -> None:
    from ..errors import Interrupted

    raise Interrupted("interrupted by SIGTERM; the partial copy was removed", exit_code=143)


class BackupOutput(str, Enum):
    auto = "auto"
    json = "json"


@app.command(
    help=(
        "Copy the log consistently to a new directory while it is in use.\n\n"
        "The copy in DEST, a new or empty directory, is one consistent snapshot: other "
        "processes may go on appending meanwhile. Prints the number of events and the head hash "
        "of the copy, which is a complete log of its own.\n\n"
        "DEST is never overwritten: a file, or a directory with anything in it, is refused.\n\n"
        "A log on a server (nats://) is copied into DEST as a new local log, event by event: the same "
        "records, head hash and log id, with its indexes built as appending builds them.\n\n"
        "Examples:\n\n"
        "  evlog backup /backups/events-$(date +%F)\n\n"
        "  evlog backup --compact small.lmdb && evlog verify --log small.lmdb\n\n"
        "  evlog backup -o json /backups/today | jq .events"
    ),
)
def backup(
    dest: Annotated[str, typer.Argument(metavar="DEST", help="The directory to create (or an empty one).")],
    compact: Annotated[
        bool, typer.Option("--compact", help="Leave out free pages: a smaller copy that takes longer.")
    ] = False,
    output: Annotated[
        BackupOutput, typer.Option("--output", "-o", help="auto: one line of text; json: the facts as JSON.")
    ] = BackupOutput.auto,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from ..backends import is_url
    from ..backup import backup as copy_log
    from ..log import Log
    from ._progress import progress

    # A copy from a server is written event by event, and counted so; LMDB copies pages.
    remote = is_url(log)
    unit = "events" if remote else "bytes"
    # A copy from a server that SIGTERM cut short would be a sound log with fewer events: it is
    # removed as after Ctrl-C. (LMDB copies in one call that a handler could only interrupt after.)
    previous = signal.signal(signal.SIGTERM, _terminated) if remote else None
    try:
        with Log(log) as opened, progress("backing up", "copied", unit=unit) as meter:
            facts = copy_log(opened, dest, compact=compact, progress=meter)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if output is BackupOutput.json:
        import orjson

        binary_stdout().write(orjson.dumps(facts, option=orjson.OPT_APPEND_NEWLINE))
        return
    print(f"{facts['events']} events copied to {dest}; head hash {facts['head_hash']}")
