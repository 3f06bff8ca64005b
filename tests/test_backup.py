"""`evlog backup`: a consistent copy while others append, that verifies, and never overwrites."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest
from conftest import run_evlog

from evlog import Log
from evlog.backup import backup
from evlog.errors import UsageError
from evlog.record import HASH_SIZE, seq_key


def _fill(path: str, count: int) -> None:
    with Log(path) as log:
        log.append_many(
            (
                {"type": "deposit", "stream": f"account-{n % 50}", "id": f"d-{n}", "data": {"n": n}}
                for n in range(count)
            ),
            batch_size=100,
        )


def _rows(path: str, until: int | None = None) -> list[tuple[object, ...]]:
    with Log(path) as log:
        return [
            (seq, ts, version, etype, stream, id_, meta, data)
            for seq, (_, ts, version, etype, stream, id_, meta, data) in log.rows(until=until)
        ]


def _stored_hash(path: str, seq: int) -> str:
    env = lmdb.open(path, max_dbs=16, lib_version=0, readonly=True)
    try:
        with env.begin() as txn:
            value = txn.get(seq_key(seq), db=env.open_db(b"events", txn=txn, create=False))
            return bytes(value[-HASH_SIZE:]).hex()
    finally:
        env.close()


def test_backup_copies_a_log_that_verifies(log_path: str, tmp_path: Path) -> None:
    _fill(log_path, 500)
    dest = str(tmp_path / "copy")
    result = run_evlog("backup", dest, log=log_path)
    assert result.returncode == 0, result.stderr
    head = json.loads(run_evlog("info", "-o", "json", log=log_path).stdout)["head_hash"]
    assert result.stdout.decode() == f"500 events copied to {dest}; head hash {head}\n"
    verified = run_evlog("verify", log=dest)
    assert verified.returncode == 0, verified.stdout
    assert _rows(dest) == _rows(log_path)
    copy_info = json.loads(run_evlog("info", "-o", "json", log=dest).stdout)
    source_info = json.loads(run_evlog("info", "-o", "json", log=log_path).stdout)
    assert copy_info["log_id"] == source_info["log_id"] and copy_info["types"] == source_info["types"]


def _database_entries(path: str) -> dict[bytes, list[tuple[bytes, bytes]]]:
    env = lmdb.open(path, max_dbs=16, lib_version=0, readonly=True)
    try:
        with env.begin() as txn:
            names = [bytes(name) for name, _ in txn.cursor()]
            return {name: list(txn.cursor(db=env.open_db(name, txn=txn, create=False))) for name in names}
    finally:
        env.close()


def test_compact_backup_of_a_large_log_copies_every_entry(log_path: str, tmp_path: Path) -> None:
    # LMDB's own compacting copy crashed (SIGSEGV) on a log of this size with its stream index.
    with Log(log_path) as log:
        log.append_many(
            ({"type": "deposit", "stream": f"account-{n % 1000}", "data": {"n": n}} for n in range(300_000)),
            batch_size=10_000,
        )
    dest = str(tmp_path / "small")
    result = run_evlog("backup", "--compact", "-o", "json", dest, log=log_path, timeout=120)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["events"] == 300_000 and facts["compact"] is True
    assert _database_entries(dest) == _database_entries(log_path)  # the same log, entry for entry
    assert os.path.getsize(os.path.join(dest, "data.mdb")) < os.path.getsize(os.path.join(log_path, "data.mdb"))
    assert run_evlog("verify", log=dest, timeout=120).returncode == 0


def test_backup_json(log_path: str, tmp_path: Path) -> None:
    _fill(log_path, 10)
    result = run_evlog("backup", str(tmp_path / "copy"), "-o", "json", log=log_path)
    facts = json.loads(result.stdout)
    assert facts["events"] == 10 and facts["last_seq"] == 10 and facts["compact"] is False
    assert facts["path"] == str(tmp_path / "copy")


def test_backup_while_another_process_appends(log_path: str, tmp_path: Path) -> None:
    _fill(log_path, 1)
    lines = "".join(
        json.dumps({"type": "deposit", "stream": f"account-{n % 1000}", "data": {"n": n, "note": "x" * 40}}) + "\n"
        for n in range(200_000)
    ).encode()
    feed = tmp_path / "events.ndjson"
    feed.write_bytes(lines)
    with feed.open("rb") as source:
        appender = subprocess.Popen(
            [sys.executable, "-m", "evlog", "append", "--batch", "2000", "--log", log_path],
            stdin=source,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            with Log(log_path) as log:
                while log.head() < 20_000 and appender.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
            plain = run_evlog("backup", str(tmp_path / "plain"), "-o", "json", log=log_path)
            compact = run_evlog("backup", str(tmp_path / "compact"), "--compact", "-o", "json", log=log_path)
        finally:
            appender.wait(timeout=120)
    assert appender.returncode == 0, appender.stderr
    assert plain.returncode == 0 and compact.returncode == 0, (plain.stderr, compact.stderr)
    for name, result in (("plain", plain), ("compact", compact)):
        dest = str(tmp_path / name)
        facts = json.loads(result.stdout)
        verified = run_evlog("verify", log=dest)
        assert verified.returncode == 0, (name, verified.stdout[:500], verified.stderr)
        # The copy is the source as of one commit: exactly a prefix of its events.
        copied = _rows(dest)
        assert len(copied) == facts["events"] >= 20_000
        assert copied == _rows(log_path, until=len(copied))
        assert facts["head_hash"] == _stored_hash(log_path, len(copied))
    assert _rows(log_path)[-1][0] == 200_001


def test_backup_into_an_empty_directory(log_path: str, tmp_path: Path) -> None:
    _fill(log_path, 3)
    dest = tmp_path / "empty"
    dest.mkdir()
    assert run_evlog("backup", str(dest), log=log_path).returncode == 0
    assert run_evlog("verify", log=str(dest)).returncode == 0


@pytest.mark.parametrize("kind", ["non-empty directory", "file", "existing log"])
def test_backup_never_overwrites(log_path: str, tmp_path: Path, kind: str) -> None:
    _fill(log_path, 3)
    dest = tmp_path / "dest"
    if kind == "file":
        dest.write_text("keep me")
    elif kind == "non-empty directory":
        dest.mkdir()
        (dest / "notes.txt").write_text("keep me")
    else:
        _fill(str(dest), 7)
    before = {path.name: path.read_bytes() for path in ([dest] if dest.is_file() else dest.iterdir())}
    result = run_evlog("backup", str(dest), log=log_path)
    assert result.returncode == 2
    assert result.stdout == b""
    message = result.stderr.decode()
    assert message.startswith("evlog: ") and str(dest) in message
    assert "not empty" in message or "not a directory" in message
    after = {path.name: path.read_bytes() for path in ([dest] if dest.is_file() else dest.iterdir())}
    assert after == before


def test_backup_of_a_missing_log_creates_nothing(log_path: str, tmp_path: Path) -> None:
    dest = tmp_path / "copy"
    result = run_evlog("backup", str(dest), log=log_path)
    assert result.returncode == 66
    assert not dest.exists() and not os.path.exists(log_path)


def test_backup_needs_an_existing_parent(log_path: str, tmp_path: Path) -> None:
    _fill(log_path, 1)
    result = run_evlog("backup", str(tmp_path / "no" / "such" / "dir"), log=log_path)
    assert result.returncode == 2 and b"does not exist" in result.stderr


def test_library_backup(log_path: str, tmp_path: Path) -> None:
    _fill(log_path, 20)
    with Log(log_path) as log:
        facts = backup(log, tmp_path / "copy", compact=True)
        assert facts["events"] == 20 and facts["head_hash"] == log.info()["head_hash"]
        with pytest.raises(UsageError):
            backup(log, tmp_path / "copy")
