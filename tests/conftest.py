"""Shared fixtures: every test gets its own log in a temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evlog import Log


@pytest.fixture
def log_path(tmp_path: Path) -> str:
    """A path for a log that does not exist yet."""
    return str(tmp_path / "events.lmdb")


BACKENDS = ["lmdb"]
"""The kinds of log the shared backend suite (tests/test_backend_suite.py) runs against."""


@pytest.fixture(params=BACKENDS)
def any_log_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Makes locations of fresh logs, not yet created, of one kind per parameter."""
    made = iter(range(1_000_000))

    def make() -> str:
        return str(tmp_path / f"log-{next(made)}.lmdb")

    return make


@pytest.fixture
def any_log(any_log_factory: Callable[[], str]) -> str:
    """The location of a fresh log that does not exist yet, of each kind in turn."""
    return any_log_factory()


@pytest.fixture
def log(log_path: str) -> Iterator[Log]:
    with Log(log_path) as opened:
        yield opened


def run_evlog(
    *args: str,
    log: str | None = None,
    input: bytes | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    """Run the real `evlog` command in a subprocess with real pipes."""
    command = [sys.executable, "-m", "evlog", *args]
    if log is not None:
        command += ["--log", log]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    full_env.update(env or {})
    data = input.encode() if isinstance(input, str) else input
    return subprocess.run(
        command, input=data, stdin=None if data is not None else subprocess.DEVNULL,
        capture_output=True, env=full_env, timeout=timeout,
    )


@pytest.fixture
def evlog() -> object:
    """The `run_evlog` helper, as a fixture."""
    return run_evlog


@pytest.fixture
def spawn() -> Iterator[Callable[..., Any]]:
    """Start evlog processes that are killed (by their own pid) when the test ends."""
    from running import Running

    started: list[Running] = []

    def start(*args: str, **options: Any) -> Running:
        running = Running(list(args), **options)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
