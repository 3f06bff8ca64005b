"""Long-running evlog processes for the follower tests (``tail -f``, groups).

A :class:`Running` process has reader threads that collect its stdout lines and
its stderr, so a test can wait for each expected line with a timeout instead of
a fixed sleep; the ``spawn`` fixture kills what a test started, by pid.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from conftest import run_evlog

TIMEOUT = 30.0
"""The longest wait for anything a follower should print (the machine may be busy)."""
LIVE_SECONDS = 5.0
"""An appended event must reach a live follower within this time ("a couple of seconds", generously)."""

# Runs `python -m evlog ARGS` with SIGINT at its default disposition, so that the
# interpreter installs its KeyboardInterrupt handler even when the test runner was
# started with SIGINT ignored (as background jobs of a non-interactive shell are).
_SIGINT_DEFAULT_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, '-m', 'evlog', *sys.argv[1:]])"
)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    env.update(extra or {})
    return env


class Running:
    """A long-running evlog process; threads collect its stdout lines and its stderr."""

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        stdin: Any = subprocess.DEVNULL,
        stdout: Any = subprocess.PIPE,
        sigint_default: bool = False,
        collect: bool = True,
        parse: Callable[[bytes], dict[str, Any]] = json.loads,
    ) -> None:
        self.parse = parse
        self.received: list[bytes] = []  # every line, also those already taken
        prefix = [sys.executable, "-c", _SIGINT_DEFAULT_EXEC] if sigint_default else [sys.executable, "-m", "evlog"]
        self.args = args
        self.proc = subprocess.Popen(
            [*prefix, *args], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=clean_env(env)
        )
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self._err = bytearray()
        self._threads = [threading.Thread(target=self._pump_err, daemon=True)]
        if self.proc.stdout is not None and collect:
            self._threads.append(threading.Thread(target=self._pump_out, daemon=True))
        for thread in self._threads:
            thread.start()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self.received.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: os.read(self.proc.stderr.fileno(), 65536), b""):  # type: ignore[union-attr]
            self._err.extend(chunk)

    @property
    def stderr(self) -> bytes:
        return bytes(self._err)

    def describe(self) -> str:
        stderr = self.stderr.decode(errors="replace")
        return f"evlog {' '.join(self.args)} (exit {self.proc.poll()}), stderr: {stderr!r}"

    def line(self, timeout: float = TIMEOUT) -> bytes:
        """The next stdout line; fails after ``timeout`` or at the end of the output."""
        try:
            line = self.lines.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            raise AssertionError(f"no output line within {timeout:.1f} s from {self.describe()}") from None
        if line is None:
            self.lines.put(None)  # stays at the end
            raise AssertionError(f"output ended early: {self.describe()}")
        return line

    def events(self, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        return [self.parse(self.line(deadline - time.monotonic())) for _ in range(count)]

    def events_until(self, last: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Events up to and including the first for which ``last`` is true."""
        deadline = time.monotonic() + timeout
        found = []
        while True:
            event = self.parse(self.line(deadline - time.monotonic()))
            found.append(event)
            if last(event):
                return found

    def pending(self) -> list[bytes]:
        """Lines already received and not yet taken."""
        taken: list[bytes] = []
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return taken
            if line is None:
                self.lines.put(None)
                return taken
            taken.append(line)

    def finish(self, timeout: float = TIMEOUT) -> int:
        code = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=timeout)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)
        for thread in self._threads:
            thread.join(timeout=TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def append(log: str, *events: dict[str, Any], env: dict[str, str] | None = None, batch: int | None = None) -> None:
    """Append events with one `evlog append` process reading NDJSON from a pipe."""
    args = ["append"] + (["--batch", str(batch)] if batch else [])
    text = "".join(json.dumps(event) + "\n" for event in events)
    result = run_evlog(*args, log=log, input=text, env=env, timeout=120)
    assert (result.returncode, result.stderr) == (0, b""), result.stderr.decode()
