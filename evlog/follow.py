"""Following a log as it grows: waking up on commits, reading each event once.

A follower remembers the next seq it has not printed. Seqs are gapless and
a commit appears whole, so reading ``next..head`` after every wake-up
prints each committed event exactly once, however many arrive at once.

Waking up is the backend's (:meth:`~evlog.backends.Backend.waiter`: inotify
on an LMDB log's directory, a subscription on a server). A wake-up is a
hint: after one with nothing new visible yet, the follower looks again a
few times over the next milliseconds. A bounded poll runs in every case, so
a follower that missed a wake-up is late by at most :data:`POLL_SECONDS`.
Idle, a follower sleeps: no CPU.

Noticing that the reader left: a follower whose filters match nothing for a
long time writes nothing, so a write failing with EPIPE cannot tell it that
its reader (``| head -1``) has gone. It therefore sleeps in the same ``poll``
on its output too: on Linux the write end of a pipe whose reader closed
reports POLLERR (POLLHUP elsewhere), which wakes it at once, and it looks
again after every read, whether that read printed anything or not. It then
ends as a closed pipe ends any evlog command (BrokenPipeError, quietly).

Durable groups (``tail --group``) keep their entries in :mod:`evlog.groups`;
:class:`ExecConsumer` here hands a group's events to ``--exec CMD`` and
acknowledges each one when CMD exits 0, on every kind of log. One follower
per group at a time (a hold that the backend gives: a lock file, a lease on
a server, kept alive while CMD runs), refused with the holder named rather
than shared among competing consumers,
because a group's order and its one-number position are what make its
at-least-once promise checkable (see that module).
"""

from __future__ import annotations

import functools
import os
import select
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from . import scan
from .backends import Backend, open_backend
from .errors import LogNotFoundError, ServerUnavailableError, StorageError
from .groups import (  # noqa: F401  (the durable groups once lived here: kept importable)
    DeadLetter,
    GroupBusyError,
    acknowledge,
    check_group_name,
    group_position,
    park,
    set_group_position,
    settle,
    shell_word,
)
from .log import Log
from .scan import Row

if TYPE_CHECKING:
    from .backends import GroupEntries
    from .backends.lmdb.store import Store
from .textsafe import visible

POLL_SECONDS = 0.25
"""Longest wait for a commit that sent no notification."""
RECHECK_SECONDS = (0.001, 0.003, 0.01, 0.03)
"""After a data.mdb change event with nothing new visible yet, look again after these delays."""
READER_CHECK_SECONDS = 10.0

OUTAGE_SECONDS = 30.0
"""How long a follower waits out a server that stopped answering (a leader election takes ~5 s)."""
OUTAGE_RETRY_SECONDS = 0.25

_GONE = select.POLLERR | select.POLLHUP
T = TypeVar("T")


def ride_out(work: Callable[[], T], report: Callable[[str], None] | None = None) -> T:
    """``work()``, tried again while the log's server does not answer, for up to :data:`OUTAGE_SECONDS`.

    For what a follower does again and again and may safely repeat (reads,
    acknowledgements: each is idempotent), so that a cluster electing a new
    leader does not end it. An LMDB log never raises the error this waits out.
    """
    deadline: float | None = None
    while True:
        try:
            return work()
        except ServerUnavailableError as error:
            now = time.monotonic()
            if deadline is None:
                deadline = now + OUTAGE_SECONDS
                if report is not None:
                    report(f"{error}; trying again for up to {OUTAGE_SECONDS:g} s")
            if now >= deadline:
                raise
            time.sleep(OUTAGE_RETRY_SECONDS)


def reader_gone(output: int) -> bool:
    """Whether the reader of ``output`` (a pipe or socket) has gone; never blocks.

    A terminal, a file or ``/dev/null`` never reports it.
    """
    poller = select.poll()
    poller.register(output, 0)
    return any(events & _GONE for _, events in poller.poll(0))


def last_rows(
    backend: Backend,
    count: int,
    head: int,
    *,
    types: Callable[[str | None], bool] | None = None,
    streams: Callable[[str | None], bool] | None = None,
    where: Callable[[int, Any], bool] | None = None,
) -> list[scan.Row]:
    """The last ``count`` events up to ``head`` that pass the filters (``tail -n``)."""
    found: list[scan.Row] = []
    high = head
    span = max(count, 256)
    while high >= 1 and len(found) < count:
        low = max(1, high - span + 1)
        chunk = [row for row in backend.rows(low, high, types=types, streams=streams)
                 if where is None or where(*row)]
        found = chunk + found
        high = low - 1
        span = min(span * 4, 1 << 20)  # sparse matches: widen the window
    return found[-count:] if count else []


def wait_for_log(path: str, *, poll: float = 0.1) -> bool:
    """Block until a log exists at ``path`` (``evlog tail --wait``); True if it had to wait.

    Only a log that does not exist yet is waited for: a path that can never
    become one (a file, another program's data) fails at once, as without
    ``--wait``.
    """
    waited = False
    while True:
        try:
            open_backend(path, create=False, writable=False).close()
            return waited
        except LogNotFoundError:
            waited = True
            time.sleep(poll)


def follow(
    log: Log,
    first: int,
    *,
    types: Callable[[str | None], bool] | None = None,
    streams: Callable[[str | None], bool] | None = None,
    on_idle: Callable[[], None] | None = None,
    output: int | None = None,
    report: Callable[[str], None] | None = None,
) -> Iterator[tuple[list[scan.Row], int]]:
    """Rows from seq ``first`` on, forever, as commits arrive.

    Yields ``(rows, last)``: the rows that passed the filters and the last
    seq read. ``on_idle`` is called each time the follower has caught up and
    is about to wait. When the reader of the file descriptor ``output`` has
    gone, :class:`BrokenPipeError` ends the follow, whether events arrive or
    not: checked before every read and while waiting. A server that stops
    answering is waited out (:func:`ride_out`; ``report`` says so once).
    """
    backend = log.backend()
    watcher = backend.waiter()
    next_seq = max(first, 1)
    last_reader_check = time.monotonic()

    def read(low: int, high: int) -> list[scan.Row]:
        return list(backend.rows(low, high, types=types, streams=streams))

    try:
        while True:
            if output is not None and reader_gone(output):
                raise BrokenPipeError(f"the reader of file descriptor {output} has gone")
            head = ride_out(backend.head, report)
            if head >= next_seq:
                end = min(head, next_seq + 16 * scan.CHUNK - 1)
                rows = ride_out(functools.partial(read, next_seq, end), report)
                next_seq = end + 1
                yield rows, end
                continue
            if on_idle is not None:
                on_idle()
            if time.monotonic() - last_reader_check > READER_CHECK_SECONDS:
                backend.housekeeping()
                last_reader_check = time.monotonic()
            if watcher.wait(POLL_SECONDS, output):
                # A data.mdb event can come before its commit is visible: look again
                # shortly, waking at once on the sidecar touch that follows the commit.
                for delay in RECHECK_SECONDS:
                    if ride_out(backend.head, report) >= next_seq:
                        break
                    watcher.wait(delay, output)
    finally:
        watcher.close()


# -- durable groups: --exec acknowledges by a command's exit status ----------------------

BACKOFF_FIRST = 0.1
"""Seconds before the second attempt of a failing CMD; each later wait doubles ..."""
BACKOFF_MAX = 5.0
"""... up to this many seconds."""
DEFAULT_MAX_ATTEMPTS = 5

def backoff_delays() -> Iterator[float]:
    """Waits between attempts of a failing CMD: 0.1 s, doubling, at most 5 s."""
    delay = BACKOFF_FIRST
    while True:
        yield delay
        delay = min(delay * 2, BACKOFF_MAX)


def event_line(row: Row) -> bytes:
    """The event as one NDJSON line, as ``tail`` prints it."""
    import orjson

    from .output import event_dicts

    event = next(event_dicts([row]))
    return orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)


def command_environment(group: str, row: Row, attempt: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """CMD's environment: the caller's, with ``EVLOG_SEQ``, ``EVLOG_TYPE``, ``EVLOG_STREAM`` and the others.

    An environment cannot carry a NUL character: a value holding one is left
    out (the NDJSON on stdin has it exactly).
    """
    seq, envelope = row
    env = dict(os.environ if base is None else base)
    values = {
        "EVLOG_SEQ": str(seq),
        "EVLOG_TYPE": envelope[3],
        "EVLOG_STREAM": envelope[4] or "",
        "EVLOG_ID": envelope[5],
        "EVLOG_GROUP": group,
        "EVLOG_ATTEMPT": str(attempt),
    }
    for variable, value in values.items():
        env.pop(variable, None)  # never one inherited from the caller's own environment
        if isinstance(value, str) and "\x00" not in value:
            env[variable] = value
    return env


KEEPALIVE_SECONDS = 1.0
"""While CMD runs, ``keepalive`` is called this often (a follower's hold on its group may need renewing)."""


def run_command(command: str, line: bytes, env: dict[str, str],
                keepalive: Callable[[], None] | None = None) -> int:
    """Run ``sh -c command`` with ``line`` on its stdin; its exit status (minus the signal that ended it).

    ``keepalive`` is called every :data:`KEEPALIVE_SECONDS` while CMD runs; if
    it raises, CMD is waited for and the error raised after it.
    """
    import subprocess  # here: importing it costs start-up time that only --exec needs

    sys.stdout.flush()  # CMD writes to the same stdout
    try:
        if keepalive is None:
            return subprocess.run(["/bin/sh", "-c", command], input=line, env=env, check=False).returncode
        import threading

        # CMD is fed and waited for in a thread, so that this one can call keepalive (the log's
        # client is not for other threads) and is woken the moment CMD ends (Popen.wait with a
        # timeout would poll).
        with subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE, env=env) as process:
            ended = threading.Event()

            def feed() -> None:
                try:
                    process.communicate(line)
                finally:
                    ended.set()

            threading.Thread(target=feed, daemon=True).start()
            while not ended.wait(KEEPALIVE_SECONDS):
                try:
                    keepalive()
                except BaseException:
                    ended.wait()
                    raise
            return process.wait()
    except OSError as exc:
        raise StorageError(f"cannot run --exec command: {exc.strerror}") from None


Reporter = Callable[[str], None]


class ExecConsumer:
    """Delivers events of a group to ``sh -c CMD`` one at a time and acknowledges each on exit 0.

    A failing CMD is run again after :func:`backoff_delays`, up to
    ``max_attempts`` in all; then the event is parked as a dead letter and
    the group moves past it. The position is committed after every event, so
    after a crash only the event whose CMD had succeeded but whose
    acknowledgement was not yet committed runs again.
    """

    def __init__(self, store: GroupEntries | Store, group: str, command: str, *,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS, report: Reporter | None = None,
                 sleep: Callable[[float], None] = time.sleep, keepalive: Callable[[], None] | None = None) -> None:
        self.store = store
        self.keepalive = keepalive
        self.group = group
        self.command = command
        self.max_attempts = max_attempts
        self.report = report
        self.sleep = sleep
        self.parked = 0

    def _say(self, message: str) -> None:
        if self.report is not None:
            self.report(message)

    def _attempts(self, row: Row, earlier: int = 0) -> tuple[bool, int, int]:
        """Run CMD on ``row`` until it succeeds or the attempts are used up: (done, attempts, last status)."""
        line = event_line(row)
        delays = backoff_delays()
        status = 0
        for attempt in range(1, self.max_attempts + 1):
            if self.keepalive is not None:
                self.keepalive()
            status = run_command(self.command, line, command_environment(self.group, row, earlier + attempt),
                                 self.keepalive)
            if status == 0:
                return True, attempt, 0
            if attempt < self.max_attempts:
                delay = next(delays)
                self._say(f"group {visible(self.group)!r}: seq {row[0]}: --exec command {_status_text(status)} "
                          f"(attempt {attempt} of {self.max_attempts}); trying again in {delay:g} s")
                self.sleep(delay)
        return False, self.max_attempts, status

    def deliver(self, row: Row) -> bool:
        """Handle a new event: acknowledged on success, parked after the last failed attempt."""
        done, attempts, status = self._attempts(row)
        if done:
            ride_out(lambda: acknowledge(self.store, self.group, [row[0]]), self.report)
            return True
        letter = DeadLetter(row[0], attempts, status, time.time_ns(), False)
        ride_out(lambda: park(self.store, self.group, letter), self.report)
        self.parked += 1
        self._say(f"group {visible(self.group)!r}: seq {row[0]}: --exec command {_status_text(status)} "
                  f"{attempts} times; parked as a dead letter (see evlog group dead {shell_word(self.group)})")
        return False

    def redeliver(self, row: Row, letter: DeadLetter) -> bool:
        """Handle a queued dead letter: removed on success, kept (no longer queued) after more failures."""
        done, attempts, status = self._attempts(row, letter.attempts)
        total = letter.attempts + attempts
        settled = DeadLetter(letter.seq, total, status, time.time_ns(), False)
        ride_out(lambda: settle(self.store, self.group, settled, done=done), self.report)
        if not done:
            self.parked += 1
            self._say(f"group {visible(self.group)!r}: seq {row[0]}: --exec command {_status_text(status)} "
                      f"again; still a dead letter after {total} attempts")
        return done


def _status_text(status: int) -> str:
    return f"was killed by signal {-status}" if status < 0 else f"exited with {status}"
