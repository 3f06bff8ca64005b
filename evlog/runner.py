"""Running a fold over a log: where to start (snapshots), what to read, when to save.

``run_fold`` answers "what was the state at position P?": it resolves the
range, loads the newest snapshot of the definition at or before P (never one
after it), folds only the events since, and saves a snapshot every N events
on the way when asked. Snapshots are kept with the log whatever its kind
(:mod:`evlog.snapshots`), so a fold over a log on a server starts from one
too. Records are read in chunks of raw bytes in short read
transactions and handed to the compiled loop (:mod:`evlog.fold`), which
decodes them itself: per event there is no Python call between the cursor
and the user's clause.

Saving snapshots writes to the log, so the reader sets its limits: none are
written to a log the user cannot write (it is opened read-only), and a state
larger than the size limit is left unsaved. A stored projection's interval
is capped before it gets here (:func:`evlog.snapshots.allowed_interval`).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import scan, snapshots
from .errors import StorageError
from .fold import CompiledFold, FoldSpec, limited_steps, time_limited
from .log import Log

if TYPE_CHECKING:
    from .backends import Tables


@dataclass
class FoldResult:
    """The states after the fold (key -> state; key None without ``--by``) and how they were reached."""

    states: dict[Any, Any]
    first: int
    last: int
    snapshot_seq: int | None
    folded_from: int

    def value(self, *, by: bool) -> Any:
        """The answer: the single state, or an object key -> state with ``--by``."""
        if by:
            return self.states
        return self.states.get(None)


def run_fold(
    log: Log,
    spec: FoldSpec,
    *,
    from_: str | int | None = None,
    until: str | int | None = None,
    use_snapshots: bool = True,
    snapshot_every: int = 0,
    snapshot_max_size: int = snapshots.DEFAULT_SNAPSHOT_MAX_SIZE,
    scan_mode: bool = False,
    on_snapshot_error: Callable[[str], None] | None = None,
    progress: scan.Progress | None = None,
    start_state: tuple[int, dict[Any, Any]] | None = None,
    timeout: float | None = None,
    compiled: CompiledFold | None = None,
) -> tuple[FoldResult, Iterator[tuple[int, int, Any, Any]] | None]:
    """Fold ``spec`` over the log up to ``until``.

    Returns the result and, with ``scan_mode``, an iterator of ``(seq, ts, key,
    state)`` after every event that must be consumed before the result's
    states are final. A scan always folds from the start (it must show every
    step), but may still save snapshots.

    Snapshots are saved every ``snapshot_every`` events only where the user
    may write the log (a log they cannot write is opened read-only and gets
    none), and only those of at most ``snapshot_max_size`` bytes; each
    limit that stops a save is said once through ``on_snapshot_error``.

    ``start_state`` is ``(seq, states)`` to fold on from, as from a snapshot
    but without one (verifying snapshots walks a definition's seqs this way);
    the states are folded into in place.

    ``progress`` is called after each chunk of records folded with the
    records done so far and all there are to fold (from the snapshot used,
    if any), or None for all when named streams are read through their index.

    ``timeout`` bounds the fold's run time in seconds (:func:`evlog.fold.time_limit`;
    with ``scan_mode``, the iteration of the steps). A Python fold file
    (``spec.fold_file``) is never given snapshots.

    ``compiled`` is ``spec`` compiled before, reused by a caller that folds a
    few events at a time (a live sync): used when made for the same scan mode
    and snapshot saving as this call needs, else the fold is compiled anew.
    """
    if spec.fold_file is not None:  # the user's own Python: never given snapshots (see FoldSpec)
        use_snapshots, snapshot_every = False, 0
    # A local log says by its files whether the user may write it; a server says so per request
    # (a refused save is said once, below, and the fold goes on).
    if snapshot_every and not log.is_remote and not writable(log.path):
        snapshot_every = 0
        if on_snapshot_error is not None:
            on_snapshot_error(f"snapshots are not being saved: you cannot write to the log {log.path}")
    backend = log.backend()
    if snapshot_every:
        try:  # saving snapshots needs a writable handle, opened before any read begins
            backend = log.backend(write=True)
        except StorageError as exc:
            snapshot_every = 0
            backend = log.backend()  # the failed attempt closed the read-only one
            if on_snapshot_error is not None:
                on_snapshot_error(f"snapshots are not being saved: {exc}")
    head = backend.head()
    first = log.resolve(from_)
    last = min(log.resolve(until, end=True), head)
    states: dict[Any, Any] = {}
    start = first
    snapshot_seq = None
    if start_state is not None:
        snapshot_seq, states = start_state
        start = snapshot_seq + 1
    elif use_snapshots and not scan_mode and last >= first:
        found = snapshots.latest(backend, spec, first, last)
        if found is not None:
            snapshot_seq, states = found
            start = snapshot_seq + 1
    if compiled is None or compiled.spec is not spec or compiled.scan != scan_mode \
            or compiled.snapshots != (snapshot_every > 0):
        compiled = CompiledFold(spec, scan=scan_mode, snapshots=snapshot_every > 0)
    chunks: Iterable[tuple[int | Iterable[int], list[bytes]]]
    if spec.streams and not any(scan.is_glob(name) for name in spec.streams):
        chunks = backend.raw_seqs(scan.merged_stream_seqs(backend, spec.streams, start, last), progress)
        stream_test = None
    else:
        chunks = backend.raw_range(start, last, progress)
        stream_test = scan.matcher(spec.streams, prefix_star=True)
    save = None
    if snapshot_every:
        chunks = recent = _Recent(chunks)
        save = _saver(backend, spec, first, snapshot_max_size, on_snapshot_error, recent.record)
    outcome = time_limited(timeout, compiled.run)(
        chunks,
        states,
        types=scan.matcher(spec.types, prefix_star=False),
        streams=stream_test,
        snapshot=save,
        snapshot_every=snapshot_every,
        start_seq=snapshot_seq if snapshot_seq is not None else start - 1,
    )
    result = FoldResult(states, first, last, snapshot_seq, start)
    if scan_mode:
        return result, limited_steps(outcome, timeout)
    return result, None


def writable(path: str) -> bool:
    """Whether the user may write the log at ``path`` (its directory and its data file)."""
    return os.access(path, os.W_OK) and os.access(os.path.join(path, "data.mdb"), os.W_OK)


class _Recent:
    """The chunks being folded, remembering the last two: a snapshot's chain hash is taken from the
    record that was folded, with no read of the log in the middle of reading it (on a server, a
    request would wait behind the messages already on their way)."""

    def __init__(self, chunks: Iterable[tuple[int | Iterable[int], list[bytes]]]) -> None:
        self.chunks = chunks
        self.kept: list[tuple[int | Iterable[int], list[bytes]]] = []

    def __iter__(self) -> Iterator[tuple[int | Iterable[int], list[bytes]]]:
        for chunk in self.chunks:
            self.kept = [*self.kept[-1:], chunk]
            yield chunk

    def record(self, seq: int) -> bytes | None:
        for first, records in self.kept:
            if isinstance(first, int):
                if 0 <= seq - first < len(records):
                    return records[seq - first]
            elif isinstance(first, Sequence):
                index = bisect.bisect_left(first, seq)
                if index < len(first) and first[index] == seq:
                    return records[index]
        return None


def _saver(
    tables: Tables, spec: FoldSpec, first: int, max_size: int, on_error: Callable[[str], None] | None,
    folded: Callable[[int], bytes | None],
) -> Callable[[int, int, dict[Any, Any]], None]:
    """Save snapshots; a failure (a full disk, say) only warns, once: the answer is still right.

    A state over ``max_size``, or over what the log's table can hold (a server's
    message size), is not saved, said once; later, smaller states still are.
    """
    failed = False
    too_large = False
    limit, limit_is = snapshots.room(tables, max_size)

    def save(seq: int, ts: int, states: dict[Any, Any]) -> None:
        nonlocal failed, too_large
        if failed:
            return
        try:
            size = snapshots.save(tables, spec, first, seq, ts, states, max_size=max_size, record=folded(seq))
        except StorageError as exc:
            failed = True
            if on_error is not None:
                on_error(f"snapshots are not being saved: {exc}")
            return
        if limit is not None and size > limit and not too_large:
            too_large = True
            if on_error is not None:
                on_error(f"the state after seq {seq} is {size:,} bytes, more than {limit_is}: it was not saved")

    return save
