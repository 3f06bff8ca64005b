"""``evlog group``: the durable positions of ``evlog tail --group`` followers."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import (
    DEFAULT_LOG,
    DebugOption,
    LogOption,
    NoColorOption,
    Output,
    OutputOption,
    note,
    print_records,
)
from ._complete import complete_groups

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "Durable follower groups: list their positions and lag, reset, remove.\n\n"
        "A group is a named position kept in the log by evlog tail --group NAME: each run "
        "resumes after the last event the group wrote out.\n\n"
        "Examples:\n\n"
        "  evlog group list\n\n"
        "  evlog group reset billing --to 1\n\n"
        "  evlog group rm billing"
    ),
)


@app.command(
    "list",
    help=(
        "List the groups with their position and lag.\n\n"
        "The position is the last seq a group delivered; the lag is how many events it is "
        "behind the head of the log. A table on a terminal, NDJSON when piped.\n\n"
        "Examples:\n\n"
        "  evlog group list\n\n"
        "  evlog group list -o ndjson | jq 'select(.lag > 1000)'"
    ),
)
def list_(
    output: OutputOption = Output.auto,
    no_color: NoColorOption = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import follow, scan
    from ..log import Log

    with Log(log) as opened:
        store = opened.store()
        head = scan.head_seq(store)
        groups = follow.list_groups(store)
    records = [{"group": name, "position": position, "lag": head - position} for name, position in groups]
    print_records(records, output, ["group", "position", "lag"], noun="groups")


@app.command(
    help=(
        "Move a group so that its next event is the one at --to.\n\n"
        "--to takes every position form (seq, -N, a time, id:KEY). A position past the head "
        "means the next event to be appended. A group that is being followed right now is "
        "refused: stop its follower first.\n\n"
        "Examples:\n\n"
        "  evlog group reset billing --to 1            # deliver everything again\n\n"
        "  evlog group reset billing --to -2h"
    ),
)
def reset(
    name: Annotated[str, typer.Argument(help="The group.", autocompletion=complete_groups)],
    to: Annotated[str, typer.Option("--to", metavar="POS", help="The position of the next event to deliver.")],
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import follow, scan
    from ..log import Log

    with Log(log) as opened:
        store = opened.store(write=True)
        # Past the head would skip events not appended yet: the next one is the furthest.
        seq = min(max(opened.resolve(to), 1), scan.head_seq(store) + 1)
        with follow.GroupLock(log, name):  # not while a follower of the group is running
            follow.set_group_position(store, name, seq - 1)
    note(f"group {name!r} will deliver from seq {seq} on")


@app.command(
    help=(
        "Forget a group and its position.\n\n"
        "The next evlog tail --group NAME starts afresh (at --from, else at the first event).\n\n"
        "Examples:\n\n"
        "  evlog group rm billing\n\n"
        "  evlog group list -o ndjson | jq -r .group | xargs -n1 evlog group rm"
    ),
)
def rm(
    name: Annotated[str, typer.Argument(help="The group.", autocompletion=complete_groups)],
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import follow
    from ..errors import UsageError
    from ..log import Log

    with Log(log) as opened:
        store = opened.store(write=True)
        with follow.GroupLock(log, name) as lock:
            found = follow.remove_group(store, name)
            lock.release(remove=True)  # the group is gone: its lock file too
        if not found:
            raise UsageError(f"no group named {name!r} (see evlog group list)")
    note(f"removed group {name!r}")
