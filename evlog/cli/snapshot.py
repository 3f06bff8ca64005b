"""``evlog snapshot``: save, list and drop saved fold states."""

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
    counted,
    draws_table,
    local_time,
    note,
    print_records,
)
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
    refuse_python_fold_file,
    spec_from_options,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "Save, list and drop snapshots of fold states.\n\n"
        "A snapshot is a fold's state stored at a seq, keyed by a hash of the fold's whole "
        "definition (clauses, --init, --by, filters). A replay with the same definition starts "
        "from the newest snapshot at or before its --until; another definition never sees it. "
        "A snapshot carries the chain hash of the event at its seq and is used only on the history "
        "it was made for; evlog verify --snapshots recomputes each one.\n\n"
        "Examples:\n\n"
        "  evlog snapshot save --fold 's += 1' --init 0\n\n"
        "  evlog snapshot list\n\n"
        "  evlog snapshot drop --before -7d"
    ),
)


@app.command(
    help=(
        "Fold up to --at and store the state there.\n\n"
        "--at defaults to the last event. A later replay with the same fold options (the same "
        "definition) up to --at or beyond starts from this state instead of from seq 1; "
        "replay --snapshot-every N saves them as it goes.\n\n"
        "Examples:\n\n"
        "  evlog snapshot save --fold 's[e.type] = s.get(e.type, 0) + 1'\n\n"
        "  evlog snapshot save --at 2026-11-01 --by stream --init '{\"balance\": 0}' "
        "--on deposit 's.balance += d.amount'"
    ),
)
def save(
    at: Annotated[str | None, typer.Option("--at", metavar="POS", help="Where to take the snapshot.")] = None,
    from_: Annotated[str | None, typer.Option("--from", metavar="POS", help="Where the fold starts.")] = None,
    fold: FoldOption = None,
    on: OnOption = None,
    init: InitOption = None,
    by: ByOption = None,
    where: WhereOption = None,
    fold_file: FoldFileOption = None,
    stream: StreamOption = None,
    event_type: TypeOption = None,
    timeout: FoldTimeoutOption = None,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import snapshots
    from ..errors import BadInputError, UsageError
    from ..log import Log
    from ..runner import run_fold
    from ._progress import progress

    spec = spec_from_options(fold=fold, on=on, init=init, by=by, where=where, fold_file=fold_file,
                             streams=stream, types=event_type)
    if not spec.is_fold():
        raise UsageError("a snapshot is of a fold: give --fold, --on or --fold-file")
    refuse_python_fold_file(spec, "snapshot save")
    with Log(log) as opened:
        with progress("folding", "folded") as meter:
            result, _ = run_fold(opened, spec, from_=from_, until=at, progress=meter,
                                 timeout=fold_timeout(opened.path, timeout))
        if result.last < result.first:
            raise UsageError("there is no event to take a snapshot at (the range is empty)")
        tables = opened.backend(write=True)
        digest = spec.digest(result.first)
        size = snapshots.save(tables, spec, result.first, result.last, tables.ts_at(result.last), result.states)
        limit, limit_is = snapshots.room(tables, None)
        if limit is not None and size > limit:
            raise BadInputError(f"the state after seq {result.last} is {size:,} bytes, more than {limit_is}: "
                                "it was not saved (a fold with a smaller state, or a server with a larger "
                                "max_payload, can be)")
    print(f"{digest.hex()} {result.last}")
    note(f"saved the state after seq {result.last} ({size} bytes) as snapshot {digest.hex()}")


@app.command(
    "list",
    help=(
        "List snapshots: definition hash, seq, time, size, states, and any problem.\n\n"
        "The hash names the fold definition the snapshot belongs to; evlog snapshot drop "
        "takes it (or a prefix). A snapshot that is never used says why in 'problem' (the old "
        "format without a chain hash, a value that does not decode, made for another history): "
        "drop it. A table on a terminal, NDJSON when piped.\n\n"
        "Examples:\n\n"
        "  evlog snapshot list\n\n"
        "  evlog snapshot list -o ndjson | jq -s 'map(.size) | add'"
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
        found = list(snapshots.listing(opened.backend()))
    if draws_table(output):
        # Local time to the second, as in the other tables; the JSON keeps the exact ts.
        rows = [{"hash": item.digest, "seq": item.seq, "time (local)": None if item.ts is None else local_time(item.ts),
                 "size": item.size, "keys": item.keys, "problem": item.problem} for item in found]
        columns = ["hash", "seq", "time (local)", "size", "keys"]
        if any(item.problem is not None for item in found):
            columns.append("problem")
        print_records(rows, output, columns, noun="snapshots", wrap=("problem",))
        return
    records = [
        {"hash": item.digest, "seq": item.seq, "ts": None if item.ts is None else format_ts(item.ts),
         "size": item.size, "keys": item.keys, "problem": item.problem}
        for item in found
    ]
    print_records(records, output, ["hash", "seq", "ts", "size", "keys", "problem"], noun="snapshots")


@app.command(
    help=(
        "Delete snapshots: of one definition, before a position, or all.\n\n"
        "HASH is a definition hash from evlog snapshot list or evlog verify --snapshots, or a prefix "
        "of it; damaged and old-format snapshots go the same way. "
        "Snapshots are a cache: dropping them never changes an answer, only how fast it comes.\n\n"
        "Examples:\n\n"
        "  evlog snapshot drop 3f9a2c\n\n"
        "  evlog snapshot drop --before -30d\n\n"
        "  evlog snapshot drop --all"
    ),
)
def drop(
    digest: Annotated[str | None, typer.Argument(metavar="[HASH]", help="The definition hash (see list).")] = None,
    before: Annotated[str | None, typer.Option("--before", metavar="POS", help="Only snapshots before POS.")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Every snapshot.")] = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import snapshots
    from ..log import Log

    with Log(log) as opened:
        before_seq = opened.resolve(before) if before is not None else None
        count = snapshots.drop(opened.backend(write=True), digest=digest, before=before_seq, everything=everything)
    note(f"dropped {counted(count, 'snapshot')}")
