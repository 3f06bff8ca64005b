"""What goes to and comes from a log's JetStream stream: messages, acks, stream state, and refusals.

Kept apart from the client so that code handling these values (the backend,
tests) reads them without the connection machinery. Publish refusals are
errors of their own, each a StorageError (exit 74) with the JetStream error
code, so that one the caller does not turn into evlog's meaning (a conflict,
a duplicate id) still ends the command with a clear line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ...errors import ServerUnavailableError, StorageError

# JetStream headers.
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
BATCH_ID = "Nats-Batch-Id"
BATCH_SEQ = "Nats-Batch-Sequence"
BATCH_COMMIT = "Nats-Batch-Commit"
# Headers a direct get adds to the stored ones; dropped so that callers see what was published.
DIRECT_HEADERS = ("Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp", "Nats-Num-Pending",
                   "Nats-Last-Sequence")

# JetStream API error codes evlog acts on.
ERR_WRONG_LAST_SEQ = 10071
ERR_DUPLICATE_MSG_ID = 10201
ERR_BATCH_TOO_LARGE = 10199
ERR_MSG_TOO_LARGE = 10054
ERR_STREAM_NOT_FOUND = 10059
ERR_STREAM_NAME_IN_USE = 10058
_WRONG_SEQ = re.compile(r"wrong last sequence: (\d+)")


# --- publish outcomes ---------------------------------------------------------------------------

class PublishRejected(StorageError):
    """The server refused a publish or a batch; nothing of it was stored. ``err_code`` is JetStream's."""

    def __init__(self, message: str, *, err_code: int, description: str) -> None:
        super().__init__(message)
        self.err_code = err_code
        self.description = description


class WrongLastSequence(PublishRejected):
    """An expected-sequence header did not hold (10071); ``actual`` is the sequence the server had."""

    def __init__(self, message: str, *, err_code: int, description: str) -> None:
        super().__init__(message, err_code=err_code, description=description)
        found = _WRONG_SEQ.search(description)
        self.actual: int | None = int(found[1]) if found else None


class DuplicateMsgId(PublishRejected):
    """A batch held a ``Nats-Msg-Id`` the stream already has (10201): the whole batch was refused."""


class MessageTooLarge(PublishRejected):
    """A message or batch is over the server's size limits (10199, 10054)."""


class PublishUnconfirmed(ServerUnavailableError):
    """No ack came (timeout, no responders, connection lost): the publish may or may not be stored.

    Retrying with the same ``Nats-Msg-Id`` headers is safe; see :meth:`LogClient.last_is_ours`
    for the false conflict such a retry can meet.
    """


@dataclass(frozen=True)
class OutMsg:
    """A message to publish: subject, payload, and headers (ours and JetStream's)."""

    subject: str
    data: bytes
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class PublishAck:
    """A stored publish: ``seq`` of the (last) message; for a duplicate, the original's seq."""

    seq: int
    duplicate: bool = False
    count: int = 1


class StoredMsg(NamedTuple):
    """A message read back: stream sequence, payload, headers as stored (None if none), subject."""

    seq: int
    data: bytes
    headers: dict[str, str] | None
    subject: str


@dataclass(frozen=True)
class LogStreamInfo:
    """What the server says of a log's stream (``subjects``: per-subject counts, when asked for)."""

    name: str
    log_id: str
    format: int
    created: str
    first_seq: int
    last_seq: int
    messages: int
    replicas: int
    storage: str
    leader: str | None
    config: dict[str, Any] = field(repr=False)
    subjects: dict[str, int] | None = None
    bytes: int = 0  # what the stream's messages take on the server (one replica)

