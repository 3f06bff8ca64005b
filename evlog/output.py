"""Rendering events: NDJSON, a JSON array, msgpack and terminal tables (templates: :mod:`evlog.template`).

Renderers take the ``(seq, envelope)`` rows of :meth:`evlog.Log.rows` and
write bytes, so the replay loop builds no intermediate objects it does not
need: msgpack output splices each stored payload as it is, and JSON output
decodes it once. Output is streamed in blocks; ``flush_each`` writes every
event through at once (for followers). rich is imported only by the table
renderer, and only when a table is drawn.

Tables are for people: local time to the millisecond, each type in a colour
of its own that is the same in every run (a CRC of its name, not Python's
salted ``hash``), ``stream@version``, and a one-line preview of the data in
whatever width is left. Their widths are fixed before the first row, so a
table streams like NDJSON.
"""

from __future__ import annotations

import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgpack
import orjson

from .errors import DamagedLogError
from .record import DECODE_ERRORS, decode_payload, refuse_ext
from .scan import Row
from .textsafe import visible, visible_lines
from .timefmt import format_ts

_BLOCK = 512
_EVENT_KEYS = ("seq", "ts", "type", "stream", "version", "id", "data", "meta")


def event_dicts(rows: Iterable[Row]) -> Iterator[dict[str, Any]]:
    """Each row as the JSON object evlog prints for an event."""
    unpack = msgpack.unpackb
    for seq, (_, ts, version, etype, stream, id_, meta, data) in rows:
        try:  # inline, not decode_payload(): a call per event costs a sixth of the decode
            payload = unpack(data, ext_hook=refuse_ext)
        except DECODE_ERRORS:
            payload = decode_payload(data, seq)  # raises the error that names the seq
        yield {
            "seq": seq,
            "ts": format_ts(ts),
            "type": etype,
            "stream": stream,
            "version": version,
            "id": id_,
            "data": payload,
            "meta": meta or {},
        }


def write_blocks(out: BinaryIO, chunks: Iterable[bytes], flush_each: bool) -> int:
    count = 0
    if flush_each:
        for chunk in chunks:
            out.write(chunk)
            out.flush()
            count += 1
        return count
    block: list[bytes] = []
    for chunk in chunks:
        block.append(chunk)
        if len(block) >= _BLOCK:
            out.write(b"".join(block))
            count += len(block)
            block.clear()
    if block:
        out.write(b"".join(block))
        count += len(block)
    out.flush()
    return count


def _json_lines(events: Iterable[dict[str, Any]], option: int) -> Iterator[bytes]:
    """Each event as JSON; a payload JSON cannot hold (bytes a log should not have) is damage."""
    dumps = orjson.dumps
    for event in events:
        try:
            yield dumps(event, option=option)
        except orjson.JSONEncodeError as exc:
            raise DamagedLogError(f"the payload is not a JSON value: {exc}", seq=event["seq"]) from None


def write_ndjson(out: BinaryIO, rows: Iterable[Row], *, flush_each: bool = False) -> int:
    """One JSON object per line; returns the number of events written."""
    return write_blocks(out, _json_lines(event_dicts(rows), orjson.OPT_APPEND_NEWLINE), flush_each)


def write_json_array(out: BinaryIO, rows: Iterable[Row], *, pretty: bool = False) -> int:
    """A JSON array of events, streamed element by element."""
    option = orjson.OPT_INDENT_2 if pretty else 0
    count = 0
    out.write(b"[")
    for line in _json_lines(event_dicts(rows), option):
        out.write(b",\n" if count else b"\n")
        out.write(line)
        count += 1
    out.write(b"\n]\n" if count else b"]\n")
    out.flush()
    return count


def _msgpack_maps(rows: Iterable[Row]) -> Iterator[bytes]:
    pack = msgpack.Packer(use_bin_type=True).pack
    keys = [pack(key) for key in _EVENT_KEYS]
    header = b"\x88"  # a msgpack map of 8 entries
    # Payloads are spliced as stored, each first checked to be one whole msgpack value:
    # a damaged one would break the framing of every event after it. Skipping
    # parses without building objects (a fifth of a full decode, measured), so
    # extension types and non-string keys, valid msgpack, pass through as stored.
    checker = msgpack.Unpacker(max_buffer_size=0)
    feed, skip, tell = checker.feed, checker.skip, checker.tell
    fed = 0
    for seq, (_, ts, version, etype, stream, id_, meta, data) in rows:
        feed(data)
        fed += len(data)
        try:
            skip()
        except (msgpack.OutOfData, *DECODE_ERRORS) as exc:
            raise DamagedLogError(f"the payload is not msgpack: {str(exc) or type(exc).__name__}", seq=seq) from None
        if tell() != fed:
            raise DamagedLogError("the payload has bytes after its msgpack value", seq=seq)
        yield b"".join(
            (
                header,
                keys[0], pack(seq),
                keys[1], pack(format_ts(ts)),
                keys[2], pack(etype),
                keys[3], pack(stream),
                keys[4], pack(version),
                keys[5], pack(id_),
                keys[6], data,
                keys[7], pack(meta or {}),
            )
        )


def write_msgpack(out: BinaryIO, rows: Iterable[Row], *, flush_each: bool = False) -> int:
    """A stream of msgpack maps, one per event (readable by ``evlog append -i msgpack``)."""
    return write_blocks(out, _msgpack_maps(rows), flush_each)


_color = True


def disable_color() -> None:
    """Draw without colour from now on (``--no-color``, or ``NO_COLOR`` in the environment)."""
    global _color
    _color = False


def color_disabled() -> bool:
    """True after ``--no-color`` or with a non-empty ``NO_COLOR`` (https://no-color.org)."""
    return not _color or os.environ.get("NO_COLOR", "") != ""


def fit_cells(text: str, size: int) -> str:
    """``text`` cut with an ellipsis, or padded with spaces, to exactly ``size`` terminal cells."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) > size:
        # set_cell_size pads with a space where a wide character would straddle the cut.
        text = set_cell_size(text, size - 1).rstrip(" ") + "…" if size > 1 else "…"
    return text + " " * (size - cell_len(text))


def make_console(**options: Any) -> Any:
    """A rich Console for stdout that lets a closed pipe end evlog quietly.

    rich answers a broken pipe with exit status 1; evlog treats a reader that
    went away (``| head``) as a normal end, so the error is passed on.
    Without colour no style is drawn at all (rich alone would still send
    bold and dim), so the output holds no escape codes.
    """
    from rich.console import Console

    class PipeAwareConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    if color_disabled():
        options.setdefault("no_color", True)
        options.setdefault("color_system", None)
    return PipeAwareConsole(highlight=False, **options)


# -- terminal tables ------------------------------------------------------------

TYPE_PALETTE: tuple[str, ...] = (
    "#E0443E",  # red
    "#D9730D",  # orange
    "#B8860B",  # dark gold
    "#8C9A1B",  # olive
    "#2E9E44",  # green
    "#13A3A3",  # teal
    "#2D95D6",  # sky blue
    "#3D7BE0",  # blue
    "#7B6CF0",  # violet
    "#9B59D0",  # purple
    "#D1479E",  # magenta
    "#E0607E",  # pink
)
"""Colours of event types in tables: twelve hues of middle lightness.

Each has a contrast of at least 4.5:1 against black and 3:1 against white, so
a type reads on dark and light terminals alike; they stay distinct when rich
maps them to a 256-colour terminal.
"""

TYPE_PALETTE_16: tuple[str, ...] = ("red", "green", "yellow", "blue", "magenta", "cyan")
"""Colours of event types on a 16-colour terminal: the six base colours, which
the terminal's theme makes readable on its background. (Mapped to the nearest of
16, the twelve hues above fall onto a few of them, and on bright variants that
disappear on a light background.)"""


def type_color(event_type: str, *, sixteen: bool = False) -> str:
    """The colour of ``event_type``: the same in every run and process.

    CRC-32 of the name picks from :data:`TYPE_PALETTE` (or, for a 16-colour
    terminal, :data:`TYPE_PALETTE_16`); Python's ``hash`` of a str is salted
    per process, so it would change from run to run.
    """
    palette = TYPE_PALETTE_16 if sixteen else TYPE_PALETTE
    return palette[zlib.crc32(event_type.encode()) % len(palette)]


def type_colors(types: Iterable[str], *, sixteen: bool = False) -> dict[str, str]:
    """Colours for the types of one log, different for up to a palette's worth of types.

    Each type starts at its :func:`type_color`; the types of a log are taken in
    name order and one whose colour is taken moves on to the next free one (a
    hash alone gives eight banking types only five colours). The result
    depends only on the set of types, so a log's types keep their colours
    from run to run; a type the log gains later moves only types that would
    have shared its colour.
    """
    palette = TYPE_PALETTE_16 if sixteen else TYPE_PALETTE
    taken: set[int] = set()
    colors: dict[str, str] = {}
    for name in sorted(types):
        slot = zlib.crc32(name.encode()) % len(palette)
        if len(taken) < len(palette):
            while slot in taken:
                slot = (slot + 1) % len(palette)
        taken.add(slot)
        colors[name] = palette[slot]
    return colors


_BARE_KEY = re.compile(r"[^\W\d][\w.-]*\Z")


def data_preview(value: Any, limit: int) -> str:
    """``value`` as one line of at least ``limit`` characters when it has that many.

    An object reads as ``amount=100 currency="EUR"`` (keys bare when they
    look like names, values as JSON); anything else is compact JSON. Stops
    adding keys once past ``limit``, so a large object costs no more than
    the line shows; control characters and line separators become escapes.
    """
    if isinstance(value, dict) and value:
        parts: list[str] = []
        size = 0
        for key, item in value.items():
            name = key if isinstance(key, str) and _BARE_KEY.match(key) else _json_text(str(key))
            part = f"{name}={_json_text(item)}"
            parts.append(part)
            size += len(part) + 1
            if size > limit:
                break
        text = " ".join(parts)
    else:
        text = _json_text(value)
    return visible(text)


def _json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


@dataclass(frozen=True)
class TableLayout:
    """Column widths of an event table (in terminal cells) and its time format."""

    width: int
    seq: int
    time: int
    time_format: str
    millis: bool
    type: int
    stream: int
    data: int


def table_layout(width: int, *, last_seq: int | None = None) -> TableLayout:
    """Columns that fit ``width`` cells: seq, local time, type, stream@version, and data in the rest.

    ``last_seq`` (the log's head) sizes the seq column; a later seq that is
    longer takes its extra cells from the data column of its row.
    """
    seq = max(3, len(str(last_seq))) if last_seq else 6
    if width >= 120:
        time_format, millis, time_width = "%Y-%m-%d %H:%M:%S", True, 23
    elif width >= 60:
        time_format, millis, time_width = "%m-%d %H:%M:%S", True, 18
    else:
        time_format, millis, time_width = "%m-%d %H:%M:%S", False, 14
    rest = width - seq - time_width - 4  # four single-space gaps
    type_width = max(6, min(28, rest * 5 // 18))  # 15 of 80 columns: "account.opened" whole
    stream_width = max(6, min(32, rest // 4))
    data = max(1, rest - type_width - stream_width)
    return TableLayout(width, seq, time_width, time_format, millis, type_width, stream_width, data)


def local_time_formatter(layout: TableLayout) -> Callable[[int], str]:
    """A function ns -> local time text in the layout's format, caching the current second.

    Local time follows ``TZ`` like every program; consecutive events mostly
    share a second, so strftime runs about once per second of history.
    """
    cached_second: int | None = None
    prefix = ""
    time_format, millis = layout.time_format, layout.millis

    def format_local(ns: int) -> str:
        nonlocal cached_second, prefix
        second, fraction = divmod(ns, 1_000_000_000)
        if second != cached_second:
            prefix = time.strftime(time_format, time.localtime(second))
            cached_second = second
        return f"{prefix}.{fraction // 1_000_000:03d}" if millis else prefix

    return format_local


def write_table(
    rows: Iterable[Row],
    *,
    flush_each: bool = False,
    header: bool = True,
    last_seq: int | None = None,
    types: Iterable[str] = (),
    console: Any = None,
) -> int:
    """Events as aligned rows on a terminal, streamed one by one; returns how many.

    Column widths are fixed from the console width up front, so nothing is
    buffered: a million-event replay prints like a short one. Cells are cut
    and padded by terminal cells, so wide characters keep the columns, and
    control characters are escaped, so a row is always one line.

    Rows are written as text with the console's escape codes for each
    style, worked out once per style: going through ``console.print`` per
    row cost about 150 µs, ten times the rest. Event text is never read as
    rich markup, so ``[bold]`` in an event prints as it is.
    """
    from rich.cells import cell_len, set_cell_size
    from rich.console import COLOR_SYSTEMS
    from rich.style import Style

    if console is None:
        console = make_console(soft_wrap=False)
    layout = table_layout(console.width, last_seq=last_seq)
    fits = layout.seq + layout.time + layout.type + layout.stream + layout.data + 4 <= layout.width
    system = COLOR_SYSTEMS.get(console.color_system) if console.color_system and fits else None
    sixteen = console.color_system in ("standard", "windows")
    painted: dict[str, tuple[str, str]] = {}
    colors = type_colors(types, sixteen=sixteen)

    def codes(style_name: str) -> tuple[str, str]:
        """The escape codes that start and end ``style_name`` on this console ("" without colour)."""
        found = painted.get(style_name)
        if found is None:
            style = Style.parse(style_name)
            if console.no_color:
                style = style.without_color
            start, _, end = style.render("\0", color_system=system).partition("\0")
            found = painted[style_name] = (start, end)
        return found

    def cut(text: str, size: int) -> str:
        if cell_len(text) <= size:
            return text
        # set_cell_size pads with a space where a wide character would straddle the cut.
        return set_cell_size(text, size - 1).rstrip(" ") + "…" if size > 1 else "…"

    def pad(text: str, size: int, right: bool = False) -> str:
        text = cut(text, size)
        padding = " " * (size - cell_len(text))
        return padding + text if right else text + padding

    def finish(line: str) -> str:
        # Only a terminal too narrow for the smallest columns gets here (drawn without styles).
        return line if fits else cut(line, layout.width)

    out = console.file
    title = ""
    if header:  # written above the first row: no events, no table (and a follower's empty read draws nothing)
        bold_start, bold_end = codes("bold")
        stream_label = "stream@version" if layout.stream >= 14 else "stream@ver" if layout.stream >= 10 else "stream"
        title = " ".join((pad("seq", layout.seq, right=True), pad("local time", layout.time),
                          pad("type", layout.type), pad(stream_label, layout.stream), "data"))
        title = f"{bold_start}{finish(title)}{bold_end}\n"
    dim_start, dim_end = codes("dim")
    local_time = local_time_formatter(layout)
    unpack = decode_payload
    preview_limit = 4 * layout.data + 8
    blank_stream = " " * (layout.stream + 1)
    count = 0
    for seq, (_, ts, version, etype, stream, _id, _meta, data) in rows:
        if title:
            out.write(title)
            title = ""
        seq_text = str(seq)
        overflow = max(0, len(seq_text) - layout.seq)
        type_start, type_end = codes(colors.get(etype) or type_color(etype, sixteen=sixteen))
        type_text = cut(visible(etype), layout.type)
        parts = [dim_start, seq_text.rjust(layout.seq), " ", local_time(ts), dim_end, " ",
                 type_start, type_text, type_end, " " * (layout.type - cell_len(type_text) + 1)]
        if stream is None:
            parts.append(blank_stream)
        else:
            suffix = f"@{version}"
            name = visible(stream)
            room = layout.stream - len(suffix)
            if room >= 2:
                name = cut(name, room)
                parts += [name, dim_start, suffix, dim_end, " " * (room - cell_len(name) + 1)]
            else:
                parts.append(pad(name + suffix, layout.stream) + " ")
        try:
            text = data_preview(unpack(data, seq), preview_limit)
        except orjson.JSONEncodeError as exc:
            raise DamagedLogError(f"the payload is not a JSON value: {exc}", seq=seq) from None
        data_width = max(1, layout.data - overflow)
        if len(text) > preview_limit:
            text = set_cell_size(text[:preview_limit], data_width - 1).rstrip(" ") + "…"
        parts.append(cut(text, data_width))
        out.write(finish("".join(parts)) + "\n")
        if flush_each:
            out.flush()
        count += 1
    out.flush()
    return count


def write_state_table(value: Any, console: Any = None) -> None:
    """A fold's state as a table: one row per key, and one column per field when the states are objects.

    ``--by stream`` with object states (``{"account-7": {"balance": 5}}``) reads as
    a ledger; any other object as key and value; a state that is no object as
    indented JSON. Keys, field names and values come from the log: each is
    made :func:`~evlog.textsafe.visible` and never read as rich markup.
    """
    from rich.table import Table
    from rich.text import Text

    if console is None:
        console = make_console()
    if not isinstance(value, dict) or not value:
        shown = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
        console.print(Text("\n".join(visible_lines(shown))))  # the indentation's line breaks are JSON's own
        return
    fields: dict[str, None] = {}
    if all(isinstance(state, dict) for state in value.values()):
        for state in value.values():
            fields.update(dict.fromkeys(str(name) for name in state))
    table = Table(box=None, header_style="bold")
    table.add_column("key")
    if not fields or len(fields) > 12:  # a column per field only while the table stays readable
        numbers = all(isinstance(state, (int, float)) and not isinstance(state, bool) for state in value.values())
        table.add_column("value", justify="right" if numbers else "left")
        for key, state in value.items():
            table.add_row(Text(visible(str(key))), Text(_cell_text(state)))
    else:
        numeric = {name: all(isinstance(state.get(name), (int, float)) and not isinstance(state.get(name), bool)
                             for state in value.values()) for name in fields}
        for name in fields:
            table.add_column(Text(visible(name), style="bold"), justify="right" if numeric[name] else "left")
        for key, state in value.items():
            table.add_row(Text(visible(str(key))), *(Text(_cell_text(state.get(name))) for name in fields))
    console.print(table)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    return visible(value if isinstance(value, str) else _json_text(value))
