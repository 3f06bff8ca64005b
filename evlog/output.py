"""Rendering events: NDJSON, a JSON array, msgpack, templates and terminal tables.

Renderers take the ``(seq, envelope)`` rows of :meth:`evlog.Log.rows` and
write bytes, so the replay loop builds no intermediate objects it does not
need: msgpack output splices each stored payload as it is, and JSON output
decodes it once. Output is streamed in blocks; ``flush_each`` writes every
event through at once (for followers). rich is imported only by the table
renderer, and only when a table is drawn.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import msgpack
import orjson

from .errors import UsageError
from .scan import Row
from .timefmt import format_ts

_BLOCK = 512
_EVENT_KEYS = ("seq", "ts", "type", "stream", "version", "id", "data", "meta")


def event_dicts(rows: Iterable[Row]) -> Iterator[dict[str, Any]]:
    """Each row as the JSON object evlog prints for an event."""
    unpack = msgpack.unpackb
    for seq, (_, ts, version, etype, stream, id_, meta, data) in rows:
        yield {
            "seq": seq,
            "ts": format_ts(ts),
            "type": etype,
            "stream": stream,
            "version": version,
            "id": id_,
            "data": unpack(data),
            "meta": meta or {},
        }


def _write_blocks(out: BinaryIO, chunks: Iterable[bytes], flush_each: bool) -> int:
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


def write_ndjson(out: BinaryIO, rows: Iterable[Row], *, flush_each: bool = False) -> int:
    """One JSON object per line; returns the number of events written."""
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    return _write_blocks(out, (dumps(event, option=newline) for event in event_dicts(rows)), flush_each)


def write_json_array(out: BinaryIO, rows: Iterable[Row], *, pretty: bool = False) -> int:
    """A JSON array of events, streamed element by element."""
    option = orjson.OPT_INDENT_2 if pretty else 0
    count = 0
    out.write(b"[")
    for event in event_dicts(rows):
        out.write(b",\n" if count else b"\n")
        out.write(orjson.dumps(event, option=option))
        count += 1
    out.write(b"\n]\n" if count else b"]\n")
    out.flush()
    return count


def _msgpack_maps(rows: Iterable[Row]) -> Iterator[bytes]:
    pack = msgpack.Packer(use_bin_type=True).pack
    keys = [pack(key) for key in _EVENT_KEYS]
    header = b"\x88"  # a msgpack map of 8 entries
    for seq, (_, ts, version, etype, stream, id_, meta, data) in rows:
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
    return _write_blocks(out, _msgpack_maps(rows), flush_each)


_MISSING: Any = object()


class _TemplateFormatter(string.Formatter):
    """``str.format`` fields over an event, read like the fold language.

    ``{data[amount]}`` and ``{data.amount}`` both read a key; a missing key
    prints nothing (whatever its format spec); objects and arrays print as
    JSON, null as nothing.
    """

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        first, rest = _formatter_field_name_split(field_name)
        value: Any = kwargs.get(first, _MISSING)
        for _, key in rest:
            if value is _MISSING:
                break
            if isinstance(value, dict):
                value = value.get(key, _MISSING)
            elif isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
                value = value[key]
            else:
                value = _MISSING
        return value, first

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        return value if value is _MISSING else super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is _MISSING or value is None:
            return ""
        if isinstance(value, (dict, list, bool)):
            value = orjson.dumps(value).decode()
        try:
            return str(super().format_field(value, format_spec))
        except (ValueError, TypeError):
            return str(value)  # a spec that does not fit this value (":.2f" on text): shown plainly


def _formatter_field_name_split(name: str) -> tuple[str, list[tuple[bool, Any]]]:
    """``data[amount].x`` -> ``("data", [(False, "amount"), (True, "x")])``, as str.format splits it."""
    from _string import formatter_field_name_split  # type: ignore[import-not-found]  # the parser behind str.format

    first, rest = formatter_field_name_split(name)
    return str(first), list(rest)


def compile_template(template: str) -> Callable[[Mapping[str, Any]], str]:
    """Check a ``--template`` and return a function event-dict -> line."""
    text = template.replace("\\t", "\t").replace("\\n", "\n")
    formatter = _TemplateFormatter()
    try:
        parts = list(formatter.parse(text))
    except ValueError as exc:
        raise UsageError(f"--template {template!r}: {exc}") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        try:
            root = _formatter_field_name_split(name)[0]
        except ValueError as exc:
            raise UsageError(f"--template field {{{name}}}: {exc}") from None
        if root not in _EVENT_KEYS:
            raise UsageError(f"--template field {{{name}}} is unknown; an event has " + ", ".join(_EVENT_KEYS))
        if conversion not in (None, "r", "s", "a"):
            raise UsageError(f"--template field {{{name}!{conversion}}}: the conversion must be !r, !s or !a")
        if spec and "{" in spec:
            raise UsageError(f"--template field {{{name}:{spec}}}: nested fields are not supported")

    def render(event: Mapping[str, Any]) -> str:
        return str(formatter.vformat(text, (), event))

    return render


def write_template(out: BinaryIO, rows: Iterable[Row], template: str, *, flush_each: bool = False) -> int:
    """One formatted line per event."""
    render = compile_template(template)
    lines = ((render(event) + "\n").encode() for event in event_dicts(rows))
    return _write_blocks(out, lines, flush_each)


_color = True


def disable_color() -> None:
    """Draw without colour from now on (``--no-color``; rich honours ``NO_COLOR`` itself)."""
    global _color
    _color = False


def make_console(**options: Any) -> Any:
    """A rich Console for stdout that lets a closed pipe end evlog quietly.

    rich answers a broken pipe with exit status 1; evlog treats a reader that
    went away (``| head``) as a normal end, so the error is passed on.
    """
    from rich.console import Console

    class PipeAwareConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    if not _color:
        options.setdefault("no_color", True)
    return PipeAwareConsole(highlight=False, **options)


def table_widths(width: int) -> tuple[int, int, int, int, int, int]:
    """Column widths (seq, ts, type, stream, version, data) that fit ``width`` cells."""
    seq_w, ver_w = 8, 4
    ts_w = 23 if width >= 72 else 19  # narrow terminals lose the milliseconds
    spare = width - (seq_w + ts_w + ver_w + 6)  # six single-space gaps
    type_w = stream_w = max(6, min(18, spare // 4))
    data_w = max(8, spare - type_w - stream_w - 1)
    return seq_w, ts_w, type_w, stream_w, ver_w, data_w


def write_table(rows: Iterable[Row], *, flush_each: bool = False, header: bool = True) -> int:
    """Events as aligned, coloured rows on a terminal, streamed one by one.

    Column widths are fixed from the terminal width up front, so nothing is
    buffered: a million-event replay prints like a short one. Cells are cut
    and padded by terminal cells, so wide characters keep the columns.
    """
    from rich.cells import cell_len, set_cell_size
    from rich.text import Text

    console = make_console(soft_wrap=False)
    seq_w, ts_w, type_w, stream_w, ver_w, data_w = table_widths(console.width)

    def cell(text: str, size: int, right: bool = False) -> str:
        if cell_len(text) > size:
            return set_cell_size(text, size - 1) + "…"
        padding = " " * (size - cell_len(text))
        return padding + text if right else text + padding

    if header:
        title = Text(style="bold")
        for label, size, right in (
            ("seq", seq_w, True), ("ts (UTC)", ts_w, False), ("type", type_w, False),
            ("stream", stream_w, False), ("ver", ver_w, True), ("data", data_w, False),
        ):
            title.append(cell(label, size, right) + " ")
        console.print(title)
    count = 0
    for event in event_dicts(rows):
        line = Text()
        line.append(cell(str(event["seq"]), seq_w, right=True) + " ", style="cyan")
        line.append(cell(event["ts"][:ts_w].replace("T", " "), ts_w) + " ", style="dim")
        line.append(cell(event["type"], type_w) + " ", style="bold green")
        line.append(cell(event["stream"] or "", stream_w) + " ", style="magenta")
        version = event["version"]
        line.append(cell("" if version is None else str(version), ver_w, right=True) + " ")
        line.append(cell(orjson.dumps(event["data"]).decode(), data_w).rstrip())
        console.print(line)
        if flush_each:
            console.file.flush()
        count += 1
    return count
