"""``evlog replay`` as a command: stream, type and limit filters, closed pipes, missing logs.

Everything runs the real command in a subprocess against a log built with explicit
times, and compares the selected seqs. Filters are also checked through ``Log.read``
so that the library and the command agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_evlog

from evlog import Log

# seq: (type, stream); seq n has ts 2026-11-01T(09+n):00:00Z.
EVENTS: dict[int, tuple[str, str | None]] = {
    1: ("deposit", "account-1"),
    2: ("deposit", "account-2"),
    3: ("withdraw", "account-1"),
    4: ("order.created", "order-1"),
    5: ("order.paid", "order-1"),
    6: ("order.created", "order-10"),
    7: ("withdrawal.fee", "account-10"),
    8: ("note", None),
    9: ("deposit", "account-1"),
}


def ts_of(seq: int) -> str:
    return f"2026-11-01T{9 + seq:02d}:00:00Z"


@pytest.fixture
def shop_log(log_path: str) -> str:
    with Log(log_path) as log:
        log.append_many(
            {"type": etype, "stream": stream, "ts": ts_of(seq), "data": {"n": seq}}
            for seq, (etype, stream) in EVENTS.items()
        )
    return log_path


def replayed(log: str, *args: str) -> list[dict[str, Any]]:
    result = run_evlog("replay", *args, log=log)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return [json.loads(line) for line in result.stdout.splitlines()]


FILTERS: list[tuple[tuple[str, ...], list[int]]] = [
    # streams: exact, repeated, prefix, mixed, unknown
    (("-s", "account-1"), [1, 3, 9]),
    (("--stream", "account-1", "--stream", "order-1"), [1, 3, 4, 5, 9]),
    (("-s", "account-1", "-s", "account-1"), [1, 3, 9]),
    (("-s", "account-*"), [1, 2, 3, 7, 9]),
    (("-s", "order-1*"), [4, 5, 6]),
    (("-s", "account-2", "-s", "order-*"), [2, 4, 5, 6]),
    (("-s", "account-10", "-s", "order-1"), [4, 5, 7]),
    (("-s", "nope"), []),
    (("-s", "nope*"), []),
    # types: exact, globs, repeated
    (("-t", "deposit"), [1, 2, 9]),
    (("--type", "order.*"), [4, 5, 6]),
    (("-t", "deposit", "-t", "withdraw*"), [1, 2, 3, 7, 9]),
    (("-t", "order.?aid"), [5]),
    (("-t", "order"), []),
    (("-t", "*e*", "-t", "note"), [1, 2, 4, 5, 6, 7, 8, 9]),
    # limit
    (("-n", "2"), [1, 2]),
    (("--limit", "0"), []),
    (("--limit", "100"), list(EVENTS)),
    (("-n", "2", "-s", "account-1"), [1, 3]),
    (("-n", "1", "-t", "order.*", "--from", "5"), [5]),
    # everything combined
    (("-s", "account-*", "-t", "deposit", "--from", "2026-11-01T11:00:00Z", "--until", "2026-11-01T18:00:00Z"), [2, 9]),
    (("-s", "account-*", "-t", "deposit", "--from", "2026-11-01T11:00:00Z", "--until", "2026-11-01T17:59:59Z"), [2]),
    (("-s", "account-1", "-t", "deposit", "--from", "2", "--until", "9"), [9]),
    (("-s", "account-1", "-t", "deposit", "--from", "1", "--until", "-2"), [1]),
    (("-s", "account-1", "-s", "order-*", "-t", "*.created", "-t", "withdraw", "--until", "-4"), [3, 4, 6]),
    (("-s", "account-1", "-t", "deposit", "--from", "-1", "-n", "5"), [9]),
]


@pytest.mark.parametrize(("args", "expected"), FILTERS, ids=[" ".join(args) for args, _ in FILTERS])
def test_replay_filters(shop_log: str, args: tuple[str, ...], expected: list[int]) -> None:
    events = replayed(shop_log, *args)
    assert [event["seq"] for event in events] == expected
    for event in events:
        assert (event["type"], event["stream"]) == EVENTS[event["seq"]]
        assert event["ts"] == ts_of(event["seq"]).replace("Z", ".000000000Z")


def test_library_read_agrees_with_the_command_filters(shop_log: str) -> None:
    with Log(shop_log) as log:

        def seqs(**selection: Any) -> list[int]:
            return [event.seq for event in log.read(**selection)]

        assert seqs(streams=["account-1"]) == [1, 3, 9]
        assert seqs(streams=["account-1", "order-1"]) == [1, 3, 4, 5, 9]
        # The stream index (exact names) and the scan (with a prefix) agree.
        assert seqs(streams=["account-1", "zzz*"]) == seqs(streams=["account-1"])
        assert seqs(streams=["account-*"], types=["deposit", "withdraw*"]) == [1, 2, 3, 7, 9]
        assert seqs(types=["order.*"], from_="5", until="2026-11-01T15:00:00Z") == [5, 6]


def test_stream_filter_keeps_versions(shop_log: str) -> None:
    events = replayed(shop_log, "-s", "account-1")
    assert [event["version"] for event in events] == [1, 2, 3]


def test_negative_limit_is_a_usage_error(shop_log: str) -> None:
    result = run_evlog("replay", "-n", "-1", log=shop_log)
    assert result.returncode == 2
    assert result.stdout == b""


def test_filters_span_many_read_chunks(log_path: str) -> None:
    # 5,000 events cross the 1,024-record read chunks, with both filter paths.
    with Log(log_path) as log:
        log.append_many({"type": f"t{i % 3}", "stream": f"s-{i % 7}"} for i in range(5_000))
    expected = [i + 1 for i in range(5_000) if i % 7 == 3]
    exact = run_evlog("replay", "-s", "s-3", "--template", "{seq}", log=log_path)
    prefix = run_evlog("replay", "-s", "s-3*", "--template", "{seq}", log=log_path)
    assert [int(x) for x in exact.stdout.split()] == expected
    assert [int(x) for x in prefix.stdout.split()] == expected
    typed = run_evlog("replay", "-s", "s-3", "-t", "t1", "--template", "{seq}", log=log_path)
    assert [int(x) for x in typed.stdout.split()] == [s for s in expected if (s - 1) % 3 == 1]


# -- a closed output pipe -----------------------------------------------------


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A log of 50,000 events, shared by the pipe tests (they only read it)."""
    log_path = str(tmp_path_factory.mktemp("pipe") / "big.lmdb")
    with Log(log_path) as log:
        log.append_many({"type": "tick", "stream": f"s-{i % 50}", "data": {"i": i}} for i in range(50_000))
    return log_path


def replay_into_head(log_path: str, tmp_path: Path, *args: str) -> tuple[bytes, bytes, int]:
    """Run `evlog replay ARGS | head -1` in bash (pipefail off): head's output, evlog's stderr and status."""
    err_file = tmp_path / "evlog.stderr"
    script = (
        "set +o pipefail\n"
        '"$PYTHON" -m evlog replay --log "$LOG" "$@" 2>"$ERR" | head -1\n'
        'echo "status=${PIPESTATUS[0]}" >&2\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    env.update(PYTHON=sys.executable, LOG=log_path, ERR=str(err_file))
    result = subprocess.run(["bash", "-c", script, "bash", *args], capture_output=True, env=env, timeout=60)
    status = int(result.stderr.decode().strip().rsplit("status=", 1)[1])
    return result.stdout, err_file.read_bytes(), status


def test_replay_into_head_gives_one_line_and_exits_0_quietly(big_log: str, tmp_path: Path) -> None:
    stdout, stderr, status = replay_into_head(big_log, tmp_path)
    lines = stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["seq"] == 1
    assert stderr == b""
    assert status == 0


@pytest.mark.parametrize(
    "args",
    [
        ("-o", "ndjson"),
        ("-o", "json"),
        ("-o", "msgpack"),
        ("--template", "{seq} {type}"),
        ("-s", "s-7", "-t", "tick"),
        ("-o", "table"),
    ],
    ids=" ".join,
)
def test_every_output_into_a_closed_pipe_exits_0_quietly(big_log: str, tmp_path: Path, args: tuple[str, ...]) -> None:
    stdout, stderr, status = replay_into_head(big_log, tmp_path, *args)
    assert stdout
    assert stderr == b""
    assert status == 0


# -- logs that are missing or are not logs ------------------------------------

READERS = [("replay",), ("info",), ("replay", "-o", "json"), ("info", "-o", "json")]


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_missing_log_exits_66_and_creates_nothing(tmp_path: Path, command: tuple[str, ...]) -> None:
    missing = tmp_path / "nonexistent" / "x"
    result = run_evlog(*command, log=str(missing))
    assert result.returncode == 66
    assert result.stdout == b""
    message = result.stderr.decode()
    assert message.startswith("evlog: ") and str(missing) in message
    assert "Traceback" not in message
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.parametrize("command", [("replay",), ("info",)], ids=" ".join)
def test_missing_log_from_the_environment_exits_66(tmp_path: Path, command: tuple[str, ...]) -> None:
    missing = tmp_path / "env.lmdb"
    result = run_evlog(*command, env={"EVLOG_PATH": str(missing)})
    assert result.returncode == 66
    assert str(missing) in result.stderr.decode()
    assert not missing.exists()


@pytest.mark.parametrize("command", [("replay",), ("info",), ("append", "deposit", "amount:=1")], ids=" ".join)
def test_log_that_is_a_plain_file_exits_74_and_leaves_it_alone(tmp_path: Path, command: tuple[str, ...]) -> None:
    plain = tmp_path / "notes.txt"
    plain.write_bytes(b"not a log\n")
    before = plain.stat()
    result = run_evlog(*command, log=str(plain))
    assert result.returncode == 74
    assert result.stdout == b""
    message = result.stderr.decode()
    assert message.startswith("evlog: ") and str(plain) in message and "not a log" in message
    assert "Traceback" not in message
    assert plain.read_bytes() == b"not a log\n"
    assert plain.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


@pytest.mark.parametrize("command", [("replay",), ("info",)], ids=" ".join)
def test_empty_directory_is_not_a_log_and_stays_empty(tmp_path: Path, command: tuple[str, ...]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_evlog(*command, log=str(empty))
    assert result.returncode == 66
    assert str(empty) in result.stderr.decode()
    assert list(empty.iterdir()) == []
