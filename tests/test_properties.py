"""Properties of appending, checked with hypothesis.

* Batching is invisible: the same events appended in any split into batches
  (``Log.append_many(batch_size=...)`` and the bulk feeder behind
  ``evlog append --batch N``) leave the same log, including where a bad event
  stops the run; with explicit times the records and the head hash are equal.
* Chunking is invisible: NDJSON input cut into chunks anywhere (as a pipe
  delivers it) leaves the same log and refuses the same over-long lines as
  the input read whole.
* Data round-trips: any JSON value appended comes back equal from ``read``,
  through the library and through the real command.

Every example uses fresh logs in its own temporary directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import run_evlog
from hypothesis import given, settings
from hypothesis import strategies as st

from evlog import AppendStopped, Event, Log, LogNotFoundError
from evlog.feed import Feeder, feed_ndjson

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z, in nanoseconds

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)

meta_values = st.dictionaries(st.text(min_size=1, max_size=6), st.text(max_size=6) | st.integers(0, 9), max_size=3)


@st.composite
def event_lists(draw: st.DrawFn, *, with_ts: bool) -> list[dict[str, Any]]:
    """Input events: a few types and streams, repeated ids, occasional (possibly wrong) expect."""
    count = draw(st.integers(min_value=1, max_value=25))
    ts = T0
    events = []
    for _ in range(count):
        event: dict[str, Any] = {"type": draw(st.sampled_from(["deposit", "withdraw", "order.created"]))}
        stream = draw(st.sampled_from([None, "acct-1", "acct-2", "x"]))
        if stream is not None:
            event["stream"] = stream
            if draw(st.integers(0, 5)) == 0:
                event["expect"] = draw(st.integers(0, 4))
        if draw(st.booleans()):
            event["data"] = draw(json_values)
        if draw(st.integers(0, 3)) == 0:
            event["meta"] = draw(meta_values)
        if draw(st.integers(0, 2)) == 0:
            event["id"] = draw(st.sampled_from(["id-1", "id-2", "id-3", "id-4"]))
        if with_ts:
            ts += draw(st.integers(0, 3))
            event["ts"] = ts
        events.append(event)
    return events


@contextmanager
def fresh_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="evlog-prop-") as directory:
        yield directory


Outcome = tuple[list[Event], "str | None"]
"""The log's events after an append, and the message of the stop that ended it (if any)."""


def with_library(path: str, events: list[dict[str, Any]], batch_size: int) -> Outcome:
    """Append with ``Log.append_many(batch_size=...)``."""
    stop = None
    with Log(path) as log:
        try:
            log.append_many(events, batch_size=batch_size)
        except AppendStopped as stopped:
            stop = str(stopped)  # the reason, what was written and the line it stopped at
        return read_or_empty(log), stop


def with_feeder(path: str, events: list[dict[str, Any]], batch_size: int, directory: str) -> Outcome:
    """Append the events as NDJSON through the bulk feeder behind `evlog append --batch N`."""
    source = os.path.join(directory, f"input-{batch_size}.ndjson")
    with open(source, "w") as out:
        out.writelines(json.dumps(event) + "\n" for event in events)
    stop = None
    fd = os.open(source, os.O_RDONLY)
    try:
        with Log(path) as log:
            try:
                feed_ndjson(Feeder(log, batch_size=batch_size), fd)
            except AppendStopped as stopped:
                stop = str(stopped)
            return read_or_empty(log), stop
    finally:
        os.close(fd)


def read_or_empty(log: Log) -> list[Event]:
    try:
        return list(log.read())
    except LogNotFoundError:  # a run that stopped at its first event creates no log
        return []


def without_ts(events: list[Event]) -> list[tuple[Any, ...]]:
    return [(e.seq, e.type, e.stream, e.version, e.id, e.data, e.meta, e.data_bytes) for e in events]


def head_hash(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    with Log(path) as log:
        return str(log.info()["head_hash"])


def is_subsequence(stored: list[Event], events: list[dict[str, Any]]) -> bool:
    """Whether the stored events match input events, in input order, by type, stream, id and ts."""
    remaining = iter(events)
    return all(any(_same(given, event) for given in remaining) for event in stored)


def _same(given: dict[str, Any], stored: Event) -> bool:
    return (given["type"], given.get("stream"), given.get("id"), given["ts"]) == (
        stored.type, stored.stream, stored.id, stored.ts,
    )


@settings(max_examples=40, deadline=None)
@given(events=event_lists(with_ts=True), batch_size=st.integers(min_value=1, max_value=8))
def test_batching_does_not_change_the_log_with_explicit_times(events: list[dict[str, Any]], batch_size: int) -> None:
    with fresh_dir() as directory:
        reference, reference_stop = with_library(os.path.join(directory, "one"), events, 10_000)
        split, split_stop = with_library(os.path.join(directory, "split"), events, batch_size)
        fed, fed_stop = with_feeder(os.path.join(directory, "fed"), events, batch_size, directory)
        assert split == reference  # every field, the exact ts and the payload bytes
        assert fed == reference
        assert split_stop == fed_stop == reference_stop
        assert is_subsequence(reference, events)  # each stored event has the ts its input gave
        hashes = {head_hash(os.path.join(directory, name)) for name in ("one", "split", "fed")}
        assert len(hashes) == 1


@settings(max_examples=40, deadline=None)
@given(events=event_lists(with_ts=False), batch_sizes=st.lists(st.integers(1, 6), min_size=1, max_size=2))
def test_batching_does_not_change_the_log(events: list[dict[str, Any]], batch_sizes: list[int]) -> None:
    with fresh_dir() as directory:
        reference, reference_stop = with_library(os.path.join(directory, "one"), events, 10_000)
        assert [e.seq for e in reference] == list(range(1, len(reference) + 1))
        for run, size in enumerate(batch_sizes):
            split, split_stop = with_library(os.path.join(directory, f"split-{run}"), events, size)
            fed, fed_stop = with_feeder(os.path.join(directory, f"fed-{run}"), events, size, directory)
            assert without_ts(split) == without_ts(reference)
            assert without_ts(fed) == without_ts(reference)
            assert split_stop == fed_stop == reference_stop
            assert [e.ts for e in fed] == sorted(e.ts for e in fed)


class ChunkedFeeder(Feeder):
    """The bulk feeder, given its input in chunks cut at chosen places instead of reading a descriptor."""

    def __init__(self, log: Log, pieces: list[bytes], **options: Any) -> None:
        super().__init__(log, **options)
        self.pieces = pieces

    def chunks(self, fd: int) -> Iterator[bytes]:
        yield from self.pieces


def feed_in_pieces(path: str, pieces: list[bytes], limit: int, skip: bool) -> tuple[list[Any], list[Any], str | None]:
    """(stored events, rejected lines, the stop) after feeding ``pieces`` with ``--max-line limit``."""
    rejected: list[Any] = []
    stop = None
    with Log(path) as log:
        options: dict[str, Any] = {"max_line": limit, "batch_size": 3}
        if skip:
            options["on_reject"] = lambda line, error, raw: rejected.append((line, str(error), raw))
        try:
            feed_ndjson(ChunkedFeeder(log, pieces, **options), -1)
        except AppendStopped as stopped:
            stop = str(stopped)
        return without_ts(read_or_empty(log)), rejected, stop


@st.composite
def lines_and_cuts(draw: st.DrawFn) -> tuple[bytes, list[int], int]:
    """NDJSON with short and long lines (CRLF, blank lines, maybe no final newline) and cut points."""
    limit = draw(st.integers(min_value=30, max_value=300))
    lines = []
    for number in range(draw(st.integers(min_value=1, max_value=12))):
        if draw(st.integers(0, 6)) == 0:
            lines.append(b"")
            continue
        text = "x" * draw(st.sampled_from([0, 5, limit - 40, limit - 26, limit - 25, limit, 3 * limit]))
        line = json.dumps({"type": "t", "data": [number, text]}).encode()
        lines.append(line + (b"\r" if draw(st.booleans()) else b""))
    data = b"\n".join(lines) + (b"\n" if draw(st.booleans()) else b"")
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(data)), max_size=12)))
    return data, cuts, limit


@settings(max_examples=80, deadline=None)
@given(case=lines_and_cuts(), skip=st.booleans())
def test_chunking_does_not_change_the_log(case: tuple[bytes, list[int], int], skip: bool) -> None:
    data, cuts, limit = case
    pieces = [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    with fresh_dir() as directory:
        whole = feed_in_pieces(os.path.join(directory, "whole"), [data], limit, skip)
        cut = feed_in_pieces(os.path.join(directory, "cut"), [piece for piece in pieces if piece], limit, skip)
        assert cut == whole
        byte_sizes = [len(piece) for piece in data.split(b"\n")]
        over = [number for number, size in enumerate(byte_sizes, 1) if size > limit]
        events, rejected, stop = whole
        if skip:
            assert [line for line, _, _ in rejected] == over
            assert len(events) == sum(1 for size in byte_sizes if 0 < size <= limit)
        elif over:
            assert stop is not None and stop.startswith(f"line {over[0]}: the line is longer than")
            assert len(events) == sum(1 for size in byte_sizes[: over[0] - 1] if size)
        else:
            assert (stop, len(events)) == (None, sum(1 for size in byte_sizes if size))


@settings(max_examples=50, deadline=None)
@given(value=json_values)
def test_data_round_trips_through_the_library(value: Any) -> None:
    with fresh_dir() as directory:
        path = os.path.join(directory, "log")
        with Log(path) as log:
            summary = log.append_many([{"type": "t", "data": value}])
            assert summary.appended == 1
            if value is not None:  # Log.append takes None as "no data" (an empty object)
                assert log.append("t", value).data == value
            expected = [value] if value is None else [value, value]
            assert [e.data for e in log.read()] == expected
        with Log(path) as reopened:
            assert [e.data for e in reopened.read()] == expected


@settings(max_examples=30, deadline=None)
@given(values=st.lists(json_values, min_size=1, max_size=10))
def test_data_round_trips_through_the_command(values: list[Any]) -> None:
    with fresh_dir() as directory:
        path = os.path.join(directory, "log")
        lines = "".join(json.dumps(value) + "\n" for value in values)
        result = run_evlog("append", "--type", "v", input=lines, log=path)
        assert (result.returncode, result.stderr) == (0, b"")
        with Log(path) as log:
            assert [e.data for e in log.read()] == values
        replayed = run_evlog("replay", log=path)
        assert replayed.returncode == 0
        assert [json.loads(line)["data"] for line in replayed.stdout.splitlines()] == values


@pytest.mark.parametrize("value", [2**64 - 1, -(2**63), 5e-324, -0.0, 1.7976931348623157e308, "\u2028\x00é😀"])
def test_data_edge_values_round_trip(log: Log, value: Any) -> None:
    log.append_many([{"type": "t", "data": {"v": value}}])
    assert [e.data for e in log.read()] == [{"v": value}]
