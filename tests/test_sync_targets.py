"""What every database target must do for projection sync: the suite that defines a target.

Each test runs once per target (``target_url``: SQLite, and PostgreSQL where
a throwaway cluster can start), through the library API and the real
``evlog`` command. Tables are compared with the projection's states folded
afresh (:func:`sinks.expected_states`), which is what "equals a fresh
rebuild" means.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from typing import Any

import pytest
from conftest import run_evlog
from running import Running, append
from sinks import BALANCES, add_projection, bank_events, expected_states, table_states, target_url

from evlog import Log
from evlog.errors import ForeignTableError, SyncBusyError, TargetValueError, UsageError
from evlog.sinks import sync_projection
from evlog.sinks.target import Column, TableSpec, open_target

__all__ = ["target_url"]  # the fixture, imported to be used here

TIMEOUT = 60.0


def synced(log_path: str, url: str, name: str = "balances", **options: Any) -> Any:
    with Log(log_path) as log:
        return sync_projection(log, name, url, **options)


def assert_fresh(log_path: str, url: str, table: str = "balances", name: str = "balances") -> int:
    last_seq, states = table_states(url, table)
    assert states == expected_states(log_path, name, last_seq)
    return last_seq


def wait_for(condition: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def test_a_by_projection_is_one_row_per_key_and_only_changed_keys_are_written(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append_many(bank_events(2000, 100))
    add_projection(log_path, "balances", *BALANCES)
    report = synced(log_path, target_url)
    assert (report.last_seq, report.lag, report.rebuilt) == (2000, 0, True)
    assert assert_fresh(log_path, target_url) == 2000
    with Log(log_path) as log:
        log.append_many([{"type": "deposit", "stream": s, "data": {"amount": 5}} for s in ("acct-1", "acct-2")] * 3)
    report = synced(log_path, target_url)
    assert (report.last_seq, report.rows_written, report.rebuilt) == (2006, 2, False)
    assert_fresh(log_path, target_url)


def test_a_closed_key_loses_its_row_and_comes_back_from_init(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append("deposit", {"amount": 10}, stream="a")
        log.append("deposit", {"amount": 20}, stream="b")
    add_projection(log_path, "balances", *BALANCES)
    synced(log_path, target_url)
    with Log(log_path) as log:
        log.append("close", stream="a")
    report = synced(log_path, target_url)
    assert report.rows_deleted == 1
    assert table_states(target_url, "balances")[1] == {"b": {"balance": 20, "deposits": 1}}
    with Log(log_path) as log:
        log.append("deposit", {"amount": 3}, stream="a")
    synced(log_path, target_url)
    assert table_states(target_url, "balances")[1]["a"] == {"balance": 3, "deposits": 1}


def test_new_keys_add_columns_and_types_follow_the_values(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append("set", {"n": 1, "ok": True, "name": "x", "tags": ["a"], "ratio": 0.5}, stream="p1")
    add_projection(log_path, "profile", "--by", "stream", "--fold", "s.update(d)")
    synced(log_path, target_url, "profile")
    with Log(log_path) as log:
        log.append("set", {"city": "Lyon", "order.created": 2}, stream="p2")
    synced(log_path, target_url, "profile")
    assert assert_fresh(log_path, target_url, "profile", "profile") == 2
    target = open_target(target_url)
    try:
        checkpoint = target.checkpoint("profile")
    finally:
        target.close()
    assert checkpoint is not None
    assert dict((c.name, c.type) for c in checkpoint.columns) == {
        "n": "integer", "ok": "boolean", "name": "text", "tags": "json", "ratio": "real", "city": "text",
        "order.created": "integer",
    }


@pytest.mark.parametrize(("first", "then", "kind"), [
    (1, "text now", "json"), (1, 2.5, "real"), (True, 1, "json"), ("a", {"b": [1]}, "json"), (2, 2**60, "integer"),
])
def test_a_value_that_changes_type_is_stored_faithfully(
    log_path: str, target_url: str, first: Any, then: Any, kind: str
) -> None:
    with Log(log_path) as log:
        log.append("set", {"v": first}, stream="a")
        log.append("set", {"v": first}, stream="b")
    add_projection(log_path, "values", "--by", "stream", "--fold", "s.update(d)")
    synced(log_path, target_url, "values")
    with Log(log_path) as log:
        log.append("set", {"v": then}, stream="b")
    synced(log_path, target_url, "values")
    _, states = table_states(target_url, "values")
    assert states == {"a": {"v": first}, "b": {"v": then}}
    assert all(type(states[k]["v"]) is type(v) for k, v in (("a", first), ("b", then)) if kind != "real")
    target = open_target(target_url)
    try:
        checkpoint = target.checkpoint("values")
    finally:
        target.close()
    assert checkpoint is not None and checkpoint.columns == (Column("v", kind),)  # type: ignore[arg-type]


def test_a_column_that_appears_mid_batch_is_in_every_row_of_the_batch(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append("set", None, stream="a")
    add_projection(log_path, "plain", "--by", "stream", "--fold", "s = d")
    synced(log_path, target_url, "plain")  # a table of keys only
    with Log(log_path) as log:
        log.append_many([{"type": "set", "stream": "a", "data": {}}, {"type": "set", "stream": "b", "data": 0},
                         {"type": "set", "stream": "c", "data": {"x": [1]}}])
    synced(log_path, target_url, "plain")
    assert table_states(target_url, "plain")[1] == {"a": {}, "b": {"value": 0}, "c": {"x": [1]}}


def test_a_projection_without_by_is_one_row_and_a_plain_state_one_column(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append("deposit", {"amount": 5}, stream="a")
    add_projection(log_path, "later", "--init", "0", "--from", "2", "--fold", "s + d.amount")
    synced(log_path, target_url, "later")  # nothing to fold yet: the initial state
    assert table_states(target_url, "later")[1] == {None: {"value": 0}}
    add_projection(log_path, "total", "--init", "0", "--fold", "s + d.amount")
    add_projection(log_path, "counts", "--fold", "s[e.type] = s.get(e.type, 0) + 1")
    with Log(log_path) as log:
        log.append_many(bank_events(300, 10))
    for name in ("later", "total", "counts"):
        synced(log_path, target_url, name)
        assert_fresh(log_path, target_url, name, name)


def test_a_changed_definition_is_rebuilt_and_swapped_in(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append_many(bank_events(500, 20))
    add_projection(log_path, "balances", *BALANCES)
    synced(log_path, target_url)
    add_projection(log_path, "balances", "--replace", "--by", "stream", "--fold", "s.n = s.get('n', 0) + 1")
    report = synced(log_path, target_url)
    assert report.rebuilt
    _, states = table_states(target_url, "balances")
    assert all(set(state) == {"n"} for state in states.values())
    assert_fresh(log_path, target_url)
    assert not synced(log_path, target_url).rebuilt
    forced = synced(log_path, target_url, rebuild=True)
    assert forced.rebuilt and forced.rows_written == len(states)


def test_a_table_evlog_did_not_create_is_refused_and_left_alone(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append("deposit", {"amount": 1}, stream="a")
    add_projection(log_path, "balances", *BALANCES)
    target = open_target(target_url)
    try:
        with target.transaction() as batch:  # made without a checkpoint: as a user's own table
            batch.create_table(TableSpec("balances", Column("key", "text"), (Column("mine", "text"),)))
            batch.upsert("balances", "key", ["mine"], [["k", "keep me"]])
    finally:
        target.close()
    with pytest.raises(ForeignTableError, match="not created by evlog"):
        synced(log_path, target_url)
    result = run_evlog("projection", "sync", "balances", "--into", target_url, log=log_path)
    assert result.returncode == 74
    assert b"'balances'" in result.stderr and b"--table" in result.stderr
    target = open_target(target_url)
    try:
        assert target.read_rows("balances", ["key", "mine"]) == [("k", "keep me")]
    finally:
        target.close()
    synced(log_path, target_url, table="balances_evlog")
    assert_fresh(log_path, target_url, "balances_evlog")


@pytest.mark.parametrize(("data", "words"), [
    ({"square": 2**40}, "64 bits"),
    ({"\x1b[31m": 1}, "cannot be a table or column name"),
    ({"evlog_x": 1}, "cannot be a table or column name"),
    ({"A": 1, "a": 2}, "same column"),
])
def test_a_state_the_database_cannot_hold_is_refused_naming_projection_key_and_seq(
    log_path: str, target_url: str, data: dict[str, Any], words: str
) -> None:
    with Log(log_path) as log:
        log.append("set", {"v": 1}, stream="good")
    # A log holds only 64-bit integers; a fold can make larger ones.
    add_projection(log_path, "values", "--by", "stream", "--fold", "s.update(d)",
                   "--on", "set", "if 'square' in s: s.square = s.square * s.square")
    synced(log_path, target_url, "values")
    with Log(log_path) as log:
        log.append("set", data, stream="bad-one")
    with pytest.raises(TargetValueError, match=words):
        synced(log_path, target_url, "values")
    result = run_evlog("projection", "sync", "values", "--into", target_url, log=log_path)
    assert result.returncode == 65, result.stderr
    message = result.stderr.decode()
    assert "projection 'values'" in message and "seq 2" in message and "stays at seq 1" in message, message
    if "64 bits" in words:
        assert "key 'bad-one'" in message
    assert table_states(target_url, "values") == (1, {"good": {"v": 1}})


def test_a_table_name_that_cannot_be_one_is_a_usage_error(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append("deposit", {"amount": 1}, stream="a")
    add_projection(log_path, "balances", *BALANCES)
    with pytest.raises(UsageError, match="cannot be a table"):
        synced(log_path, target_url, table="evlog_sync")
    result = run_evlog("projection", "sync", "balances", "--into", target_url, "--table", "x" * 60, log=log_path)
    assert result.returncode == 2


def test_a_second_syncer_of_the_table_is_refused_naming_the_holder_or_waits(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append("deposit", {"amount": 1}, stream="a")
    add_projection(log_path, "balances", *BALANCES)
    holder = open_target(target_url)
    try:
        holder.lock("balances", wait=False, holder="pid 4242 on elsewhere: evlog projection sync balances")
        with pytest.raises(SyncBusyError, match="pid 4242 on elsewhere"):
            synced(log_path, target_url)
        result = run_evlog("projection", "sync", "balances", "--into", target_url, log=log_path)
        assert result.returncode == 1
        assert b"pid 4242 on elsewhere" in result.stderr and b"--wait" in result.stderr
        args = ["projection", "sync", "balances", "--into", target_url, "--wait", "--log", log_path]
        waiting = Running(args)
        stopped = Running(args)
        try:
            for process in (waiting, stopped):  # each says once that it waits, and for whom
                wait_for(lambda p=process: b"waiting (--wait)" in p.stderr, "the note that it waits")
                assert b"pid 4242 on elsewhere" in process.stderr
            stopped.proc.send_signal(signal.SIGTERM)
            assert stopped.finish() == 143, stopped.describe()
            assert b"while waiting" in stopped.stderr and b"nothing was written" in stopped.stderr
            assert stopped.received == []
            holder.close()
            report = json.loads(waiting.line())
            assert waiting.finish() == 0, waiting.describe()
        finally:
            waiting.stop()
            stopped.stop()
        assert report["last_seq"] == 1
    finally:
        holder.close()
    another = open_target(target_url)  # locks of other tables are independent
    try:
        another.lock("other", wait=False, holder="me")
        synced(log_path, target_url)
    finally:
        another.close()


def test_follow_puts_a_new_event_in_the_table_and_sigterm_commits_and_exits_143(
    log_path: str, target_url: str
) -> None:
    with Log(log_path) as log:
        log.append("deposit", {"amount": 1}, stream="a")
    add_projection(log_path, "balances", *BALANCES)
    live = Running(["projection", "sync", "balances", "--into", target_url, "-f", "--log", log_path])
    try:
        wait_for(lambda: _seq_of(target_url) == 1, "the catch-up")
        started = time.monotonic()
        with Log(log_path) as log:
            log.append("deposit", {"amount": 41}, stream="a")
        wait_for(lambda: _seq_of(target_url) == 2, "the new event in the table", timeout=20)
        assert time.monotonic() - started < 20
        assert table_states(target_url, "balances")[1]["a"] == {"balance": 42, "deposits": 2}
        live.proc.send_signal(signal.SIGTERM)
        assert live.finish() == 143, live.describe()
        assert b"SIGTERM" in live.stderr and b"seq 2" in live.stderr
        assert b"Traceback" not in live.stderr
        assert json.loads(live.line())["last_seq"] == 2
    finally:
        live.stop()


def test_ctrl_c_commits_what_was_folded_and_exits_130(log_path: str, target_url: str) -> None:
    append(log_path, *bank_events(300, 10))
    add_projection(log_path, "balances", *BALANCES)
    live = Running(["projection", "sync", "balances", "--into", target_url, "-f", "--log", log_path],
                   sigint_default=True)
    try:
        wait_for(lambda: _seq_of(target_url) == 300, "the catch-up")
        live.proc.send_signal(signal.SIGINT)
        assert live.finish() == 130, live.describe()
        assert b"Ctrl-C" in live.stderr and b"Traceback" not in live.stderr
    finally:
        live.stop()
    assert_fresh(log_path, target_url)


def test_a_stop_during_catch_up_commits_what_was_folded_and_the_next_run_goes_on(
    log_path: str, target_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import evlog.sinks.sync

    monkeypatch.setattr(evlog.sinks.sync, "SPAN", 100)  # the fold's spans, where a stop is heard
    with Log(log_path) as log:
        log.append_many(bank_events(1000, 30))
    add_projection(log_path, "balances", *BALANCES)
    polls = iter(range(1_000_000))
    stop = lambda: next(polls) >= 3  # noqa: E731 - the third look after the start: two spans folded
    for rebuild in (False, True):  # the first build, then a rebuild that must swap in a whole table
        report = synced(log_path, target_url, stop=stop, rebuild=rebuild)
        assert (report.stopped, report.last_seq, report.rebuilt) == (True, 300, True)
        assert assert_fresh(log_path, target_url) == 300
        polls = iter(range(1_000_000))
    report = synced(log_path, target_url)
    assert (report.last_seq, report.rebuilt) == (1000, False)
    assert assert_fresh(log_path, target_url) == 1000


def _seq_of(url: str, table: str = "balances") -> int | None:
    target = open_target(url)
    try:
        checkpoint = target.checkpoint(table)
    finally:
        target.close()
    return None if checkpoint is None else checkpoint.last_seq


def test_kill_9_during_catch_up_at_random_moments_then_restart_equals_a_fresh_rebuild(
    log_path: str, target_url: str
) -> None:
    append(log_path, *bank_events(30_000, 400), batch=5000)
    add_projection(log_path, "balances", *BALANCES, "--snapshot-every", "3000")
    rng = random.Random(13)
    args = ["projection", "sync", "balances", "--into", target_url, "--log", log_path]
    # The first run, unkilled, says how long a catch-up takes here; kills then land within it.
    started = time.monotonic()
    first = Running([*args, "--rebuild"])
    assert first.finish() == 0, first.describe()
    span = time.monotonic() - started
    for round_ in range(10):
        if round_ % 3 == 0:  # some rounds rebuild, some catch up on new events
            append(log_path, *bank_events(3000, 400, seed=round_), batch=1000)
        victim = Running([*args, *(["--rebuild"] if round_ % 3 == 1 else [])])
        time.sleep(rng.uniform(0.05, max(span, 0.1)))
        victim.proc.kill()
        victim.finish()
        if _seq_of(target_url) is not None:
            assert_fresh(log_path, target_url)  # whatever was committed is a whole state
    last = Running(args)
    assert last.finish() == 0, last.describe()
    with Log(log_path) as log:
        assert assert_fresh(log_path, target_url) == log.head()


def test_kill_9_during_follow_at_random_moments_then_restart_equals_a_fresh_rebuild(
    log_path: str, target_url: str
) -> None:
    append(log_path, *bank_events(2000, 50))
    add_projection(log_path, "balances", *BALANCES)
    rng = random.Random(5)
    args = ["projection", "sync", "balances", "--into", target_url, "--log", log_path]
    for round_ in range(10):
        live = Running([*args, "-f"])
        try:
            wait_for(lambda: (_seq_of(target_url) or 0) >= 2000, "the catch-up")
            feeder = Running(["append", "--batch", "50", "--log", log_path], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL)
            assert feeder.proc.stdin is not None
            lines = "".join(json.dumps(e) + "\n" for e in bank_events(400, 50, seed=100 + round_)).encode()
            feeder.proc.stdin.write(lines)
            feeder.proc.stdin.close()
            time.sleep(rng.uniform(0.0, 0.6))
            live.proc.kill()
            live.finish()
            assert feeder.finish() == 0, feeder.describe()
            assert_fresh(log_path, target_url)
        finally:
            live.stop()
    final = Running(args)
    assert final.finish() == 0, final.describe()
    with Log(log_path) as log:
        assert assert_fresh(log_path, target_url) == log.head()


def test_status_lists_each_target_with_its_seq_and_lag(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append_many(bank_events(50, 5))
    add_projection(log_path, "balances", *BALANCES)
    synced(log_path, target_url)
    synced(log_path, target_url, table="second")
    with Log(log_path) as log:
        log.append("deposit", {"amount": 1}, stream="a")
    result = run_evlog("projection", "status", "-o", "json", log=log_path)
    assert result.returncode == 0, result.stderr
    found = {row["table"]: row for row in json.loads(result.stdout)}
    assert set(found) == {"balances", "second"}
    assert all((row["last_seq"], row["lag"], row["state"]) == (50, 1, "ok") for row in found.values())
    assert all(row["source"] == "projection balances" and ":secret" not in row["target"] for row in found.values())
    add_projection(log_path, "balances", "--replace", "--by", "stream", "--fold", "s.n = 1")
    result = run_evlog("projection", "status", "-o", "json", log=log_path)
    assert {row["state"] for row in json.loads(result.stdout)} == {"rebuild due"}
