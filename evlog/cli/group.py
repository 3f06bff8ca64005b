"""``evlog group``: the durable groups of ``evlog tail --group``: positions, acknowledgements, dead letters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from ._common import (
    DEFAULT_LOG,
    DebugOption,
    LogOption,
    NoColorOption,
    Output,
    OutputOption,
    draws_table,
    note,
    print_records,
)
from ._complete import complete_groups

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "Durable consumer groups: positions, acknowledgements, dead letters.\n\n"
        "A group is a named position kept in the log by evlog tail --group NAME: the last event whose "
        "work is known to be done (acknowledged by tail --exec, or by group ack). Events its --exec "
        "command kept failing on are its dead letters.\n\n"
        "Examples:\n\n"
        "  evlog group list\n\n"
        "  evlog group dead billing"
    ),
)


@app.command(
    "list",
    help=(
        "List the groups with their position and lag.\n\n"
        "The position is the last seq a group acknowledged; the lag is how many events it is "
        "behind the head of the log; dead is how many dead letters it keeps. A table on a terminal, "
        "NDJSON when piped.\n\n"
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
    from .. import groups
    from ..log import Log

    with Log(log) as opened:
        store = opened.backend().groups()
        head = opened.head()
        found = groups.list_groups(store)
    shown = _shown(output)
    records = [{"group": shown(group.name), "position": group.position, "lag": max(head - group.position, 0),
                "dead": dead} for group, dead in found]
    print_records(records, output, ["group", "position", "lag", "dead"], noun="groups")


@app.command(
    help=(
        "Move a group so that its next event is the one at --to.\n\n"
        "--to takes every position form (seq, -N, a time, id:KEY). A position past the head "
        "means the next event to be appended. A group that does not exist, or that is being "
        "followed right now, is refused (stop its follower first). Dead letters stay.\n\n"
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
    from .. import groups
    from ..log import Log

    with Log(log) as opened:
        store = opened.backend(write=True).groups()
        groups.require_group(store, name)
        # Past the head would skip events not appended yet: the next one is the furthest.
        seq = min(max(opened.resolve(to), 1), opened.head() + 1)
        with store.hold(name):  # not while a follower of the group is running
            groups.require_group(store, name)  # removed meanwhile?
            groups.set_group_position(store, name, seq - 1)
    note(f"group {_quoted(name)} will deliver from seq {seq} on")


@app.command(
    help=(
        "Forget a group, its position and its dead letters.\n\n"
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
    from .. import groups
    from ..log import Log

    with Log(log) as opened:
        store = opened.backend(write=True).groups()
        groups.require_group(store, name)  # before the lock, which would leave a file behind
        with store.hold(name) as lock:
            found = groups.remove_group(store, name)
            lock.release(remove=True)  # the group is gone: its lock file too
        if not found:
            groups.require_group(store, name)  # removed meanwhile: the same message
    note(f"removed group {_quoted(name)}")


@app.command(
    help=(
        "Acknowledge events: the work on them is done.\n\n"
        "For programs that read a plain `evlog tail --group NAME` (which moves nothing itself): "
        "the group's position moves up to the highest SEQ given (never back), and each SEQ that is "
        "a dead letter of the group is removed from its dead letters. A seq past the last event is "
        "refused. It works while the group is being followed.\n\n"
        "Examples:\n\n"
        "  evlog group ack billing 42\n\n"
        "  evlog tail --group billing | while read -r line; do ./bill \"$line\" && "
        "evlog group ack billing \"$(jq .seq <<<\"$line\")\"; done"
    ),
)
def ack(
    name: Annotated[str, typer.Argument(help="The group.", autocompletion=complete_groups)],
    seqs: Annotated[list[int], typer.Argument(metavar="SEQ...", min=1, help="The seqs whose work is done.")],
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import groups
    from ..errors import UsageError
    from ..log import Log

    with Log(log) as opened:
        store = opened.backend(write=True).groups()
        head = opened.head()
        beyond = [seq for seq in seqs if seq > head]
        if beyond:
            raise UsageError(f"seq {beyond[0]} is past the last event of the log ({head}); nothing acknowledged")
        groups.acknowledge(store, name, seqs)


@app.command(
    help=(
        "List a group's dead letters: events its --exec command kept failing on.\n\n"
        "For each: the seq, the event's type and stream, how many attempts failed, the command's "
        "last exit status (negative: killed by that signal), when it was parked or last tried, and "
        "whether group retry queued it. A table on a terminal, NDJSON when piped.\n\n"
        "Examples:\n\n"
        "  evlog group dead billing\n\n"
        "  evlog group dead billing -o ndjson | jq .seq"
    ),
)
def dead(
    name: Annotated[str, typer.Argument(help="The group.", autocompletion=complete_groups)],
    output: OutputOption = Output.auto,
    no_color: NoColorOption = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import groups
    from ..timefmt import format_ts
    from ._common import local_time

    with _opened(log) as opened:
        store = opened.backend().groups()
        groups.require_group(store, name)
        letters = groups.dead_letters(store, name)
        events = {row[0]: row[1] for letter in letters for row in opened.backend().rows(letter.seq, letter.seq)}
    table = draws_table(output)
    shown = _shown(output)
    records = []
    for letter in letters:
        envelope = events.get(letter.seq)
        records.append({
            "seq": letter.seq,
            "type": shown(envelope[3]) if envelope else None,
            "stream": shown(envelope[4]) if envelope and envelope[4] is not None else None,
            "attempts": letter.attempts,
            "status": letter.status,
            "time": local_time(letter.time) if table else format_ts(letter.time),
            "queued": letter.queued,
        })
    print_records(records, output, ["seq", "type", "stream", "attempts", "status", "time", "queued"],
                  noun="dead letters")


@app.command(
    help=(
        "Queue dead letters to be delivered again.\n\n"
        "Without SEQ every dead letter of the group is queued. The next `evlog tail --group NAME` "
        "delivers queued dead letters before new events (a follower that is running does so at once): "
        "with --exec, one that CMD now handles is removed from the dead letters, one that fails again "
        "stays, with its attempts added up; without --exec, `group ack NAME SEQ` removes it.\n\n"
        "Examples:\n\n"
        "  evlog group retry billing\n\n"
        "  evlog group retry billing 17 42"
    ),
)
def retry(
    name: Annotated[str, typer.Argument(help="The group.", autocompletion=complete_groups)],
    seqs: Annotated[list[int] | None, typer.Argument(metavar="[SEQ]...", help="Only these dead letters.")] = None,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import groups

    with _opened(log) as opened:
        store = opened.backend(write=True).groups()
        queued = groups.requeue(store, name, seqs or ())
    if not queued:
        note(f"group {_quoted(name)} has no dead letters")
        return
    note(f"group {_quoted(name)}: {len(queued)} dead letter{'s' if len(queued) != 1 else ''} queued; "
         f"the next evlog tail --group {groups.shell_word(name)} delivers them first")


def _opened(log: str) -> Any:
    from ..log import Log

    return Log(log)


def _quoted(name: str) -> str:
    from ..textsafe import visible

    return repr(visible(name))


def _shown(output: Output) -> Callable[[str], str]:
    """Names from the log as a table shows them (escaped), or exactly as they are (NDJSON, JSON)."""
    if not draws_table(output):
        return lambda text: text
    from ..textsafe import visible

    return visible
