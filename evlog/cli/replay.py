"""``evlog replay``: print events in seq order, selected by position, stream and type."""

import itertools
from typing import Annotated

import typer

from ..errors import UsageError
from ._common import (
    DEFAULT_LOG,
    DebugOption,
    FromOption,
    LogOption,
    NoColorOption,
    Output,
    OutputOption,
    TemplateOption,
    UntilOption,
    binary_stdout,
    stdout_is_terminal,
)
from ._complete import complete_projections
from ._fold_options import (
    ByOption,
    FoldFileOption,
    FoldOption,
    FoldTimeoutOption,
    InitOption,
    OnOption,
    SnapshotEveryOption,
    StreamOption,
    TypeOption,
    WhereOption,
    fold_timeout,
    print_fold,
    spec_from_options,
)
from ._snapshot_limits import DEFAULT_SNAPSHOT_MAX_SIZE_TEXT, SnapshotMaxSizeOption

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})



@app.command(
    help=(
        "Print events in seq order, or fold them into state.\n\n"
        "On a terminal events are shown as a table; piped, as NDJSON "
        '({"seq", "ts", "type", "stream", "version", "id", "data", "meta"} per line), '
        "which evlog append reads back as it is.\n\n"
        "With --fold/--on (or --fold-file, --projection) the selected events are folded into a "
        "state, printed as JSON; --by keeps one state per key; --scan prints the state after "
        "every event. Snapshots of the same fold make the past as cheap to ask about as the present.\n\n"
        "Examples:\n\n"
        "  evlog replay --until 2026-11-01T12:00 -s 'account-*' -t deposit\n\n"
        "  evlog replay --from -100 --template '{seq} {type} {data[amount]}'\n\n"
        "  evlog replay --by stream --init '{\"balance\": 0}' --on deposit 's.balance += d.amount' "
        "--on withdraw 's.balance -= d.amount'"
    ),
)
def replay(
    from_: FromOption = None,
    until: UntilOption = None,
    stream: StreamOption = None,
    event_type: TypeOption = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=0, help="At most N events.")] = None,
    output: OutputOption = Output.auto,
    template: TemplateOption = None,
    no_color: NoColorOption = False,
    fold: FoldOption = None,
    on: OnOption = None,
    init: InitOption = None,
    by: ByOption = None,
    where: WhereOption = None,
    fold_file: FoldFileOption = None,
    projection: Annotated[
        str | None,
        typer.Option("--projection", metavar="NAME", help="Fold with a stored projection's definition.",
                     rich_help_panel="Fold", autocompletion=complete_projections),
    ] = None,
    scan: Annotated[
        bool, typer.Option("--scan", help="Print the state after every event as NDJSON.", rich_help_panel="Fold")
    ] = False,
    no_snapshot: Annotated[
        bool, typer.Option("--no-snapshot", help="Fold from the start; use no saved snapshot.",
                           rich_help_panel="Fold")
    ] = False,
    snapshot_every: SnapshotEveryOption = 0,
    snapshot_max_size: SnapshotMaxSizeOption = DEFAULT_SNAPSHOT_MAX_SIZE_TEXT,
    timeout: FoldTimeoutOption = None,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from .. import output as render
    from .. import template as templates
    from .._tuning import for_streaming
    from ..log import Log
    from ._progress import progress

    if template is not None and output is not Output.auto:
        raise UsageError("--template and --output are alternatives: give one")
    if template is not None:
        templates.compile_template(template)  # report a bad template before reading
    with Log(log) as opened:
        if projection is not None:
            if fold or on or init or by or where or fold_file or stream or event_type:
                raise UsageError("--projection brings its own definition: drop the fold and filter options")
            from ..snapshots import get_projection

            stored = get_projection(opened.backend(), projection)
            spec, from_ = stored.spec, from_ if from_ is not None else stored.from_
            from ..snapshot_limits import DEFAULT_SNAPSHOT_EVERY, allowed_interval

            # The stored interval is the log author's wish: it can make snapshots rarer than the
            # reader's --snapshot-every (default 50,000 here), never more frequent.
            snapshot_every = allowed_interval(stored.snapshot_every, snapshot_every or DEFAULT_SNAPSHOT_EVERY)
        else:
            spec = spec_from_options(fold=fold, on=on, init=init, by=by, where=where, fold_file=fold_file,
                                     streams=stream, types=event_type)
            if spec.fold_file is not None and snapshot_every:
                raise UsageError("--snapshot-every: a Python --fold-file is run without snapshots (they are "
                                 "kept in the log, and the log keeps no Python); drop --snapshot-every")
        for_streaming()
        if spec.is_fold():
            if template is not None or limit is not None:
                raise UsageError("--template and --limit print events; a fold prints its state")
            from ._common import parse_size

            print_fold(opened, spec, from_=from_, until=until, output=output, scan=scan,
                       use_snapshots=not no_snapshot, snapshot_every=snapshot_every,
                       snapshot_max_size=parse_size(snapshot_max_size, "--snapshot-max-size"),
                       timeout=fold_timeout(opened.path, timeout))
            return
        if scan or snapshot_every:
            raise UsageError("--scan and --snapshot-every need a fold (--fold, --on or --fold-file)")
        # No bar when the events go to the terminal: there they are the progress.
        with progress("replaying", "replayed", enabled=not stdout_is_terminal()) as meter:
            rows = opened.rows(from_=from_, until=until, streams=stream, types=event_type, progress=meter)
            if where is not None:
                from ..fold import compile_where

                test = compile_where(where)
                rows = (row for row in rows if test(*row))
            if limit is not None:
                rows = itertools.islice(rows, limit)
            chosen = output
            if chosen is Output.auto:
                chosen = Output.table if stdout_is_terminal() else Output.ndjson
            if template is not None:
                printed = templates.write_template(binary_stdout(), rows, template)
            elif chosen is Output.table:
                printed = render.write_table(rows, last_seq=opened.head(), types=opened.types())
            elif chosen is Output.json:
                printed = render.write_json_array(binary_stdout(), rows, pretty=stdout_is_terminal())
            elif chosen is Output.msgpack:
                printed = render.write_msgpack(binary_stdout(), rows)
            else:
                printed = render.write_ndjson(binary_stdout(), rows)
            if meter is not None:
                meter.summary_count = printed
