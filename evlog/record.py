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

from .errors import NotALogError

RECORD_FORMAT = 1
HASH_SIZE = 16
GENESIS_HASH = bytes(HASH_SIZE)

_SEQ = struct.Struct(">Q")
seq_key = _SEQ.pack


def key_seq(key: bytes | memoryview) -> int:
    """The seq of an ``events`` key (8-byte big-endian)."""
    return int(_SEQ.unpack(key)[0])


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
    """``(format, ts, version, type, stream, id, meta, data_bytes)`` of a record."""
    try:
        fields: Envelope = msgpack.unpackb(value[:-HASH_SIZE], use_list=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise NotALogError(f"record at seq {seq} cannot be decoded ({exc}); run `evlog verify`") from exc
    if type(fields) is not tuple or len(fields) != 8 or type(fields[0]) is not int or fields[0] != RECORD_FORMAT:
        found = fields[0] if type(fields) is tuple and fields else "unknown"
        raise NotALogError(
            f"record at seq {seq} has format {found!r}, this evlog reads format "
            f"{RECORD_FORMAT}; upgrade evlog to read this log"
        )
    return fields


def record_hash(value: bytes | memoryview) -> bytes:
    """The chain hash stored at the end of a record."""
    return bytes(value[-HASH_SIZE:])
