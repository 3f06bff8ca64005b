"""What only the PostgreSQL target does: logins, a server that is away, the advisory lock, what PostgreSQL
cannot store, and what users build on a read model table. Against the session's throwaway cluster.

What every target does (exactly once, kill -9, rebuilds, the lock's refusal and ``--wait``) is the shared
suite, test_sync_targets.py, which runs each test against PostgreSQL too.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import run_evlog
from running import Running
from sinks import BALANCES, add_projection, bank_events, expected_states, table_states

from evlog import Log
from evlog.errors import TargetError, TargetValueError
from evlog.sinks import export_events, sync_projection

TIMEOUT = 60.0


def sync(log_path: str, url: str, name: str = "balances", **options: Any) -> Any:
    with Log(log_path) as log:
        return sync_projection(log, name, url, **options)


def wait_for(condition: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql, args)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def bank(log_path: str) -> str:
    with Log(log_path) as log:
        log.append_many(bank_events(200, 10))
    add_projection(log_path, "balances", *BALANCES)
    return log_path


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    message = result.stderr.decode()
    assert "Traceback" not in message, message
    assert message.count("\n") == 1 and message.startswith("evlog: "), message
    return message


def test_a_wrong_password_is_one_line_exit_74_and_the_password_is_never_shown(
    bank: str, pg_database_url: str
) -> None:
    wrong = pg_database_url.replace(":app-secret@", ":not-the-password@")
    result = run_evlog("projection", "sync", "balances", "--into", wrong, log=bank)
    assert result.returncode == 74
    message = one_line_error(result)
    assert "password authentication failed" in message and "not-the-password" not in message
    assert "app@127.0.0.1" in message
    with pytest.raises(TargetError, match="cannot connect to PostgreSQL"):
        sync(bank, wrong)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_port_where_nothing_listens_fails_at_once_with_exit_74(bank: str) -> None:
    url = f"postgresql://app:secret@127.0.0.1:{free_port()}/shop"
    started = time.monotonic()
    result = run_evlog("projection", "sync", "balances", "--into", url, "-f", log=bank)
    assert result.returncode == 74
    message = one_line_error(result)
    assert "Connection refused" in message and "secret" not in message
    assert time.monotonic() - started < 30  # no retrying, no waiting: the start-up is all of it


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word (a server that hangs, a firewall that swallows)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not done.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_server_that_does_not_answer_fails_within_the_connect_timeout(bank: str, silent_server: int) -> None:
    url = f"postgresql://app@127.0.0.1:{silent_server}/shop?connect_timeout=2"
    started = time.monotonic()
    result = run_evlog("export", "--into", url, log=bank)
    elapsed = time.monotonic() - started
    assert result.returncode == 74
    assert "timeout" in one_line_error(result)
    assert 2 <= elapsed < 30


BLOCK_PSYCOPG = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'psycopg' or name.startswith(('psycopg.', 'psycopg_')):\n"
    "            raise ImportError('No module named ' + repr(name))\n"
    "sys.meta_path.insert(0, Block())\n"
    "from evlog.cli import main\n"
    "sys.argv[0] = 'evlog'\n"
    "main()\n"
)


def test_without_psycopg_a_postgresql_target_names_the_extra_and_sqlite_still_works(
    bank: str, tmp_path: Any
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-c", BLOCK_PSYCOPG, *args, "--log", bank],
                              capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)

    for args in (("projection", "sync", "balances"), ("export",)):
        result = run(*args, "--into", "postgresql://app@127.0.0.1:5432/shop")
        assert result.returncode == 2, result.stderr
        assert "pip install 'evlog-cli[postgres]'" in one_line_error(result)
    result = run("projection", "sync", "balances", "--into", f"sqlite:///{tmp_path / 'read.db'}")
    assert result.returncode == 0, result.stderr


def test_importing_evlog_and_its_sinks_loads_no_database_client() -> None:
    code = ("import sys, evlog, evlog.sinks, evlog.sinks.sync, evlog.sinks.export, evlog.sinks.target\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'psycopg_binary')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"[]"


def test_a_refused_syncer_names_the_running_one_with_its_pid_and_server_process(
    bank: str, pg_database_url: str
) -> None:
    live = Running(["projection", "sync", "balances", "--into", pg_database_url, "-f", "--log", bank])
    try:
        wait_for(lambda: query(pg_database_url, "SELECT to_regclass('evlog_sync') IS NOT NULL")[0][0]
                 and query(pg_database_url, "SELECT last_seq FROM evlog_sync") == [(200,)], "the catch-up")
        names = [name for (name,) in query(pg_database_url, "SELECT application_name FROM pg_stat_activity")]
        assert f"pid {live.proc.pid} on {socket.gethostname()}: evlog projection sync balances"[:63] in names
        result = run_evlog("projection", "sync", "balances", "--into", pg_database_url, log=bank)
        assert result.returncode == 1
        message = one_line_error(result)
        assert f"pid {live.proc.pid}" in message and "server process" in message and "--wait" in message
        export = run_evlog("export", "--into", pg_database_url, log=bank)  # another table: not locked
        assert export.returncode == 0, export.stderr
    finally:
        live.stop()


def test_text_with_nul_is_refused_naming_projection_key_column_and_seq(bank: str, pg_database_url: str) -> None:
    add_projection(bank, "notes", "--by", "stream", "--fold", "s.update(d)")
    sync(bank, pg_database_url, "notes")
    with Log(bank) as log:
        log.append("note", {"text": "fine"}, stream="a")
        log.append("note", {"text": "a\x00b"}, stream="b")
    with pytest.raises(TargetValueError, match="NUL"):
        sync(bank, pg_database_url, "notes")
    result = run_evlog("projection", "sync", "notes", "--into", pg_database_url, log=bank)
    assert result.returncode == 65
    message = one_line_error(result)
    for words in ("projection 'notes'", "key 'b'", "column 'text'", "seqs 201-202", "stays at seq 200"):
        assert words in message, message
    assert table_states(pg_database_url, "notes")[0] == 200


def test_json_with_nul_is_refused_for_a_state_and_for_an_exported_event(bank: str, pg_database_url: str) -> None:
    add_projection(bank, "tags", "--by", "stream", "--on", "tag", "s.tags = s.get('tags', []) + [d.tag]")
    with Log(bank) as log:
        log.append("tag", {"tag": "ok"}, stream="a")
    sync(bank, pg_database_url, "tags")
    export_report = run_evlog("export", "--into", pg_database_url, log=bank)
    assert export_report.returncode == 0
    with Log(bank) as log:
        log.append("tag", {"tag": "\x00"}, stream="a")
    result = run_evlog("projection", "sync", "tags", "--into", pg_database_url, log=bank)
    assert result.returncode == 65
    assert "key 'a'" in one_line_error(result) and "column 'tags'" in result.stderr.decode()
    result = run_evlog("export", "--into", pg_database_url, log=bank)
    assert result.returncode == 65
    message = one_line_error(result)
    assert "seq 202" in message and "column 'data'" in message and "NUL" in message
    with pytest.raises(TargetValueError), Log(bank) as log:
        export_events(log, pg_database_url)
    assert query(pg_database_url, "SELECT max(seq), count(*) FROM events") == [(201, 201)]


def test_a_rebuild_with_the_same_columns_keeps_the_users_views_and_grants(bank: str, pg_database_url: str) -> None:
    sync(bank, pg_database_url)
    query(pg_database_url, "CREATE VIEW overdrawn AS SELECT key FROM balances WHERE balance < 0")
    query(pg_database_url, "GRANT SELECT ON balances TO PUBLIC")
    with Log(bank) as log:
        log.append("withdraw", {"amount": 10_000}, stream="acct-1")
    add_projection(bank, "balances", "--replace", *BALANCES[:-3])  # no closing: the same columns
    assert sync(bank, pg_database_url).rebuilt
    last_seq, states = table_states(pg_database_url, "balances")
    assert states == expected_states(bank, "balances", last_seq)
    overdrawn = sorted((key,) for key, state in states.items() if state["balance"] < 0)
    assert ("acct-1",) in overdrawn
    assert query(pg_database_url, "SELECT * FROM overdrawn ORDER BY key") == overdrawn
    assert query(pg_database_url, "SELECT has_table_privilege('public', 'balances', 'SELECT')") == [(True,)]


def test_a_rebuild_with_other_columns_keeps_grants_and_refuses_to_drop_a_users_view(
    bank: str, pg_database_url: str
) -> None:
    sync(bank, pg_database_url)
    query(pg_database_url, "GRANT SELECT ON balances TO PUBLIC")
    add_projection(bank, "balances", "--replace", "--by", "stream", "--fold", "s.n = s.get('n', 0) + 1")
    assert sync(bank, pg_database_url).rebuilt
    assert query(pg_database_url, "SELECT has_table_privilege('public', 'balances', 'SELECT')") == [(True,)]
    query(pg_database_url, "CREATE VIEW counted AS SELECT key, n FROM balances")
    add_projection(bank, "balances", "--replace", *BALANCES)
    result = run_evlog("projection", "sync", "balances", "--into", pg_database_url, log=bank)
    assert result.returncode == 74
    message = one_line_error(result)
    assert "view counted depends on table balances" in message and "never drops" in message
    assert query(pg_database_url, "SELECT count(*) FROM counted") == [(10,)]
    assert query(pg_database_url, "SELECT last_seq FROM evlog_sync WHERE table_name = 'balances'") == [(200,)]


def test_tables_go_to_the_schema_the_login_creates_in_and_a_same_named_table_elsewhere_is_not_touched(
    bank: str, pg_database_url: str
) -> None:
    query(pg_database_url, "CREATE SCHEMA read")
    query(pg_database_url, "CREATE TABLE public.balances (mine text)")
    url = pg_database_url + "?options=-csearch_path%3Dread"
    report = sync(bank, url)
    assert report.last_seq == 200
    assert query(pg_database_url, "SELECT count(*) FROM read.balances") == [(10,)]
    assert query(pg_database_url, "SELECT count(*) FROM public.balances") == [(0,)]
    assert query(pg_database_url, "SELECT to_regclass('public.evlog_sync')") == [(None,)]
    result = run_evlog("projection", "sync", "balances", "--into", pg_database_url, log=bank)
    assert result.returncode == 74 and "not created by evlog" in one_line_error(result)


def test_two_first_syncs_into_one_database_at_once_both_succeed(log_path: str, pg_database_url: str) -> None:
    with Log(log_path) as log:
        log.append_many(bank_events(100, 5))
    add_projection(log_path, "balances", *BALANCES)
    add_projection(log_path, "counts", "--by", "e.type", "--init", "0", "--fold", "s + 1")
    runs = [Running(["projection", "sync", name, "--into", pg_database_url, "-o", "json", "--log", log_path])
            for name in ("balances", "counts")]
    for run in runs:
        assert run.finish() == 0, run.describe()
        assert json.loads(run.line())[0]["last_seq"] == 100


def test_a_state_key_named_like_a_system_column_is_refused_naming_it(bank: str, pg_database_url: str) -> None:
    add_projection(bank, "profile", "--by", "stream", "--on", "set", "s.update(d)")
    with Log(bank) as log:
        log.append("set", {"name": "a"}, stream="p")
    sync(bank, pg_database_url, "profile")
    with Log(bank) as log:
        log.append("set", {"xmin": 1}, stream="p")
    result = run_evlog("projection", "sync", "profile", "--into", pg_database_url, log=bank)
    assert result.returncode == 65
    message = one_line_error(result)
    assert "'xmin'" in message and "system column" in message and "seq 202" in message
    last_seq, states = table_states(pg_database_url, "profile")
    assert (last_seq, states["p"]) == (201, {"name": "a"})


def test_floats_in_jsonb_read_back_as_floats_however_large(bank: str, pg_database_url: str) -> None:
    values = [3.602879701896397e16, 1e16, -2.5e300, 1.5e-7, 12.0, 7]
    add_projection(bank, "mixed", "--by", "stream", "--on", "set", "s.v = d.v")
    with Log(bank) as log:
        log.append_many([{"type": "set", "stream": f"k{i}", "data": {"v": [value, "text", {"x": value}]}}
                         for i, value in enumerate(values)])
        log.append("set", {"v": ["1e+16", 1e16]}, stream="looks-like-one")
    sync(bank, pg_database_url, "mixed")
    last_seq, states = table_states(pg_database_url, "mixed")
    assert states == expected_states(bank, "mixed", last_seq)
    assert all(type(states[f"k{i}"]["v"][0]) is type(value) for i, value in enumerate(values))
    with Log(bank) as log:
        export_events(log, pg_database_url)
    stored = query(pg_database_url, "SELECT data::text FROM events WHERE seq > 200 ORDER BY seq")[:-1]
    assert [json.loads(text)["v"][0] for (text,) in stored] == values
    assert [type(json.loads(text)["v"][2]["x"]) for (text,) in stored] == [type(value) for value in values]
