"""What ``evlog replay`` prints: NDJSON, JSON arrays, msgpack, templates and terminal tables.

The machine formats must round-trip: NDJSON and msgpack output appended into a new
log give a byte-identical replay and the same head hash. Event times are RFC 3339
UTC with nine fractional digits; :mod:`evlog.timefmt` is checked with hypothesis.
Terminal tables are drawn under a pseudo-terminal, as a user would see them.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import run_evlog
from hypothesis import given, settings
from hypothesis import strategies as st
from terminal import terminal_output

from evlog import Log
from evlog.output import write_table
from evlog.template import compile_template
from evlog.timefmt import format_ts, parse_rfc3339

NS = 1_000_000_000
KEYS = ["seq", "ts", "type", "stream", "version", "id", "data", "meta"]
TS_TEXT = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z\Z")

VARIED: list[dict[str, Any]] = [
    {"type": "deposit", "stream": "account-7", "ts": "2026-11-26T10:00:00.000000001Z", "data": {"amount": 100}},
    {
        "type": "order.created",
        "id": "order-17",
        "ts": "2026-11-26T10:00:00.5Z",
        "meta": {"user": "ada", "trace": "t-1"},
        "data": {
            "total": 12.5,
            "items": 3,
            "tags": ["a", "b"],
            "note": "héllo ✓ 注文",
            "nested": {"x": None, "y": True},
        },
    },
    {"type": "withdraw", "stream": "account-7", "ts": 1795687200_999999999, "data": {"amount": -30, "big": 2**63 - 1}},
    {"type": "scalar", "stream": "口座-1", "ts": "2026-11-26T11:00:01+01:00", "data": 42},
    {"type": "list", "ts": "2026-11-26T10:00:01Z", "data": [1, 2.5, "x", None, False, -(2**63)]},
    {"type": "null-data", "ts": "2026-11-26T10:00:01Z", "data": None},
    {"type": "no-data", "ts": "2026-11-26T10:00:01Z", "meta": {}},
    {"type": "floats", "stream": "account-7", "ts": "2026-11-26T10:00:02Z", "data": {"a": 0.1, "b": 1e300, "c": -0.0}},
]


def make_log(path: str, events: Sequence[Mapping[str, Any]]) -> str:
    with Log(path) as log:
        log.append_many(events)
    return path


def ok(result: subprocess.CompletedProcess[bytes]) -> bytes:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def head_hash(log: str) -> str:
    return str(json.loads(ok(run_evlog("info", "-o", "json", log=log)))["head_hash"])


@pytest.fixture
def varied_log(log_path: str) -> str:
    return make_log(log_path, VARIED)


@pytest.fixture
def empty_log(log_path: str) -> str:
    """A log that exists but holds no event (an append refused by --expect creates it)."""
    result = run_evlog("append", "x", "-s", "s", "--expect", "1", log=log_path)
    assert result.returncode == 3
    return log_path


# -- NDJSON -------------------------------------------------------------------


def test_ndjson_line_is_exactly_the_documented_form(log_path: str) -> None:
    make_log(log_path, [VARIED[0]])
    assert ok(run_evlog("replay", log=log_path)) == (
        b'{"seq":1,"ts":"2026-11-26T10:00:00.000000001Z","type":"deposit","stream":"account-7",'
        b'"version":1,"id":null,"data":{"amount":100},"meta":{}}\n'
    )


def test_ndjson_keys_order_and_values(varied_log: str) -> None:
    lines = ok(run_evlog("replay", log=varied_log)).splitlines()
    assert len(lines) == len(VARIED)
    events = [json.loads(line) for line in lines]
    for seq, (event, given_event) in enumerate(zip(events, VARIED, strict=True), 1):
        assert list(event) == KEYS
        assert event["seq"] == seq
        assert TS_TEXT.match(event["ts"]), event["ts"]
        assert event["type"] == given_event["type"]
        assert event["stream"] == given_event.get("stream")
        assert event["id"] == given_event.get("id")
        assert event["data"] == given_event.get("data", {})
        assert event["meta"] == given_event.get("meta", {})
    assert [e["version"] for e in events] == [1, None, 2, 1, None, None, None, 3]
    assert [e["ts"] for e in events[:4]] == [
        "2026-11-26T10:00:00.000000001Z",
        "2026-11-26T10:00:00.500000000Z",
        "2026-11-26T10:00:00.999999999Z",  # given as integer nanoseconds
        "2026-11-26T10:00:01.000000000Z",  # given with a +01:00 offset
    ]


def test_times_assigned_by_the_log_are_rfc3339_utc_with_nine_digits(log_path: str) -> None:
    for _ in range(3):
        ok(run_evlog("append", "tick", log=log_path))
    for line in ok(run_evlog("replay", log=log_path)).splitlines():
        assert TS_TEXT.match(json.loads(line)["ts"])


def test_ndjson_replay_appends_into_an_identical_log(varied_log: str, tmp_path: Path) -> None:
    copy = str(tmp_path / "copy.lmdb")
    original = ok(run_evlog("replay", log=varied_log))
    appended = run_evlog("append", log=copy, input=original)
    assert appended.returncode == 0, appended.stderr
    assert ok(run_evlog("replay", log=copy)) == original
    assert head_hash(copy) == head_hash(varied_log)


def test_library_event_to_dict_matches_the_ndjson_line(varied_log: str) -> None:
    lines = ok(run_evlog("replay", log=varied_log)).splitlines()
    with Log(varied_log) as log:
        assert [event.to_dict() for event in log.read()] == [json.loads(line) for line in lines]


# -- JSON array ---------------------------------------------------------------


def test_json_output_is_one_array_of_the_ndjson_events(varied_log: str) -> None:
    text = ok(run_evlog("replay", "-o", "json", log=varied_log))
    ndjson = [json.loads(line) for line in ok(run_evlog("replay", log=varied_log)).splitlines()]
    assert json.loads(text) == ndjson
    assert text.startswith(b"[") and text.endswith(b"]\n")


def test_json_output_of_a_selection_and_of_nothing(varied_log: str) -> None:
    selected = json.loads(ok(run_evlog("replay", "-o", "json", "-s", "account-7", log=varied_log)))
    assert [event["seq"] for event in selected] == [1, 3, 8]
    assert json.loads(ok(run_evlog("replay", "-o", "json", "--from", "100", log=varied_log))) == []


def test_json_output_of_an_empty_log_is_an_empty_array(empty_log: str) -> None:
    text = ok(run_evlog("replay", "-o", "json", log=empty_log))
    assert text.strip() == b"[]"
    assert json.loads(text) == []
    assert ok(run_evlog("replay", log=empty_log)) == b""


# -- msgpack ------------------------------------------------------------------


def test_msgpack_output_is_a_sequence_of_maps_with_the_ndjson_content(varied_log: str) -> None:
    packed = ok(run_evlog("replay", "-o", "msgpack", log=varied_log))
    maps = list(msgpack.Unpacker(io.BytesIO(packed), raw=False))
    ndjson = [json.loads(line) for line in ok(run_evlog("replay", log=varied_log)).splitlines()]
    assert len(maps) == len(VARIED)
    for item in maps:
        assert isinstance(item, dict) and list(item) == KEYS
    assert maps == ndjson


def test_msgpack_output_appends_back_with_input_msgpack(varied_log: str, tmp_path: Path) -> None:
    copy = str(tmp_path / "copy.lmdb")
    packed = ok(run_evlog("replay", "-o", "msgpack", log=varied_log))
    appended = run_evlog("append", "-i", "msgpack", log=copy, input=packed)
    assert appended.returncode == 0, appended.stderr
    assert ok(run_evlog("replay", log=copy)) == ok(run_evlog("replay", log=varied_log))
    assert head_hash(copy) == head_hash(varied_log)


# -- templates ----------------------------------------------------------------


def template(log: str, fmt: str, *args: str) -> str:
    return ok(run_evlog("replay", "--template", fmt, *args, log=log)).decode()


def test_template_fields_and_missing_keys(varied_log: str) -> None:
    out = template(varied_log, "{seq} {type} {data[amount]}", "--until", "3")
    assert out == "1 deposit 100\n2 order.created \n3 withdraw -30\n"


def test_template_escapes_for_tab_and_newline(varied_log: str) -> None:
    assert template(varied_log, r"{seq}\t{type}", "-n", "2") == "1\tdeposit\n2\torder.created\n"
    assert template(varied_log, r"{seq}\n{stream}", "-n", "1") == "1\naccount-7\n"


def test_template_prints_objects_as_json_and_null_as_nothing(varied_log: str) -> None:
    assert template(varied_log, "{data}|{meta}|{id}|{stream}|{version}", "--from", "2", "-n", "1") == (
        '{"total":12.5,"items":3,"tags":["a","b"],"note":"héllo ✓ 注文","nested":{"x":null,"y":true}}'
        '|{"user":"ada","trace":"t-1"}|order-17||\n'
    )
    assert template(varied_log, "{data[tags]} {data[nested][y]} {data[nested][x]}<", "--from", "2", "-n", "1") == (
        '["a","b"] true <\n'
    )
    assert template(varied_log, "{data[total]} {data[items]} {meta[user]} {meta[nope]}<", "--from", "2", "-n", "1") == (
        "12.5 3 ada <\n"
    )


def test_template_keys_on_non_object_data_print_nothing(varied_log: str) -> None:
    # data is 42, a list, null: {data[amount]} has nothing to print.
    assert template(varied_log, "{seq}:{data[amount]}:{data}", "--from", "4", "--until", "6") == (
        '4::42\n5::[1,2.5,"x",null,false,-9223372036854775808]\n6::\n'
    )


def test_template_ts_is_rfc3339(varied_log: str) -> None:
    assert template(varied_log, "{ts}", "-n", "1") == "2026-11-26T10:00:00.000000001Z\n"


@pytest.mark.parametrize(
    "fmt", ["{nope}", "{seq} {datum[amount]}", "{0}", "{}", "{seq", "{seq:>999999999999}", "{data[amount]:.20000f}"]
)
def test_template_unknown_field_or_bad_syntax_is_a_usage_error(varied_log: str, fmt: str) -> None:
    result = run_evlog("replay", "--template", fmt, log=varied_log)
    assert result.returncode == 2
    assert result.stdout == b""
    message = result.stderr.decode()
    assert message.startswith("evlog: ") and "--template" in message and "Traceback" not in message


def test_unknown_template_field_names_the_event_fields(varied_log: str) -> None:
    message = run_evlog("replay", "--template", "{nope}", log=varied_log).stderr.decode()
    assert "{nope}" in message
    for key in KEYS:
        assert key in message


def test_template_is_checked_before_the_log_is_read(tmp_path: Path) -> None:
    missing = tmp_path / "missing.lmdb"
    result = run_evlog("replay", "--template", "{nope}", log=str(missing))
    assert result.returncode == 2
    assert not missing.exists()


@pytest.mark.parametrize("output", ["json", "ndjson", "msgpack", "table"])
def test_template_with_output_is_a_usage_error(varied_log: str, output: str) -> None:
    result = run_evlog("replay", "--template", "{seq}", "-o", output, log=varied_log)
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode().startswith("evlog: ")


@pytest.mark.parametrize("fmt", ["{data.amount}", "{seq!x}"])
def test_template_errors_found_while_rendering_are_not_tracebacks(varied_log: str, fmt: str) -> None:
    result = run_evlog("replay", "--template", fmt, log=varied_log)
    assert "Traceback" not in result.stderr.decode()
    assert result.returncode in (0, 2)


def test_template_widths_up_to_the_limit_are_kept(varied_log: str) -> None:
    result = run_evlog("replay", "--template", "{seq:0>4}|{type:>10000}", "--until", "1", log=varied_log)
    assert result.returncode == 0
    first, padded = result.stdout.decode().rstrip("\n").split("|")
    event_type = run_evlog("replay", "--template", "{type}", "--until", "1", log=varied_log).stdout.decode().strip()
    assert (first, len(padded), padded.lstrip(" ")) == ("0001", 10_000, event_type)


def test_template_escapes_control_characters_in_values_not_in_its_own_text(log_path: str) -> None:
    make_log(log_path, [{"type": "note", "ts": "2026-11-26T10:00:00Z",
                         "data": {"msg": "one\ntwo\x1b[2J\u202e\x9b", "list": ["a\nb"]}}])
    out = template(log_path, r"{data[msg]}\t{data[list]}|{data[msg]:>24}|{data[msg]!r}")
    assert out.count("\n") == 1 and "\x1b" not in out and "\x9b" not in out and "\u202e" not in out
    first, padded, converted = out.rstrip("\n").split("|")
    assert first == "one\\ntwo\\u001b[2J\\u202e\\u009b\t" + '["a\\nb"]'
    assert padded == "one\\ntwo\\u001b[2J\\u202e\\u009b".rjust(24)  # padded after escaping: columns hold
    assert converted.startswith("'one\\ntwo") and "\\x1b" in converted


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("{ts:%H:%M}", "10:00"),
        ("{ts:%Y-%m-%d %H:%M:%S.%f %Z}", "2026-11-26 10:00:00.123456 UTC"),
        ("{ts:%s}", "1795687200"),
        ("{ts:%%s=%s}", "%s=1795687200"),
        ("{ts:epoch}", "1795687200"),
        ("{ts:epoch_ms}", "1795687200123"),
        ("{ts:epoch_us}", "1795687200123456"),
        ("{ts:epoch_ns}", "1795687200123456789"),
        ("{ts}", "2026-11-26T10:00:00.123456789Z"),
        ("{ts:>32}", "  2026-11-26T10:00:00.123456789Z"),
        ("{ts_local}", "2026-11-26T11:00:00.123456789+01:00"),
        ("{ts_local:%H:%M %z}", "11:00 +0100"),
        ("{ts_local:epoch}", "1795687200"),
    ],
)
def test_template_times_take_strftime_and_epoch_forms(log_path: str, fmt: str, expected: str) -> None:
    make_log(log_path, [{"type": "x", "ts": "2026-11-26T10:00:00.123456789Z"}])
    result = run_evlog("replay", "--template", fmt, log=log_path, env={"TZ": "CET-1"})
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode() == expected + "\n"


def test_template_local_time_follows_tz_and_utc_does_not(log_path: str) -> None:
    make_log(log_path, [{"type": "x", "ts": "2026-11-26T23:30:00Z"}])
    for zone, local in (("UTC", "2026-11-26 23:30"), ("EST5", "2026-11-26 18:30"), ("NPT-5:45", "2026-11-27 05:15")):
        out = run_evlog("tail", "--template", "{ts:%Y-%m-%d %H:%M}|{ts_local:%Y-%m-%d %H:%M}", log=log_path,
                        env={"TZ": zone}).stdout.decode()
        assert out == f"2026-11-26 23:30|{local}\n", zone


@pytest.mark.parametrize("fmt", ["{ts:epoch_s}", "{ts:x}", "{ts_local:=}"])
def test_template_time_spec_that_cannot_print_is_a_usage_error(varied_log: str, fmt: str) -> None:
    result = run_evlog("replay", "--template", fmt, log=varied_log)
    assert result.returncode == 2 and result.stdout == b""
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("evlog: --template field ") and "{ts" in line and "epoch_ms" in line


@given(
    st.integers(-(10**12), 10**12),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
    st.sampled_from(["", ">8", "<5", "^9", "08", ",", "x", "+", "_>12,"]),
    st.sampled_from(["", ">8", "<5", "^9", "*^11"]),
    st.text(alphabet="ab -|", max_size=4),
)
def test_a_compiled_template_formats_as_str_format_does(number: int, text: str, number_spec: str, text_spec: str,
                                                        literal: str) -> None:
    fmt = f"{literal}{{seq:{number_spec}}}{literal}{{type:{text_spec}}}{{data[k]}}{literal}"
    event = {"seq": number, "type": text, "data": {"k": text}}
    assert compile_template(fmt)(event) == fmt.format(**event)


def test_template_missing_key_with_a_format_spec_prints_nothing(varied_log: str) -> None:
    result = run_evlog("replay", "--template", "{seq} {data[amount]:.2f}", "--until", "2", log=varied_log)
    assert result.returncode == 0, result.stderr.decode()[-300:]
    assert result.stdout == b"1 100.00\n2 \n"


# -- tables -------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_terminal(
    *args: str, log: str, columns: int = 100, env: dict[str, str] | None = None
) -> tuple[int, list[str], bytes]:
    """Run evlog with stdout on a pseudo-terminal; its exit code, visible lines and stderr."""
    code, raw, stderr = terminal_output(*args, log=log, columns=columns, env=env)
    text = ANSI.sub("", raw)
    return code, [line.rstrip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()], stderr


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


@pytest.fixture
def table_log(log_path: str) -> str:
    return make_log(
        log_path,
        [
            {"type": "deposit", "stream": "account-7", "ts": "2026-11-26T10:00:00Z", "data": {"amount": 100}},
            {"type": "order.created", "ts": "2026-11-26T10:00:01Z", "data": {"text": "x" * 300}},
            {"type": "withdraw", "stream": "account-7", "ts": "2026-11-26T10:00:02Z", "data": {"amount": 30}},
        ],
    )


def test_replay_on_a_terminal_draws_a_table(table_log: str) -> None:
    code, lines, stderr = run_in_terminal("replay", log=table_log, env={"TZ": "UTC"})
    assert (code, stderr) == (0, b"")
    assert len(lines) == 4, lines
    assert lines[0].split() == ["seq", "local", "time", "type", "stream@version", "data"]
    for line, (seq, etype, stream, second) in zip(
        lines[1:],
        [(1, "deposit", "account-7@1", "00"), (2, "order.created", "", "01"), (3, "withdraw", "account-7@2", "02")],
        strict=True,
    ):
        cells = line.split()
        assert cells[0] == str(seq)
        assert etype in cells and (not stream or stream in cells)
        assert cells[1:3] == ["11-26", f"10:00:{second}.000"]
    assert "…" in lines[2]  # long data is cut to the column
    assert all(display_width(line) <= 100 for line in lines)


def test_table_output_when_piped(table_log: str) -> None:
    lines = ok(run_evlog("replay", "-o", "table", "--until", "1", log=table_log)).decode().splitlines()
    assert "seq" in lines[0]
    assert any("deposit" in line and "account-7" in line for line in lines[1:])


def test_table_rows_fit_an_80_column_terminal(table_log: str) -> None:
    code, lines, _ = run_in_terminal("replay", log=table_log, columns=80)
    assert code == 0
    assert len(lines) == 4, lines


def test_table_rows_with_wide_characters_stay_on_one_line(log_path: str) -> None:
    make_log(log_path, [{"type": "注文作成注文作成", "stream": "口座口座", "data": {"text": "a" * 60}}])
    code, lines, _ = run_in_terminal("replay", log=log_path, columns=100)
    assert code == 0
    assert len(lines) == 2, lines
    assert display_width(lines[1]) <= 100


class _LineCounter(io.TextIOBase):
    """A text stream that only counts the lines written to it."""

    def __init__(self) -> None:
        self.lines = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)

    def isatty(self) -> bool:
        return False


class _Enough(Exception):
    pass


def test_write_table_streams_rows_without_collecting_them(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = _LineCounter()
    monkeypatch.setattr(sys, "stdout", sink)
    monkeypatch.setenv("COLUMNS", "120")
    data = msgpack.packb({"amount": 1})
    pulled = 0

    def rows(count: int) -> Iterator[tuple[int, tuple[Any, ...]]]:
        nonlocal pulled
        for seq in range(1, count + 1):
            # Before row `seq` is handed over, every earlier row (and, after the first, the header) is out.
            assert sink.lines >= (seq if seq > 1 else 0), (seq, sink.lines)
            if seq > 300:
                raise _Enough
            pulled = seq
            yield seq, (1, 1_795_687_200 * NS + seq, seq, "deposit", "account-7", None, None, data)

    with pytest.raises(_Enough):
        write_table(rows(200_000))
    assert pulled == 300


# -- tables: layout, colour, local time, hostile text ----------------------------------

ESCAPE = "\x1b["
TYPE_IN_COLOUR = re.compile(r"\x1b\[38;2;(\d+);(\d+);(\d+)m([^\x1b]+)\x1b\[0m")


def draw(rows: Any, width: int, color_system: str | None = None, last_seq: int | None = None) -> str:
    """A table drawn in-process on a fixed-width console, as it would reach a terminal."""
    from rich.console import Console

    buffer = io.StringIO()
    write_table(rows, console=Console(file=buffer, width=width, color_system=color_system), last_seq=last_seq)
    return buffer.getvalue()


def draw_log(log: str, width: int, color_system: str | None = None) -> str:
    with Log(log) as opened:
        return draw(opened.rows(), width, color_system, last_seq=opened.head())


def visible_lines(text: str) -> list[str]:
    return ANSI.sub("", text).split("\n")[:-1]


def type_colours(text: str) -> dict[str, str]:
    """Each type cell's colour in truecolor output, as #RRGGBB."""
    found: dict[str, str] = {}
    for red, green, blue, cell in TYPE_IN_COLOUR.findall(text):
        found[cell.strip()] = f"#{int(red):02X}{int(green):02X}{int(blue):02X}"
    return found


@pytest.fixture
def colour_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.mark.parametrize("width", [80, 160])
@pytest.mark.parametrize("color_system", [None, "truecolor"])
def test_every_table_line_fits_the_console(
    varied_log: str, width: int, color_system: str | None, colour_env: None
) -> None:
    from rich.cells import cell_len

    lines = visible_lines(draw_log(varied_log, width, color_system))
    assert len(lines) == len(VARIED) + 1
    assert all(cell_len(line) <= width for line in lines), [cell_len(line) for line in lines]


@pytest.mark.parametrize("width", [80, 160])
def test_data_takes_the_rest_of_the_width(table_log: str, width: int) -> None:
    from rich.cells import cell_len

    long_row = visible_lines(draw_log(table_log, width))[2]
    assert long_row.endswith("…") and cell_len(long_row) == width
    assert 'text="xxx' in long_row


def test_a_row_reads_seq_local_time_type_stream_version_and_data(table_log: str) -> None:
    code, lines, _ = run_in_terminal("replay", log=table_log, columns=80, env={"TZ": "UTC"})
    assert code == 0
    assert lines[1].split() == ["1", "11-26", "10:00:00.000", "deposit", "account-7@1", "amount=100"]
    assert lines[3].split() == ["3", "11-26", "10:00:02.000", "withdraw", "account-7@2", "amount=30"]
    assert lines[2].split()[3] == "order.created" and lines[2].split()[4].startswith('text="xxx')  # no stream


@pytest.mark.parametrize(
    ("zone", "columns", "shown"),
    [
        ("UTC", 100, "11-26 10:00:00.000"),
        ("Asia/Tokyo", 100, "11-26 19:00:00.000"),
        ("America/New_York", 100, "11-26 05:00:00.000"),
        ("Pacific/Kiritimati", 100, "11-27 00:00:00.000"),
        ("Asia/Tokyo", 160, "2026-11-26 19:00:00.000"),  # wide terminals show the year too
    ],
)
def test_table_time_is_local_time_following_tz(table_log: str, zone: str, columns: int, shown: str) -> None:
    out = ok(run_evlog("replay", "-o", "table", "--until", "1", log=table_log,
                       env={"TZ": zone, "COLUMNS": str(columns)})).decode()
    header, row = out.splitlines()
    assert "local time" in header
    assert shown in row


@pytest.mark.parametrize(
    ("value", "preview"),
    [
        ({"amount": 100, "currency": "EUR"}, 'amount=100 currency="EUR"'),
        ({"ok": True, "note": None, "rate": 0.5}, "ok=true note=null rate=0.5"),
        ({"two words": 1, "x": {"y": [1, 2]}}, '"two words"=1 x={"y":[1,2]}'),
        ([1, "x", None], '[1,"x",null]'),
        (42, "42"),
        ("text", '"text"'),
        (None, "null"),
        ({}, "{}"),
        ({"note": "a\nb\tc\x1b[31m\u2028d\u202ee\x85f"}, 'note="a\\nb\\tc\\u001b[31m\\u2028d\\u202ee\\u0085f"'),
    ],
)
def test_data_preview(value: Any, preview: str) -> None:
    from evlog.output import data_preview

    assert data_preview(value, 1000) == preview


def test_data_preview_of_a_large_object_stops_early() -> None:
    from evlog.output import data_preview

    text = data_preview({f"k{i}": i for i in range(100_000)}, 50)
    assert text.startswith("k0=0 k1=1 ") and len(text) < 100


def test_markup_like_text_prints_literally(log_path: str, colour_env: None) -> None:
    make_log(log_path, [{"type": "[bold]t[/bold]", "stream": "[red]s", "data": {"note": "[link=x]y[/link] [b]z :x:"}}])
    piped = ok(run_evlog("replay", "-o", "table", log=log_path, env={"COLUMNS": "120"})).decode()
    for text in ("[bold]t[/bold]", "[red]s@1", 'note="[link=x]y[/link] [b]z :x:"'):
        assert text in piped
        assert text in ANSI.sub("", draw_log(log_path, 120, "truecolor"))
    coloured = draw_log(log_path, 120, "truecolor")
    assert "\x1b]8;" not in coloured  # no hyperlink was made of [link=...]
    assert type_colours(coloured) == {"[bold]t[/bold]": _type_color("[bold]t[/bold]")}


def test_control_characters_in_data_never_break_a_row(log_path: str) -> None:
    make_log(log_path, [
        {"type": "note", "data": {"text": "one\ntwo\r\nthree\x1b[2Jfour\u2028five\u2029six\u202eseven\x07"}},
        {"type": "note", "data": "line\nbreak"},
    ])
    for width in (80, 160):
        text = draw_log(log_path, width, "truecolor")
        assert text.count("\n") == 3 and "\r" not in text and "\u2028" not in text and "\u202e" not in text
        assert "\x1b[2J" not in text and "\x07" not in text
        shown = '"one\\ntwo\\r\\nthree\\u001b[2Jfour\\u2028five\\u2029six'
        assert 'text="one\\ntwo\\r\\nthree' in text and (width < 120 or shown in text)
    code, lines, _ = run_in_terminal("replay", log=log_path, columns=100)
    assert code == 0 and len(lines) == 3, lines
    assert lines[2].endswith('"line\\nbreak"')


def _type_color(name: str) -> str:
    from evlog.output import type_color

    return type_color(name)


def test_type_colours_are_fixed_per_type_name() -> None:
    from evlog.output import TYPE_PALETTE

    # Pinned: a type keeps its colour across runs, processes and evlog versions.
    assert [_type_color(name) for name in ("deposit", "withdraw", "account.opened")] == [
        "#9B59D0", "#B8860B", "#3D7BE0"]
    assert len(set(TYPE_PALETTE)) == len(TYPE_PALETTE) >= 10


def _contrast(colour: str, background: float) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else float(((c + 0.055) / 1.055) ** 2.4)

    red, green, blue = (channel(int(colour[i:i + 2], 16)) for i in (1, 3, 5))
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return (max(luminance, background) + 0.05) / (min(luminance, background) + 0.05)


def test_type_palette_reads_on_dark_and_light_backgrounds() -> None:
    from evlog.output import TYPE_PALETTE

    for colour in TYPE_PALETTE:
        assert _contrast(colour, 0.0) >= 4.5, colour  # on black
        assert _contrast(colour, 1.0) >= 3.0, colour  # on white


def test_same_type_gets_the_same_colour_in_two_runs(log_path: str) -> None:
    make_log(log_path, [{"type": name, "data": {}} for name in ("deposit", "withdraw", "account.opened", "deposit")])
    runs = []
    for seed in ("1", "2"):  # Python's str hash differs between these; the colours must not
        out = ok(run_evlog("replay", "-o", "table", log=log_path, env={
            "FORCE_COLOR": "1", "COLORTERM": "truecolor", "NO_COLOR": "", "COLUMNS": "100", "PYTHONHASHSEED": seed,
        })).decode()
        runs.append(type_colours(out))
    assert runs[0] == runs[1] == {name: _type_color(name) for name in ("deposit", "withdraw", "account.opened")}


def test_different_types_in_a_sample_get_different_colours(log_path: str, colour_env: None) -> None:
    sample = ("deposit", "withdraw", "account.opened", "account.closed", "transfer.sent")
    make_log(log_path, [{"type": name} for name in sample])
    colours = type_colours(draw_log(log_path, 100, "truecolor"))
    assert sorted(colours) == sorted(sample)
    assert len(set(colours.values())) == len(sample)


BANKING_TYPES = ("deposit", "withdraw", "transfer.sent", "transfer.received", "fee.charged",
                 "account.opened", "interest.paid", "account.closed")


def test_a_logs_types_get_colours_of_their_own(log_path: str) -> None:
    # A hash alone gives these eight types five colours; the table gives each its own.
    make_log(log_path, [{"type": name} for name in BANKING_TYPES])
    env = {"FORCE_COLOR": "1", "COLORTERM": "truecolor", "NO_COLOR": "", "COLUMNS": "100"}
    for command in (["replay"], ["tail", "-n", "8"]):
        colours = type_colours(ok(run_evlog(*command, "-o", "table", log=log_path, env=env)).decode())
        assert sorted(colours) == sorted(BANKING_TYPES)
        assert len(set(colours.values())) == len(BANKING_TYPES), colours


def test_type_colours_depend_only_on_the_set_of_types() -> None:
    from evlog.output import TYPE_PALETTE, type_colors

    colours = type_colors(BANKING_TYPES)
    assert type_colors(reversed(BANKING_TYPES)) == colours
    assert len(set(colours.values())) == len(BANKING_TYPES)
    many = [f"type-{i}" for i in range(len(TYPE_PALETTE) + 5)]
    assert set(type_colors(many).values()) == set(TYPE_PALETTE)  # all colours used before any repeats


def test_sixteen_colour_terminals_get_the_base_colours(log_path: str, colour_env: None) -> None:
    sample = ("deposit", "withdraw", "account.opened")
    make_log(log_path, [{"type": name} for name in sample])
    drawn = draw_log(log_path, 80, "standard")
    found = {cell.strip(): int(code) for code, cell in re.findall(r"\x1b\[(\d+)m([^\x1b]+)\x1b\[0m", drawn)
             if cell.strip() in sample}
    assert sorted(found) == sorted(sample)
    assert all(31 <= code <= 36 for code in found.values()) and len(set(found.values())) == len(sample)


@pytest.fixture
def listed_log(table_log: str) -> str:
    with Log(table_log) as log:
        from evlog import follow

        follow.set_group_position(log.store(write=True), "billing", 1)
    ok(run_evlog("projection", "add", "counts", "--fold", "s[e.type] = s.get(e.type, 0) + 1", log=table_log))
    ok(run_evlog("snapshot", "save", "--init", "0", "--fold", "s + 1", log=table_log))
    return table_log


@pytest.mark.parametrize("listing", ["group", "snapshot", "projection"])
def test_an_empty_listing_says_so_in_a_sentence(log_path: str, listing: str) -> None:
    ok(run_evlog("append", "x", log=log_path))
    drawn = run_evlog(listing, "list", "-o", "table", log=log_path)
    assert (drawn.returncode, drawn.stdout, drawn.stderr) == (0, f"No {listing}s.\n".encode(), b"")
    piped = run_evlog(listing, "list", log=log_path)
    assert (piped.returncode, piped.stdout) == (0, b"")  # NDJSON of nothing is nothing


@pytest.mark.parametrize(
    "command", [["replay"], ["tail"], ["info"], ["group", "list"], ["snapshot", "list"], ["projection", "list"]]
)
def test_no_color_option_draws_without_escape_codes(listed_log: str, command: list[str]) -> None:
    code, raw, stderr = terminal_output(*command, log=listed_log)
    assert code == 0, stderr
    if command[0] in ("replay", "tail", "info"):
        assert ESCAPE in raw  # on a terminal tables are styled ...
    code, raw, stderr = terminal_output(*command, "--no-color", log=listed_log)
    assert code == 0, stderr
    assert ESCAPE not in raw and "\x1b" not in raw  # ... and with --no-color not at all
    assert "seq" in raw or "events" in raw or "group" in raw or "hash" in raw or "name" in raw


@pytest.mark.parametrize("command", [["replay"], ["tail", "-n", "2"], ["info"], ["group", "list"]])
def test_no_color_environment_draws_without_escape_codes(listed_log: str, command: list[str]) -> None:
    code, raw, stderr = terminal_output(*command, log=listed_log, env={"NO_COLOR": "1"})
    assert code == 0, stderr
    assert "\x1b" not in raw
    assert raw.strip()


def test_markup_like_names_in_listings_print_literally(log_path: str) -> None:
    make_log(log_path, [{"type": "[red]x[/red]", "stream": "[bold]s"}])
    with Log(log_path) as log:
        from evlog import follow

        follow.set_group_position(log.store(write=True), "[blue]g", 1)
    for command, shown in ((["info"], "[red]x[/red]"), (["group", "list"], "[blue]g")):
        code, lines, stderr = run_in_terminal(*command, log=log_path)
        assert code == 0, stderr
        assert any(shown in line for line in lines), lines


def test_snapshot_table_keeps_the_hash_whole_and_shows_local_time(listed_log: str) -> None:
    listing = json.loads(ok(run_evlog("snapshot", "list", log=listed_log)).splitlines()[0])
    for columns in (60, 80):
        code, lines, stderr = run_in_terminal("snapshot", "list", log=listed_log, columns=columns, env={"TZ": "UTC"})
        assert code == 0, stderr
        assert len(lines) == 2 and lines[0].split()[0] == "hash"  # narrow: cells are cut, rows never wrap
        assert lines[1].split()[0] == listing["hash"]  # whole: snapshot drop takes it
        if columns == 80:
            assert lines[0].split() == ["hash", "seq", "time", "(local)", "size", "keys"]
            assert lines[1].split()[2:4] == listing["ts"][:19].split("T")


def test_projection_table_shows_the_definition_as_options(log_path: str) -> None:
    make_log(log_path, [{"type": "deposit", "stream": "acct-1", "data": {"amount": 5}}])
    ok(run_evlog("projection", "add", "balances", "--by", "stream", "--on", "deposit",
                 "s.balance = s.get('balance', 0) + d.amount", "--snapshot-every", "1000", log=log_path))
    ok(run_evlog("projection", "add", "big", "--init", '{"n": 0}', "--fold", "s.n += 1", "-t", "dep*",
                 "--where", "d.amount > 1", log=log_path))
    code, lines, stderr = run_in_terminal("projection", "list", log=log_path, columns=160)
    assert code == 0, stderr
    assert lines[0].split() == ["name", "definition", "from", "snapshot", "every"]
    assert lines[1].split(None, 1)[1].rstrip().endswith("1000")
    assert "--on deposit 's.balance = s.get('\"'\"'balance'\"'\"', 0) + d.amount' --by stream" in lines[1]
    assert "--init '{\"n\":0}' --fold 's.n += 1' --where 'd.amount > 1' -t 'dep*'" in lines[2]


def test_tail_table_on_a_terminal(table_log: str) -> None:
    code, lines, _ = run_in_terminal("tail", "-n", "2", log=table_log, columns=80, env={"TZ": "Asia/Tokyo"})
    assert code == 0
    assert lines[0].split()[:3] == ["seq", "local", "time"]
    assert [line.split()[:3] for line in lines[1:]] == [["2", "11-26", "19:00:01.000"], ["3", "11-26", "19:00:02.000"]]
    assert all(display_width(line) <= 80 for line in lines)


def test_piped_replay_stays_ndjson_without_escape_codes(table_log: str) -> None:
    out = ok(run_evlog("replay", log=table_log, env={"TERM": "xterm-256color", "NO_COLOR": ""}))
    assert b"\x1b" not in out
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2, 3]


def test_a_seq_longer_than_its_column_takes_cells_from_the_data() -> None:
    from rich.cells import cell_len

    data = msgpack.packb({"text": "y" * 200})
    rows = [(seq, (1, 1_795_687_200 * NS, None, "t", None, None, None, data)) for seq in (9, 12_345_678_901)]
    lines = visible_lines(draw(rows, 80, last_seq=9))
    assert [line.split()[0] for line in lines] == ["seq", "9", "12345678901"]
    assert all(cell_len(line) == 80 for line in lines[1:])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.text(min_size=1, max_size=40), st.none() | st.text(min_size=1, max_size=60), json_values),
        min_size=1, max_size=5,
    ),
    width=st.sampled_from([40, 80, 120, 160]),
)
def test_any_event_is_one_line_that_fits(events: list[tuple[str, str | None, Any]], width: int) -> None:
    from rich.cells import cell_len

    rows = [
        (seq, (1, 1_795_687_200 * NS + seq, seq if stream else None, etype, stream, None, None, msgpack.packb(data)))
        for seq, (etype, stream, data) in enumerate(events, 1)
    ]
    lines = visible_lines(draw(rows, width, "truecolor", last_seq=len(rows)))
    assert len(lines) == len(rows) + 1
    assert all(cell_len(line) <= width for line in lines), (width, lines)


# -- evlog.timefmt --------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_format_then_parse_is_the_identity(ns: int) -> None:
    text = format_ts(ns)
    assert TS_TEXT.match(text), text
    assert parse_rfc3339(text) == ns


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**63 - 1),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
def test_parse_of_an_offset_time_is_the_same_instant(ns: int, offset_minutes: int) -> None:
    seconds, fraction = divmod(ns, NS)
    zone = timezone(timedelta(minutes=offset_minutes))
    wall = datetime.fromtimestamp(seconds, tz=zone)
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = f"{wall:%Y-%m-%dT%H:%M:%S}.{fraction:09d}{sign}{hours:02d}:{minutes:02d}"
    assert parse_rfc3339(text) == ns
    assert parse_rfc3339(f"{text[:-6]}{sign}{hours:02d}{minutes:02d}") == ns  # +hhmm, no colon


def test_format_ts_is_right_when_seconds_alternate() -> None:
    a, b = 1_795_687_200 * NS + 5, 1_795_687_201 * NS + 6
    assert [format_ts(a), format_ts(b), format_ts(a), format_ts(a + 1)] == [
        "2026-11-26T10:00:00.000000005Z",
        "2026-11-26T10:00:01.000000006Z",
        "2026-11-26T10:00:00.000000005Z",
        "2026-11-26T10:00:00.000000006Z",
    ]


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00.000000000Z"),
        (1, "1970-01-01T00:00:00.000000001Z"),
        (951_782_400 * NS, "2000-02-29T00:00:00.000000000Z"),
        (1_709_208_000 * NS + 999_999_999, "2024-02-29T12:00:00.999999999Z"),
        (2**63 - 1, "2262-04-11T23:47:16.854775807Z"),
    ],
)
def test_format_ts_known_values(ns: int, text: str) -> None:
    assert format_ts(ns) == text
    assert parse_rfc3339(text) == ns


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2024-02-29T12:00:00Z", 1_709_208_000 * NS),
        ("2024-02-29T14:00:00+02:00", 1_709_208_000 * NS),
        ("2024-02-29T06:30:00-05:30", 1_709_208_000 * NS),
        ("2024-02-29T14:00:00+0200", 1_709_208_000 * NS),
        ("2024-02-29T12:00:00+00:00", 1_709_208_000 * NS),
        ("2024-02-29T12:00:00-00:00", 1_709_208_000 * NS),
        ("2024-03-01T01:00:00+13:00", 1_709_208_000 * NS),
        ("2024-02-29t12:00:00z", 1_709_208_000 * NS),
        ("2024-02-29 12:00:00Z", 1_709_208_000 * NS),
        ("2024-02-29T12:00:00.5Z", 1_709_208_000 * NS + 500_000_000),
        ("2024-02-29T12:00:00.05Z", 1_709_208_000 * NS + 50_000_000),
        ("2024-02-29T12:00:00.000001Z", 1_709_208_000 * NS + 1_000),
        ("2024-02-29T12:00:00.123456789+00:00", 1_709_208_000 * NS + 123_456_789),
        ("1970-01-01T01:00:00+01:00", 0),
    ],
)
def test_parse_rfc3339_edge_cases(text: str, ns: int) -> None:
    assert parse_rfc3339(text) == ns


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-29T00:00:00Z",  # not a leap year
        "2100-02-29T00:00:00Z",  # centuries are not, unless divisible by 400
        "2024-13-01T00:00:00Z",
        "2024-04-31T00:00:00Z",
        "2024-02-29T24:00:00Z",
        "2024-02-29T12:60:00Z",
        "2024-02-29T12:00:00",  # no zone
        "2024-02-29T12:00Z",  # no seconds
        "2024-02-29",
        "2024-02-29T12:00:00.1234567890Z",  # ten fractional digits
        "2024-02-29T12:00:00.Z",
        "not a time",
    ],
)
def test_parse_rfc3339_rejects(text: str) -> None:
    assert parse_rfc3339(text) is None


def test_an_empty_selection_draws_no_table(log_path: str) -> None:
    make_log(log_path, [{"type": "deposit"}])
    assert ok(run_evlog("replay", "-t", "withdraw", "-o", "table", log=log_path)) == b""


def test_a_fold_state_as_a_table(log_path: str) -> None:
    make_log(log_path, [
        {"type": "deposit", "stream": "acct-1", "data": {"amount": 5}},
        {"type": "deposit", "stream": "acct-2", "data": {"amount": 7}},
        {"type": "withdraw", "stream": "acct-1", "data": {"amount": 2}},
    ])
    ledger = ok(run_evlog("replay", "--by", "stream", "--init", '{"balance": 0, "note": "[b]x"}',
                          "--on", "deposit", "s.balance += d.amount", "--on", "withdraw", "s.balance -= d.amount",
                          "-o", "table", log=log_path, env={"COLUMNS": "80"})).decode()
    assert [line.split() for line in ledger.splitlines()] == [
        ["key", "balance", "note"], ["acct-1", "3", "[b]x"], ["acct-2", "7", "[b]x"]]
    counts = ok(run_evlog("replay", "--fold", "s[e.type] = s.get(e.type, 0) + 1", "-o", "table",
                          log=log_path)).decode()
    assert [line.split() for line in counts.splitlines()] == [["key", "value"], ["deposit", "2"], ["withdraw", "1"]]
    ok(run_evlog("projection", "add", "total", "--init", "0", "--on", "deposit", "s + d.amount", log=log_path))
    assert ok(run_evlog("projection", "show", "total", "-o", "table", log=log_path)).decode().strip() == "12"
