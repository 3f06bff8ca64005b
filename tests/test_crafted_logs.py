"""Logs damaged on purpose, built with lmdb and msgpack directly: no traceback, no wrong answer.

A log may come from someone else, so every byte read back is untrusted.
Each case damages one thing in a small sound log; every command that reads
the damaged part must exit 74 with one line on stderr that names it, every
command that does not must still succeed, and ``verify`` must name the
damage among its findings.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest
from conftest import run_evlog

from evlog import Log

U64 = struct.Struct(">Q")


def key(seq: int) -> bytes:
    return U64.pack(seq)


def sound_log(path: str) -> None:
    """Three events of one stream; the damage goes into the last, which nearly every command reads."""
    with Log(path) as log:
        log.append_many(
            [
                {"type": "a", "stream": "s", "data": {"n": 1}},
                {"type": "b", "stream": "s", "id": "k2", "data": {"n": 2}},
                {"type": "a", "stream": "s", "data": {"n": 3}},
            ]
        )


Tamper = Callable[[Any, dict[bytes, Any]], None]


def tamper(path: str, change: Tamper) -> None:
    env = lmdb.open(path, subdir=True, max_dbs=8, lib_version=0)
    try:
        dbs = {name: env.open_db(name) for name in (b"events", b"streams", b"ids", b"types", b"meta")}
        with env.begin(write=True) as txn:
            change(txn, dbs)
    finally:
        env.close()


def record(*fields: Any) -> bytes:
    """A record body as evlog stores it, with a chain hash that is not checked by readers."""
    return msgpack.packb(list(fields), use_bin_type=True) + bytes(16)


def last_record(txn: Any, dbs: dict[bytes, Any], *fields: Any) -> None:
    txn.put(key(3), record(*fields), db=dbs[b"events"])


def payload(data: bytes) -> Tamper:
    return lambda txn, dbs: last_record(txn, dbs, 1, 1_700_000_000 * 10**9, 3, "a", "s", None, None, data)


def put(db: bytes, name: bytes, value: bytes) -> Tamper:
    return lambda txn, dbs: txn.put(name, value, db=dbs[db])


def drop_seq_2(txn: Any, dbs: dict[bytes, Any]) -> None:
    txn.delete(key(2), db=dbs[b"events"])


REPLAYS = {"replay-ndjson", "replay-json", "replay-msgpack", "replay-table", "replay-template", "tail"}
RECORD_READERS = REPLAYS | {"info", "stats", "streams", "fold", "backup"}
EVERY = RECORD_READERS
TYPE_READERS = {"info", "stats", "backup", "replay-table"}  # a table colours types by the log's type list
TS = 1_700_000_000 * 10**9

# (case, damage, the commands that must fail, what verify says, what the message says)
CASES: list[tuple[str, Tamper, set[str], str, str]] = [
    ("type-key-not-utf8", put(b"types", b"\xff\xfeorder", U64.pack(1)), TYPE_READERS,
     "not UTF-8", "not UTF-8"),
    ("format-of-5000-digits", put(b"meta", b"format", b"1" * 5000), EVERY,
     "(5000 bytes), not a format number", "not a format number"),
    ("payload-not-msgpack", payload(b"\xc1"), REPLAYS, "damaged payload", "seq 3"),
    ("payload-with-trailing-bytes", payload(msgpack.packb({"n": 3}) + b"\x01"), REPLAYS, "damaged payload",
     "seq 3"),
    ("payload-ext-type", payload(msgpack.packb({"n": msgpack.ExtType(5, b"x")})), REPLAYS - {"replay-msgpack"},
     "damaged payload", "seq 3"),
    ("payload-int-key", payload(msgpack.packb({1: 2}, strict_types=False)), REPLAYS - {"replay-msgpack"},
     "damaged payload", "seq 3"),
    ("record-of-3-fields", lambda txn, dbs: last_record(txn, dbs, 1, TS, 3), RECORD_READERS,
     "not an array of 8 fields", "seq 3 (the record is not an array of 8 fields)"),
    ("record-not-msgpack", lambda txn, dbs: txn.put(key(3), b"\xc1" * 20, db=dbs[b"events"]), RECORD_READERS,
     "cannot be decoded", "seq 3 (the record cannot be decoded"),
    ("float-ts", lambda txn, dbs: last_record(txn, dbs, 1, 1.5e18, 3, "a", "s", None, None, b"\x80"),
     RECORD_READERS, "wrong kind", "seq 3 (ts is float"),
    ("string-ts", lambda txn, dbs: last_record(txn, dbs, 1, "2026", 3, "a", "s", None, None, b"\x80"),
     RECORD_READERS, "wrong kind", "seq 3 (ts is str"),
    ("meta-with-ext", lambda txn, dbs: last_record(txn, dbs, 1, TS, 3, "a", "s", None,
                                                   {"m": msgpack.ExtType(1, b"")}, b"\x80"),
     RECORD_READERS, "wrong kind", "seq 3 (meta is not an object of JSON values)"),
    ("type-count-of-4-bytes", put(b"types", b"a", b"\x00\x00\x00\x02"), TYPE_READERS,
     "4 bytes, not 8", "4 bytes, not 8"),
    ("streams-count-of-4-bytes", put(b"meta", b"streams", b"\x00\x00\x00\x01"), {"info", "backup"},
     "streams count is 4 bytes, not 8", "streams count is 4 bytes, not 8"),
    ("created-of-3-bytes", put(b"meta", b"created", b"\x00\x00\x01"), {"info", "backup"},
     "creation time is 3 bytes, not 8", "creation time is 3 bytes, not 8"),
    ("log-id-not-utf8", put(b"meta", b"log_id", b"\xff" * 16), {"info", "backup"}, "log id is not UTF-8",
     "log id is not UTF-8"),
    ("deleted-seq", drop_seq_2, REPLAYS | {"stats", "fold"}, "is missing: the log has a gap here",
     "seq 2 (missing: the log has a gap here)"),
]

COMMANDS: dict[str, list[str]] = {
    "replay-ndjson": ["replay", "-o", "ndjson"],
    "replay-json": ["replay", "-o", "json"],
    "replay-msgpack": ["replay", "-o", "msgpack"],
    "replay-table": ["replay", "-o", "table"],
    "replay-template": ["replay", "--template", "{seq} {data}"],
    "info": ["info", "-o", "json"],
    "stats": ["stats", "-o", "json"],
    "streams": ["streams", "-o", "json"],
    "tail": ["tail", "-n", "2", "-o", "ndjson"],
    "fold": ["replay", "--fold", "s + 1 if e.ts else s", "--init", "0"],  # reads the ts, not the payload
    "backup": ["backup"],
}


@pytest.fixture(params=CASES, ids=[case[0] for case in CASES])
def crafted(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, set[str], str, str]:
    name, change, failing, finding, message = request.param
    path = str(tmp_path / "events.lmdb")
    sound_log(path)
    tamper(path, change)
    return name, path, failing, finding, message


FOLD_LOOP_MESSAGES = {
    "record-of-3-fields": "seq 3 (the record does not decode as evlog writes it",
    "record-not-msgpack": "seq 3 (the record does not decode as evlog writes it",
    "meta-with-ext": "seq 3 (the record does not decode as evlog writes it: an ext type",
    "float-ts": "seq 3 (its ts does not decode as evlog writes it",
    "string-ts": "seq 3 (its ts does not decode as evlog writes it",
}
"""What the fold loop says of damage inside a record: it decodes the raw bytes itself, in its own words."""


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_the_damage_it_reads_in_one_line(
    crafted: tuple[str, str, set[str], str, str], command: str, tmp_path: Path
) -> None:
    case, path, failing, _, message = crafted
    if command == "fold":
        message = FOLD_LOOP_MESSAGES.get(case, message)
    args = COMMANDS[command] + ([str(tmp_path / "copy")] if command == "backup" else [])
    result = run_evlog(*args, log=path)
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    if command in failing:
        assert result.returncode == 74, stderr
        assert stderr.count("\n") == 1 and stderr.startswith("evlog: damaged log: "), stderr
        assert message in stderr and stderr.rstrip().endswith("run evlog verify")
        if command == "backup":
            assert not (tmp_path / "copy").exists()  # a failed backup leaves nothing behind
    else:
        assert (result.returncode, stderr) == (0, ""), stderr


def test_verify_names_the_damage(crafted: tuple[str, str, set[str], str, str]) -> None:
    _, path, _, finding, _ = crafted
    for output in ("auto", "json"):
        result = run_evlog("verify", "-o", output, log=path)
        assert result.returncode == 1, result.stderr.decode()
        assert "Traceback" not in result.stderr.decode()
        assert finding in result.stdout.decode()


def test_a_seq_missing_in_the_middle_is_not_counted_over(tmp_path: Path) -> None:
    """Before, a fold counted an event twice and replay printed event 3 as seq 2."""
    path = str(tmp_path / "events.lmdb")
    sound_log(path)
    tamper(path, drop_seq_2)
    with Log(path) as log:
        with pytest.raises(Exception, match="seq 2 \\(missing"):
            list(log.read())
        assert [event.seq for event in log.read(from_="3")] == [3]  # past the gap all is well
    by_stream = run_evlog("replay", "-s", "s", "-o", "ndjson", log=path)
    assert by_stream.returncode == 74
    assert b"seq 2 (is in the streams index but missing from the events)" in by_stream.stderr
    folded = run_evlog("replay", "-s", "s", "--fold", "s + 1", "--init", "0", log=path)
    assert folded.returncode == 74 and b"seq 2" in folded.stderr


def test_a_time_search_across_a_gap_is_damage(tmp_path: Path) -> None:
    path = str(tmp_path / "events.lmdb")
    with Log(path) as log:
        log.append_many([{"type": "a", "ts": f"2026-01-01T00:00:0{n}Z"} for n in range(5)])
    tamper(path, lambda txn, dbs: txn.delete(key(3), db=dbs[b"events"]))
    result = run_evlog("replay", "--from", "2026-01-01T00:00:03Z", log=path)
    assert result.returncode == 74
    assert result.stderr.decode() == "evlog: damaged log: seq 3 (missing: the log has a gap here); run evlog verify\n"


def test_a_truncated_data_file_is_refused_before_it_is_mapped(tmp_path: Path) -> None:
    """Before, LMDB mapped past the end of the file: SIGBUS, exit 135, also for verify."""
    path = tmp_path / "events.lmdb"
    with Log(str(path)) as log:
        log.append_many([{"type": "a", "data": {"text": "x" * 500}} for _ in range(200)])
    size = (path / "data.mdb").stat().st_size
    assert size > 50_000
    with open(path / "data.mdb", "r+b") as file:
        file.truncate(50_000)
    for args in (["verify"], ["info"], ["replay", "-o", "ndjson"], ["stats", "-o", "json"], ["append", "x"]):
        result = run_evlog(*args, log=str(path))
        assert result.returncode == 74, (args, result.returncode)
        assert result.stderr.decode() == (
            f"evlog: damaged log: {path}/data.mdb is 50,000 bytes, the log needs {size:,}: "
            "the file was cut short; restore the log from a backup\n"
        )


def test_verify_names_damaged_projections_and_groups_and_goes_on(tmp_path: Path) -> None:
    # Entries that only their own commands read (projection show, tail --group) are still
    # checked by verify, each a finding, the rest of the log verified as usual.
    path = str(tmp_path / "events.lmdb")
    sound_log(path)
    env = lmdb.open(path, subdir=True, max_dbs=8, lib_version=0)
    try:
        projections, groups = env.open_db(b"projections"), env.open_db(b"groups")
        with env.begin(write=True) as txn:
            txn.put(b"evil", msgpack.packb({"spec": 5, "from": None, "snapshot_every": 1, "created": 0}),
                    db=projections)
            txn.put(b"worker", b"\xc1not msgpack", db=groups)
            txn.put(b"billing", msgpack.packb({"position": 1, "streams": [], "types": [], "where": None}), db=groups)
    finally:
        env.close()
    result = run_evlog("verify", log=path)
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    findings = result.stdout.decode().splitlines()
    assert len(findings) == 2, findings
    assert findings[0].startswith("log: projection 'evil': ")
    assert findings[1].startswith("log: group 'worker': ")
    assert result.stderr.decode().startswith("evlog: 2 problems in 3 events (seq 1-3)")
