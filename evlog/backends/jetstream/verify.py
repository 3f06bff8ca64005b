"""The JetStream part of ``evlog verify``: the messages, the stream's config and the derived index.

The records pass (:mod:`evlog.verify`) is the same as for an LMDB log; this
module hands it the records, read with an ordered consumer, and checks what
JetStream keeps around them:

* each message's subject is the subject of its record's stream (a message
  on another subject, or on the subject of another stream, is damage: the
  stream's version is the count of its subject);
* a ``Nats-Msg-Id`` header, when present, is the record's id (the server
  deduplicates by it);
* the stream's config still denies deletes and purges and sets no limits
  (the log is opened without refusing such a stream, so that it is said here);
* the derived index in the ``meta`` bucket (types, streams, ``upto``)
  against what the records up to ``upto`` hold, and the ``ids`` bucket's
  id -> seq entries, compared by hash sums as on LMDB, with look-ups only
  where they disagree.

Verify writes nothing: a bucket that does not exist yet is an index that was
never built, not one to create.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ...errors import DamagedLogError, LogNotFoundError
from ...record import GENESIS_HASH, HASH_SIZE, seq_key
from ...verify import CHUNK, Finding, Pairs, decode_fields, sum_entries
from .backend import _INDEX_KEY, _decode_index
from .client import config_problems
from .messages import MSG_ID, StoredMsg
from .url import kv_key_parts, stream_of_subject

if TYPE_CHECKING:
    from ...verify import Verification
    from .backend import JetStreamBackend
    from .kv import Bucket


class JetStreamChecker:
    """What :func:`evlog.verify.verify` needs of a log on a server (see the module docstring)."""

    def __init__(self, backend: JetStreamBackend) -> None:
        self.client = backend.client
        self.name = backend.name
        self.side: list[Finding] = []
        self._past = 0

    def _bucket(self, purpose: str) -> Bucket | None:
        from .kv import Bucket

        try:
            return Bucket.open(self.client, purpose, create=False)
        except LogNotFoundError:
            return None

    def start(self, run: Verification) -> Iterator[Finding]:
        """The stream's config, the derived index's checkpoint, the head and where the chain starts."""
        self.run = run
        info = self.client.stream_info()
        for problem in config_problems(info.config, self.name):
            yield Finding(None, f"the stream's config was changed: {problem}")
        # The index before the head: it is written after the events it counts, so in a sound
        # log it is never ahead of a head read after it.
        meta = self._bucket("meta")
        entry = meta.get(_INDEX_KEY) if meta is not None else None
        head = self.client.stream_info().last_seq
        run.last_seq = head
        run.stored_types, run.stored_streams, run.counts_at = {}, 0, 0  # no index built yet: it counts nothing
        if entry is not None:
            try:
                index = _decode_index(entry.value)
            except DamagedLogError as exc:
                yield Finding(None, exc.what)
                run.check_counts = False
            else:
                if index.upto > head:
                    yield Finding(None, f"the index in the meta bucket is up to seq {index.upto}, "
                                        f"past the last event (seq {head})")
                    run.check_counts = False
                else:
                    run.stored_types, run.stored_streams, run.counts_at = index.types, index.streams, index.upto
        run.start_hash, run.start_ts = GENESIS_HASH, 0
        before = min(run.first_seq, head + 1) - 1
        if before >= 1:
            found = self.client.get(before, leader=True)  # a lagging replica must not look like a gap
            if found is None:
                run.start_hash = b""
                yield Finding(before, "is missing; the hash chain cannot be checked into the next record")
            else:
                fields = decode_fields(found.data)
                run.start_hash = found.data[-HASH_SIZE:]
                run.start_ts = fields[1] if fields is not None and type(fields[1]) is int else 0

    def records(self, first: int, last: int) -> Iterator[Pairs]:
        """The messages of ``first..last`` as ``(key, record)``, checking each one's subject and headers."""
        counts_at = self.run_counts_at
        ranges = [(first, last)]
        if first <= counts_at < last:  # a chunk must end at the index's checkpoint
            ranges = [(first, counts_at), (counts_at + 1, last)]
        for start, end in ranges:
            for chunk in self.client.read(start, end, chunk=CHUNK):
                pairs: Pairs = []
                for message in chunk:
                    pairs.append((seq_key(message.seq), message.data))
                    self._message(message)
                yield pairs

    def _message(self, message: StoredMsg) -> None:
        """The subject and headers of one message against its record."""
        seq = message.seq
        stream: str | None = None
        try:
            stream = stream_of_subject(self.name, message.subject)
            ours = True
        except ValueError:
            self.side.append(Finding(seq, f"is on subject {message.subject!r}, which is not an event subject "
                                          "of this log"))
            ours = False
        fields = decode_fields(message.data)
        if fields is None:
            return  # the records pass names it
        if ours and fields[4] != stream:
            self.side.append(Finding(seq, f"is an event of {_stream(fields[4])} on the subject of "
                                          f"{_stream(stream)} ({message.subject})"))
        msg_id = (message.headers or {}).get(MSG_ID)
        if msg_id is not None and msg_id != fields[5]:
            self.side.append(Finding(seq, f"has message id {msg_id!r} but its record's id is {fields[5]!r}"))

    @property
    def run_counts_at(self) -> int:
        return self.run.counts_at if self.run.check_counts else 0

    def indexes(self, run: Verification) -> Iterator[Finding]:
        """The ``ids`` bucket: entries up to the checkpoint against the events' ids, later ones one by one."""
        bucket = self._bucket("ids")
        if bucket is None:
            return
        first, last, upto = run.first_seq, run.last_seq, self.run_counts_at
        entries: list[tuple[str, int]] = []
        for key, entry in bucket.items():
            raw = entry.value
            try:
                parts = kv_key_parts(key)
            except ValueError:
                parts = []
            if len(parts) != 1:
                yield Finding(None, f"the ids index has a key that is not an encoded id: {key[:80]!r}")
                continue
            event_id = parts[0]
            seq = int(raw) if raw.isdigit() and len(raw) < 20 else -1
            if seq < 1:
                yield Finding(None, f"the ids index maps {event_id!r} to {raw[:40]!r}: no seq")
                continue
            entries.append((event_id, seq))
        counted = [entry for entry in entries if first <= entry[1] <= upto]
        # Written before the checkpoint moved on (a process stopped in between): each is looked up.
        later = [entry for entry in entries if upto < entry[1] <= last]
        self._past = max((seq for _, seq in entries if seq > last), default=0)
        agree = sum_entries(counted) == (run.counted_id_sum, run.counted_ids)
        yield from self._locate(later if agree else counted + later)
        if not agree:
            yield from self._events_to_ids(dict(entries), first, upto)

    def _locate(self, entries: list[tuple[str, int]]) -> Iterator[Finding]:
        """Each entry against the event it names."""
        for event_id, seq in sorted(entries, key=lambda entry: entry[1]):
            found = self.client.get(seq, leader=True)
            fields = decode_fields(found.data) if found is not None else None
            listed = f"is in the ids index as {event_id!r}"
            if found is None:
                yield Finding(seq, f"{listed} but there is no such event")
            elif fields is not None and fields[5] != event_id:
                yield Finding(seq, f"{listed} but its id is {fields[5]!r}")

    def _events_to_ids(self, ids: dict[str, int], first: int, upto: int) -> Iterator[Finding]:
        """Each event with an id up to the checkpoint: is it in the ``ids`` bucket where it belongs?"""
        for chunk in self.client.read(first, upto, chunk=CHUNK):
            found: list[Finding] = []
            for message in chunk:
                fields = decode_fields(message.data)
                event_id = fields[5] if fields is not None else None
                if type(event_id) is not str:
                    continue
                indexed = ids.get(event_id)
                if indexed is None:
                    found.append(Finding(message.seq, f"has id {event_id!r}, which is missing from the ids index"))
                elif indexed != message.seq:
                    found.append(Finding(message.seq, f"has id {event_id!r}, which the ids index gives {indexed}"))
            yield from found

    def finish(self, run: Verification) -> Iterator[Finding]:
        """Ids index entries beyond the head verify started from must be events appended since."""
        if self._past:
            head = self.client.stream_info().last_seq
            if self._past > head:
                yield Finding(self._past, f"is in the ids index but past the last event (seq {head})")


def _stream(stream: object) -> str:
    return "no stream" if stream is None else repr(stream)
