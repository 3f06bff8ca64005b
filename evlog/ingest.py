"""Turning input into events ready to write: validation and payload encoding.

Everything that can be checked without the log is checked here, before a
write transaction opens: LMDB has one writer at a time, so the transaction
only assigns seq, time and version and writes bytes. The same rules serve
the library (``Log.append``, ``Log.append_many``) and every input format of
``evlog append`` (fields, NDJSON lines, msgpack maps), so they agree.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, Final

import msgpack

from .errors import BadInputError, DamagedLogError
from .record import decode_body, encode_tail, tail_packer
from .timefmt import format_ts, parse_rfc3339

MAX_TYPE_BYTES = 200
MAX_STREAM_BYTES = 400
MAX_ID_BYTES = 400
_TS_LIMIT = 1 << 64  # ts is stored as an unsigned 64-bit count of nanoseconds

INPUT_KEYS = frozenset({"type", "stream", "data", "meta", "id", "expect", "ts"})
# Keys of printed events: accepted and ignored so that replay output appends
# as it is (seq, version and hash are assigned by the log).
IGNORED_KEYS = frozenset({"seq", "version", "hash"})
_ALLOWED = INPUT_KEYS | IGNORED_KEYS

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
EMPTY_OBJECT = msgpack.packb({})

_MISSING: Any = object()

# Names already validated: bulk input repeats a few types and many streams.
_valid_types: set[object] = set()
_stream_keys: dict[object, bytes] = {}


Pending = tuple[
    str, "str | None", "bytes | None", bytes, "str | None", "int | None", "int | None",
    "int | None", bytes, "dict[str, Any] | None", "bytes | None",
]
"""An event that passed validation and waits for its seq, time and version.

A plain tuple, because bulk appends make one per input line and unpack it
in the write loop: ``(type, stream, stream_key, tail, id, expect, ts,
line, data_bytes, meta, raw)``. ``stream_key`` is the stream's UTF-8 name,
its key in the ``streams`` index, ``tail`` the record body's pre-packed part (see
:func:`evlog.record.encode_tail`), ``raw`` the input line when it must be
reported on rejection. Build them with :func:`pending`.
"""
LINE: Final = 7  # index of the input line number in a Pending


def pending(
    type: str,
    stream: str | None,
    data_bytes: bytes,
    meta: dict[str, Any] | None,
    id: str | None,
    expect: int | None,
    ts: int | None,
    line: int | None,
    raw: bytes | None = None,
) -> Pending:
    """A :data:`Pending` from parts that have been validated."""
    return (
        type,
        stream,
        None if stream is None else stream.encode(),
        encode_tail(type, stream, id, meta, data_bytes),
        id,
        expect,
        ts,
        line,
        data_bytes,
        meta,
        raw,
    )


def check_type(value: object, line: int | None = None) -> str:
    """A valid event type, or :class:`BadInputError` saying what is wrong."""
    if not isinstance(value, str):
        raise BadInputError(f'"type" must be a string, not {_json_kind(value)}', line=line)
    if not value:
        raise BadInputError('"type" must not be empty', line=line)
    if _CONTROL.search(value):
        raise BadInputError(f'"type" {value!r} contains a control character', line=line)
    if len(_check_utf8(value, "type", line)) > MAX_TYPE_BYTES:
        raise BadInputError(f'"type" is longer than {MAX_TYPE_BYTES} bytes', line=line)
    if len(_valid_types) < 10_000:
        _valid_types.add(value)
    return value


def check_stream(value: object, line: int | None = None) -> str | None:
    """A valid stream name (or None), else :class:`BadInputError`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInputError(f'"stream" must be a string, not {_json_kind(value)}', line=line)
    if not value:
        raise BadInputError('"stream" must not be empty (leave it out for no stream)', line=line)
    if _CONTROL.search(value):
        raise BadInputError(f'"stream" {value!r} contains a control character', line=line)
    if len(_check_utf8(value, "stream", line)) > MAX_STREAM_BYTES:
        raise BadInputError(f'"stream" is longer than {MAX_STREAM_BYTES} bytes', line=line)
    return value


def check_id(value: object, line: int | None = None) -> str | None:
    """A valid idempotency id (or None), else :class:`BadInputError`."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInputError(f'"id" must be a string, not {_json_kind(value)}', line=line)
    if not value:
        raise BadInputError('"id" must not be empty (leave it out for no id)', line=line)
    if len(_check_utf8(value, "id", line)) > MAX_ID_BYTES:
        raise BadInputError(f'"id" is longer than {MAX_ID_BYTES} bytes', line=line)
    return value


def check_meta(value: object, line: int | None = None) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise BadInputError(f'"meta" must be an object, not {_json_kind(value)}', line=line)
    return value or None


def check_expect(value: object, stream: str | None, line: int | None = None) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise BadInputError(
            f'"expect" must be a stream version (an integer >= 0), not {value!r}', line=line
        )
    if stream is None:
        raise BadInputError('"expect" needs a "stream": versions belong to streams', line=line)
    return value


MAX_FUTURE = 300.0
"""Seconds a given ``ts`` may lie ahead of this machine's clock (``--max-future``): clocks disagree a little."""
PLAUSIBLE_NS = 10**17
"""1973-03-03 in nanoseconds: in text input, a smaller integer ``ts`` is a time in another unit."""
_NS = 1_000_000_000


class TimeGuard:
    """Keeps given times from moving the log's clock away from real time.

    A log stamps an event without ``ts`` with max(now, last ts), so a single
    imported time far ahead would stamp every later event with that time,
    silently and for good. Given times are therefore refused when they lie
    more than ``max_future`` seconds (None: no limit) ahead of this machine's
    clock. ``ceiling`` is that bound as of the last look at the clock: an
    accepted time costs one comparison, and only a time beyond it reads the
    clock again (a producer stamping its events with its own clock stays
    within it for hours).

    With ``check_units`` (input read as text or msgpack, where an integer may
    be seconds or milliseconds from another tool) an integer ``ts`` before
    1973 is refused as a time in another unit; in the library, an integer
    ``ts`` is nanoseconds by the API's definition.
    """

    __slots__ = ("_ahead", "ceiling", "check_units")

    def __init__(self, max_future: float | None = MAX_FUTURE, *, check_units: bool = False) -> None:
        if max_future is not None and not max_future >= 0:
            raise ValueError(f"max_future must be a number of seconds >= 0 or None, not {max_future!r}")
        self._ahead = None if max_future is None else int(max_future * _NS)
        self.ceiling = _TS_LIMIT if self._ahead is None else time.time_ns() + self._ahead
        self.check_units = check_units

    def admit_future(self, ns: int, line: int | None) -> None:
        """``ns`` lies beyond ``ceiling``: accept it if the clock has moved on since, else refuse it."""
        assert self._ahead is not None  # without a limit the ceiling is beyond every time
        now = time.time_ns()
        self.ceiling = now + self._ahead
        if ns <= self.ceiling:
            return
        stamp = short_ts(ns)
        raise BadInputError(
            f'"ts" {stamp} is {_span(ns - now)} in the future, more than the {_span(self._ahead)} allowed '
            f"(--max-future); the log's clock would jump there: every later event would be stamped "
            f"{stamp} or after, since times in a log never go back",
            line=line,
        )


def _refuse_units(value: int, line: int | None) -> None:
    """An integer ``ts`` too small for nanoseconds of this era: say which unit it looks like."""
    if value < 10**11:
        unit, factor = "seconds", _NS
    elif value < 10**14:
        unit, factor = "milliseconds", 1_000_000
    else:
        unit, factor = "microseconds", 1000
    ns = value * factor
    written = f"{ns} or " if PLAUSIBLE_NS <= ns < _TS_LIMIT else ""
    raise BadInputError(
        f'"ts" {value} looks like {unit}, but an integer "ts" is nanoseconds since 1970 (this one would be '
        f'{short_ts(value)}); write {written}"{short_ts(ns)}" (RFC 3339)',
        line=line,
    )


def short_ts(ns: int) -> str:
    """RFC 3339 UTC without trailing zeros in the fraction: ``2023-11-14T22:13:20Z``."""
    text = format_ts(ns)
    return text[:-1].rstrip("0").rstrip(".") + "Z"


def _span(ns: int) -> str:
    """A length of time in words, rounded down to its largest sensible unit."""
    seconds = ns // _NS
    for unit, size in (("year", 365 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= 2 * size or (seconds >= size and seconds % size == 0):
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def check_ts(value: object, line: int | None = None, guard: TimeGuard | None = None) -> int | None:
    """Nanoseconds from an RFC 3339 time with zone or an integer of nanoseconds.

    With a ``guard``, times too far ahead (and, if it checks units, integers
    that look like seconds or milliseconds) are refused.
    """
    if value is None:
        return None
    if type(value) is int:
        ns: int | None = value
        if guard is not None and guard.check_units and 0 <= value < PLAUSIBLE_NS:
            _refuse_units(value, line)
    elif isinstance(value, str):
        ns = parse_rfc3339(value)
        if ns is None:
            raise BadInputError(
                f'"ts" {value!r} is not an RFC 3339 time with a zone (like 2026-11-26T10:00:00.000000001Z)',
                line=line,
            )
    elif type(value).__name__ == "Timestamp":  # msgpack's timestamp extension
        ns = int(value.to_unix_nano())  # type: ignore[attr-defined]
    else:
        raise BadInputError(f'"ts" must be an RFC 3339 string or nanoseconds, not {_json_kind(value)}', line=line)
    assert ns is not None
    if not 0 <= ns < _TS_LIMIT:
        raise BadInputError(
            f'"ts" {value!r} is out of range: times are from 1970 to 2554 (nanoseconds in 64 bits)', line=line
        )
    if guard is not None and ns > guard.ceiling:
        guard.admit_future(ns, line)
    return ns


def stored_difference(event: Pending, record: bytes | memoryview | None, seq: int) -> str | None:
    """What differs between an event and the stored one with its id: ``type``, ``stream``, ``data`` or None.

    An id names one event, so a producer that sends an id again with other
    content has a bug that a silent duplicate would hide. ``meta`` and ``ts``
    are not compared: a retry may carry new ones. Runs only for duplicates:
    the payloads' bytes first, then, if they differ, their values (the same
    object with its keys in another order is the same data).
    """
    if record is None:
        raise DamagedLogError("its id is in the id index, the event is missing", seq=seq)
    stored = decode_body(record, seq)
    if stored[3] != event[0]:
        return "type"
    if stored[4] != event[1]:
        return "stream"
    if stored[7] != event[8] and not _same_json(stored[7], event[8]):
        return "data"
    return None


def _same_json(first: bytes, second: bytes) -> bool:
    import orjson

    try:
        one, other = (orjson.dumps(msgpack.unpackb(data), option=orjson.OPT_SORT_KEYS) for data in (first, second))
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return False
    return one == other


_pack = msgpack.Packer(use_bin_type=True).pack


def encode_data(value: Any, line: int | None = None) -> bytes:
    """The payload as msgpack bytes (values beyond 64-bit integers are refused)."""
    global _pack
    try:
        return _pack(value)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        _pack = msgpack.Packer(use_bin_type=True).pack  # a failed pack may leave state behind
        raise BadInputError(f'"data" cannot be stored: {exc}', line=line) from None


def from_mapping(
    obj: object,
    line: int | None = None,
    default_stream: str | None = None,
    default_meta: dict[str, Any] | None = None,
    raw: bytes | None = None,
    guard: TimeGuard | None = None,
) -> Pending:
    """Validate one input object (an NDJSON line or msgpack map) into a :data:`Pending`.

    This runs once per input event on bulk appends, so the common case (type,
    stream, data; names seen before) is a handful of dictionary look-ups.
    ``guard`` limits given times (see :class:`TimeGuard`).
    """
    if type(obj) is not dict:
        raise BadInputError(f"expected a JSON object, got {_json_kind(obj)}", line=line)
    if not obj.keys() <= _ALLOWED:
        unknown = next(key for key in obj if key not in _ALLOWED)
        raise BadInputError(
            f"unknown key {unknown!r}; an input event has: type (required), stream, data, "
            "meta, id, expect, ts",
            line=line,
        )
    get = obj.get
    etype = get("type")
    if type(etype) is not str or etype not in _valid_types:
        if etype is None:
            raise BadInputError('missing "type" (every event needs one)', line=line)
        etype = check_type(etype, line)
    stream = given_stream = get("stream", _MISSING)
    if stream is _MISSING or stream is None:
        stream = default_stream  # -s applies to lines without a stream (also "stream": null)
    if stream is None:
        stream_key = None
    else:
        stream_key = _stream_keys.get(stream) if type(stream) is str else None
        if stream_key is None:
            stream = check_stream(stream, line)
            stream_key = stream.encode()  # type: ignore[union-attr]
            if len(_stream_keys) > 100_000:
                _stream_keys.clear()
            _stream_keys[stream] = stream_key
    data = get("data", _MISSING)
    data_bytes = EMPTY_OBJECT if data is _MISSING else encode_data(data, line)
    meta = given_meta = get("meta", _MISSING)
    if meta is _MISSING:
        meta = None
    elif meta is not None:
        meta = check_meta(meta, line)
    if default_meta:
        meta = {**default_meta, **(meta or {})}
    event_id = expect = ts = None
    # Most lines have only type, stream, data (and meta): skip the rarer keys then.
    if len(obj) > 1 + (given_stream is not _MISSING) + (data is not _MISSING) + (given_meta is not _MISSING):
        event_id = get("id")
        if event_id is not None:
            event_id = check_id(event_id, line)
        expect = get("expect")
        if expect is not None:
            expect = check_expect(expect, stream, line)
        ts = get("ts")
        if ts is not None:
            ts = check_ts(ts, line, guard)
    return (
        etype,
        stream,
        stream_key,
        _pack_tail((etype, stream, event_id, meta, data_bytes))[1:],
        event_id,
        expect,
        ts,
        line,
        data_bytes,
        meta,
        raw,
    )


def prepare(
    type: object,
    data: Any = _MISSING,
    *,
    stream: object = None,
    meta: object = None,
    id: object = None,
    expect: object = None,
    ts: object = None,
    line: int | None = None,
    from_json: bool = False,
) -> Pending:
    """Validate the parts of one event given separately (library and CLI fields).

    Omitted ``data`` is an empty object. Values that come from Python rather
    than from parsed JSON (``from_json``) are checked to be what JSON can carry.
    """
    checked_stream = check_stream(stream, line)
    if not from_json:
        if data is not _MISSING:
            check_json_value(data, '"data"', line)
        if meta is not None:
            check_json_value(meta, '"meta"', line)
    return pending(
        check_type(type, line),
        checked_stream,
        EMPTY_OBJECT if data is _MISSING else encode_data(data, line),
        check_meta(meta, line),
        check_id(id, line),
        check_expect(expect, checked_stream, line),
        check_ts(ts, line),
        line,
    )


_pack_tail = tail_packer()


def check_json_value(value: Any, what: str, line: int | None = None) -> None:
    """Refuse values that JSON output could not show as they were stored.

    msgpack carries bytes, non-text keys, NaN and integers beyond 64 bits
    differently or not at all; a log holds only what JSON can represent, so
    that every event replays, and replays the same.
    """
    import orjson  # here, not at the top: `evlog append TYPE` must start fast

    try:
        orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_DATACLASS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise BadInputError(f"{what} holds a value JSON cannot represent ({exc})", line=line) from None
    if _has_non_finite(value):
        raise BadInputError(f"{what} holds NaN or Infinity, which JSON cannot represent", line=line)


def _has_non_finite(value: Any) -> bool:
    if type(value) is float:
        return value != value or value in (float("inf"), float("-inf"))
    if type(value) is dict:
        return any(_has_non_finite(item) for item in value.values())
    if type(value) in (list, tuple):
        return any(_has_non_finite(item) for item in value)
    return False


# Digits -> "1", everything else -> "0": a run of 19 digits is then a plain
# substring search, about ten times faster than a regular expression.
_DIGIT_MAP = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))
_NINETEEN_DIGITS = b"1" * 19


def exact_json(raw: bytes, line: int | None) -> Any:
    """Parse a JSON line that may hold an integer orjson would round to a float.

    orjson reads integers beyond 64 bits as floats, silently; the standard
    parser keeps them exact, so such integers are found and refused. Only
    lines with a run of 19 or more digits take this slower path.
    """
    import json

    def parse_int(text: str) -> int:
        number = int(text)
        if not -(1 << 63) <= number < (1 << 64):
            raise BadInputError(f"the integer {text} is beyond 64 bits, which a log cannot store exactly", line=line)
        return number

    try:
        return json.loads(raw, parse_int=parse_int)
    except ValueError as exc:
        raise BadInputError(f"not valid JSON ({exc})", line=line) from None
    except RecursionError:
        raise BadInputError(f"nested deeper than {MAX_DEPTH} levels", line=line) from None


MAX_DEPTH = 250
"""orjson writes at most 254 levels: deeper data could be stored but never replayed."""


def check_depth(value: Any, line: int | None) -> None:
    """Refuse data nested deeper than :data:`MAX_DEPTH` (called only for long lines)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadInputError(f"nested deeper than {MAX_DEPTH} levels, which JSON output cannot write", line=line)
        if type(item) is dict:
            stack.extend((child, depth + 1) for child in item.values())
        elif type(item) is list:
            stack.extend((child, depth + 1) for child in item)


def may_need_exact_json(raw: bytes) -> bool:
    """Whether ``raw`` has a run of 19 or more digits (an integer orjson may round)."""
    return _NINETEEN_DIGITS in raw.translate(_DIGIT_MAP)


def _check_utf8(value: str, what: str, line: int | None) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInputError(f'"{what}" is not valid UTF-8 text', line=line) from None


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"
