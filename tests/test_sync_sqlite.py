"""What the SQLite target adds to the suite every target passes (tests/test_sync_targets.py).

URLs and files, readers that keep reading while a sync writes (WAL), a user's
view that survives a rebuild, the column types SQLite declares, and the lock
file that names the syncer at work.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_evlog
from running import Running, clean_env
from sinks import BALANCES, add_projection, bank_events

from evlog import Log
from evlog.sinks import sync_projection


@pytest.fixture
def bank(log_path: str) -> str:
    with Log(log_path) as log:
        log.append_many(bank_events(200, 10))
    add_projection(log_path, "balances", *BALANCES)
    return log_path


def test_a_relative_url_is_a_file_in_the_working_directory_and_an_absolute_one_is_absolute(
    bank: str, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    command = [sys.executable, "-m", "evlog", "projection", "sync", "balances", "--log", bank, "-o", "json"]
    relative = subprocess.run([*command, "--into", "sqlite:///read.db"], cwd=work, capture_output=True,
                              env=clean_env(), timeout=60)
    assert relative.returncode == 0, relative.stderr
    assert json.loads(relative.stdout)[0]["target"] == "sqlite:///read.db"
    assert (work / "read.db").is_file()
    absolute = run_evlog("projection", "sync", "balances", "--into", f"sqlite:///{tmp_path / 'abs.db'}", log=bank)
    assert absolute.returncode == 0, absolute.stderr
    assert (tmp_path / "abs.db").is_file()


@pytest.mark.parametrize("url", ["sqlite://host/read.db", "sqlite:///", "sqlite:read.db", "mysql://x/y", "read.db"])
def test_a_url_evlog_cannot_use_is_a_usage_error(bank: str, url: str) -> None:
    result = run_evlog("projection", "sync", "balances", "--into", url, log=bank)
    assert result.returncode == 2
    assert b"sqlite:///" in result.stderr and b"Traceback" not in result.stderr


def test_a_database_that_cannot_be_opened_is_exit_74(bank: str, tmp_path: Path) -> None:
    result = run_evlog("projection", "sync", "balances", "--into", f"sqlite:///{tmp_path / 'no' / 'read.db'}", log=bank)
    assert result.returncode == 74
    assert b"cannot open the SQLite database" in result.stderr and b"directory exists" in result.stderr


def test_columns_get_sqlite_types_and_json_is_text_sqlite_can_query(log_path: str, tmp_path: Path) -> None:
    with Log(log_path) as log:
        log.append("set", {"n": 1, "ok": True, "name": "x", "tags": ["a", "b"], "ratio": 0.5, "five": "5"},
                   stream="p1")
    add_projection(log_path, "profile", "--by", "stream", "--fold", "s.update(d)")
    db = tmp_path / "read.db"
    with Log(log_path) as log:
        sync_projection(log, "profile", f"sqlite:///{db}")
    connection = sqlite3.connect(db)
    try:
        declared = {row[1]: row[2] for row in connection.execute("PRAGMA table_info(profile)")}
        assert declared == {"key": "TEXT", "n": "INTEGER", "ok": "BOOLEAN", "name": "TEXT", "tags": "TEXT",
                            "ratio": "REAL", "five": "TEXT"}
        query = "SELECT n, ok, json_extract(tags, '$[1]'), ratio, typeof(five) FROM profile"
        row = connection.execute(query).fetchone()
        assert row == (1, 1, "b", 0.5, "text")
    finally:
        connection.close()


def test_a_reader_keeps_its_view_while_a_sync_commits(bank: str, tmp_path: Path) -> None:
    db = tmp_path / "read.db"
    url = f"sqlite:///{db}"
    with Log(bank) as log:
        sync_projection(log, "balances", url)
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        reader.execute("BEGIN")
        before = reader.execute("SELECT count(*), sum(balance) FROM balances").fetchone()
        with Log(bank) as log:
            log.append("deposit", {"amount": 1000}, stream="new-account")
            report = sync_projection(log, "balances", url)  # WAL: the open read does not block it
        assert report.rows_written == 1
        assert reader.execute("SELECT count(*), sum(balance) FROM balances").fetchone() == before
        reader.execute("COMMIT")
        after = reader.execute("SELECT count(*), sum(balance) FROM balances").fetchone()
        assert after == (before[0] + 1, before[1] + 1000)
    finally:
        reader.close()


def test_a_users_view_over_the_table_survives_a_rebuild(bank: str, tmp_path: Path) -> None:
    db = tmp_path / "read.db"
    url = f"sqlite:///{db}"
    with Log(bank) as log:
        sync_projection(log, "balances", url)
    connection = sqlite3.connect(db, isolation_level=None)
    try:
        connection.execute("CREATE VIEW overdrawn AS SELECT key FROM balances WHERE balance < 0")
        with Log(bank) as log:
            assert sync_projection(log, "balances", url, rebuild=True).rebuilt
        expected = connection.execute("SELECT key FROM balances WHERE balance < 0 ORDER BY key").fetchall()
        assert connection.execute("SELECT key FROM overdrawn ORDER BY key").fetchall() == expected
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"balances", "evlog_sync"}  # no build table left behind
    finally:
        connection.close()


def test_the_lock_is_a_file_beside_the_database_that_names_its_holder_and_dies_with_it(
    bank: str, tmp_path: Path
) -> None:
    db = tmp_path / "read.db"
    live = Running(["projection", "sync", "balances", "--into", f"sqlite:///{db}", "-f", "--log", bank])
    try:
        lock = Path(f"{db}-evlog-balances.lock")
        assert _wait_for(lambda: lock.exists() and b"pid" in lock.read_bytes())
        assert f"pid {live.proc.pid} ".encode() in lock.read_bytes()
        busy = run_evlog("projection", "sync", "balances", "--into", f"sqlite:///{db}", log=bank)
        assert busy.returncode == 1
        assert f"pid {live.proc.pid} on".encode() in busy.stderr
        live.proc.send_signal(signal.SIGKILL)
        live.finish()
    finally:
        live.stop()
    after = run_evlog("projection", "sync", "balances", "--into", f"sqlite:///{db}", log=bank)
    assert after.returncode == 0, after.stderr


def test_sync_reads_a_log_it_cannot_write(bank: str, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes whatever the modes say")
    db = tmp_path / "read.db"
    os.chmod(bank, 0o500)
    try:
        result = run_evlog("projection", "sync", "balances", "--into", f"sqlite:///{db}", log=bank)
    finally:
        os.chmod(bank, 0o700)
    assert result.returncode == 0, result.stderr
    assert b"not recorded in the log" in result.stderr


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_damaged_record_of_a_target_is_damage_not_a_traceback(bank: str, tmp_path: Path) -> None:
    import lmdb

    with Log(bank) as log:
        sync_projection(log, "balances", f"sqlite:///{tmp_path / 'read.db'}")
    env = lmdb.open(bank, subdir=True, max_dbs=8, lib_version=0)
    try:
        with env.begin(write=True) as txn:  # a crafted entry, as a log from someone else may hold
            txn.put(b"sync-target:\xc1", b"\xc1", db=env.open_db(b"meta", txn=txn))
    finally:
        env.close()
    result = run_evlog("projection", "status", log=bank)
    assert result.returncode == 74
    assert b"damaged log" in result.stderr and b"Traceback" not in result.stderr
