"""Hostile input on `evlog append`'s stdin, NDJSON and msgpack.

Every input is either appended faithfully (``evlog replay`` gives it back
identically) or refused with exit 65 and a message naming the line (or the
byte offset) and the reason, the events before it committed; never a
traceback, and the log verifies afterwards. Cases by hand first, then
hypothesis: arbitrary bytes never produce a traceback or an exit code
outside {0, 65}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from conftest import run_evlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evlog import Log

GOOD = b'{"type": "good", "data": {"k": 1}}\n'


def append(log: str, data: bytes, *args: str) -> Any:
    run = run_evlog("append", *args, log=log, input=data, timeout=120)
    assert b"Traceback" not in run.stderr, run.stderr.decode(errors="replace")
    assert run.returncode in (0, 65), run.stderr
    return run


def assert_refused(run: Any, *, line: int | None = None, offset: int | None = None, reason: str = "") -> str:
    """Exit 65, one `evlog: line N: reason` (or byte offset) line and the summary of what was written."""
    assert run.returncode == 65, run.stderr
    text = run.stderr.decode()
    first, _, rest = text.partition("\n")
    where = f"line {line}: " if line is not None else f"byte offset {offset}: "
    assert first.startswith(f"evlog: {where}"), text
    assert reason.lower() in first.lower(), text
    assert rest.startswith("evlog: appended ") and "nothing after it was written" in rest, text
    return str(first)


def verify_ok(log: str) -> None:
    if not os.path.exists(os.path.join(log, "data.mdb")):
        return  # nothing was appended, and no log was created
    verified = run_evlog("verify", log=log)
    assert verified.returncode == 0, (verified.stdout, verified.stderr)


def replayed(log: str) -> list[dict[str, Any]]:
    run = run_evlog("replay", log=log, timeout=120)
    assert run.returncode == 0 and b"Traceback" not in run.stderr, run.stderr[-3000:]
    return [json.loads(line) for line in run.stdout.splitlines()]


def stored_types(log: str) -> list[str]:
    """The types of the stored events, read in this process (faster than a replay subprocess)."""
    with Log(log) as opened:
        return [event.type for event in opened.read()]


def stored_count(log: str) -> int:
    if not os.path.exists(os.path.join(log, "data.mdb")):
        return 0
    with Log(log) as opened:
        return opened.head()


# -- NDJSON by hand -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"type": "a", "data": "\xff\xfe"}', "not valid JSON"),  # invalid UTF-8 in a string
        (b'{"type": "a", "data": "caf\xc3"}', "not valid JSON"),  # a truncated UTF-8 sequence
        (b'{"type": "a", "data": 1}\xff', "not valid JSON"),  # outside a string
        (b'{"type": "a", "data": "x\x00y"}', "not valid JSON"),  # a raw NUL in a string
        (b'{"type": "a"}\x00', "not valid JSON"),  # a raw NUL after the object
        (b'{"type": "a\\u0000"}', "control character"),  # NUL in a type
        (b'{"type": "a", "stream": "s\\u0000"}', "control character"),  # NUL in a stream
        (b'{"type": "a\\u001b[31m"}', "control character"),  # a terminal escape in a type
        (b'{"type": "a", "data": NaN}', "not valid JSON"),
        (b'{"type": "a", "data": Infinity}', "not valid JSON"),
        (b'{"type": "a", "data": [-Infinity]}', "not valid JSON"),
        (b'{"type": "a", "data": 1e400}', "not valid JSON"),  # a float beyond double: infinity
        (b'{"type": "a", "data": 18446744073709551616}', "64 bits"),  # 2**64
        (b'{"type": "a", "data": -9223372036854775809}', "64 bits"),  # -2**63 - 1
        (b'{"type": "a", "data": {"x": [1, 340282366920938463463374607431768211456]}}', "64 bits"),
        (b'{"type": "a", "meta": {"x": 99999999999999999999999}}', "64 bits"),
        (b'{"type": "a", "expect": 18446744073709551616, "stream": "s"}', "64 bits"),
        (b'{"type": "a", "ts": 18446744073709551616}', "64 bits"),
        (b'{"type": "a", "data": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "not valid JSON"),  # 10,000 deep
        (b"[" * 10_000, "not valid JSON"),
        (b'"just a string"', "expected a JSON object"),
        (b'{"data": 1}', 'missing "type"'),
        (b'{"type": ""}', "must not be empty"),
        (b'{"type": "a", "bogus": 1}', "unknown key"),
    ],
)
def test_a_bad_line_is_refused_naming_it(tmp_path: Path, line: bytes, reason: str) -> None:
    log = str(tmp_path / "events.lmdb")
    run = append(log, GOOD + b"\n" + line + b"\n" + GOOD)  # the bad line is line 3 (line 2 is blank)
    assert_refused(run, line=3, reason=reason)
    assert "appended 1 event (seq 1)" in run.stderr.decode()
    assert stored_types(log) == ["good"]
    verify_ok(log)


def test_nul_in_data_meta_and_id_round_trips(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    values: list[dict[str, Any]] = [
        {"type": "nul", "data": "\u0000"},
        {"type": "nul", "data": {"\u0000key": ["a\u0000b", "\u0000\u0000"], "k": "\u0001\u001f\u007f\u0085"}},
        {"type": "nul", "meta": {"m": "x\u0000y", "\u0000": 1}, "data": None},
        {"type": "nul", "id": "id\u0000with-nul", "data": 3},
    ]
    run = append(log, b"".join(json.dumps(v).encode() + b"\n" for v in values))
    assert (run.returncode, run.stderr) == (0, b"")
    events = replayed(log)
    for event, value in zip(events, values, strict=True):
        assert event["data"] == value.get("data", {})
        assert event["meta"] == value.get("meta", {})
        assert event["id"] == value.get("id")
    # The same strings again through msgpack: identical.
    again = run_evlog("replay", "-o", "msgpack", log=log)
    copy = str(tmp_path / "copy.lmdb")
    assert append(copy, again.stdout, "-i", "msgpack").returncode == 0
    assert [e["data"] for e in replayed(copy)] == [e["data"] for e in events]
    verify_ok(log)


def test_bom_crlf_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    data = (
        b"\xef\xbb\xbf"  # a UTF-8 byte-order mark at the start
        + b'{"type": "first", "data": "\xc3\xa9"}\r\n'
        + b"\r\n\n   \n\t\n"
        + b'{"type": "second", "data": [1, 2]}\r\n'
        + b'{"type": "third"}'  # no line end at the end of input
    )
    run = append(log, data)
    assert (run.returncode, run.stderr) == (0, b"")
    assert [(e["type"], e["data"]) for e in replayed(log)] == [("first", "é"), ("second", [1, 2]), ("third", {})]
    # Blank lines count as lines when a later one is refused.
    bad = append(log, b"\r\n\n" + GOOD + b"\r\n" + b'{"type": 5}\r\n')
    assert_refused(bad, line=5, reason='"type" must be a string')
    verify_ok(log)


def test_a_bom_later_in_the_input_is_not_skipped(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    run = append(log, GOOD + b"\xef\xbb\xbf" + GOOD)
    assert_refused(run, line=2, reason="not valid JSON")
    verify_ok(log)


def test_64_bit_limits_round_trip_exactly(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    limits = [2**64 - 1, -(2**63), 2**63, 2**63 - 1, -(2**63) + 1, 0]
    lines: list[dict[str, Any]] = [
        {"type": "limits", "data": limits},
        {"type": "limits", "data": {"max": 2**64 - 1, "min": -(2**63)}, "meta": {"max": 2**64 - 1}},
        {"type": "limits", "data": 2**64 - 1},
        {"type": "limits", "data": -(2**63)},
        {"type": "limits", "data": [1.5, -0.0, 1e308, 5e-324, 0.1]},
    ]
    run = append(log, b"".join(json.dumps(v).encode() + b"\n" for v in lines))
    assert (run.returncode, run.stderr) == (0, b"")
    events = replayed(log)
    assert [e["data"] for e in events] == [v["data"] for v in lines]
    assert events[1]["meta"] == {"max": 2**64 - 1}
    # The printed text keeps the integers exactly (no float rounding anywhere).
    text = run_evlog("replay", log=log).stdout
    assert b"18446744073709551615" in text and b"-9223372036854775808" in text
    verify_ok(log)


@pytest.mark.parametrize(("length", "ok"), [(200, True), (201, False)])
def test_type_length_limit(tmp_path: Path, length: int, ok: bool) -> None:
    check_name_limit(str(tmp_path / "events.lmdb"), "type", length, ok)


@pytest.mark.parametrize(("length", "ok"), [(400, True), (401, False)])
def test_stream_length_limit(tmp_path: Path, length: int, ok: bool) -> None:
    check_name_limit(str(tmp_path / "events.lmdb"), "stream", length, ok)


@pytest.mark.parametrize(("length", "ok"), [(400, True), (401, False)])
def test_id_length_limit(tmp_path: Path, length: int, ok: bool) -> None:
    check_name_limit(str(tmp_path / "events.lmdb"), "id", length, ok)


def check_name_limit(log: str, field: str, length: int, ok: bool) -> None:
    """A name of ``length`` bytes, in ASCII and in two-byte characters (limits count UTF-8 bytes)."""
    for name in ("n" * length, "é" * (length // 2) + "n" * (length % 2)):
        assert len(name.encode()) == length
        event = {"type": "t", field: name} if field != "type" else {"type": name}
        run = append(log, json.dumps(event, ensure_ascii=False).encode() + b"\n")
        if ok:
            assert (run.returncode, run.stderr) == (0, b"")
            assert replayed(log)[-1][field] == name
        else:
            assert_refused(run, line=1, reason=f'"{field}" is longer than')
    verify_ok(log)


def test_a_10_mb_line(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    value = {"text": "ünïcödé " * 1_000_000, "list": list(range(50_000))}
    line = json.dumps({"type": "huge", "data": value}, ensure_ascii=False).encode()
    assert len(line) > 10_000_000
    run = append(log, GOOD + line + b"\n" + GOOD)
    if run.returncode == 0:
        events = replayed(log)
        assert [e["type"] for e in events] == ["good", "huge", "good"]
        assert events[1]["data"] == value
    else:
        first = assert_refused(run, line=2)
        assert len(first) < 1000  # a clear message, not the line echoed back
    verify_ok(log)


@pytest.mark.parametrize("depth", [50, 120])  # {"a": [ ... ]}: two levels each
def test_deep_nesting_that_is_accepted_replays(tmp_path: Path, depth: int) -> None:
    log = str(tmp_path / "events.lmdb")
    data = b'{"type": "deep", "data": ' + b'{"a": [' * depth + b"1" + b"]}" * depth + b"}\n"
    run = append(log, data)
    if run.returncode == 65:
        assert_refused(run, line=1)
        return
    events = replayed(log)
    assert events[0]["data"] == json.loads(data)["data"]
    verify_ok(log)


@pytest.mark.parametrize("depth", [254, 300, 600, 1000])
def test_deep_nesting_is_refused_or_replays(tmp_path: Path, depth: int) -> None:
    log = str(tmp_path / "events.lmdb")
    data = b'{"type": "deep", "data": ' + b"[" * depth + b"]" * depth + b"}\n"
    run = append(log, data)
    if run.returncode == 65:
        assert_refused(run, line=1)
        return
    replay = run_evlog("replay", log=log)
    assert replay.returncode == 0 and b"Traceback" not in replay.stderr, replay.stderr[-500:]


def test_deep_nesting_with_a_long_number_is_refused_cleanly(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    depth = 1000
    data = b'{"type": "deep", "data": ' + b"[" * depth + b"1234567890123456789" + b"]" * depth + b"}\n"
    run = run_evlog("append", log=log, input=GOOD + data)
    assert b"Traceback" not in run.stderr, run.stderr[-300:]
    assert_refused(run, line=2)


@pytest.mark.parametrize("ts", ["2600-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z"])
def test_a_time_beyond_64_bits_of_nanoseconds_is_refused(tmp_path: Path, ts: str) -> None:
    log = str(tmp_path / "events.lmdb")
    run = run_evlog("append", log=log, input=GOOD + json.dumps({"type": "late", "ts": ts}).encode() + b"\n")
    assert b"Traceback" not in run.stderr, run.stderr[-300:]
    assert_refused(run, line=2, reason='"ts"')


def test_the_latest_time_that_fits_is_accepted(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    run = append(log, b'{"type": "late", "ts": 18446744073709551615}\n{"type": "later"}\n', "--max-future", "600y")
    assert (run.returncode, run.stderr) == (0, b"")
    events = replayed(log)
    assert [e["ts"] for e in events] == ["2554-07-21T23:34:33.709551615Z"] * 2  # time never goes back
    verify_ok(log)


# -- long lines: read in linear time, refused above --max-line -------------------------------


def big_line(length: int, kind: str = "big") -> bytes:
    """An event line of exactly ``length`` bytes (without its newline)."""
    head, tail = b'{"type": "%s", "data": "' % kind.encode(), b'"}'
    return head + b"x" * (length - len(head) - len(tail)) + tail


@pytest.mark.parametrize("batch", ["1", "10000"])
def test_a_line_over_max_line_is_refused_naming_it(tmp_path: Path, batch: str) -> None:
    log = str(tmp_path / "events.lmdb")
    data = GOOD + big_line(1024, "fits") + b"\n" + big_line(1025) + b"\n" + GOOD
    run = append(log, data, "--max-line", "1K", "--batch", batch)
    first = assert_refused(run, line=3, reason="the line is longer than 1 KiB, the limit; it was not read")
    assert first.endswith("(--max-line raises the limit)")
    assert stored_types(log) == ["good", "fits"]


def test_skip_invalid_skips_over_long_lines_wherever_they_fall(tmp_path: Path) -> None:
    log, rejects = str(tmp_path / "events.lmdb"), tmp_path / "rejects.ndjson"
    # Lines over the limit inside one chunk, across chunks (through a pipe), and at the end without a newline.
    data = b"".join([GOOD, big_line(5000), b"\n", GOOD, big_line(300_000), b"\n", GOOD, big_line(200_000)])
    run = append(log, data, "--max-line", "4K", "--skip-invalid", "--rejects", str(rejects))
    assert (run.returncode, run.stderr) == (0, b"evlog: appended 3 events (seq 1-3); skipped 3 invalid\n")
    records = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(record["line"], record["input"]) for record in records] == [(2, None), (4, None), (6, None)]
    assert stored_types(log) == ["good"] * 3


def test_a_line_over_64_mib_is_refused_by_default_without_holding_it(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    # 70 MiB in one line, written by another process into the pipe as it is read.
    writer = (
        f"import sys; out = sys.stdout.buffer; out.write({GOOD!r}); out.write(b'{{\"type\": \"big\", \"data\": \"'); "
        f"[out.write(b'x' * (1 << 20)) for _ in range(70)]; out.write(b'\"}}\\n' + {GOOD!r})"
    )
    generator = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE)
    # The peak memory is read by a small parent of evlog's own: a child's peak counts its parent's
    # size at fork, and this test process may be large by now.
    measurer = (
        "import resource, subprocess, sys; "
        "code = subprocess.call([sys.executable, '-m', 'evlog', 'append', '--log', sys.argv[1]], "
        "stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
    )
    assert generator.stdout is not None
    evlog = subprocess.run(
        [sys.executable, "-c", measurer, log], stdin=generator.stdout, capture_output=True, timeout=120,
        env={name: value for name, value in os.environ.items() if not name.startswith("EVLOG_")},
    )
    generator.stdout.close()
    generator.wait(timeout=60)
    peak_kib = int(evlog.stdout.split()[-1])
    run = subprocess.CompletedProcess(evlog.args, evlog.returncode, b"", evlog.stderr)
    assert_refused(run, line=2, reason="the line is longer than 64 MiB, the limit")
    assert stored_types(log) == ["good"]
    assert peak_kib < 150 * 1024  # never the whole 70 MiB line twice over


def test_a_20_mb_line_is_read_whole_under_a_higher_limit(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    run = append(log, GOOD + big_line(20_000_000) + b"\n" + GOOD, "--max-line", "32M")
    assert (run.returncode, run.stderr) == (0, b"")
    with Log(log) as opened:
        assert [len(event.data) for event in opened.read(types=["big"])] == [20_000_000 - 27]


def test_reading_a_long_line_scans_each_byte_a_fixed_number_of_times(tmp_path: Path, monkeypatch: Any) -> None:
    """Linear reading, counted rather than timed: the bytes searched for digit runs, for a line in 64 KiB chunks."""
    from evlog import feed

    scanned: list[int] = []
    original = feed.may_need_exact_json

    def counting(text: bytes) -> bool:
        scanned.append(len(text))
        return original(text)

    monkeypatch.setattr(feed, "may_need_exact_json", counting)

    class PipeSizedChunks(feed.Feeder):
        def __init__(self, log: Log, data: bytes) -> None:
            super().__init__(log)
            self.data = data

        def chunks(self, fd: int) -> Any:
            for start in range(0, len(self.data), 1 << 16):
                yield self.data[start : start + (1 << 16)]

    for size in (1_000_000, 16_000_000):
        scanned.clear()
        data = GOOD + big_line(size) + b"\n" + GOOD
        with Log(str(tmp_path / f"events-{size}.lmdb")) as log:
            summary = feed.feed_ndjson(PipeSizedChunks(log, data), -1)
        assert summary.appended == 3
        assert sum(scanned) <= 2 * len(data), (size, sum(scanned))


def test_a_msgpack_map_over_max_line_stops_even_when_skipping(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    fits = pack({"type": "fits", "data": "x" * 900})
    assert len(fits) <= 1024
    too_big = pack({"type": "big", "data": "x" * 2000})
    for args in ([], ["--skip-invalid"]):
        run = append(log, FIRST + fits + too_big + FIRST, "-i", "msgpack", "--max-line", "1K", *args)
        assert_refused(run, offset=len(FIRST + fits), reason="event 3 is longer than 1 KiB, the limit")
    assert stored_types(log) == ["good", "fits"] * 2


def test_a_msgpack_map_still_arriving_is_refused_once_over_the_limit(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    huge = pack({"type": "big", "data": "x" * 5_000_000})
    run = append(log, FIRST + huge + FIRST, "-i", "msgpack", "--max-line", "100K")
    assert_refused(run, offset=len(FIRST), reason="event 2 is longer than 100 KiB, the limit")
    assert stored_types(log) == ["good"]


# -- msgpack by hand ------------------------------------------------------------


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


FIRST = pack({"type": "good", "data": {"k": 1}})


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (pack({"type": "a", "data": {1: "x"}}), "map key"),  # a non-string key
        (pack({"type": "a", "data": {"k": {(1, 2): 3}}}), ""),  # a key that is an array
        (pack({1: "a"}), "map key"),
        (pack({b"type": "a"}), "JSON cannot represent"),  # a bytes key
        (pack({"type": "a", "data": b"\x00\x01"}), "JSON cannot represent"),
        (pack({"type": "a", "meta": {"k": b"x"}}), "JSON cannot represent"),
        (pack({"type": b"a"}), "JSON cannot represent"),
        (pack({"type": "a", "data": float("nan")}), "NaN or Infinity"),
        (pack({"type": "a", "data": [1.0, float("inf")]}), "NaN or Infinity"),
        (pack({"type": "a", "meta": {"x": float("-inf")}}), "NaN or Infinity"),
        (pack({"type": "a", "data": msgpack.ExtType(7, b"xyz")}), "JSON cannot represent"),
        (pack({"type": "a", "data": msgpack.Timestamp(1, 0)}), "JSON cannot represent"),
        (pack([1, 2, 3]), "expected a JSON object"),
        (pack("a string"), "expected a JSON object"),
        (pack(None), "expected a JSON object"),
        (pack({"type": "a\x00"}), "control character"),
        (pack({"type": "a", "stream": "s\x00"}), "control character"),
        (pack({"type": "t" * 201}), '"type" is longer than'),
        (b"\xc1", "not valid msgpack"),  # a byte msgpack never uses
        (b"\xa3\xff\xfe\xfd", "not valid msgpack"),  # a str of invalid UTF-8
    ],
)
def test_a_bad_msgpack_item_is_refused_naming_its_offset(tmp_path: Path, item: bytes, reason: str) -> None:
    log = str(tmp_path / "events.lmdb")
    run = append(log, FIRST + item + FIRST, "-i", "msgpack")
    first = assert_refused(run, offset=len(FIRST), reason=reason)
    assert "(event 2)" in first
    assert stored_types(log) == ["good"]
    verify_ok(log)


def test_msgpack_round_trips_exactly(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    values: list[dict[str, Any]] = [
        {"type": "m", "data": [2**64 - 1, -(2**63), 0.5, "\x00", "é", None, True, {"": []}]},
        {"type": "m", "stream": "s", "data": {"nested": {"deep": [[[]]]}}, "meta": {"k": "\x00"}, "id": "x"},
        {"type": "m", "data": 1.0000000000000002},
    ]
    run = append(log, b"".join(pack(v) for v in values), "-i", "msgpack")
    assert (run.returncode, run.stderr) == (0, b"")
    events = replayed(log)
    assert [e["data"] for e in events] == [v["data"] for v in values]
    assert events[1]["meta"] == {"k": "\x00"} and events[1]["id"] == "x"
    verify_ok(log)


@pytest.mark.parametrize("cut", [1, 20, 35])
def test_truncated_msgpack_at_the_end_is_refused(tmp_path: Path, cut: int) -> None:
    log = str(tmp_path / "events.lmdb")
    last = pack({"type": "last", "data": "x" * 20})
    assert len(last) == 37
    run = append(log, FIRST + last[:-cut], "-i", "msgpack")
    assert_refused(run, offset=len(FIRST), reason="truncated")


def test_truncated_msgpack_keeps_the_whole_items_before_it(tmp_path: Path) -> None:
    log = str(tmp_path / "events.lmdb")
    last = pack({"type": "last", "data": "x" * 20})
    append(log, FIRST + last[:-3], "-i", "msgpack")  # refused (correct) or accepted (the bug above)
    assert [e["type"] for e in replayed(log)] == ["good"]
    verify_ok(log)


# -- properties -------------------------------------------------------------------

PROPERTY = settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# Pieces that make up near-valid NDJSON: more interesting than uniform random bytes.
FRAGMENTS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b" ",
    b"\n",
    b"\r\n",
    b'"type"',
    b'"data"',
    b'"stream"',
    b'"meta"',
    b'"id"',
    b'"expect"',
    b'"ts"',
    b'"a"',
    b'"s"',
    b"1",
    b"-1",
    b"0.5",
    b"null",
    b"true",
    b"99999999999999999999",
    b"18446744073709551615",
    b"1e999",
    b"NaN",
    b'"\\u0000"',
    b'"\\ud800"',
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xef\xbb\xbf",
    b'"2026-11-26T10:00:00Z"',
    b'"9999-12-31T00:00:00Z"',
    b'{"type": "ok"}\n',
    b'"\xe2\x82\xac"',
]


def check_any_input(data: bytes, *args: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        log = os.path.join(folder, "events.lmdb")
        run = run_evlog("append", *args, log=log, input=data, timeout=120)
        assert b"Traceback" not in run.stderr, run.stderr.decode(errors="replace")[-2000:]
        assert run.returncode in (0, 65), run.stderr
        if run.returncode == 65:
            first = run.stderr.decode().partition("\n")[0]
            assert first.startswith(("evlog: line ", "evlog: byte offset ")), first
        verify_ok(log)
        if stored_count(log):
            replay = run_evlog("replay", log=log)
            assert replay.returncode == 0 and b"Traceback" not in replay.stderr, replay.stderr[-2000:]


@PROPERTY
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_ndjson(data: bytes) -> None:
    check_any_input(data)


@PROPERTY
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join))
def test_arbitrary_fragments_as_ndjson(data: bytes) -> None:
    check_any_input(data)


@PROPERTY
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_msgpack(data: bytes) -> None:
    check_any_input(data, "-i", "msgpack")


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=3),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["a", "b", "", "\x00"])},
            optional={
                "data": msgpack_values,
                "stream": st.sampled_from(["s", "", None, 5]),
                "meta": msgpack_values,
            },
        )
        | msgpack_values,
        min_size=1,
        max_size=4,
    )
)
def test_arbitrary_msgpack_items(items: list[Any]) -> None:
    check_any_input(b"".join(msgpack.packb(item, use_bin_type=True) for item in items), "-i", "msgpack")


json_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)  # any code point but surrogates
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(json_text, children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_values, min_size=1, max_size=8))
def test_any_json_value_round_trips_through_the_command(values: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        log = os.path.join(folder, "events.lmdb")
        lines = b"".join(orjson.dumps({"type": "v", "data": value}) + b"\n" for value in values)
        run = run_evlog("append", log=log, input=lines)
        assert (run.returncode, run.stderr) == (0, b"")
        assert [e["data"] for e in replayed(log)] == values
        verify_ok(log)
