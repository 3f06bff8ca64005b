"""Snapshots and projections from a log's author: used only when they can be checked, limited by the reader.

A log may come from someone else, with its snapshots and stored projections.
Here an attacker writes them with ``lmdb`` and ``msgpack`` directly, and the
real ``evlog`` command is run on the result:

* A forged snapshot (the right key, the right chain hash, the definition it
  claims, a wrong state) does change an answer: only recomputing can tell it
  from a sound one, and ``verify --snapshots`` does, naming its hash and seq;
  ``snapshot drop`` removes it. A snapshot whose chain hash is not the log's
  record at its seq (made on another history) is never used; nor is one of the
  old form, without a chain hash. Malformed entries are passed over when a
  fold looks for a snapshot, listed with their problem, named by verify, and
  dropped like any other.
* A stored projection cannot make the reader save snapshots more often than
  the reader's ``--snapshot-every``, nor larger than ``--snapshot-max-size``,
  nor at all in a log the reader cannot write; ``projection list`` shows all
  of its code, escaped. A malformed stored projection is exit 74 and one line
  naming it.
* A property: snapshots that evlog saved while folding are always confirmed
  by the recomputation (no false alarms).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest
from conftest import run_evlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evlog import Log, runner, snapshots
from evlog.fold import FoldSpec
from evlog.record import seq_key
from evlog.runner import run_fold
from evlog.snapshot_check import check_snapshots

COUNT = FoldSpec(init=0, clauses=((None, "s + d.n"),))
COUNT_ARGS = ("--init", "0", "--fold", "s + d.n")


@pytest.fixture
def small_log(log_path: str) -> str:
    """Ten events, data.n = 1..10: the COUNT fold gives 55."""
    with Log(log_path) as log:
        log.append_many({"type": "tick", "stream": f"s{n % 3}", "data": {"n": n}} for n in range(1, 11))
    return log_path


# -- writing as an attacker would -----------------------------------------------------


def raw_env(log_path: str) -> lmdb.Environment:
    return lmdb.open(log_path, max_dbs=16, lib_version=0, subdir=True)


def put_raw(log_path: str, db: bytes, key: bytes, value: bytes) -> None:
    env = raw_env(log_path)
    try:
        handle = env.open_db(db, create=False)
        with env.begin(write=True) as txn:
            txn.put(key, value, db=handle)
    finally:
        env.close()


def chain_hash(log_path: str, seq: int) -> bytes:
    env = raw_env(log_path)
    try:
        with env.begin() as txn:
            record = txn.get(seq_key(seq), db=env.open_db(b"events", txn=txn, create=False))
        assert record is not None
        return bytes(record[-16:])
    finally:
        env.close()


def forge(log_path: str, spec: FoldSpec, seq: int, states: list[list[Any]], *, first: int = 1,
          hash_: bytes | None = None, definition: dict[str, Any] | None = None) -> str:
    """Write a snapshot value of the current format by hand; returns the key's hex digest."""
    digest = spec.digest(first)
    value = msgpack.packb({
        "format": 2, "ts": 0, "saved": 0, "hash": chain_hash(log_path, seq) if hash_ is None else hash_,
        "definition": spec.to_record() if definition is None else definition, "first": first, "states": states,
    }, use_bin_type=True)
    put_raw(log_path, b"snapshots", digest + seq_key(seq), value)
    return digest.hex()


def evlog_ok(log_path: str, *args: str) -> bytes:
    result = run_evlog(*args, log=log_path)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    return result.stdout


def count(log_path: str, *args: str) -> Any:
    return json.loads(evlog_ok(log_path, "replay", *COUNT_ARGS, *args))


def listed(log_path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in evlog_ok(log_path, "snapshot", "list").splitlines()]


def verify_snapshots(log_path: str) -> tuple[int, list[str], str]:
    result = run_evlog("verify", "--snapshots", log=log_path)
    assert b"Traceback" not in result.stderr
    return result.returncode, result.stdout.decode().splitlines(), result.stderr.decode()


# -- a forged state: used, but found by verify --snapshots and dropped ---------------------


def test_a_forged_state_is_found_by_verify_snapshots_and_dropped(small_log: str) -> None:
    digest = forge(small_log, COUNT, 4, [[None, 1_000_000]])
    assert count(small_log) == 1_000_000 + 5 + 6 + 7 + 8 + 9 + 10  # the chain hash cannot tell: it is used
    assert run_evlog("verify", log=small_log).returncode == 0  # the log itself is sound

    code, lines, stderr = verify_snapshots(small_log)
    assert code == 1
    [line] = lines
    assert line.startswith(f"snapshot {digest[:12]} at seq 4: its state differs")
    assert line.endswith(f"remove it with evlog snapshot drop {digest}")
    assert "1 problem in 1 snapshot" in stderr

    result = run_evlog("verify", "--snapshots", "-o", "json", log=small_log)
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["ok"] is False and report["snapshot_problems"] == 1
    assert report["findings"] == [{"seq": 4, "snapshot": digest, "problem": report["findings"][0]["problem"]}]

    assert run_evlog("snapshot", "drop", digest, log=small_log).stderr == b"evlog: dropped 1 snapshot\n"
    assert count(small_log) == 55
    assert verify_snapshots(small_log)[:2] == (0, [])


def test_a_forged_definition_under_a_victims_hash_is_found(small_log: str) -> None:
    # The state is what *another* fold gives at seq 4, and that fold's definition is stored inside:
    # recomputing the stored definition would agree, so the definition must hash to the key.
    other = FoldSpec(init=1_000_000, clauses=((None, "s + d.n"),))
    digest = forge(small_log, COUNT, 4, [[None, 1_000_010]], definition=other.to_record())
    assert count(small_log) == 55  # a definition other than the fold's own is never used
    code, [line], _ = verify_snapshots(small_log)
    assert code == 1 and line.startswith(f"snapshot {digest[:12]} at seq 4: the definition it carries is not")


def test_a_planted_definition_that_never_ends_is_a_finding_not_a_hang(small_log: str) -> None:
    # verify --snapshots runs every stored definition again: one that loops forever is stopped
    # by the fold time limit (here 1 s), reported, and the check goes on.
    endless = FoldSpec(init=0, clauses=((None, "while True:\n    s = s + 1"),))
    digest = forge(small_log, endless, 4, [[None, 7]])
    result = run_evlog("verify", "--snapshots", "--fold-timeout", "1", log=small_log, timeout=60)
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    [line] = result.stdout.decode().splitlines()
    assert line.startswith(f"snapshot {digest[:12]} at seq 4: its state cannot be recomputed")
    assert "--fold-timeout" in line


def test_sound_snapshots_pass_verify_snapshots(small_log: str) -> None:
    count(small_log, "--snapshot-every", "3")
    evlog_ok(small_log, "replay", "--by", "stream", "--fold", "s.n = s.get('n', 0) + d.n", "--snapshot-every", "4")
    evlog_ok(small_log, "snapshot", "save", "--at", "7", "--from", "2", *COUNT_ARGS)
    code, lines, stderr = verify_snapshots(small_log)
    assert (code, lines) == (0, [])
    assert "ok: 6 snapshots recomputed" in stderr
    assert all(entry["problem"] is None for entry in listed(small_log))


def test_verify_without_snapshots_does_not_look_at_them(small_log: str) -> None:
    forge(small_log, COUNT, 4, [[None, 1_000_000]])
    result = run_evlog("verify", log=small_log)
    assert result.returncode == 0 and result.stdout == b""


# -- a snapshot of another history is never used ---------------------------------------


def test_a_snapshot_whose_chain_hash_differs_is_never_used(small_log: str) -> None:
    digest = forge(small_log, COUNT, 6, [[None, 1_000_000]], hash_=bytes(16))
    assert count(small_log) == 55
    assert count(small_log, "--until", "6") == 21
    [entry] = listed(small_log)
    assert entry["problem"] is not None and "another history" in entry["problem"]
    code, [line], _ = verify_snapshots(small_log)
    assert code == 1 and line.startswith(f"snapshot {digest[:12]} at seq 6: it was made for another history")


def test_a_snapshot_copied_from_another_log_is_never_used(small_log: str, tmp_path: Path) -> None:
    # The same events at other times: another chain. Its sound snapshot means nothing here.
    other = str(tmp_path / "other.lmdb")
    with Log(other) as log:
        log.append_many({"type": "tick", "stream": f"s{n % 3}", "data": {"n": 100 * n}} for n in range(1, 11))
    count(other, "--snapshot-every", "5")
    env = raw_env(other)
    with env.begin() as txn:
        copied = list(txn.cursor(db=env.open_db(b"snapshots", txn=txn, create=False)))
    env.close()
    assert len(copied) == 2
    for key, value in copied:
        put_raw(small_log, b"snapshots", key, value)
    result, _ = run_fold(Log(small_log), COUNT)
    assert (result.snapshot_seq, result.value(by=False)) == (None, 55)
    assert count(small_log) == 55
    assert verify_snapshots(small_log)[0] == 1


def test_a_sound_snapshot_after_a_bad_one_is_still_found(small_log: str) -> None:
    count(small_log, "--until", "4", "--snapshot-every", "2")  # sound ones at 2 and 4
    forge(small_log, COUNT, 6, [[None, 1_000_000]], hash_=bytes(16))
    put_raw(small_log, b"snapshots", COUNT.digest(1) + seq_key(5), b"\xc1 not msgpack")
    with Log(small_log) as log:
        result, _ = run_fold(log, COUNT)
    assert result.snapshot_seq == 4 and result.value(by=False) == 55


# -- old and malformed snapshot entries ----------------------------------------------------


def test_an_old_format_snapshot_is_never_used_listed_and_dropped(small_log: str) -> None:
    digest = COUNT.digest(1)
    old = msgpack.packb({"ts": 0, "saved": 0, "states": [[None, 1_000_000]]}, use_bin_type=True)
    put_raw(small_log, b"snapshots", digest + seq_key(5), old)
    assert count(small_log) == 55
    [entry] = listed(small_log)
    assert entry["hash"] == digest.hex() and entry["seq"] == 5 and "old format" in entry["problem"]
    code, [line], _ = verify_snapshots(small_log)
    assert code == 1 and "old format" in line and f"evlog snapshot drop {digest.hex()}" in line
    evlog_ok(small_log, "snapshot", "drop", digest.hex()[:6])
    assert listed(small_log) == []


MALFORMED: list[tuple[bytes, bytes]] = [
    (COUNT.digest(1) + seq_key(5), b"\xc1"),  # not msgpack
    (COUNT.digest(1) + seq_key(6), msgpack.packb(7)),
    (COUNT.digest(1) + seq_key(7), msgpack.packb({"format": 2, "ts": "now", "hash": b"x", "states": 1})),
    (COUNT.digest(1) + seq_key(8), msgpack.packb({"format": 9})),
    (COUNT.digest(1) + b"\x00\x01", msgpack.packb({"format": 2})),  # a key without an 8-byte seq
]


@pytest.mark.parametrize(("key", "value"), MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_snapshot_is_skipped_listed_named_and_dropped(small_log: str, key: bytes, value: bytes) -> None:
    put_raw(small_log, b"snapshots", key, value)
    assert count(small_log) == 55
    assert evlog_ok(small_log, "projection", "list") == b""
    [entry] = listed(small_log)
    assert entry["problem"]
    code, [line], _ = verify_snapshots(small_log)
    assert code == 1 and line.startswith(f"snapshot {key[:16].hex()[:12]}") and "evlog snapshot drop" in line
    evlog_ok(small_log, "snapshot", "drop", key[:16].hex())
    assert listed(small_log) == []


def test_drop_all_and_before_work_with_damaged_entries(small_log: str) -> None:
    for key, value in MALFORMED:
        put_raw(small_log, b"snapshots", key, value)
    assert "dropped 2 snapshots" in run_evlog("snapshot", "drop", "--before", "7", log=small_log).stderr.decode()
    assert "dropped 3 snapshots" in run_evlog("snapshot", "drop", "--all", log=small_log).stderr.decode()


# -- the reader's limits ---------------------------------------------------------------


@pytest.fixture
def eager_projection(log_path: str) -> str:
    """200 events and a stored projection that asks for a snapshot after every one of them."""
    with Log(log_path) as log:
        log.append_many({"type": "tick", "data": {"n": n}} for n in range(200))
    evlog_ok(log_path, "projection", "add", "eager", "--init", "0", "--fold", "s + 1", "--snapshot-every", "1")
    return log_path


def test_a_stored_interval_cannot_make_snapshots_more_frequent(eager_projection: str) -> None:
    assert json.loads(evlog_ok(eager_projection, "projection", "show", "eager")) == 200
    assert listed(eager_projection) == []  # the reader's default: one every 50,000 events
    assert json.loads(evlog_ok(eager_projection, "replay", "--projection", "eager")) == 200
    assert listed(eager_projection) == []
    evlog_ok(eager_projection, "projection", "show", "eager", "--snapshot-every", "100")
    assert [entry["seq"] for entry in listed(eager_projection)] == [100, 200]


def test_a_state_over_the_size_limit_is_not_saved(log_path: str) -> None:
    with Log(log_path) as log:
        log.append_many({"type": "tick", "data": {"n": n}} for n in range(20))
    grow = ("--init", "[]", "--fold", "s + ['x' * 100]")
    result = run_evlog("replay", *grow, "--snapshot-every", "1", "--snapshot-max-size", "1K", log=log_path)
    assert result.returncode == 0 and len(json.loads(result.stdout)) == 20
    notes = result.stderr.decode().splitlines()
    assert len(notes) == 1 and "--snapshot-max-size" in notes[0] and "not saved" in notes[0]
    seqs = [entry["seq"] for entry in listed(log_path)]
    assert seqs and max(seqs) < 10  # the small states early on were saved, the large ones not
    assert all(entry["size"] <= 1024 for entry in listed(log_path))
    evlog_ok(log_path, "projection", "add", "grow", *grow, "--snapshot-every", "1")
    result = run_evlog("projection", "show", "grow", "--snapshot-every", "1", "--snapshot-max-size", "0",
                       log=log_path)
    assert result.returncode == 0 and result.stderr.decode().count("\n") == 1
    assert len(listed(log_path)) == len(seqs)


def test_a_bad_size_is_a_usage_error(small_log: str) -> None:
    result = run_evlog("replay", *COUNT_ARGS, "--snapshot-max-size", "lots", log=small_log)
    assert result.returncode == 2 and b"--snapshot-max-size 'lots'" in result.stderr


def test_no_snapshots_are_written_where_the_reader_cannot_write(
    small_log: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In process, the user's rights are what runner.writable says (root may write anything).
    monkeypatch.setattr(runner, "writable", lambda path: False)
    notes: list[str] = []
    with Log(small_log) as log:
        result, _ = run_fold(log, COUNT, snapshot_every=1, on_snapshot_error=notes.append)
        assert result.value(by=False) == 55
        assert not log.store().writable  # opened read-only, never for writing
        assert list(snapshots.listing(log.store())) == []
    assert len(notes) == 1 and "cannot write" in notes[0]


NOBODY = 65534
SETPRIV = shutil.which("setpriv")


def as_reader(*args: str, log: str) -> subprocess.CompletedProcess[bytes]:
    """The real command as a user without write access: this user, or under root the user nobody."""
    if os.geteuid() != 0:
        return run_evlog(*args, log=log)
    assert SETPRIV is not None
    command = [SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               sys.executable, "-m", "evlog", *args, "--log", log]
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVLOG_")}
    return subprocess.run(command, capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=60)


@pytest.mark.skipif(os.geteuid() == 0 and SETPRIV is None,
                    reason="root may write to a read-only log, and there is no setpriv to run as another user")
def test_a_read_only_log_gets_no_snapshots_and_is_not_written() -> None:
    # In a directory every user can reach (pytest's own is private to its user).
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        log_path = str(Path(tmp) / "events.lmdb")
        with Log(log_path) as log:
            log.append_many({"type": "tick", "data": {"n": n}} for n in range(200))
        evlog_ok(log_path, "projection", "add", "eager", "--init", "0", "--fold", "s + 1", "--snapshot-every", "1")
        # The directory and the data are read-only; lock.mdb stays writable, as LMDB readers need it.
        data, lock = Path(log_path) / "data.mdb", Path(log_path) / "lock.mdb"
        Path(log_path).chmod(0o555)
        data.chmod(0o444)
        lock.chmod(0o666)
        before = data.read_bytes()
        try:
            for command in (["projection", "show", "eager", "--snapshot-every", "1"],
                            ["replay", "--projection", "eager", "--snapshot-every", "1"],
                            ["replay", "--init", "0", "--fold", "s + 1", "--snapshot-every", "1"]):
                result = as_reader(*command, log=log_path)
                assert result.returncode == 0, (command, result.stderr)
                assert json.loads(result.stdout) == 200
                assert result.stderr.decode().splitlines() == [
                    f"evlog: snapshots are not being saved: you cannot write to the log {log_path}"]
            assert data.read_bytes() == before
        finally:
            Path(log_path).chmod(0o700)
            data.chmod(0o600)
        assert listed(log_path) == []


# -- stored projections as untrusted input --------------------------------------------


def projection_value(**fields: Any) -> bytes:
    record = {"spec": COUNT.to_record(), "from": None, "snapshot_every": 50_000, "created": 0}
    record.update(fields)
    return msgpack.packb(record, use_bin_type=True)


BAD_PROJECTIONS: list[tuple[str, bytes]] = [
    ("not msgpack", b"\xc1"),
    ("not a map", msgpack.packb([1, 2])),
    ("no definition", projection_value(spec=None)),
    ("interval as text", projection_value(snapshot_every="1")),
    ("negative interval", projection_value(snapshot_every=-5)),
    ("start as a number", projection_value(**{"from": 3})),
    ("creation as text", projection_value(created="yesterday")),
    ("clauses as a number", projection_value(spec={**COUNT.to_record(), "clauses": 5})),
    ("definition without keys", projection_value(spec={})),
]


@pytest.mark.parametrize("value", [value for _, value in BAD_PROJECTIONS], ids=[name for name, _ in BAD_PROJECTIONS])
def test_a_malformed_projection_is_one_line_and_exit_74(small_log: str, value: bytes) -> None:
    put_raw(small_log, b"projections", b"bad", value)
    for command in (["projection", "show", "bad"], ["replay", "--projection", "bad"], ["projection", "list"]):
        result = run_evlog(*command, log=small_log)
        assert result.returncode == 74, (command, result.stderr)
        assert result.stdout == b""
        [line] = result.stderr.decode().splitlines()
        assert line.startswith("evlog: damaged log: projection 'bad': "), line
    assert run_evlog("projection", "rm", "bad", log=small_log).returncode == 0
    assert evlog_ok(small_log, "projection", "list") == b""


def test_a_projection_name_that_is_not_utf8_is_damage_and_can_be_removed(small_log: str) -> None:
    put_raw(small_log, b"projections", b"bad\xff", projection_value())
    result = run_evlog("projection", "list", log=small_log)
    assert result.returncode == 74
    [line] = result.stderr.decode().splitlines()
    assert "projection b'bad\\xff'" in line and "not UTF-8" in line
    assert "remove it with evlog projection rm $'bad\\xff'" in line
    # What the shell makes of $'bad\xff': the bytes, which Python hands over as a surrogate.
    assert run_evlog("projection", "rm", os.fsdecode(b"bad\xff"), log=small_log).returncode == 0
    assert evlog_ok(small_log, "projection", "list") == b""


def test_a_damaged_projection_can_be_replaced(small_log: str) -> None:
    put_raw(small_log, b"projections", b"total", b"\xc1")
    evlog_ok(small_log, "projection", "add", "total", "--replace", *COUNT_ARGS)
    assert json.loads(evlog_ok(small_log, "projection", "show", "total")) == 55


def test_projection_list_shows_all_of_the_code_escaped(small_log: str) -> None:
    long_clause = "s = s + d.n\n" * 40 + "s = s + 0  # \x1b]52;c;ZXZpbA==\x07 \u202egnp.exe"
    spec = FoldSpec(init=0, clauses=((None, long_clause),), where="'\x1b[2J' != e.type")
    value = msgpack.packb({"spec": spec.to_record(), "from": "\x1b[31m3", "snapshot_every": 9, "created": 0},
                          use_bin_type=True)
    put_raw(small_log, b"projections", b"evil\x1b[8m", value)
    # A terminal wide enough for the whole definition on one line.
    result = run_evlog("projection", "list", "-o", "table", log=small_log, env={"COLUMNS": "5000"})
    assert result.returncode == 0, result.stderr
    table = result.stdout.decode()
    assert "\x1b" not in table and "\u202e" not in table and "\x07" not in table
    assert r"# \u001b]52;c;ZXZpbA==\u0007 \u202egnp.exe" in table
    assert table.count(r"s = s + d.n\n") == 40  # every line of the code, none hidden
    assert r"evil\u001b[8m" in table and r"\u001b[31m3" in table and r"\u001b[2J" in table
    [entry] = [json.loads(line) for line in evlog_ok(small_log, "projection", "list").splitlines()]
    assert entry["name"] == "evil\x1b[8m" and entry["definition"]["clauses"] == [[None, long_clause]]


# -- the property: what evlog saves, verify confirms --------------------------------------

DEFINITIONS = [
    FoldSpec(init=0, clauses=((None, "s + d.n"),)),
    FoldSpec(init={}, clauses=((None, "s[e.type] = s.get(e.type, 0) + d.n"),)),
    FoldSpec(init=[], clauses=((None, "s.append(e.seq)"),), where="d.n % 2 == 0"),
    FoldSpec(init={"n": 0}, clauses=(("a", "s.n += d.n"), ("b", "s.n -= 1")), by="stream"),
    FoldSpec(init=0.5, clauses=((None, "s * 1.5 if d.n > 2 else s - d.n"),), types=("b",)),
]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.tuples(st.sampled_from("ab"), st.sampled_from(["x", "y", None]), st.integers(0, 5)),
                    min_size=1, max_size=25),
    which=st.sampled_from(range(len(DEFINITIONS))),
    every=st.integers(1, 6),
    first=st.integers(1, 5),
)
def test_snapshots_saved_while_folding_always_pass_the_recomputation(
    events: list[tuple[str, str | None, int]], which: int, every: int, first: int
) -> None:
    spec = DEFINITIONS[which]
    with tempfile.TemporaryDirectory() as tmp, Log(Path(tmp) / "events.lmdb") as log:
        log.append_many({"type": etype, "stream": stream, "data": {"n": n}} for etype, stream, n in events)
        run_fold(log, spec, from_=first, until=len(events) // 2 or 1, snapshot_every=every)
        run_fold(log, spec, from_=first, snapshot_every=every)
        checked = check_snapshots(log)
        assert list(checked) == []
        assert checked.checked == len(list(snapshots.listing(log.store())))


def test_copying_a_log_keeps_its_snapshots_usable(small_log: str, tmp_path: Path) -> None:
    count(small_log, "--snapshot-every", "5")
    copy = tmp_path / "copy.lmdb"
    shutil.copytree(small_log, copy)
    with Log(copy) as log:
        result, _ = run_fold(log, COUNT)
    assert result.snapshot_seq == 10 and result.value(by=False) == 55
