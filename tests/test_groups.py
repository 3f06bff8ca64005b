"""Durable groups: ``evlog tail --group`` keeps a consumer's position in the log.

Real processes and pipes throughout. A group delivers each event at least once and
in order: its position is the last event whose work is known to be done, so a plain
``tail --group`` into a pipe moves nothing (its reader acknowledges with
``group ack``), and a consumer that fails loses nothing. A group remembers its
filters; ``--from`` and ``-n`` place a new group and are refused on an existing
one. One follower per group runs at a time (an flock the kernel drops when the
process dies); a second is refused, naming the first one's pid. `evlog group`
lists, acknowledges, resets and removes groups. ``--exec`` and dead letters are
tested in test_group_exec.py.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import run_evlog
from running import TIMEOUT, Running, append, clean_env

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


def ack(log: str, name: str, *seqs: int) -> None:
    result = run_evlog("group", "ack", name, *map(str, seqs), log=log)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), result.stderr.decode()


def refused(result: subprocess.CompletedProcess[bytes], code: int, *words: bytes) -> None:
    """One evlog line on stderr with exit ``code``, naming each of ``words``, and nothing on stdout."""
    assert result.returncode == code, result.stderr
    assert result.stdout == b"" and result.stderr.startswith(b"evlog: "), result.stderr
    assert len(result.stderr.splitlines()) == 1 and b"Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def shell(command: str, log: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Run a shell pipeline in which `evlog` is this tree's command."""
    env = clean_env({"EVLOG_PATH": log})
    prelude = f'evlog() {{ "{sys.executable}" -m evlog "$@"; }}\n'
    return subprocess.run(["bash", "-c", prelude + command], capture_output=True, env=env, timeout=timeout)


def wait_for_position(log: str, name: str, seq: int, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while (found := position(log, name)) != seq:
        assert time.monotonic() < deadline, f"group {name} is at {found}, not {seq}"


@pytest.fixture
def log5(log_path: str) -> str:
    with Log(log_path) as log:
        log.append_many(numbered(1, 5))
    return log_path


# -- plain runs: printing is not acknowledging ---------------------------------------


def test_a_plain_group_run_moves_nothing_until_the_reader_acknowledges(log5: str) -> None:
    assert delivered(log5, "--group", "g") == [1, 2, 3, 4, 5]
    assert delivered(log5, "--group", "g") == [1, 2, 3, 4, 5]  # printed is not done
    assert position(log5, "g") == 0
    ack(log5, "g", 3)
    assert delivered(log5, "-g", "g") == [4, 5]
    ack(log5, "g", 5)
    assert delivered(log5, "-g", "g") == []
    append(log5, *numbered(6, 8))
    assert delivered(log5, "-g", "g") == [6, 7, 8]
    ack(log5, "g", 2)  # never back: an old acknowledgement changes nothing
    assert position(log5, "g") == 5
    ack(log5, "g", 6, 8, 7)
    assert (position(log5, "g"), delivered(log5, "-g", "g")) == (8, [])


def test_a_consumer_that_fails_loses_nothing(log5: str) -> None:
    """`evlog tail --group worker | (sleep 1; exit 1)`: the consumer did nothing, so nothing moves."""
    result = shell("evlog tail --group worker | (sleep 1; exit 1)", log5)
    assert result.returncode == 1, result.stderr
    assert result.stderr == b""
    assert position(log5, "worker") == 0
    assert delivered(log5, "--group", "worker") == [1, 2, 3, 4, 5]
    following = shell("timeout 3 evlog tail -f --group worker | (sleep 1; exit 1); echo $?", log5)
    assert following.stdout == b"1\n", following.stderr
    assert position(log5, "worker") == 0


def test_head_3_then_the_next_run_starts_right_after_what_was_acknowledged(log_path: str) -> None:
    with Log(log_path) as log:
        log.append_many(numbered(1, 300))
    # The reader takes three events and acknowledges each one it handled.
    script = (
        "evlog tail --group fresh | head -3 | while read -r line; do\n"
        "  seq=${line#*\\\"seq\\\":}; seq=${seq%%,*}\n"
        "  echo \"handled $seq\"; evlog group ack fresh \"$seq\"\n"
        "done"
    )
    result = shell(script, log_path)
    assert (result.returncode, result.stderr) == (0, b""), result.stderr
    assert result.stdout == b"handled 1\nhandled 2\nhandled 3\n"
    assert position(log_path, "fresh") == 3
    assert delivered(log_path, "-g", "fresh") == list(range(4, 301))
    # Without acknowledging, head's three events come again.
    assert shell("evlog tail --group other | head -3 >/dev/null", log_path).returncode == 0
    assert delivered(log_path, "-g", "other")[:3] == [1, 2, 3]


def test_group_list_shows_positions_lag_and_dead_letters(log5: str) -> None:
    assert groups(log5) == []
    delivered(log5, "-g", "billing")
    ack(log5, "billing", 5)
    append(log5, *numbered(6, 7))
    delivered(log5, "-g", "audit")
    ack(log5, "audit", 7)
    assert groups(log5) == [
        {"group": "audit", "position": 7, "lag": 0, "dead": 0},
        {"group": "billing", "position": 5, "lag": 2, "dead": 0},
    ]
    append(log5, *numbered(8, 10))
    assert {g["group"]: (g["position"], g["lag"]) for g in groups(log5)} == {"audit": (7, 3), "billing": (5, 5)}


def test_ack_errors(log5: str) -> None:
    refused(run_evlog("group", "ack", "nobody", "1", log=log5), 2, b"no group named 'nobody'")
    delivered(log5, "-g", "g")
    refused(run_evlog("group", "ack", "g", "6", log=log5), 2, b"seq 6", b"(5)")
    assert run_evlog("group", "ack", "g", "x", log=log5).returncode == 2  # the parser's own message
    assert position(log5, "g") == 0


def test_reset_redelivers_from_a_position(log5: str) -> None:
    assert delivered(log5, "-g", "g") == [1, 2, 3, 4, 5]
    ack(log5, "g", 5)
    result = run_evlog("group", "reset", "g", "--to", "3", log=log5)
    assert result.returncode == 0
    assert b"3" in result.stderr
    assert groups(log5) == [{"group": "g", "position": 2, "lag": 3, "dead": 0}]
    assert delivered(log5, "-g", "g") == [3, 4, 5]
    assert run_evlog("group", "reset", "g", "--to", "1", log=log5).returncode == 0
    assert delivered(log5, "-g", "g") == [1, 2, 3, 4, 5]
    assert run_evlog("group", "reset", "g", "--to", "-2", log=log5).returncode == 0  # the 2nd event from the end
    assert delivered(log5, "-g", "g") == [4, 5]
    bad = run_evlog("group", "reset", "g", "--to", "id:no-such-id", log=log5)
    assert bad.returncode == 2 and bad.stderr.startswith(b"evlog: ")
    assert position(log5, "g") == 3  # unchanged


def test_reset_of_a_group_that_does_not_exist_is_an_error(log5: str) -> None:
    refused(run_evlog("group", "reset", "never-was", "--to", "1", log=log5), 2, b"no group named 'never-was'",
            b"group list")
    for command in (("group", "dead", "never-was"), ("group", "retry", "never-was"), ("group", "rm", "never-was")):
        refused(run_evlog(*command, log=log5), 2, b"no group named 'never-was'")
    assert groups(log5) == []
    assert not [name for name in os.listdir(log5) if name.startswith("group-")]  # not even a lock file


def test_rm_forgets_a_group(log5: str) -> None:
    assert delivered(log5, "-g", "g") == [1, 2, 3, 4, 5]
    ack(log5, "g", 5)
    assert delivered(log5, "-g", "other") == [1, 2, 3, 4, 5]
    result = run_evlog("group", "rm", "g", log=log5)
    assert result.returncode == 0 and b"removed" in result.stderr
    assert [g["group"] for g in groups(log5)] == ["other"]
    assert delivered(log5, "-g", "g") == [1, 2, 3, 4, 5]  # a new group again: from the first event
    refused(run_evlog("group", "rm", "never-was", log=log5), 2, b"never-was")


# -- where a group starts: --from and -n act or are refused ---------------------------


def test_from_places_a_new_group_and_is_refused_on_an_existing_one(log5: str) -> None:
    assert delivered(log5, "-g", "late", "--from", "4") == [4, 5]
    assert position(log5, "late") == 3
    refused(run_evlog("tail", "-g", "late", "--from", "1", log=log5), 2, b"group 'late' exists",
            b"--from", b"evlog group reset late --to POS")
    assert delivered(log5, "-g", "recent", "--from", "-2") == [4, 5]
    with Log(log5) as log:
        log.append("n", {"i": 6}, id="sixth")
    assert delivered(log5, "-g", "by-id", "--from", "id:sixth") == [6]


def test_n_places_a_new_group_at_the_last_events_and_is_refused_on_an_existing_one(log_path: str) -> None:
    with Log(log_path) as log:
        log.append_many([*numbered(1, 3, type="a"), *numbered(4, 6, type="b"), *numbered(7, 8, type="a")])
    assert delivered(log_path, "-g", "last2", "-n", "2") == [7, 8]
    assert delivered(log_path, "-g", "last-a", "-t", "a", "-n", "3") == [3, 7, 8]
    assert position(log_path, "last-a") == 2
    assert delivered(log_path, "-g", "none", "-n", "0") == []
    append(log_path, *numbered(9, 9))
    assert delivered(log_path, "-g", "none") == [9]
    refused(run_evlog("tail", "-g", "last2", "-n", "1", log=log_path), 2, b"-n", b"group reset")
    refused(run_evlog("tail", "-g", "new", "-n", "1", "--from", "1", log=log_path), 2, b"--from and -n")
    assert "new" not in {g["group"] for g in groups(log_path)}


# -- a group remembers its filters ---------------------------------------------------


def test_a_group_remembers_its_filters_and_refuses_others(log_path: str) -> None:
    with Log(log_path) as log:
        log.append_many([*numbered(1, 3, type="a"), *numbered(4, 6, type="b")])
    assert delivered(log_path, "-g", "only-a", "-t", "a") == [1, 2, 3]
    for args in (("-t", "b"), (), ("-t", "a", "-s", "x"), ("-t", "a", "--where", "d.i > 1")):
        refused(run_evlog("tail", "-g", "only-a", *args, log=log_path), 2, b"group 'only-a' reads -t a",
                b"--reset-filters")
    assert delivered(log_path, "-g", "only-a", "-t", "a", "-t", "a") == [1, 2, 3]  # the same selection
    ack(log_path, "only-a", 6)
    assert delivered(log_path, "-g", "only-a", "--reset-filters", "-t", "b", "--where", "d.i != 7") == []
    append(log_path, *numbered(7, 8, type="a"), *numbered(9, 10, type="b"))
    assert delivered(log_path, "-g", "only-a", "-t", "b", "--where", "d.i != 7") == [9, 10]
    refused(run_evlog("tail", "-g", "only-a", "-t", "b", log=log_path), 2, b"--where 'd.i != 7'")


def test_a_group_from_an_earlier_evlog_takes_the_filters_of_its_next_run(log5: str) -> None:
    with Log(log5) as log:
        store = log.store(write=True)
        with store.writing() as txn:  # the entry an earlier evlog wrote: a bare position
            txn.put(b"old", (2).to_bytes(8, "big"), db=store.dbs[b"groups"])
    assert groups(log5) == [{"group": "old", "position": 2, "lag": 3, "dead": 0}]
    assert delivered(log5, "-g", "old", "-t", "n") == [3, 4, 5]
    refused(run_evlog("tail", "-g", "old", log=log5), 2, b"-t n")


def test_filter_options_without_a_group_are_usage_errors(log5: str) -> None:
    for args, word in ((("--reset-filters",), b"--reset-filters"), (("--exec", "true"), b"--exec"),
                       (("--max-attempts", "2"), b"--max-attempts")):
        refused(run_evlog("tail", *args, log=log5), 2, word, b"--group")


def test_bad_group_names_and_missing_logs(log5: str, tmp_path: Path) -> None:
    for name in ("", "tab\there", "x" * 201):
        result = run_evlog("tail", "-g", name, log=log5)
        assert result.returncode == 2, name
        assert result.stderr.startswith(b"evlog: ") and result.stdout == b""
    assert groups(log5) == []
    missing = str(tmp_path / "missing.lmdb")
    for args in (("group", "list"), ("group", "reset", "g", "--to", "1"), ("group", "rm", "g"), ("tail", "-g", "g"),
                 ("group", "ack", "g", "1"), ("group", "dead", "g"), ("group", "retry", "g"),
                 ("tail", "-g", "g", "--exec", "true")):
        result = run_evlog(*args, log=missing)
        assert result.returncode == 66, args
        assert not os.path.exists(missing)


# -- one follower per group ------------------------------------------------------


def test_a_second_follower_of_a_group_is_refused_with_the_first_ones_pid_until_it_dies(
    log5: str, spawn: Callable[..., Running]
) -> None:
    first = spawn("tail", "-f", "--group", "g", "--log", log5)
    assert [e["seq"] for e in first.events_until(lambda e: e["seq"] == 5)] == [1, 2, 3, 4, 5]
    pid = f"(pid {first.proc.pid})".encode()
    for args in (("tail", "-g", "g"), ("tail", "-f", "-g", "g"), ("tail", "-g", "g", "--exec", "true"),
                 ("group", "reset", "g", "--to", "1"), ("group", "rm", "g")):
        result = run_evlog(*args, log=log5)
        refused(result, 1, b"evlog: group 'g' ", BUSY, pid, b"--exec", b"several groups")
    assert delivered(log5, "-g", "another") == [1, 2, 3, 4, 5]  # other groups are independent
    ack(log5, "g", 4)  # acknowledging needs no lock: the follower's reader does it
    assert position(log5, "g") == 4

    first.proc.kill()  # kill -9: the kernel drops the lock
    assert first.finish() == -signal.SIGKILL
    second = spawn("tail", "-f", "--group", "g", "--log", log5)
    append(log5, *numbered(6, 6))
    assert [e["seq"] for e in second.events_until(lambda e: e["seq"] == 6)] == [5, 6]
    assert second.proc.poll() is None and second.stderr == b""


def test_ctrl_c_ends_a_group_follower_with_what_it_acknowledged_kept(
    log5: str, spawn: Callable[..., Running], tmp_path: Path
) -> None:
    done = tmp_path / "done"
    follower = spawn("tail", "-f", "-g", "g", "--exec", f"echo $EVLOG_SEQ >> {done}", "--log", log5,
                     sigint_default=True)
    wait_for_position(log5, "g", 5)
    append(log5, *numbered(6, 7))
    wait_for_position(log5, "g", 7)
    follower.proc.send_signal(signal.SIGINT)
    assert follower.finish() == 130
    assert b"Traceback" not in follower.stderr
    assert groups(log5) == [{"group": "g", "position": 7, "lag": 0, "dead": 0}]
    assert done.read_text().split() == [str(seq) for seq in range(1, 8)]
    assert run_evlog("group", "reset", "g", "--to", "6", log=log5).returncode == 0  # the lock is free
    assert delivered(log5, "-g", "g") == [6, 7]


def test_a_group_follower_across_map_growth(log_path: str, spawn: Callable[..., Running], tmp_path: Path) -> None:
    """A group follower with --exec also writes (its position) while a 1 MiB map grows many times."""
    env = {"EVLOG_MAP_SIZE": "1M"}
    done = tmp_path / "done"
    append(log_path, {"type": "start"}, env=env)
    follower = spawn("tail", "-f", "-g", "g", "-t", "start", "-t", "end", "--exec", f"echo $EVLOG_SEQ >> {done}",
                     "--log", log_path, env=env)
    wait_for_position(log_path, "g", 1)
    pad = "x" * 1000
    for part in range(3):
        append(log_path, *({"type": "big", "data": {"i": part * 3000 + i, "pad": pad}} for i in range(3000)),
               env=env, batch=100)
    append(log_path, {"type": "end"}, env=env)
    wait_for_position(log_path, "g", 9002, timeout=90)
    assert done.read_text().split() == ["1", "9002"]
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
