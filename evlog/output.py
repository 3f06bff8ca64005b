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


class _TemplateFormatter(string.Formatter):
    """``str.format`` fields over an event; JSON for non-text values, '' for missing keys."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        try:
            return super().get_field(field_name, args, kwargs)
        except (KeyError, IndexError, TypeError):
            return "", field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            value = ""
        elif isinstance(value, (dict, list, bool)):
            value = orjson.dumps(value).decode()
        return str(super().format_field(value, format_spec))


def compile_template(template: str) -> Callable[[Mapping[str, Any]], str]:
    """Check a ``--template`` and return a function event-dict -> line."""
    text = template.replace("\\t", "\t").replace("\\n", "\n")
    formatter = _TemplateFormatter()
    try:
        fields = [name for _, name, _, _ in formatter.parse(text) if name is not None]
    except ValueError as exc:
        raise UsageError(f"--template {template!r}: {exc}") from None
    for name in fields:
        root = name.split("[", 1)[0].split(".", 1)[0]
        if root not in _EVENT_KEYS:
            raise UsageError(
                f"--template field {{{name}}} is unknown; an event has " + ", ".join(_EVENT_KEYS)
            )

    def render(event: Mapping[str, Any]) -> str:
        return str(formatter.vformat(text, (), event))

    return render


def write_template(out: BinaryIO, rows: Iterable[Row], template: str, *, flush_each: bool = False) -> int:
    """One formatted line per event."""
    render = compile_template(template)
    lines = ((render(event) + "\n").encode() for event in event_dicts(rows))
    return _write_blocks(out, lines, flush_each)


def make_console(**options: Any) -> Any:
    """A rich Console for stdout that lets a closed pipe end evlog quietly.

    rich answers a broken pipe with exit status 1; evlog treats a reader that
    went away (``| head``) as a normal end, so the error is passed on.
    """
    from rich.console import Console

    class PipeAwareConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    return PipeAwareConsole(highlight=False, **options)


def write_table(rows: Iterable[Row], *, flush_each: bool = False) -> int:
    """Events as aligned, coloured rows on a terminal, streamed one by one.

    Column widths are fixed from the terminal width up front, so nothing is
    buffered: a million-event replay prints like a short one.
    """
    from rich.text import Text

    console = make_console(soft_wrap=False)
    width = console.width
    seq_w, ts_w, type_w, stream_w, ver_w = 8, 23, 18, 16, 4
    data_w = max(10, width - (seq_w + ts_w + type_w + stream_w + ver_w + 5))

    def cell(text: str, size: int) -> str:
        return text if len(text) <= size else text[: size - 1] + "…"

    header = Text()
    for label, size, justify in (
        ("seq", seq_w, "right"), ("ts (UTC)", ts_w, "left"), ("type", type_w, "left"),
        ("stream", stream_w, "left"), ("ver", ver_w, "right"), ("data", data_w, "left"),
    ):
        header.append((label.rjust(size) if justify == "right" else label.ljust(size)) + " ", style="bold")
    console.print(header)
    count = 0
    for event in event_dicts(rows):
        line = Text()
        line.append(str(event["seq"]).rjust(seq_w) + " ", style="cyan")
        line.append(cell(event["ts"][:23].replace("T", " "), ts_w).ljust(ts_w) + " ", style="dim")
        line.append(cell(event["type"], type_w).ljust(type_w) + " ", style="bold green")
        line.append(cell(event["stream"] or "", stream_w).ljust(stream_w) + " ", style="magenta")
        version = event["version"]
        line.append(("" if version is None else str(version)).rjust(ver_w) + " ")
        line.append(cell(orjson.dumps(event["data"]).decode(), data_w))
        console.print(line)
        if flush_each:
            console.file.flush()
        count += 1
    return count
