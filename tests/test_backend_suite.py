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
