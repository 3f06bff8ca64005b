"""How much a fold may write into a log as snapshots: limits the reader sets, not the log.

A log may come from someone else, and a stored projection carries its
author's snapshot interval. Saving snapshots writes into the reader's copy
(and whatever is written goes back with the log), so the reader's side
decides: an interval floor (a stored interval can make snapshots rarer,
never more frequent) and a size limit per snapshot. Kept apart from
:mod:`evlog.snapshots` so that the command line can name the defaults
without loading the fold machinery.
"""

from __future__ import annotations

DEFAULT_SNAPSHOT_EVERY = 50_000
"""Events between snapshots unless the reader says otherwise."""

DEFAULT_SNAPSHOT_MAX_SIZE = 16 * 1024 * 1024
"""The largest snapshot value saved, in bytes (a larger state is folded, not saved)."""



def allowed_interval(stored: int, reader: int) -> int:
    """How often a stored projection may save snapshots here: the rarer of its wish and the reader's floor.

    ``reader`` 0 saves none.
    """
    return 0 if reader <= 0 else max(stored, reader)
