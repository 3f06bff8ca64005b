"""Which databases a log is synced into: a small record in the log, so status can find them.

A target keeps its own checkpoint (how far each table is), and that stays
the truth; the log only remembers *where* it was synced to: the source (a
projection, or the events), the target's URL without any password, and the
table. ``evlog projection status`` reads this list, asks each target for
its checkpoint, and shows the lag against the log's head.

Why in the log: the list then travels with it (backups) and every user of
the log sees the same targets, as they see the same projections. It is one
entry per (source, URL, table) in the log's ``meta`` table (LMDB's ``meta``
database, a server log's ``meta`` bucket) under the prefix
``sync-target:``; entries other code does not know are ignored by it. A log
the user cannot write is still synced; it only cannot remember where (said
once through ``warn``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack

from ..errors import DamagedLogError, StorageError

if TYPE_CHECKING:
    from ..log import Log

PREFIX = b"sync-target:"


@dataclass(frozen=True)
class RecordedTarget:
    """A place a log was synced into."""

    source: str
    url: str
    table: str
    added: int


def _key(source: str, url: str, table: str) -> bytes:
    packed: bytes = msgpack.packb([source, url, table])
    return PREFIX + packed


def record_target(log: Log, source: str, url: str, table: str, warn: Callable[[str], None] | None = None) -> None:
    """Remember that ``source`` is synced into ``table`` at ``url`` (once; later calls write nothing)."""
    key = _key(source, url, table)
    if log.backend().table("meta").get(key) is not None:
        return
    try:
        log.backend(write=True).table("meta").put(key, msgpack.packb({"added": time.time_ns()}))
    except StorageError as exc:
        if warn is not None:
            warn(f"this sync is not recorded in the log, so evlog projection status will not list it: {exc}")


def recorded_targets(log: Log) -> list[RecordedTarget]:
    """Every recorded target of the log, in key order (by source, then URL, then table)."""
    meta = log.backend().table("meta")
    found: list[RecordedTarget] = []
    for key in meta.list_keys():
        if not key.startswith(PREFIX):
            continue
        value = meta.get(key)
        if value is None:
            continue  # removed meanwhile
        try:
            source, url, table = msgpack.unpackb(key[len(PREFIX):])
            added = msgpack.unpackb(value)["added"]
            if not all(isinstance(part, str) for part in (source, url, table)) or type(added) is not int:
                raise ValueError("a field of the wrong kind")
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            raise DamagedLogError(f"a sync target entry in meta does not decode ({exc})") from None
        found.append(RecordedTarget(source, url, table, added))
    return found
