"""Publishing to a log's stream: one message, an atomic batch, batches in a pipeline, and the retry check.

Atomic batches (server 2.12+, nats-py has no method for them) are sent with raw
headers: ``Nats-Batch-Id``, ``Nats-Batch-Sequence`` 1..n, ``Nats-Batch-Commit:
1`` on the last. The commit's reply is the ack (or a JSON error: the whole batch
was refused, nothing stored). A batch goes to the connection as one buffer of
protocol lines built here (nats-py's per-message publish was most of the
client's time: ~15-40% more batches a second without it), then the commit's
reply is awaited.

A :class:`BatchSender` sends batches without waiting for each ack, so that the
caller builds the next batch while the server stores this one (the server's
share of a batch is about a third of its time here). Batches sent on one
connection are stored in the order sent; chaining ``Nats-Expected-Last-Sequence``
(each batch expects the last seq of the one before) makes every batch after a
refused one be refused too, so what is stored is always a prefix of what was sent.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import StorageError
from ._loop import raw_handlers, run
from .messages import (
    ERR_BATCH_TOO_LARGE,
    ERR_DUPLICATE_MSG_ID,
    ERR_MSG_TOO_LARGE,
    ERR_WRONG_LAST_SEQ,
    MSG_ID,
    DuplicateMsgId,
    MessageTooLarge,
    OutMsg,
    PublishAck,
    PublishRejected,
    PublishUnconfirmed,
    WrongLastSequence,
)

if TYPE_CHECKING:
    from .client import LogClient

MAX_BATCH = 1000  # the server's limit of messages in one atomic batch
_REJECTIONS: dict[int, type[PublishRejected]] = {
    ERR_WRONG_LAST_SEQ: WrongLastSequence, ERR_DUPLICATE_MSG_ID: DuplicateMsgId,
    ERR_BATCH_TOO_LARGE: MessageTooLarge, ERR_MSG_TOO_LARGE: MessageTooLarge,
}


def decode_ack(client: LogClient, body_bytes: bytes, count: int) -> PublishAck:
    """The ack in a publish's reply, or the typed refusal it holds."""
    if not body_bytes:
        raise PublishUnconfirmed(f"{client.location.display}: publish: an empty reply instead of an ack")
    body = orjson.loads(body_bytes)
    error = body.get("error")
    if error:
        code, description = int(error.get("err_code", 0)), str(error.get("description", ""))
        message = f"{client.location.display}: publish refused: {description} (JetStream error {code})"
        raise _REJECTIONS.get(code, PublishRejected)(message, err_code=code, description=description)
    return PublishAck(int(body["seq"]), bool(body.get("duplicate", False)), int(body.get("count", count)))


def unconfirmed(client: LogClient, error: BaseException) -> StorageError:
    """The error for a publish whose ack did not come (or a refusal made before sending)."""
    failure = client._failure(error, "publish")
    if isinstance(failure, PublishRejected):
        return failure  # refused before sending: certainly not stored
    return PublishUnconfirmed(f"{failure}; it may or may not have been stored")


def publish_one(client: LogClient, subject: str, data: bytes, headers: Mapping[str, str] | None) -> PublishAck:
    """Publish one message and wait for its ack; a duplicate ``Nats-Msg-Id`` acks the original's seq."""
    async def publish() -> PublishAck:
        try:
            reply = await client._request(subject, data, headers)
        except Exception as error:
            raise unconfirmed(client, error) from error
        return decode_ack(client, reply.data, 1)

    return run(publish())


def _check(client: LogClient, messages: Sequence[OutMsg]) -> None:
    """Refuse a batch the server cannot take whole, before any of it is sent (a half-sent batch lingers)."""
    if not 0 < len(messages) <= MAX_BATCH:
        raise ValueError(f"an atomic batch holds 1 to {MAX_BATCH} messages, not {len(messages)}")
    limit = client.nc.max_payload - 200  # room for the batch headers
    for index, msg in enumerate(messages, 1):
        if len(msg.data) + sum(len(k) + len(v) + 4 for k, v in (msg.headers or {}).items()) > limit:
            raise MessageTooLarge(
                f"{client.location.display}: publish refused: message {index} of the batch is larger than "
                f"the server's max_payload ({client.nc.max_payload} bytes)", err_code=ERR_MSG_TOO_LARGE,
                description="maximum payload exceeded")


def encode_batch(messages: Sequence[OutMsg], batch_id: str, *, first_reply: str, commit_reply: str) -> bytes:
    """The protocol lines (``HPUB``) of a whole batch, built at once.

    nats-py's publish checks and encodes each header of each message apart, most of a batch's
    client time; here the subjects come from ``url`` and the header names are evlog's, so only
    values are checked: a line break in one would end the header early (refused, not altered).
    """
    out: list[bytes] = []
    add = out.append
    prefix = b"NATS/1.0\r\nNats-Batch-Id: " + batch_id.encode() + b"\r\nNats-Batch-Sequence: "
    last = len(messages)
    for index, msg in enumerate(messages, 1):
        head = [prefix, b"%d\r\n" % index]
        if msg.headers:
            for name, value in msg.headers.items():
                if "\r" in value or "\n" in value:
                    raise ValueError(f"header {name} of message {index} holds a line break")
                head.append(b"%s: %s\r\n" % (name.encode(), value.encode()))
        if index == last:
            head.append(b"Nats-Batch-Commit: 1\r\n\r\n")
            reply = b" " + commit_reply.encode()
        else:
            head.append(b"\r\n")
            reply = b" " + first_reply.encode() if index == 1 else b""
        header = b"".join(head)
        add(b"HPUB %s%s %d %d\r\n" % (msg.subject.encode(), reply, len(header), len(header) + len(msg.data)))
        add(header)
        add(msg.data)
        add(b"\r\n")
    return b"".join(out)


def publish_batch(client: LogClient, messages: Sequence[OutMsg], *, batch_id: str | None = None) -> PublishAck:
    """Publish up to 1000 messages as one atomic batch and wait for its ack: all are stored, in order, or none.

    Per-message headers go with each message (``Nats-Msg-Id``, ``Nats-Expected-Last-Sequence``
    on the first, ``Nats-Expected-Last-Subject-Sequence``, evlog's own). Returns the last
    message's seq and the count. Raises WrongLastSequence, DuplicateMsgId, MessageTooLarge,
    PublishRejected (nothing stored), or PublishUnconfirmed (stored or not: send the same
    messages, with the same ids, again; see :func:`last_is_ours`). One message without a
    ``batch_id`` is a plain publish.
    """
    if len(messages) == 1 and batch_id is None:
        return publish_one(client, messages[0].subject, messages[0].data, messages[0].headers)
    return client._batches().send(messages, batch_id=batch_id).result()


def last_is_ours(client: LogClient, msg_ids: Sequence[str], *, subject: str | None = None) -> int | None:
    """After a WrongLastSequence on a retry: the seq of our own last message if it is stored, else None.

    A retried publish (or batch) with the same ``Nats-Msg-Id`` and expected-sequence headers
    gets a false 10071 when the first attempt was in fact stored: the stream has moved on by
    our own message(s). ``msg_ids`` are the ids of what was retried, in order; when the last
    message on the log (or on ``subject``) carries the last of them, the retry had already
    succeeded and its seq is returned. The leader answers: a lagging replica could take our
    stored retry for someone else's.
    """
    if not msg_ids:
        return None
    if subject is not None:
        found = client.get_last(subject, leader=True)
    else:
        last_seq = client.stream_info().last_seq
        found = client.get(last_seq, leader=True) if last_seq else None
    if found is not None and found.headers and found.headers.get(MSG_ID) == msg_ids[-1]:
        return found.seq
    return None


class PendingBatch:
    """A batch sent by a :class:`BatchSender`; :meth:`result` waits for its ack."""

    def __init__(self, sender: BatchSender, token: bytes, count: int, future: asyncio.Future[bytes]) -> None:
        self.sender, self.token, self.count, self._future = sender, token, count, future

    def done(self) -> bool:
        """Whether the ack (or refusal) has arrived; it is taken in only while the loop runs."""
        return self._future.done()

    def result(self, timeout: float | None = None) -> PublishAck:
        """The batch's ack; its typed refusal; or PublishUnconfirmed if none came within ``timeout``."""
        client = self.sender.client
        wait = client.timeout if timeout is None else timeout

        async def result() -> bytes:
            try:
                return await asyncio.wait_for(asyncio.shield(self._future), wait)
            except asyncio.TimeoutError as error:
                self.sender._futures.pop(self.token, None)
                raise PublishUnconfirmed(
                    f"{client.location.display}: publish: no ack for an atomic batch within {wait:g} s; "
                    "it may or may not have been stored") from error

        return decode_ack(client, run(result()), self.count)


class BatchSender:
    """Atomic batches sent one after another without waiting for each ack.

    ``send`` returns once the batch is written to the connection; ``PendingBatch.result``
    waits for its ack. Chain ``Nats-Expected-Last-Sequence`` from batch to batch (see the
    module's docstring) so that a refused batch takes every later one with it.
    """

    def __init__(self, client: LogClient) -> None:
        self.client = client
        self._futures: dict[bytes, asyncio.Future[bytes]] = {}
        self._counter = itertools.count(1)
        self._prefix = ""
        self._sub: Any = None

    async def _subscribe(self) -> None:
        nc = self.client.nc
        self._prefix = nc.new_inbox()
        self._sub = await nc.subscribe(f"{self._prefix}.*")
        futures = self._futures

        def on_reply(subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
            future = futures.pop(subject.rpartition(b".")[2], None)
            if future is not None and not future.done():
                future.set_result(data)

        raw_handlers(nc)[self._sub._id] = on_reply

    def send(self, messages: Sequence[OutMsg], *, batch_id: str | None = None) -> PendingBatch:
        """Write one atomic batch (1 to 1000 messages) to the server; its ack is awaited with ``result``."""
        _check(self.client, messages)
        return run(self._send(messages, batch_id or uuid.uuid4().hex))

    def send_unchecked(self, messages: Sequence[OutMsg], batch_id: str) -> PendingBatch:
        """``send`` without the count and size checks: only for showing what the server does then."""
        return run(self._send(messages, batch_id))

    async def _send(self, messages: Sequence[OutMsg], batch_id: str) -> PendingBatch:
        if self._sub is None:
            await self._subscribe()
        nc = self.client.nc
        token = str(next(self._counter)).encode()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._futures[token] = future
        try:
            if nc.is_closed:
                raise self.client._nats.errors.ConnectionClosedError
            # The first message's reply (empty, or the refusal the commit repeats) is not awaited.
            wire = encode_batch(messages, batch_id, first_reply=f"{self._prefix}.first",
                                commit_reply=f"{self._prefix}.{token.decode()}")
            await nc._send_command(wire)
            # Hand it to the socket now, not when the loop next runs (the caller is off building the next).
            await asyncio.wait_for(nc._flush_pending(force_flush=True), self.client.timeout)
        except Exception as error:
            self._futures.pop(token, None)
            raise unconfirmed(self.client, error) from error
        return PendingBatch(self, token, len(messages), future)

    def close(self) -> None:
        """Stop listening for acks (pending batches are then unconfirmed)."""
        sub, self._sub = self._sub, None
        if sub is None:
            return
        raw_handlers(self.client.nc).pop(sub._id, None)

        async def stop() -> None:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may be gone: nothing to stop then
                return

        run(stop())
