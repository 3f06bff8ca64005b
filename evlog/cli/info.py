"""``evlog info``: what a log holds, for people (a table) and scripts (``-o json``).

The table is drawn with the pieces of ``evlog stats`` (its totals' layout and
its top list), so the two read alike: digits grouped, columns aligned.
"""

from typing import Annotated, Any

import typer

from ._common import (
    DEFAULT_LOG,
    DebugOption,
    LogOption,
    NoColorOption,
    Output,
    binary_stdout,
    stdout_is_terminal,
)

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _draw(facts: dict[str, Any], console: Any) -> None:
    """The facts as ``evlog stats`` draws its totals, and the types as its top list: one look for both.

    Labels in bold, counts with digit groups, seqs as they are typed, times
    in local time with their zone; every text from the log made visible.
    """
    from rich.text import Text

    from ..stats import Count
    from ..textsafe import visible
    from .stats import _top_lines

    events = facts["events"]
    seq_w = len(str(facts["last_seq"] or 0))
    rows = [
        ("path", visible(facts["path"])),
        ("size", _size(facts["size_bytes"])),
        ("events", f"{events:,}"),
        ("first", f"seq {facts['first_seq']!s:<{seq_w}}  {_local(facts['first_ts'])}" if events else "-"),
        ("last", f"seq {facts['last_seq']!s:<{seq_w}}  {_local(facts['last_ts'])}" if events else "-"),
        ("streams", f"{facts['streams']:,}"),
        ("types", f"{len(facts['types']):,}"),
        ("format", str(facts["format"])),
        ("log id", visible(facts["log_id"])),
        ("created", _local(facts["created"]) if facts["created"] else "-"),
        ("head hash", facts["head_hash"]),
    ]
    if "replicas" in facts:  # a log on a server: how it is kept there
        rows[2:2] = [
            ("replicas", str(facts["replicas"])),
            ("storage", visible(str(facts["storage"]))),
            ("leader", visible(str(facts["leader"] or "-"))),
        ]
    label_w = max(len(label) for label, _ in rows) + 1
    lines = []
    for label, value in rows:
        line = Text(f"{label:<{label_w}} ", style="bold")
        line.append(value)  # Text, not markup: a path or an id may hold '[...]'
        lines.append(line)
    if facts["types"]:
        counts = tuple(Count(name, count, count / events if events else 0.0) for name, count in facts["types"].items())
        lines += [Text(), *_top_lines("types", counts, len(counts), events, max(console.width, 20), "green")]
    for line in lines:
        console.print(line, no_wrap=True, overflow="ellipsis", crop=True)


def _local(text: str) -> str:
    """An RFC 3339 time of the facts as local time with its zone, as stats shows times."""
    import time

    from ..timefmt import parse_rfc3339
    from .stats import _clock, _zone

    ns = parse_rfc3339(text)
    if ns is None:
        return text
    offset = int(time.localtime(ns // 1_000_000_000).tm_gmtoff)
    return f"{_clock(ns, offset)} {_zone(offset)}"


@app.command(
    help=(
        "Describe the log: counts, first and last event, streams, types and head hash.\n\n"
        "Shows the path, the size on disk, the number of events, the first and last seq and "
        "time, the number of streams, each event type with its count, the format, the log id "
        "and the head of the hash chain. Publish the head hash: anyone can later check that "
        "the history up to it is unchanged (evlog verify recomputes it).\n\n"
        "Examples:\n\n"
        "  evlog info\n\n"
        "  evlog info -o json | jq .events\n\n"
        "  evlog info --log /backups/events.lmdb"
    ),
)
def info(
    output: Annotated[
        Output, typer.Option("--output", "-o", help="auto: a table on a terminal, JSON when piped.")
    ] = Output.auto,
    no_color: NoColorOption = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    import orjson

    from ..log import Log

    with Log(log) as opened:
        facts = opened.info()
    if output is Output.table or (output is Output.auto and stdout_is_terminal()):
        from ..output import make_console

        _draw(facts, make_console())
        return
    if output is Output.msgpack:
        import msgpack

        binary_stdout().write(msgpack.packb(facts, use_bin_type=True))
        return
    option = orjson.OPT_APPEND_NEWLINE
    if stdout_is_terminal():
        option |= orjson.OPT_INDENT_2
    binary_stdout().write(orjson.dumps(facts, option=option))
