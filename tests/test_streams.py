"""``evlog streams``: each stream's version, first and last seq and time, from the stream index.

Checked against what a replay of each stream shows, in the three orders, with a
prefix and a limit, across the chunks the index is read in, and in every output.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import run_evlog

from evlog import Log
from evlog.stats import CHUNK, stream_summaries
from evlog.timefmt import parse_rfc3339

KEYS = ["stream", "version", "events", "first_seq", "last_seq", "first_ts", "last_ts"]

EVENTS: list[dict[str, Any]] = [
    {"type": "opened", "stream": "account-2", "ts": "2026-11-01T09:00:00Z"},
    {"type": "opened", "stream": "account-1", "ts": "2026-11-01T09:10:00Z"},
    {"type": "deposit", "stream": "account-1", "ts": "2026-11-01T09:20:00Z"},
    {"type": "opened", "stream": "order-9", "ts": "2026-11-01T09:30:00Z"},
    {"type": "deposit", "stream": "account-2", "ts": "2026-11-01T09:40:00Z"},
    {"type": "audit", "ts": "2026-11-01T09:45:00Z"},
    {"type": "deposit", "stream": "account-1", "ts": "2026-11-01T09:50:00Z"},
    {"type": "opened", "stream": "account-10", "ts": "2026-11-01T10:00:00Z"},
]
EXPECTED = {
    "account-1": {"stream": "account-1", "version": 3, "events": 3, "first_seq": 2, "last_seq": 7,
                  "first_ts": "2026-11-01T09:10:00.000000000Z", "last_ts": "2026-11-01T09:50:00.000000000Z"},
    "account-10": {"stream": "account-10", "version": 1, "events": 1, "first_seq": 8, "last_seq": 8,
                   "first_ts": "2026-11-01T10:00:00.000000000Z", "last_ts": "2026-11-01T10:00:00.000000000Z"},
    "account-2": {"stream": "account-2", "version": 2, "events": 2, "first_seq": 1, "last_seq": 5,
                  "first_ts": "2026-11-01T09:00:00.000000000Z", "last_ts": "2026-11-01T09:40:00.000000000Z"},
    "order-9": {"stream": "order-9", "version": 1, "events": 1, "first_seq": 4, "last_seq": 4,
                "first_ts": "2026-11-01T09:30:00.000000000Z", "last_ts": "2026-11-01T09:30:00.000000000Z"},
}


def make_log(path: str, events: Sequence[Mapping[str, Any]]) -> str:
    with Log(path) as log:
        log.append_many(events)
    return path


@pytest.fixture
def streams_log(log_path: str) -> str:
    return make_log(log_path, EVENTS)


def listed(log: str, *args: str) -> list[dict[str, Any]]:
    result = run_evlog("streams", *args, log=log)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return [json.loads(line) for line in result.stdout.splitlines()]


def names(records: Sequence[Mapping[str, Any]]) -> list[str]:
    return [record["stream"] for record in records]


# -- the library ----------------------------------------------------------------


def test_summaries_agree_with_a_replay_of_each_stream(streams_log: str) -> None:
    with Log(streams_log) as log:
        summaries = list(stream_summaries(log))
        assert [s.to_dict() for s in summaries] == list(EXPECTED.values())
        for summary in summaries:
            events = list(log.read(streams=[summary.stream]))
            assert summary.version == len(events) == events[-1].version
            assert (summary.first_seq, summary.last_seq) == (events[0].seq, events[-1].seq)
            assert (summary.first_ts, summary.last_ts) == (events[0].ts, events[-1].ts)
            assert summary.first_ts == parse_rfc3339(EXPECTED[summary.stream]["first_ts"])


def test_sorts_prefix_and_limit(streams_log: str) -> None:
    with Log(streams_log) as log:
        def listing(prefix: str | None = None, **options: Any) -> list[str]:
            return [s.stream for s in stream_summaries(log, prefix, **options)]

        assert listing() == ["account-1", "account-10", "account-2", "order-9"]  # byte order, like the index
        assert listing(sort="version") == ["account-1", "account-2", "account-10", "order-9"]  # ties by name
        assert listing(sort="last") == ["account-10", "account-1", "account-2", "order-9"]
        assert listing("account-1") == listing("account-1*") == ["account-1", "account-10"]
        assert listing("*") == listing("") == listing()
        assert listing("acc", sort="last", limit=2) == ["account-10", "account-1"]
        assert listing("account-", sort="version", limit=1) == ["account-1"]
        assert listing(limit=3) == ["account-1", "account-10", "account-2"]
        assert listing(limit=0) == listing("zebra") == listing("account-1x") == []
        assert listing("order-9") == ["order-9"]


def test_many_streams_across_index_chunks(log_path: str) -> None:
    # More streams than one read transaction takes; the listing resumes after each chunk's last key.
    count = 2 * CHUNK + 300
    streams = [f"s-{i:05d}" for i in range(count)] + ["t-0", "t-1"]
    events = [{"type": "x", "stream": name} for name in streams] + [{"type": "x", "stream": "s-01024"}]
    with Log(make_log(log_path, events)) as log:
        everything = list(stream_summaries(log))
        assert [s.stream for s in everything] == sorted(streams)
        assert [s.stream for s in stream_summaries(log, "s-")] == sorted(streams)[:count]
        assert [s.stream for s in stream_summaries(log, "s-010")] == [f"s-010{i:02d}" for i in range(100)]
        assert [s.stream for s in stream_summaries(log, "t-")] == ["t-0", "t-1"]
        by_version = list(stream_summaries(log, sort="version", limit=2))
        assert [(s.stream, s.version) for s in by_version] == [("s-01024", 2), ("s-00000", 1)]
        assert [s.stream for s in stream_summaries(log, sort="last", limit=1)] == ["s-01024"]
        assert sum(s.version for s in everything) == len(events)


def test_unicode_names_sort_by_code_point(log_path: str) -> None:
    events = [{"type": "x", "stream": name} for name in ("é", "Z", "a", "流", "a-")]
    with Log(make_log(log_path, events)) as log:
        assert [s.stream for s in stream_summaries(log)] == ["Z", "a", "a-", "é", "流"]
        assert [s.stream for s in stream_summaries(log, "流")] == ["流"]


def test_empty_log_and_missing_log(log_path: str, tmp_path: Path) -> None:
    from evlog import LogNotFoundError

    assert run_evlog("append", "x", "-s", "s", "--expect", "1", log=log_path).returncode == 3
    with Log(log_path) as log:
        assert list(stream_summaries(log)) == []
    with Log(str(tmp_path / "missing.lmdb")) as log, pytest.raises(LogNotFoundError):
        stream_summaries(log)


# -- the command ------------------------------------------------------------------


def test_ndjson_when_piped(streams_log: str) -> None:
    records = listed(streams_log)
    assert records == list(EXPECTED.values())
    assert all(list(record) == KEYS for record in records)
    assert listed(streams_log, "-o", "ndjson") == records


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sort", "version"], ["account-1", "account-2", "account-10", "order-9"]),
        (["--sort", "last"], ["account-10", "account-1", "account-2", "order-9"]),
        (["--sort", "name"], ["account-1", "account-10", "account-2", "order-9"]),
        (["account-1"], ["account-1", "account-10"]),
        (["account-1*"], ["account-1", "account-10"]),
        (["order-*", "--sort", "last"], ["order-9"]),
        (["-n", "2"], ["account-1", "account-10"]),
        (["--limit", "1", "--sort", "last"], ["account-10"]),
        (["--limit", "0"], []),
        (["nothing-here"], []),
    ],
)
def test_sorts_prefix_and_limit_on_the_command_line(streams_log: str, args: list[str], expected: list[str]) -> None:
    records = listed(streams_log, *args)
    assert names(records) == expected
    assert records == [EXPECTED[name] for name in expected]


def test_json_is_one_array(streams_log: str) -> None:
    result = run_evlog("streams", "-o", "json", log=streams_log)
    assert result.returncode == 0
    assert json.loads(result.stdout) == list(EXPECTED.values())
    empty = run_evlog("streams", "-o", "json", "zzz", log=streams_log)
    assert empty.stdout == b"[]\n"


def test_msgpack_is_one_map_per_stream(streams_log: str) -> None:
    import msgpack

    result = run_evlog("streams", "-o", "msgpack", log=streams_log)
    assert result.returncode == 0
    assert list(msgpack.Unpacker(io.BytesIO(result.stdout))) == list(EXPECTED.values())


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


@pytest.mark.parametrize("columns", [64, 80, 160])
def test_table_fits_the_width(log_path: str, columns: int) -> None:
    events = [*EVENTS, {"type": "x", "stream": "customer-" + "y" * 300}, {"type": "x", "stream": "顧客-" + "長" * 60}]
    make_log(log_path, events)
    result = run_evlog("streams", "-o", "table", log=log_path, env={"COLUMNS": str(columns)})
    assert (result.returncode, result.stderr) == (0, b"")
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1 + 6
    assert all(display_width(line) <= columns and line == line.rstrip() for line in lines)
    # Narrower terminals drop the seconds, then the year and the "(local)".
    zone = r" \(local\)" if columns >= 80 else ""
    assert re.match(rf"stream +version +first seq +last seq +first{zone} +last{zone}$", lines[0])
    seconds = ":00" if columns >= 100 else ""
    year = "2026-" if columns >= 80 else ""
    assert re.match(rf"account-1 +3 +2 +7 {year}11-01 09:10{seconds} {year}11-01 09:50{seconds}$", lines[1])
    long_names = [line for line in lines if line.startswith(("customer-", "顧客-"))]
    assert len(long_names) == 2 and all("…" in line for line in long_names)  # cut, not wrapped


def test_table_in_process_and_when_empty(streams_log: str) -> None:
    from rich.console import Console

    from evlog.cli.streams import write_table

    out = io.StringIO()
    with Log(streams_log) as log:
        count = write_table(stream_summaries(log), head=log.head(), console=Console(file=out, width=60))
    lines = out.getvalue().splitlines()
    assert count == 4 and len(lines) == 5  # narrower than the columns: rows are cut, never wrapped
    assert all(display_width(line) <= 60 for line in lines)
    assert lines[1].startswith("account-1 ") and lines[1].endswith(" 11-01 09:50")  # short times: it fits
    out = io.StringIO()
    assert write_table([], head=0, console=Console(file=out, width=80)) == 0
    assert out.getvalue() == "No streams: the log is empty.\n"


def test_missing_log_is_exit_66(tmp_path: Path) -> None:
    path = tmp_path / "missing.lmdb"
    result = run_evlog("streams", log=str(path))
    assert result.returncode == 66 and result.stdout == b""
    assert result.stderr.decode().startswith("evlog: no log at ")
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sort", "size"], "'size' is not one of 'name', 'version', 'last'"),
        (["-n", "-1"], "--limit/-n: -1 is out of range; give 0 or more"),
        (["-o", "csv"], "'csv' is not one of 'auto', 'ndjson', 'json', 'msgpack', 'table'"),
        (["a", "b"], "unexpected extra argument"),
    ],
)
def test_bad_options_exit_2(streams_log: str, args: list[str], message: str) -> None:
    result = run_evlog("streams", *args, log=streams_log)
    assert result.returncode == 2
    assert result.stdout == b""
    assert message in result.stderr.decode().lower() or message in result.stderr.decode()


def test_closed_pipe_ends_quietly(log_path: str) -> None:
    import subprocess
    import sys

    make_log(log_path, [{"type": "x", "stream": f"s-{i:05d}"} for i in range(20_000)])
    command = f"{sys.executable} -m evlog streams --log {log_path} | head -1"
    result = subprocess.run(["sh", "-c", command], capture_output=True, timeout=60)
    assert result.stdout.startswith(b'{"stream":"s-00000"')
    assert result.stderr == b""
