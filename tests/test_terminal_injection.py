"""A log from someone else must not drive the terminal that shows it.

One hostile log carries escape sequences (an OSC 52 clipboard write, CSI
screen clearing), a C1 control, a right-to-left override, a line separator
and NUL in its type, stream, data and meta, in a group's and a projection's
name, and in a projection's code and state. Every human-readable output is
run on a pseudo-terminal, with and without colour, and must show those
characters as escapes; NDJSON and JSON must keep the exact values. Its type
and stream names are ones evlog's own append refuses, so the log is written
as another program (or a modified evlog) would have written it.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from conftest import run_evlog
from hypothesis import given
from hypothesis import strategies as st
from terminal import terminal_output

import evlog.ingest
from evlog import Log
from evlog.textsafe import UNSAFE, json_for_terminal, visible, visible_lines

OSC52 = "\x1b]52;c;aGVsbG8=\x07"  # writes "hello" to the clipboard
CLEAR = "\x1b[2J"
C1_CSI = "\x9b"
RLO = "\u202e"  # right-to-left override
LINE_SEPARATOR = "\u2028"
NUL = "\x00"

TYPE = f"pay{RLO}moc.evil{CLEAR}"
STREAM = f"acct{OSC52}{C1_CSI}1{LINE_SEPARATOR}"
MESSAGE = f"hi\n{OSC52}{CLEAR}{C1_CSI}2J{RLO}x{NUL}"
DATA = {"msg": MESSAGE, f"k{CLEAR}": f"{RLO}v"}
META = {"user": f"{CLEAR}root{RLO}"}
GROUP = f"billing{C1_CSI}2J{RLO}\x7f"  # evlog refuses C0 in a group name; C1, DEL and bidi reach it
PROJECTION = f"totals{RLO}{C1_CSI}"
PROJECTION_CODE = f's["{CLEAR}" + e.type] = d.get("msg", "")'

RAW = ("\x1b", C1_CSI, RLO, LINE_SEPARATOR, NUL, "\x07")
"""Characters that must never reach the terminal raw (ESC only as the styles evlog draws itself)."""
STYLE = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def hostile_log(log_path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with monkeypatch.context() as patched:
        patched.setattr(evlog.ingest, "_CONTROL", re.compile(r"(?!)"))  # accept what evlog would refuse
        with Log(log_path) as log:
            for number in range(3):
                log.append(TYPE, {**DATA, "n": number}, stream=STREAM, meta=META)
            log.append("plain", {"n": 9})
    yield log_path


def assert_inert(output: str, *, colour: bool) -> None:
    """No character a terminal would act on, but for the colours evlog itself draws (when asked to)."""
    shown = STYLE.sub("", output) if colour else output
    found = [hex(ord(char)) for char in RAW if char in shown]
    assert not found, f"raw {found} in {output!r}"


def on_terminal(*args: str, log: str, colour: bool, columns: int = 200) -> tuple[int, str, str]:
    env = {"TZ": "UTC"} if colour else {"TZ": "UTC", "NO_COLOR": "1"}
    code, output, stderr = terminal_output(*args, log=log, columns=columns, env=env)
    return code, output.replace("\r\n", "\n"), stderr.decode()


def add_group_and_projection(log: str) -> None:
    assert run_evlog("tail", "--group", GROUP, "-n", "0", log=log).returncode == 0
    added = run_evlog("projection", "add", PROJECTION, "--fold", PROJECTION_CODE, log=log)
    assert added.returncode == 0, added.stderr.decode()


# -- the escaping function ------------------------------------------------------


def test_visible_escapes_every_control_format_and_separator_character() -> None:
    kept = {"\u200c", "\u200d"}  # the joiners: kept between two characters outside ASCII
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") and char not in kept:
            shown = visible(char)
            assert shown != char and shown.isascii() and shown.isprintable(), hex(code)


def test_visible_shows_the_hostile_names() -> None:
    assert visible(TYPE) == "pay\\u202emoc.evil\\u001b[2J"
    assert visible(STREAM) == "acct\\u001b]52;c;aGVsbG8=\\u00071\\u2028".replace("\\u00071", "\\u0007\\u009b1")
    assert visible("a\tb\r\n") == "a\\tb\\r\\n"
    assert visible("pay\u200bpal\u00ad\ufeff\U000e0041") == "pay\\u200bpal\\u00ad\\ufeff\\U000e0041"


def test_joiners_stay_where_they_shape_text_and_are_shown_where_they_hide() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    assert visible(family) == family and visible(persian) == persian
    assert visible("ad\u200dmin") == "ad\\u200dmin"
    assert visible("\u200c\u0645") == "\\u200c\u0645" and visible("\u0645\u200d") == "\u0645\\u200d"


def test_visible_lines_keep_the_message_line_breaks_only() -> None:
    assert visible_lines(f"first {TYPE}\n  second\r{LINE_SEPARATOR}") == [
        "first pay\\u202emoc.evil\\u001b[2J", "  second\\r\\u2028"]


@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
                    max_leaves=12))
def test_json_for_terminal_keeps_the_exact_value_and_shows_what_json_leaves_raw(value: Any) -> None:
    shown = json_for_terminal(orjson.dumps(value))
    assert json.loads(shown) == value
    assert not any(chr(code) in shown.decode() for code in UNSAFE)


# -- every human-readable output, on a terminal --------------------------------

TABLES = [
    ["streams"],
    ["stats"],
    ["stats", "-t", "pay*"],
    ["info"],
    ["replay"],
    ["replay", "-o", "table"],
    ["tail", "-n", "3"],
    ["replay", "--fold", "s[e.type] = d", "-o", "table"],
    ["replay", "--by", "stream", "--fold", "s.n = d.n; s[d.msg] = e.type", "-o", "table"],
    ["replay", "--fold", "s = d.msg", "--where", "e.stream", "-o", "table"],
    ["replay", "--template", "{type} {stream} {data[msg]} {meta} {data} {meta[user]:>30}"],
    ["tail", "-n", "3", "--template", "{type}|{stream}|{data[msg]!r}"],
    ["snapshot", "list"],
]


@pytest.mark.parametrize("colour", [True, False], ids=["colour", "no-colour"])
@pytest.mark.parametrize("args", TABLES, ids=" ".join)
def test_tables_and_templates_show_escapes(hostile_log: str, args: list[str], colour: bool) -> None:
    code, output, stderr = on_terminal(*args, log=hostile_log, colour=colour)
    assert code == 0, stderr
    assert_inert(output, colour=colour)
    assert_inert(stderr, colour=False)
    if not colour:
        assert "\x1b" not in output
    if args[0] != "snapshot":
        assert "\\u001b" in output or "\\u202e" in output or "\\u009b" in output, output


@pytest.mark.parametrize("colour", [True, False], ids=["colour", "no-colour"])
def test_group_and_projection_listings_show_escapes(hostile_log: str, colour: bool) -> None:
    add_group_and_projection(hostile_log)
    code, groups, stderr = on_terminal("group", "list", log=hostile_log, colour=colour)
    assert (code, stderr) == (0, "")
    assert_inert(groups, colour=colour)
    assert "billing\\u009b2J\\u202e\\u007f" in groups
    code, projections, stderr = on_terminal("projection", "list", log=hostile_log, colour=colour)
    assert (code, stderr) == (0, "")
    assert_inert(projections, colour=colour)
    assert "totals\\u202e\\u009b" in projections and "\\u001b[2J" in projections
    for output in ("table", "auto"):
        code, state, stderr = on_terminal("projection", "show", PROJECTION, "-o", output, log=hostile_log,
                                          colour=colour)
        assert (code, stderr) == (0, ""), stderr
        assert_inert(state, colour=colour)
        assert "\\u001b[2J" in state and "\\u202e" in state


def test_listings_piped_as_tables_show_escapes(hostile_log: str) -> None:
    add_group_and_projection(hostile_log)
    for args in (["group", "list"], ["projection", "list"], ["snapshot", "list"], ["streams"], ["stats"], ["info"],
                 ["replay"], ["projection", "show", PROJECTION]):
        result = run_evlog(*args, "-o", "table", log=hostile_log)
        assert result.returncode == 0, (args, result.stderr)
        assert_inert(result.stdout.decode(), colour=False)


def test_messages_naming_a_type_or_stream_from_the_log_are_escaped(hostile_log: str) -> None:
    # The fold fails on the first event, and its message names that event's type, stream and key.
    code, output, stderr = on_terminal("replay", "--fold", "s[e.type] += 1", log=hostile_log, colour=True)
    assert code == 65 and output == ""
    assert_inert(stderr, colour=False)
    assert len(stderr.splitlines()) == 1 and "\\u202e" in stderr
    # A note that names a group from the log.
    add_group_and_projection(hostile_log)
    removed = run_evlog("group", "rm", GROUP, log=hostile_log)
    assert removed.returncode == 0
    assert_inert(removed.stderr.decode(), colour=False)
    assert "\\u202e" in removed.stderr.decode() or "\\u202e" in removed.stderr.decode().replace("\\\\", "\\")


def test_a_hostile_log_id_is_escaped_or_refused_as_damage(hostile_log: str) -> None:
    with Log(hostile_log) as log:
        store = log.store(write=True)
        store.write(lambda txn: txn.put(b"log_id", f"{OSC52}{RLO}".encode(), db=store.dbs[b"meta"]))
    for colour in (True, False):
        code, output, stderr = on_terminal("info", log=hostile_log, colour=colour)
        assert code in (0, 74), stderr  # shown escaped, or refused as a damaged log: never raw
        assert_inert(output, colour=colour)
        assert_inert(stderr, colour=False)
        assert "\\u001b]52;c;aGVsbG8=\\u0007\\u202e" in output if code == 0 else "damaged" in stderr


def test_a_usage_error_quoting_a_hostile_argument_is_escaped(hostile_log: str) -> None:
    result = run_evlog("replay", f"--since{CLEAR}", log=hostile_log)
    assert result.returncode == 2
    [line] = result.stderr.decode().splitlines()
    assert_inert(line, colour=False)
    assert "\\u001b[2J" in line


# -- machine formats keep the exact values --------------------------------------


def test_ndjson_and_json_keep_the_exact_values(hostile_log: str) -> None:
    piped = [json.loads(line) for line in run_evlog("replay", log=hostile_log).stdout.splitlines()]
    assert [(e["type"], e["stream"], e["data"]["msg"], e["meta"]) for e in piped[:1]] == [(TYPE, STREAM, MESSAGE,
                                                                                           META)]
    array = json.loads(run_evlog("replay", "-o", "json", log=hostile_log).stdout)
    assert array == piped
    streams = [json.loads(line)["stream"] for line in run_evlog("streams", log=hostile_log).stdout.splitlines()]
    assert streams == [STREAM]
    assert json.loads(run_evlog("info", log=hostile_log).stdout)["types"] == {TYPE: 3, "plain": 1}
    assert json.loads(run_evlog("stats", log=hostile_log).stdout)["types"][0]["type"] == TYPE


JSON_OUTPUTS = [["replay", "-o", "ndjson"], ["replay", "-o", "json"], ["streams", "-o", "json"], ["info", "-o", "json"],
                ["stats", "-o", "json"], ["replay", "--fold", "s[e.type] = d"]]


@pytest.mark.parametrize("args", JSON_OUTPUTS, ids=" ".join)
def test_json_on_a_terminal_keeps_the_values_and_escapes_the_rest(hostile_log: str, args: list[str]) -> None:
    code, output, stderr = on_terminal(*args, log=hostile_log, colour=True)
    assert (code, stderr) == (0, "")
    assert_inert(output, colour=False)
    piped = run_evlog(*args, log=hostile_log).stdout
    if args[-1] == "ndjson":
        assert [json.loads(line) for line in output.splitlines()] == [json.loads(line) for line in piped.splitlines()]
    else:
        expected = json.loads(piped)
        if args[0] == "info":  # the size may differ by the lock file's growth; the rest must not
            expected.pop("size_bytes")
            assert {k: v for k, v in json.loads(output).items() if k != "size_bytes"} == expected
        else:
            assert json.loads(output) == expected
