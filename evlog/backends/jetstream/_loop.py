"""The process's one asyncio event loop for nats-py, the lazy ``import nats``, and raw message handlers.

evlog's library and commands are synchronous; nats-py is asyncio. Rather than
run a loop in a second thread (every call a cross-thread hand-off, the GIL
contended by the reader), each process has one event loop, created on first
use, and every operation is one ``run_until_complete`` in the caller's thread.

Raw handlers take a subscription's messages before nats-py builds a ``Msg``
and parses its headers (character by character: half of a replay's time), for
the two hot paths: reading (``reader``) and acks of pipelined batches
(``publish``). They rely on nats-py's ``Client._process_msg``, the one call
its protocol parser makes per message.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ...errors import MissingExtraError

T = TypeVar("T")
RawHandler = Callable[[bytes, bytes, bytes, "bytes | None"], None]  # subject, reply, data, raw headers

_LOOP: asyncio.AbstractEventLoop | None = None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on the process's event loop (created on first use)."""
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
        atexit.register(_end_loop, _LOOP)
    return _LOOP.run_until_complete(coro)


def _end_loop(loop: asyncio.AbstractEventLoop) -> None:
    """At exit, end the connection's tasks quietly: unended, asyncio reports each one on stderr."""
    if loop.is_closed() or loop.is_running():
        return
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.close()


def import_nats() -> Any:
    """Import nats-py, or MissingExtraError (exit 2) that says which extra to install."""
    try:
        import nats
        import nats.js.api  # the submodules the client uses, loaded once here
        import nats.js.errors
    except ImportError as error:
        raise MissingExtraError(
            "a nats:// log needs the NATS client: pip install 'evlog-cli[nats]'"
        ) from error
    return nats


def raw_handlers(nc: Any) -> dict[int, RawHandler]:
    """The connection's table of raw message handlers by subscription id (installed on first use)."""
    handlers: dict[int, RawHandler] | None = getattr(nc, "_evlog_handlers", None)
    if handlers is not None:
        return handlers
    table: dict[int, RawHandler] = {}
    original = nc._process_msg

    async def process(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        handler = table.get(sid)
        if handler is None:
            await original(sid, subject, reply, data, headers)
        else:
            handler(subject, reply, data, headers)

    nc._process_msg = process
    nc._evlog_handlers = table
    return table


def parse_headers(raw: bytes) -> dict[str, str] | None:
    """Headers from their wire form: a ``NATS/1.0`` line, then ``Name: value`` lines.

    Names from the server are tokens, so a split is enough.
    """
    out: dict[str, str] = {}
    for line in raw.split(b"\r\n")[1:]:
        if line:
            name, _, value = line.partition(b":")
            out[name.decode(errors="replace")] = value.strip().decode(errors="replace")
    return out or None
