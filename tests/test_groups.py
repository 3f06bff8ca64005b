"""Durable groups: ``evlog tail --group`` keeps a consumer's position in the log.

Real processes and pipes throughout. A group delivers each event at least once and
in order: its position moves only after the events were written out, so a follower
killed with ``kill -9`` is resumed from at or before the first event it did not
deliver. One follower per group runs at a time (an flock the kernel drops when the
process dies). `evlog group` lists, resets and removes groups.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import run_evlog
from running import TIMEOUT, Running, append

from evlog import Log

BUSY = b"is being followed by another process"


def numbered(first: int, last: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"type": "n", **fields, "data": {"i": i}} for i in range(first, last + 1)]


def delivered(log: str, *args: str) -> list[int]:
    """Seqs printed by one `evlog tail` run (it must succeed quietly)."""
    result = run_evlog("tail", *args, log=log)
    assert (result.returncode, result.stderr) == (0, b""), result.stderr.decode()
    return [json.loads(line)["seq"] for line in result.stdout.splitlines()]


def groups(log: str) -> list[dict[str, Any]]:
    result = run_evlog("group", "list", log=log)
    assert (result.returncode, result.stderr) == (0, b""), result.stderr.decode()
    return [json.loads(line) for line in result.stdout.splitlines()]


def position(log: str, name: str) -> int | None:
    found = [g["position"] for g in groups(log) if g["group"] == name]
    return found[0] if found else None


def wait_for_position(log: str, name: str, seq: int, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while (found := position(log, name)) != seq:
        assert time.monotonic() < deadline, f"group {name} is at {found}, not {seq}"


@pytest.fixture
def log5(log_path: str) -> str:
    with Log(log_path) as log:
        log.append_many(numbered(1, 5))
    return log_path


# -- one-shot runs ---------------------------------------------------------------


def test_a_group_delivers_from_the_first_event_then_only_new_ones(log5: str) -> None:
    assert delivered(log5, "--group", "g") == [1, 2, 3, 4, 5]
    assert delivered(log5, "--group", "g") == []
    append(log5, *numbered(6, 8))
    assert delivered(log5, "-g", "g") == [6, 7, 8]
    assert delivered(log5, "-g", "g", "-n", "1") == []  # -n does not apply to a group
    append(log5, *numbered(9, 9))
    assert delivered(log5, "-g", "g") == [9]


def test_group_list_shows_positions_and_lag(log5: str) -> None:
    assert groups(log5) == []
    delivered(log5, "-g", "billing")
    append(log5, *numbered(6, 7))
    delivered(log5, "-g", "audit")
    assert groups(log5) == [
        {"group": "audit", "position": 7, "lag": 0},
        {"group": "billing", "position": 5, "lag": 2},
    ]
    append(log5, *numbered(8, 10))
    assert {g["group"]: (g["position"], g["lag"]) for g in groups(log5)} == {"audit": (7, 3), "billing": (5, 5)}


def test_a_filtered_group_moves_past_events_it_does_not_print(log_path: str) -> None:
    with Log(log_path) as log:
        log.append_many([*numbered(1, 3, type="a"), *numbered(4, 6, type="b")])
    assert delivered(log_path, "-g", "only-a", "-t", "a") == [1, 2, 3]
    assert position(log_path, "only-a") == 6
    append(log_path, *numbered(7, 7, type="a"), *numbered(8, 8, type="b"))
    assert delivered(log_path, "-g", "only-a", "-t", "a") == [7]


def test_reset_redelivers_from_a_position(log5: str) -> None:
    assert delivered(log5, "-g", "g") == [1, 2, 3, 4, 5]
    result = run_evlog("group", "reset", "g", "--to", "3", log=log5)
    assert result.returncode == 0
    assert b"3" in result.stderr
    assert groups(log5) == [{"group": "g", "position": 2, "lag": 3}]
    assert delivered(log5, "-g", "g") == [3, 4, 5]
    assert run_evlog("group", "reset", "g", "--to", "1", log=log5).returncode == 0
    assert delivered(log5, "-g", "g") == [1, 2, 3, 4, 5]
    assert run_evlog("group", "reset", "g", "--to", "-2", log=log5).returncode == 0  # the 2nd event from the end
    assert delivered(log5, "-g", "g") == [4, 5]
    bad = run_evlog("group", "reset", "g", "--to", "id:no-such-id", log=log5)
    assert bad.returncode == 2 and bad.stderr.startswith(b"evlog: ")
    assert position(log5, "g") == 5  # unchanged


def test_rm_forgets_a_group(log5: str) -> None:
    assert delivered(log5, "-g", "g") == [1, 2, 3, 4, 5]
    assert delivered(log5, "-g", "other") == [1, 2, 3, 4, 5]
    result = run_evlog("group", "rm", "g", log=log5)
    assert result.returncode == 0 and b"removed" in result.stderr
    assert [g["group"] for g in groups(log5)] == ["other"]
    assert delivered(log5, "-g", "g") == [1, 2, 3, 4, 5]  # a new group again: from the first event
    missing = run_evlog("group", "rm", "never-was", log=log5)
    assert missing.returncode == 2
    assert missing.stderr.startswith(b"evlog: ") and b"never-was" in missing.stderr


def test_from_applies_to_a_new_group_only(log5: str) -> None:
    assert delivered(log5, "-g", "late", "--from", "4") == [4, 5]
    append(log5, *numbered(6, 6))
    assert delivered(log5, "-g", "late", "--from", "1") == [6]  # the group's position wins
    assert delivered(log5, "-g", "recent", "--from", "-2") == [5, 6]
    with Log(log5) as log:
        log.append("n", {"i": 7}, id="seventh")
    assert delivered(log5, "-g", "by-id", "--from", "id:seventh") == [7]


def test_bad_group_names_and_missing_logs(log5: str, tmp_path: Path) -> None:
    for name in ("", "tab\there", "x" * 201):
        result = run_evlog("tail", "-g", name, log=log5)
        assert result.returncode == 2, name
        assert result.stderr.startswith(b"evlog: ") and result.stdout == b""
    assert groups(log5) == []
    missing = str(tmp_path / "missing.lmdb")
    for args in (("group", "list"), ("group", "reset", "g", "--to", "1"), ("group", "rm", "g"), ("tail", "-g", "g")):
        result = run_evlog(*args, log=missing)
        assert result.returncode == 66, args
        assert not os.path.exists(missing)


# -- one follower per group ------------------------------------------------------


def test_a_second_follower_of_a_group_is_refused_until_the_first_dies(
    log5: str, spawn: Callable[..., Running]
) -> None:
    first = spawn("tail", "-f", "--group", "g", "--log", log5)
    assert [e["seq"] for e in first.events_until(lambda e: e["seq"] == 5)] == [1, 2, 3, 4, 5]
    for args in (("tail", "-g", "g"), ("tail", "-f", "-g", "g"), ("group", "reset", "g", "--to", "1"),
                 ("group", "rm", "g")):
        refused = run_evlog(*args, log=log5)
        assert refused.returncode == 1, (args, refused.stderr)
        assert refused.stdout == b""
        assert refused.stderr.startswith(b"evlog: group 'g' ") and BUSY in refused.stderr, refused.stderr
        assert b"Traceback" not in refused.stderr
    assert delivered(log5, "-g", "another") == [1, 2, 3, 4, 5]  # other groups are independent
    wait_for_position(log5, "g", 5)

    first.proc.kill()  # kill -9: the kernel drops the lock
    assert first.finish() == -signal.SIGKILL
    second = spawn("tail", "-f", "--group", "g", "--log", log5)
    append(log5, *numbered(6, 6))
    assert [e["seq"] for e in second.events_until(lambda e: e["seq"] == 6)] == [6]
    assert second.proc.poll() is None and second.stderr == b""


def test_ctrl_c_ends_a_group_follower_with_its_position_saved(log5: str, spawn: Callable[..., Running]) -> None:
    follower = spawn("tail", "-f", "-g", "g", "--log", log5, sigint_default=True)
    follower.events_until(lambda e: e["seq"] == 5)
    append(log5, *numbered(6, 7))
    follower.events_until(lambda e: e["seq"] == 7)
    wait_for_position(log5, "g", 7)
    follower.proc.send_signal(signal.SIGINT)
    assert follower.finish() == 130
    assert b"Traceback" not in follower.stderr
    assert groups(log5) == [{"group": "g", "position": 7, "lag": 0}]
    assert run_evlog("group", "reset", "g", "--to", "6", log=log5).returncode == 0  # the lock is free
    assert delivered(log5, "-g", "g") == [6, 7]


# -- resuming after a crash --------------------------------------------------------


def test_group_resumes_after_kill_9_in_the_middle_of_appends(log_path: str, spawn: Callable[..., Running]) -> None:
    """At least once, in order: the restarted follower starts at or before the first undelivered event."""
    total = 4000
    append(log_path, {"type": "setup"})  # seq 1; event i (1..total) gets seq i + 1
    killed = threading.Event()
    appender = spawn("append", "--log", log_path, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert appender.proc.stdin is not None
    stdin = appender.proc.stdin
    problems: list[BaseException] = []

    def produce() -> None:
        try:
            for i in range(1, total + 1):
                if i == total - 1000:
                    killed.wait(timeout=120)  # the last 1,000 are appended after the kill, for certain
                stdin.write(json.dumps({"type": "n", "data": {"i": i}}).encode() + b"\n")
                if i % 20 == 0:
                    stdin.flush()
                    time.sleep(0.005)  # pacing only: many small commits while the follower runs
            stdin.close()
        except BaseException as exc:  # pragma: no cover - reported by the test below
            problems.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    first = spawn("tail", "-f", "--group", "g", "--log", log_path)
    first.events_until(lambda e: e["seq"] == 1)  # following: now the stream of appends begins
    producer.start()
    first.events_until(lambda e: e["seq"] >= 300, timeout=60)
    first.proc.kill()
    assert first.finish() == -signal.SIGKILL
    killed.set()
    saved = position(log_path, "g")
    producer.join(timeout=120)
    assert not producer.is_alive() and not problems, problems
    assert appender.finish(timeout=60) == 0, appender.describe()
    head = total + 1

    run1 = [json.loads(line) for line in first.received]  # also what was still in the pipe
    seqs1 = [e["seq"] for e in run1]
    assert seqs1 == list(range(1, len(seqs1) + 1)), "the first run has a gap or a repeat"
    saved = saved or 0  # killed before its first checkpoint: the group starts again at the first event
    assert saved <= seqs1[-1], "the position moved past what was written out"

    second = spawn("tail", "-f", "--group", "g", "--log", log_path)
    run2 = second.events_until(lambda e: e["seq"] == head, timeout=60)
    seqs2 = [e["seq"] for e in run2]
    assert seqs2[0] == saved + 1  # resumes right after the saved position ...
    assert seqs2[0] <= seqs1[-1] + 1  # ... at or before the first undelivered event
    assert seqs2 == list(range(seqs2[0], head + 1)), "the second run has a gap or a repeat"
    assert set(seqs1) | set(seqs2) == set(range(1, head + 1))
    seam = sorted(set(seqs1) & set(seqs2))
    assert seam == list(range(seqs2[0], seqs1[-1] + 1))  # duplicates only where the runs meet
    assert all(e["data"] == {"i": e["seq"] - 1} for e in run1[1:] + run2 if e["seq"] > 1)
    wait_for_position(log_path, "g", head)
    assert groups(log_path) == [{"group": "g", "position": head, "lag": 0}]
    assert second.stderr == b""


def test_group_follower_across_map_growth(log_path: str, spawn: Callable[..., Running]) -> None:
    """A group follower also writes (its position) while a 1 MiB map grows many times."""
    env = {"EVLOG_MAP_SIZE": "1M"}
    append(log_path, {"type": "start"}, env=env)
    follower = spawn("tail", "-f", "-g", "g", "--log", log_path, env=env)
    follower.events_until(lambda e: e["seq"] == 1)
    pad = "x" * 1000
    for part in range(3):
        append(log_path, *({"type": "big", "data": {"i": part * 3000 + i, "pad": pad}} for i in range(3000)),
               env=env, batch=100)
    events = follower.events_until(lambda e: e["seq"] == 9001, timeout=90)
    assert [e["seq"] for e in events] == list(range(2, 9002))
    assert [e["data"]["i"] for e in events] == list(range(9000))
    wait_for_position(log_path, "g", 9001)
    assert follower.proc.poll() is None and follower.stderr == b""


@pytest.mark.parametrize("command", [["group", "list"], ["snapshot", "list"], ["projection", "list"]])
def test_listings_honour_each_output_format(log_path: str, command: list[str]) -> None:
    with Log(log_path) as log:
        log.append_many([{"type": "deposit", "data": {"amount": n}} for n in range(3)])
    assert run_evlog("tail", "-n", "1", "--group", "billing", log=log_path).returncode == 0
    assert run_evlog("snapshot", "save", "--init", "0", "--fold", "s + 1", log=log_path).returncode == 0
    assert run_evlog("projection", "add", "count", "--init", "0", "--fold", "s + 1", log=log_path).returncode == 0
    lines = run_evlog(*command, "-o", "ndjson", log=log_path).stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 1
    assert json.loads(run_evlog(*command, "-o", "json", log=log_path).stdout) == records
    assert list(msgpack.Unpacker(io.BytesIO(run_evlog(*command, "-o", "msgpack", log=log_path).stdout))) == records
