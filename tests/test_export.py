"""``evlog export``: the events in a table, one row each, exactly once, on every target (``target_url``)."""

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
from sinks import bank_events, decode, target_url

from evlog import Log
from evlog.errors import ForeignTableError
from evlog.sinks import export_events
from evlog.sinks.export import EVENT_COLUMNS
from evlog.sinks.target import Column, TableSpec, open_target

__all__ = ["target_url"]

NAMES = ["seq"] + [column.name for column in EVENT_COLUMNS]
KINDS = ["integer"] + [column.type for column in EVENT_COLUMNS]


def exported(url: str, table: str = "events") -> tuple[int, list[dict[str, Any]]]:
    """The table's checkpoint seq and its rows as the events evlog prints (JSON decoded)."""
    target = open_target(url, create=False)
    try:
        checkpoint = target.checkpoint(table)
        assert checkpoint is not None
        rows = target.read_rows(table, NAMES)
    finally:
        target.close()
    return checkpoint.last_seq, [{n: decode(v, k) for n, v, k in zip(NAMES, row, KINDS, strict=True)} for row in rows]


def replayed(log_path: str, *filters: str, until: int | None = None) -> list[dict[str, Any]]:
    args = ["replay", "-o", "ndjson", *filters] + (["--until", str(until)] if until is not None else [])
    if until == 0:
        return []
    result = run_evlog(*args, log=log_path)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_event_is_a_row_as_replay_prints_it(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append("note", {"text": "héllo", "n": [1, {"x": None}]}, stream="s-1", meta={"user": "ann"}, id="k1")
        log.append("note", 7)
        log.append_many(bank_events(500, 9))
        report = export_events(log, target_url)
    assert (report.last_seq, report.rows_written, report.rebuilt) == (502, 502, True)
    assert exported(target_url) == (502, replayed(log_path))
    with Log(log_path) as log:
        log.append("deposit", {"amount": 1}, stream="acct-1")
        report = export_events(log, target_url)
    assert (report.last_seq, report.rows_written, report.rebuilt) == (503, 1, False)
    assert exported(target_url) == (503, replayed(log_path))


def test_filters_choose_the_events_and_other_filters_rebuild_the_table(log_path: str, target_url: str) -> None:
    append(log_path, *bank_events(400, 6))
    result = run_evlog("export", "--into", target_url, "-t", "deposit", "-s", "acct-[12]", "--where", "d.amount > 100",
                       "--table", "big_deposits", "-o", "json", log=log_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["last_seq"] == 400
    _, rows = exported(target_url, "big_deposits")
    assert rows == replayed(log_path, "-t", "deposit", "-s", "acct-[12]", "--where", "d.amount > 100")
    assert rows and all(row["type"] == "deposit" and row["data"]["amount"] > 100 for row in rows)
    result = run_evlog("export", "--into", target_url, "-t", "withdraw", "--table", "big_deposits", "-o", "json",
                       log=log_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["rebuilt"] is True
    assert exported(target_url, "big_deposits")[1] == replayed(log_path, "-t", "withdraw")


def test_a_table_evlog_did_not_create_is_refused(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append("deposit", {"amount": 1})
    target = open_target(target_url)
    try:
        with target.transaction() as batch:
            batch.create_table(TableSpec("events", Column("seq", "integer")))
    finally:
        target.close()
    with Log(log_path) as log, pytest.raises(ForeignTableError):
        export_events(log, target_url)
    assert run_evlog("export", "--into", target_url, log=log_path).returncode == 74


def test_follow_exports_new_events_and_sigterm_exits_143(log_path: str, target_url: str) -> None:
    with Log(log_path) as log:
        log.append("deposit", {"amount": 1})
    live = Running(["export", "--into", target_url, "-f", "--log", log_path])
    try:
        _wait(lambda: _seq_of(target_url) == 1)
        with Log(log_path) as log:
            log.append("deposit", {"amount": 2}, stream="x")
        _wait(lambda: _seq_of(target_url) == 2, timeout=20)
        live.proc.send_signal(signal.SIGTERM)
        assert live.finish() == 143, live.describe()
        assert b"Traceback" not in live.stderr
    finally:
        live.stop()
    assert exported(target_url) == (2, replayed(log_path))


def test_kill_9_at_random_moments_then_restart_equals_a_fresh_export(log_path: str, target_url: str) -> None:
    append(log_path, *bank_events(40_000, 50), batch=10_000)
    rng = random.Random(3)
    args = ["export", "--into", target_url, "--log", log_path]
    for round_ in range(10):
        victim = Running([*args, "-f"]) if round_ % 2 else Running(args + (["--rebuild"] if round_ % 4 == 0 else []))
        feeder = None
        if round_ % 2:
            feeder = Running(["append", "--batch", "100", "--log", log_path], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL)
            assert feeder.proc.stdin is not None
            feeder.proc.stdin.write("".join(json.dumps(e) + "\n" for e in bank_events(500, 50, seed=round_)).encode())
            feeder.proc.stdin.close()
        time.sleep(rng.uniform(0.1, 1.2))
        victim.proc.kill()
        victim.finish()
        if feeder is not None:
            assert feeder.finish() == 0, feeder.describe()
        if _seq_of(target_url) is not None:
            last_seq, rows = exported(target_url)
            assert rows == replayed(log_path, until=last_seq)  # each event once, none past the checkpoint
    final = Running(args)
    assert final.finish() == 0, final.describe()
    with Log(log_path) as log:
        assert exported(target_url) == (log.head(), replayed(log_path))


def _seq_of(url: str, table: str = "events") -> int | None:
    target = open_target(url)
    try:
        checkpoint = target.checkpoint(table)
    finally:
        target.close()
    return None if checkpoint is None else checkpoint.last_seq


def _wait(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
