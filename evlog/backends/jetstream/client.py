"""A synchronous client for one evlog log on a NATS JetStream server: connect, the log's stream, gets.

``LogClient`` is what the JetStream backend talks to. It runs on the process's
one event loop (``_loop``: one ``run_until_complete`` per operation in the
caller's thread, no second thread), and ``import nats`` happens only when a
client is made (it costs ~95 ms, and nats-py is the optional ``nats`` extra: a
missing nats-py is a MissingExtraError, exit 2, naming the extra).

Every wait is bounded: connecting, reconnecting and each request have a
timeout, so an unreachable or stalled server is an error within seconds, not a
hang. Server failures become evlog errors with one line that says what and
where. The log's stream is created gapless (deletes and purges denied, no
limits) and marked as evlog's; a stream without that marker or those settings
is refused before anything is written. Publishing is in ``publish``, reading in
``reader``, key-value buckets in ``kv``, groups in ``groups``; the methods here
lead there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ...errors import (
    LogNotFoundError,
    NotALogError,
    ServerAccessError,
    ServerUnavailableError,
    ServerUnsupportedError,
    StorageError,
)
from . import publish as _publish
from ._loop import import_nats, run
from .messages import (
    DIRECT_HEADERS,
    ERR_MSG_TOO_LARGE,
    ERR_STREAM_NAME_IN_USE,
    ERR_STREAM_NOT_FOUND,
    DuplicateMsgId,
    LogStreamInfo,
    MessageTooLarge,
    OutMsg,
    PublishAck,
    PublishRejected,
    PublishUnconfirmed,
    StoredMsg,
    WrongLastSequence,
)
from .publish import MAX_BATCH
from .url import NatsLocation, log_subjects

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsConnection
    from nats.aio.msg import Msg

    from .groups import Groups
    from .kv import Bucket
    from .reader import Follower

__all__ = [  # the message types, the loop's runner and the batch limit, importable from here as well
    "MAX_BATCH", "DuplicateMsgId", "LogClient", "LogStreamInfo", "MessageTooLarge", "OutMsg", "PublishAck",
    "PublishRejected", "PublishUnconfirmed", "StoredMsg", "WrongLastSequence", "run",
]

FORMAT = 1  # the evlog stream format this code writes and reads
MIN_SERVER = (2, 12)  # atomic batch publish
TEN_YEARS = 10 * 365 * 24 * 3600.0  # seconds; the longest duplicate window the server accepts
CONNECT_TIMEOUT = 3.0
REQUEST_TIMEOUT = 5.0
ELECTION_SECONDS = 15.0  # a connected cluster that does not answer is electing a leader: ~5 s measured
RECONNECT_WAIT = 0.25
# Enough reconnect attempts to ride out a cluster's leader election (~5 s measured), few enough
# that a server that is gone for good is an error in seconds.
MAX_RECONNECTS = 40
# Stream metadata keys that mark an evlog stream.
META_FORMAT = "evlog.format"
META_LOG_ID = "evlog.log_id"
META_CREATED = "evlog.created"


def parse_version(text: str) -> tuple[int, int, int]:
    """``2.15.1`` (or ``v2.12.0-beta``) as numbers; (0, 0, 0) when it does not parse."""
    found = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(found[1]), int(found[2]), int(found[3])) if found else (0, 0, 0)


async def _ignore(*_args: Any) -> None:
    """nats-py's callbacks print by default; the errors that matter reach the caller as exceptions."""


# --- the client ----------------------------------------------------------------------------------

class LogClient:
    """A connection to the server(s) of one ``nats://`` log, with synchronous operations on it.

    Use :meth:`connect`; close with :meth:`close` or a ``with`` block.
    """

    def __init__(self, location: NatsLocation, nc: NatsConnection, version: tuple[int, int, int],
                 timeout: float) -> None:
        self.location = location
        self.nc = nc
        self.server_version = version
        self.timeout = timeout
        self.stream = location.stream_name
        self.check_config = True
        """Refuse a stream whose config was changed (False only for verify, which reports it)."""
        self._nats = import_nats()
        self._sender: _publish.BatchSender | None = None

    # connection

    @classmethod
    def connect(cls, location: NatsLocation, *, timeout: float = REQUEST_TIMEOUT,
                connect_timeout: float = CONNECT_TIMEOUT) -> LogClient:
        """Connect and check the server: reachable, credentials accepted, JetStream on, 2.12 or newer."""
        nats = import_nats()
        from nats import errors as nats_errors

        options: dict[str, Any] = {
            "servers": list(location.servers), "connect_timeout": connect_timeout,
            "reconnect_time_wait": RECONNECT_WAIT, "max_reconnect_attempts": MAX_RECONNECTS,
            "error_cb": _ignore, "disconnected_cb": _ignore, "reconnected_cb": _ignore,
            "closed_cb": _ignore, "name": "evlog",
        }
        if location.user is not None:
            options.update(user=location.user, password=location.password)
        if location.token is not None:
            options["token"] = location.token
        if location.tls:
            import ssl

            options["tls"] = ssl.create_default_context()
        where = location.display

        async def connect() -> NatsConnection:
            # A failed initial connect would otherwise go through every reconnect attempt.
            attempt = dict(options, max_reconnect_attempts=1, allow_reconnect=False)
            connection: NatsConnection = await asyncio.wait_for(
                nats.connect(**attempt), timeout=connect_timeout * (len(location.servers) + 1))
            connection.options["allow_reconnect"] = True
            connection.options["max_reconnect_attempts"] = MAX_RECONNECTS
            return connection

        try:
            nc = run(connect())
        except nats_errors.AuthorizationError as error:
            raise ServerAccessError(
                f"{where}: the server refused the credentials (authorization violation); "
                "check the user:password@ or token@ part of the location"
            ) from error
        except (nats_errors.NoServersError, OSError, asyncio.TimeoutError, nats_errors.Error) as error:
            if "authorization" in str(error).lower():
                raise ServerAccessError(f"{where}: the server refused the credentials; check the "
                                        "user:password@ or token@ part of the location") from error
            raise ServerUnavailableError(
                f"{where}: cannot reach the NATS server ({_reason(error)}); is nats-server running there?"
            ) from error
        info = getattr(nc, "_server_info", {}) or {}
        version = parse_version(str(info.get("version", "")))
        client = cls(location, nc, version, timeout)
        try:
            if version[:2] < MIN_SERVER:
                raise ServerUnsupportedError(
                    f"{where}: nats-server {info.get('version', '?')} is too old: evlog needs 2.12 or newer "
                    "(atomic batch publish)"
                )
            if not info.get("jetstream"):
                raise ServerUnsupportedError(f"{where}: JetStream is not enabled on the server: start "
                                             "nats-server with -js (or jetstream {} in its config)")
            try:
                client._account_info()  # the account can use JetStream
            except nats.js.errors.APIError as error:
                raise ServerUnsupportedError(f"{where}: JetStream is not enabled for this account "
                                             f"({error.description})") from error
        except BaseException:
            client.close()
            raise
        return client

    def _account_info(self) -> None:
        """Ask for the account's JetStream info, waiting out an election of the cluster's meta leader.

        The server is connected, so a missing answer here is a cluster electing
        a new leader (after losing a node, for some seconds), not a server
        that is gone: asked again for up to :data:`ELECTION_SECONDS`.
        """
        deadline = time.monotonic() + ELECTION_SECONDS
        while True:
            try:
                self._api("INFO", b"")
                return
            except ServerUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)

    def close(self) -> None:
        """Close the connection (pending publishes are flushed, bounded by the timeout)."""
        nc = self.nc
        if nc.is_closed:
            return
        if self._sender is not None:
            self._sender.close()

        async def close() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), timeout=self.timeout)

        run(close())

    def __enter__(self) -> LogClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # raw requests

    async def _request(self, subject: str, payload: bytes, headers: Mapping[str, str] | None = None,
                       timeout: float | None = None) -> Msg:
        return await self.nc.request(subject, payload, timeout=timeout or self.timeout,
                                     headers=dict(headers) if headers else None)

    def _api(self, path: str, request: bytes | dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """One ``$JS.API.<path>`` request; its JSON reply. API errors raise nats-py's APIError."""
        return run(self._api_async(path, request, timeout=timeout))

    async def _api_async(self, path: str, request: bytes | dict[str, Any], *,
                         timeout: float | None = None) -> dict[str, Any]:
        payload = request if isinstance(request, bytes) else orjson.dumps(request)
        try:
            reply = await self._request(f"$JS.API.{path}", payload, timeout=timeout)
        except Exception as error:
            raise self._failure(error, f"JetStream request {path.split('.')[0]}") from error
        body: dict[str, Any] = orjson.loads(reply.data) if reply.data else {}
        if "error" in body:
            raise self._nats.js.errors.APIError.from_error(body["error"])
        return body

    def _failure(self, error: BaseException, what: str) -> StorageError:
        """An evlog error for a failed request (API errors are the caller's to decode)."""
        errors = self._nats.errors
        where = self.location.display
        if isinstance(error, errors.MaxPayloadError):
            return MessageTooLarge(f"{where}: {what}: a message is larger than the server's max_payload "
                                   f"({self.nc.max_payload} bytes)", err_code=ERR_MSG_TOO_LARGE,
                                   description="maximum payload exceeded")
        if isinstance(error, errors.NoRespondersError):
            return ServerUnavailableError(
                f"{where}: {what}: no JetStream responded (JetStream not enabled, or the stream's "
                "leader is being elected); try again"
            )
        if isinstance(error, errors.AuthorizationError) or "permissions violation" in str(error).lower():
            return ServerAccessError(f"{where}: {what}: not permitted for this user ({_reason(error)})")
        if isinstance(error, asyncio.TimeoutError | errors.TimeoutError):
            return ServerUnavailableError(f"{where}: {what}: no answer within {self.timeout:g} s")
        if isinstance(error, errors.Error | OSError):
            return ServerUnavailableError(f"{where}: {what}: {_reason(error)}")
        if isinstance(error, StorageError):
            return error
        raise error

    # the log's stream

    def create_log_stream(self, *, replicas: int = 1, duplicate_window: float = TEN_YEARS,
                          log_id: str | None = None, created: str | None = None) -> LogStreamInfo:
        """Create the log's stream, or open it if it exists (as :meth:`open_log_stream` checks it).

        The stream keeps every message (no age, count or size limit), denies deletes and purges
        (so seq is gapless), allows direct gets and atomic batches, and carries evlog's marker
        (format, log id, creation time) in its metadata.
        """
        config = {
            "name": self.stream,
            "description": f"evlog log {self.location.name}",
            "subjects": [log_subjects(self.location.name)],
            "retention": "limits", "storage": "file", "num_replicas": replicas, "discard": "old",
            "max_msgs": -1, "max_bytes": -1, "max_age": 0, "max_msgs_per_subject": -1, "max_msg_size": -1,
            "deny_delete": True, "deny_purge": True, "allow_direct": True, "allow_atomic": True,
            "allow_rollup_hdrs": False, "duplicate_window": int(duplicate_window * 1e9),
            "metadata": {META_FORMAT: str(FORMAT), META_LOG_ID: log_id or str(uuid.uuid4()),
                         META_CREATED: created or _now()},
        }
        errors = self._nats.js.errors
        try:
            body = self._api(f"STREAM.CREATE.{self.stream}", config)
        except errors.APIError as error:
            if error.err_code == ERR_STREAM_NAME_IN_USE:  # created meanwhile, or a stream of someone else's
                return self.open_log_stream()
            raise self._api_error(error, "creating the stream") from error
        return self._stream_info(body)

    def open_log_stream(self, *, subjects_filter: str | None = None) -> LogStreamInfo:
        """The log's stream, checked: LogNotFoundError if missing, NotALogError if not evlog's as created."""
        info = self.stream_info(subjects_filter=subjects_filter)
        return info

    def stream_info(self, *, subjects_filter: str | None = None) -> LogStreamInfo:
        """The stream's state; with ``subjects_filter``, every matching subject's count (pages joined)."""
        errors = self._nats.js.errors
        request: dict[str, Any] = {}
        if subjects_filter:
            request["subjects_filter"] = subjects_filter
        subjects: dict[str, int] = {}
        try:
            while True:
                body = self._api(f"STREAM.INFO.{self.stream}", request or b"")
                page = (body.get("state") or {}).get("subjects") or {}
                subjects.update(page)
                total = int(body.get("total") or 0)
                if not subjects_filter or not page or len(subjects) >= total:
                    break
                request["offset"] = len(subjects)
        except errors.APIError as error:
            if error.err_code == ERR_STREAM_NOT_FOUND:
                raise LogNotFoundError(
                    f"{self.location.display}: no such log (no stream {self.stream!r} on the server); "
                    "appending creates it"
                ) from error
            raise self._api_error(error, "reading the stream's info") from error
        info = self._stream_info(body)
        if subjects_filter:
            info = _replace_subjects(info, subjects)
        return info

    def _stream_info(self, body: dict[str, Any]) -> LogStreamInfo:
        """Check a stream's config is an evlog log's (else NotALogError) and summarise its state."""
        config: dict[str, Any] = body.get("config") or {}
        state: dict[str, Any] = body.get("state") or {}
        meta: dict[str, str] = config.get("metadata") or {}
        where = f"{self.location.display}: stream {self.stream!r}"
        fmt = meta.get(META_FORMAT)
        if fmt is None or not fmt.isdigit():
            raise NotALogError(f"{where} is not an evlog log (no {META_FORMAT} in its metadata); "
                               "evlog writes only to streams it created")
        if int(fmt) > FORMAT:
            raise NotALogError(f"{where} has evlog format {fmt}, newer than this evlog's {FORMAT}: upgrade evlog")
        problems = config_problems(config, self.location.name)
        if problems and self.check_config:
            raise NotALogError(f"{where} is marked as an evlog log but changed: {'; '.join(problems)}; "
                               "evlog will not write to it")
        cluster = body.get("cluster") or {}
        return LogStreamInfo(
            name=str(config.get("name")), log_id=meta.get(META_LOG_ID, ""), format=int(fmt),
            created=meta.get(META_CREATED, ""), first_seq=int(state.get("first_seq", 0)),
            last_seq=int(state.get("last_seq", 0)), messages=int(state.get("messages", 0)),
            replicas=int(config.get("num_replicas", 1)), storage=str(config.get("storage", "")),
            leader=cluster.get("leader"), config=config, bytes=int(state.get("bytes", 0)),
        )

    def _api_error(self, error: Any, what: str) -> StorageError:
        where = self.location.display
        if getattr(error, "code", None) in (401, 403) or "permission" in str(getattr(error, "description", "")):
            return ServerAccessError(f"{where}: {what}: not permitted ({error.description})")
        code = getattr(error, "code", None)
        if code in (408, 409, 503) or getattr(error, "err_code", None) is None:
            # A request timed out, a leader changed, or no replica could answer: passing states.
            said = ", ".join(str(part) for part in (code, getattr(error, "description", None)) if part)
            return ServerUnavailableError(f"{where}: {what}: JetStream is not available now"
                                          f"{f' ({said})' if said else ''}; try again")
        return StorageError(f"{where}: {what}: the server said {error.description} (JetStream error "
                            f"{getattr(error, 'err_code', None)})")

    def subject_counts(self, subjects_filter: str) -> dict[str, int]:
        """Messages per subject for the subjects matching a filter (with deletes denied: a stream's version)."""
        info = self.stream_info(subjects_filter=subjects_filter)
        return info.subjects or {}

    def delete_stream(self) -> None:
        """Delete the log's stream (tests and the caller's explicit removal only)."""
        errors = self._nats.js.errors
        try:
            self._api(f"STREAM.DELETE.{self.stream}", b"")
        except errors.APIError as error:
            if error.err_code != ERR_STREAM_NOT_FOUND:
                raise self._api_error(error, "deleting the stream") from error

    # direct gets

    def get(self, seq: int, *, leader: bool = False) -> StoredMsg | None:
        """The message at ``seq``, or None if there is none.

        A direct get (~0.25 ms) may be answered by any replica, which on a cluster can lag behind
        the leader; ``leader=True`` asks the leader (slower), for an answer that is surely current.
        """
        if leader:
            return self._leader_get({"seq": seq})
        return run(self._direct(f"$JS.API.DIRECT.GET.{self.stream}", orjson.dumps({"seq": seq})))

    def get_last(self, subject: str, *, leader: bool = False) -> StoredMsg | None:
        """The last message on ``subject``, or None if the subject has none (``leader`` as for :meth:`get`)."""
        if leader:
            return self._leader_get({"last_by_subj": subject})
        return run(self._direct(f"$JS.API.DIRECT.GET.{self.stream}.{subject}", b""))

    def get_next(self, seq: int, subjects: str) -> StoredMsg | None:
        """The first message at or after ``seq`` on a subject matching ``subjects`` (the leader's answer)."""
        return self._leader_get({"seq": max(seq, 1), "next_by_subj": subjects})

    def next_seq(self, seq: int, subjects: str) -> int | None:
        """The seq of the first message at or after ``seq`` on a subject matching ``subjects`` (the leader's
        answer), or None if there is none."""
        found = self._leader_get({"seq": max(seq, 1), "next_by_subj": subjects})
        return None if found is None else found.seq

    def _leader_get(self, request: dict[str, Any]) -> StoredMsg | None:
        errors = self._nats.js.errors
        try:
            body = self._api(f"STREAM.MSG.GET.{self.stream}", request)
        except errors.APIError as error:
            if error.code == 404 and error.err_code != ERR_STREAM_NOT_FOUND:
                return None  # no such message
            if error.err_code == ERR_STREAM_NOT_FOUND:
                raise LogNotFoundError(f"{self.location.display}: no such log") from error
            raise self._api_error(error, "reading a message") from error
        try:
            message = body["message"]
            headers = _parse_headers(base64.b64decode(message.get("hdrs") or "", validate=True))
            data = base64.b64decode(message.get("data") or "", validate=True)
            return StoredMsg(int(message["seq"]), data, headers, str(message["subject"]))
        except (KeyError, ValueError, TypeError):
            raise StorageError(f"{self.location.display}: the server's answer for a message is malformed") from None

    async def _direct(self, subject: str, payload: bytes) -> StoredMsg | None:
        try:
            reply = await self._request(subject, payload)
        except Exception as error:
            raise self._failure(error, "direct get") from error
        headers = reply.headers or {}
        status = headers.get("Status")
        if status == "404":
            return None
        if status:
            if status == "503":
                raise ServerUnavailableError(f"{self.location.display}: direct get: no replica could answer; "
                                             "try again")
            raise StorageError(f"{self.location.display}: direct get: the server answered status {status} "
                               f"({headers.get('Description', '')})")
        seq = int(headers["Nats-Sequence"])
        msg_subject = headers["Nats-Subject"]
        own = {key: value for key, value in headers.items() if key not in DIRECT_HEADERS}
        return StoredMsg(seq, reply.data, own or None, msg_subject)

    # publishing (publish.py)

    def publish(self, subject: str, data: bytes, headers: Mapping[str, str] | None = None) -> PublishAck:
        """Publish one message and wait for its ack; a duplicate ``Nats-Msg-Id`` acks the original's seq."""
        return _publish.publish_one(self, subject, data, headers)

    def publish_batch(self, messages: Sequence[OutMsg], *, batch_id: str | None = None) -> PublishAck:
        """Publish up to 1000 messages as one atomic batch and wait for its ack (``publish.publish_batch``)."""
        return _publish.publish_batch(self, messages, batch_id=batch_id)

    def _batches(self) -> _publish.BatchSender:
        """The sender that :meth:`publish_batch` uses, made on first use."""
        if self._sender is None:
            self._sender = _publish.BatchSender(self)
        return self._sender

    def batch_sender(self) -> _publish.BatchSender:
        """A sender of atomic batches that does not wait for each ack (``publish.BatchSender``)."""
        return _publish.BatchSender(self)

    def last_is_ours(self, msg_ids: Sequence[str], *, subject: str | None = None) -> int | None:
        """After a conflict on a retry: our own last message's seq if it is stored (``publish.last_is_ours``)."""
        return _publish.last_is_ours(self, msg_ids, subject=subject)

    # reading

    def read(self, start_seq: int, last_seq: int, *, chunk: int = 1000,
             subjects: str | None = None) -> Iterator[list[StoredMsg]]:
        """The messages from ``start_seq`` to ``last_seq`` (inclusive), in order, in chunks (``reader.read_range``)."""
        from .reader import read_range

        return read_range(self, start_seq, last_seq, chunk=chunk, subjects=subjects)

    def follow(self, start_seq: int, *, subjects: str | None = None, chunk: int = 1000,
               headers_only: bool = False) -> Follower:
        """An ordered consumer from ``start_seq`` that stays open: new messages arrive as they are stored."""
        from .reader import Follower

        return Follower(self, start_seq, subjects=subjects, chunk=chunk, headers_only=headers_only)

    def watch(self, after_seq: int) -> Follower:
        """A headers-only follower from ``after_seq + 1``: ``wait(timeout)`` wakes when a later message is stored."""
        return self.follow(after_seq + 1, headers_only=True)

    def kv(self, purpose: str, *, create: bool = True) -> Bucket:
        """The log's key-value bucket for ``purpose`` (see ``url.BUCKET_PURPOSES``), created if missing."""
        from .kv import Bucket

        return Bucket.open(self, purpose, create=create)

    def groups(self) -> Groups:
        """The log's groups: durable pull consumers with explicit acks."""
        from .groups import Groups

        return Groups(self)


def config_problems(config: dict[str, Any], log_name: str) -> list[str]:
    """What in a log stream's config breaks evlog's guarantees (gapless seqs, nothing dropped)."""
    problems = []
    if not config.get("deny_delete") or not config.get("deny_purge"):
        problems.append("deletes or purges are allowed (seq would have gaps)")
    for limit in ("max_msgs", "max_bytes", "max_msgs_per_subject"):
        if int(config.get(limit, -1)) not in (-1, 0):
            problems.append(f"{limit} is set (events would be dropped)")
    if int(config.get("max_age", 0)) != 0:
        problems.append("max_age is set (events would expire)")
    if config.get("retention", "limits") != "limits":
        problems.append(f"retention is {config.get('retention')!r}, not limits")
    if config.get("subjects") != [log_subjects(log_name)]:
        problems.append(f"its subjects are {config.get('subjects')!r}, not [{log_subjects(log_name)!r}]")
    if not config.get("allow_direct") or not config.get("allow_atomic"):
        problems.append("direct gets or atomic batches are off")
    return problems


def _replace_subjects(info: LogStreamInfo, subjects: dict[str, int]) -> LogStreamInfo:
    from dataclasses import replace

    return replace(info, subjects=subjects)


def _parse_headers(raw: bytes) -> dict[str, str] | None:
    """Headers from their wire form (``NATS/1.0`` line, then ``Name: value`` lines)."""
    headers: dict[str, str] = {}
    for line in raw.decode(errors="replace").split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon and name:
            headers[name.strip()] = value.strip()
    return headers or None


def _now() -> str:
    """The current time as RFC 3339 UTC with nanoseconds, as evlog shows times."""
    import time

    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def _reason(error: BaseException) -> str:
    """A short reason from a client exception (its text, or its class name when it has none)."""
    text = str(error).strip().removeprefix("nats: ")
    return text or type(error).__name__
