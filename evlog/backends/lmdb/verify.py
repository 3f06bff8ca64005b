"""The LMDB part of ``evlog verify``: the records from the ``events`` database, and its indexes.

The records pass itself (:mod:`evlog.verify`) is the same for every kind of
log; this module hands it the records, read in short read transactions of
:data:`~evlog.verify.CHUNK` records (so verifying a large log never pins old
pages while other processes append), and checks what LMDB keeps beside them:
the ``streams`` index (one pass, its entries against the events seen, both
ways), the ``ids`` index, the ``types`` and ``meta`` counters, the format
marker, and the stored projection and group entries.

The index passes compare hash sums (see :mod:`evlog.verify`); only when a
sum disagrees does a slower pass with look-ups run, to name each seq.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ...errors import DamagedLogError
from ...record import GENESIS_HASH, HASH_SIZE, seq_key
from ...verify import CHUNK, Finding, Pairs, decode_fields, foreign_key, name
from .store import U64, Store, parse_format

if TYPE_CHECKING:
    from ...verify import Verification
    from . import LmdbBackend

_INDEX_CHUNK = 8192

Checks = Generator[Finding, None, bool]
"""A pass that yields findings and returns whether an index agrees with the events."""


class LmdbChecker:
    """What :func:`evlog.verify.verify` needs of an LMDB log (see the module docstring)."""

    def __init__(self, backend: LmdbBackend) -> None:
        self.store: Store = backend.store
        self.side: list[Finding] = []
        self._past: dict[str, int] = {}

    def records(self, first: int, last: int) -> Iterator[Pairs]:
        """The ``events`` entries from ``first`` to ``last`` as they are: gaps and foreign keys included."""
        store = self.store
        events_db = store.dbs[b"events"]
        from_bytes = int.from_bytes
        resume = first
        while resume <= last:
            stop = resume + CHUNK - 1  # the last seq of this chunk's transaction
            pairs: Pairs = []
            more = False
            with store.reading(buffers=False) as txn:
                cursor = txn.cursor(db=events_db)
                if cursor.set_range(seq_key(resume)):
                    for key, value in cursor.iternext():
                        if len(key) != 8:
                            pairs.append((key, value))  # the records pass names it
                            continue
                        seq = from_bytes(key, "big")
                        if seq > last:
                            break  # appended after this run began: left for the next run
                        pairs.append((key, value))
                        resume = seq + 1
                        if seq >= stop:
                            more = True
                            break
            yield pairs
            if not more:
                return

    def indexes(self, run: Verification) -> Iterator[Finding]:
        """The ``streams`` and ``ids`` indexes against the events the records pass saw."""
        self.run = run
        streams_agree = yield from self._streams_index()
        ids_agree = yield from self._ids_index()
        # Only when an index disagrees: the slow passes that name each seq where it does.
        if not streams_agree:
            yield from self._streams_index(locate=True)
        if not ids_agree:
            yield from self._ids_index(locate=True)
        if not (streams_agree and ids_agree):
            yield from self._events_to_indexes(streams=not streams_agree, ids=not ids_agree)

    def finish(self, run: Verification) -> Iterator[Finding]:
        yield from self._past_head()
        yield from self._entries()

    def start(self, run: Verification) -> Iterator[Finding]:
        """The head, the counters and where the chain starts, as of now."""
        store = self.store
        self.run = run
        if store.format_problem is not None:
            yield Finding(None, store.format_problem)
        found: list[Finding] = []
        # One transaction: appends update the head and the counters together,
        # so the counters describe exactly the events up to this head.
        with store.reading(buffers=False) as txn:
            cursor = txn.cursor(db=store.dbs[b"events"])
            # Keys the events pass never reaches: before seq 1, and after the head.
            positioned = cursor.first()
            while positioned and cursor.key() < seq_key(1):
                key = cursor.key()
                zero = Finding(0, "is a key in the events, but seqs start at 1")
                found.append(zero if len(key) == 8 else foreign_key(key))
                positioned = cursor.next()
            positioned = cursor.last()
            while positioned and len(cursor.key()) != 8:
                found.append(foreign_key(cursor.key()))
                positioned = cursor.prev()
            run.last_seq = run.counts_at = last = int.from_bytes(cursor.key(), "big") if positioned else 0
            run.stored_types = stored_types = {}
            for key, value in txn.cursor(db=store.dbs[b"types"]):
                if not _utf8(key):
                    found.append(Finding(None, f"the types index has a name that is not UTF-8: {key[:40]!r}"))
                if len(value) == 8:
                    stored_types[name(key)] = U64.unpack(value)[0]
                else:
                    found.append(Finding(None, f"the types index holds a count for {name(key)!r} of "
                                               f"{len(value)} bytes, not 8"))
            found.extend(_meta_findings(txn, store))
            raw = txn.get(b"streams", db=store.dbs[b"meta"])
            run.stored_streams = U64.unpack(raw)[0] if raw is not None and len(raw) == 8 else None
            # The chain starts at genesis, or at the hash stored in the record
            # before the range (the head itself when the range is past it).
            run.start_hash, run.start_ts = GENESIS_HASH, 0
            before = min(run.first_seq, last + 1) - 1
            value = txn.get(seq_key(before), db=store.dbs[b"events"]) if before >= 1 else None
            if value is not None:
                fields = decode_fields(value)
                run.start_hash = value[-HASH_SIZE:]
                run.start_ts = fields[1] if fields is not None and type(fields[1]) is int else 0
            elif before >= 1:
                run.start_hash = b""
                found.append(Finding(before, "is missing; the hash chain cannot be checked into the next record"))
        yield from found

    def _streams_index(self, *, locate: bool = False) -> Checks:
        """One pass over the ``streams`` index: its entries in range against the events seen.

        With ``locate`` (the slow pass) each entry is also looked up: is it
        an event of that stream, and the version its place in the index says?
        """
        store = self.store
        first, last = self.run.first_seq, self.run.last_seq
        streams_db, events_db = store.dbs[b"streams"], store.dbs[b"events"]
        versions = self.run.versions
        from_key = seq_key(first)
        from_bytes = int.from_bytes
        total = past = version = 0
        agree = True
        misordered: set[str] = set()
        resume: bytes | None = None
        while True:
            found: list[Finding] = []
            with store.reading(buffers=False) as txn:
                cursor = txn.cursor(db=streams_db)
                more = cursor.set_range(resume) if resume is not None else cursor.first()
                budget = _INDEX_CHUNK
                while more and budget > 0:
                    key = cursor.key()
                    stream = name(key)
                    count = cursor.count()
                    after = 0  # entries past `last`: appended since verify began
                    # From seq 1 every entry is in range; else skip to the range.
                    if first == 1 or cursor.set_range_dup(key, from_key):
                        entries: Iterable[bytes] = cursor.iternext_dup(keys=False, values=True)
                        if locate:  # the n-th entry is version n: count back from the last
                            entries = list(entries)
                            version = count - len(entries)
                        for raw in entries:
                            seq = from_bytes(raw, "big")
                            if seq > last:
                                after += 1
                                past = max(past, seq)
                            else:
                                total += hash((stream, seq))
                                if locate:
                                    version += 1
                                    value = txn.get(raw, db=events_db)
                                    found.extend(_locate_entry(seq, value, stream, version, misordered))
                        budget -= count
                    # The stream's entries up to the head end at the version seen
                    # last; from seq 1 a stream with entries must have events.
                    seen = versions.get(stream)
                    if (seen is not None and seen != count - after) or (seen is None and first == 1 and count > after):
                        agree = False
                    more = cursor.set_range(key + b"\x00")  # the next stream
                resume = cursor.key() if more else None
            yield from found
            if resume is None:
                break
        if past:
            self._past["streams"] = past
        return agree and total == self.run.stream_sum

    def _ids_index(self, *, locate: bool = False) -> Checks:
        """One pass over the ``ids`` index: its entries in range against the ids seen.

        With ``locate`` (the slow pass) each entry is also looked up: does it
        point to an event with that id?
        """
        store = self.store
        first, last = self.run.first_seq, self.run.last_seq
        total = count = past = 0
        for pairs in _chunks(self.store, store.dbs[b"ids"], b""):
            found: list[Finding] = []
            for key, raw in pairs:
                seq = _seq(raw)
                if first <= seq <= last:
                    total += hash((name(key), seq))
                    count += 1
                elif seq > last:
                    past = max(past, seq)
                elif seq < 1:
                    found.append(Finding(None, f"the ids index maps {name(key)!r} to {raw.hex()}: no seq"))
            if locate:
                with store.reading(buffers=False) as txn:
                    for key, raw in pairs:
                        seq = _seq(raw)
                        if not first <= seq <= last:
                            continue
                        value = txn.get(raw, db=store.dbs[b"events"])
                        fields = decode_fields(value) if value is not None else None
                        listed = f"is in the ids index as {name(key)!r}"
                        if value is None:
                            found.append(Finding(seq, f"{listed} but there is no such event"))
                        elif fields is not None and fields[5] != name(key):
                            found.append(Finding(seq, f"{listed} but its id is {fields[5]!r}"))
            yield from found
        if past:
            self._past["ids"] = past
        return total == self.run.id_sum and count == self.run.ids

    def _events_to_indexes(self, *, streams: bool, ids: bool) -> Iterator[Finding]:
        """Each event in range: is it in the ``streams`` and ``ids`` indexes where it belongs?"""
        store = self.store
        last = self.run.last_seq
        for pairs in _chunks(self.store, store.dbs[b"events"], seq_key(self.run.first_seq)):
            found: list[Finding] = []
            with store.reading(buffers=False) as txn:
                in_streams = txn.cursor(db=store.dbs[b"streams"])
                for key, value in pairs:
                    seq = int.from_bytes(key, "big")
                    fields = decode_fields(value) if len(key) == 8 and seq <= last else None
                    if fields is None:
                        continue
                    stream, id_ = fields[4], fields[5]
                    if streams and type(stream) is str and not in_streams.set_key_dup(stream.encode(), key):
                        found.append(Finding(seq, f"is an event of {stream!r} missing from the streams index"))
                    if ids and type(id_) is str:
                        indexed = txn.get(id_.encode(), db=store.dbs[b"ids"])
                        if indexed is None:
                            found.append(Finding(seq, f"has id {id_!r}, which is missing from the ids index"))
                        elif indexed != key:
                            found.append(Finding(seq, f"has id {id_!r}, which the ids index gives {_seq(indexed)}"))
            yield from found
            if int.from_bytes(pairs[-1][0], "big") >= last:
                return

    def _entries(self) -> Iterator[Finding]:
        """Projections and groups decode as their readers decode them (snapshots: ``verify --snapshots``)."""
        store = self.store
        from ...groups import check_entry
        from ...snapshots import check_projection_entry

        for database, check in ((b"projections", check_projection_entry), (b"groups", check_entry)):
            with store.reading(buffers=False) as txn:
                entries: list[tuple[bytes, bytes]] = list(txn.cursor(db=store.dbs[database]))
            for key, value in entries:
                try:
                    check(key, value)
                except DamagedLogError as exc:
                    yield Finding(None, exc.what)

    def _past_head(self) -> Iterator[Finding]:
        """Index entries beyond the head verify started from must be events appended since."""
        store = self.store
        if not self._past:
            return
        with store.reading(buffers=False) as txn:
            cursor = txn.cursor(db=store.dbs[b"events"])
            head = int.from_bytes(cursor.key(), "big") if cursor.last() and len(cursor.key()) == 8 else 0
        for index, seq in sorted(self._past.items()):
            if seq > head:
                yield Finding(seq, f"is in the {index} index but past the last event (seq {head})")


def _chunks(store: Store, db: Any, start: bytes) -> Iterator[list[tuple[bytes, bytes]]]:
    """The (key, value) pairs of a database without duplicates from ``start`` on, each chunk read in its own
    short transaction (the slow passes then look things up in another)."""
    while True:
        with store.reading(buffers=False) as txn:
            cursor = txn.cursor(db=db)
            pairs = list(itertools.islice(cursor.iternext(), _INDEX_CHUNK)) if cursor.set_range(start) else []
        if pairs:
            yield pairs
        if len(pairs) < _INDEX_CHUNK:
            return
        start = pairs[-1][0] + b"\x00"  # the first key after the last one read


def _locate_entry(seq: int, value: bytes | None, stream: str, version: int, misordered: set[str]) -> list[Finding]:
    """What is wrong with a ``streams`` entry that should name ``value``, version ``version`` of ``stream``."""
    fields = decode_fields(value) if value is not None else None
    listed = f"is in the streams index under {stream!r}"
    if value is None:
        return [Finding(seq, f"{listed} but there is no such event")]
    if fields is None:
        return []  # the events pass has named it
    if fields[4] != stream:
        return [Finding(seq, f"{listed} but its stream is {fields[4]!r}")]
    if fields[2] != version and stream not in misordered:
        # After one entry too many or too few, every later one is off by one: say so once per stream.
        misordered.add(stream)
        return [Finding(seq, f"{listed} as version {version} but it is version {fields[2]}")]
    return []


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _meta_findings(txn: Any, store: Store) -> Iterator[Finding]:
    """What is wrong with the ``meta`` entries: the format, the log id, the counters."""
    meta = store.dbs[b"meta"]
    raw = txn.get(b"format", db=meta)
    if raw is not None and store.format_problem is None:
        try:
            parse_format(raw)
        except DamagedLogError as exc:
            yield Finding(None, exc.what)
    log_id = txn.get(b"log_id", db=meta)
    if log_id is not None and not _utf8(log_id):
        yield Finding(None, "the meta log id is not UTF-8 text")
    for key, what in ((b"created", "creation time"), (b"streams", "streams count")):
        raw = txn.get(key, db=meta)
        if raw is not None and len(raw) != 8:
            yield Finding(None, f"the meta {what} is {len(raw)} bytes, not 8")


def _seq(raw: bytes) -> int:
    """An index value as a seq; -1 when it is not 8 bytes (never a valid seq)."""
    return int.from_bytes(raw, "big") if len(raw) == 8 else -1
