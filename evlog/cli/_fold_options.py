"""The fold options shared by ``replay``, ``snapshot save`` and ``projection add``.

They are declared once here so that every command spells and documents them
the same way, and turned into one :class:`~evlog.fold.FoldSpec` by
:func:`spec_from_options`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..errors import UsageError
from ._common import Output
from ._complete import complete_streams, complete_types

FoldOption = Annotated[
    list[str] | None,
    typer.Option("--fold", metavar="CODE",
                 help="Apply CODE to every selected event (repeatable, in order). "
                      "Names: s (state), e (event), d (its data); d.amount is d['amount'].",
                 rich_help_panel="Fold"),
]
ON_SEPARATOR = "\x1f"
"""``--on TYPE CODE`` takes two values; typer takes one per option, so main()
joins the pair with this separator before parsing (see :func:`join_on_pairs`)."""

OnOption = Annotated[
    list[str] | None,
    typer.Option("--on", metavar="TYPE CODE",
                 help="Apply CODE to events of TYPE (a glob like 'order.*'; repeatable).",
                 rich_help_panel="Fold"),
]
InitOption = Annotated[
    str | None,
    typer.Option("--init", metavar="JSON", help="The initial state (default {}).", rich_help_panel="Fold"),
]
ByOption = Annotated[
    str | None,
    typer.Option("--by", metavar="stream|EXPR",
                 help="One state per key: 'stream', or an expression such as d.customer. "
                      "Events whose key is null are left out.",
                 rich_help_panel="Fold"),
]
WhereOption = Annotated[
    str | None,
    typer.Option("--where", metavar="EXPR",
                 help="Only events for which EXPR is true, e.g. 'd.amount > 100' (also without a fold).",
                 rich_help_panel="Fold"),
]
FoldFileOption = Annotated[
    str | None,
    typer.Option("--fold-file", metavar="FILE",
                 help="A file of fold-language statements run for every selected event, like one "
                      "--fold, e.g. --fold-file counts.fold. A Python file defining apply(state, event) or "
                      "on_<type>(state, event) (and init()) is run by replay only, without snapshots, "
                      "and is never stored in the log.",
                 rich_help_panel="Fold"),
]
FoldTimeoutOption = Annotated[
    float | None,
    typer.Option("--fold-timeout", metavar="SECONDS", min=0,
                 help="Stop the fold after SECONDS, e.g. --fold-timeout 600 (0: no limit). Default: no "
                      "limit for a log you own, 300 for a log created by another user.",
                 rich_help_panel="Fold"),
]
FOREIGN_LOG_FOLD_TIMEOUT = 300.0
"""Seconds a fold may run by default on a log whose data file another user owns."""


def fold_timeout(log_path: str, option: float | None) -> float | None:
    """The time limit of a fold: ``--fold-timeout``, or the default for who owns the log."""
    import os

    if option is not None:
        return option or None
    try:
        owner = os.stat(os.path.join(log_path, "data.mdb")).st_uid
    except OSError:
        return FOREIGN_LOG_FOLD_TIMEOUT
    return None if owner == os.geteuid() else FOREIGN_LOG_FOLD_TIMEOUT


SnapshotEveryOption = Annotated[
    int,
    typer.Option("--snapshot-every", metavar="N", min=0,
                 help="Save a snapshot of the state every N events while folding (0: never).",
                 rich_help_panel="Fold"),
]
StreamOption = Annotated[
    list[str] | None,
    typer.Option("--stream", "-s", help="Only this stream (repeatable; a name or a glob like 'acct-*').",
                 autocompletion=complete_streams),
]
TypeOption = Annotated[
    list[str] | None,
    typer.Option("--type", "-t", help="Only this type (repeatable; glob like 'order.*').",
                 autocompletion=complete_types),
]


def spec_from_options(
    *,
    fold: list[str] | None,
    on: list[str] | None,
    init: str | None,
    by: str | None,
    where: str | None,
    fold_file: str | None,
    streams: list[str] | None,
    types: list[str] | None,
) -> Any:
    """The :class:`~evlog.fold.FoldSpec` the options describe (checked by compiling it)."""
    from ..fold import CompiledFold, FoldSpec, load_fold_file, parse_init

    pairs: list[tuple[str | None, str]] = [(None, code) for code in fold or ()]
    for joined in on or ():
        pattern, separator, code = joined.partition(ON_SEPARATOR)
        if not separator:
            raise UsageError(f"--on {pattern!r} needs two values: --on TYPE CODE")
        pairs.append((None if pattern == EVERY_EVENT else pattern, code))
    source = None
    if fold_file is not None:
        if pairs:
            raise UsageError("--fold-file is an alternative to --fold and --on: give one or the other")
        text, is_python = load_fold_file(fold_file)
        if is_python:
            source = text
            if init is not None and "def init(" in source:
                raise UsageError("--init and the fold file's init() both set the initial state: keep one")
        else:
            from ..foldlang import Analysis, parse_clause

            parse_clause(f"--fold-file {fold_file}", text, Analysis(), expression=False)  # errors name the file
            pairs.append((None, text))
    clauses = tuple(pairs)
    if init is not None and not clauses and source is None:
        raise UsageError("--init needs a fold: add --fold or --on")
    if by is not None and not clauses and source is None:
        raise UsageError("--by needs a fold: add --fold or --on")
    spec = FoldSpec(
        init=parse_init(init),
        clauses=clauses,
        by=by,
        where=where,
        streams=tuple(streams or ()),
        types=tuple(types or ()),
        fold_file=source,
    )
    if spec.is_fold():
        CompiledFold(spec)  # report syntax errors before touching the log
    return spec


def print_fold(
    log: Any,
    spec: Any,
    *,
    from_: str | None,
    until: str | None,
    output: Output,
    scan: bool,
    use_snapshots: bool,
    snapshot_every: int,
    snapshot_max_size: int | None = None,
    timeout: float | None = None,
) -> None:
    """Run a fold and print its state (or, with ``scan``, every intermediate state)."""
    import orjson

    from ..fold import check_serialisable
    from ..runner import run_fold
    from ..snapshot_limits import DEFAULT_SNAPSHOT_MAX_SIZE
    from ..timefmt import format_ts
    from ._common import binary_stdout, note, stdout_is_terminal
    from ._progress import progress

    warn_unseen_types(log, spec)
    # The bar ends before the state is printed; with --scan the states stream
    # out as the fold runs, and on the terminal they are the progress.
    with progress("folding", "folded", enabled=not (scan and stdout_is_terminal())) as meter:
        result, steps = run_fold(
            log, spec, from_=from_, until=until, use_snapshots=use_snapshots, snapshot_every=snapshot_every,
            snapshot_max_size=DEFAULT_SNAPSHOT_MAX_SIZE if snapshot_max_size is None else snapshot_max_size,
            scan_mode=scan, on_snapshot_error=note, progress=meter, timeout=timeout,
        )
        out = binary_stdout()
        by = spec.by is not None
        if steps is not None:
            option = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
            for seq, ts, key, state in steps:
                record = {"seq": seq, "ts": format_ts(ts), "key": key, "state": state} if by else {
                    "seq": seq, "ts": format_ts(ts), "state": state}
                try:
                    out.write(orjson.dumps(record, option=option))
                except TypeError:
                    check_serialisable(state)
                    raise
                out.flush()
            return
    value = result.value(by=by)
    if output is Output.msgpack:
        import msgpack

        check_serialisable(value)
        out.write(msgpack.packb(value, use_bin_type=True))
        return
    check_serialisable(value)
    if output is Output.table:
        from ..output import write_state_table

        write_state_table(value)
        return
    option = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
    if output is not Output.ndjson and stdout_is_terminal():
        option |= orjson.OPT_INDENT_2
    out.write(orjson.dumps(value, option=option))


def refuse_python_fold_file(spec: Any, command: str) -> None:
    """``projection add`` and ``snapshot save`` store what they fold: never a Python fold file."""
    if spec.fold_file is not None:
        from ..fold import PythonFoldFileError

        raise PythonFoldFileError(
            f"{command} stores its definition in the log, and a log holds no Python: this --fold-file defines "
            "Python functions. Write it as fold-language statements (the body of one --fold, e.g. "
            "'s[e.type] = s.get(e.type, 0) + 1'), or run the Python file with evlog replay --fold-file"
        )


def warn_unseen_types(log: Any, spec: Any) -> None:
    """A warning for an ``--on`` pattern that matches no type the log has: most often a typo."""
    import difflib
    import fnmatch

    patterns = [pattern for pattern, _ in spec.clauses if pattern is not None]
    if not patterns:
        return
    from ..textsafe import visible
    from ._common import note

    known = list(log.types())
    for pattern in dict.fromkeys(patterns):
        if any(fnmatch.fnmatchcase(name, pattern) for name in known):
            continue
        close = difflib.get_close_matches(pattern, known, n=3, cutoff=0.5)
        nearest = f"; the closest it has: {', '.join(visible(repr(name)) for name in close)}" if close else ""
        note(f"warning: --on {visible(repr(pattern))} matches no type in this log{nearest}")


EVERY_EVENT = "\x1e"
"""Marks a ``--fold`` clause after :func:`ordered_fold_clauses` made it an ``--on``."""


def ordered_fold_clauses(args: list[str]) -> list[str]:
    """Rewrite ``--fold CODE`` and ``--on TYPE CODE`` into one option, in command-line order.

    Clauses apply in the order they are given, across both options; typer
    keeps each option's values in order but not their interleaving, and takes
    one value per option. So both become ``--on`` with one joined value:
    ``TYPE<sep>CODE``, and for ``--fold`` the pattern is :data:`EVERY_EVENT`.
    """
    rewritten: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            return rewritten + args[index:]
        if arg == "--fold" and index + 1 < len(args):
            rewritten += ["--on", EVERY_EVENT + ON_SEPARATOR + args[index + 1]]
            index += 2
            continue
        if arg.startswith("--fold="):
            rewritten += ["--on", EVERY_EVENT + ON_SEPARATOR + arg[len("--fold="):]]
            index += 1
            continue
        if arg == "--on" and index + 2 < len(args) and not args[index + 1].startswith("--"):
            rewritten += [arg, args[index + 1] + ON_SEPARATOR + args[index + 2]]
            index += 3
            continue
        rewritten.append(arg)
        index += 1
    return rewritten
