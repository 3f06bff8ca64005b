"""Event times as text: RFC 3339 UTC with nine fractional digits, and back.

Times are stored as integer nanoseconds since the Unix epoch. They are shown
with all nine fractional digits so that printing an event and appending it
again keeps the exact time. Formatting runs once per printed event, so the
date-and-seconds prefix is cached: consecutive events mostly share a second.
"""

from __future__ import annotations

import calendar
import re
import time

_NS = 1_000_000_000

_cached_second: int | None = None
_cached_prefix = ""


def format_ts(ns: int) -> str:
    """``1764000000123456789`` -> ``'2025-11-24T16:00:00.123456789Z'``."""
    global _cached_second, _cached_prefix
    second, fraction = divmod(ns, _NS)
    if second != _cached_second:
        _cached_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _cached_second = second
    return f"{_cached_prefix}.{fraction:09d}Z"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))\Z"
)


def parse_rfc3339(text: str) -> int | None:
    """Nanoseconds for an RFC 3339 time that carries a zone (``Z`` or an offset).

    Returns None when ``text`` is not of that form or names an impossible date;
    callers that accept more forms (``evlog.positions``) try those next.
    """
    match = _RFC3339.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    if hour > 23 or minute > 59 or second > 60:
        return None
    whole = calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0))
    if match.group(9):
        if int(match.group(10)) > 23 or int(match.group(11)) > 59:
            return None
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        whole -= offset if match.group(9) == "+" else -offset
    fraction = (match.group(7) or "").ljust(9, "0")
    return whole * _NS + int(fraction)
