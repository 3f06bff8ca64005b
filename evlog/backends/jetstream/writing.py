"""The write path of a log on a NATS server: one batch, computed against a head the server guards.

:mod:`evlog.batch` computes a batch against this view of the log's head
(the last record, stream versions read from the leader, ids looked up only
after the server refused one as a duplicate); :meth:`WriteTxn.put` sends it
as one atomic batch whose first message carries
``Nats-Expected-Last-Sequence``. A refused batch stored nothing and raises
:class:`HeadMoved`, after which the backend computes it again. A batch that
got no answer is looked for in the log (its records are unique by their
chain hash) before it is sent again, and never computed again once sent.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from ...errors import DamagedLogError, ServerUnavailableError, StorageError
from ...record import DECODE_ERRORS, decode_body, key_seq
from .messages import (
    EXPECTED_LAST_SEQ,
    MSG_ID,
    DuplicateMsgId,
    OutMsg,
    PublishUnconfirmed,
    WrongLastSequence,
)
from .url import event_subject, streams_filter

if TYPE_CHECKING:
    from .backend import JetStreamBackend

UNAVAILABLE_SECONDS = 20.0
"""How long an append waits out a server that does not answer (a leader election takes ~5 s)."""
RETRY_SECONDS = 0.25
COUNTS_AFTER = 16
"""After this many stream-version look-ups in one batch, the heads of all streams are fetched in one request."""


class HeadMoved(Exception):
    """The batch was computed against a head that is no longer the log's: compute it again."""


class WriteTxn:
    """The log's head as one batch sees it; :meth:`put` sends the batch guarded by that head."""

    def __init__(self, backend: JetStreamBackend) -> None:
        self.backend = backend
        self.client = backend.client
        self.head_seq = -1
        self.lookups = 0
        self.counts: dict[str, int] | None = None
        self.sent = False  # whether the batch went out (then it may have landed, answered or not)

    def last(self) -> tuple[int, bytes | None]:
        if self.backend.last_written is not None:
            self.head_seq, record = self.backend.last_written
            return self.head_seq, record
        self.head_seq = self.client.stream_info().last_seq
        if not self.head_seq:
            return 0, None
        found = self.client.get(self.head_seq, leader=True)
        if found is None:
            raise DamagedLogError("missing: the log has a gap here", seq=self.head_seq)
        return self.head_seq, found.data

    def id_seq(self, id_key: bytes) -> int | None:
        if not self.backend.check_ids:
            return None  # hoped new: the server refuses a duplicate, and then we look
        return self.backend.id_seq(id_key.decode())

    def record(self, seq: int) -> bytes | None:
        found = self.backend._get(seq)
        return None if found is None else found.data

    def stream_version(self, stream_key: bytes) -> int:
        subject = event_subject(self.backend.name, stream_key.decode())
        if self.counts is None and self.lookups >= COUNTS_AFTER:
            self.counts = self.client.subject_counts(streams_filter(self.backend.name))
        if self.counts is not None:
            return self.counts.get(subject, 0)
        self.lookups += 1
        # From the leader, as the head was: a lagging replica's last message would give a stale version.
        found = self.client.get_last(subject, leader=True)
        if found is None:
            return 0
        try:
            version = decode_body(found.data, found.seq)[2]
        except DECODE_ERRORS:
            version = None
        if not isinstance(version, int):
            raise DamagedLogError(f"the last event of stream {stream_key.decode()!r} has no version", seq=found.seq)
        return version

    def put(
        self,
        rows: Sequence[tuple[bytes, bytes]],
        index_rows: Sequence[tuple[bytes, bytes]],
        ids: dict[bytes, bytes],
        type_counts: dict[str, int],
        new_streams: int,
    ) -> None:
        name = self.backend.name
        streams = {seq_key: stream_key for stream_key, seq_key in index_rows}
        id_of = {seq_key: id_key for id_key, seq_key in ids.items()}
        messages = []
        for number, (key, value) in enumerate(rows):
            stream_key = streams.get(key)
            headers: dict[str, str] = {}
            if number == 0:
                headers[EXPECTED_LAST_SEQ] = str(key_seq(key) - 1)
            event_id = id_of.get(key)
            if event_id is not None:
                headers[MSG_ID] = event_id.decode()
            subject = event_subject(name, stream_key.decode() if stream_key is not None else None)
            messages.append(OutMsg(subject, value, headers))
        self.send(messages, key_seq(rows[0][0]))
        self.backend.last_written = (key_seq(rows[-1][0]), rows[-1][1])

    def send(self, messages: list[OutMsg], first_seq: int) -> None:
        """Send the batch; after an unanswered attempt, find out whether it landed before sending it again.

        A resend of a batch that did land is refused as a wrong last sequence
        (the head moved: by our own batch), so that refusal, after an
        unanswered attempt, is checked the same way before the batch is
        computed again.
        """
        deadline = time.monotonic() + UNAVAILABLE_SECONDS
        unanswered = False
        self.sent = True
        while True:
            try:
                ack = self.client.publish_batch(messages, batch_id=uuid.uuid4().hex if len(messages) > 1 else None)
            except (WrongLastSequence, DuplicateMsgId) as refused:
                if unanswered and self._stored(messages, first_seq):
                    return
                self._refused(duplicate_id=isinstance(refused, DuplicateMsgId))
            except PublishUnconfirmed:
                unanswered = True
                if time.monotonic() > deadline:
                    raise
                with contextlib.suppress(ServerUnavailableError):
                    if self._stored(messages, first_seq):
                        return
                time.sleep(RETRY_SECONDS)
                continue
            if not ack.duplicate:
                return
            # A single message whose id the stream has: acknowledged, as the earlier event it is.
            self._refused(duplicate_id=True)

    def _refused(self, *, duplicate_id: bool) -> NoReturn:
        """The server stored nothing of the batch: compute it again (looking ids up, after a duplicate id)."""
        if duplicate_id:
            if self.backend.check_ids:
                raise StorageError(
                    f"{self.backend.location}: the server refused an id as a duplicate that the log's index "
                    "does not know; run evlog verify"
                )
            self.backend.check_ids = True
        raise HeadMoved

    def _stored(self, messages: list[OutMsg], first_seq: int) -> bool:
        """Whether the batch is in the log (True), not yet (False, send again), or lost to another writer."""
        found = self.client.get(first_seq)
        if found is None:
            return False
        if found.data != messages[0].data:
            raise HeadMoved  # another writer's event took the seq: nothing of ours is there
        last = self.client.get(first_seq + len(messages) - 1)
        if last is None or last.data != messages[-1].data:
            raise StorageError(f"seq {first_seq}: part of an atomic batch is stored; run evlog verify")
        return True
