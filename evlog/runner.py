"""Running a fold over a log: where to start (snapshots), what to read, when to save.

``run_fold`` answers "what was the state at position P?": it resolves the
range, loads the newest snapshot of the definition at or before P (never one
after it), folds only the events since, and saves a snapshot every N events
on the way when asked. Records are read in chunks of raw bytes in short read
transactions and handed to the compiled loop (:mod:`evlog.fold`), which
decodes them itself: per event there is no Python call between the cursor
and the user's clause.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from . import scan, snapshots
from .errors import StorageError
from .fold import CompiledFold, FoldSpec, limited_steps, time_limited
from .log import Log
from .record import seq_key
from .store import Store

RAW_CHUNK = 4096


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


def raw_range(
    store: Store, first: int, last: int, progress: scan.Progress | None = None
) -> Iterator[tuple[int | Iterable[int], list[bytes]]]:
    """Record bytes of seqs ``first..last`` in chunks, each read in its own short transaction.

    ``progress`` hears of each chunk once it has been folded: the seqs done so far, of all in the range.
    """
    events = store.dbs[b"events"]
    seq = start = max(first, 1)
    total = max(last - start + 1, 0)
    while seq <= last:
        with store.reading(buffers=False) as txn:
            cursor = txn.cursor(db=events)
            if not cursor.set_key(seq_key(seq)):
                return
            values: list[bytes] = list(itertools.islice(cursor.iternext(keys=False), min(RAW_CHUNK, last - seq + 1)))
        yield seq, values  # contiguous: the first seq stands for the run
        seq += len(values)
        if progress is not None:
            progress(seq - start, total)


def raw_seqs(
    store: Store, seqs: Iterator[int], progress: scan.Progress | None = None
) -> Iterator[tuple[int | Iterable[int], list[bytes]]]:
    """Record bytes of the given increasing seqs (from the stream index), in chunks.

    ``progress`` hears of each chunk once it has been folded: the records done so far (the total is unknown).
    """
    events = store.dbs[b"events"]
    done = 0
    while True:
        batch = list(itertools.islice(seqs, RAW_CHUNK))
        if not batch:
            return
        with store.reading(buffers=False) as txn:
            values = [txn.get(seq_key(seq), db=events) for seq in batch]
        yield batch, values
        if progress is not None:
            done += len(batch)
            progress(done, None)


def run_fold(
    log: Log,
    spec: FoldSpec,
    *,
    from_: str | int | None = None,
    until: str | int | None = None,
    use_snapshots: bool = True,
    snapshot_every: int = 0,
    scan_mode: bool = False,
    on_snapshot_error: Callable[[str], None] | None = None,
    progress: scan.Progress | None = None,
    timeout: float | None = None,
) -> tuple[FoldResult, Iterator[tuple[int, int, Any, Any]] | None]:
    """Fold ``spec`` over the log up to ``until``.

    Returns the result and, with ``scan_mode``, an iterator of ``(seq, ts, key,
    state)`` after every event that must be consumed before the result's
    states are final. A scan always folds from the start (it must show every
    step), but may still save snapshots.

    ``progress`` is called after each chunk of records folded with the
    records done so far and all there are to fold (from the snapshot used,
    if any), or None for all when named streams are read through their index.

    ``timeout`` bounds the fold's run time in seconds (:func:`evlog.fold.time_limit`;
    with ``scan_mode``, the iteration of the steps). A Python fold file
    (``spec.fold_file``) is never given snapshots.
    """
    if spec.fold_file is not None:  # the user's own Python: never given snapshots (see FoldSpec)
        use_snapshots, snapshot_every = False, 0
    store = log.store()
    if snapshot_every:
        try:  # saving snapshots needs a writable handle, opened before any read begins
            store = log.store(write=True)
        except StorageError as exc:
            snapshot_every = 0
            if on_snapshot_error is not None:
                on_snapshot_error(f"snapshots are not being saved: {exc}")
    head = scan.head_seq(store)
    first = log.resolve(from_)
    last = min(log.resolve(until, end=True), head)
    digest = spec.digest(first)
    states: dict[Any, Any] = {}
    start = first
    snapshot_seq = None
    if use_snapshots and not scan_mode and last >= first:
        found = snapshots.latest(store, digest, last)
        if found is not None and found[0] >= first - 1:
            snapshot_seq, states = found
            start = snapshot_seq + 1
    compiled = CompiledFold(spec, scan=scan_mode, snapshots=snapshot_every > 0)
    save = _saver(store, digest, on_snapshot_error) if snapshot_every else None
    if spec.streams and not any(name.endswith("*") for name in spec.streams):
        chunks = raw_seqs(store, scan.merged_stream_seqs(store, spec.streams, start, last), progress)
        stream_test = None
    else:
        chunks = raw_range(store, start, last, progress)
        stream_test = scan.matcher(spec.streams, prefix_star=True)
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


def _saver(
    store: Store, digest: bytes, on_error: Callable[[str], None] | None
) -> Callable[[int, int, dict[Any, Any]], None]:
    """Save snapshots; a failure (a full disk, say) only warns, once: the answer is still right."""
    failed = False

    def save(seq: int, ts: int, states: dict[Any, Any]) -> None:
        nonlocal failed
        if failed:
            return
        try:
            snapshots.save(store, digest, seq, ts, states)
        except StorageError as exc:
            failed = True
            if on_error is not None:
                on_error(f"snapshots are not being saved: {exc}")

    return save
