"""Many evlog processes on one log at once, for a while.

Four appenders (a bulk loop of ``evlog append --batch 7`` runs, a live
producer feeding one long ``evlog append --batch 5`` through a pipe in
bursts, and two loops of single-event appends with ``--expect``), two
followers (``evlog tail -f``), two ``evlog replay`` loops and a folding
replay loop run together for :data:`DURATION` seconds. Afterwards every
append has succeeded, ``evlog verify`` passes, every seq a single-event append
printed holds its event, every input event is in the log exactly once and in
its producer's order, each follower printed every event once and in order,
and every reader output was a gapless prefix ``seq 1..k`` that never shrank.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from conftest import run_evlog

from evlog import Log

DURATION = 20.0  # seconds of load
SEED = 7_2026
FOLD = "s[e.type] = s.get(e.type, 0) + 1"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}


def evlog_command(log: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "evlog", *args, "--log", log]


class Worker:
    """A loop in a thread, run until ``stop`` is set; exceptions are kept as failures."""

    def __init__(self, name: str, body: Callable[[Worker], None]) -> None:
        self.name = name
        self.body = body
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.runs = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.body(self)
        except BaseException as exc:
            self.failures.append(f"{self.name}: {exc!r}")

    def fail(self, message: str) -> None:
        self.failures.append(f"{self.name}: {message}")


def bulk_loop(log: str, env: dict[str, str], runs: list[int]) -> Callable[[Worker], None]:
    """`evlog append --batch 7` of 200 events, again and again; each run's number in its data."""

    def body(worker: Worker) -> None:
        run = 0
        while not worker.stop.is_set():
            lines = b"".join(
                orjson.dumps({"type": "bulk", "stream": f"bulk-{i % 5}", "data": {"run": run, "i": i}}) + b"\n"
                for i in range(200)
            )
            done = subprocess.run(
                evlog_command(log, "append", "--batch", "7"), input=lines, capture_output=True, env=env, timeout=120
            )
            if (done.returncode, done.stdout, done.stderr) != (0, b"", b""):
                worker.fail(f"run {run}: exit {done.returncode}: {done.stderr[-2000:]!r}")
                return
            runs.append(run)
            worker.runs += 1
            run += 1

    return body


def live_producer(log: str, env: dict[str, str], sent: list[int]) -> Callable[[Worker], None]:
    """One long `evlog append --batch 5` fed in seeded bursts with pauses: the ~20 ms clock commits."""

    def body(worker: Worker) -> None:
        rng = random.Random(SEED)
        process = subprocess.Popen(
            evlog_command(log, "append", "--batch", "5"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert process.stdin is not None
        n = 0
        while not worker.stop.is_set():
            burst = rng.randint(1, 12)
            process.stdin.write(
                b"".join(
                    orjson.dumps({"type": "live", "stream": "live", "data": {"n": n + k}}) + b"\n" for k in range(burst)
                )
            )
            process.stdin.flush()
            sent.extend(range(n, n + burst))
            n += burst
            worker.stop.wait(rng.uniform(0.0, 0.06))
        stdout, stderr = process.communicate(timeout=120)
        if (process.returncode, stdout, stderr) != (0, b"", b""):
            worker.fail(f"exit {process.returncode}: {stderr[-2000:]!r}")
        worker.runs = 1

    return body


def single_loop(
    log: str, env: dict[str, str], number: int, printed: dict[int, tuple[int, int]]
) -> Callable[[Worker], None]:
    """`evlog append tick n:=i -s single-K --expect i` once per event; the printed seq is kept."""

    def body(worker: Worker) -> None:
        i = 0
        while not worker.stop.is_set():
            args = ["append", "tick", f"n:={i}", f"loop:={number}", "-s", f"single-{number}", "--expect", str(i)]
            if i % 3 == 0:
                args += ["--id", f"single-{number}-{i}"]
            done = subprocess.run(evlog_command(log, *args), capture_output=True, env=env, timeout=60)
            if done.returncode != 0 or done.stderr:
                worker.fail(f"event {i}: exit {done.returncode}: {done.stderr[-2000:]!r}")
                return
            printed[int(done.stdout)] = (number, i)
            worker.runs += 1
            i += 1

    return body


def replay_loop(log: str, env: dict[str, str], heads: list[int]) -> Callable[[Worker], None]:
    """`evlog replay` again and again: each output a gapless prefix, streams' versions 1..k, never shrinking."""

    def body(worker: Worker) -> None:
        while not worker.stop.is_set():
            done = subprocess.run(evlog_command(log, "replay"), capture_output=True, env=env, timeout=120)
            if done.returncode != 0 or done.stderr:
                worker.fail(f"exit {done.returncode}: {done.stderr[-2000:]!r}")
                return
            events = [orjson.loads(line) for line in done.stdout.splitlines()]
            if [e["seq"] for e in events] != list(range(1, len(events) + 1)):
                worker.fail(f"output of {len(events)} events is not seq 1..{len(events)}")
                return
            versions: dict[str, int] = defaultdict(int)
            for event in events:
                if event["stream"] is not None:
                    versions[event["stream"]] += 1
                    if event["version"] != versions[event["stream"]]:
                        worker.fail(f"seq {event['seq']}: version {event['version']} of {event['stream']!r}")
                        return
            if heads and len(events) < heads[-1]:
                worker.fail(f"a replay saw {len(events)} events after one saw {heads[-1]}")
                return
            heads.append(len(events))
            worker.runs += 1

    return body


def fold_loop(log: str, env: dict[str, str], totals: list[int]) -> Callable[[Worker], None]:
    """`evlog replay --fold ...` (events per type) again and again: the total never shrinks."""

    def body(worker: Worker) -> None:
        while not worker.stop.is_set():
            done = subprocess.run(
                evlog_command(log, "replay", "--fold", FOLD), capture_output=True, env=env, timeout=120
            )
            if done.returncode != 0 or done.stderr:
                worker.fail(f"exit {done.returncode}: {done.stderr[-2000:]!r}")
                return
            state: dict[str, Any] = orjson.loads(done.stdout)
            if not set(state) <= {"start", "bulk", "live", "tick"} or not all(
                type(v) is int and v > 0 for v in state.values()
            ):
                worker.fail(f"unexpected state {state!r}")
                return
            total = sum(state.values())
            if totals and total < totals[-1]:
                worker.fail(f"a fold counted {total} events after one counted {totals[-1]}")
                return
            totals.append(total)
            worker.runs += 1

    return body


def test_slow_appenders_and_readers_together(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    env = clean_env()
    first = run_evlog("append", "start", log=log)
    assert (first.returncode, first.stdout) == (0, b"1\n")

    bulk_runs: list[int] = []
    live_sent: list[int] = []
    printed: dict[int, tuple[int, int]] = {}
    heads: list[list[int]] = [[], []]
    totals: list[int] = []
    appenders = [
        Worker("bulk", bulk_loop(log, env, bulk_runs)),
        Worker("live", live_producer(log, env, live_sent)),
        Worker("single-0", single_loop(log, env, 0, printed)),
        Worker("single-1", single_loop(log, env, 1, printed)),
    ]
    readers = [
        Worker("replay-0", replay_loop(log, env, heads[0])),
        Worker("replay-1", replay_loop(log, env, heads[1])),
        Worker("fold", fold_loop(log, env, totals)),
    ]
    followers = [Follower(log, env) for _ in range(2)]
    started = time.monotonic()
    for worker in appenders + readers:
        worker.thread.start()
    # Stop early only if something already failed.
    while time.monotonic() - started < DURATION and not any(w.failures for w in appenders + readers):
        time.sleep(0.1)
    for worker in appenders + readers:
        worker.stop.set()
    for worker in appenders + readers:
        worker.thread.join(timeout=180)
        assert not worker.thread.is_alive(), worker.name
    failures = [failure for worker in appenders + readers for failure in worker.failures]
    assert failures == []
    for worker in appenders + readers:
        assert worker.runs >= 1, worker.name  # every loop did its work at least once

    verified = run_evlog("verify", log=log)
    assert verified.returncode == 0, (verified.stdout, verified.stderr)

    with Log(log) as opened:
        events = list(opened.read())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    by_type: dict[str, list[Any]] = defaultdict(list)
    for event in events:
        by_type[event.type].append(event)
    # The bulk runs: each run whole, in order, and the runs in order.
    assert [(e.data["run"], e.data["i"]) for e in by_type["bulk"]] == [(r, i) for r in bulk_runs for i in range(200)]
    # The live producer: everything it sent, in order.
    assert [e.data["n"] for e in by_type["live"]] == live_sent
    # The single-event appends: each printed seq holds its event, and nothing else was appended.
    assert len(by_type["tick"]) == len(printed)
    for seq, (number, i) in printed.items():
        event = events[seq - 1]
        assert (event.type, event.stream, event.version, event.data) == (
            "tick",
            f"single-{number}",
            i + 1,
            {"n": i, "loop": number},
        )
        assert event.id == (f"single-{number}-{i}" if i % 3 == 0 else None)
    assert len(events) == 1 + 200 * len(bulk_runs) + len(live_sent) + len(printed)

    # The readers saw prefixes of this log; the fold, run now, counts all of it.
    for seen in heads:
        assert seen and seen[-1] <= len(events)
    assert totals and totals[-1] <= len(events)
    final = run_evlog("replay", "--fold", FOLD, log=log)
    assert final.returncode == 0
    assert orjson.loads(final.stdout) == {name: len(found) for name, found in by_type.items()}

    # The followers, which ran all along: every event once, in order.
    for follower in followers:
        assert follower.wait_for(len(events)), f"a follower stopped at seq {follower.seqs[-1:]}"
        follower.stop()
        assert follower.seqs == list(range(1, len(events) + 1))


class Follower:
    """An ``evlog tail -f --from 1`` process whose printed seqs a thread collects."""

    def __init__(self, log: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            evlog_command(log, "tail", "-f", "--from", "1", "-o", "ndjson"),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )
        self.seqs: list[int] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.seqs.append(orjson.loads(line)["seq"])

    def wait_for(self, count: int, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.seqs) < count and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.05)
        return len(self.seqs) >= count

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.thread.join(timeout=30)


VERIFY_HOOK = """
import subprocess, sys
from evlog.backends.lmdb.verify import LmdbChecker
from evlog.cli import main

log, more = sys.argv[1:]
original = LmdbChecker.start


def snapshot_then_another_process_appends(self, run):
    # verify has taken the head it checks up to; then another process appends.
    yield from original(self, run)
    with open(more, "rb") as stdin:
        appended = subprocess.run([sys.executable, "-m", "evlog", "append", "--log", log],
                                  stdin=stdin, capture_output=True)
    assert appended.returncode == 0, appended.stderr


LmdbChecker.start = snapshot_then_another_process_appends
main(["verify", "--log", log])
"""


def test_the_verify_hook_alone_changes_nothing(tmp_path: Path) -> None:
    """The hook below changes nothing by itself: with nothing appended meanwhile, verify passes."""
    log = str(tmp_path / "events.lmdb")
    lines = b"".join(orjson.dumps({"type": "t", "stream": f"s{i % 3}", "data": i}) + b"\n" for i in range(10))
    assert run_evlog("append", log=log, input=lines).returncode == 0
    empty = tmp_path / "nothing.ndjson"
    empty.write_bytes(b"")
    hook = tmp_path / "verify_hook.py"
    hook.write_text(VERIFY_HOOK)
    run = subprocess.run([sys.executable, str(hook), log, str(empty)], capture_output=True, env=clean_env(), timeout=60)
    assert (run.returncode, run.stdout) == (0, b""), run.stderr


def test_verify_beside_appends_reports_no_false_problem(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    lines = b"".join(orjson.dumps({"type": "t", "stream": f"s{i % 3}", "data": i}) + b"\n" for i in range(10))
    assert run_evlog("append", log=log, input=lines).returncode == 0
    more = tmp_path / "more.ndjson"
    more.write_bytes(b"".join(orjson.dumps({"type": "t", "stream": f"new-{i}", "data": i}) + b"\n" for i in range(10)))
    hook = tmp_path / "verify_hook.py"
    hook.write_text(VERIFY_HOOK)
    run = subprocess.run([sys.executable, str(hook), log, str(more)], capture_output=True, env=clean_env(), timeout=60)
    with Log(log) as opened:
        assert opened.head() == 20  # the other process did append meanwhile
    assert (run.returncode, run.stdout) == (0, b""), run.stderr
    assert b"ok: 10 events" in run.stderr
