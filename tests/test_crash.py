"""Appending processes killed with SIGKILL at random moments.

LMDB commits a transaction by writing its pages and then the meta page, so a
process killed at any instant leaves the log as the last commit left it. For
evlog that means: the log still opens, ``evlog verify`` passes, and the
events stored are exactly a prefix of the input made of whole batches (one
write transaction per batch), never a partial batch and never a gap; every
seq an append reported before it died is kept.

The kill moments are seeded: half of the runs wait a random time spread over
the length of an uninterrupted run, the other half wait until ``data.mdb``
has grown to a random size (so the kill lands while batches are being
committed, whatever the speed of the machine). Every other run starts with
a 1 MiB map (``EVLOG_MAP_SIZE``) so that some kills land during map growth.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_evlog

from evlog import Log

EVENTS = 20_000
BATCH = 500
RUNS = 24
SEED = 20_261_127
SINGLE_RUNS = 30


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    env.update(extra or {})
    return env


@pytest.fixture(scope="module")
def numbered_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20,000 NDJSON events with data {"n": i}: about 600 KB, read by evlog in one chunk."""
    path = tmp_path_factory.mktemp("crash-input") / "events.ndjson"
    path.write_text("".join(json.dumps({"type": "t", "data": {"n": i}}) + "\n" for i in range(EVENTS)))
    assert path.stat().st_size < 1 << 20  # one read: batches are never cut early by the ~20 ms clock
    return path


def start_bulk_append(
    log: str, source: Path, *, printing: bool, stdout: Any, stderr: Any, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """``evlog append --batch 500`` reading ``source`` as stdin (with ``printing``, ``-o seq``)."""
    command = [sys.executable, "-m", "evlog", "append", "--batch", str(BATCH), "--log", log]
    if printing:
        command += ["--output", "seq"]
    with source.open("rb") as stdin:
        return subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=stderr, env=env)


def wait_for_size(path: str, target: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Poll until the file at ``path`` reaches ``target`` bytes, or the process ends (or timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if os.stat(path).st_size >= target:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.0005)


def stored_numbers(log: str) -> list[int]:
    """The data "n" of every stored event, after checking seqs 1..k and the type."""
    with Log(log) as opened:
        events = list(opened.read())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert all(e.type == "t" for e in events)
    return [e.data["n"] for e in events]


def check_after_crash(log: str) -> int:
    """The log opens and verifies, and holds the input's first m events in order; returns m."""
    if not os.path.exists(os.path.join(log, "data.mdb")):
        # Killed before the environment existed: there is no log, and reading creates none.
        info = run_evlog("info", log=log)
        assert info.returncode == 66, info.stderr
        return 0
    info = run_evlog("info", "--output", "json", log=log)
    assert b"Traceback" not in info.stderr
    if info.returncode != 0:
        # Killed while the log was being created, before its first commit.
        # An empty data.mdb (killed between creating the file and writing its
        # meta pages) gives exit 74, see test_foreign_logs.py's xfail.
        size = os.path.getsize(os.path.join(log, "data.mdb"))
        assert info.returncode == 66 or (info.returncode == 74 and size == 0), info.stderr
        return 0
    verified = run_evlog("verify", log=log)
    assert verified.returncode == 0, (verified.stdout, verified.stderr)
    assert b"Traceback" not in verified.stderr
    numbers = stored_numbers(log)
    assert numbers == list(range(len(numbers)))  # a prefix of the input, no gap, in order
    assert json.loads(info.stdout)["events"] == len(numbers)
    return len(numbers)


def test_slow_bulk_append_killed_at_random_moments_leaves_whole_batches(tmp_path: Path, numbered_input: Path) -> None:
    # An uninterrupted run first: how long one takes and how large it grows.
    reference = str(tmp_path / "reference.lmdb")
    started = time.monotonic()
    whole = run_evlog("append", "--batch", str(BATCH), log=reference, input=numbered_input.read_bytes())
    duration = time.monotonic() - started
    assert (whole.returncode, whole.stderr) == (0, b"")
    assert check_after_crash(reference) == EVENTS
    full_size = os.path.getsize(os.path.join(reference, "data.mdb"))

    rng = random.Random(SEED)
    outcomes: list[int] = []
    for run in range(RUNS):
        log = str(tmp_path / f"run-{run}.lmdb")
        env = clean_env({"EVLOG_MAP_SIZE": "1M"} if run % 2 else None)
        printing = run % 3 == 0
        seqs_path = tmp_path / f"run-{run}.seqs"
        err_path = tmp_path / f"run-{run}.err"
        with seqs_path.open("wb") as out, err_path.open("wb") as err:
            process = start_bulk_append(log, numbered_input, printing=printing, stdout=out, stderr=err, env=env)
            if run % 4 < 2:
                time.sleep(rng.uniform(0, duration * 1.1))  # the kill moment itself, not a wait for a condition
            else:
                wait_for_size(os.path.join(log, "data.mdb"), int(rng.uniform(40_000, full_size)), process)
            process.send_signal(signal.SIGKILL)
            returncode = process.wait(timeout=30)
        assert returncode in (0, -signal.SIGKILL), err_path.read_bytes()
        assert b"Traceback" not in err_path.read_bytes()
        stored = check_after_crash(log)
        # One transaction per batch, and batches of exactly BATCH events (the input is read in one chunk).
        assert stored % BATCH == 0 or stored == EVENTS, stored
        if returncode == 0:
            assert stored == EVENTS
        if printing:
            text = seqs_path.read_bytes()
            complete = text[: text.rfind(b"\n") + 1] if b"\n" in text else b""
            printed = [int(line) for line in complete.split()]
            assert printed == list(range(1, len(printed) + 1))
            # Every seq reported as committed survived; at most the batch being reported was not yet printed.
            assert len(printed) <= stored <= len(printed) + BATCH
        outcomes.append(stored)
    # The kills landed at many points: before the first commit, between commits, and after the end.
    assert len({m for m in outcomes if 0 < m < EVENTS}) >= 3, outcomes


def test_single_event_appends_killed_mid_loop(tmp_path: Path) -> None:
    log = str(tmp_path / "loop.lmdb")
    rng = random.Random(SEED + 1)
    env = clean_env()
    finished: dict[int, int] = {}  # n -> the seq the append printed
    killed: list[int] = []
    for n in range(SINGLE_RUNS):
        process = subprocess.Popen(
            [sys.executable, "-m", "evlog", "append", "tick", f"n:={n}", "-s", "loop", "--log", log],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        delay = rng.uniform(0.0, 0.2) if n % 3 else 60.0  # every third one runs to its end
        try:
            stdout, stderr = process.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            stdout, stderr = process.communicate(timeout=30)
        assert b"Traceback" not in stderr
        if process.returncode == 0:
            assert stderr == b""
            finished[n] = int(stdout)
        else:
            assert process.returncode == -signal.SIGKILL, stderr
            killed.append(n)
    assert finished, "no append ran to its end"
    verified = run_evlog("verify", log=log)
    assert verified.returncode == 0, (verified.stdout, verified.stderr)
    with Log(log) as opened:
        events = list(opened.read())
    numbers = [e.data["n"] for e in events]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    assert numbers == sorted(set(numbers))  # in loop order, each at most once
    for n, seq in finished.items():
        assert events[seq - 1].data == {"n": n}
    assert set(numbers) - set(finished) <= set(killed)  # a killed append is either whole or absent
    # The log takes appends again after all that.
    again = run_evlog("append", "tick", "n:=-1", "-s", "loop", log=log)
    assert (again.returncode, again.stdout) == (0, f"{len(events) + 1}\n".encode())


def test_killed_bulk_append_of_a_live_producer_keeps_what_it_committed(tmp_path: Path) -> None:
    """A producer writing slowly: batches are cut by the ~20 ms clock; a kill keeps every committed one."""
    log = str(tmp_path / "live.lmdb")
    process = subprocess.Popen(
        [sys.executable, "-m", "evlog", "append", "-o", "seq", "--log", log],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    assert process.stdin is not None and process.stdout is not None
    reported: list[int] = []
    for n in range(40):
        process.stdin.write(b'{"type": "t", "data": {"n": %d}}\n' % n)
        process.stdin.flush()
        if n % 10 == 9:
            # Wait (polling, with a timeout) until the commit of what was sent is reported.
            while len(reported) < n + 1:
                line = process.stdout.readline()
                assert line, process.stderr.read() if process.stderr else b""
                reported.append(int(line))
    assert reported == list(range(1, 41))
    process.stdin.write(b'{"type": "t", "data": {"n": 40}}\n{"type": "t", "da')  # half a line, then death
    process.stdin.flush()
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert check_after_crash(log) >= 40
