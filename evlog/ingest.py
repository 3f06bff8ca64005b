"""Turning input into events ready to write: validation and payload encoding.

Everything that can be checked without the log is checked here, before a
write transaction opens: LMDB has one writer at a time, so the transaction
only assigns seq, time and version and writes bytes. The same rules serve
the library (``Log.append``, ``Log.append_many``) and every input format of
``evlog append`` (fields, NDJSON lines, msgpack maps), so they agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

import msgpack

from .errors import BadInputError
from .record import encode_tail, tail_packer
from .timefmt import parse_rfc3339

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


def check_ts(value: object, line: int | None = None) -> int | None:
    """Nanoseconds from an RFC 3339 time with zone or an integer of nanoseconds."""
    if value is None:
        return None
    if type(value) is int:
        ns: int | None = value
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
    return ns


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
) -> Pending:
    """Validate one input object (an NDJSON line or msgpack map) into a :data:`Pending`.

    This runs once per input event on bulk appends, so the common case (type,
    stream, data; names seen before) is a handful of dictionary look-ups.
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
            ts = check_ts(ts, line)
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
