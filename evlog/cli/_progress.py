"""Progress bars on stderr for the commands whose work can take seconds.

The library reports progress through plain callbacks (``progress=`` of
:meth:`evlog.Log.rows`, :func:`evlog.runner.run_fold`,
:func:`evlog.verify.verify`, :func:`evlog.backup.backup` and the bulk
:class:`evlog.feed.Feeder`); a :class:`Meter` is such a callback, and turns
the calls into a rich progress bar. How it is built, and why:

* Only on a terminal. When stderr is not one, :func:`progress` makes no
  meter at all and the command passes no callback: the library's loops run
  as they always did, and stderr stays byte for byte what it was.
* Only once the work has run for a moment (:envvar:`EVLOG_PROGRESS_DELAY`,
  1 s by default), so quick commands never flash a bar. The bar is
  transient: it is erased when the work ends, and one summary line (count,
  time, rate) is left in its place.
* rich is imported when a bar is first drawn, never before: this module
  needs only the standard library, so importing it costs a command nothing.
* The library calls back once per chunk or batch (thousands of events),
  never per event, and a call is a few assignments and one clock read;
  rich redraws from a thread of its own, about eight times a second.
* Nothing in a bar is read as rich markup, and every text in it is made
  :func:`~evlog.textsafe.visible`: an action may one day name a stream or
  a projection from the log.
* That thread starts with SIGINT and SIGTERM blocked. A bulk append holds
  those signals back while it commits a batch (:mod:`evlog.feed`); a thread
  that could take them would let Ctrl-C in half-way through a commit.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_DELAY = 1.0
"""Seconds of work before a bar is drawn, unless ``EVLOG_PROGRESS_DELAY`` says otherwise."""

_REFRESH_PER_SECOND = 8


def stderr_is_terminal() -> bool:
    try:
        return os.isatty(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no stderr, or one without a descriptor
        return False


def stdin_size() -> int | None:
    """The bytes left to read on stdin when it is a regular file (``< file``); None for a pipe or a terminal."""
    try:
        fd = sys.stdin.fileno()
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        return max(info.st_size - os.lseek(fd, 0, os.SEEK_CUR), 0)
    except (AttributeError, OSError, ValueError):
        return None


def progress_delay() -> float:
    """``EVLOG_PROGRESS_DELAY`` in seconds (``0``: draw at once, ``inf``: never); else the default."""
    try:
        value = float(os.environ.get("EVLOG_PROGRESS_DELAY", ""))
    except ValueError:
        return DEFAULT_DELAY
    return value if value >= 0 else DEFAULT_DELAY  # also NaN, which compares false


class Meter:
    """The progress of one piece of work, drawn as a bar on stderr once it has run for a while.

    Call it as ``meter(done, total)`` (the library's callbacks: units done
    so far, and all of them, or None when unknown), or ``meter.advance(n)``
    for ``n`` more units. ``unit`` is ``"events"`` or ``"bytes"``; a
    byte-counted bar can show an event count beside (``count_events``).
    """

    def __init__(self, action: str, *, unit: str = "events", total: int | None = None) -> None:
        self.action = action
        self.unit = unit
        self.total = total
        self.done = 0
        self.events: int | None = None
        self.summary_count: int | None = None
        """What the summary line counts, when not ``done`` (replay: the events printed)."""
        self.shown = False
        self.started = time.monotonic()
        self.elapsed: float | None = None
        self._draw_at = self.started + progress_delay()
        self._closed = False
        self.abandoned = False
        self._bar: Any = None  # a rich Progress, once drawn
        self._task: Any = None

    # -- reports from the work ------------------------------------------------

    def __call__(self, done: int, total: int | None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        self._tick()

    def advance(self, amount: int) -> None:
        self.done += amount
        self._tick()

    def count_events(self, events: int) -> None:
        """The events the work has produced so far, shown beside a byte count."""
        self.events = events
        self._tick()

    def _tick(self) -> None:
        if self._bar is None:
            if self._closed or time.monotonic() < self._draw_at:
                return
            self._draw()
            if self._bar is None:
                return
        self._bar.update(self._task, completed=self.done, total=self.total)

    # -- drawing ----------------------------------------------------------------

    def _draw(self) -> None:
        from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskProgressColumn, TextColumn
        from rich.table import Column
        from rich.text import Text

        from ..output import make_console
        from ..textsafe import visible

        console = make_console(stderr=True)
        if not console.is_terminal or console.is_dumb_terminal:
            self._closed = True  # nothing can be redrawn here (TERM=dumb): no bar, and so no summary
            return
        meter = self

        class Figures(ProgressColumn):
            """Counts, rate and time, worded by the meter."""

            def render(self, task: Task) -> Text:
                return Text(meter.figures(task.speed), style="progress.download")

        bar = Progress(
            TextColumn("{task.description}", style="progress.description", markup=False),
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            # One line, cut short on a narrow terminal: a bar that wraps cannot be redrawn in place.
            Figures(table_column=Column(no_wrap=True, overflow="ellipsis")),
            console=console,
            transient=True,
            refresh_per_second=_REFRESH_PER_SECOND,
            redirect_stdout=False,  # stdout carries the command's data, written as bytes
            redirect_stderr=True,  # diagnostics printed meanwhile go above the bar, not through it
        )
        self._task = bar.add_task(visible(self.action), total=self.total, completed=self.done)
        _without_signals(bar.start)
        self._bar = bar
        self.shown = True

    def figures(self, speed: float | None) -> str:
        """``120.3/267.0 MB  812,345 events  30.2 MB/s  0:04 left``, as far as known."""
        if self.total is None:
            parts = [self._amount(self.done)]
        elif self.unit == "bytes":
            parts = [_sizes(self.done, self.total)]
        else:
            parts = [f"{self.done:,}/{_count(self.total, self.unit)}"]
        if self.events is not None:
            parts.append(_count(self.events, "events"))
        if speed:
            parts.append(self._rate(speed))
        if self.total is not None and speed:
            parts.append(f"{_clock(max(self.total - self.done, 0) / speed)} left")
        else:
            parts.append(_clock(time.monotonic() - self.started))
        return "  ".join(parts)

    def print_above(self, text: str) -> bool:
        """Print a line above the bar, as it is (no markup); False when no bar is drawn."""
        if self._bar is None:
            return False
        from ..textsafe import visible_lines

        self._bar.console.print("\n".join(visible_lines(text)), soft_wrap=True, markup=False, highlight=False,
                                emoji=False)
        return True

    # -- the end ------------------------------------------------------------------

    def stop(self) -> None:
        """Erase the bar, if one is drawn; safe to call again, also on the way out of an interruption."""
        if self.elapsed is None:
            self.elapsed = time.monotonic() - self.started
        self._closed = True
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.stop()  # transient: the bar's lines are cleared and the cursor shown again

    def abandon(self) -> None:
        """Stop without a summary line (the work did not finish: a closed pipe)."""
        self.abandoned = True
        self.stop()

    def timing(self, count: float, unit: str) -> str:
        """``in 5.7 s (176,000 events/s)``: for a summary line."""
        elapsed = self.elapsed if self.elapsed is not None else time.monotonic() - self.started
        rate = count / max(elapsed, 1e-6)
        rate_text = f"{_size(rate)}/s" if unit == "bytes" else f"{_rounded(rate)} {unit}/s"
        return f"in {_duration(elapsed)} ({rate_text})"

    def summary(self, past: str) -> str:
        """``appended 1,000,000 events in 5.7 s (176,000 events/s)``."""
        if self.summary_count is not None:
            count, unit = self.summary_count, "events"
        elif self.unit == "bytes" and self.events is not None:
            count, unit = self.events, "events"
        else:
            count, unit = self.done, self.unit
        return f"{past} {self._amount(count) if unit == self.unit else _count(count, unit)} {self.timing(count, unit)}"

    def _amount(self, value: int | None) -> str:
        return _size(value or 0) if self.unit == "bytes" else _count(value or 0, self.unit)

    def _rate(self, speed: float) -> str:
        return f"{_size(speed)}/s" if self.unit == "bytes" else f"{_rounded(speed)} {self.unit}/s"


@contextmanager
def progress(action: str, past: str, *, unit: str = "events", enabled: bool = True,
             report: bool = True) -> Iterator[Meter | None]:
    """A :class:`Meter` for the work in the ``with`` block, or None when no bar may be drawn.

    None when stderr is not a terminal, or when the caller says the bar
    would get in the way (``enabled``: the command's own output streams to
    the same terminal). The bar is erased however the block ends; when it
    was drawn and the block ends normally, ``report`` prints the summary
    line, worded with ``past`` (``appended``).
    """
    if not enabled or not stderr_is_terminal():
        yield None
        return
    meter = Meter(action, unit=unit)
    try:
        yield meter
    finally:
        meter.stop()
    if report and meter.shown and not meter.abandoned:
        from ..textsafe import visible

        print(f"evlog: {visible(meter.summary(past))}", file=sys.stderr)


def _without_signals(start: Callable[[], None]) -> None:
    """Run ``start`` with SIGINT and SIGTERM blocked: threads it starts inherit the mask."""
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    except (AttributeError, OSError, ValueError):  # no signal masks here
        start()
        return
    try:
        start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _rounded(value: float) -> str:
    """Three significant digits, with thousands separators: ``175,000``, ``52.4``."""
    if value >= 100:
        return f"{float(f'{value:.3g}'):,.0f}"
    return f"{value:.3g}"


def _count(value: int, unit: str) -> str:
    return f"{value:,} {unit[:-1] if value == 1 and unit.endswith('s') else unit}"


def _size(value: float) -> str:
    """Decimal units, as disks and ``ls -h --si`` count: ``867 bytes``, ``1.6 GB``."""
    if value < 1000:
        return f"{value:,.0f} bytes"
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:,.1f} TB"


def _sizes(done: float, total: float) -> str:
    """``120.3/267.0 MB``: both in the unit of the total."""
    whole = _size(total)
    if whole.endswith(" bytes"):
        return f"{done:,.0f}/{whole}"
    number, unit = whole.split(" ")
    scale = {"kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
    return f"{done / scale:,.1f}/{number} {unit}"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s" if seconds >= 0.1 else f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _clock(seconds: float) -> str:
    """``0:04``, ``12:30``, ``1:02:03``."""
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{rest:02}" if hours else f"{minutes}:{rest:02}"
