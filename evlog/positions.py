"""Positions in a log as users write them for ``--from``, ``--until`` and ``--at``.

A position is a seq (``1234``), a count from the end (``-100``: the 100th
event from the end), an absolute time (``2026-11-26``, ``2026-11-26T10:00``,
``...Z``, ``...+02:00``; a time without a zone is local time, as in
``git log --until``), a Unix time in seconds written as GNU ``date`` takes it
(``@1736467200``, ``@1736467200.25``), a relative time (``-15m``, ``-2h``,
``-7d``, ``now``, ``today``, ``yesterday``) or ``id:KEY``. A bare number is
always a seq, never a time.

Parsing is separate from resolving: :func:`parse_position` turns text into a
:class:`Position` without touching the log; :class:`evlog.log.Log` turns a
position into a seq (times by binary search over the non-decreasing ``ts``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from .errors import PositionError
from .timefmt import parse_rfc3339

_NS = 1_000_000_000

PositionKind = Literal["seq", "from_end", "time", "id"]


@dataclass(frozen=True)
class Position:
    """A parsed position: a seq, a count from the end, a time (ns) or an id."""

    kind: PositionKind
    value: int | str


_RELATIVE = re.compile(r"-(\d+)(s|m|h|d|w)\Z")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LOCAL = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\Z"
)
_ZONED_SHORT = re.compile(r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2})((?:[Zz]|[+-]\d{2}:?\d{2}))\Z")

_EPOCH = re.compile(r"@(\d{1,11})(?:\.(\d{1,9}))?\Z")

HELP = (
    "a seq (1234), -N (the Nth event from the end), a date or time "
    "(2026-11-26, 2026-11-26T10:00, ...Z, ...+02:00; local time without a zone), "
    "@SECONDS since 1970 (@1736467200), a relative time (-15m, -2h, -7d, now, today, yesterday) or id:KEY"
)


def parse_position(text: str | int, *, now_ns: int | None = None) -> Position:
    """Parse a position; raises :class:`PositionError` naming the accepted forms."""
    if isinstance(text, int):
        return _seq_or_from_end(text, str(text))
    raw = text.strip()
    if raw.startswith("id:"):
        if len(raw) == 3:
            raise PositionError("id: needs a key after it, as in id:order-17")
        return Position("id", raw[3:])
    if re.fullmatch(r"[+-]?\d+", raw):
        return _seq_or_from_end(int(raw), raw)
    epoch = _EPOCH.match(raw)
    if epoch:
        return Position("time", int(epoch.group(1)) * _NS + int((epoch.group(2) or "").ljust(9, "0")))
    now = time.time_ns() if now_ns is None else now_ns
    lowered = raw.lower()
    if lowered == "now":
        return Position("time", now)
    if lowered in ("today", "yesterday"):
        midnight = datetime.fromtimestamp(now // _NS).replace(hour=0, minute=0, second=0, microsecond=0)
        if lowered == "yesterday":
            midnight -= timedelta(days=1)
        return Position("time", int(midnight.timestamp()) * _NS)
    relative = _RELATIVE.match(lowered)
    if relative:
        seconds = int(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
        return Position("time", now - seconds * _NS)
    zoned = parse_rfc3339(raw)
    if zoned is None:
        short = _ZONED_SHORT.match(raw)
        if short:  # 2026-11-26T10:00Z: RFC 3339 wants seconds, people do not
            zoned = parse_rfc3339(f"{short.group(1)}:00{short.group(2)}")
    if zoned is not None:
        return Position("time", zoned)
    local = _LOCAL.match(raw)
    if local:
        return Position("time", _local_ns(local, raw))
    raise PositionError(f"{raw!r} is not a position; use {HELP}")


def _seq_or_from_end(number: int, raw: str) -> Position:
    if number > 0:
        return Position("seq", number)
    if number < 0:
        return Position("from_end", -number)
    raise PositionError(f"{raw!r} is not a position: seqs start at 1 (-1 is the last event)")


def _local_ns(match: re.Match[str], raw: str) -> int:
    parts = [int(g) if g else 0 for g in match.groups()[:6]]
    try:
        moment = datetime(*parts)  # type: ignore[arg-type]
    except ValueError as exc:
        raise PositionError(f"{raw!r} is not a valid date or time ({exc})") from None
    try:
        seconds = int(moment.timestamp())
    except (ValueError, OverflowError, OSError):
        # At the very edges of the calendar (0001-01-01) the local zone cannot be
        # looked up; no event is that old or that new, so the zone's standard offset will do.
        seconds = int(moment.replace(tzinfo=timezone.utc).timestamp()) + time.timezone
    fraction = (match.group(7) or "").ljust(9, "0")
    return seconds * _NS + int(fraction)


def reversed_range(start: Position, end: Position) -> str | None:
    """Why ``--from start --until end`` selects nothing because it is reversed, or None.

    Only positions of one kind compare without reading the log: two seqs,
    two times, two counts from the end. (A time after a seq may still be
    reversed; the log then simply has nothing between them.) A seq range
    that starts just after its end (``--from 7 --until 6``) is the empty
    range that reading "from the last seen + 1 up to the head" gives when
    nothing is new: not reversed.
    """
    if start.kind != end.kind or start.kind == "id":
        return None
    first, last = int(start.value), int(end.value)
    if start.kind == "from_end":
        first, last = -first, -last
    if first <= last + (start.kind != "time"):
        return None
    if start.kind == "time":
        from .timefmt import format_ts

        shown = (format_ts(int(start.value)), format_ts(int(end.value)))
    elif start.kind == "seq":
        shown = (f"seq {first}", f"seq {last}")
    else:
        shown = (f"-{start.value}", f"-{end.value}")
    return f"the range is empty because it is reversed: --from ({shown[0]}) is after --until ({shown[1]}); swap them"
