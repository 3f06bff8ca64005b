"""Process tuning for the commands that stream many events (replay, bulk append).

Two process-wide defaults of CPython and glibc cost these paths as much as
their work, so the commands (never the library, which must not change
process-wide settings on its own) adjust them once at start:

* glibc trims the heap top as soon as 128 KiB are free; the steady
  allocate-and-free of per-event buffers then grows and trims the heap over
  and over, and the page faults cost about as much system time as the work
  itself (measured: a 200,000-event replay spent 0.47 s in the kernel, 0.02 s
  with trimming raised).
* The cyclic garbage collector runs every 700 container allocations; bulk
  appends allocate several per event, all acyclic. Collections are made rarer,
  not disabled, so a long-running append still collects.
"""

from __future__ import annotations

import gc

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2


def for_streaming() -> None:
    """Keep freed heap memory for reuse and make garbage collections rarer."""
    gc.set_threshold(100_000, 50, 100)
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc: nothing to tune
    mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    mallopt(_M_TOP_PAD, 16 << 20)
