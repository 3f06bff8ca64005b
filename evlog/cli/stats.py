"""``evlog stats``: look before you read: events over time, top types and streams, totals.

The numbers come from :func:`evlog.stats.stats`, which reads no record when
no stream or type filter asks for a scan; this module only draws them, or
prints them as one JSON object for scripts. The drawing is built line by
line at the console's width (bars, counts and names are sized to it), so it
fits 80 columns as well as a wide terminal and leaves no trailing blanks; it
is tested on a fixed-width rich Console.
"""

from __future__ import annotations

import time
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..stats import MAX_BINS, TOP
from ._common import (
    DEFAULT_LOG,
    DebugOption,
    FromOption,
    LogOption,
    NoColorOption,
    UntilOption,
    binary_stdout,
    stdout_is_terminal,
)
from ._fold_options import StreamOption, TypeOption

MAX_BINS_LIMIT = 1000  # a bar per line: more would not be a chart to look at

if TYPE_CHECKING:
    from ..stats import Count, Stats

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})

_NS = 1_000_000_000
_EIGHTHS = " ▏▎▍▌▋▊▉"
_GAP = 4  # between the top types and the top streams when they stand side by side


class StatsOutput(str, Enum):
    """What ``evlog stats`` prints: one JSON object or a drawing (no event stream to print)."""

    auto = "auto"
    json = "json"
    table = "table"


@app.command(
    help=(
        "Look before you read: how many events, when, of which types, in which streams.\n\n"
        "On a terminal: a chart of the selected events over time (bins of seconds to days chosen "
        "from the time range, labelled in local time), the top 10 (--top) types and streams with their "
        "shares, and totals: events, first and last seq and time, span and rate. Piped, or with "
        "-o json, the same numbers as one JSON object. Without --stream and --type no record is "
        "read: bin counts come from binary searches over the times, and over the whole log the "
        "type and stream counts from the stored counters.\n\n"
        "Examples:\n\n"
        "  evlog stats\n\n"
        "  evlog stats --from -7d -t 'order.*' --top 3\n\n"
        "  evlog stats -o json | jq -r '.bins[] | \"\\(.start) \\(.count)\"'"
    ),
)
def stats(
    from_: FromOption = None,
    until: UntilOption = None,
    stream: StreamOption = None,
    event_type: TypeOption = None,
    top: Annotated[
        int,
        typer.Option("--top", min=0, metavar="N", help="How many types and streams to list, most events first."),
    ] = TOP,
    bins: Annotated[
        int,
        typer.Option(
            "--bins", min=1, max=MAX_BINS_LIMIT, metavar="N",
            help="At most N bars in the chart; the bin size is the smallest that covers the range in N.",
        ),
    ] = MAX_BINS,
    output: Annotated[
        StatsOutput,
        typer.Option("--output", "-o", help="auto: a chart on a terminal, JSON when piped; json; table (the chart)."),
    ] = StatsOutput.auto,
    no_color: NoColorOption = False,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from ..log import Log
    from ..stats import stats as compute

    with Log(log) as opened:
        result = compute(
            opened, from_=from_, until=until, streams=stream, types=event_type, top=top, max_bins=bins
        )
        log_events = opened.head() if result.events == 0 else result.events
    if output is StatsOutput.table or (output is StatsOutput.auto and stdout_is_terminal()):
        from ..output import make_console

        draw(result, make_console(), log_events=log_events)
        return
    import orjson

    option = orjson.OPT_APPEND_NEWLINE
    if stdout_is_terminal():
        option |= orjson.OPT_INDENT_2
    binary_stdout().write(orjson.dumps(result.to_dict(), option=option))


def draw(result: Stats, console: Any, *, log_events: int) -> None:
    """Draw ``result`` on a rich ``console`` at its width; ``log_events`` explains an empty result."""
    from rich.text import Text

    width = max(console.width, 20)
    if result.events == 0:
        if log_events == 0:
            console.print(Text("No events: the log is empty.", style="bold"))
        else:
            console.print(Text(f"No events selected ({log_events:,} in the log).", style="bold"))
            console.print("Widen --from/--until, or check the --stream and --type patterns.")
        return
    tops = _tops(result, width)
    for line in [*_totals(result), Text(), *_chart(result, width), *([Text(), *tops] if tops else [])]:
        console.print(line, no_wrap=True, overflow="ellipsis", crop=True)


def _totals(result: Stats) -> list[Any]:
    from rich.text import Text

    assert result.first_ts is not None and result.last_ts is not None
    zone = _zone(result.utc_offset)
    span = result.span_seconds or 0.0
    rate = result.events_per_second
    without = result.events_without_stream
    seq_w = len(str(result.last_seq))
    rows = [
        ("events", f"{result.events:,}", ""),
        ("first", f"seq {result.first_seq!s:<{seq_w}}  {_clock(result.first_ts, result.utc_offset)}", zone),
        ("last", f"seq {result.last_seq!s:<{seq_w}}  {_clock(result.last_ts, result.utc_offset)}", zone),
        ("span", _duration(span), ""),
        ("rate", _rate(rate) if rate is not None else "-", ""),
        ("types", f"{result.distinct_types:,}", ""),
        ("streams", f"{result.distinct_streams:,}",
         f"({without:,} event{'' if without == 1 else 's'} without a stream)" if without else ""),
    ]
    lines = []
    for label, value, note in rows:
        line = Text(f"{label:<8} ", style="bold")
        line.append(value)
        if note:
            line.append(f" {note}", style="dim")
        lines.append(line)
    return lines


def _chart(result: Stats, width: int) -> list[Any]:
    """One line per bin: its local start time, its count and a bar scaled to the largest bin."""
    from rich.cells import cell_len
    from rich.text import Text

    size = result.bin_seconds or 1
    labels = _bin_labels([b.start for b in result.bins], size, result.utc_offset)
    label_w = max(cell_len(label) for label in labels)
    counts = [f"{b.count:,}" for b in result.bins]
    count_w = max(len(count) for count in counts)
    bar_w = max(width - label_w - count_w - 2, 1)
    most = max(b.count for b in result.bins) or 1
    title = Text(f"events per {_unit(size)}", style="bold")
    title.append(f"  ({_zone(result.utc_offset)})", style="dim")
    lines = [title]
    for label, count, item in zip(labels, counts, result.bins, strict=True):
        line = Text(label.ljust(label_w) + " ", style="dim")
        line.append(count.rjust(count_w), style="bold" if item.count == most else "")
        bar = _bar(item.count, most, bar_w)
        if bar:
            line.append(" " + bar, style="cyan")
        lines.append(line)
    return lines


def _tops(result: Stats, width: int) -> list[Any]:
    """The top types and streams: side by side when both fit, else one under the other."""
    column = (width - _GAP) // 2
    side_by_side = column >= 40
    column_w = column if side_by_side else width
    left = _top_lines("types", result.types, result.distinct_types, result.events, column_w, "green")
    right = _top_lines("streams", result.streams, result.distinct_streams, result.events, column_w, "magenta")
    if not side_by_side:
        return [*left, *([] if not right else [_blank(), *right])]
    # The streams start right after the longest line of the types, not at half the width.
    offset = max(line.cell_len for line in left) + _GAP if left else 0
    lines = []
    for index in range(max(len(left), len(right))):
        line = left[index].copy() if index < len(left) else _blank()
        if index < len(right):
            line.pad_right(offset - line.cell_len)
            line.append_text(right[index])
        lines.append(line)
    return lines


def _top_lines(kind: str, counts: tuple[Count, ...], distinct: int, events: int, width: int, style: str) -> list[Any]:
    from rich.cells import cell_len
    from rich.text import Text

    from ..output import fit_cells
    from ..textsafe import visible

    if not counts:
        # Types always exist when events do; no streams is worth saying, unless --top 0 hid them.
        return [Text(f"no {kind}", style="dim")] if kind == "streams" and distinct == 0 else []
    title = f"top {kind}" if distinct > len(counts) else kind
    number_w = max(len("events"), *(len(f"{c.count:,}") for c in counts))
    names = [visible(c.name) for c in counts]  # names from the log: shown, never acted on by the terminal
    name_w = max(4, min(max(cell_len(title), *(cell_len(name) for name in names)), width - number_w - 9))
    header = Text(fit_cells(title, name_w), style="bold")
    header.append(" " + "events".rjust(number_w) + "   share", style="bold")
    lines = [header]
    for name, item in zip(names, counts, strict=True):
        line = Text(fit_cells(name, name_w), style=style)
        line.append(f" {item.count:>{number_w},} {_percent(item.share):>7}")
        lines.append(line)
    if distinct > len(counts):
        rest = events - sum(c.count for c in counts)
        more = f"… {distinct - len(counts):,} more: {rest:,} event{'' if rest == 1 else 's'}"
        lines.append(Text(fit_cells(more, width).rstrip(), style="dim"))
    return lines


def _blank() -> Any:
    from rich.text import Text

    return Text()


def _bar(count: int, most: int, width: int) -> str:
    """A bar of ``width * count / most`` cells in eighths; a non-zero count shows at least an eighth."""
    eighths = round(width * 8 * count / most)
    if count and not eighths:
        eighths = 1
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def _bin_labels(starts: list[int], size: int, offset: int) -> list[str]:
    """Local start times of the bins; the date is written only where it changes.

    Bins start at the first event, so a start need not be a round time: the
    clock shows seconds unless every start is on a whole minute, and day bins
    show a clock unless every start is a local midnight.
    """
    moments = [time.gmtime(start // _NS + offset) for start in starts]
    on_minutes = all(moment.tm_sec == 0 for moment in moments)
    if size >= 86_400 and on_minutes and all(moment.tm_hour == moment.tm_min == 0 for moment in moments):
        return [time.strftime("%a %Y-%m-%d", moment) for moment in moments]
    clock = "%H:%M" if size >= 60 and on_minutes else "%H:%M:%S"
    labels = []
    previous = ""
    for moment in moments:
        day = time.strftime("%Y-%m-%d", moment)
        labels.append(f"{day if day != previous else ' ' * len(day)} {time.strftime(clock, moment)}")
        previous = day
    return labels


def _unit(size: int) -> str:
    """``3600`` -> ``hour``, ``600`` -> ``10 minutes``, ``604800`` -> ``7 days``."""
    for unit, seconds in (("day", 86_400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if size % seconds == 0:
            count = size // seconds
            return unit if count == 1 else f"{count} {unit}s"
    return f"{size} seconds"


def _zone(offset: int) -> str:
    if offset == 0:
        return "UTC"
    sign = "+" if offset > 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def _clock(ns: int, offset: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns // _NS + offset))


def _duration(seconds: float) -> str:
    """``3900`` -> ``1 h 5 min``: the two largest units, without the parts that are zero."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        parts = [(days, "d"), (hours, "h"), (minutes, "min")]
    elif hours:
        parts = [(hours, "h"), (minutes, "min")]
    else:
        parts = [(minutes, "min"), (secs, "s")]
    return " ".join(f"{value} {unit}" for value, unit in parts if value)


def _rate(per_second: float) -> str:
    """Events per second, minute, hour or day: the first unit that gives at least one."""
    for unit, factor in (("s", 1), ("min", 60), ("h", 3600), ("day", 86_400)):
        value = per_second * factor
        if value >= 1 or unit == "day":
            return f"{value:,.3g} events/{unit}" if value < 1000 else f"{value:,.0f} events/{unit}"
    raise AssertionError("unreachable")


def _percent(share: float) -> str:
    percent = 100 * share
    if percent >= 1 or percent == 0:
        return f"{percent:.1f}%"
    if percent >= 0.01:
        return f"{percent:.2f}%"
    return "<0.01%"
