"""Waking a follower of a log on a NATS server: a core subscription on the log's subjects.

The server delivers every event it stores to core subscribers of its
subject as well, so a follower sleeps in this subscription and wakes on
each append; it then reads what is new itself (the message woken for is
not used: it carries no stream seq).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from .client import run

if TYPE_CHECKING:
    from .client import LogClient


class Waiter:
    """A core subscription on the log's subjects: every stored event wakes the follower."""

    def __init__(self, client: LogClient, subjects: str) -> None:
        self.client = client
        self.woken = False

        async def start() -> Any:
            self.signal = asyncio.Event()

            async def wake(_message: Any) -> None:
                self.signal.set()

            return await client.nc.subscribe(subjects, cb=wake)

        self.subscription = run(start())

    def wait(self, timeout: float, output: int | None = None) -> bool:
        async def waiting() -> bool:
            try:
                await asyncio.wait_for(self.signal.wait(), timeout)
            except asyncio.TimeoutError:
                return False
            self.signal.clear()
            return True

        return run(waiting())

    def close(self) -> None:
        with contextlib.suppress(self.client._nats.errors.Error, asyncio.TimeoutError):  # connection gone already
            run(self.subscription.unsubscribe())
