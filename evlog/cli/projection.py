"""``evlog projection``: named folds (CQRS read models) whose state can be asked for at any point."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ..snapshot_limits import DEFAULT_SNAPSHOT_EVERY
from ._common import (
    DEFAULT_LOG,
    DebugOption,
    LogOption,
    NoColorOption,
    Output,
    OutputOption,
    counted,
    draws_table,
    note,
    print_records,
)
from ._complete import complete_projections
from ._fold_options import (
    ByOption,
    FoldFileOption,
    FoldOption,
    FoldTimeoutOption,
    InitOption,
    OnOption,
    StreamOption,
    TypeOption,
    WhereOption,
    fold_timeout,
    print_fold,
    refuse_python_fold_file,
    spec_from_options,
)
from ._snapshot_limits import DEFAULT_SNAPSHOT_MAX_SIZE_TEXT, ReaderSnapshotEveryOption, SnapshotMaxSizeOption
from ._sync import FollowOption, IntoOption, RebuildOption, SyncOutputOption, WaitOption

if TYPE_CHECKING:
    from ..fold import FoldSpec

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "Named folds (read models): add, list, show at any position, sync to SQL, remove.\n\n"
        "A projection is a fold definition stored in the log under a name, the read model of "
        "CQRS. Its state can be asked for at any position; snapshots saved as it folds keep "
        "each question cheap.\n\n"
        "Examples:\n\n"
        "  evlog projection add counts --fold 's[e.type] = s.get(e.type, 0) + 1'\n\n"
        "  evlog projection show counts --at yesterday\n\n"
        "  evlog projection list"
    ),
)


@app.command(
    help=(
        "Store a fold definition under NAME.\n\n"
        "Takes the fold options of evlog replay (--fold, --on, --init, --by, --where, "
        "--fold-file, --stream, --type) and --from. Nothing is folded now: evlog projection "
        "show folds when asked, saving a snapshot every --snapshot-every events: a wish stored with "
        "the projection, which whoever runs show can make rarer (their own --snapshot-every), never "
        "more frequent.\n\n"
        "Examples:\n\n"
        "  evlog projection add balances --by stream --init '{\"balance\": 0}' "
        "--on deposit 's.balance += d.amount' --on withdraw 's.balance -= d.amount'\n\n"
        "  evlog projection add counts --replace --fold 's[e.type] = s.get(e.type, 0) + 1'"
    ),
)
def add(
    name: Annotated[str, typer.Argument(help="The projection's name.")],
    fold: FoldOption = None,
    on: OnOption = None,
    init: InitOption = None,
    by: ByOption = None,
    where: WhereOption = None,
    fold_file: FoldFileOption = None,
    stream: StreamOption = None,
    event_type: TypeOption = None,
    from_: Annotated[str | None, typer.Option("--from", metavar="POS", help="Where the fold starts.")] = None,
    snapshot_every: Annotated[
        int, typer.Option("--snapshot-every", metavar="N", min=1, help="Save a snapshot every N events while folding "
                     "(the reader's floor may make it rarer).")
    ] = 50_000,
    replace: Annotated[bool, typer.Option("--replace", help="Redefine an existing projection (drops its snapshots).")]
    = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    import time

    from .. import snapshots
    from ..errors import UsageError
    from ..log import Log

    if not name or any(ord(char) < 32 for char in name):
        raise UsageError("a projection needs a name without control characters")
    spec = spec_from_options(fold=fold, on=on, init=init, by=by, where=where, fold_file=fold_file,
                             streams=stream, types=event_type)
    if not spec.is_fold():
        raise UsageError("a projection is a fold: give --fold, --on or --fold-file")
    refuse_python_fold_file(spec, "projection add")
    with Log(log) as opened:
        tables = opened.backend(write=True)
        projection = snapshots.Projection(name, spec, from_, snapshot_every, time.time_ns())
        replaced = snapshots.add_projection(tables, projection, replace=replace)
        if replaced is not None:
            dropped = snapshots.drop_digest(tables, replaced.spec.digest(opened.resolve(replaced.from_)))
            note(f"replaced projection {name!r}; dropped {counted(dropped, 'snapshot')} of its old definition")


@app.command(
    "list",
    help=(
        "List projections: name, definition, snapshot interval.\n\n"
        "A table on a terminal, NDJSON when piped.\n\n"
        "Examples:\n\n"
        "  evlog projection list\n\n"
        "  evlog projection list -o ndjson | jq -r .name"
    ),
)
def list_(
    output: OutputOption = Output.auto,
    no_color: NoColorOption = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import snapshots
    from ..log import Log
    from ..timefmt import format_ts

    with Log(log) as opened:
        found = snapshots.list_projections(opened.backend())
    if draws_table(output):
        from ..textsafe import visible

        # Every word from the log is escaped: a name or a clause could hold terminal controls.
        rows = [{"name": visible(item.name), "definition": as_options(item.spec),
                 "from": None if item.from_ is None else visible(item.from_),
                 "snapshot every": item.snapshot_every} for item in found]
        print_records(rows, output, ["name", "definition", "from", "snapshot every"], noun="projections",
                      wrap=("definition",))
        return
    records = [
        {"name": item.name, "definition": item.spec.to_record(), "from": item.from_,
         "snapshot_every": item.snapshot_every, "created": format_ts(item.created)}
        for item in found
    ]
    print_records(records, output, ["name", "definition", "from", "snapshot_every"], noun="projections")


def as_options(spec: FoldSpec) -> str:
    """A definition as the options that give it (``--by stream --on deposit '...'``), to read in a table.

    Nothing is left out, however long: a stored definition is code that runs on
    ``show``, so all of it is shown, each word escaped (:func:`evlog.textsafe.visible`).
    A fold file's stored text follows ``--fold-file``, quoted, its line breaks as ``\\n``.
    """
    import shlex

    import orjson

    from ..textsafe import visible

    words: list[str] = []
    if spec.init != {}:
        try:
            init = orjson.dumps(spec.init, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # not JSON: a damaged entry, shown for what it is
            init = repr(spec.init)
        words += ["--init", init]
    for pattern, code in spec.clauses:
        words += ["--fold", code] if pattern is None else ["--on", pattern, code]
    for option, value in (("--by", spec.by), ("--where", spec.where)):
        if value is not None:
            words += [option, value]
    for stream in spec.streams:
        words += ["-s", stream]
    for event_type in spec.types:
        words += ["-t", event_type]
    if spec.fold_file is not None:  # the file's text is stored, not its name
        words += ["--fold-file", spec.fold_file]
    return shlex.join(visible(word) for word in words)


@app.command(
    help=(
        "Print the projection's state at a position.\n\n"
        "--at takes every position form and defaults to the last event. Snapshots are saved "
        "as it folds, so the next question at any later point costs only the events since "
        "the nearest snapshot.\n\n"
        "The limits on saving are yours, not the log's: a snapshot is saved at most every "
        "--snapshot-every events (the projection's own interval can only make them rarer), none "
        "larger than --snapshot-max-size, and none at all on a log you cannot write, which is "
        "read without writing anything.\n\n"
        "Examples:\n\n"
        "  evlog projection show balances\n\n"
        "  evlog projection show balances --at 2026-11-01T12:00 --snapshot-every 0\n\n"
        "  evlog projection show balances --at -2h -o json | jq '.[\"account-7\"]'"
    ),
)
def show(
    name: Annotated[str, typer.Argument(help="The projection's name.", autocompletion=complete_projections)],
    at: Annotated[str | None, typer.Option("--at", metavar="POS", help="The position to ask about.")] = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="auto: pretty JSON on a terminal.")] = Output.auto,
    snapshot_every: ReaderSnapshotEveryOption = DEFAULT_SNAPSHOT_EVERY,
    snapshot_max_size: SnapshotMaxSizeOption = DEFAULT_SNAPSHOT_MAX_SIZE_TEXT,
    timeout: FoldTimeoutOption = None,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import snapshots
    from .._tuning import for_streaming
    from ..log import Log
    from ..snapshot_limits import allowed_interval
    from ._common import parse_size

    for_streaming()
    max_size = parse_size(snapshot_max_size, "--snapshot-max-size")
    with Log(log) as opened:
        projection = snapshots.get_projection(opened.backend(), name)
        print_fold(opened, projection.spec, from_=projection.from_, until=at, output=output, scan=False,
                   use_snapshots=True,
                   snapshot_every=allowed_interval(projection.snapshot_every, snapshot_every),
                   snapshot_max_size=max_size, timeout=fold_timeout(opened.path, timeout))


@app.command(
    help=(
        "Remove a projection and its snapshots.\n\n"
        "The events are not touched; add the projection again to fold them anew.\n\n"
        "Examples:\n\n"
        "  evlog projection rm balances\n\n"
        "  evlog projection list -o ndjson | jq -r .name | xargs -n1 evlog projection rm"
    ),
)
def rm(
    name: Annotated[str, typer.Argument(help="The projection's name.", autocompletion=complete_projections)],
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import snapshots
    from ..log import Log

    with Log(log) as opened:
        tables = opened.backend(write=True)
        removed = snapshots.remove_projection(tables, name)
        if removed is None:
            note(f"removed projection {name!r}; its entry was damaged, so its snapshots are left "
                 "(see evlog snapshot list)")
            return
        dropped = snapshots.drop_digest(tables, removed.spec.digest(opened.resolve(removed.from_)))
    note(f"removed projection {name!r} and {counted(dropped, 'snapshot')}")


@app.command(
    help=(
        "Keep a projection's state in a SQL table (SQLite or PostgreSQL), exactly once.\n\n"
        "Catches the table up with the log and exits; with -f it stays and keeps it current as events "
        "are appended. A --by projection is one row per key (the primary key column key), one without "
        "--by one row; an object state's top-level keys are columns, typed by their values. Only the "
        "keys the new events changed are written, with the sync's checkpoint, in one transaction: "
        "killed at any moment, a restart goes on from the last commit. If the projection's definition "
        "changed since the table was built, it is rebuilt into a new table and swapped in by one "
        "transaction; --rebuild forces that. One syncer per table: another is refused with exit 1 "
        "naming it, or waits with --wait. SIGTERM and Ctrl-C commit what was folded, then exit 143 "
        "and 130. Prints a report of where the table stands.\n\n"
        "Examples:\n\n"
        "  evlog projection sync balances --into sqlite:///read.db\n\n"
        "  evlog projection sync balances --into sqlite:///read.db -f\n\n"
        "  evlog projection sync balances --into postgresql://app@localhost/shop --table account_balances"
    ),
)
def sync(
    name: Annotated[str, typer.Argument(help="The projection's name.", autocompletion=complete_projections)],
    into: IntoOption,
    follow: FollowOption = False,
    table: Annotated[str | None, typer.Option("--table", metavar="NAME",
                                              help="The table's name (default: the projection's name).")] = None,
    rebuild: RebuildOption = False,
    wait: WaitOption = False,
    output: SyncOutputOption = Output.auto,
    snapshot_every: ReaderSnapshotEveryOption = DEFAULT_SNAPSHOT_EVERY,
    snapshot_max_size: SnapshotMaxSizeOption = DEFAULT_SNAPSHOT_MAX_SIZE_TEXT,
    timeout: FoldTimeoutOption = None,
    no_color: NoColorOption = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .._tuning import for_streaming
    from ..log import Log
    from ..sinks.sync import sync_projection
    from ._common import parse_size
    from ._sync import finish, stop_on_signals, waiting, warn

    for_streaming()
    max_size = parse_size(snapshot_max_size, "--snapshot-max-size")
    from ._progress import progress

    # A bar for a long catch-up on a terminal; none with -f, whose catch-up never ends.
    with Log(log) as opened, stop_on_signals() as stop, \
            progress("syncing", "synced", enabled=not follow) as meter:
        report = sync_projection(
            opened, name, into, follow=follow, table=table, rebuild=rebuild, wait=wait,
            snapshot_every=snapshot_every, snapshot_max_size=max_size, timeout=fold_timeout(opened.path, timeout),
            stop=stop, on_warning=warn, on_wait=waiting, progress=meter,
        )
    finish(report, stop, output)


@app.command(
    help=(
        "List the tables this log is synced into, with each one's seq and lag.\n\n"
        "Every projection sync and export records its database and table in the log; this asks each "
        "database for its checkpoint. lag is the number of events the table does not reflect yet. "
        "state is ok, rebuild due (the projection changed: the next sync rebuilds the table), "
        "projection removed, not built, or unreachable with the reason. A table on a terminal, NDJSON "
        "when piped.\n\n"
        "Examples:\n\n"
        "  evlog projection status\n\n"
        "  evlog projection status -o json | jq '.[] | select(.lag > 1000)'"
    ),
)
def status(
    output: OutputOption = Output.auto,
    no_color: NoColorOption = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from ..log import Log
    from ..sinks.status import sync_status

    with Log(log) as opened:
        records = sync_status(opened)
    print_records(records, output, ["table", "source", "target", "last_seq", "lag", "state"], noun="syncs",
                  wrap=("target", "state"))
