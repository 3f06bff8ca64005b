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
