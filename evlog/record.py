"""Stored event records: the bytes under each seq key, and the hash chain.

A record is ``body + chain_hash``:

* ``body`` is a msgpack array ``[format, ts, version, type, stream, id, meta,
  data]`` where ``format`` is :data:`RECORD_FORMAT` and ``data`` is the
  payload, itself msgpack, embedded as a msgpack ``bin``. Decoding the body
  therefore yields the envelope and the payload's bytes without decoding the
  payload; msgpack output can splice those bytes as they are.
* The fields known before the write transaction (type to data) are packed
  while validating input, as the body's *tail*; the transaction only prefixes
  a fixed-size head with the time and version it assigns. ``ts`` and
  ``version`` are always written as msgpack uint64 for that fixed layout.
* ``chain_hash`` is 16 bytes: blake2b-128 of the previous record's chain hash,
  the seq key and this body. The hash of the last record is the log's head:
  publishing it pins the whole history before it. The first record chains
  from :data:`GENESIS_HASH`, so two logs with the same events and times have
  the same head.

The format number leads the array so that a later format can be told apart
and upcast by its reader.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

try:
    # The module behind hashlib.blake2b, imported directly: hashlib itself
    # loads OpenSSL first, which costs milliseconds on every `evlog append`.
    from _blake2 import blake2b as blake2b
except ImportError:  # pragma: no cover - Pythons built without it
    from hashlib import blake2b as blake2b

from .errors import DamagedLogError, EvlogError, NotALogError

RECORD_FORMAT = 1
HASH_SIZE = 16
GENESIS_HASH = bytes(HASH_SIZE)

_SEQ = struct.Struct(">Q")
seq_key = _SEQ.pack


def key_seq(key: bytes | memoryview) -> int:
    """The seq of an ``events`` key or a stream index entry (8-byte big-endian)."""
    try:
        return int(_SEQ.unpack(key)[0])
    except struct.error:
        raise DamagedLogError(f"a key or index entry of {len(key)} bytes where a seq of 8 is stored") from None


DECODE_ERRORS = (ValueError, TypeError, OverflowError, msgpack.UnpackException)
"""What decoding damaged msgpack can raise (its errors are ValueErrors; bad UTF-8 too)."""


def chain_hash(previous: bytes, key: bytes, body: bytes) -> bytes:
    """The chain hash of the record stored under ``key``."""
    return blake2b(previous + key + body, digest_size=HASH_SIZE).digest()


_packer = msgpack.Packer(use_bin_type=True)


def encode_tail(
    type_: str,
    stream: str | None,
    id_: str | None,
    meta: dict[str, Any] | None,
    data_bytes: bytes,
) -> bytes:
    """The part of a body known before the transaction: type, stream, id, meta, data."""
    packed: bytes = _packer.pack((type_, stream, id_, meta or None, data_bytes))
    return packed[1:]  # without the array header: the head supplies it


def tail_packer() -> Any:
    """A packer for ``(type, stream, id, meta, data_bytes)`` tuples; drop byte 0 for the tail."""
    return msgpack.Packer(use_bin_type=True).pack


# fixarray(8), format, uint64 ts, then uint64 version or nil
HEAD_VERSION = struct.Struct(">BBBQBQ")
HEAD_NO_VERSION = struct.Struct(">BBBQB")


def encode_body(ts: int, version: int | None, tail: bytes) -> bytes:
    """The msgpack body of a record (everything but the chain hash)."""
    if version is None:
        return HEAD_NO_VERSION.pack(0x98, RECORD_FORMAT, 0xCF, ts, 0xC0) + tail
    return HEAD_VERSION.pack(0x98, RECORD_FORMAT, 0xCF, ts, 0xCF, version) + tail


Envelope = tuple[int, int, "int | None", str, "str | None", "str | None", "dict[str, Any] | None", bytes]


def decode_body(value: bytes | memoryview, seq: int) -> Envelope:
    """``(format, ts, version, type, stream, id, meta, data_bytes)`` of a record, checked.

    Every field's type is checked (a log may come from someone else): a
    record that is not what evlog writes raises :class:`DamagedLogError`.
    The checks are a few ``type()`` tests on the fields, cheap next to the
    decoding itself; ``meta``, rarely present, is checked all the way down.
    """
    try:
        # No ext_hook: an extension value fails the type checks below anyway.
        fields = msgpack.unpackb(value[:-HASH_SIZE], use_list=False)
    except DECODE_ERRORS as exc:
        raise DamagedLogError(f"the record cannot be decoded: {str(exc) or type(exc).__name__}", seq=seq) from None
    if type(fields) is not tuple or len(fields) != 8 or fields[0] != RECORD_FORMAT:
        raise _not_a_record(fields, seq)
    record_format, ts, version, etype, stream, id_, meta, data = fields
    if type(record_format) is not int:
        raise _not_a_record(fields, seq)
    if (
        type(ts) is not int
        or ts < 0
        or type(etype) is not str
        or type(data) is not bytes
        or (version is not None and (type(version) is not int or version < 1))
        or (stream is not None and type(stream) is not str)
        or (id_ is not None and type(id_) is not str)
        or (meta is not None and not _json_object(meta))
        or (stream is None) is not (version is None)
    ):
        raise DamagedLogError(_wrong_field(fields), seq=seq)
    return fields


def decode_payload(data: bytes, seq: int) -> Any:
    """An event's payload, decoded; :class:`DamagedLogError` naming ``seq`` when it is not a JSON value.

    msgpack's own checks do most of the work at no cost to sound payloads:
    map keys must be strings or bytes, extension types are refused. Bytes
    (msgpack ``bin``) are left to the JSON conversion, which refuses them.
    """
    try:
        return msgpack.unpackb(data, ext_hook=refuse_ext)
    except DECODE_ERRORS as exc:
        raise DamagedLogError(f"the payload is not a JSON value: {str(exc) or type(exc).__name__}", seq=seq) from None


def _not_a_record(fields: Any, seq: int) -> EvlogError:
    """Why a decoded value is no record of this evlog's format (a rare path)."""
    found = fields[0] if type(fields) is tuple and fields else None
    if type(found) is int and found > RECORD_FORMAT:
        return NotALogError(
            f"record at seq {seq} has format {found}, this evlog reads format "
            f"{RECORD_FORMAT}; upgrade evlog to read this log"
        )
    if type(fields) is not tuple or len(fields) != 8:
        return DamagedLogError("the record is not an array of 8 fields", seq=seq)
    return DamagedLogError(f"record format {_shown(found)}", seq=seq)


def refuse_ext(code: int, data: bytes) -> Any:
    """An ``ext_hook`` for msgpack: a payload holds JSON values, never extension types."""
    raise ValueError(f"msgpack extension type {code} where only JSON values are stored")


def _json_object(value: Any) -> bool:
    """Whether ``value`` is a dict of str keys and JSON values (meta, as evlog writes it)."""
    return type(value) is dict and is_json(value)


_JSON_LEAVES = (str, int, float, bool, type(None))


def is_json(value: Any) -> bool:
    """Whether a decoded value holds only what JSON can: objects with text keys, arrays, text, numbers, null."""
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            for key, inner in item.items():
                if type(key) is not str:
                    return False
                push(inner)
        elif kind is list or kind is tuple:
            extend(item)
        elif kind not in _JSON_LEAVES:
            return False
    return True


def _shown(value: Any) -> str:
    """A decoded value for a message: short, its type named."""
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _wrong_field(fields: tuple[Any, ...]) -> str:
    """Which envelope field of a decoded record is of the wrong kind (a rare path)."""
    _, ts, version, etype, stream, id_, _meta, data = fields
    if type(ts) is not int or ts < 0:
        return f"ts is {_shown(ts)}, not nanoseconds"
    if type(etype) is not str:
        return f"type is {_shown(etype)}, not text"
    if type(data) is not bytes:
        return f"data is {_shown(data)}, not a stored payload"
    if stream is not None and type(stream) is not str:
        return f"stream is {_shown(stream)}, not text"
    if version is not None and (type(version) is not int or version < 1):
        return f"version is {_shown(version)}, not a count"
    if (stream is None) is not (version is None):
        return "stream and version must be both present or both absent"
    if id_ is not None and type(id_) is not str:
        return f"id is {_shown(id_)}, not text"
    return "meta is not an object of JSON values"


def record_hash(value: bytes | memoryview) -> bytes:
    """The chain hash stored at the end of a record."""
    return bytes(value[-HASH_SIZE:])
