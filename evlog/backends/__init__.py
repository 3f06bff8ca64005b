"""Where a log's events are kept: the storage interface under :class:`evlog.Log`.

A backend keeps records (the bytes of :mod:`evlog.record`, the same on every
backend, so a log copied from one to another has the same head hash) under
gapless seqs, with an index of each stream's seqs, an index of ids, and
counts of types and streams, and a few small tables beside them (snapshots,
projections) whose meaning is kept in one place, :mod:`evlog.snapshots`. Everything else (positions, filters, folds,
output, following, the command line) is written once, over this interface.

The write path is shared too. What a batch becomes (each event's seq, ts,
stream version and chain hash; duplicates by id; ``expect`` conflicts) is
computed once, in :mod:`evlog.batch`, against a :class:`WriteTxn`: a view of
the log's head that a backend guarantees does not move until the batch is
stored (LMDB: one writer at a time; JetStream: an expected-last-sequence
header that makes the server refuse the batch if the head moved, after which
the backend runs the computation again).

Backends are chosen by the log's location: a directory is an LMDB log, a
``nats://`` or ``tls://`` URL a JetStream one. A backend's client is
imported only when a log of its kind is opened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from ..scan import Progress, Row

T = TypeVar("T")

Chunks = Iterator[tuple["int | Iterable[int]", list[bytes]]]
"""Record bytes in chunks: ``(first seq, records)`` of a contiguous run, or ``(seqs, records)``."""


StreamEntry = tuple[str, int, int, int]
"""A stream as its index knows it: name, version (its number of events), first seq, last seq."""


@dataclass(frozen=True)
class Totals:
    """What a whole log holds, as of one head, without reading its records (for ``evlog stats``)."""

    head: int
    types: dict[str, int]
    in_streams: int
    """Events that belong to a stream."""
    streams: int
    top_streams: list[tuple[str, int]]
    """The streams with the most events (most first, ties by name) and their counts."""


class WriteTxn(Protocol):
    """The log as one batch of appends sees it; nothing moves until :meth:`put` has stored the batch."""

    def last(self) -> tuple[int, bytes | None]:
        """The head seq and its record (``(0, None)`` for an empty log)."""

    def id_seq(self, id_key: bytes) -> int | None:
        """The seq of the event with this id, or None."""

    def record(self, seq: int) -> bytes | None:
        """The record at ``seq`` (None when there is none)."""

    def stream_version(self, stream_key: bytes) -> int:
        """How many events the stream has (0 for a new stream)."""

    def put(
        self,
        rows: Sequence[tuple[bytes, bytes]],
        index_rows: Sequence[tuple[bytes, bytes]],
        ids: dict[bytes, bytes],
        type_counts: dict[str, int],
        new_streams: int,
    ) -> None:
        """Store the batch: records by seq key, stream index rows, new ids, count increments."""


class Table(Protocol):
    """A named table of byte keys and values kept with the log (``snapshots``, ``projections``).

    LMDB keeps it in a named database, JetStream in a key-value bucket of the
    log. Keys sort as bytes on both, so "the newest key of a prefix before
    another" means the same everywhere. Where two writers could race, a
    change is made with :meth:`swap`, which only changes a key still holding
    the value the caller read.
    """

    max_value: int | None
    """The largest value the table can hold (a server's message size), or None for no limit of its own."""

    def get(self, key: bytes) -> bytes | None:
        """The key's value, or None."""

    def put(self, key: bytes, value: bytes) -> None:
        """Set the key's value, whatever it was."""

    def swap(self, key: bytes, value: bytes | None, *, expected: bytes | None) -> bool:
        """Set (None: delete) the key only if it still holds ``expected`` (None: no value); whether it did."""

    def delete(self, key: bytes) -> None:
        """Remove the key (nothing happens for a key without a value)."""

    def list_keys(self) -> list[bytes]:
        """Every key, sorted as bytes."""

    def newest(self, prefix: bytes, before: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with ``prefix`` and sorts before ``before``, the greatest key first."""


class Tables(Protocol):
    """Where a log's tables are, with the records their entries are checked against."""

    def table(self, name: str) -> Table:
        """The table ``name`` (``snapshots`` or ``projections``)."""

    def record(self, seq: int) -> bytes | None:
        """The record at ``seq``, or None when there is none."""


class Waiter(Protocol):
    """Wakes a follower when the log may have grown."""

    def wait(self, timeout: float, output: int | None = None) -> bool:
        """Sleep until a commit is signalled (True), ``timeout`` passes or ``output``'s reader leaves."""

    def close(self) -> None: ...


class GroupHold(Protocol):
    """A follower's hold on one group: one follower per group at a time (see :mod:`evlog.groups`)."""

    def acquire(self) -> None:
        """Take the hold, or GroupBusyError naming the holder."""

    def keep(self) -> None:
        """Say that the holder is alive (a hold that can expire is renewed); GroupBusyError if it was lost."""

    def release(self, *, remove: bool = False) -> None:
        """Give the hold up; with ``remove`` (the group is gone) leave nothing of it behind."""

    def __enter__(self) -> GroupHold: ...

    def __exit__(self, *exc_info: object) -> None: ...


class GroupEntries(Protocol):
    """The log's ``groups`` table: byte keys and values exactly as :mod:`evlog.groups` encodes them.

    Each operation is atomic on its own; a ``revision`` (what :meth:`get`
    returned with the value) makes a write compare-and-set, so that two
    writers of one entry never lose each other's change.
    """

    def get(self, key: bytes) -> tuple[bytes, object] | None:
        """The value and its revision, or None."""

    def items(self, prefix: bytes = b"") -> list[tuple[bytes, bytes, object]]:
        """``(key, value, revision)`` of every entry (or those under ``prefix``: a name and 0xFF), by key."""

    def put(self, key: bytes, value: bytes) -> None:
        """Set the value, whatever it was."""

    def swap(self, key: bytes, value: bytes, revision: object | None) -> bool:
        """Set the value if the entry is still at ``revision`` (None: if it has none); False if it moved."""

    def delete(self, key: bytes, revision: object | None = None) -> bool:
        """Remove the entry (only if still at ``revision``, when given); False if there was none (or it moved)."""

    def hold(self, name: str) -> GroupHold:
        """The hold on group ``name`` (not yet taken)."""

    def wake(self) -> None:
        """Wake the log's followers (a group's dead letters were queued)."""


class Backend(Protocol):
    """An open log of one kind (LMDB or JetStream)."""

    location: str
    writable: bool

    def close(self) -> None: ...

    def head(self) -> int:
        """The last seq (0 for an empty log)."""

    def ts_at(self, seq: int) -> int:
        """The ts of the event at ``seq``, which must exist (a missing one is damage)."""

    def rows(
        self,
        first: int,
        last: int,
        *,
        types: Callable[[str | None], bool] | None = None,
        streams: Callable[[str | None], bool] | None = None,
        progress: Progress | None = None,
    ) -> Iterator[Row]:
        """Rows with seq in ``[first, last]`` that pass both filters, in seq order."""

    def rows_by_seq(
        self,
        seqs: Iterable[int],
        *,
        types: Callable[[str | None], bool] | None = None,
        progress: Progress | None = None,
    ) -> Iterator[Row]:
        """The rows of the given increasing seqs (from the stream index)."""

    def stream_seqs(self, stream: str, first: int, last: int) -> Iterator[int]:
        """Seqs of one stream's events within ``[first, last]``."""

    def raw_range(self, first: int, last: int, progress: Progress | None = None) -> Chunks:
        """Record bytes of seqs ``first..last`` in contiguous chunks (for folds)."""

    def raw_seqs(self, seqs: Iterator[int], progress: Progress | None = None) -> Chunks:
        """Record bytes of the given increasing seqs, in chunks."""

    def id_seq(self, event_id: str) -> int | None:
        """The seq of the event with this id, or None."""

    def type_counts(self) -> dict[str, int]:
        """Each type's number of events."""

    def totals(self, top: int) -> Totals:
        """The head, type and stream counts of the whole log, consistent with each other."""

    def stream_index(self, prefix: str) -> Iterator[StreamEntry]:
        """The streams whose name starts with ``prefix``, in name order."""

    def ts_of(self, seqs: Sequence[int]) -> list[int]:
        """The ts of each of these events (which must exist: a missing one is damage)."""

    def describe(self) -> dict[str, Any]:
        """Facts for ``evlog info``: see :meth:`evlog.Log.info`."""

    def write(self, work: Callable[[WriteTxn], T]) -> T:
        """Run ``work`` against the head and store what it puts; ``work`` may run more than once."""

    def waiter(self) -> Waiter:
        """Something a follower sleeps in until the log may have grown."""

    def table(self, name: str) -> Table:
        """The log's table ``name`` (``snapshots``, ``projections`` or ``meta``): see :class:`Table`."""

    def record(self, seq: int) -> bytes | None:
        """The record at ``seq``, or None when there is none."""

    def housekeeping(self) -> None:
        """Periodic upkeep while following (never raises)."""

    def groups(self) -> GroupEntries:
        """The log's durable groups: their entries and the hold of their one follower."""


def is_url(location: str) -> bool:
    """Whether a log location names a server (``nats://``, ``tls://``) rather than a directory."""
    return location.startswith(("nats://", "tls://"))


def open_backend(location: str, *, create: bool, writable: bool, check_format: bool = True) -> Backend:
    """Open the log at ``location`` with the backend its form names."""
    if is_url(location):
        from .jetstream.backend import open_jetstream

        return open_jetstream(location, create=create, writable=writable, check_config=check_format)
    from .lmdb import LmdbBackend

    return LmdbBackend(location, create=create, writable=writable, check_format=check_format)
