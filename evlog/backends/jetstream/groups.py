"""Groups on a JetStream log: durable pull consumers with explicit acks, synchronously.

A group (``tail --group``) is a durable consumer on the log's stream: the
server keeps its position and redelivers what was delivered but not
acknowledged (after ``ack_wait``, or to the next fetch after a restart), which
is the at-least-once delivery groups promise. Pull, not push: the follower asks
for a batch when it is ready, so a slow ``--exec`` never has messages pushed
at it. Consumer names allow no '.', so a group's consumer is
``evlog-<encoded group>`` (``url.encode_token``, whose '=' consumer names allow).

Acks are sent as requests (``ack_sync``) unless told otherwise: an ack that was
only published can be lost with the server that never received it (measured:
acks followed at once by SIGKILL of a single server were lost), and a group
must not move on by an ack it cannot be sure of.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import LogNotFoundError, ServerUnavailableError
from ._loop import run
from .messages import StoredMsg
from .url import decode_token, encode_token, log_subjects

if TYPE_CHECKING:
    from .client import LogClient

PREFIX = "evlog-"
ACK_WAIT = 30.0  # seconds before an unacknowledged message is delivered again
MAX_NAME = 200  # consumer names the server accepts are at most 255 bytes


@dataclass(frozen=True)
class GroupInfo:
    """A group's state: the next seq it will be given, how many wait and how many are unacknowledged."""

    name: str
    filter_subjects: tuple[str, ...]
    ack_floor: int  # every seq up to this one is acknowledged
    delivered: int  # the last stream seq delivered (acknowledged or not)
    pending: int  # messages not yet delivered
    ack_pending: int  # delivered, not yet acknowledged


class Delivered:
    """A message fetched for a group; ``delivery`` counts how often it has been given out (1 = first)."""

    __slots__ = ("_msg", "delivery", "msg")

    def __init__(self, msg: StoredMsg, delivery: int, raw: Any) -> None:
        self.msg, self.delivery, self._msg = msg, delivery, raw

    @property
    def seq(self) -> int:
        return self.msg.seq


def consumer_name(group: str) -> str:
    """The durable consumer of a group (ValueError for a group name too long to be one)."""
    name = PREFIX + encode_token(group)
    if len(name) > MAX_NAME:
        raise ValueError(f"group name {group!r} is too long for a JetStream consumer")
    return name


class Groups:
    """The groups of one log (``LogClient``): create, fetch, ack, list, reset, delete."""

    def __init__(self, client: LogClient) -> None:
        self.client = client
        self.js = client.nc.jetstream(timeout=client.timeout)
        self.api = client._nats.js.api
        self.errors = client._nats.js.errors
        self._subs: dict[str, Any] = {}

    def _call(self, what: str, coro: Any) -> Any:
        try:
            return run(coro)
        except self.errors.NotFoundError as error:
            raise LogNotFoundError(f"{self.client.location.display}: {what}: not found on the server") from error
        except self.errors.APIError as error:
            raise self.client._api_error(error, what) from error
        except Exception as error:
            raise self.client._failure(error, what) from error

    def _config(self, group: str, start_seq: int, filter_subjects: Sequence[str] | None, ack_wait: float) -> Any:
        subjects = list(filter_subjects or [])
        api = self.api
        return api.ConsumerConfig(
            durable_name=consumer_name(group), name=consumer_name(group),
            description=f"evlog group {group}",
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=max(start_seq, 1),
            ack_policy=api.AckPolicy.EXPLICIT, ack_wait=ack_wait, max_ack_pending=10_000,
            filter_subjects=subjects if len(subjects) > 1 else None,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
        )

    def ensure(self, group: str, *, start_seq: int = 1, filter_subjects: Sequence[str] | None = None,
               ack_wait: float = ACK_WAIT) -> GroupInfo:
        """The group, created at ``start_seq`` with the filters if it does not exist (an existing one is kept).

        ``ack_wait``: seconds after which a message given out and not acknowledged is given out again.
        """
        name = consumer_name(group)

        async def ensure() -> Any:
            try:
                return await self.js.consumer_info(self.client.stream, name)
            except self.errors.NotFoundError:
                config = self._config(group, start_seq, filter_subjects, ack_wait)
                return await self.js.add_consumer(self.client.stream, config)

        return self._info(self._call(f"group {group!r}", ensure()))

    def info(self, group: str) -> GroupInfo | None:
        """The group's state, or None if there is no such group."""
        async def info() -> Any:
            try:
                return await self.js.consumer_info(self.client.stream, consumer_name(group))
            except self.errors.NotFoundError:
                return None

        found = self._call(f"group {group!r}", info())
        return None if found is None else self._info(found)

    def _info(self, info: Any) -> GroupInfo:
        config = info.config
        subjects = tuple(config.filter_subjects or ([config.filter_subject] if config.filter_subject else []))
        name = str(info.name)
        group = decode_token(name[len(PREFIX):]) if name.startswith(PREFIX) else name
        return GroupInfo(
            name=group, filter_subjects=subjects,
            ack_floor=int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0,
            delivered=int(info.delivered.stream_seq or 0) if info.delivered else 0,
            pending=int(info.num_pending or 0), ack_pending=int(info.num_ack_pending or 0),
        )

    def all(self) -> list[GroupInfo]:
        """Every group of the log (consumers named ``evlog-…``), by name."""
        async def listing() -> list[Any]:
            found: list[Any] = []
            while True:
                page = await self.js.consumers_info(self.client.stream, offset=len(found) or None)
                found.extend(page)
                if len(page) < 256:  # the server's page size
                    return found

        infos = self._call("listing groups", listing())
        groups = [self._info(info) for info in infos if str(info.name).startswith(PREFIX)]
        return sorted(groups, key=lambda group: group.name)

    def fetch(self, group: str, *, batch: int = 100, timeout: float = 1.0) -> list[Delivered]:
        """Up to ``batch`` messages for the group, waiting up to ``timeout`` s for the first; [] if none."""
        sub = self._subs.get(group)
        if sub is None:
            if self.info(group) is None:
                raise LogNotFoundError(f"{self.client.location.display}: no group {group!r} on this log")
            sub = self._call(f"group {group!r}", self.js.pull_subscribe_bind(
                durable=consumer_name(group), stream=self.client.stream))
            self._subs[group] = sub
        timeout_errors = (self.client._nats.errors.TimeoutError,)

        async def fetch() -> list[Any]:
            try:
                msgs: list[Any] = await sub.fetch(batch, timeout=timeout)
                return msgs
            except timeout_errors:
                return []

        raw = self._call(f"fetching for group {group!r}", fetch())
        out = []
        for msg in raw:
            # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending> (or with domain, hash, token)
            tokens = msg.reply.split(".")
            delivery, seq = (int(tokens[4]), int(tokens[5])) if len(tokens) == 9 else (int(tokens[6]), int(tokens[7]))
            out.append(Delivered(StoredMsg(seq, msg.data, msg.headers, msg.subject), delivery, msg))
        return out

    def ack(self, messages: Sequence[Delivered], *, confirm: bool = True) -> None:
        """Acknowledge messages; with ``confirm`` each ack waits for the server's confirmation."""
        async def ack() -> None:
            for delivered in messages:
                if confirm:
                    await delivered._msg.ack_sync(timeout=self.client.timeout)
                else:
                    await delivered._msg.ack()
            if not confirm:
                await self.client.nc.flush(timeout=int(self.client.timeout) or 1)

        try:
            run(ack())
        except Exception as error:
            failure = self.client._failure(error, "acknowledging")
            raise ServerUnavailableError(f"{failure}; the group may deliver those events again") from error

    def nak(self, messages: Sequence[Delivered], *, delay: float | None = None) -> None:
        """Give messages back for redelivery (after ``delay`` seconds)."""
        async def nak() -> None:
            for delivered in messages:
                await delivered._msg.nak(delay=delay)

        self._call("giving back messages", nak())

    def delete(self, group: str) -> bool:
        """Remove the group; False if there was none."""
        self._subs.pop(group, None)

        async def delete() -> bool:
            try:
                return bool(await self.js.delete_consumer(self.client.stream, consumer_name(group)))
            except self.errors.NotFoundError:
                return False

        return bool(self._call(f"removing group {group!r}", delete()))

    def reset(self, group: str, seq: int, *, ack_wait: float = ACK_WAIT) -> GroupInfo:
        """Make the group's next message the one at ``seq`` (or the first match after it); filters are kept.

        Done as delete and create again (the server's own reset needs 2.14): messages given out
        and unacknowledged are forgotten, as on the LMDB log.
        """
        current = self.info(group)
        filters = list(current.filter_subjects) if current else [log_subjects(self.client.location.name)]
        self.delete(group)
        return self.ensure(group, start_seq=seq, filter_subjects=filters, ack_wait=ack_wait)
