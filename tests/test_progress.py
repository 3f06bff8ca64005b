"""Progress bars on stderr: drawn on a terminal only, and nothing of them anywhere else.

The commands run for real, with stderr on a pseudo-terminal (read in a
thread until the last writer is gone) and stdout a pipe, and again with
both on pipes: the bar's words and the summary line reach the terminal,
stdout is the same bytes either way, and stderr in a pipe is exactly what
the command printed before bars existed. ``EVLOG_PROGRESS_DELAY=0`` lets a
bar appear on a few thousand events; one test keeps the default to show
that quick work draws nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from running import clean_env

from evlog import Log
from evlog.backup import backup
from evlog.cli import _progress
from evlog.feed import Feeder, feed_ndjson
from evlog.fold import FoldSpec
from evlog.runner import run_fold

EVENTS = 5000
ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]")
TIMING = r"in \d+\.\d+ s \([\d,.]+ events/s\)"
# Runs `python -m evlog ARGS` with SIGINT at its default disposition (see running.py).
SIGINT_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, '-m', 'evlog', *sys.argv[1:]])"
)


def ndjson(count: int, start: int = 0) -> bytes:
    return b"".join(
        b'{"type":"%s","stream":"account-%d","data":{"amount":%d}}\n'
        % (b"deposit" if i % 3 else b"withdraw", i % 50, i % 100)
        for i in range(start, start + count)
    )


@pytest.fixture
def make_log(tmp_path: Path) -> Callable[[], str]:
    """A new log of EVENTS events at each call (commands that save snapshots each get their own)."""
    made = 0

    def make() -> str:
        nonlocal made
        made += 1
        path = str(tmp_path / f"log-{made}.lmdb")
        with Log(path) as log:
            log.append_many(json.loads(line) for line in ndjson(EVENTS).splitlines())
        return path

    return make


def environment(delay: str | None = "0") -> dict[str, str]:
    env = clean_env({"TERM": "xterm-256color"})
    for name in ("COLUMNS", "LINES", "NO_COLOR"):
        env.pop(name, None)
    if delay is not None:
        env["EVLOG_PROGRESS_DELAY"] = delay
    return env


class Terminal:
    """A pseudo-terminal whose output is collected by a thread until every writer has closed it."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        self._data = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the last writer is gone
                return
            if not chunk:
                return
            self._data.extend(chunk)

    def release(self) -> None:
        """Close this side's copy of the terminal: a child now holds the only one."""
        os.close(self.slave)

    def output(self) -> bytes:
        """All that was written, once the writers are gone (raw: escapes and CRs included)."""
        self._reader.join(timeout=60)
        os.close(self.master)
        return bytes(self._data)


def text_of(raw: bytes) -> str:
    """What a terminal shows, roughly: escape sequences and carriage returns left out."""
    return ESCAPES.sub(b"", raw).replace(b"\r", b"").decode()


def evlog_on_terminal(
    *args: str, stdin: Any = None, input: bytes | None = None, stdout_too: bool = False,
    env: dict[str, str] | None = None,
) -> tuple[int, bytes, str]:
    """Run evlog with stderr (and with ``stdout_too`` stdout) on a terminal: exit code, stdout, terminal text."""
    terminal = Terminal()
    process = subprocess.Popen(
        [sys.executable, "-m", "evlog", *args],
        stdin=subprocess.PIPE if input is not None else (stdin if stdin is not None else subprocess.DEVNULL),
        stdout=terminal.slave if stdout_too else subprocess.PIPE,
        stderr=terminal.slave,
        env=environment() if env is None else env,
    )
    terminal.release()
    out, _ = process.communicate(input, timeout=120)
    return process.returncode, out or b"", text_of(terminal.output())


def evlog_piped(*args: str, stdin: Any = None, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The same command with stdout and stderr on pipes, and the bar's delay at 0 all the same."""
    return subprocess.run(
        [sys.executable, "-m", "evlog", *args], input=input,
        stdin=None if input is not None else (stdin if stdin is not None else subprocess.DEVNULL),
        capture_output=True, env=environment(), timeout=120,
    )


# -- the commands on a terminal, and in pipes ------------------------------------------------------


def test_append_from_a_file_shows_a_bar_by_bytes(tmp_path: Path) -> None:
    source = tmp_path / "events.ndjson"
    source.write_bytes(ndjson(EVENTS))
    with source.open("rb") as stdin:
        code, out, shown = evlog_on_terminal("append", "-o", "seq", "--log", str(tmp_path / "a.lmdb"), stdin=stdin)
    assert code == 0, shown
    assert "appending" in shown and "100%" in shown
    assert re.search(rf"^evlog: appended {EVENTS:,} events \(seq 1-{EVENTS}\) {TIMING}$", shown, re.MULTILINE), shown
    with source.open("rb") as stdin:
        piped = evlog_piped("append", "-o", "seq", "--log", str(tmp_path / "b.lmdb"), stdin=stdin)
    assert (piped.returncode, piped.stderr) == (0, b"")
    assert out == piped.stdout == b"".join(b"%d\n" % seq for seq in range(1, EVENTS + 1))


def test_append_from_a_pipe_counts_without_a_total(tmp_path: Path) -> None:
    code, out, shown = evlog_on_terminal("append", "--log", str(tmp_path / "a.lmdb"), input=ndjson(EVENTS))
    assert (code, out) == (0, b""), shown
    assert "appending" in shown and f"{EVENTS:,} events" in shown
    assert "%" not in shown  # the size of a pipe's input is not known: no percentage
    assert re.search(rf"^evlog: appended {EVENTS:,} events \(seq 1-{EVENTS}\) {TIMING}$", shown, re.MULTILINE), shown


def test_append_messages_in_a_pipe_are_as_before(tmp_path: Path) -> None:
    data = ndjson(2) + b'{"data": 1}\n' + ndjson(EVENTS - 3, start=2)
    piped = evlog_piped("append", "--skip-invalid", "-o", "seq", "--log", str(tmp_path / "a.lmdb"), input=data)
    assert piped.returncode == 0
    assert piped.stderr == (
        b'evlog: skipped: line 3: missing "type" (every event needs one)\n'
        b"evlog: appended 4,999 events (seq 1-4999); skipped 1 invalid\n"
    )
    code, out, shown = evlog_on_terminal(
        "append", "--skip-invalid", "-o", "seq", "--log", str(tmp_path / "b.lmdb"), input=data
    )
    assert code == 0 and out == piped.stdout
    # On the terminal the same messages, the rejected line above the bar, the summary with its timing.
    assert 'evlog: skipped: line 3: missing "type" (every event needs one)\n' in shown
    assert re.search(rf"^evlog: appended 4,999 events \(seq 1-4999\); skipped 1 invalid {TIMING}$", shown, re.MULTILINE)


def test_replay_shows_a_bar_by_events(make_log: Callable[[], str]) -> None:
    log = make_log()
    code, out, shown = evlog_on_terminal("replay", "--log", log)
    assert code == 0, shown
    assert "replaying" in shown and "100%" in shown
    assert re.search(rf"^evlog: replayed {EVENTS:,} events {TIMING}$", shown, re.MULTILINE), shown
    piped = evlog_piped("replay", "--log", log)
    assert (piped.returncode, piped.stderr) == (0, b"")
    assert out == piped.stdout and out.count(b"\n") == EVENTS


def test_replay_counts_what_it_prints(make_log: Callable[[], str]) -> None:
    log = make_log()
    code, out, shown = evlog_on_terminal("replay", "-t", "withdraw", "--log", log)
    printed = out.count(b"\n")
    assert code == 0 and 0 < printed < EVENTS
    assert re.search(rf"^evlog: replayed {printed:,} events {TIMING}$", shown, re.MULTILINE), shown
    assert out == evlog_piped("replay", "-t", "withdraw", "--log", log).stdout


def test_no_bar_when_the_events_go_to_the_same_terminal(make_log: Callable[[], str]) -> None:
    code, _, shown = evlog_on_terminal("replay", "-o", "ndjson", "--log", make_log(), stdout_too=True)
    assert code == 0
    assert "replaying" not in shown and "evlog:" not in shown
    assert shown.count("\n") == EVENTS


def test_a_fold_shows_a_bar(make_log: Callable[[], str]) -> None:
    log = make_log()
    fold = ("replay", "--init", "0", "--fold", "s + d.amount", "--log", log)
    code, out, shown = evlog_on_terminal(*fold)
    assert code == 0, shown
    assert "folding" in shown and "100%" in shown
    assert re.search(rf"^evlog: folded {EVENTS:,} events {TIMING}$", shown, re.MULTILINE), shown
    piped = evlog_piped(*fold)
    assert (piped.returncode, piped.stderr) == (0, b"")
    assert out == piped.stdout == b"%d\n" % sum(i % 100 for i in range(EVENTS))


def test_a_fold_over_named_streams_counts_without_a_total(make_log: Callable[[], str]) -> None:
    fold = ("replay", "-s", "account-7", "--init", "0", "--fold", "s + 1", "--log", make_log())
    code, out, shown = evlog_on_terminal(*fold)
    assert (code, out) == (0, b"100\n"), shown
    assert "folding" in shown and "%" not in shown
    assert re.search(rf"^evlog: folded 100 events {TIMING}$", shown, re.MULTILINE), shown


def test_verify_shows_a_bar(make_log: Callable[[], str]) -> None:
    log = make_log()
    with Log(log) as opened:
        head = opened.info()["head_hash"]
    code, out, shown = evlog_on_terminal("verify", "--log", log)
    assert (code, out) == (0, b""), shown
    assert "verifying" in shown and "100%" in shown
    summary = rf"^evlog: ok: {EVENTS:,} events \(seq 1-{EVENTS}\) verified {TIMING}; head hash {head}, as `evlog info`"
    assert re.search(summary + " shows$", shown, re.MULTILINE), shown
    piped = evlog_piped("verify", "--log", log)
    assert (piped.returncode, piped.stdout) == (0, b"")
    assert piped.stderr == (
        f"evlog: ok: {EVENTS:,} events (seq 1-{EVENTS}) verified; head hash {head}, as `evlog info` shows\n"
    ).encode()


def test_verify_findings_are_the_same_on_stdout(make_log: Callable[[], str]) -> None:
    log = make_log()
    with Log(log) as opened:
        store = opened.store(write=True)
        events = store.dbs[b"events"]

        def damage(txn: Any) -> None:
            key = (1234).to_bytes(8, "big")
            value = bytes(txn.get(key, db=events))
            txn.put(key, value[:-1] + bytes([value[-1] ^ 1]), db=events)  # the stored hash, one bit

        store.write(damage)
    code, out, shown = evlog_on_terminal("verify", "--log", log)
    assert code == 1 and out.startswith(b"seq 1234: does not match its hash")
    assert re.search(rf"^evlog: 1 problem in {EVENTS:,} events \(seq 1-{EVENTS}\), checked {TIMING}; ", shown,
                     re.MULTILINE), shown
    piped = evlog_piped("verify", "--log", log)
    assert piped.returncode == 1 and piped.stdout == out
    assert piped.stderr.startswith(f"evlog: 1 problem in {EVENTS:,} events (seq 1-{EVENTS}); head hash".encode())


def test_verify_json_gets_a_summary_line_of_its_own(make_log: Callable[[], str]) -> None:
    log = make_log()
    code, out, shown = evlog_on_terminal("verify", "-o", "json", "--log", log)
    assert code == 0 and json.loads(out)["ok"] is True
    assert re.search(rf"^evlog: verified {EVENTS:,} events {TIMING}$", shown, re.MULTILINE), shown
    piped = evlog_piped("verify", "-o", "json", "--log", log)
    assert piped.stderr == b"" and piped.stdout == out


@pytest.mark.parametrize("compact", [False, True])
def test_backup_shows_a_bar_by_bytes(make_log: Callable[[], str], tmp_path: Path, compact: bool) -> None:
    log = make_log()
    extra = ["--compact"] if compact else []
    code, out, shown = evlog_on_terminal("backup", str(tmp_path / "one"), *extra, "--log", log)
    assert code == 0, shown
    assert "backing up" in shown and "100%" in shown
    assert re.search(r"^evlog: copied [\d.]+ (kB|MB) in \d+\.\d+ s \([\d.]+ (kB|MB|GB)/s\)$", shown, re.MULTILINE)
    piped = evlog_piped("backup", str(tmp_path / "two"), *extra, "--log", log)
    assert (piped.returncode, piped.stderr) == (0, b"")
    assert out.replace(b"/one;", b"/two;") == piped.stdout
    assert out.startswith(b"%d events copied to " % EVENTS)


def test_snapshot_save_shows_a_bar(make_log: Callable[[], str]) -> None:
    save = ("snapshot", "save", "--init", "0", "--fold", "s + d.amount")
    code, out, shown = evlog_on_terminal(*save, "--log", make_log())
    assert code == 0, shown
    assert "folding" in shown and "100%" in shown
    assert re.search(rf"^evlog: folded {EVENTS:,} events {TIMING}$", shown, re.MULTILINE), shown
    piped = evlog_piped(*save, "--log", make_log())
    assert piped.returncode == 0 and piped.stdout == out
    digest = out.split()[0].decode()
    assert re.fullmatch(
        rf"evlog: saved the state after seq {EVENTS} \(\d+ bytes\) as snapshot {digest}\n", piped.stderr.decode()
    )
    assert f"evlog: saved the state after seq {EVENTS} " in shown


def test_projection_show_shows_a_bar_only_far_from_a_snapshot(make_log: Callable[[], str]) -> None:
    logs = make_log(), make_log()
    for log in logs:
        added = evlog_piped("projection", "add", "total", "--init", "0", "--fold", "s + d.amount",
                            "--snapshot-every", "1000", "--log", log)
        assert (added.returncode, added.stderr) == (0, b"")
    # The reader allows a snapshot every 1,000 events (the default floor is 50,000).
    code, out, shown = evlog_on_terminal("projection", "show", "total", "--snapshot-every", "1000", "--log", logs[0])
    assert code == 0, shown
    assert "folding" in shown and "100%" in shown
    assert re.search(rf"^evlog: folded {EVENTS:,} events {TIMING}$", shown, re.MULTILINE), shown
    piped = evlog_piped("projection", "show", "total", "--log", logs[1])
    assert (piped.returncode, piped.stderr) == (0, b"")
    assert out == piped.stdout == b"%d\n" % sum(i % 100 for i in range(EVENTS))
    # Asked again, the answer is a saved snapshot: nothing to fold, no bar, no summary.
    again_code, again, shown = evlog_on_terminal("projection", "show", "total", "--log", logs[0])
    assert (again_code, again, shown) == (0, out, "")


def test_quick_work_draws_nothing_with_the_default_delay(tmp_path: Path) -> None:
    code, out, shown = evlog_on_terminal(
        "append", "--log", str(tmp_path / "a.lmdb"), input=ndjson(3), env=environment(delay=None)
    )
    assert (code, out) == (0, b"")
    assert shown == "evlog: appended 3 events (seq 1-3)\n"


def test_ctrl_c_stops_the_bar_and_restores_the_cursor(tmp_path: Path) -> None:
    terminal = Terminal()
    process = subprocess.Popen(
        [sys.executable, "-c", SIGINT_DEFAULT, "append", "--log", str(tmp_path / "a.lmdb")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=terminal.slave, env=environment(),
    )
    terminal.release()
    assert process.stdin is not None
    seen = terminal._data  # grows as the reader thread reads
    deadline = time.monotonic() + 60
    start = 0
    while b"appending" not in seen:  # a live producer, until the bar is up
        assert time.monotonic() < deadline, bytes(seen)
        process.stdin.write(ndjson(200, start=start))
        process.stdin.flush()
        start += 200
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    process.stdin.close()
    assert process.stdout is not None
    process.stdout.close()
    raw = terminal.output()
    assert raw.rfind(b"\x1b[?25h") > raw.rfind(b"\x1b[?25l") >= 0  # the cursor is shown again
    shown = text_of(raw)
    assert "Traceback" not in shown
    assert re.search(r"^evlog: interrupted by Ctrl-C: appended [\d,]+ events", shown, re.MULTILINE), shown


# -- what is imported -------------------------------------------------------------------------------

_MODULES_AT_EXIT = (
    "import atexit, sys\n"
    "def report():\n"
    "    loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'rich' or m == 'evlog.cli._progress')\n"
    "    with open(sys.argv[1], 'w') as out: out.write(' '.join(loaded))\n"
    "atexit.register(report)\n"
    "from evlog.cli import main\n"
    "main(sys.argv[2:])\n"
)


def loaded_modules(tmp_path: Path, *args: str, input: bytes | None = None, terminal: bool) -> list[str]:
    report = tmp_path / "modules.txt"
    command = [sys.executable, "-c", _MODULES_AT_EXIT, str(report), *args]
    if terminal:
        pty = Terminal()
        process = subprocess.Popen(command, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=pty.slave, env=environment())
        pty.release()
        process.communicate(input, timeout=60)
        pty.output()
    else:
        process = subprocess.Popen(command, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment())
        process.communicate(input, timeout=60)
    assert process.returncode == 0
    return report.read_text().split()


def test_appending_one_event_imports_no_progress_code(tmp_path: Path) -> None:
    log = str(tmp_path / "a.lmdb")
    assert loaded_modules(tmp_path, "append", "deposit", "amount:=1", "--log", log, terminal=True) == []


def test_no_rich_without_a_terminal(tmp_path: Path) -> None:
    loaded = loaded_modules(tmp_path, "append", "--log", str(tmp_path / "a.lmdb"), input=ndjson(EVENTS),
                            terminal=False)
    assert not [name for name in loaded if name.startswith("rich")]


# -- the library's callbacks --------------------------------------------------------------------------


@pytest.fixture
def filled(make_log: Callable[[], str]) -> Iterator[Log]:
    with Log(make_log()) as log:
        yield log


def test_read_reports_per_chunk(filled: Log) -> None:
    calls: list[tuple[int, int | None]] = []
    assert sum(1 for _ in filled.read(progress=lambda done, total: calls.append((done, total)))) == EVENTS
    assert calls[-1] == (EVENTS, EVENTS)
    assert 2 <= len(calls) <= EVENTS // 1000 + 1  # per chunk, not per event
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    calls.clear()
    assert sum(1 for _ in filled.read(from_=-10, progress=lambda done, total: calls.append((done, total)))) == 10
    assert calls == [(10, 10)]


def test_read_through_the_stream_index_has_no_total(filled: Log) -> None:
    calls: list[tuple[int, int | None]] = []
    read = list(filled.read(streams=["account-7"], progress=lambda done, total: calls.append((done, total))))
    assert len(read) == EVENTS // 50
    assert calls == [(EVENTS // 50, None)]


def test_a_fold_reports_the_events_after_its_snapshot(filled: Log) -> None:
    spec = FoldSpec(init=0, clauses=((None, "s + d.amount"),))
    calls: list[tuple[int, int | None]] = []
    result, _ = run_fold(filled, spec, until=3000, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (3000, 3000) and len(calls) >= 1
    filled.store(write=True)
    from evlog import snapshots

    snapshots.save(filled.store(), spec, 1, 3000, 0, result.states)
    calls.clear()
    run_fold(filled, spec, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (EVENTS - 3000, EVENTS - 3000)  # only what lies after the snapshot


@pytest.mark.parametrize("compact", [False, True])
def test_backup_reports_the_bytes_copied(filled: Log, tmp_path: Path, compact: bool) -> None:
    calls: list[tuple[int, int | None]] = []
    backup(filled, tmp_path / "copy", compact=compact, progress=lambda done, total: calls.append((done, total)))
    size = (tmp_path / "copy" / "data.mdb").stat().st_size
    assert calls[-1] == (size, size)
    assert all(total is not None and done <= total for done, total in calls)


def test_the_feeder_reports_bytes_per_chunk(tmp_path: Path) -> None:
    data = ndjson(EVENTS)
    read, write = os.pipe()
    def produce() -> None:
        os.write(write, data)
        os.close(write)

    writer = threading.Thread(target=produce)
    writer.start()
    sizes: list[int] = []
    try:
        with Log(str(tmp_path / "a.lmdb")) as log:
            summary = feed_ndjson(Feeder(log, progress=sizes.append), read)
    finally:
        writer.join()
        os.close(read)
    assert summary.appended == EVENTS
    assert sum(sizes) == len(data) and len(sizes) < EVENTS // 10


# -- the meter itself -------------------------------------------------------------------------------------


def test_summary_lines() -> None:
    meter = _progress.Meter("appending")
    meter.done, meter.elapsed = 1_000_000, 5.7
    assert meter.summary("appended") == "appended 1,000,000 events in 5.7 s (175,000 events/s)"
    meter.summary_count = 1
    assert meter.summary("replayed") == "replayed 1 event in 5.7 s (0.175 events/s)"
    copied = _progress.Meter("backing up", unit="bytes")
    copied.done, copied.elapsed = 1_600_000_000, 4.0
    assert copied.summary("copied") == "copied 1.6 GB in 4.0 s (400.0 MB/s)"
    appended = _progress.Meter("appending", unit="bytes")
    appended.done, appended.events, appended.elapsed = 110_000_000, 1_000_000, 75.2
    assert appended.summary("appended") == "appended 1,000,000 events in 1 min 15 s (13,300 events/s)"


def test_figures() -> None:
    meter = _progress.Meter("replaying", unit="events")
    meter.done, meter.total = 1024, 200_000
    assert meter.figures(None).startswith("1,024/200,000 events  ")
    assert meter.figures(100_000.0).endswith("100,000 events/s  0:02 left")
    sized = _progress.Meter("appending", unit="bytes")
    sized.done, sized.total, sized.events = 120_300_000, 267_000_000, 812_345
    assert sized.figures(30_200_000.0).startswith("120.3/267.0 MB  812,345 events  30.2 MB/s  0:05 left")


@pytest.mark.parametrize(("value", "delay"), [("0", 0.0), ("0.25", 0.25), ("inf", float("inf")),
                                               ("", 1.0), ("soon", 1.0), ("-1", 1.0), ("nan", 1.0)])
def test_the_delay_setting(monkeypatch: pytest.MonkeyPatch, value: str, delay: float) -> None:
    monkeypatch.setenv("EVLOG_PROGRESS_DELAY", value)
    assert _progress.progress_delay() == delay


def test_stdin_size(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    source = tmp_path / "input"
    source.write_bytes(b"x" * 1000)
    with source.open("rb") as handle:
        handle.seek(100)
        monkeypatch.setattr(sys, "stdin", handle)
        assert _progress.stdin_size() == 900  # what is left to read
    read, write = os.pipe()
    with os.fdopen(read, "rb") as handle, os.fdopen(write, "wb"):
        monkeypatch.setattr(sys, "stdin", handle)
        assert _progress.stdin_size() is None


def test_no_meter_when_stderr_is_no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "stderr_is_terminal", lambda: False)
    with _progress.progress("replaying", "replayed") as meter:
        assert meter is None


def test_the_drawing_thread_leaves_signals_to_the_main_thread() -> None:
    blocked: list[set[int]] = []

    def start() -> None:
        thread = threading.Thread(target=lambda: blocked.append(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
        thread.start()
        thread.join()

    _progress._without_signals(start)
    assert {signal.SIGINT, signal.SIGTERM} <= blocked[0]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the caller's mask is restored
