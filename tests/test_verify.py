"""`evlog verify` and `evlog.verify`: a sound log passes, and each kind of damage is named by its seq.

Damage is done the way a stray program or a disk would do it: through lmdb
directly, on the databases of a log no evlog process has open.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lmdb
import pytest
from conftest import run_evlog

from evlog import Log
from evlog.backends.lmdb.store import Store
from evlog.record import HASH_SIZE, seq_key
from evlog.verify import Finding, verify

STREAMS = 25


def _events(count: int, start: int = 0) -> list[dict[str, Any]]:
    """Events over STREAMS streams, every third with an id, every seventh without a stream."""
    events: list[dict[str, Any]] = []
    for n in range(start, start + count):
        event: dict[str, Any] = {"type": ("deposit", "withdraw", "note")[n % 3], "data": {"n": n, "text": "abcdef"}}
        if n % 7:
            event["stream"] = f"account-{n % STREAMS}"
        if n % 3 == 0:
            event["id"] = f"op-{n}"
        events.append(event)
    return events


@pytest.fixture
def filled(log_path: str) -> str:
    """A log of 1,000 events written in several batches."""
    with Log(log_path) as log:
        log.append_many(_events(600), batch_size=128)
        log.append("opened", {"by": "ada"}, stream="account-new", id="open-1")
        log.append_many(_events(399, start=600), batch_size=50)
    return log_path


@contextmanager
def _damage(path: str) -> Iterator[tuple[Any, dict[bytes, Any]]]:
    """A write transaction on the log's databases, outside evlog."""
    env = lmdb.open(path, max_dbs=16, lib_version=0)
    try:
        with env.begin(write=True) as txn:
            names = (b"events", b"streams", b"ids", b"types", b"meta")
            yield txn, {name: env.open_db(name, txn=txn, create=False) for name in names}
    finally:
        env.close()


def _record(path: str, seq: int) -> bytes:
    with _damage(path) as (txn, dbs):
        return bytes(txn.get(seq_key(seq), db=dbs[b"events"]))


def _rewrite(path: str, seq: int, change: Callable[[bytes], bytes]) -> None:
    with _damage(path) as (txn, dbs):
        value = bytes(txn.get(seq_key(seq), db=dbs[b"events"]))
        txn.put(seq_key(seq), change(value), db=dbs[b"events"])


def _verify(path: str, *args: str) -> tuple[int, list[str], str]:
    result = run_evlog("verify", *args, log=path)
    return result.returncode, result.stdout.decode().splitlines(), result.stderr.decode()


def _head_hash(path: str) -> str:
    head: str = json.loads(run_evlog("info", "-o", "json", log=path).stdout)["head_hash"]
    return head


def test_a_sound_log_verifies(filled: str) -> None:
    code, lines, err = _verify(filled)
    assert code == 0, lines
    assert lines == []
    assert "ok: 1,000 events (seq 1-1000) verified" in err
    assert _head_hash(filled) in err


def test_json_summary(filled: str) -> None:
    result = run_evlog("verify", "-o", "json", log=filled)
    assert result.returncode == 0
    summary = json.loads(result.stdout)
    assert summary["ok"] is True and summary["findings"] == [] and summary["problems"] == 0
    assert summary["events"] == 1000 and (summary["first_seq"], summary["last_seq"]) == (1, 1000)
    assert summary["head_hash"] == summary["stored_head_hash"] == _head_hash(filled)


def test_an_empty_log_verifies(log_path: str) -> None:
    Store(log_path, create=True).close()
    code, lines, err = _verify(log_path)
    assert (code, lines) == (0, [])
    assert "ok: the log is empty" in err and _head_hash(log_path) in err


@pytest.mark.parametrize("output", ["auto", "json"])
def test_a_missing_log_is_not_created(log_path: str, output: str) -> None:
    result = run_evlog("verify", "-o", output, log=log_path)
    assert result.returncode == 66
    assert result.stdout == b""  # not the start of a JSON document
    assert not os.path.exists(log_path)


def test_the_library_reports_as_it_goes(filled: str) -> None:
    with Log(filled) as log:
        run = verify(log)
        assert list(run) == []
        assert run.ok and run.events == 1000 and run.head_hash == log.info()["head_hash"]


def test_verify_passes_while_other_processes_append(filled: str) -> None:
    lines = "".join(json.dumps(event) + "\n" for event in _events(20_000, start=1000))
    appender = subprocess.Popen(
        [sys.executable, "-m", "evlog", "append", "--batch", "500", "--log", filled],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        assert appender.stdin is not None
        appender.stdin.write(lines.encode())
        appender.stdin.close()
        runs = 0
        while appender.poll() is None or runs < 2:
            code, found, err = _verify(filled)
            assert code == 0, (found[:5], err)
            runs += 1
    finally:
        appender.wait(timeout=60)
    assert appender.returncode == 0
    assert _verify(filled)[0] == 0


def test_an_edited_record_is_named_by_its_seq(filled: str) -> None:
    published = _head_hash(filled)
    # One character of the data ("abcdef" -> "abcdeg"): still a valid record.
    record = _record(filled, 500)
    body = record[:-HASH_SIZE]
    assert body.endswith(b"abcdef")
    _rewrite(filled, 500, lambda value: body[:-1] + b"g" + value[-HASH_SIZE:])
    with Log(filled) as log:
        assert next(log.read(from_=500)).data["text"] == "abcdeg"  # evlog itself reads it as it is
    code, lines, err = _verify(filled)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("seq 500: does not match its hash"), lines
    assert "1 problem in 1,000 events" in err
    # The head stored is unchanged; the head recomputed from genesis is not.
    summary = json.loads(run_evlog("verify", "-o", "json", log=filled).stdout)
    assert summary["stored_head_hash"] == published != summary["head_hash"]
    assert summary["findings"] == [{"seq": 500, "problem": lines[0].split(": ", 1)[1]}]


def test_an_edited_hash_is_one_finding(filled: str) -> None:
    _rewrite(filled, 321, lambda value: value[:-1] + bytes([value[-1] ^ 1]))
    code, lines, _ = _verify(filled)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("seq 321: does not match its hash"), lines


def test_deleting_the_last_record_changes_the_head_hash(filled: str) -> None:
    published = _head_hash(filled)
    with _damage(filled) as (txn, dbs):
        assert txn.delete(seq_key(1000), db=dbs[b"events"])
    assert _head_hash(filled) != published
    code, lines, _ = _verify(filled)
    # The chain up to the new head is intact; only the indexes betray the loss.
    assert not any("hash" in line for line in lines), lines
    assert code == 1 and "seq 1000: is in the streams index but past the last event (seq 999)" in lines


def test_a_gap_is_named(filled: str) -> None:
    with _damage(filled) as (txn, dbs):
        assert txn.delete(seq_key(700), db=dbs[b"events"])
    code, lines, _ = _verify(filled)
    assert code == 1
    assert "seq 700: is missing: the log has a gap here" in lines


def test_a_missing_ids_entry_is_named(filled: str) -> None:
    with Log(filled) as log:
        event = next(log.read(from_=301))
    assert event.id == "op-300"
    with _damage(filled) as (txn, dbs):
        assert txn.delete(b"op-300", db=dbs[b"ids"])
    code, lines, _ = _verify(filled)
    assert code == 1
    assert lines == ["seq 301: has id 'op-300', which is missing from the ids index"]


def test_a_wrong_ids_entry_is_named(filled: str) -> None:
    with _damage(filled) as (txn, dbs):
        txn.put(b"op-300", seq_key(302), db=dbs[b"ids"])
    code, lines, _ = _verify(filled)
    assert code == 1
    assert "seq 302: is in the ids index as 'op-300' but its id is None" in lines
    assert "seq 301: has id 'op-300', which the ids index gives 302" in lines


def test_a_missing_streams_entry_is_named(filled: str) -> None:
    with Log(filled) as log:
        event = next(log.read(from_=401))
    assert event.stream is not None
    with _damage(filled) as (txn, dbs):
        assert txn.delete(event.stream.encode(), seq_key(401), db=dbs[b"streams"])
    code, lines, _ = _verify(filled)
    assert code == 1
    assert f"seq 401: is an event of {event.stream!r} missing from the streams index" in lines
    # The stream's later entries are one place off: said once, not once per event.
    assert sum("as version" in line for line in lines) <= 1, lines


def test_a_wrong_version_is_named(filled: str) -> None:
    record = _record(filled, 450)
    assert record[11] == 0xCF  # [fixarray, format, uint64 ts, uint64 version, ...]
    version = int.from_bytes(record[12:20], "big")
    _rewrite(filled, 450, lambda value: value[:12] + (version + 5).to_bytes(8, "big") + value[20:])
    code, lines, _ = _verify(filled)
    assert code == 1
    assert (
        f"seq 450: is version {version + 5} of 'account-{449 % STREAMS}', but it is event {version} of that stream"
        in lines
    )


def test_an_unknown_record_format_is_named(filled: str) -> None:
    _rewrite(filled, 250, lambda value: value[:1] + b"\x07" + value[2:])
    code, lines, _ = _verify(filled)
    assert code == 1
    assert "seq 250: has record format 7; this evlog knows format 1" in lines


def test_garbage_is_a_finding_not_a_crash(filled: str) -> None:
    _rewrite(filled, 10, lambda value: b"\xc1" * len(value))
    code, lines, _ = _verify(filled)
    assert code == 1
    assert any(line.startswith("seq 10: cannot be decoded") for line in lines), lines


def test_counts_are_checked_from_seq_1(filled: str) -> None:
    with _damage(filled) as (txn, dbs):
        txn.put(b"note", (1).to_bytes(8, "big"), db=dbs[b"types"])
        txn.put(b"streams", (3).to_bytes(8, "big"), db=dbs[b"meta"])
    code, lines, _ = _verify(filled)
    assert code == 1
    assert any(line.startswith("log: the types index counts 1 events of type 'note'") for line in lines), lines
    assert f"log: the meta streams count is 3, the log holds {STREAMS + 1} streams" in lines
    assert _verify(filled, "--from", "2")[0] == 0  # not from seq 1: not checked


def test_from_checks_the_rest_only(filled: str) -> None:
    _rewrite(filled, 500, lambda value: value[: -HASH_SIZE - 1] + b"g" + value[-HASH_SIZE:])
    assert _verify(filled, "--from", "501")[0] == 0
    code, lines, err = _verify(filled, "--from", "-501")
    assert code == 1 and lines[0].startswith("seq 500:"), lines
    assert "in 501 events (seq 500-1000)" in err
    code, lines, err = _verify(filled, "--from", "id:op-600")  # seq 602: after the "opened" event
    assert code == 0 and "ok: 399 events (seq 602-1000) verified" in err
    result = run_evlog("verify", "--from", "-10", "-o", "json", log=filled)
    assert json.loads(result.stdout)["events"] == 10
    assert run_evlog("verify", "--from", "no-such-position", log=filled).returncode == 2


def test_from_checks_versions_against_the_index(filled: str) -> None:
    with Log(filled) as log:
        event = next(log.read(from_=801))
    assert event.stream is not None
    with _damage(filled) as (txn, dbs):
        assert txn.delete(event.stream.encode(), seq_key(801), db=dbs[b"streams"])
    code, lines, _ = _verify(filled, "--from", "790")
    assert code == 1
    assert f"seq 801: is an event of {event.stream!r} missing from the streams index" in lines


def test_findings_print_as_lines() -> None:
    assert str(Finding(12, "is missing")) == "seq 12: is missing"
    assert str(Finding(None, "the meta streams count is 3")) == "log: the meta streams count is 3"


def test_an_index_entry_under_the_wrong_stream_is_named(filled: str) -> None:
    with Log(filled) as log:
        event = next(log.read(from_=402))
    assert event.stream is not None and event.stream != "account-0"
    with _damage(filled) as (txn, dbs):
        assert txn.put(b"account-0", seq_key(402), db=dbs[b"streams"], dupdata=True)
    code, lines, _ = _verify(filled)
    assert code == 1
    assert f"seq 402: is in the streams index under 'account-0' but its stream is {event.stream!r}" in lines


def test_progress_is_reported_per_chunk(log_path: str) -> None:
    with Log(log_path) as log:
        log.append_many(_events(5000), batch_size=1000)
        calls: list[tuple[int, int]] = []
        run = verify(log, progress=lambda done, total: calls.append((done, total)))
        assert list(run) == []
    assert calls[-1] == (5000, 5000) and len(calls) >= 2
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_a_closed_pipe_after_a_finding_is_still_a_failure(log_path: str) -> None:
    with Log(log_path) as log:
        log.append_many(_events(3000), batch_size=1000)
    with _damage(log_path) as (txn, dbs):
        for seq in range(1, 3001):  # every stored hash: ~450 KB of findings, more than a pipe holds
            value = bytes(txn.get(seq_key(seq), db=dbs[b"events"]))
            txn.put(seq_key(seq), value[:-1] + bytes([value[-1] ^ 1]), db=dbs[b"events"])
    process = subprocess.Popen(
        [sys.executable, "-m", "evlog", "verify", "--log", log_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"seq 1: does not match its hash")
    process.stdout.close()  # like `evlog verify | head -1`
    assert process.wait(timeout=60) == 1
    assert b"Traceback" not in process.stderr.read()


def test_keys_that_are_no_seqs_are_named(filled: str) -> None:
    with _damage(filled) as (txn, dbs):
        txn.put(seq_key(0), b"x" * 40, db=dbs[b"events"])
        txn.put(seq_key(5) + b"!", b"junk", db=dbs[b"events"])
        txn.put(b"\xff" * 9, b"junk", db=dbs[b"events"])
    code, lines, _ = _verify(filled)
    assert code == 1
    assert "seq 0: is a key in the events, but seqs start at 1" in lines
    assert f"log: the events database has a key that is not a seq: {(seq_key(5) + b'!').hex()}" in lines
    assert f"log: the events database has a key that is not a seq: {'ff' * 9}" in lines
