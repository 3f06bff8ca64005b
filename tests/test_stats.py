"""``evlog stats``: events over time, top types and streams, totals, as JSON and drawn.

Events carry explicit times, so every bin is known in advance. The numbers are
checked against a replay of the same selection, the fast path (binary search and
stored counters) against the scan path (a filter that matches everything), and the
drawing against the width of the console, at 80 and 160 columns and in-process.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import run_evlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from terminal import terminal_output

from evlog import Log
from evlog.stats import Bin, choose_bin_seconds, stats
from evlog.timefmt import parse_rfc3339

NS = 1_000_000_000
FIELDS = [
    "events", "first_seq", "last_seq", "first_ts", "last_ts", "span_seconds", "events_per_second",
    "types", "streams", "distinct_types", "distinct_streams", "events_without_stream", "bin_seconds", "bins",
]

BANK: list[dict[str, Any]] = [
    {"type": "account.opened", "stream": "account-1", "ts": "2026-11-01T09:00:00Z", "data": {"owner": "Ada"}},
    {"type": "deposit", "stream": "account-1", "ts": "2026-11-01T09:30:00Z", "data": {"amount": 100}},
    {"type": "account.opened", "stream": "account-2", "ts": "2026-11-01T10:00:00Z", "data": {"owner": "Grace"}},
    {"type": "deposit", "stream": "account-2", "ts": "2026-11-01T10:15:00Z", "data": {"amount": 250}},
    {"type": "withdraw", "stream": "account-1", "ts": "2026-11-01T11:05:00Z", "data": {"amount": 30}},
    {"type": "audit", "ts": "2026-11-01T12:00:00Z"},
]
UTC = {"TZ": "UTC"}


def make_log(path: str, events: Sequence[Mapping[str, Any]]) -> str:
    with Log(path) as log:
        log.append_many(events, max_future=None)  # times up to a year ahead, on purpose
    return path


def ns(text: str) -> int:
    value = parse_rfc3339(text)
    assert value is not None
    return value


def stats_json(log: str, *args: str, env: Mapping[str, str] = UTC) -> dict[str, Any]:
    result = run_evlog("stats", *args, log=log, env=dict(env))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    assert result.stdout.count(b"\n") == 1  # one object, one line, when piped
    facts: dict[str, Any] = json.loads(result.stdout)
    return facts


def replayed(log: str, *args: str) -> list[dict[str, Any]]:
    result = run_evlog("replay", "-o", "ndjson", *args, log=log)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def bank_log(log_path: str) -> str:
    return make_log(log_path, BANK)


# -- the library ----------------------------------------------------------------


def test_whole_log(bank_log: str) -> None:
    with Log(bank_log) as log:
        result = stats(log, utc_offset=0)
    assert (result.events, result.first_seq, result.last_seq) == (6, 1, 6)
    assert (result.first_ts, result.last_ts) == (ns("2026-11-01T09:00:00Z"), ns("2026-11-01T12:00:00Z"))
    assert result.span_seconds == 3 * 3600
    assert result.events_per_second == 6 / (3 * 3600)
    assert [(c.name, c.count) for c in result.types] == [
        ("account.opened", 2), ("deposit", 2), ("audit", 1), ("withdraw", 1)]  # by count, then by name
    assert [(c.name, c.count, c.share) for c in result.streams] == [("account-1", 3, 0.5), ("account-2", 2, 2 / 6)]
    assert (result.distinct_types, result.distinct_streams, result.events_without_stream) == (4, 2, 1)
    # Three hours in at most 32 bins: ten minutes each, from 09:00 to 12:00 (19 bins).
    assert result.bin_seconds == 600
    starts = [ns("2026-11-01T09:00:00Z") + i * 600 * NS for i in range(19)]
    counts = dict.fromkeys(starts, 0)
    for event in BANK:
        moment = ns(event["ts"])
        counts[moment - (moment - starts[0]) % (600 * NS)] += 1
    assert result.bins == tuple(Bin(start, count) for start, count in counts.items())


def test_fast_path_and_scan_agree(bank_log: str) -> None:
    # A type filter that matches every event forces the scan; the numbers must not change.
    with Log(bank_log) as log:
        for offset in (0, 3600, -5 * 3600 - 1800):
            for from_, until in ((None, None), (2, None), (None, 5), (2, 5), ("2026-11-01T10:00Z", None)):
                fast = stats(log, from_=from_, until=until, utc_offset=offset)
                scanned = stats(log, from_=from_, until=until, types=["*"], utc_offset=offset)
                assert fast == scanned, (offset, from_, until)


def test_filters_and_ranges_count_what_replay_prints(bank_log: str) -> None:
    with Log(bank_log) as log:
        for options in (
            {"types": ["deposit"]},
            {"types": ["account.*"], "from_": 2},
            {"streams": ["account-1"]},
            {"streams": ["account-*"], "until": "2026-11-01T10:59Z"},
            {"streams": ["account-2", "account-1"], "types": ["withdraw", "deposit"]},
            {"from_": "-2"},
            {"from_": 3, "until": 4},
        ):
            result = stats(log, utc_offset=0, **options)  # type: ignore[arg-type]
            rows = list(log.rows(**options))  # type: ignore[arg-type]
            assert result.events == len(rows) == sum(b.count for b in result.bins), options
            assert {c.name: c.count for c in result.types} == Counter(envelope[3] for _, envelope in rows)
            assert result.first_seq == rows[0][0] and result.last_seq == rows[-1][0]
            assert result.first_ts == rows[0][1][1] and result.last_ts == rows[-1][1][1]


def test_top_lists_are_cut_and_ties_go_by_name(log_path: str) -> None:
    events = [{"type": f"t{i % 15:02d}", "stream": f"s{i % 12:02d}"} for i in range(60)]
    with Log(make_log(log_path, events)) as log:
        for result in (stats(log), stats(log, types=["*"])):
            assert [c.name for c in result.types] == [f"t{i:02d}" for i in range(10)]
            assert [c.name for c in result.streams] == [f"s{i:02d}" for i in range(10)]
            assert (result.distinct_types, result.distinct_streams) == (15, 12)
        assert [c.name for c in stats(log, top=3).types] == ["t00", "t01", "t02"]


def test_empty_log_and_empty_selection(log_path: str) -> None:
    assert run_evlog("append", "x", "-s", "s", "--expect", "1", log=log_path).returncode == 3  # creates the log only
    with Log(log_path) as log:
        empty = stats(log)
        assert (empty.events, empty.first_seq, empty.bins, empty.types, empty.bin_seconds) == (0, None, (), (), None)
        assert empty.span_seconds is None and empty.events_per_second is None
        log.append("x", stream="s")
        assert stats(log, from_=2).events == 0
        assert stats(log, types=["y"]).events == 0
        assert stats(log, streams=["t"]).events == 0


def test_library_arguments_are_checked(bank_log: str) -> None:
    from evlog import UsageError

    with Log(bank_log) as log:
        with pytest.raises(UsageError, match="max_bins must be at least 1"):
            stats(log, max_bins=0)
        assert len(stats(log, max_bins=1, utc_offset=0).bins) == 1
        with pytest.raises(UsageError, match="top must be 0 or more"):
            stats(log, top=-1)
        for no_lists in (stats(log, top=0), stats(log, top=0, types=["*"])):
            assert (no_lists.types, no_lists.streams) == ((), ())
            # The lists are cut, not the counts of everything.
            assert (no_lists.distinct_types, no_lists.distinct_streams, no_lists.events) == (4, 2, 6)


def test_one_event_has_no_rate(log_path: str) -> None:
    with Log(make_log(log_path, [{"type": "x", "ts": "2026-11-01T09:00:00.5Z"}])) as log:
        result = stats(log, utc_offset=0)
    assert (result.events, result.span_seconds, result.events_per_second) == (1, 0.0, None)
    assert result.bins == (Bin(ns("2026-11-01T09:00:00Z"), 1),) and result.bin_seconds == 1


@pytest.mark.parametrize(
    ("span", "size"),
    [
        (0, 1), (10, 1), (31, 1), (32, 2), (60, 2), (3600, 120), (3 * 3600, 600), (86_400 - 1, 3600),
        (7 * 86_400, 6 * 3600), (30 * 86_400, 86_400), (365 * 86_400, 14 * 86_400),
        (100 * 365 * 86_400, 4 * 364 * 86_400),
    ],
)
def test_bin_size_follows_the_span(span: int, size: int) -> None:
    origin = 0  # with bins aligned to the first time, n bins cover n * size - 1 seconds
    assert choose_bin_seconds(origin, origin + span * NS, origin) == size


def test_bins_start_at_the_first_event(log_path: str) -> None:
    # Bins aligned to round times would start before the first event and draw a half-empty
    # first bar; they start at the second of the first selected event instead.
    times = ("2026-11-02T00:30:17.250Z", "2026-11-02T00:31:00Z", "2026-11-16T11:00:00Z", "2027-11-01T00:00:00Z")
    with Log(make_log(log_path, [{"type": "x" if i else "y", "ts": ts} for i, ts in enumerate(times)])) as log:
        fortnight = stats(log, until=3, utc_offset=3600)
        assert fortnight.bin_seconds == 12 * 3600
        assert fortnight.bins[0] == Bin(ns("2026-11-02T00:30:17Z"), 2)
        year = stats(log, utc_offset=3600)
        assert year.bin_seconds == 14 * 86_400
        assert year.bins[0].start == ns("2026-11-02T00:30:17Z")
        # With a type selected, the first bin starts at the first event of that type.
        selected = stats(log, types=["x"], utc_offset=3600)
        assert selected.bins[0] == Bin(ns("2026-11-02T00:31:00Z"), 1)
        assert sum(b.count for b in selected.bins) == 3


def test_bin_labels_show_the_seconds_of_a_start_off_the_minute(log_path: str) -> None:
    times = ("2026-11-02T00:30:17Z", "2026-11-02T02:00:00Z", "2026-11-02T03:00:00Z")
    make_log(log_path, [{"type": "x", "ts": ts} for ts in times])
    drawn = run_evlog("stats", "-o", "table", "--bins", "4", log=log_path, env=UTC).stdout.decode()
    assert re.search(r"^2026-11-02 00:30:17 1 █", drawn, re.MULTILINE), drawn
    assert re.search(r"^           01:30:17 1 ", drawn, re.MULTILINE), drawn


def test_sparse_times_coarsen_the_histogram_exactly(log_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Phases of 4,200 events (the scan's histogram keeps 4,096 buckets) a little more than a
    # second, minute, hour, day and week apart: a scan coarsens its buckets at every step and
    # must still give exactly the bins of the binary searches.
    from evlog import stats as stats_module

    gaps = [1, 61, 3601, 86_401, 8 * 86_400]
    moment = ns("2000-01-01T00:00:00Z")
    events = []
    for index in range(len(gaps) * 4200):
        moment += gaps[index // 4200] * NS
        events.append({"type": "x", "ts": moment})
    with Log(make_log(log_path, events)) as log:
        levels = []
        original = stats_module._Histogram._coarsen

        def coarsen(histogram: Any) -> None:
            original(histogram)
            levels.append(histogram.level)

        monkeypatch.setattr(stats_module._Histogram, "_coarsen", coarsen)
        for until in (4200, 8400, 12_600, 16_800, None):
            fast = stats(log, until=until, utc_offset=0)
            assert fast == stats(log, until=until, types=["x"], utc_offset=0), until
            assert sum(b.count for b in fast.bins) == fast.events
        assert max(levels) == 5  # up to buckets of 364 days


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=10 * 86_400 * NS), min_size=0, max_size=40),
    types=st.lists(st.sampled_from(["a", "b", "c.d"]), min_size=40, max_size=40),
    bounds=st.tuples(st.integers(min_value=-45, max_value=45), st.integers(min_value=-45, max_value=45)),
    pattern=st.sampled_from([None, ["a"], ["c.*", "b"]]),
    offset=st.sampled_from([0, 3600, -4 * 3600, 5 * 3600 + 1800]),
)
def test_bins_sum_to_what_a_replay_of_the_range_yields(
    gaps: list[int], types: list[str], bounds: tuple[int, int], pattern: list[str] | None, offset: int
) -> None:
    moment = ns("2026-11-01T00:00:00Z")
    events = []
    for index, gap in enumerate(gaps):
        moment += gap
        events.append({"type": types[index], "stream": f"s{index % 3}" if index % 4 else None, "ts": moment})
    from_, until = (bound if bound else None for bound in bounds)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "events.lmdb")
        make_log(path, events or [{"type": "a"}])
        with Log(path) as log:
            result = stats(log, from_=from_, until=until, types=pattern, utc_offset=offset)
            rows = list(log.rows(from_=from_, until=until, types=pattern))
            assert sum(b.count for b in result.bins) == result.events == len(rows)
            assert sum(c.count for c in result.types) == len(rows)
            assert result.events_without_stream == sum(1 for _, envelope in rows if envelope[4] is None)
            if rows:
                assert result.bins[0].start <= rows[0][1][1] < result.bins[0].start + result.bin_seconds * NS
                assert result.bins[-1].start <= rows[-1][1][1] < result.bins[-1].start + result.bin_seconds * NS
                assert len(result.bins) <= 32


# -- the command ------------------------------------------------------------------


def test_json_output(bank_log: str) -> None:
    facts = stats_json(bank_log)
    assert list(facts) == FIELDS
    with Log(bank_log) as log:
        assert facts == json.loads(json.dumps(stats(log, utc_offset=0).to_dict()))
    assert facts["first_ts"] == "2026-11-01T09:00:00.000000000Z"
    assert facts["span_seconds"] == 10800.0 and facts["events_per_second"] == 0.000555556
    assert facts["types"][0] == {"type": "account.opened", "count": 2, "percent": 33.33}
    assert facts["streams"] == [
        {"stream": "account-1", "count": 3, "percent": 50.0}, {"stream": "account-2", "count": 2, "percent": 33.33}]
    assert facts["bin_seconds"] == 600 and len(facts["bins"]) == 19
    assert facts["bins"][:4] == [
        {"start": "2026-11-01T09:00:00.000000000Z", "count": 1},
        {"start": "2026-11-01T09:10:00.000000000Z", "count": 0},
        {"start": "2026-11-01T09:20:00.000000000Z", "count": 0},
        {"start": "2026-11-01T09:30:00.000000000Z", "count": 1},
    ]
    assert stats_json(bank_log, "-o", "json") == facts


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-t", "deposit"],
        ["--type", "account.*", "--from", "2"],
        ["-s", "account-1"],
        ["--stream", "account-*", "--until", "2026-11-01T10:59Z"],
        ["--from", "-3"],
        ["--from", "2026-11-01T09:15Z", "--until", "5"],
    ],
)
def test_counts_equal_a_replay(bank_log: str, args: list[str]) -> None:
    facts = stats_json(bank_log, *args)
    events = replayed(bank_log, *args)
    assert facts["events"] == len(events) == sum(item["count"] for item in facts["bins"])
    assert {item["type"]: item["count"] for item in facts["types"]} == Counter(e["type"] for e in events)
    streams = Counter(e["stream"] for e in events if e["stream"] is not None)
    assert {item["stream"]: item["count"] for item in facts["streams"]} == streams
    assert facts["events_without_stream"] == sum(1 for e in events if e["stream"] is None)
    assert (facts["first_seq"], facts["last_seq"]) == (events[0]["seq"], events[-1]["seq"])
    assert (facts["first_ts"], facts["last_ts"]) == (events[0]["ts"], events[-1]["ts"])
    for item in facts["types"]:
        assert item["percent"] == round(100 * item["count"] / len(events), 2)


def test_top_and_bins_options(bank_log: str) -> None:
    facts = stats_json(bank_log, "--top", "1", "--bins", "4")
    assert [item["type"] for item in facts["types"]] == ["account.opened"]
    assert [item["stream"] for item in facts["streams"]] == ["account-1"]
    assert (facts["distinct_types"], facts["distinct_streams"]) == (4, 2)
    # Three hours in at most 4 bins: an hour each, 09:00 to 12:00.
    assert (facts["bin_seconds"], [b["count"] for b in facts["bins"]]) == (3600, [2, 2, 1, 1])
    drawn = run_evlog("stats", "-o", "table", "--top", "1", log=bank_log, env=UTC).stdout.decode()
    assert "top types" in drawn and "… 3 more: 4 events" in drawn
    bare = run_evlog("stats", "-o", "table", "--top", "0", log=bank_log, env=UTC).stdout.decode()
    assert "share" not in bare and "no streams" not in bare
    assert bare.rstrip("\n").splitlines()[-1].startswith("           12:00 1 ")  # the chart ends it


def test_bins_follow_the_local_zone(bank_log: str) -> None:
    # POSIX zone strings (no tz database needed); their sign is west of UTC.
    assert stats_json(bank_log, env={"TZ": "EST5"})["bins"][0]["start"] == "2026-11-01T09:00:00.000000000Z"
    # UTC+05:45: the bins start at the first event whatever the zone; their labels are local.
    nepal = stats_json(bank_log, env={"TZ": "NPT-5:45"})
    assert nepal["bins"][0]["start"] == "2026-11-01T09:00:00.000000000Z"
    assert sum(item["count"] for item in nepal["bins"]) == 6
    drawn = run_evlog("stats", "-o", "table", log=bank_log, env={"TZ": "NPT-5:45"}).stdout.decode()
    assert "events per 10 minutes  (UTC+05:45)" in drawn
    assert re.search(r"^2026-11-01 14:45 1 ", drawn, re.MULTILINE)
    assert re.search(r"^first +seq 1 +2026-11-01 14:45:00 UTC\+05:45$", drawn, re.MULTILINE)


def test_empty_log_and_empty_selection_exit_0(log_path: str) -> None:
    assert run_evlog("append", "x", "-s", "s", "--expect", "1", log=log_path).returncode == 3
    facts = stats_json(log_path)
    assert facts["events"] == 0 and facts["bins"] == [] and facts["first_seq"] is None and list(facts) == FIELDS
    drawn = run_evlog("stats", "-o", "table", log=log_path)
    assert (drawn.returncode, drawn.stderr) == (0, b"")
    assert drawn.stdout.decode().strip() == "No events: the log is empty."
    make_log(log_path, BANK)
    assert stats_json(log_path, "--from", "2027-01-01")["events"] == 0
    assert stats_json(log_path, "-t", "nothing")["events"] == 0
    drawn = run_evlog("stats", "-o", "table", "-s", "nobody", log=log_path)
    assert drawn.returncode == 0
    assert drawn.stdout.decode().splitlines()[0] == "No events selected (6 in the log)."


def test_missing_log_is_exit_66_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "missing.lmdb"
    for output in ("json", "table"):
        result = run_evlog("stats", "-o", output, log=str(path))
        assert result.returncode == 66
        assert result.stdout == b""
        assert result.stderr.decode().startswith("evlog: no log at ")
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "ndjson"], "'ndjson' is not one of 'auto', 'json', 'table'"),
        (["--output", "msgpack"], "'msgpack' is not one of 'auto', 'json', 'table'"),
        (["--from", "soon"], "'soon' is not a position"),
        (["--until", "0"], "seqs start at 1"),
        (["--limit", "3"], "stats: no such option --limit (see evlog stats --help)"),
        (["--top", "-1"], "stats: --top: -1 is out of range; give 0 or more (see evlog stats --help)"),
        (["--bins", "0"], "stats: --bins: 0 is out of range; give 1 to 1000 (see evlog stats --help)"),
        (["--bins", "1001"], "stats: --bins: 1001 is out of range; give 1 to 1000"),
    ],
)
def test_bad_options_exit_2(bank_log: str, args: list[str], message: str) -> None:
    result = run_evlog("stats", *args, log=bank_log)
    assert result.returncode == 2
    assert result.stdout == b""
    assert message in result.stderr.decode()


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


@pytest.mark.parametrize("columns", [80, 160])
def test_drawn_output_fits_the_width(bank_log: str, columns: int) -> None:
    result = run_evlog("stats", "-o", "table", log=bank_log, env={"COLUMNS": str(columns), "TZ": "UTC"})
    assert (result.returncode, result.stderr) == (0, b"")
    text = result.stdout.decode()
    assert "\x1b[" not in text  # piped: no colour codes
    lines = text.splitlines()
    assert all(display_width(line) <= columns and line == line.rstrip() for line in lines)
    assert re.search(r"^events +6$", text, re.MULTILINE)
    assert re.search(r"^first +seq 1 +2026-11-01 09:00:00 UTC$", text, re.MULTILINE)
    assert re.search(r"^span +3 h$", text, re.MULTILINE)
    assert re.search(r"^rate +2 events/h$", text, re.MULTILINE)
    assert re.search(r"^streams +2 \(1 event without a stream\)$", text, re.MULTILINE)
    assert "events per 10 minutes  (UTC)" in text
    bins = [line for line in lines if re.match(r"^(2026-11-01|          ) \d\d:\d0 ", line)]
    assert len(bins) == 19 and bins[0].startswith("2026-11-01 09:00 1 █")
    longest = max(display_width(line) for line in bins)
    assert longest == columns  # the bars use the whole width
    assert re.search(r"^account\.opened +2 +33\.3%", text, re.MULTILINE)
    assert re.search(r"account-1 +3 +50\.0%$", text, re.MULTILINE)


def test_no_color_option_and_a_terminal(bank_log: str) -> None:
    def on_terminal(*args: str) -> str:
        code, raw, _ = terminal_output("stats", *args, log=bank_log, env={"TZ": "UTC"})
        assert code == 0
        return raw

    coloured = on_terminal()
    assert "events per 10 minutes" in coloured and "\x1b[" in coloured  # auto on a terminal: drawn, in colour
    plain = on_terminal("--no-color")
    assert "events per 10 minutes" in plain and not re.search(r"\x1b\[[0-9;]*3\dm", plain)


@pytest.mark.parametrize("width", [40, 80, 120, 200])
def test_drawing_in_process_fits_any_width(log_path: str, width: int) -> None:
    from rich.console import Console

    from evlog.cli.stats import draw

    long_names = [
        {"type": "order." + "x" * 150, "stream": "customer-" + "y" * 300, "ts": "2026-11-01T00:00:00Z"},
        {"type": "注文.作成", "stream": "顧客-" + "長" * 80, "ts": "2026-11-20T00:00:00Z"},
        *({"type": f"t{i}", "stream": f"s{i}", "ts": "2026-11-21T00:00:00Z"} for i in range(30)),
    ]
    with Log(make_log(log_path, long_names)) as log:
        result = stats(log, utc_offset=0)
    out = io.StringIO()
    draw(result, Console(file=out, width=width, color_system=None), log_events=result.events)
    lines = out.getvalue().splitlines()
    assert all(display_width(line) <= width for line in lines), [line for line in lines if display_width(line) > width]
    assert all(line == line.rstrip() for line in lines)
    text = out.getvalue()
    assert "events per day  (UTC)" in text and "Sun 2026-11-01" in text
    assert "… 22 more: 22 events" in text  # beyond the top 10 types
