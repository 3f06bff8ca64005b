"""Reading a log, whatever keeps it: rows, filters, time -> seq search, merged streams.

A row is a seq with its decoded envelope. Backends (:mod:`evlog.backends`)
hand out rows and record bytes in chunks; what is common to every backend
lives here: the stream and type patterns (shell globs), the binary search
from a time to a seq over a log whose ts never goes backwards, and the merge
of several streams' seqs into seq order.
"""

from __future__ import annotations

import fnmatch
import heapq
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from .record import Envelope

if TYPE_CHECKING:
    from .backends import Backend

CHUNK = 1024

Row = tuple[int, Envelope]
"""A seq with its decoded envelope ``(format, ts, version, type, stream, id, meta, data_bytes)``."""

Progress = Callable[[int, int | None], None]
"""Called after each chunk of work with the units done so far and all of them (None: not known).

For reporting only: readers call it once per chunk, never per event.
"""


def first_seq_at_or_after(backend: Backend, ns: int, last: int) -> int:
    """The first seq whose ts >= ns (``last + 1`` when none): binary search."""
    lo, hi = 1, last + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if backend.ts_at(mid) >= ns:
            hi = mid
        else:
            lo = mid + 1
    return lo


def last_seq_at_or_before(backend: Backend, ns: int, last: int) -> int:
    """The last seq whose ts <= ns (0 when none)."""
    return first_seq_at_or_after(backend, ns + 1, last) - 1


GLOB_CHARACTERS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    """Whether a ``--stream``/``--type`` pattern is a glob, not an exact name."""
    return not GLOB_CHARACTERS.isdisjoint(pattern)


def matcher(patterns: Sequence[str] | None, *, prefix_star: bool = False) -> Callable[[str | None], bool] | None:
    """A cached predicate for stream or type patterns: shell globs (``*``, ``?``, ``[...]``); None matches all.

    Streams and types take the same patterns. Exact names are a set look-up
    and a single trailing ``*`` a prefix test, the patterns people write
    most; anything else is one regular expression. Results are cached per
    name, the cache cleared before it grows large (streams are many).
    ``prefix_star`` is accepted for older callers and changes nothing.
    """
    if not patterns:
        return None
    exact = {p for p in patterns if not is_glob(p)}
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*") and not is_glob(p[:-1]))
    others = [p for p in patterns if is_glob(p) and not (p.endswith("*") and not is_glob(p[:-1]))]
    if others:
        regex = re.compile("|".join(fnmatch.translate(p) for p in others))

        def test(name: str | None) -> bool:
            return name is not None and (name in exact or name.startswith(prefixes) or regex.match(name) is not None)

    else:

        def test(name: str | None) -> bool:
            return name is not None and (name in exact or name.startswith(prefixes))

    cache: dict[str | None, bool] = {}

    def cached(name: str | None) -> bool:
        try:
            return cache[name]
        except KeyError:
            if len(cache) > 100_000:
                cache.clear()
            result = cache[name] = test(name)
            return result

    return cached


def merged_stream_seqs(backend: Backend, names: Sequence[str], first: int, last: int) -> Iterator[int]:
    """Seqs of several streams merged into seq order."""
    unique = list(dict.fromkeys(names))
    if len(unique) == 1:
        return backend.stream_seqs(unique[0], first, last)
    return heapq.merge(*(backend.stream_seqs(name, first, last) for name in unique))
