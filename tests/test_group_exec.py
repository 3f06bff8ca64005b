"""``evlog tail --group NAME --exec CMD``: a group moves only past events whose work is done.

CMD runs once per event, through ``sh -c``, with the event's NDJSON on stdin and its
seq, type, stream, id and group in the environment; exit 0 acknowledges the event.
A failing CMD is retried with a backoff, then the event is parked as a dead letter
(``group dead``), and ``group retry`` queues it to be delivered again before new
events. The commands used as CMD append what they saw to a file, so a test can
check that every event was handled, at least once, in order. Entries of the
``groups`` database are untrusted: crafted ones give exit 74 and one line, and the
group's lock file must be a regular file.
"""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import run_evlog
from running import TIMEOUT, Running, append

from evlog import Log


def numbered(first: int, last: int, **fields: Any) -> list[dict[str, Any]]:
    return [{"type": "n", **fields, "data": {"i": i}} for i in range(first, last + 1)]


def group_list(log: str) -> dict[str, dict[str, Any]]:
    result = run_evlog("group", "list", log=log)
    assert (result.returncode, result.stderr) == (0, b""), result.stderr.decode()
    return {g["group"]: g for g in map(json.loads, result.stdout.splitlines())}


def dead(log: str, name: str, *args: str) -> list[dict[str, Any]]:
    result = run_evlog("group", "dead", name, *args, log=log)
    assert (result.returncode, result.stderr) == (0, b""), result.stderr.decode()
    return [json.loads(line) for line in result.stdout.splitlines()]


def seqs_in(path: Path) -> list[int]:
    return [int(word) for word in path.read_text().split()] if path.exists() else []


def one_line(result: Any, code: int, *words: bytes) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith(b"evlog: ") and len(result.stderr.splitlines()) == 1, result.stderr
    assert b"Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


@pytest.fixture
def log5(log_path: str) -> str:
    with Log(log_path) as log:
        log.append_many(numbered(1, 5))
    return log_path


# -- acknowledging by exit status ---------------------------------------------------


def test_exec_runs_cmd_per_event_and_moves_the_group_on_success(log_path: str, tmp_path: Path) -> None:
    with Log(log_path) as log:
        log.append("order.paid", {"order": "o-1"}, stream="order-1", id="pay-1")
        log.append("order.paid", {"order": "o-2"})
    seen = tmp_path / "seen"
    command = (f'printf "%s|%s|%s|%s|%s|%s|" "$EVLOG_SEQ" "$EVLOG_TYPE" "$EVLOG_STREAM" "${{EVLOG_ID-unset}}" '
               f'"$EVLOG_GROUP" "$EVLOG_ATTEMPT" >> {seen}; cat >> {seen}; echo "did $EVLOG_SEQ"')
    result = run_evlog("tail", "--group", "pay", "--exec", command, log=log_path,
                       env={"EVLOG_ID": "inherited-must-not-leak"})
    assert (result.returncode, result.stderr) == (0, b""), result.stderr
    assert result.stdout == b"did 1\ndid 2\n"  # CMD's own output; evlog prints no events
    first, second = seen.read_text().splitlines()
    head, _, line = first.rpartition("|")
    assert head == "1|order.paid|order-1|pay-1|pay|1"
    event = json.loads(line)
    assert (event["seq"], event["data"], event["stream"], event["id"]) == (1, {"order": "o-1"}, "order-1", "pay-1")
    head, _, line = second.rpartition("|")
    assert head == "2|order.paid||unset|pay|1"
    assert json.loads(line)["seq"] == 2
    assert group_list(log_path)["pay"]["position"] == 2
    again = run_evlog("tail", "--group", "pay", "--exec", command, log=log_path)
    assert (again.returncode, again.stdout) == (0, b"")  # everything was done already
    assert len(seen.read_text().splitlines()) == 2


def test_exec_with_filters_moves_past_the_events_it_leaves_out(log_path: str, tmp_path: Path) -> None:
    with Log(log_path) as log:
        log.append_many([*numbered(1, 3, type="a"), *numbered(4, 6, type="b")])
    done = tmp_path / "done"
    result = run_evlog("tail", "-g", "only-a", "-t", "a", "--where", "d.i != 2", "--exec",
                       f"echo $EVLOG_SEQ >> {done}", log=log_path)
    assert (result.returncode, result.stderr) == (0, b"")
    assert seqs_in(done) == [1, 3]
    assert group_list(log_path)["only-a"]["position"] == 6


def test_count_with_exec_stops_after_n_handled_events(log5: str, tmp_path: Path) -> None:
    done = tmp_path / "done"
    result = run_evlog("tail", "-g", "g", "--count", "2", "--exec", f"echo $EVLOG_SEQ >> {done}", log=log5)
    assert (result.returncode, result.stderr) == (0, b"")
    assert seqs_in(done) == [1, 2]
    assert group_list(log5)["g"]["position"] == 2


def test_exec_usage_errors(log5: str) -> None:
    one_line(run_evlog("tail", "-g", "g", "--exec", "true", "--template", "{seq}", log=log5), 2, b"--exec")
    one_line(run_evlog("tail", "-g", "g", "--exec", "true", "-o", "msgpack", log=log5), 2, b"--exec")
    one_line(run_evlog("tail", "-g", "g", "--max-attempts", "2", log=log5), 2, b"--exec")
    assert run_evlog("tail", "-g", "g", "--exec", "true", "--max-attempts", "0", log=log5).returncode == 2
    assert group_list(log5) == {}


# -- retries, dead letters ------------------------------------------------------------


def test_a_failing_cmd_is_retried_with_backoff_then_succeeds(log5: str, tmp_path: Path) -> None:
    tries, done = tmp_path / "tries", tmp_path / "done"
    # Seq 3 fails twice, then works.
    command = (f'echo $EVLOG_SEQ:$EVLOG_ATTEMPT >> {tries}; '
               f'if [ $EVLOG_SEQ = 3 ] && [ $EVLOG_ATTEMPT -lt 3 ]; then exit 7; fi; echo $EVLOG_SEQ >> {done}')
    started = time.monotonic()
    result = run_evlog("tail", "-g", "g", "--exec", command, log=log5)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert seqs_in(done) == [1, 2, 3, 4, 5]
    assert tries.read_text().split() == ["1:1", "2:1", "3:1", "3:2", "3:3", "4:1", "5:1"]
    assert elapsed >= 0.1 + 0.2  # the first two waits of the backoff
    messages = result.stderr.decode().splitlines()
    assert messages == [
        "evlog: group 'g': seq 3: --exec command exited with 7 (attempt 1 of 5); trying again in 0.1 s",
        "evlog: group 'g': seq 3: --exec command exited with 7 (attempt 2 of 5); trying again in 0.2 s",
    ]
    assert group_list(log5)["g"] == {"group": "g", "position": 5, "lag": 0, "dead": 0}


def test_an_event_that_keeps_failing_is_parked_and_the_group_moves_on(log5: str, tmp_path: Path) -> None:
    done = tmp_path / "done"
    command = f'[ $EVLOG_SEQ != 2 ] || exit 3; [ $EVLOG_SEQ != 4 ] || kill -9 $$; echo $EVLOG_SEQ >> {done}'
    before = time.time_ns()
    result = run_evlog("tail", "-g", "g", "--exec", command, "--max-attempts", "2", log=log5)
    assert result.returncode == 1
    assert seqs_in(done) == [1, 3, 5]
    lines = result.stderr.decode().splitlines()
    assert "evlog: group 'g': seq 2: --exec command exited with 3 2 times; parked as a dead letter " \
           "(see evlog group dead g)" in lines
    assert "evlog: group 'g': seq 4: --exec command was killed by signal 9 2 times; parked as a dead letter " \
           "(see evlog group dead g)" in lines
    assert lines[-1] == "evlog: group 'g': 2 of the events failed and are dead letters (see evlog group dead g)"
    assert group_list(log5)["g"] == {"group": "g", "position": 5, "lag": 0, "dead": 2}
    letters = dead(log5, "g")
    assert [(d["seq"], d["type"], d["stream"], d["attempts"], d["status"], d["queued"]) for d in letters] == [
        (2, "n", None, 2, 3, False), (4, "n", None, 2, -9, False)]
    from evlog.timefmt import parse_rfc3339

    assert all(before <= (parse_rfc3339(d["time"]) or 0) <= time.time_ns() for d in letters)
    # The listing conventions: -o json is one array, -o msgpack one map each.
    assert json.loads(run_evlog("group", "dead", "g", "-o", "json", log=log5).stdout) == letters
    packed = run_evlog("group", "dead", "g", "-o", "msgpack", log=log5).stdout
    assert list(msgpack.Unpacker(io.BytesIO(packed))) == letters
    table = run_evlog("group", "dead", "g", "-o", "table", log=log5, env={"COLUMNS": "120"})
    assert table.returncode == 0 and b"attempts" in table.stdout and b"-9" in table.stdout
    # The next run has nothing left to do: parked events are not retried by themselves.
    again = run_evlog("tail", "-g", "g", "--exec", f"echo $EVLOG_SEQ >> {done}", log=log5)
    assert (again.returncode, seqs_in(done)) == (0, [1, 3, 5])


def test_retry_queues_dead_letters_for_the_next_run_before_new_events(log5: str, tmp_path: Path) -> None:
    done, fail = tmp_path / "done", tmp_path / "fail"
    fail.write_text("2 4\n")
    command = f'grep -qw $EVLOG_SEQ {fail} && exit 5; echo $EVLOG_SEQ >> {done}'
    assert run_evlog("tail", "-g", "g", "--exec", command, "--max-attempts", "1", log=log5).returncode == 1
    assert [d["seq"] for d in dead(log5, "g")] == [2, 4]
    append(log5, *numbered(6, 6))

    one_line(run_evlog("group", "retry", "g", "3", log=log5), 2, b"no dead letter at seq 3", b"group dead g")
    queued = run_evlog("group", "retry", "g", "4", log=log5)
    assert queued.returncode == 0 and b"1 dead letter queued" in queued.stderr
    assert [(d["seq"], d["queued"]) for d in dead(log5, "g")] == [(2, False), (4, True)]
    # Seq 4 still fails: it stays a dead letter, its attempts added up; seq 6 is new and done.
    assert run_evlog("tail", "-g", "g", "--exec", command, "--max-attempts", "2", log=log5).returncode == 1
    assert [(d["seq"], d["attempts"], d["queued"]) for d in dead(log5, "g")] == [(2, 1, False), (4, 3, False)]
    assert seqs_in(done) == [1, 3, 5, 6]

    fail.write_text("")  # whatever made CMD fail is fixed
    assert run_evlog("group", "retry", "g", log=log5).returncode == 0  # all of them
    result = run_evlog("tail", "-g", "g", "--exec", command, log=log5)
    assert (result.returncode, result.stderr) == (0, b"")
    assert seqs_in(done) == [1, 3, 5, 6, 2, 4]  # queued dead letters first, then nothing new
    assert dead(log5, "g") == []
    assert group_list(log5)["g"]["dead"] == 0
    nothing = run_evlog("group", "retry", "g", log=log5)
    assert nothing.returncode == 0 and b"no dead letters" in nothing.stderr


def test_a_running_follower_delivers_a_retried_dead_letter_at_once(
    log5: str, tmp_path: Path, spawn: Callable[..., Running]
) -> None:
    done, fail = tmp_path / "done", tmp_path / "fail"
    fail.write_text("3\n")
    command = f'grep -qw $EVLOG_SEQ {fail} && exit 1; echo $EVLOG_SEQ >> {done}'
    follower = spawn("tail", "-f", "-g", "g", "--exec", command, "--max-attempts", "1", "--log", log5)
    deadline = time.monotonic() + TIMEOUT
    while group_list(log5).get("g", {}).get("dead") != 1:
        assert time.monotonic() < deadline, follower.describe()
    fail.write_text("")
    assert run_evlog("group", "retry", "g", log=log5).returncode == 0
    while seqs_in(done) != [1, 2, 4, 5, 3]:
        assert time.monotonic() < deadline, (seqs_in(done), follower.describe())
        time.sleep(0.05)
    while dead(log5, "g"):
        assert time.monotonic() < deadline
    assert follower.proc.poll() is None


def test_ack_removes_a_dead_letter_for_a_plain_reader(log5: str, tmp_path: Path) -> None:
    assert run_evlog("tail", "-g", "g", "--exec", '[ $EVLOG_SEQ != 2 ]', "--max-attempts", "1",
                     log=log5).returncode == 1
    assert run_evlog("group", "retry", "g", log=log5).returncode == 0
    plain = run_evlog("tail", "-g", "g", log=log5)  # a queued dead letter comes first to a plain reader too
    assert [json.loads(line)["seq"] for line in plain.stdout.splitlines()] == [2]
    assert run_evlog("group", "ack", "g", "2", log=log5).returncode == 0
    assert dead(log5, "g") == []
    assert group_list(log5)["g"]["position"] == 5


def test_a_plain_follower_prints_a_retried_dead_letter_once(log5: str, spawn: Callable[..., Running]) -> None:
    assert run_evlog("tail", "-g", "g", "--exec", '[ $EVLOG_SEQ != 2 ]', "--max-attempts", "1",
                     log=log5).returncode == 1
    follower = spawn("tail", "-f", "-g", "g", "--log", log5)
    append(log5, *numbered(6, 6))
    assert [e["seq"] for e in follower.events(1)] == [6]  # following: nothing before the position
    assert run_evlog("group", "retry", "g", log=log5).returncode == 0
    assert [e["seq"] for e in follower.events(1)] == [2]
    append(log5, *numbered(7, 7))
    assert [e["seq"] for e in follower.events(1)] == [7]  # the dead letter is not printed again
    assert follower.pending() == [] and follower.proc.poll() is None


# -- crashes -----------------------------------------------------------------------------


def test_kill_9_during_exec_then_restart_handles_every_event_at_least_once(
    log_path: str, tmp_path: Path, spawn: Callable[..., Running]
) -> None:
    total = 300
    with Log(log_path) as log:
        log.append_many(numbered(1, total))
    done = tmp_path / "done"
    command = f"echo $EVLOG_SEQ >> {done}"
    first = spawn("tail", "-f", "-g", "g", "--exec", command, "--log", log_path)
    deadline = time.monotonic() + TIMEOUT
    while len(seqs_in(done)) < 60:
        assert time.monotonic() < deadline, first.describe()
    first.proc.kill()
    assert first.finish() == -signal.SIGKILL
    saved = group_list(log_path)["g"]["position"]
    assert 0 < saved < total
    result = run_evlog("tail", "-g", "g", "--exec", command, log=log_path)
    assert result.returncode == 0, result.stderr
    # Read only now: a CMD that evlog started before it was killed may still have finished afterwards.
    handled = seqs_in(done)
    assert set(handled) == set(range(1, total + 1))  # at least once
    second_run = list(range(saved + 1, total + 1))
    first_run = handled[: len(handled) - len(second_run)]
    assert handled[len(first_run):] == second_run  # the second run went on right after the saved position
    assert first_run == list(range(1, len(first_run) + 1))  # in order, nothing skipped
    # Only an event whose CMD succeeded but whose acknowledgement was not yet committed runs twice.
    assert saved <= len(first_run) <= saved + 1
    assert group_list(log_path)["g"]["position"] == total


# -- untrusted group entries and lock files --------------------------------------------


def put_raw(log: str, key: bytes, value: bytes) -> None:
    import lmdb

    env = lmdb.open(log, max_dbs=16, lib_version=0)
    try:
        db = env.open_db(b"groups", create=False)
        with env.begin(write=True) as txn:
            txn.put(key, value, db=db)
    finally:
        env.close()


GOOD = msgpack.packb({"position": 1, "streams": [], "types": [], "where": None})
LETTER = msgpack.packb({"attempts": 1, "status": 1, "time": 1, "queued": True})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"g", b"\xc1not msgpack"),
        (b"g", msgpack.packb([1, 2, 3])),
        (b"g", msgpack.packb({"position": "1", "streams": [], "types": [], "where": None})),
        (b"g", msgpack.packb({"position": -1, "streams": [], "types": [], "where": None})),
        (b"g", msgpack.packb({"position": 1, "streams": [1], "types": [], "where": None})),
        (b"g", msgpack.packb({"position": 1, "streams": [], "types": [], "where": 5})),
        (b"g", msgpack.packb({"position": 1, "streams": []})),
        (b"g", msgpack.packb({"position": 1.5, "streams": [], "types": [], "where": None})),
        (b"g", msgpack.packb({"position": msgpack.ExtType(1, b"x"), "streams": [], "types": [], "where": None})),
        (b"g", b"\x01\x02"),
        (b"g\xff" + (1).to_bytes(8, "big"), b"\x00"),
        (b"g\xff" + (1).to_bytes(8, "big"), msgpack.packb({"attempts": 0, "status": 1, "time": 1, "queued": True})),
        (b"g\xff" + (1).to_bytes(8, "big"), msgpack.packb({"attempts": 1, "status": 1, "time": 1, "queued": 1})),
        (b"g\xff\x01", LETTER),
        (b"g\xff" + (0).to_bytes(8, "big"), LETTER),
        (b"\xfe\xfd", GOOD),
        (b"h\x1b[2J", GOOD),
        (b"orphan\xff" + (1).to_bytes(8, "big"), LETTER),
    ],
)
def test_a_malformed_group_entry_is_exit_74_and_one_line(log5: str, key: bytes, value: bytes) -> None:
    with Log(log5) as log:
        from evlog import groups

        groups.create_group(log.store(write=True), "g", 0, groups.Filters())
    put_raw(log5, key, value)
    for args in (("group", "list"), ("group", "dead", "g"), ("tail", "-g", "g"), ("group", "retry", "g"),
                 ("tail", "-g", "g", "--exec", "true")):
        result = run_evlog(*args, log=log5)
        if args != ("group", "list") and not key.startswith(b"g"):
            continue  # another group's damage does not concern this one
        assert result.returncode == 74, (args, result.stderr)
        assert result.stdout == b"", args
        assert result.stderr.startswith(b"evlog: damaged log: group ") and b"run evlog verify" in result.stderr
        assert len(result.stderr.splitlines()) == 1 and b"\x1b" not in result.stderr, result.stderr


def test_a_queued_dead_letter_of_an_event_the_log_lacks_is_damage(log5: str) -> None:
    with Log(log5) as log:
        from evlog import groups

        groups.create_group(log.store(write=True), "g", 5, groups.Filters())
    put_raw(log5, b"g\xff" + (999).to_bytes(8, "big"), LETTER)
    for args in (("tail", "-g", "g"), ("tail", "-g", "g", "--exec", "true")):
        one_line(run_evlog(*args, log=log5), 74, b"damaged log: group 'g': a dead letter names seq 999")
    assert [d["seq"] for d in dead(log5, "g")] == [999]  # listed, so that it can be seen (group rm clears it)


def lock_file(log: str, name: str) -> str:
    return os.path.join(log, f"group-{name.encode().hex()}.lock")


def test_a_group_lock_file_is_a_private_regular_file(log5: str) -> None:
    old = os.umask(0)
    try:
        assert run_evlog("tail", "-g", "g", log=log5).returncode == 0
    finally:
        os.umask(old)
    mode = os.lstat(lock_file(log5, "g")).st_mode
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o600


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(log5: str, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    os.symlink(target, lock_file(log5, "g"))
    dangling = tmp_path / "nowhere"
    os.symlink(dangling, lock_file(log5, "h"))
    for name in ("g", "h"):
        for args in (("tail", "-g", name), ("tail", "-f", "-g", name, "--exec", "true")):
            one_line(run_evlog(*args, log=log5), 74, b"symbolic link", b"remove it")
    assert target.read_text() == "keep me\n"
    assert not dangling.exists()


def test_a_fifo_in_place_of_a_lock_file_is_refused(log5: str) -> None:
    os.mkfifo(lock_file(log5, "g"))
    one_line(run_evlog("tail", "-g", "g", log=log5, timeout=20), 74, b"not a regular file")
