"""`evlog append` through the real command: fields, stdin formats, bad input, options.

Every test runs `python -m evlog` in a subprocess with real pipes (see
``conftest.run_evlog``) on its own temporary log, asserts the exact exit code,
stdout and stderr, and then reads the log back with the library to check
exactly what was (or was not) written.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import run_evlog

from evlog import Event, Log, LogNotFoundError

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z, in nanoseconds


# -- helpers -----------------------------------------------------------------


def stored(log_path: str) -> list[Event]:
    """Every event in the log, in seq order ([] when no log was created)."""
    try:
        with Log(log_path) as log:
            return list(log.read())
    except LogNotFoundError:
        return []


def stored_dicts(log_path: str) -> list[dict[str, Any]]:
    return [event.to_dict() for event in stored(log_path)]


def ndjson(*items: object) -> bytes:
    """NDJSON input: each item dumped as JSON, or used as it is (a raw line) when it is a str."""
    lines = [item if isinstance(item, str) else json.dumps(item) for item in items]
    return ("\n".join(lines) + "\n").encode()


def good(n: int) -> dict[str, Any]:
    """The n-th good input line: explicit, increasing times so a prefix compares exactly."""
    return {"type": "ok", "data": {"n": n}, "ts": T0 + n}


def err_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return result.stderr.decode().splitlines()


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}


# -- one event from arguments ------------------------------------------------


def test_field_forms_give_text_and_json_values(log_path: str) -> None:
    result = run_evlog(
        "append", "deposit", "name=ada", "note=a=b", "empty=", "amount:=100", "rate:=12.5",
        'obj:={"a": [1, {"b": null}]}', 'arr:=[1, "x"]', "yes:=true", "nothing:=null",
        'quoted:="100"', log=log_path,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"1\n", b"")
    [event] = stored(log_path)
    assert event.type == "deposit"
    assert event.data == {
        "name": "ada", "note": "a=b", "empty": "", "amount": 100, "rate": 12.5,
        "obj": {"a": [1, {"b": None}]}, "arr": [1, "x"], "yes": True, "nothing": None,
        "quoted": "100",
    }
    assert (event.stream, event.version, event.id, event.meta) == (None, None, None, {})


@pytest.mark.parametrize(
    "data_json, expected",
    [
        ('{"total": 12.5, "items": 3}', {"total": 12.5, "items": 3}),
        ("[1, 2, 3]", [1, 2, 3]),
        ('"just text"', "just text"),
        ("42", 42),
        ("false", False),
    ],
)
def test_data_option_takes_any_json_value(log_path: str, data_json: str, expected: Any) -> None:
    result = run_evlog("append", "order.created", "--data", data_json, log=log_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"1\n", b"")
    assert [event.data for event in stored(log_path)] == [expected]


def test_data_option_null_stores_null(log_path: str) -> None:
    """Regression: `--data null` used to store {} (None was taken for "no data")."""
    result = run_evlog("append", "t", "--data", "null", log=log_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"1\n", b"")
    assert [event.data for event in stored(log_path)] == [None]


def test_no_fields_gives_empty_object(log_path: str) -> None:
    result = run_evlog("append", "ping", log=log_path)
    assert (result.returncode, result.stdout) == (0, b"1\n")
    assert [event.data for event in stored(log_path)] == [{}]


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["append", "t", "--data", "{}", "a=1"],
            "evlog: give the data either as --data JSON or as FIELD arguments, not both",
        ),
        (
            ["append", "t", "abc"],
            "evlog: field 'abc' needs key=value (text) or key:=JSON (any JSON value)",
        ),
        (["append", "t", "=1"], "evlog: field '=1' has no key before the '='"),
        (["append", "t", "--expect", "1"], "evlog: --expect needs a --stream: versions belong to streams"),
        (["append", "t", "-m", "novalue"], "evlog: --meta 'novalue' needs key=value"),
        (["append", "t", "--type", "x"], "evlog: --type is for stdin input; for one event give the TYPE argument"),
    ],
    ids=["data-and-fields", "field-without-equals", "field-without-key", "expect-without-stream",
         "meta-without-equals", "type-option-with-type"],
)
def test_usage_errors_exit_2_and_write_nothing(log_path: str, args: list[str], message: str) -> None:
    result = run_evlog(*args, log=log_path)
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode() == message + "\n"
    assert stored(log_path) == []


def test_field_with_invalid_json_is_usage_error(log_path: str) -> None:
    result = run_evlog("append", "t", "n:=abc", log=log_path)
    assert result.returncode == 2
    [line] = err_lines(result)
    assert line.startswith("evlog: field n: 'abc' is not valid JSON (")
    assert stored(log_path) == []


def test_meta_option_is_repeatable(log_path: str) -> None:
    result = run_evlog("append", "login", "--meta", "user=ada", "-m", "source=cli", "-m", "eq=a=b", log=log_path)
    assert (result.returncode, result.stdout) == (0, b"1\n")
    assert [event.meta for event in stored(log_path)] == [{"user": "ada", "source": "cli", "eq": "a=b"}]


def test_stream_short_option_assigns_versions_per_stream(log_path: str) -> None:
    outputs = [
        run_evlog("append", "deposit", "amount:=1", "-s", "account-7", log=log_path).stdout,
        run_evlog("append", "deposit", "amount:=2", "-s", "account-8", log=log_path).stdout,
        run_evlog("append", "withdraw", "amount:=3", "--stream", "account-7", log=log_path).stdout,
    ]
    assert outputs == [b"1\n", b"2\n", b"3\n"]
    assert [(e.seq, e.stream, e.version) for e in stored(log_path)] == [
        (1, "account-7", 1), (2, "account-8", 1), (3, "account-7", 2),
    ]


def test_default_output_is_the_seq_for_shell_capture(log_path: str) -> None:
    run_evlog("append", "first", log=log_path)
    command = f"{shlex.quote(sys.executable)} -m evlog append deposit amount:=1 --log {shlex.quote(log_path)}"
    script = f'seq=$({command}); echo "seq is [$seq]"'
    result = subprocess.run(["bash", "-c", script], capture_output=True, env=clean_env(), timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"seq is [2]\n", b"")


def test_output_json_prints_the_stored_event(log_path: str) -> None:
    result = run_evlog(
        "append", "deposit", "amount:=100", "-s", "account-7", "--id", "dep-1", "-m", "user=ada",
        "-o", "json", log=log_path,
    )
    assert result.returncode == 0 and result.stderr == b""
    assert result.stdout.endswith(b"\n") and result.stdout.count(b"\n") == 1
    printed = json.loads(result.stdout)
    assert list(printed) == ["seq", "ts", "type", "stream", "version", "id", "data", "meta"]
    [event] = stored(log_path)
    assert printed == event.to_dict()
    assert printed == {
        "seq": 1, "ts": event.ts_text, "type": "deposit", "stream": "account-7", "version": 1,
        "id": "dep-1", "data": {"amount": 100}, "meta": {"user": "ada"},
    }
    assert printed["ts"].endswith("Z") and len(printed["ts"].split(".")[1]) == 10  # nine digits and Z


# -- --expect and --id ---------------------------------------------------------


def test_expect_zero_on_new_stream_then_right_version_append(log_path: str) -> None:
    first = run_evlog("append", "opened", "-s", "acct", "--expect", "0", log=log_path)
    assert (first.returncode, first.stdout, first.stderr) == (0, b"1\n", b"")
    second = run_evlog("append", "deposit", "-s", "acct", "--expect", "1", "amount:=5", log=log_path)
    assert (second.returncode, second.stdout, second.stderr) == (0, b"2\n", b"")
    assert [(e.type, e.version) for e in stored(log_path)] == [("opened", 1), ("deposit", 2)]


@pytest.mark.parametrize("expect", ["0", "2", "7"])
def test_expect_wrong_version_exits_3_and_writes_nothing(log_path: str, expect: str) -> None:
    run_evlog("append", "opened", "-s", "acct", log=log_path)
    before = stored_dicts(log_path)
    result = run_evlog("append", "deposit", "-s", "acct", "--expect", expect, log=log_path)
    assert result.returncode == 3
    assert result.stdout == b""
    assert result.stderr.decode() == (
        f"evlog: stream 'acct' is at version 1, expected {expect}; nothing was written for this event\n"
    )
    assert stored_dicts(log_path) == before


def test_duplicate_id_prints_existing_seq_and_writes_nothing(log_path: str) -> None:
    first = run_evlog("append", "order.created", "--id", "order-17", "total:=12", log=log_path)
    run_evlog("append", "other", log=log_path)
    before = stored_dicts(log_path)
    again = run_evlog("append", "order.created", "--id", "order-17", "total:=12", log=log_path)
    assert (first.stdout, again.returncode, again.stdout) == (b"1\n", 0, b"1\n")
    assert again.stderr.decode() == "evlog: id 'order-17' is already in the log at seq 1; nothing appended\n"
    assert stored_dicts(log_path) == before
    assert stored(log_path)[0].data == {"total": 12}


def test_duplicate_id_with_output_json_prints_the_existing_event(log_path: str) -> None:
    run_evlog("append", "order.created", "--id", "order-17", "total:=12", log=log_path)
    again = run_evlog("append", "order.created", "--id", "order-17", "total:=99", "-o", "json", log=log_path)
    assert again.returncode == 0
    assert json.loads(again.stdout) == stored(log_path)[0].to_dict()
    assert len(stored(log_path)) == 1


# -- many events on stdin ---------------------------------------------------------


def test_ndjson_stdin_appends_every_key(log_path: str) -> None:
    lines = ndjson(
        {"type": "opened", "stream": "acct", "expect": 0, "id": "o-1", "meta": {"user": "ada"},
         "ts": "2023-01-01T00:00:00.000000001Z"},
        {"type": "deposit", "stream": "acct", "expect": 1, "data": {"amount": 100}, "ts": T0},
        {"type": "note", "data": "plain text"},
        {"type": "deposit", "stream": "acct", "data": [1, 2], "ts": "2099-01-01T02:00:00+02:00"},
        {"type": "tick", "seq": 99, "version": 42, "hash": "ignored", "data": None},
    )
    result = run_evlog("append", "--max-future", "100y", input=lines, log=log_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    events = stored_dicts(log_path)
    for event in events:
        del event["ts"]
    assert events == [
        {"seq": 1, "type": "opened", "stream": "acct", "version": 1, "id": "o-1", "data": {}, "meta": {"user": "ada"}},
        {"seq": 2, "type": "deposit", "stream": "acct", "version": 2, "id": None, "data": {"amount": 100}, "meta": {}},
        {"seq": 3, "type": "note", "stream": None, "version": None, "id": None, "data": "plain text", "meta": {}},
        {"seq": 4, "type": "deposit", "stream": "acct", "version": 3, "id": None, "data": [1, 2], "meta": {}},
        {"seq": 5, "type": "tick", "stream": None, "version": None, "id": None, "data": None, "meta": {}},
    ]
    ts = [event.ts for event in stored(log_path)]
    assert ts[0] == 1_672_531_200_000_000_001
    assert ts[1] == T0
    assert ts[2] >= T0  # no ts: the time now, but never before the last event
    assert ts[3] == 4_070_908_800_000_000_000  # 2099-01-01T00:00:00Z
    assert ts[4] == ts[3]


def test_ndjson_stdin_with_output_seq_prints_each_seq(log_path: str) -> None:
    result = run_evlog("append", "-", "-o", "seq", input=ndjson({"type": "a"}, {"type": "b"}), log=log_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"1\n2\n", b"")


def test_ndjson_stdin_duplicate_ids_are_noted_not_appended(log_path: str) -> None:
    run_evlog("append", "first", "--id", "x", log=log_path)
    result = run_evlog(
        "append", input=ndjson({"type": "first", "id": "x"}, {"type": "b", "id": "y"}, {"type": "b", "id": "y"}),
        log=log_path,
    )
    assert (result.returncode, result.stdout) == (0, b"")
    assert result.stderr.decode() == "evlog: appended 1 event (seq 2); 2 already present by id, not appended again\n"
    assert [(e.type, e.id) for e in stored(log_path)] == [("first", "x"), ("b", "y")]


def test_type_option_makes_each_line_the_data(log_path: str) -> None:
    lines = ndjson({"amount": 100}, 42, '"text"', [1, 2], None, True, {"nested": {"a": [1]}})
    result = run_evlog("append", "--type", "deposit", "-s", "account-7", "-m", "src=jq", input=lines, log=log_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    events = stored(log_path)
    assert [e.data for e in events] == [{"amount": 100}, 42, "text", [1, 2], None, True, {"nested": {"a": [1]}}]
    assert {(e.type, e.stream, e.id) for e in events} == {("deposit", "account-7", None)}
    assert [e.version for e in events] == [1, 2, 3, 4, 5, 6, 7]
    assert all(e.meta == {"src": "jq"} for e in events)


def test_msgpack_stdin_appends_a_stream_of_maps(log_path: str) -> None:
    maps = [
        {"type": "deposit", "stream": "acct", "data": {"amount": 100}, "meta": {"u": "ada"}, "id": "m-1", "ts": T0 - 1},
        {"type": "withdraw", "stream": "acct", "expect": 1, "data": [1.5, None, "x"], "ts": T0},
        {"type": "note"},
    ]
    payload = b"".join(msgpack.packb(item) for item in maps)
    result = run_evlog("append", "-i", "msgpack", input=payload, log=log_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    events = stored(log_path)
    assert [(e.seq, e.type, e.stream, e.version, e.id, e.data, e.meta) for e in events] == [
        (1, "deposit", "acct", 1, "m-1", {"amount": 100}, {"u": "ada"}),
        (2, "withdraw", "acct", 2, None, [1.5, None, "x"], {}),
        (3, "note", None, None, None, {}, {}),
    ]
    assert events[1].ts == T0


def test_msgpack_stdin_bad_map_stops_naming_byte_offset(log_path: str) -> None:
    first = msgpack.packb({"type": "a"})
    payload = first + msgpack.packb({"data": 1}) + msgpack.packb({"type": "c"})
    result = run_evlog("append", "-i", "msgpack", input=payload, log=log_path)
    assert result.returncode == 65
    assert err_lines(result) == [
        f'evlog: byte offset {len(first)}: missing "type" (every event needs one) (event 2)',
        "evlog: appended 1 event (seq 1); stopped at byte offset 8, nothing after it was written",
    ]
    assert [e.type for e in stored(log_path)] == ["a"]


def _varied_log(log_path: str) -> None:
    """A log with streams, ids, meta, several data kinds and events from several runs."""
    run_evlog("append", "deposit", "amount:=100", "currency=EUR", "-s", "account-7", "--id", "d-1",
              "-m", "user=ada", log=log_path)
    run_evlog("append", "--type", "reading", "-s", "sensor-ä", input=ndjson(1.25, -3, '"x"', None, [1, {"k": []}]),
              log=log_path)
    run_evlog("append", input=ndjson(
        {"type": "withdraw", "stream": "account-7", "data": {"amount": 30.5}, "meta": {"a": {"b": [1]}}},
        {"type": "order.created", "id": "o-1", "data": {"items": ["é", "😀"], "big": 18446744073709551615}},
        {"type": "note", "data": "line\nbreak\ttab"},
    ), log=log_path)


def test_replay_piped_into_append_copies_the_log_exactly(tmp_path: Path, log_path: str) -> None:
    _varied_log(log_path)
    copy = str(tmp_path / "copy.lmdb")
    py = shlex.quote(sys.executable)
    pipeline = f"{py} -m evlog replay --log {shlex.quote(log_path)} | {py} -m evlog append --log {shlex.quote(copy)}"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True, env=clean_env(),
                            timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    original, copied = stored(log_path), stored(copy)
    assert len(original) == 9
    assert copied == original  # seq, ts, type, stream, version, id, meta and the payload bytes
    info_a = json.loads(run_evlog("info", "-o", "json", log=log_path).stdout)
    info_b = json.loads(run_evlog("info", "-o", "json", log=copy).stdout)
    assert info_b["head_hash"] == info_a["head_hash"]
    assert info_b["log_id"] != info_a["log_id"]


def test_replay_msgpack_piped_into_append_msgpack_copies_the_log(tmp_path: Path, log_path: str) -> None:
    _varied_log(log_path)
    copy = str(tmp_path / "copy.lmdb")
    replayed = run_evlog("replay", "-o", "msgpack", log=log_path)
    assert replayed.returncode == 0
    result = run_evlog("append", "-i", "msgpack", input=replayed.stdout, log=copy)
    assert (result.returncode, result.stderr) == (0, b"")
    assert stored(copy) == stored(log_path)
    with Log(log_path) as a, Log(copy) as b:
        assert a.info()["head_hash"] == b.info()["head_hash"]


# -- bad input stops the run ---------------------------------------------------------

BAD_LINES = [
    # (id, bad line, exit code, reason in the message)
    ("invalid-json", '{"type": "a",', 65, "not valid JSON ("),
    ("array", "[1, 2]", 65, "expected a JSON object, got an array"),
    ("number", "42", 65, "expected a JSON object, got a number (42)"),
    ("missing-type", '{"data": {"n": 1}}', 65, 'missing "type" (every event needs one)'),
    ("unknown-key", '{"type": "a", "colour": "red"}', 65, "unknown key 'colour'"),
    ("type-not-string", '{"type": 7}', 65, '"type" must be a string, not a number (7)'),
    ("empty-type", '{"type": ""}', 65, '"type" must not be empty'),
    ("type-control-char", '{"type": "a\\u0007b"}', 65, "\"type\" 'a\\x07b' contains a control character"),
    ("type-201-bytes", json.dumps({"type": "é" * 100 + "x"}), 65, '"type" is longer than 200 bytes'),
    ("stream-401-bytes", json.dumps({"type": "a", "stream": "s" * 401}), 65, '"stream" is longer than 400 bytes'),
    ("ts-backwards", json.dumps({"type": "late", "ts": T0}), 65,
     '"ts" 2023-11-14T22:13:20.000000000Z is before the '),
    ("expect-conflict", json.dumps({"type": "a", "stream": "acct", "expect": 5}), 3,
     "stream 'acct' is at version 0, expected 5; nothing was written for this event"),
]


@pytest.mark.parametrize("batch_args, bad_at", [([], 3), (["--batch", "2"], 5)], ids=["one-batch", "after-batches"])
@pytest.mark.parametrize("bad, code, reason", [case[1:] for case in BAD_LINES], ids=[case[0] for case in BAD_LINES])
def test_bad_line_stops_keeping_what_came_before(
    log_path: str, batch_args: list[str], bad_at: int, bad: str, code: int, reason: str
) -> None:
    before = [good(n) for n in range(1, bad_at)]
    after = [good(n) for n in range(bad_at + 1, bad_at + 3)]
    result = run_evlog("append", *batch_args, input=ndjson(*before, bad, *after), log=log_path)
    assert result.returncode == code
    assert result.stdout == b""
    first, summary = err_lines(result)
    if code == 3:  # the conflict message names the line and the stream
        assert first == f"evlog: line {bad_at}: {reason}"
    else:
        assert first.startswith(f"evlog: line {bad_at}: {reason}")
    assert summary == (
        f"evlog: appended {bad_at - 1} events (seq 1-{bad_at - 1}); stopped at line {bad_at}, "
        "nothing after it was written"
    )
    assert [(e.seq, e.type, e.data, e.ts) for e in stored(log_path)] == [
        (n, "ok", {"n": n}, T0 + n) for n in range(1, bad_at)
    ]


def test_bad_first_line_writes_nothing(log_path: str) -> None:
    result = run_evlog("append", input=ndjson({"data": 1}, good(2)), log=log_path)
    assert result.returncode == 65
    assert err_lines(result) == [
        'evlog: line 1: missing "type" (every event needs one)',
        "evlog: appended 0 events; stopped at line 1, nothing after it was written",
    ]
    assert stored(log_path) == []


def test_type_of_exactly_200_bytes_is_accepted(log_path: str) -> None:
    name = "é" * 100  # 100 characters, 200 bytes of UTF-8
    result = run_evlog("append", input=ndjson({"type": name}), log=log_path)
    assert (result.returncode, result.stderr) == (0, b"")
    assert [e.type for e in stored(log_path)] == [name]


def test_stream_of_exactly_400_bytes_is_accepted(log_path: str) -> None:
    result = run_evlog("append", input=ndjson({"type": "a", "stream": "s" * 400}), log=log_path)
    assert (result.returncode, result.stderr) == (0, b"")
    assert [e.stream for e in stored(log_path)] == ["s" * 400]


def test_ts_before_the_logs_last_event_stops(log_path: str) -> None:
    run_evlog("append", input=ndjson({"type": "old", "ts": T0 + 1000}), log=log_path)
    result = run_evlog("append", input=ndjson(good(2000), good(2001), {"type": "late", "ts": T0 + 999}),
                       log=log_path)
    assert result.returncode == 65
    first, summary = err_lines(result)
    assert first == (
        'evlog: line 3: "ts" 2023-11-14T22:13:20.000000999Z is before the previous event '
        "(2023-11-14T22:13:20.000002001Z); times in a log never go backwards"
    )
    assert summary == "evlog: appended 2 events (seq 2-3); stopped at line 3, nothing after it was written"
    assert [(e.type, e.ts) for e in stored(log_path)] == [("old", T0 + 1000), ("ok", T0 + 2000), ("ok", T0 + 2001)]


def test_expect_conflict_in_a_line_after_stream_events(log_path: str) -> None:
    lines = ndjson(
        {"type": "a", "stream": "acct", "expect": 0},
        {"type": "b", "stream": "acct", "expect": 1},
        {"type": "c", "stream": "acct", "expect": 1},
        {"type": "d", "stream": "acct"},
    )
    result = run_evlog("append", input=lines, log=log_path)
    assert result.returncode == 3
    assert err_lines(result) == [
        "evlog: line 3: stream 'acct' is at version 2, expected 1; nothing was written for this event",
        "evlog: appended 2 events (seq 1-2); stopped at line 3, nothing after it was written",
    ]
    assert [(e.type, e.version) for e in stored(log_path)] == [("a", 1), ("b", 2)]


# -- --atomic ---------------------------------------------------------------------------


ATOMIC_CASES = [
    pytest.param(line, code, bad_at, id=f"{name}-line-{bad_at}")
    for name, line, code, positions in [
        ("invalid-json", "not json", 65, (1, 3, 5)),
        ("missing-type", '{"data": 1}', 65, (1, 3, 5)),
        ("expect-conflict", json.dumps({"type": "a", "stream": "acct", "expect": 9}), 3, (1, 3, 5)),
        ("ts-backwards", json.dumps({"type": "late", "ts": 1}), 65, (3, 5)),
    ]
    for bad_at in positions
]


@pytest.mark.parametrize("bad, code, bad_at", ATOMIC_CASES)
def test_atomic_bad_line_anywhere_writes_nothing(log_path: str, bad_at: int, bad: str, code: int) -> None:
    items: list[object] = [good(n) for n in range(1, 6)]
    items[bad_at - 1] = bad
    result = run_evlog("append", "--atomic", "--batch", "2", input=ndjson(*items), log=log_path)
    assert result.returncode == code
    assert result.stdout == b""
    lines = err_lines(result)
    assert len(lines) == 2 and lines[0].startswith("evlog: ")
    assert lines[1] == f"evlog: stopped at line {bad_at}; --atomic: nothing was written"
    assert stored(log_path) == []


def test_atomic_good_input_writes_everything(log_path: str) -> None:
    result = run_evlog("append", "--atomic", input=ndjson(*[good(n) for n in range(1, 6)]), log=log_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert [(e.seq, e.data, e.ts) for e in stored(log_path)] == [(n, {"n": n}, T0 + n) for n in range(1, 6)]


# -- --skip-invalid and --rejects ----------------------------------------------------------------


def _mixed_input() -> bytes:
    return ndjson(
        good(1), "{broken", good(3), {"data": 4}, good(5), {"type": "x", "ts": "1970-01-01T00:00:00.000000007Z"}
    )


def test_skip_invalid_reports_and_writes_the_good_lines(log_path: str) -> None:
    result = run_evlog("append", "--skip-invalid", "--batch", "2", input=_mixed_input(), log=log_path)
    assert (result.returncode, result.stdout) == (0, b"")
    lines = err_lines(result)
    assert len(lines) == 4
    assert lines[0].startswith("evlog: skipped: line 2: not valid JSON (")
    assert lines[1] == 'evlog: skipped: line 4: missing "type" (every event needs one)'
    assert lines[2].startswith(
        'evlog: skipped: line 6: "ts" 1970-01-01T00:00:00.000000007Z is before the previous event'
    )
    assert lines[3] == "evlog: appended 3 events (seq 1-3); skipped 3 invalid"
    assert [(e.seq, e.data) for e in stored(log_path)] == [(1, {"n": 1}), (2, {"n": 3}), (3, {"n": 5})]


def test_skip_invalid_with_rejects_file_records_ndjson(tmp_path: Path, log_path: str) -> None:
    rejects = tmp_path / "rejects.ndjson"
    result = run_evlog("append", "--skip-invalid", "--rejects", str(rejects), input=_mixed_input(), log=log_path)
    assert (result.returncode, result.stdout) == (0, b"")
    assert result.stderr.decode() == "evlog: appended 3 events (seq 1-3); skipped 3 invalid\n"
    records = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [list(record) for record in records] == [["line", "reason", "input"]] * 3
    assert [(r["line"], r["input"]) for r in records] == [
        (2, "{broken"), (4, '{"data": 4}'), (6, '{"type": "x", "ts": "1970-01-01T00:00:00.000000007Z"}'),
    ]
    assert records[0]["reason"].startswith("not valid JSON (")
    assert records[1]["reason"] == 'missing "type" (every event needs one)'
    assert records[2]["reason"].startswith('"ts" 1970-01-01T00:00:00.000000007Z is before the previous event')
    assert [e.data for e in stored(log_path)] == [{"n": 1}, {"n": 3}, {"n": 5}]


def test_rejects_without_skip_invalid_is_usage_error(tmp_path: Path, log_path: str) -> None:
    result = run_evlog("append", "--rejects", str(tmp_path / "r"), input=ndjson({"type": "a"}), log=log_path)
    assert (result.returncode, result.stderr) == (2, b"evlog: --rejects goes with --skip-invalid\n")
    assert stored(log_path) == []


def test_skip_invalid_conflict_is_recorded_with_its_line(tmp_path: Path, log_path: str) -> None:
    rejects = tmp_path / "rejects.ndjson"
    lines = ndjson({"type": "a", "stream": "acct"}, {"type": "b", "stream": "acct", "expect": 0}, {"type": "c"})
    result = run_evlog("append", "--skip-invalid", "--rejects", str(rejects), input=lines, log=log_path)
    assert result.returncode == 0
    [record] = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert record == {
        "line": 2,
        "reason": "stream 'acct' is at version 1, expected 0; nothing was written for this event",
        "input": '{"type": "b", "stream": "acct", "expect": 0}',
    }
    assert [e.type for e in stored(log_path)] == ["a", "c"]


def test_skip_invalid_conflict_on_stderr_names_its_line(log_path: str) -> None:
    """Regression: a skipped expect conflict used to be reported without its line number."""
    lines = ndjson({"type": "a", "stream": "acct"}, {"type": "b", "stream": "acct", "expect": 0}, {"type": "c"})
    result = run_evlog("append", "--skip-invalid", input=lines, log=log_path)
    assert result.returncode == 0
    assert [e.type for e in stored(log_path)] == ["a", "c"]
    assert err_lines(result)[0].startswith("evlog: skipped: line 2: ")


def test_skip_invalid_reports_a_rejected_line_once_when_the_map_grows(tmp_path: Path, log_path: str) -> None:
    """Regression: each retry of a transaction after map growth reported the rejected line again."""
    rejects = tmp_path / "rejects.ndjson"
    lines = [{"type": "a", "stream": "s", "expect": 5}] + [{"type": "b", "data": "x" * 1000}] * 3000
    result = run_evlog("append", "--skip-invalid", "--rejects", str(rejects), input=ndjson(*lines),
                       log=log_path, env={"EVLOG_MAP_SIZE": "1M"})
    assert result.returncode == 0
    assert result.stderr.decode() == "evlog: appended 3,000 events (seq 1-3000); skipped 1 invalid\n"
    assert len(stored(log_path)) == 3000
    assert [json.loads(line)["line"] for line in rejects.read_text().splitlines()] == [1]


def test_integer_beyond_64_bits_on_stdin_is_refused_like_in_fields(log_path: str) -> None:
    """Regression: orjson read such integers as rounded floats, silently, while fields refused them."""
    field = run_evlog("append", "t", "n:=123456789012345678901234567890", log=log_path)
    assert field.returncode == 2  # refused as an argument
    result = run_evlog("append", input=b'{"type": "t", "data": {"n": 123456789012345678901234567890}}\n',
                       log=log_path)
    assert result.returncode == 65
    assert err_lines(result)[0].startswith("evlog: line 1: ")
    assert stored(log_path) == []


# -- accepted oddities -----------------------------------------------------------------------


def test_blank_lines_bom_crlf_and_missing_final_newline_are_accepted(log_path: str) -> None:
    raw = (
        b"\xef\xbb\xbf" + b'{"type": "a"}\r\n'
        + b"\r\n\n   \n\t\n"
        + b'{"type": "b", "data": 1}\r\n'
        + b'{"type": "c", "data": "last"}'
    )
    result = run_evlog("append", input=raw, log=log_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert [(e.seq, e.type, e.data) for e in stored(log_path)] == [(1, "a", {}), (2, "b", 1), (3, "c", "last")]


def test_line_numbers_count_blank_lines(log_path: str) -> None:
    raw = b"\xef\xbb\xbf" + b'{"type": "a"}\r\n\r\n\n{"type": 5}\r\n'
    result = run_evlog("append", input=raw, log=log_path)
    assert result.returncode == 65
    assert err_lines(result) == [
        'evlog: line 4: "type" must be a string, not a number (5)',
        "evlog: appended 1 event (seq 1); stopped at line 4, nothing after it was written",
    ]
    assert [e.type for e in stored(log_path)] == ["a"]


def test_type_option_accepts_crlf_and_last_line_without_newline(log_path: str) -> None:
    result = run_evlog("append", "-t", "n", input=b'"x"\r\n\r\n2\r\n[3]', log=log_path)
    assert (result.returncode, result.stderr) == (0, b"")
    assert [e.data for e in stored(log_path)] == ["x", 2, [3]]


def test_empty_stdin_appends_nothing(log_path: str) -> None:
    result = run_evlog("append", input=b"", log=log_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert stored(log_path) == []


# -- reading never creates a log; help and errors -----------------------------------------------


@pytest.mark.parametrize("command", [["replay"], ["info"], ["info", "-o", "json"]])
def test_reading_a_missing_log_exits_66_and_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    missing = str(tmp_path / "missing")
    result = run_evlog(*command, log=missing)
    assert result.returncode == 66
    assert result.stdout == b""
    [line] = err_lines(result)
    assert line.startswith("evlog: ") and missing in line
    assert not os.path.exists(missing)


def test_no_arguments_prints_help(log_path: str) -> None:
    result = run_evlog()
    assert result.returncode == 0
    text = (result.stdout + result.stderr).decode()
    assert "Usage: evlog" in text
    for command in ("append", "replay", "info"):
        assert command in text


def test_error_message_is_one_line_without_traceback(log_path: str) -> None:
    run_evlog("append", "a", "-s", "acct", log=log_path)
    result = run_evlog("append", "b", "-s", "acct", "--expect", "0", log=log_path)
    assert result.returncode == 3
    assert result.stderr.decode() == (
        "evlog: stream 'acct' is at version 1, expected 0; nothing was written for this event\n"
    )
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize("how", ["--debug", "EVLOG_DEBUG=1"])
def test_debug_shows_the_traceback(log_path: str, how: str) -> None:
    run_evlog("append", "a", "-s", "acct", log=log_path)
    args = ["append", "b", "-s", "acct", "--expect", "0"]
    if how == "--debug":
        result = run_evlog(*args, "--debug", log=log_path)
    else:
        result = run_evlog(*args, log=log_path, env={"EVLOG_DEBUG": "1"})
    # The exception escapes (so Python's own exit status, not the error's 3).
    assert result.returncode != 0
    text = result.stderr.decode()
    assert text.startswith("Traceback (most recent call last):")
    assert "evlog.errors.ConflictError: stream 'acct' is at version 1, expected 0" in text
    assert len(stored(log_path)) == 1


UNFORESEEN_OS_ERROR = """
import sys
import evlog.log
from evlog.cli import main


def info(self):
    raise PermissionError(13, "Permission denied", self.path + "/data.mdb")


evlog.log.Log.info = info
main(sys.argv[1:])
"""


@pytest.mark.parametrize("debug", [False, True])
def test_an_unforeseen_os_error_is_exit_74_without_traceback(tmp_path: Path, debug: bool) -> None:
    log = str(tmp_path / "events.lmdb")
    run_evlog("append", "a", log=log)
    hook = tmp_path / "hook.py"
    hook.write_text(UNFORESEEN_OS_ERROR)
    args = [sys.executable, str(hook), "info", "--log", log, *(["--debug"] if debug else [])]
    result = subprocess.run(args, capture_output=True, timeout=60)
    text = result.stderr.decode()
    if debug:
        assert text.startswith("Traceback (most recent call last):") and "PermissionError" in text
    else:
        assert (result.returncode, result.stdout) == (74, b"")
        assert text == f"evlog: Permission denied: {log}/data.mdb; run with --debug for details\n"


# -- live batching ---------------------------------------------------------------------------


def _wait_for_events(log_path: str, count: int, deadline: float) -> list[Event]:
    """Poll the log until it holds ``count`` events or ``deadline`` (monotonic) passes."""
    events: list[Event] = []
    while time.monotonic() < deadline:
        events = stored(log_path)
        if len(events) >= count:
            break
        time.sleep(0.02)
    return events


def test_live_producer_events_are_visible_while_stdin_stays_open(log_path: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "evlog", "append", "--log", log_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
    )
    try:
        assert process.stdin is not None
        process.stdin.write(b'{"type": "live", "data": 1}\n')
        process.stdin.flush()
        events = _wait_for_events(log_path, 1, time.monotonic() + 2.0)
        assert [(e.type, e.data) for e in events] == [("live", 1)]
        assert process.poll() is None  # still running: committed on input idle, not at end of input
        process.stdin.write(b'{"type": "live", "data": 2}\n')
        process.stdin.flush()
        events = _wait_for_events(log_path, 2, time.monotonic() + 2.0)
        assert [(e.type, e.data) for e in events] == [("live", 1), ("live", 2)]
        process.stdin.close()
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None and process.stderr is not None
        assert (process.stdout.read(), process.stderr.read()) == (b"", b"")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(stored(log_path)) == 2


# -- given times: never far ahead, never in another unit ---------------------------------------


def now_plus(seconds: float) -> str:
    moment = time.time() + seconds
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + "Z"


def test_a_future_ts_is_refused_saying_what_the_log_clock_would_become(log_path: str) -> None:
    lines = ndjson({"type": "before"}, {"type": "x", "ts": "2100-01-01T00:00:00Z"}, {"type": "after"})
    result = run_evlog("append", input=lines, log=log_path)
    assert (result.returncode, result.stdout) == (65, b"")
    first, summary = err_lines(result)
    assert first.startswith('evlog: line 2: "ts" 2100-01-01T00:00:00Z is 73 years in the future, ')
    assert "more than the 5 minutes allowed (--max-future)" in first
    assert "every later event would be stamped 2100-01-01T00:00:00Z or after" in first
    assert summary == "evlog: appended 1 event (seq 1); stopped at line 2, nothing after it was written"
    assert [e.type for e in stored(log_path)] == ["before"]
    # The log's clock was not moved: the next event gets the time of now.
    assert run_evlog("append", "later", log=log_path).returncode == 0
    assert stored(log_path)[-1].ts < time.time_ns() + 60 * 10**9


def test_a_ts_within_the_skew_is_accepted_and_max_future_allows_more(log_path: str) -> None:
    soon, later = now_plus(60), now_plus(3600)
    accepted = run_evlog("append", input=ndjson({"type": "soon", "ts": soon}), log=log_path)
    assert (accepted.returncode, accepted.stderr) == (0, b"")
    refused = run_evlog("append", input=ndjson({"type": "later", "ts": later}), log=log_path)
    assert refused.returncode == 65
    assert "is 59 minutes in the future, more than the 5 minutes allowed" in refused.stderr.decode()
    allowed = run_evlog("append", "--max-future", "2h", input=ndjson({"type": "later", "ts": later}), log=log_path)
    assert (allowed.returncode, allowed.stderr) == (0, b"")
    assert [e.type for e in stored(log_path)] == ["soon", "later"]
    tight = run_evlog("append", "--max-future", "0", input=ndjson({"type": "x", "ts": now_plus(30)}), log=log_path)
    assert tight.returncode == 65


@pytest.mark.parametrize(
    "value, hint",
    [
        (1700000000, '"ts" 1700000000 looks like seconds, but an integer "ts" is nanoseconds since 1970 '
                     '(this one would be 1970-01-01T00:00:01.7Z); write 1700000000000000000 or '
                     '"2023-11-14T22:13:20Z" (RFC 3339)'),
        (1700000000123, '"ts" 1700000000123 looks like milliseconds, but an integer "ts" is nanoseconds since 1970 '
                        '(this one would be 1970-01-01T00:28:20.000000123Z); write 1700000000123000000 or '
                        '"2023-11-14T22:13:20.123Z" (RFC 3339)'),
        (1700000000123456, '"ts" 1700000000123456 looks like microseconds'),
        (5, '"ts" 5 looks like seconds, but an integer "ts" is nanoseconds since 1970 '
            '(this one would be 1970-01-01T00:00:00.000000005Z); write "1970-01-01T00:00:05Z" (RFC 3339)'),
    ],
)
def test_an_integer_ts_in_another_unit_is_refused_with_a_hint(log_path: str, value: int, hint: str) -> None:
    result = run_evlog("append", input=ndjson(good(1), {"type": "x", "ts": value}, good(3)), log=log_path)
    assert result.returncode == 65
    assert err_lines(result)[0].startswith(f"evlog: line 2: {hint}")
    assert [e.data for e in stored(log_path)] == [{"n": 1}]


def test_integer_nanoseconds_are_accepted_and_msgpack_integers_checked_alike(log_path: str) -> None:
    result = run_evlog("append", input=ndjson({"type": "ns", "ts": 1700000000000000000}), log=log_path)
    assert (result.returncode, result.stderr) == (0, b"")
    plausible = msgpack.packb({"type": "int", "ts": T0 + 1})
    seconds = msgpack.packb({"type": "int", "ts": 1700000002})
    result = run_evlog("append", "-i", "msgpack", input=plausible + seconds, log=log_path)
    assert result.returncode == 65
    reason = f'evlog: byte offset {len(plausible)}: "ts" 1700000002 looks like seconds'
    assert err_lines(result)[0].startswith(reason)
    assert [(e.type, e.ts) for e in stored(log_path)] == [("ns", T0), ("int", T0 + 1)]


def test_skip_invalid_skips_times_ahead_or_in_other_units(tmp_path: Path, log_path: str) -> None:
    rejects = tmp_path / "rejects.ndjson"
    lines = ndjson({"type": "x", "ts": "2100-01-01T00:00:00Z"}, {"type": "y", "ts": 1700000000}, {"type": "ok"})
    result = run_evlog("append", "--skip-invalid", "--rejects", str(rejects), input=lines, log=log_path)
    assert (result.returncode, result.stderr) == (0, b"evlog: appended 1 event (seq 1); skipped 2 invalid\n")
    records = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [record["line"] for record in records] == [1, 2]
    assert "every later event would be stamped 2100-01-01T00:00:00Z" in records[0]["reason"]
    assert records[1]["reason"].startswith('"ts" 1700000000 looks like seconds')
    assert [e.type for e in stored(log_path)] == ["ok"]
    assert stored(log_path)[0].ts < time.time_ns() + 60 * 10**9


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--max-future", "soon", "--max-future 'soon' is not a duration"),
        ("--max-line", "12X", "--max-line '12X' is not a size"),
        ("--max-line", "0", "--max-line '0' is no size for a line"),
    ],
)
def test_limits_that_are_not_sizes_or_durations_are_usage_errors(
    log_path: str, option: str, value: str, message: str
) -> None:
    result = run_evlog("append", option, value, input=ndjson(good(1)), log=log_path)
    assert result.returncode == 2
    assert err_lines(result)[0].startswith(f"evlog: {message}")


# -- ids given again ---------------------------------------------------------------------------


def test_output_seq_prints_one_line_per_input_event_duplicates_included(log_path: str) -> None:
    run_evlog("append", "first", "--id", "k0", log=log_path)
    lines = ndjson({"type": "a", "id": "k1"}, {"type": "b"}, {"type": "a", "id": "k1"}, {"type": "first", "id": "k0"},
                   {"type": "c"})
    for batch in ("1", "10000"):
        result = run_evlog("append", "-o", "seq", "--batch", batch, input=lines, log=log_path)
        assert result.returncode == 0, result.stderr
        if batch == "1":
            assert result.stdout == b"2\n3\n2\n1\n4\n"
        else:  # everything is there already but "b" and "c", which have no id
            assert result.stdout == b"2\n5\n2\n1\n6\n"


def test_output_ndjson_prints_the_existing_event_for_a_duplicate(log_path: str) -> None:
    once = {"type": "a", "id": "k1", "data": {"n": 1}}
    lines = ndjson(once, {"type": "b"}, once)
    result = run_evlog("append", "-o", "ndjson", input=lines, log=log_path)
    assert result.returncode == 0
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(event["seq"], event["type"]) for event in printed] == [(1, "a"), (2, "b"), (1, "a")]
    assert printed[2] == printed[0]


def test_output_seq_prints_the_events_written_before_a_stop(log_path: str) -> None:
    lines = ndjson({"type": "a", "stream": "s"}, {"type": "a", "id": "k"}, {"type": "a", "id": "k"},
                   {"type": "a", "stream": "s", "expect": 5}, {"type": "z"})
    result = run_evlog("append", "-o", "seq", input=lines, log=log_path)
    assert (result.returncode, result.stdout) == (3, b"1\n2\n2\n")
    assert err_lines(result)[1] == "evlog: appended 2 events (seq 1-2); 1 already present by id, not appended again; " \
        "stopped at line 4, nothing after it was written"


def test_an_id_given_again_with_other_content_warns(log_path: str) -> None:
    run_evlog("append", input=ndjson({"type": "paid", "id": "p-1", "data": {"amount": 5, "cur": "EUR"}}), log=log_path)
    lines = ndjson(
        {"type": "paid", "id": "p-1", "data": {"cur": "EUR", "amount": 5}, "meta": {"retry": 2}},  # the same event
        {"type": "paid", "id": "p-1", "data": {"amount": 7, "cur": "EUR"}},
        {"type": "refund", "id": "p-1", "data": {"amount": 5, "cur": "EUR"}},
        {"type": "paid", "id": "p-1", "stream": "s", "data": {"amount": 5, "cur": "EUR"}},
        {"type": "next"},
    )
    result = run_evlog("append", "-o", "seq", input=lines, log=log_path)
    assert (result.returncode, result.stdout) == (0, b"1\n1\n1\n1\n2\n")
    assert err_lines(result) == [
        f"evlog: warning: line {line}: id 'p-1' is already in the log at seq 1 with other {what}; "
        "not appended again (--strict-ids refuses this)"
        for line, what in ((2, "data"), (3, "type"), (4, "stream"))
    ] + ["evlog: appended 1 event (seq 2); 4 already present by id, not appended again"]


def test_strict_ids_refuses_an_id_given_again_with_other_content(tmp_path: Path, log_path: str) -> None:
    lines = ndjson({"type": "a", "id": "k", "data": 1}, {"type": "a", "id": "k", "data": 1}, {"type": "b", "data": 3},
                   {"type": "a", "id": "k", "data": 2}, {"type": "b", "data": 5})
    result = run_evlog("append", "--strict-ids", "-o", "seq", input=lines, log=log_path)
    assert (result.returncode, result.stdout) == (65, b"1\n1\n2\n")
    assert err_lines(result) == [
        "evlog: line 4: id 'k' is already in the log at seq 1 with other data; an id names one event (--strict-ids)",
        "evlog: appended 2 events (seq 1-2); 1 already present by id, not appended again; "
        "stopped at line 4, nothing after it was written",
    ]
    rejects = tmp_path / "rejects.ndjson"
    skipped = run_evlog("append", "--strict-ids", "--skip-invalid", "--rejects", str(rejects),
                        input=ndjson({"type": "a", "id": "k", "data": 3}, {"type": "b", "data": 6}), log=log_path)
    assert skipped.returncode == 0
    assert [json.loads(line)["line"] for line in rejects.read_text().splitlines()] == [1]
    assert [e.data for e in stored(log_path)] == [1, 3, 6]


def test_one_event_with_an_id_given_again_with_other_content(log_path: str) -> None:
    run_evlog("append", "order.created", "--id", "order-17", "total:=12", log=log_path)
    again = run_evlog("append", "order.created", "--id", "order-17", "total:=99", log=log_path)
    assert (again.returncode, again.stdout) == (0, b"1\n")
    assert again.stderr.decode() == (
        "evlog: warning: id 'order-17' is already in the log at seq 1 with other data; nothing appended "
        "(--strict-ids refuses this)\n"
    )
    strict = run_evlog("append", "order.created", "--id", "order-17", "total:=99", "--strict-ids", log=log_path)
    assert (strict.returncode, strict.stdout) == (65, b"")
    assert strict.stderr.decode() == (
        "evlog: id 'order-17' is already in the log at seq 1 with other data; an id names one event (--strict-ids)\n"
    )
    assert [e.data for e in stored(log_path)] == [{"total": 12}]
