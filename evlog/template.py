"""``--template``: one line per event from ``str.format``-style fields, read like the fold language.

A template is parsed and checked once, before any event is read, into a
:class:`Template` whose fields say what each event must supply: a template
without ``{data}`` never decodes a payload. Values from the log are made
:func:`~evlog.textsafe.visible` (an event is always one line and never drives
the terminal); the template's own text is the user's and is printed as
written. ``{ts}`` takes strftime formats (UTC) and epoch forms,
``{ts_local}`` the same in local time.
"""

from __future__ import annotations

import datetime
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import msgpack
import orjson

from .errors import UsageError
from .output import write_blocks
from .record import DECODE_ERRORS, decode_payload, refuse_ext
from .scan import Row
from .textsafe import visible
from .timefmt import format_ts

_MISSING: Any = object()

EPOCH_FORMS = {"epoch": 1_000_000_000, "epoch_ms": 1_000_000, "epoch_us": 1_000, "epoch_ns": 1}
"""``{ts:epoch}`` and its kin: nanoseconds per unit of the printed number."""

_STRFTIME_SECONDS = re.compile(r"%(.)")


class Timestamp:
    """An event's time in a template: ``{ts}`` is RFC 3339 UTC; a format spec picks another form.

    ``{ts:%H:%M:%S}`` is a strftime format (UTC; ``%f`` microseconds, ``%s``
    seconds since the epoch), ``{ts:epoch}``, ``{ts:epoch_ms}``,
    ``{ts:epoch_us}`` and ``{ts:epoch_ns}`` whole numbers since the epoch,
    and any other spec (``{ts:>32}``) formats the RFC 3339 text. ``{ts_local}``
    is the same time in the local zone (``TZ``), with its offset.
    """

    __slots__ = ("local", "ns")

    def __init__(self, ns: int, *, local: bool = False) -> None:
        self.ns = ns
        self.local = local

    def __str__(self) -> str:
        if not self.local:
            return format_ts(self.ns)
        moment = self._datetime()
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{self.ns % 1_000_000_000:09d}" + _offset(moment)

    def __repr__(self) -> str:
        return repr(str(self))

    def __format__(self, spec: str) -> str:
        if not spec:
            return str(self)
        per_unit = EPOCH_FORMS.get(spec)
        if per_unit is not None:
            return str(self.ns // per_unit)
        if "%" in spec:
            return self._strftime(spec)
        return format(str(self), spec)

    def _datetime(self) -> datetime.datetime:
        seconds, fraction = divmod(self.ns, 1_000_000_000)
        utc = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(microsecond=fraction // 1000)
        return utc.astimezone() if self.local else utc

    def _strftime(self, spec: str) -> str:
        # %s is read by the C library as local time; it is the epoch, whatever the zone.
        seconds = str(self.ns // 1_000_000_000)
        spec = _STRFTIME_SECONDS.sub(lambda match: seconds if match.group(1) == "s" else match.group(0), spec)
        return self._datetime().strftime(spec)


def _offset(moment: datetime.datetime) -> str:
    offset = moment.utcoffset() or datetime.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _field_value(value: Any, keys: tuple[Any, ...]) -> Any:
    """The value under ``keys`` (``data[amount].x``), read like the fold language; _MISSING where there is none."""
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, _MISSING)
        elif isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value):
            value = value[key]
        else:
            return _MISSING
    return value


_CONVERSIONS: dict[str, Callable[[Any], str]] = {"r": repr, "s": str, "a": ascii}


def _format_value(value: Any, spec: str) -> str:
    """One field's text: nothing for a missing key or null, JSON for objects, arrays and booleans.

    Text is made :func:`~evlog.textsafe.visible` before the spec pads it, so a
    newline or an ESC in the data can neither break the line nor drive the
    terminal, and the columns a width asks for hold.
    """
    if value is _MISSING or value is None:
        return ""
    if isinstance(value, (dict, list, bool)):
        value = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    if isinstance(value, str):
        value = visible(value)
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        return visible(str(value))  # a spec that does not fit this value (":.2f" on text): shown plainly


def _formatter_field_name_split(name: str) -> tuple[str, list[tuple[bool, Any]]]:
    """``data[amount].x`` -> ``("data", [(False, "amount"), (True, "x")])``, as str.format splits it."""
    from _string import formatter_field_name_split  # type: ignore[import-not-found]  # the parser behind str.format

    first, rest = formatter_field_name_split(name)
    return str(first), list(rest)


MAX_TEMPLATE_WIDTH = 10_000
TEMPLATE_FIELDS = ("seq", "ts", "ts_local", "type", "stream", "version", "id", "data", "meta")


def _check_time_spec(name: str, spec: str) -> None:
    """Refuse a spec that ``{ts}``/``{ts_local}`` cannot print, before the first event."""
    if not spec or spec in EPOCH_FORMS:
        return
    try:
        format(Timestamp(0), spec)
    except ValueError as exc:
        raise UsageError(
            f"--template field {{{name}:{spec}}}: {exc}; give a strftime format ({{{name}:%H:%M:%S}}), "
            + ", ".join(f"{{{name}:{form}}}" for form in EPOCH_FORMS)
        ) from None


_Part = tuple[str, "str | None", tuple[Any, ...], str, "str | None"]
"""A template's literal text, then its field (or None): root name, keys, format spec and conversion."""


@dataclass(frozen=True)
class Template:
    """A checked ``--template``: call it with an event dict for its line; ``fields`` are the ones it reads.

    ``str.format`` fields over an event, read like the fold language:
    ``{data[amount]}`` and ``{data.amount}`` both read a key; a missing key
    prints nothing (whatever its format spec); objects and arrays print as
    JSON, null as nothing. The template is parsed once, so an event costs
    only its fields; the template's own text is the user's and is printed as
    written.
    """

    parts: tuple[_Part, ...]
    fields: frozenset[str]

    def __call__(self, event: Mapping[str, Any]) -> str:
        pieces: list[str] = []
        for literal, root, keys, spec, conversion in self.parts:
            if literal:
                pieces.append(literal)
            if root is None:
                continue
            value = event.get(root, _MISSING)
            if keys and value is not _MISSING:
                value = _field_value(value, keys)
            if conversion is not None and value is not _MISSING:
                value = _CONVERSIONS[conversion](value)
            pieces.append(_format_value(value, spec))
        return "".join(pieces)


def compile_template(template: str) -> Template:
    """Check a ``--template`` (before any event is read) and return it ready to render.

    It takes the dicts of :func:`template_events`.
    """
    text = template.replace("\\t", "\t").replace("\\n", "\n")
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise UsageError(f"--template {template!r}: {exc}") from None
    fields: set[str] = set()
    parts: list[_Part] = []
    for literal, name, spec, conversion in parsed:
        if name is None:
            parts.append((literal, None, (), "", None))
            continue
        try:
            root, rest = _formatter_field_name_split(name)
        except ValueError as exc:
            raise UsageError(f"--template field {{{name}}}: {exc}") from None
        if root not in TEMPLATE_FIELDS:
            raise UsageError(f"--template field {{{name}}} is unknown; a template has " + ", ".join(TEMPLATE_FIELDS))
        if conversion not in (None, "r", "s", "a"):
            raise UsageError(f"--template field {{{name}!{conversion}}}: the conversion must be !r, !s or !a")
        if spec and "{" in spec:
            raise UsageError(f"--template field {{{name}:{spec}}}: nested fields are not supported")
        if spec and any(int(number) > MAX_TEMPLATE_WIDTH for number in re.findall(r"\d+", spec)):
            # Python would try to build the padded string, and run out of memory on the first event.
            raise UsageError(
                f"--template field {{{name}:{spec}}}: a width or precision above {MAX_TEMPLATE_WIDTH:,} "
                "is not supported"
            )
        if root in ("ts", "ts_local") and not rest and conversion is None:
            _check_time_spec(name, spec or "")
        fields.add(root)
        parts.append((literal, root, tuple(key for _, key in rest), spec or "", conversion))
    return Template(tuple(parts), frozenset(fields))


def template_events(rows: Iterable[Row], fields: Iterable[str] = TEMPLATE_FIELDS) -> Iterator[dict[str, Any]]:
    """Each row as the ``fields`` a template reads: those of :func:`event_dicts`, with times to format.

    Fields no template reads are left out: a template without ``{data}`` never decodes a payload.
    """
    wanted = frozenset(fields)
    unpack = msgpack.unpackb
    with_data, with_ts, with_local = "data" in wanted, "ts" in wanted, "ts_local" in wanted
    for seq, (_, ts, version, etype, stream, id_, meta, data) in rows:
        event = {"seq": seq, "type": etype, "stream": stream, "version": version, "id": id_, "meta": meta or {}}
        if with_ts:
            event["ts"] = Timestamp(ts)
        if with_local:
            event["ts_local"] = Timestamp(ts, local=True)
        if with_data:
            try:  # inline, as in event_dicts: the seq is named only when the payload is damaged
                event["data"] = unpack(data, ext_hook=refuse_ext)
            except DECODE_ERRORS:
                event["data"] = decode_payload(data, seq)
        yield event


def write_template(out: BinaryIO, rows: Iterable[Row], template: str, *, flush_each: bool = False) -> int:
    """One formatted line per event."""
    render = compile_template(template)
    lines = ((render(event) + "\n").encode() for event in template_events(rows, render.fields))
    return write_blocks(out, lines, flush_each)
