"""Positions for ``--from`` and ``--until``: every documented form, and the edges of time selection.

The forms are checked twice: by the parser (:func:`evlog.positions.parse_position`,
which takes a fixed ``now_ns`` so relative times are exact) and end to end, through
``Log.read`` and the real ``evlog replay`` command, against logs whose event times are
set explicitly. Local time is proved by running the command under two time zones.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import run_evlog

from evlog import ConflictError, Log, PositionError
from evlog.positions import Position, parse_position

NS = 1_000_000_000
HOUR = 3600 * NS

# POSIX zone strings: they need no tz database. JST-9 is UTC+9 (Asia/Tokyo, no DST).
TOKYO = "JST-9"
UTC = "UTC0"


def make_log(path: str, events: Iterable[Mapping[str, Any]]) -> None:
    with Log(path) as log:
        log.append_many(events)


def read_seqs(path: str, **selection: Any) -> list[int]:
    with Log(path) as log:
        return [event.seq for event in log.read(**selection)]


def cli_seqs(log: str, *args: str, env: dict[str, str] | None = None) -> list[int]:
    """Seqs printed by `evlog replay ARGS`; the command must succeed."""
    result = run_evlog("replay", *args, "--template", "{seq}", log=log, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return [int(line) for line in result.stdout.split()]


def local_ns(*parts: int) -> int:
    """A naive date/time read as local time, in ns (as this test process sees it)."""
    return int(datetime(*parts).timestamp()) * NS  # type: ignore[arg-type]


# Six events; 2, 3 and 4 share one time, 5 has a fractional second.
TIMED = [
    "2026-11-01T10:00:00Z",
    "2026-11-01T11:00:00Z",
    "2026-11-01T11:00:00Z",
    "2026-11-01T11:00:00Z",
    "2026-11-01T12:00:00.5Z",
    "2026-11-02T00:00:00Z",
]
ALL = [1, 2, 3, 4, 5, 6]


@pytest.fixture
def timed_log(log_path: str) -> str:
    make_log(
        log_path,
        [{"type": "tick", "ts": ts, "id": f"k{seq}", "stream": "clock"} for seq, ts in enumerate(TIMED, 1)],
    )
    return log_path


# -- the parser ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("1234", "seq", 1234),
        ("1", "seq", 1),
        (" 7 ", "seq", 7),
        ("-1", "from_end", 1),
        ("-100", "from_end", 100),
        ("id:order-17", "id", "order-17"),
        ("id:with:colons", "id", "with:colons"),
    ],
)
def test_parse_seq_from_end_and_id_forms(text: str, kind: str, value: object) -> None:
    position = parse_position(text)
    assert (position.kind, position.value) == (kind, value)


def test_parse_accepts_integers_as_well_as_text() -> None:
    assert parse_position(5).kind == "seq" and parse_position(5).value == 5
    assert parse_position(-3).kind == "from_end" and parse_position(-3).value == 3


@pytest.mark.parametrize(
    ("text", "expected_ns"),
    [
        ("2026-11-26T10:00:00Z", 1795687200 * NS),
        ("2026-11-26T10:00Z", 1795687200 * NS),
        ("2026-11-26T10:00:00.5Z", 1795687200 * NS + 500_000_000),
        ("2026-11-26T10:00:00.000000001Z", 1795687200 * NS + 1),
        ("2026-11-26T12:00:00+02:00", 1795687200 * NS),
        ("2026-11-26T12:00+02:00", 1795687200 * NS),
        ("2026-11-26T05:30:00-04:30", 1795687200 * NS),
        ("2026-11-26t10:00:00z", 1795687200 * NS),
    ],
)
def test_parse_zoned_times_are_exact(text: str, expected_ns: int) -> None:
    position = parse_position(text)
    assert position.kind == "time"
    assert position.value == expected_ns


@pytest.mark.parametrize(
    ("text", "parts", "fraction_ns"),
    [
        ("2026-11-26", (2026, 11, 26), 0),
        ("2026-11-26T10:00", (2026, 11, 26, 10, 0), 0),
        ("2026-11-26 10:00", (2026, 11, 26, 10, 0), 0),
        ("2026-11-26T10:00:07", (2026, 11, 26, 10, 0, 7), 0),
        ("2026-11-26T10:00:07.25", (2026, 11, 26, 10, 0, 7), 250_000_000),
        ("2026-11-26T10:00:07.123456789", (2026, 11, 26, 10, 0, 7), 123_456_789),
        ("2024-02-29", (2024, 2, 29), 0),
    ],
)
def test_parse_naive_times_are_local_time(text: str, parts: tuple[int, ...], fraction_ns: int) -> None:
    position = parse_position(text)
    assert position.kind == "time"
    assert position.value == local_ns(*parts) + fraction_ns


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("-30s", 30), ("-15m", 900), ("-2h", 7200), ("-7d", 7 * 86400), ("-1w", 7 * 86400), ("now", 0)],
)
def test_parse_relative_times_count_back_from_now(text: str, seconds: int) -> None:
    fixed_now = 1_800_000_000 * NS + 123
    assert parse_position(text, now_ns=fixed_now).value == fixed_now - seconds * NS
    # Without a fixed now, the clock is read: compare with a tolerance.
    expected = time.time_ns() - seconds * NS
    assert abs(int(parse_position(text).value) - expected) < 5 * NS


def test_parse_today_and_yesterday_are_local_midnights() -> None:
    fixed_now = 1_800_000_000 * NS + 42
    midnight = datetime.fromtimestamp(fixed_now // NS).replace(hour=0, minute=0, second=0, microsecond=0)
    assert parse_position("today", now_ns=fixed_now).value == int(midnight.timestamp()) * NS
    yesterday = midnight - timedelta(days=1)
    assert parse_position("yesterday", now_ns=fixed_now).value == int(yesterday.timestamp()) * NS
    assert parse_position("TODAY", now_ns=fixed_now) == parse_position("today", now_ns=fixed_now)


@pytest.mark.parametrize(
    "text",
    ["garbage", "15m", "-5x", "2026-13-01", "2026-02-30", "2026-11-26T25:00", "", "id:", "2026-11-26Z"],
)
def test_parse_rejects_what_is_not_a_position(text: str) -> None:
    with pytest.raises(PositionError) as caught:
        parse_position(text)
    assert caught.value.exit_code == 2


def test_parse_zero_is_rejected_because_seqs_start_at_one() -> None:
    with pytest.raises(PositionError, match="start at 1"):
        parse_position("0")
    with pytest.raises(PositionError):
        parse_position(0)


def test_parse_error_names_the_accepted_forms() -> None:
    with pytest.raises(PositionError) as caught:
        parse_position("garbage")
    message = str(caught.value)
    for form in ("'garbage'", "1234", "-N", "2026-11-26", "+02:00", "-15m", "now", "today", "yesterday", "id:KEY"):
        assert form in message, form


# -- resolving against a log: seqs, -N, ids -----------------------------------


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ({"from_": "3"}, [3, 4, 5, 6]),
        ({"until": "3"}, [1, 2, 3]),
        ({"from_": "2", "until": "4"}, [2, 3, 4]),
        ({"from_": 6, "until": 6}, [6]),
        ({"from_": "7"}, []),
        ({"from_": "100"}, []),
        ({"until": "100"}, ALL),
        ({"from_": "-1"}, [6]),
        ({"from_": "-2"}, [5, 6]),
        ({"until": "-1"}, ALL),
        ({"until": "-2"}, [1, 2, 3, 4, 5]),
        ({"from_": "-6"}, ALL),
        ({"from_": "-100"}, ALL),
        ({"until": "-6"}, [1]),
        ({"until": "-100"}, []),
        ({"from_": "-3", "until": "-2"}, [4, 5]),
        ({"from_": "id:k3"}, [3, 4, 5, 6]),
        ({"until": "id:k3"}, [1, 2, 3]),
        ({"from_": "id:k2", "until": "id:k2"}, [2]),
        # Reversed, but only comparable once resolved: nothing between them.
        ({"from_": "id:k5", "until": "id:k3"}, []),
    ],
)
def test_read_by_seq_from_end_and_id(timed_log: str, selection: dict[str, Any], expected: list[int]) -> None:
    assert read_seqs(timed_log, **selection) == expected


def test_read_unknown_id_raises_position_error(timed_log: str) -> None:
    with Log(timed_log) as log, pytest.raises(PositionError, match="nope"):
        list(log.read(from_="id:nope"))


# -- resolving times: inclusive bounds and edges ------------------------------


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        # A time equal to an event's ts includes it, from both sides.
        ({"from_": "2026-11-01T10:00:00Z"}, ALL),
        ({"until": "2026-11-01T10:00:00Z"}, [1]),
        ({"from_": "2026-11-02T00:00:00Z"}, [6]),
        ({"until": "2026-11-02T00:00:00Z"}, ALL),
        # Several events at the same time: all of them, from either side.
        ({"from_": "2026-11-01T11:00:00Z"}, [2, 3, 4, 5, 6]),
        ({"until": "2026-11-01T11:00:00Z"}, [1, 2, 3, 4]),
        ({"from_": "2026-11-01T11:00:00Z", "until": "2026-11-01T11:00:00Z"}, [2, 3, 4]),
        # Between two events.
        ({"from_": "2026-11-01T10:30:00Z"}, [2, 3, 4, 5, 6]),
        ({"until": "2026-11-01T10:30:00Z"}, [1]),
        ({"from_": "2026-11-01T10:30:00Z", "until": "2026-11-01T11:30:00Z"}, [2, 3, 4]),
        # Nanosecond precision at a fractional second.
        ({"from_": "2026-11-01T12:00:00.5Z"}, [5, 6]),
        ({"from_": "2026-11-01T12:00:00.500000001Z"}, [6]),
        ({"until": "2026-11-01T12:00:00.499999999Z"}, [1, 2, 3, 4]),
        # Before the first event and after the last.
        ({"until": "2026-10-01T00:00:00Z"}, []),
        ({"from_": "2026-10-01T00:00:00Z"}, ALL),
        ({"from_": "2026-11-03T00:00:00Z"}, []),
        ({"until": "2026-11-03T00:00:00Z"}, ALL),
        # Offsets and the short zoned form name the same instants.
        ({"from_": "2026-11-01T13:00+02:00", "until": "2026-11-01T06:00:00-05:00"}, [2, 3, 4]),
        # Between two events that are next to each other: nothing.
        ({"from_": "2026-11-01T10:10:00Z", "until": "2026-11-01T10:20:00Z"}, []),
        # Mixed kinds: a time and a seq.
        ({"from_": "2026-11-01T11:00:00Z", "until": "3"}, [2, 3]),
    ],
)
def test_read_by_time(timed_log: str, selection: dict[str, Any], expected: list[int]) -> None:
    assert read_seqs(timed_log, **selection) == expected


def test_many_events_with_one_time_are_found_by_binary_search(log_path: str) -> None:
    # 3,000 events crosses the reader's chunk size; the shared time sits in the middle.
    events = [{"type": "a", "ts": 1_000 + min(i, 1_000) + max(i - 2_000, 0)} for i in range(3_000)]
    make_log(log_path, events)
    same = [seq for seq, event in enumerate(events, 1) if event["ts"] == 2_000]
    assert len(same) == 1_001
    assert read_seqs(log_path, from_="1970-01-01T00:00:00.000002Z", until="1970-01-01T00:00:00.000002Z") == same


def test_time_positions_on_an_empty_log_select_nothing(log_path: str) -> None:
    with Log(log_path) as log:
        with pytest.raises(ConflictError):
            log.append("x", stream="s", expect=1)  # creates the log, writes nothing
        assert list(log.read(from_="2026-01-01")) == []
        assert list(log.read(until="now")) == []
        assert list(log.read(from_="-1")) == []


# -- the command --------------------------------------------------------------


def test_cli_seq_and_time_edges(timed_log: str) -> None:
    assert cli_seqs(timed_log, "--from", "2026-11-01T11:00:00Z", "--until", "2026-11-01T11:00:00Z") == [2, 3, 4]
    assert cli_seqs(timed_log, "--from", "2026-11-01T10:30Z", "--until", "2026-11-01T13:00+02:00") == [2, 3, 4]
    assert cli_seqs(timed_log, "--from", "-2") == [5, 6]
    assert cli_seqs(timed_log, "--until", "2026-10-01T00:00:00Z") == []
    assert cli_seqs(timed_log, "--from", "2026-11-03T00:00:00Z") == []


@pytest.mark.parametrize(
    ("start", "end", "shown"),
    [
        ("5", "3", "--from (seq 5) is after --until (seq 3)"),
        ("-2", "-5", "--from (-2) is after --until (-5)"),
        ("2026-11-01T12:00:00Z", "2026-11-01T10:30:00Z", "--from (2026-11-01T12:00:00"),
        ("@1793534400", "@1793530000", "is after --until"),
    ],
)
@pytest.mark.parametrize("command", ["replay", "stats"])
def test_cli_reversed_range_is_a_usage_error(timed_log: str, start: str, end: str, shown: str, command: str) -> None:
    result = run_evlog(command, "--from", start, "--until", end, log=timed_log)
    assert (result.returncode, result.stdout) == (2, b"")
    message = result.stderr.decode()
    assert message.count("\n") == 1 and message.startswith("evlog: the range is empty because it is reversed")
    assert shown in message and "swap them" in message
    with Log(timed_log) as log, pytest.raises(PositionError, match="reversed"):
        list(log.read(from_=start, until=end))


def test_a_range_just_past_its_end_is_empty_not_reversed(timed_log: str) -> None:
    # Reading "from the last seen + 1 up to the head" when nothing is new.
    assert cli_seqs(timed_log, "--from", "7", "--until", "6") == []
    assert cli_seqs(timed_log, "--from", "-1", "--until", "-2") == []
    with Log(timed_log) as log:
        assert list(log.read(from_=5, until=2)) == []  # a program's own seqs: no check


def test_cli_a_unix_time_taken_for_a_seq_is_named(timed_log: str) -> None:
    result = run_evlog("replay", "--from", "1736467200", log=timed_log)
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.decode() == (
        "evlog: --from seq 1736467200 is beyond the last event (seq 6); for a time, write it as a date "
        "or as @1736467200 (seconds since 1970)\n"
    )


def test_epoch_seconds_are_a_time(timed_log: str) -> None:
    assert parse_position("@1736467200") == Position("time", 1_736_467_200 * 10**9)
    assert parse_position("@1736467200.25") == Position("time", 1_736_467_200_250_000_000)
    with Log(timed_log) as log:
        second = log.get(2)
        assert second is not None
        whole, fraction = divmod(second.ts, 10**9)
        at = f"@{whole}.{fraction:09d}"
    assert cli_seqs(timed_log, "--from", at, "--until", at) == [2, 3, 4]


def test_cli_seq_beyond_the_head(timed_log: str) -> None:
    assert cli_seqs(timed_log, "--from", "7") == []
    assert cli_seqs(timed_log, "--until", "1000000") == ALL
    assert cli_seqs(timed_log, "--from", "6", "--until", "99") == [6]


def test_cli_id_position(timed_log: str) -> None:
    assert cli_seqs(timed_log, "--from", "id:k4") == [4, 5, 6]
    assert cli_seqs(timed_log, "--until", "id:k2") == [1, 2]


def test_cli_unknown_id_is_a_clear_usage_error(timed_log: str) -> None:
    result = run_evlog("replay", "--from", "id:no-such-key", log=timed_log)
    assert result.returncode == 2
    assert result.stdout == b""
    message = result.stderr.decode()
    assert message.startswith("evlog: ") and "no-such-key" in message and "id" in message
    assert "Traceback" not in message


@pytest.mark.parametrize("bad", ["garbage", "15m", "yesterdays", "2026-11-26T10"])
def test_cli_garbage_position_lists_the_accepted_forms(timed_log: str, bad: str) -> None:
    for option in ("--from", "--until"):
        result = run_evlog("replay", option, bad, log=timed_log)
        assert result.returncode == 2, result.stderr
        assert result.stdout == b""
        message = result.stderr.decode()
        assert message.startswith("evlog: ") and message.count("\n") == 1, message
        for form in ("1234", "-N", "2026-11-26", "-15m", "now", "today", "yesterday", "id:KEY"):
            assert form in message, (form, message)


def test_cli_zero_position_is_a_usage_error(timed_log: str) -> None:
    result = run_evlog("replay", "--from", "0", log=timed_log)
    assert result.returncode == 2
    message = result.stderr.decode()
    assert message.startswith("evlog: ") and "'0'" in message and "-1" in message


@pytest.fixture
def around_tokyo_midnight(log_path: str) -> str:
    """Two events: 2026-11-01 05:00 in Tokyo (still 10-31 in UTC), and 05:00 UTC."""
    make_log(
        log_path,
        [
            {"type": "a", "ts": "2026-10-31T20:00:00Z"},
            {"type": "b", "ts": "2026-11-01T05:00:00Z"},
        ],
    )
    return log_path


@pytest.mark.parametrize(
    ("args", "in_utc", "in_tokyo"),
    [
        (("--from", "2026-11-01"), [2], [1, 2]),  # a date is local midnight
        (("--until", "2026-11-01T06:00"), [1, 2], [1]),  # minutes
        (("--until", "2026-11-01T05:30:00"), [1, 2], [1]),  # seconds
        (("--until", "2026-11-01T05:00:00.5"), [1, 2], [1]),  # fractions
        (("--from", "2026-11-01T05:00:00.000000001"), [], [2]),  # to the nanosecond
        (("--from", "2026-11-01T00:00Z"), [2], [2]),  # a zone makes the zone irrelevant
        (("--from", "2026-11-01T09:00+09:00"), [2], [2]),
    ],
)
def test_cli_naive_times_are_read_in_the_local_zone(
    around_tokyo_midnight: str, args: tuple[str, ...], in_utc: list[int], in_tokyo: list[int]
) -> None:
    assert cli_seqs(around_tokyo_midnight, *args, env={"TZ": UTC}) == in_utc
    assert cli_seqs(around_tokyo_midnight, *args, env={"TZ": TOKYO}) == in_tokyo


@pytest.mark.parametrize("zone", [UTC, TOKYO, "EST5"])
def test_cli_the_edges_of_the_calendar_are_positions(around_tokyo_midnight: str, zone: str) -> None:
    # Local midnight of year 1 in UTC+9 lies in year 0 in UTC, which datetime cannot represent.
    env = {"TZ": zone}
    assert cli_seqs(around_tokyo_midnight, "--from", "0001-01-01", env=env) == [1, 2]
    assert cli_seqs(around_tokyo_midnight, "--until", "0001-01-01", env=env) == []
    assert cli_seqs(around_tokyo_midnight, "--until", "9999-12-31T23:59:59", env=env) == [1, 2]
    assert cli_seqs(around_tokyo_midnight, "--from", "9999-12-31", env=env) == []


def test_cli_relative_times(log_path: str) -> None:
    now = time.time_ns()
    make_log(
        log_path,
        [
            {"type": "a", "ts": now - 3 * HOUR},
            {"type": "b", "ts": now - 90 * 60 * NS},
            {"type": "c", "ts": now - 60 * NS},
        ],
    )
    assert cli_seqs(log_path, "--from", "-2h") == [2, 3]
    assert cli_seqs(log_path, "--until", "-2h") == [1]
    assert cli_seqs(log_path, "--from", "-15m") == [3]
    assert cli_seqs(log_path, "--from", "-30s") == []
    assert cli_seqs(log_path, "--from", "-7d") == [1, 2, 3]
    assert cli_seqs(log_path, "--from", "-1w", "--until", "-100m") == [1]
    assert cli_seqs(log_path, "--from", "now") == []
    assert cli_seqs(log_path, "--until", "now") == [1, 2, 3]


def test_cli_today_and_yesterday(log_path: str) -> None:
    today = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    make_log(
        log_path,
        [
            {"type": "before-yesterday", "ts": int((yesterday - timedelta(hours=1)).timestamp()) * NS},
            {"type": "yesterday", "ts": int((yesterday + timedelta(hours=1)).timestamp()) * NS},
            {"type": "today", "ts": int((today + timedelta(seconds=1)).timestamp()) * NS},
        ],
    )
    assert cli_seqs(log_path, "--from", "yesterday", "--until", "today") == [2]
    assert cli_seqs(log_path, "--from", "today") == [3]
    assert cli_seqs(log_path, "--until", "yesterday") == [1]


def test_reading_creates_nothing_for_a_position_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.lmdb"
    result = run_evlog("replay", "--from", "garbage", log=str(missing))
    assert result.returncode in (2, 66)
    assert not missing.exists()
