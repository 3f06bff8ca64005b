"""``evlog export``: the events themselves into a SQL table, one row each, exactly once."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import DEFAULT_LOG, DebugOption, LogOption, NoColorOption, Output
from ._fold_options import StreamOption, TypeOption, WhereOption
from ._sync import FollowOption, IntoOption, RebuildOption, SyncOutputOption, WaitOption

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


@app.command(
    help=(
        "Copy the events into a SQL table, one row each, exactly once.\n\n"
        "Into SQLite or PostgreSQL. Columns: seq (the primary key), ts (RFC 3339 UTC text, as "
        "evlog prints it), type, stream, version, id, data and meta (JSON), with indexes on type "
        "and stream, so that sqlite3, psql, Datasette or Metabase can query the log. -s, -t and "
        "--where choose the events; a table exported with other filters is rebuilt and swapped in "
        "by one transaction. Rows and the checkpoint are committed together: killed at any moment, "
        "a restart goes on from the last commit. With -f it stays and exports events as they are "
        "appended; SIGTERM and Ctrl-C commit what was read, then exit 143 and 130.\n\n"
        "Examples:\n\n"
        "  evlog export --into sqlite:///events.db\n\n"
        "  evlog export --into sqlite:///orders.db -t 'order.*' --table orders -f\n\n"
        "  evlog export --into postgresql://app@localhost/shop -s 'account-*' --where 'd.amount > 100'"
    ),
)
def export(
    into: IntoOption,
    follow: FollowOption = False,
    stream: StreamOption = None,
    event_type: TypeOption = None,
    where: WhereOption = None,
    table: Annotated[str, typer.Option("--table", metavar="NAME", help="The table's name.")] = "events",
    rebuild: RebuildOption = False,
    wait: WaitOption = False,
    output: SyncOutputOption = Output.auto,
    no_color: NoColorOption = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .._tuning import for_streaming
    from ..log import Log
    from ..sinks.export import export_events
    from ._sync import finish, stop_on_signals, waiting, warn

    for_streaming()
    from ._progress import progress

    # A bar for a long catch-up on a terminal; none with -f, whose catch-up never ends.
    with Log(log) as opened, stop_on_signals() as stop, \
            progress("exporting", "exported", enabled=not follow) as meter:
        report = export_events(
            opened, into, streams=stream or (), types=event_type or (), where=where, follow=follow, table=table,
            rebuild=rebuild, wait=wait, stop=stop, on_warning=warn, on_wait=waiting, progress=meter,
        )
    finish(report, stop, output)
