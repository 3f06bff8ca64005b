"""What every backend must do: one behavioural suite, run against each kind of log.

A backend is defined by these tests, not by its own: each runs on a fresh log
of every kind (the ``any_log`` fixture, parametrized in conftest), through the
library and through the real command. Backend-specific tests only add to it.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest
from conftest import run_evlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evlog import ConflictError, Log, LogNotFoundError


def _events(log: str, *args: str) -> list[dict[str, Any]]:
    result = run_evlog("replay", *args, "-o", "ndjson", log=log)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _bank(count: int = 30) -> list[dict[str, Any]]:
    return [
        {"type": "deposit" if n % 3 else "withdraw", "stream": f"account-{n % 4}", "data": {"amount": n}}
        for n in range(1, count + 1)
    ]


def test_a_read_of_a_log_that_does_not_exist_fails_and_creates_nothing(any_log: str) -> None:
    with Log(any_log) as log, pytest.raises(LogNotFoundError):
        log.head()
    result = run_evlog("replay", log=any_log)
    assert result.returncode == 66, result.stderr
    assert result.stderr.decode().startswith("evlog: ")
    with Log(any_log) as log, pytest.raises(LogNotFoundError):
        log.head()


def test_seqs_are_gapless_and_versions_count_each_stream(any_log: str) -> None:
    with Log(any_log) as log:
        first = log.append("opened", {"owner": "ann"}, stream="account-1")
        assert (first.seq, first.version, first.stream) == (1, 1, "account-1")
        log.append_many(_bank(30))
        plain = log.append("note")
        assert plain.seq == 32 and plain.version is None and plain.stream is None
        events = list(log.read())
    assert [event.seq for event in events] == list(range(1, 33))
    versions: dict[str, int] = {}
    for event in events:
        if event.stream is not None:
            versions[event.stream] = versions.get(event.stream, 0) + 1
            assert event.version == versions[event.stream]
    times = [event.ts for event in events]
    assert times == sorted(times)


def test_expect_conflicts_write_nothing(any_log: str) -> None:
    with Log(any_log) as log:
        log.append("opened", stream="s", expect=0)
        log.append("deposit", {"amount": 5}, stream="s", expect=1)
        with pytest.raises(ConflictError) as caught:
            log.append("deposit", {"amount": 6}, stream="s", expect=1)
        assert (caught.value.expected, caught.value.actual) == (1, 2)
        assert log.head() == 2
    result = run_evlog("append", "deposit", "-s", "s", "--expect", "5", "amount:=1", log=any_log)
    assert result.returncode == 3
    assert "version 2, expected 5" in result.stderr.decode()


def test_an_id_appends_once(any_log: str) -> None:
    with Log(any_log) as log:
        first = log.append("paid", {"n": 1}, id="payment-1")
        again = log.append("paid", {"n": 1}, id="payment-1")
        assert again.seq == first.seq
        summary = log.append_many([{"type": "paid", "id": "payment-1"}, {"type": "paid", "id": "payment-2"}])
        assert (summary.appended, summary.duplicates) == (1, 1)
        assert log.head() == 2
        assert log.resolve("id:payment-2") == 2


def test_positions_by_seq_time_and_from_the_end(any_log: str) -> None:
    base = 1_700_000_000 * 10**9
    with Log(any_log) as log:
        log.append_many([{"type": "tick", "ts": base + n * 10**9, "data": {"n": n}} for n in range(10)])
    assert [e["seq"] for e in _events(any_log, "--from", "3", "--until", "5")] == [3, 4, 5]
    assert [e["seq"] for e in _events(any_log, "--from", "-2")] == [9, 10]
    seconds = base // 10**9
    assert [e["seq"] for e in _events(any_log, "--from", f"@{seconds + 4}", "--until", f"@{seconds + 5}")] == [5, 6]
    with Log(any_log) as log:
        assert log.range("@0", None) == (1, 10)


def test_filters_by_stream_and_type_with_globs_and_the_index(any_log: str) -> None:
    with Log(any_log) as log:
        log.append_many(_bank(30))
    exact = _events(any_log, "-s", "account-1")
    assert {e["stream"] for e in exact} == {"account-1"} and len(exact) == 8
    assert [e["version"] for e in exact] == list(range(1, 9))
    globbed = _events(any_log, "-s", "account-[12]", "-t", "with*")
    assert {e["stream"] for e in globbed} <= {"account-1", "account-2"}
    assert {e["type"] for e in globbed} == {"withdraw"}
    merged = _events(any_log, "-s", "account-1", "-s", "account-3")
    assert [e["seq"] for e in merged] == sorted(e["seq"] for e in merged)


def test_info_counts_and_the_head_hash_follows_the_events(any_log: str, tmp_path: Any) -> None:
    events = [dict(event, ts=1_700_000_000 * 10**9 + n) for n, event in enumerate(_bank(12))]
    with Log(any_log) as log:
        log.append_many(events)
        info = log.info()
    assert (info["events"], info["first_seq"], info["last_seq"], info["streams"]) == (12, 1, 12, 4)
    assert info["types"] == {"deposit": 8, "withdraw": 4}
    with Log(str(tmp_path / "same.lmdb")) as same:
        same.append_many(events)
        assert same.info()["head_hash"] == info["head_hash"]


def test_a_fold_over_the_log(any_log: str) -> None:
    with Log(any_log) as log:
        log.append_many(_bank(30))
    result = run_evlog(
        "replay", "--by", "stream", "--init", "0", "--on", "deposit", "s + d.amount",
        "--on", "withdraw", "s - d.amount", "-o", "json", log=any_log,
    )
    assert result.returncode == 0, result.stderr
    expected: dict[str, int] = {}
    for event in _bank(30):
        sign = 1 if event["type"] == "deposit" else -1
        expected[event["stream"]] = expected.get(event["stream"], 0) + sign * event["data"]["amount"]
    assert json.loads(result.stdout) == expected


def test_a_log_copied_through_a_pipe_has_the_same_head(any_log: str, tmp_path: Any) -> None:
    source = str(tmp_path / "source.lmdb")
    with Log(source) as log:
        log.append_many([dict(event, ts=1_700_000_000 * 10**9 + n) for n, event in enumerate(_bank(20))])
        original = log.info()["head_hash"]
    copied = run_evlog("replay", log=source)
    assert run_evlog("append", log=any_log, input=copied.stdout).returncode == 0
    back = run_evlog("replay", log=any_log)
    home = str(tmp_path / "home.lmdb")
    assert run_evlog("append", log=home, input=back.stdout).returncode == 0
    with Log(any_log) as log, Log(home) as returned:
        assert log.info()["head_hash"] == original == returned.info()["head_hash"]
    assert back.stdout == copied.stdout


def test_tail_follows_appends(any_log: str, spawn: Any) -> None:
    with Log(any_log) as log:
        log.append("before")
    follower = spawn("tail", "-f", "-t", "wanted", "--log", any_log)
    with Log(any_log) as log:  # before or after the follower starts: the last lines or new ones
        log.append("ignored")
        log.append("wanted", {"n": 1})
    assert [(e["seq"], e["type"]) for e in follower.events(1)] == [(3, "wanted")]
    with Log(any_log) as log:
        log.append("wanted", {"n": 2})
    assert [(e["seq"], e["data"]) for e in follower.events(1)] == [(4, {"n": 2})]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=19), max_size=4))
def test_any_split_into_batches_gives_the_same_log(any_log_factory: Any, cuts: list[int]) -> None:
    events = [dict(event, ts=1_700_000_000 * 10**9 + n) for n, event in enumerate(_bank(20))]
    bounds = [0, *sorted(set(cuts)), len(events)]
    with Log(any_log_factory()) as log:
        for low, high in itertools.pairwise(bounds):
            log.append_many(events[low:high])
        assert log.head() == 20
        split = log.info()["head_hash"]
    with Log(any_log_factory()) as log:
        log.append_many(events)
        assert log.info()["head_hash"] == split


def test_the_clock_never_goes_backwards_across_batches(any_log: str) -> None:
    with Log(any_log) as log:
        log.append_many([{"type": "a"}] * 5, batch_size=2)
        time.sleep(0.01)
        log.append("b")
        times = [event.ts for event in log.read()]
    assert times == sorted(times)


# -- durable groups: at least once, the same on every backend -----------------------------


def _group_list(log: str) -> list[dict[str, Any]]:
    result = run_evlog("group", "list", "-o", "ndjson", log=log)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _group_seqs(log: str, *args: str) -> list[int]:
    result = run_evlog("tail", *args, "-o", "ndjson", log=log)
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["seq"] for line in result.stdout.splitlines()]


def test_a_group_resumes_after_its_last_acknowledged_event(any_log: str) -> None:
    with Log(any_log) as log:
        log.append_many(_bank(6))
    assert _group_seqs(any_log, "--group", "g") == [1, 2, 3, 4, 5, 6]
    assert _group_seqs(any_log, "--group", "g") == [1, 2, 3, 4, 5, 6]  # printed is not done: nothing moved
    assert run_evlog("group", "ack", "g", "2", "4", log=any_log).returncode == 0
    assert _group_seqs(any_log, "--group", "g") == [5, 6]
    assert _group_list(any_log) == [{"group": "g", "position": 4, "lag": 2, "dead": 0}]
    # A group keeps its filters; a new one starts where -n or --from says.
    assert _group_seqs(any_log, "--group", "w", "-t", "withdraw") == [3, 6]
    refused = run_evlog("tail", "--group", "w", "-t", "deposit", log=any_log)
    assert refused.returncode == 2 and b"--reset-filters" in refused.stderr
    assert _group_seqs(any_log, "--group", "late", "-n", "2") == [5, 6]
    assert _group_seqs(any_log, "--group", "later", "--from", "6") == [6]


def test_exec_acknowledges_on_exit_0_and_parks_failures_as_dead_letters(any_log: str, tmp_path: Any) -> None:
    with Log(any_log) as log:
        log.append_many(_bank(5))
    handled = tmp_path / "handled"
    command = f'echo "$EVLOG_SEQ $EVLOG_ATTEMPT" >> {handled}; test "$EVLOG_SEQ" != 3'
    result = run_evlog("tail", "--group", "g", "--exec", command, "--max-attempts", "2", log=any_log)
    assert result.returncode == 1, result.stderr
    assert b"parked as a dead letter" in result.stderr
    assert handled.read_text().split("\n")[:-1] == ["1 1", "2 1", "3 1", "3 2", "4 1", "5 1"]
    assert _group_list(any_log) == [{"group": "g", "position": 5, "lag": 0, "dead": 1}]
    dead = run_evlog("group", "dead", "g", "-o", "ndjson", log=any_log)
    letters = [json.loads(line) for line in dead.stdout.splitlines()]
    assert [(d["seq"], d["attempts"], d["status"], d["queued"]) for d in letters] == [(3, 2, 1, False)]
    with Log(any_log) as log:
        log.append("deposit", {"amount": 6}, stream="account-6")
    # A run starts after the position; `group retry` puts a dead letter before the new events.
    assert run_evlog("group", "retry", "g", log=any_log).returncode == 0
    handled.write_text("")
    again = run_evlog("tail", "--group", "g", "--exec", f'echo "$EVLOG_SEQ" >> {handled}', log=any_log)
    assert again.returncode == 0, again.stderr
    assert handled.read_text().split() == ["3", "6"]
    assert _group_list(any_log) == [{"group": "g", "position": 6, "lag": 0, "dead": 0}]


def test_group_reset_and_rm(any_log: str) -> None:
    with Log(any_log) as log:
        log.append_many(_bank(5))
    assert run_evlog("group", "ack", "g", "1", log=any_log).returncode == 2  # no such group yet
    _group_seqs(any_log, "--group", "g")
    assert run_evlog("group", "ack", "g", "5", log=any_log).returncode == 0
    assert _group_list(any_log)[0]["position"] == 5
    assert run_evlog("group", "reset", "g", "--to", "2", log=any_log).returncode == 0
    assert _group_seqs(any_log, "--group", "g") == [2, 3, 4, 5]
    assert run_evlog("group", "ack", "g", "9", log=any_log).returncode == 2  # past the head
    assert run_evlog("group", "rm", "g", log=any_log).returncode == 0
    assert _group_list(any_log) == []
    missing = run_evlog("group", "rm", "g", log=any_log)
    assert missing.returncode == 2 and b"no group named 'g'" in missing.stderr


def test_one_follower_per_group(any_log: str, spawn: Any) -> None:
    with Log(any_log) as log:
        log.append("first")
    follower = spawn("tail", "-f", "--group", "g", "-o", "ndjson", "--log", any_log)
    assert [e["seq"] for e in follower.events(1)] == [1]  # it holds the group now
    second = run_evlog("tail", "--group", "g", log=any_log)
    assert second.returncode == 1
    assert b"group 'g' is being followed by another process (pid " in second.stderr
    assert run_evlog("group", "reset", "g", "--to", "1", log=any_log).returncode == 1
    follower.stop()
    assert _group_seqs(any_log, "--group", "g") == [1]  # its successor is not kept waiting


# -- snapshots and projections: kept with the log, trusted only where they check out --------------

_BALANCES = ("--by", "stream", "--init", '{"b": 0}', "--on", "deposit", "s.b += d.amount",
             "--on", "withdraw", "s.b -= d.amount")


def _balances(events: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    states: dict[str, dict[str, int]] = {}
    for event in events:
        sign = 1 if event["type"] == "deposit" else -1
        states.setdefault(event["stream"], {"b": 0})["b"] += sign * event["data"]["amount"]
    return states


def _snapshot_list(log: str) -> list[dict[str, Any]]:
    result = run_evlog("snapshot", "list", "-o", "ndjson", log=log)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _fold_spec() -> Any:
    from evlog.fold import FoldSpec

    return FoldSpec(init={"b": 0}, clauses=(("deposit", "s.b += d.amount"), ("withdraw", "s.b -= d.amount")),
                    by="stream")


def test_projection_add_list_show_and_rm(any_log: str) -> None:
    with Log(any_log) as log:
        log.append_many(_bank(30))
    added = run_evlog("projection", "add", "bal", *_BALANCES, "--snapshot-every", "10", log=any_log)
    assert added.returncode == 0, added.stderr
    again = run_evlog("projection", "add", "bal", "--fold", "s", log=any_log)
    assert again.returncode == 2 and b"exists; use --replace" in again.stderr
    listed = run_evlog("projection", "list", "-o", "ndjson", log=any_log)
    assert [(p["name"], p["snapshot_every"]) for p in map(json.loads, listed.stdout.splitlines())] == [("bal", 10)]

    shown = run_evlog("projection", "show", "bal", "--at", "20", "--snapshot-every", "10", "-o", "json", log=any_log)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == _balances(_bank(20))
    saved = _snapshot_list(any_log)
    assert [s["seq"] for s in saved] == [10, 20] and all(s["problem"] is None for s in saved)
    replayed = run_evlog("replay", "--projection", "bal", "-o", "json", log=any_log)
    assert replayed.returncode == 0 and json.loads(replayed.stdout) == _balances(_bank(30))

    replaced = run_evlog("projection", "add", "bal", "--replace", "--fold", "s + 1", "--init", "0",
                         "--snapshot-every", "10", log=any_log)
    assert replaced.returncode == 0 and b"dropped 2 snapshots of its old definition" in replaced.stderr
    assert _snapshot_list(any_log) == []
    run_evlog("projection", "show", "bal", "--snapshot-every", "10", log=any_log)
    removed = run_evlog("projection", "rm", "bal", log=any_log)
    assert removed.returncode == 0 and b"removed projection 'bal' and 3 snapshots" in removed.stderr
    assert run_evlog("projection", "list", "-o", "ndjson", log=any_log).stdout == b""
    gone = run_evlog("projection", "show", "bal", log=any_log)
    assert gone.returncode == 2 and b"no projection named 'bal'" in gone.stderr


def test_projection_show_reads_only_the_events_after_the_newest_snapshot(any_log: str) -> None:
    from evlog import snapshots
    from evlog.runner import run_fold

    events = _bank(350)
    with Log(any_log) as log:
        log.append_many(events[:300])
    assert run_evlog("projection", "add", "bal", *_BALANCES, "--snapshot-every", "100", log=any_log).returncode == 0
    first = run_evlog("projection", "show", "bal", "--snapshot-every", "100", "-o", "json", log=any_log)
    assert json.loads(first.stdout) == _balances(events[:300])
    with Log(any_log) as log:
        log.append_many(events[300:])
        projection = snapshots.get_projection(log.backend(), "bal")
        read: list[int] = []
        result, _ = run_fold(log, projection.spec, snapshot_every=100, progress=lambda done, _all: read.append(done))
        assert (result.snapshot_seq, result.folded_from, max(read)) == (300, 301, 50)
        assert result.value(by=True) == _balances(events)
        full, _ = run_fold(log, projection.spec, use_snapshots=False)
        assert full.states == result.states and full.folded_from == 1


def test_snapshot_save_list_drop_and_a_replay_that_starts_from_one(any_log: str) -> None:
    from evlog.runner import run_fold

    with Log(any_log) as log:
        log.append_many(_bank(30))
    saved = run_evlog("snapshot", "save", *_BALANCES, "--at", "20", log=any_log)
    assert saved.returncode == 0, saved.stderr
    digest, seq = saved.stdout.decode().split()
    assert seq == "20" and b"saved the state after seq 20" in saved.stderr
    assert [(s["hash"], s["seq"], s["keys"]) for s in _snapshot_list(any_log)] == [(digest, 20, 4)]
    replayed = run_evlog("replay", *_BALANCES, "-o", "json", log=any_log)
    assert json.loads(replayed.stdout) == _balances(_bank(30))
    with Log(any_log) as log:
        result, _ = run_fold(log, _fold_spec())
        assert (result.snapshot_seq, result.folded_from) == (20, 21)
        early, _ = run_fold(log, _fold_spec(), until=19)
        assert early.snapshot_seq is None and early.value(by=True) == _balances(_bank(19))
    assert run_evlog("snapshot", "drop", "--before", "20", log=any_log).stderr.endswith(b"dropped 0 snapshots\n")
    dropped = run_evlog("snapshot", "drop", digest[:8], log=any_log)
    assert dropped.returncode == 0 and b"dropped 1 snapshot" in dropped.stderr
    assert _snapshot_list(any_log) == []


def test_a_snapshot_is_used_only_on_the_history_it_was_made_for(any_log: str) -> None:
    import msgpack

    from evlog import snapshots
    from evlog.runner import run_fold
    from evlog.snapshot_check import check_snapshots

    with Log(any_log) as log:
        log.append_many(_bank(30))
    assert run_evlog("snapshot", "save", *_BALANCES, "--at", "10", log=any_log).returncode == 0
    assert run_evlog("snapshot", "save", *_BALANCES, "--at", "20", log=any_log).returncode == 0
    with Log(any_log) as log:
        clean = check_snapshots(log)
        assert list(clean) == [] and clean.checked == 2
        table = log.backend(write=True).table("snapshots")
        keys = table.list_keys()
        assert [int.from_bytes(key[16:], "big") for key in keys] == [10, 20]
        # At 20, a snapshot for another history: a lie about every balance, with a chain hash not the log's.
        record = msgpack.unpackb(table.get(keys[1]), strict_map_key=False)
        record["hash"] = bytes(16)
        record["states"] = [[key, {"b": 10**6}] for key, _ in record["states"]]
        table.put(keys[1], msgpack.packb(record, use_bin_type=True))
        # At 10, a state that lies but carries the right chain hash: only a recomputation can tell.
        record = msgpack.unpackb(table.get(keys[0]), strict_map_key=False)
        record["states"][0][1] = {"b": -1}
        table.put(keys[0], msgpack.packb(record, use_bin_type=True))
        result, _ = run_fold(log, _fold_spec())
        assert result.snapshot_seq == 10  # passed over the one at 20
        found = list(check_snapshots(log))
    assert [(f.seq, "another history" in f.problem, "differs" in f.problem) for f in found] == [
        (10, False, True), (20, True, False)]
    listed = _snapshot_list(any_log)
    assert [s["problem"] is not None for s in listed] == [False, True]
    assert "made for another history" in listed[1]["problem"]
    with Log(any_log) as log:
        found_at = snapshots.latest(log.backend(), _fold_spec(), 1, 30)
        assert found_at is not None and found_at[0] == 10


def test_a_damaged_projection_entry_is_damage_and_rm_removes_it(any_log: str) -> None:
    with Log(any_log) as log:
        log.append_many(_bank(5))
    assert run_evlog("projection", "add", "bal", *_BALANCES, log=any_log).returncode == 0
    with Log(any_log) as log:
        log.backend(write=True).table("projections").put(b"bal", b"\xc1 not msgpack")
    for command in (("projection", "show", "bal"), ("projection", "list"), ("replay", "--projection", "bal")):
        result = run_evlog(*command, log=any_log)
        assert result.returncode == 74, (command, result.stderr)
        assert result.stderr.startswith(b"evlog: damaged log") and b"projection rm bal" in result.stderr
    removed = run_evlog("projection", "rm", "bal", log=any_log)
    assert removed.returncode == 0 and b"its entry was damaged" in removed.stderr
    assert run_evlog("projection", "list", log=any_log).returncode == 0


def test_a_snapshot_larger_than_the_readers_limit_is_not_saved_and_said_once(any_log: str) -> None:
    with Log(any_log) as log:
        log.append_many([{"type": "blob", "data": {"text": "x" * 2000}}] * 20)
    result = run_evlog("replay", "--init", "[]", "--fold", "s + [d.text]", "--snapshot-every", "5",
                       "--snapshot-max-size", "12k", "-o", "json", log=any_log)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 20
    assert result.stderr.count(b"more than the snapshot size limit") == 1
    assert [s["seq"] for s in _snapshot_list(any_log)] == [5]


def test_two_adds_of_one_projection_at_once_keep_one(any_log: str) -> None:
    import subprocess
    import sys

    with Log(any_log) as log:
        log.append("x")
    command = [sys.executable, "-m", "evlog", "projection", "add", "same", "--log", any_log, "--init", "0", "--fold"]
    racers = [subprocess.Popen([*command, f"s + {n}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for n in range(4)]
    codes = [racer.wait(timeout=60) for racer in racers]
    for racer in racers:
        racer.communicate()
    assert sorted(codes) == [0, 2, 2, 2]
    listed = run_evlog("projection", "list", "-o", "ndjson", log=any_log).stdout.splitlines()
    winner = codes.index(0)
    assert [json.loads(line)["definition"]["clauses"] for line in listed] == [[[None, f"s + {winner}"]]]


def _small_log(location: str) -> None:
    """Twelve events at known times: three streams, two types, ids, and one event without a stream."""
    events = [dict(event, ts=1_700_000_000 * 10**9 + n * 10**9, id=f"e-{n}") for n, event in enumerate(_bank(11))]
    with Log(location) as log:
        log.append_many(events)
        log.append("note", {"text": "no stream"})


def test_verify_is_clean_on_a_fresh_log_and_checks_a_part(any_log: str) -> None:
    _small_log(any_log)
    with Log(any_log) as log:
        head = log.info()["head_hash"]
    result = run_evlog("verify", log=any_log)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert f"ok: 12 events (seq 1-12) verified; head hash {head}" in result.stderr.decode()
    part = run_evlog("verify", "--from", "5", "-o", "json", log=any_log)
    assert part.returncode == 0, part.stderr
    assert json.loads(part.stdout) == {
        "findings": [], "ok": True, "events": 8, "first_seq": 5, "last_seq": 12, "problems": 0,
        "head_hash": head, "stored_head_hash": head,
    }
    with Log(any_log) as log:  # the library: the type counts read, then verified against the events again
        assert log.types() == {"deposit": 8, "withdraw": 3, "note": 1}
        from evlog.verify import verify

        run = verify(log)
        assert list(run) == [] and run.ok and run.head_hash == head


def test_verify_on_an_empty_range_and_a_missing_log(any_log: str) -> None:
    missing = run_evlog("verify", log=any_log)
    assert missing.returncode == 66, missing.stderr
    _small_log(any_log)
    past = run_evlog("verify", "--from", "13", log=any_log)
    assert past.returncode == 0, past.stderr
    assert "ok: no events from seq 13" in past.stderr.decode()


def test_backup_to_a_local_log_has_the_same_head_and_verifies(any_log: str, tmp_path: Any) -> None:
    _small_log(any_log)
    dest = tmp_path / "copy"
    result = run_evlog("backup", str(dest), "-o", "json", log=any_log)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    with Log(any_log) as log, Log(str(dest)) as copy:
        source, copied = log.info(), copy.info()
        assert facts["head_hash"] == source["head_hash"] == copied["head_hash"]
        assert facts["events"] == facts["last_seq"] == 12
        for fact in ("events", "streams", "types", "log_id", "created", "first_ts", "last_ts"):
            assert copied[fact] == source[fact], fact
        assert copy.resolve("id:e-4") == log.resolve("id:e-4") == 5
        assert [e.seq for e in copy.read(streams=["account-1"])] == [e.seq for e in log.read(streams=["account-1"])]
    assert (dest.stat().st_mode & 0o777) == 0o700
    assert ((dest / "data.mdb").stat().st_mode & 0o777) == 0o600
    verified = run_evlog("verify", log=str(dest))
    assert verified.returncode == 0, verified.stderr
    assert facts["head_hash"] in verified.stderr.decode()
    assert run_evlog("replay", log=str(dest)).stdout == run_evlog("replay", log=any_log).stdout
    again = run_evlog("backup", str(dest), log=any_log)  # never over anything
    assert again.returncode == 2 and b"not empty" in again.stderr


def test_stats_and_streams_on_a_small_log(any_log: str) -> None:
    _small_log(any_log)
    whole = run_evlog("stats", "-o", "json", log=any_log)
    assert whole.returncode == 0, whole.stderr
    stats = json.loads(whole.stdout)
    assert (stats["events"], stats["first_seq"], stats["last_seq"]) == (12, 1, 12)
    assert stats["types"][:2] == [{"type": "deposit", "count": 8, "percent": 66.67},
                                  {"type": "withdraw", "count": 3, "percent": 25.0}]
    assert stats["streams"][0] == {"stream": "account-1", "count": 3, "percent": 25.0}
    assert (stats["distinct_types"], stats["distinct_streams"], stats["events_without_stream"]) == (3, 4, 1)
    assert sum(b["count"] for b in stats["bins"]) == 12
    part = json.loads(run_evlog("stats", "--from", "2", "--until", "5", "-o", "json", log=any_log).stdout)
    assert (part["events"], part["distinct_streams"]) == (4, 4)
    listed = run_evlog("streams", "-o", "json", log=any_log)
    assert listed.returncode == 0, listed.stderr
    streams = json.loads(listed.stdout)
    assert [(s["stream"], s["version"], s["first_seq"], s["last_seq"]) for s in streams] == [
        ("account-0", 2, 4, 8), ("account-1", 3, 1, 9), ("account-2", 3, 2, 10), ("account-3", 3, 3, 11),
    ]
    assert streams[1]["first_ts"].startswith("2023-11-14T22:13:20")
    top = run_evlog("streams", "account-*", "--sort", "last", "--limit", "2", "-o", "json", log=any_log)
    assert [s["stream"] for s in json.loads(top.stdout)] == ["account-3", "account-2"]


def test_verify_while_another_process_appends_is_clean(any_log: str) -> None:
    import subprocess
    import sys

    _small_log(any_log)
    lines = "".join(json.dumps({"type": "tick", "stream": f"s-{n % 7}", "id": f"t-{n}"}) + "\n" for n in range(4000))
    appender = subprocess.Popen([sys.executable, "-m", "evlog", "append", "--batch", "100", "--log", any_log],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert appender.stdin is not None
    appender.stdin.write(lines.encode())
    appender.stdin.close()
    runs = 0
    while appender.poll() is None or runs == 0:
        result = run_evlog("verify", log=any_log)
        assert result.returncode == 0, (result.stdout, result.stderr)
        runs += 1
    assert appender.wait() == 0
    final = run_evlog("verify", log=any_log)
    assert final.returncode == 0 and b"4,012 events" in final.stderr, final.stderr


# -- read models in SQL: a sync reads through the backend, whatever keeps the log -----------------


def test_a_projection_and_the_events_sync_into_sqlite_from_any_log(any_log: str, tmp_path: Any) -> None:
    from sinks import BALANCES, add_projection, bank_events, expected_states, table_states

    with Log(any_log) as log:
        log.append_many(bank_events(120, 6))
    add_projection(any_log, "balances", *BALANCES)
    url = f"sqlite:///{tmp_path / 'read.db'}"
    synced = run_evlog("projection", "sync", "balances", "--into", url, log=any_log)
    assert synced.returncode == 0, synced.stderr
    last, states = table_states(url, "balances")
    assert last == 120 and states == expected_states(any_log, "balances", 120)
    exported = run_evlog("export", "--into", url, "-s", "acct-1", log=any_log)
    assert exported.returncode == 0, exported.stderr
    status = run_evlog("projection", "status", "-o", "json", log=any_log)
    assert status.returncode == 0, status.stderr
    assert '"balances"' in status.stdout.decode()
