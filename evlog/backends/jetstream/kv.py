"""A log's key-value buckets on the server (snapshots, projections, groups, ids, meta), synchronously.

One bucket per purpose (``evlog_<log>_<purpose>``), history 1, file storage,
as many replicas as the log's stream: what the LMDB log keeps in named
databases beside its events. Keys are made with ``url.kv_key`` (text parts,
each encoded as a subject token, joined by '.'), so any text can be part of a
key and token-aligned prefixes list with a server-side filter. Updates that
must not lose a concurrent writer's change use :meth:`Bucket.update` with the
revision read (compare-and-set), as LMDB's single writer gave for free.

A value is one NATS message: at most the server's ``max_payload`` (1 MiB by
default) minus headers; larger values are refused with MessageTooLarge.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from ...errors import LogNotFoundError
from ._loop import run
from .messages import ERR_MSG_TOO_LARGE, MessageTooLarge, PublishRejected
from .url import bucket_name

if TYPE_CHECKING:
    from .client import LogClient


class Entry(NamedTuple):
    """A key's value and the revision (the bucket stream's seq) it was written at."""

    value: bytes
    revision: int


class RevisionConflict(PublishRejected):
    """A compare-and-set update found the key at another revision (someone else wrote it)."""


class Bucket:
    """One KV bucket of a log. Get with :meth:`open` (or ``LogClient.kv(purpose)``)."""

    def __init__(self, client: LogClient, name: str, kv: Any) -> None:
        self.client, self.name, self._kv = client, name, kv
        self._errors = client._nats.js.errors

    @classmethod
    def open(cls, client: LogClient, purpose: str, *, create: bool = True, replicas: int | None = None) -> Bucket:
        """The bucket for ``purpose``; created (with the log's replicas unless given) if missing and ``create``."""
        name = bucket_name(client.location.name, purpose)
        js = client.nc.jetstream(timeout=client.timeout)
        errors = client._nats.js.errors
        api = client._nats.js.api

        copies = replicas if replicas is not None or not create else client.stream_info().replicas

        async def get() -> Any:
            try:
                return await js.key_value(name)
            except errors.BucketNotFoundError:
                if not create:
                    raise
            config = api.KeyValueConfig(bucket=name, history=1, storage=api.StorageType.FILE,
                                        replicas=copies, description=f"evlog {purpose} of log {client.location.name}")
            return await js.create_key_value(config)

        try:
            kv = run(get())
        except errors.BucketNotFoundError as error:
            raise LogNotFoundError(f"{client.location.display}: no {purpose} are stored for this log") from error
        except Exception as error:
            raise client._failure(error, f"opening the {purpose} bucket") from error
        return cls(client, name, kv)

    def _call(self, what: str, coro: Any) -> Any:
        try:
            return run(coro)
        except PublishRejected:
            raise
        except self._errors.APIError as error:
            if getattr(error, "err_code", None) == ERR_MSG_TOO_LARGE:
                raise MessageTooLarge(f"{self.client.location.display}: {what}: the value is larger than the "
                                      "server accepts in one message", err_code=ERR_MSG_TOO_LARGE,
                                      description=str(error.description)) from error
            raise self.client._api_error(error, what) from error
        except Exception as error:
            raise self.client._failure(error, what) from error

    def get(self, key: str) -> Entry | None:
        """The key's value and revision, or None if it has none (never written, or deleted)."""
        async def get() -> Entry | None:
            try:
                entry = await self._kv.get(key)
            except self._errors.KeyNotFoundError:  # KeyDeletedError is one too
                return None
            return Entry(entry.value or b"", int(entry.revision))

        result: Entry | None = self._call(f"reading key {key!r} of {self.name}", get())
        return result

    def put(self, key: str, value: bytes) -> int:
        """Set the key's value whatever it was; the new revision."""
        return int(self._call(f"writing key {key!r} of {self.name}", self._kv.put(key, value)))

    def update(self, key: str, value: bytes, *, revision: int | None) -> int:
        """Set the key only if it is still at ``revision`` (None: only if it has no value); the new revision.

        RevisionConflict if someone else wrote (or deleted) it meanwhile.
        """
        async def update() -> int:
            try:
                if revision is None:
                    return int(await self._kv.create(key, value))
                return int(await self._kv.update(key, value, last=revision))
            except (self._errors.KeyWrongLastSequenceError, self._errors.BadRequestError) as error:
                self._refuse(error, key, revision)

        return int(self._call(f"updating key {key!r} of {self.name}", update()))

    def _refuse(self, error: Any, key: str, revision: int | None) -> NoReturn:
        """A compare-and-set refused because the key moved on is RevisionConflict; other errors go on as they are."""
        if not isinstance(error, self._errors.KeyWrongLastSequenceError) and error.err_code != 10071:
            raise error
        raise RevisionConflict(
            f"{self.client.location.display}: key {key!r} of {self.name} changed meanwhile "
            f"(expected revision {revision})", err_code=10071, description=str(error.description),
        ) from error

    def delete(self, key: str, *, revision: int | None = None) -> None:
        """Remove the key's value (a no-op for a key without one); with ``revision``, only if still at it.

        RevisionConflict if ``revision`` is given and someone else wrote the key meanwhile.
        """
        if revision is None:
            self._call(f"deleting key {key!r} of {self.name}", self._kv.delete(key))
            return

        async def delete() -> None:
            try:
                await self._kv.delete(key, last=revision)
            except (self._errors.KeyWrongLastSequenceError, self._errors.BadRequestError) as error:
                self._refuse(error, key, revision)

        self._call(f"deleting key {key!r} of {self.name}", delete())

    def list_keys(self, prefix: str = "") -> list[str]:
        """Keys with a value, sorted; with ``prefix`` (whole '.'-separated parts, e.g. ``kv_key("snap", h)``)
        only those under it. Keys of this log are few (snapshots, projections, groups): a list is fine.
        """
        async def keys() -> list[str]:
            # A watcher on the prefix filters on the server (nats-py's keys() filters by substring here).
            watcher = await self._kv.watch(f"{prefix}.>" if prefix else ">", ignore_deletes=True, meta_only=True)
            found: list[str] = []
            try:
                async for entry in watcher:
                    if entry is None:  # the end of what is stored now
                        break
                    found.append(entry.key)
            finally:
                await watcher.stop()
            return sorted(found)

        result: list[str] = self._call(f"listing keys of {self.name}", keys())
        return result

    def items(self, prefix: str = "") -> list[tuple[str, Entry]]:
        """Keys (all, or under ``prefix``: whole '.'-separated parts) with their values and revisions, by key.

        One watcher delivers them all, instead of one request per key.
        """
        async def items() -> list[tuple[str, Entry]]:
            watcher = await self._kv.watch(f"{prefix}.>" if prefix else ">", ignore_deletes=True)
            found: list[tuple[str, Entry]] = []
            try:
                async for entry in watcher:
                    if entry is None:  # the end of what is stored now
                        break
                    found.append((entry.key, Entry(entry.value or b"", int(entry.revision))))
            finally:
                await watcher.stop()
            return sorted(found)

        result: list[tuple[str, Entry]] = self._call(f"listing keys of {self.name}", items())
        return result

    def destroy(self) -> None:
        """Delete the whole bucket (tests, and removing a log)."""
        js = self.client.nc.jetstream(timeout=self.client.timeout)

        async def destroy() -> None:
            with contextlib.suppress(self._errors.NotFoundError):
                await js.delete_key_value(self.name)

        self._call(f"deleting {self.name}", destroy())
