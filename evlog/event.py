"""The event as the library hands it out, and the summary of an append.

An :class:`Event` keeps its payload as the msgpack bytes it was stored as and
decodes them only when ``data`` is first read: filters on type, stream and
time, and msgpack output, never pay for payloads they do not look at.
"""

from __future__ import annotations

from typing import Any

from .record import decode_payload
from .timefmt import format_ts

_UNSET: Any = object()


class Event:
    """One stored event. ``ts`` is integer nanoseconds since the epoch (UTC)."""

    __slots__ = ("_data", "data_bytes", "id", "meta", "seq", "stream", "ts", "type", "version")

    def __init__(
        self,
        seq: int,
        ts: int,
        type: str,
        stream: str | None,
        version: int | None,
        id: str | None,
        meta: dict[str, Any] | None,
        data_bytes: bytes,
    ) -> None:
        self.seq = seq
        self.ts = ts
        self.type = type
        self.stream = stream
        self.version = version
        self.id = id
        self.meta: dict[str, Any] = meta if meta is not None else {}
        self.data_bytes = data_bytes
        self._data: Any = _UNSET

    @property
    def data(self) -> Any:
        """The payload, decoded from msgpack on first access."""
        if self._data is _UNSET:
            self._data = decode_payload(self.data_bytes, self.seq)
        return self._data

    @property
    def ts_text(self) -> str:
        """``ts`` as RFC 3339 UTC with nine fractional digits."""
        return format_ts(self.ts)

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object that ``evlog replay`` prints."""
        return {
            "seq": self.seq,
            "ts": format_ts(self.ts),
            "type": self.type,
            "stream": self.stream,
            "version": self.version,
            "id": self.id,
            "data": self.data,
            "meta": self.meta,
        }

    def __repr__(self) -> str:
        return (
            f"Event(seq={self.seq}, ts={format_ts(self.ts)!r}, type={self.type!r}, "
            f"stream={self.stream!r}, version={self.version!r}, id={self.id!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (
            self.seq == other.seq
            and self.ts == other.ts
            and self.type == other.type
            and self.stream == other.stream
            and self.version == other.version
            and self.id == other.id
            and self.meta == other.meta
            and self.data_bytes == other.data_bytes
        )

    __hash__ = None  # type: ignore[assignment]


class AppendSummary:
    """What a (bulk) append did: the seqs written, duplicates and rejects.

    A plain class rather than a dataclass: ``dataclasses`` costs milliseconds
    to import, and this module is on the path of every ``evlog append``.
    """

    def __init__(self) -> None:
        self.appended = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.duplicates = 0
        self.skipped = 0
        self.events: list[Event] = []

    def __repr__(self) -> str:
        return f"AppendSummary({self.describe()!r})"

    def describe(self) -> str:
        """``appended 1,233 events (seq 5001-6233)`` and what else happened: counts grouped, seqs as ids."""
        noun = "event" if self.appended == 1 else "events"
        text = f"appended {self.appended:,} {noun}"
        if self.appended:
            text += (
                f" (seq {self.first_seq})"
                if self.first_seq == self.last_seq
                else f" (seq {self.first_seq}-{self.last_seq})"
            )
        if self.duplicates:
            text += f"; {self.duplicates:,} already present by id, not appended again"
        if self.skipped:
            text += f"; skipped {self.skipped:,} invalid"
        return text
