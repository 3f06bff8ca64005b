"""The library's append and read surface: ``Log.append``, ``append_many``, ``read``, ``get``, ``head``, ``info``.

Each test works on its own temporary log (the ``log`` / ``log_path``
fixtures) and checks what the call returned and what the log holds after it,
including after every failure.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import msgpack
import pytest

from evlog import (
    AppendStopped,
    AppendSummary,
    BadInputError,
    ConflictError,
    DamagedLogError,
    Event,
    EvlogError,
    Log,
    LogNotFoundError,
)

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z, in nanoseconds


def contents(log: Log) -> list[tuple[Any, ...]]:
    """(seq, type, stream, version, id, data, meta) of every event; [] when there is no log."""
    try:
        return [(e.seq, e.type, e.stream, e.version, e.id, e.data, e.meta) for e in log.read()]
    except LogNotFoundError:
        return []


# -- Log.append --------------------------------------------------------------------


def test_append_returns_the_stored_event(log: Log) -> None:
    before = time.time_ns()
    event = log.append("deposit", {"amount": 100}, stream="account-7", meta={"user": "ada"}, id="dep-1")
    after = time.time_ns()
    assert isinstance(event, Event)
    assert (event.seq, event.type, event.stream, event.version, event.id) == (1, "deposit", "account-7", 1, "dep-1")
    assert isinstance(event.ts, int) and before <= event.ts <= after
    assert event.meta == {"user": "ada"}
    assert event.data == {"amount": 100}
    assert event.data_bytes == msgpack.packb({"amount": 100})
    assert event == log.get(1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", event.ts_text)


def test_append_defaults_to_empty_data_and_meta(log: Log) -> None:
    event = log.append("ping")
    assert (event.data, event.meta, event.stream, event.version, event.id) == ({}, {}, None, None, None)
    assert contents(log) == [(1, "ping", None, None, None, {}, {})]


def test_event_data_is_decoded_only_when_read() -> None:
    event = Event(1, 0, "t", None, None, None, None, b"\xc1")  # 0xc1 is never valid msgpack
    assert event.type == "t"  # building and using the envelope does not touch the payload
    with pytest.raises(DamagedLogError, match="seq 1"):  # raised on first access only, naming the event
        _ = event.data


def test_append_assigns_gapless_seqs_versions_and_monotonic_times(log: Log) -> None:
    events = [
        log.append("a", stream="s1"),
        log.append("b", stream="s2"),
        log.append("c"),
        log.append("d", stream="s1"),
        log.append("e", stream="s1"),
    ]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.version for e in events] == [1, 1, None, 2, 3]
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert log.head() == 5


def test_expect_zero_and_matching_versions_append(log: Log) -> None:
    log.append("opened", stream="acct", expect=0)
    event = log.append("deposit", {"n": 1}, stream="acct", expect=1)
    assert (event.seq, event.version) == (2, 2)


def test_expect_conflict_raises_with_attributes_and_writes_nothing(log: Log) -> None:
    log.append("opened", stream="acct")
    log.append("deposit", stream="acct")
    with pytest.raises(ConflictError) as caught:
        log.append("deposit", stream="acct", expect=1)
    error = caught.value
    assert isinstance(error, EvlogError)
    assert (error.stream, error.expected, error.actual, error.exit_code) == ("acct", 1, 2, 3)
    assert str(error) == "stream 'acct' is at version 2, expected 1; nothing was written for this event"
    assert [row[1] for row in contents(log)] == ["opened", "deposit"]


def test_expect_zero_on_existing_stream_conflicts(log: Log) -> None:
    log.append("opened", stream="acct")
    with pytest.raises(ConflictError) as caught:
        log.append("opened", stream="acct", expect=0)
    assert (caught.value.expected, caught.value.actual) == (0, 1)
    assert log.head() == 1


def test_duplicate_id_returns_the_existing_event(log: Log) -> None:
    first = log.append("order.created", {"total": 12}, id="order-17", stream="o")
    log.append("other")
    again = log.append("order.created", {"total": 99}, id="order-17", stream="o")
    assert again == first
    assert (again.seq, again.data, again.version) == (1, {"total": 12}, 1)
    assert log.head() == 2


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"type": ""}, '"type" must not be empty'),
        ({"type": "a\nb"}, "\"type\" 'a\\nb' contains a control character"),
        ({"type": "t" * 201}, '"type" is longer than 200 bytes'),
        ({"type": 5}, '"type" must be a string, not a number (5)'),
        ({"type": "t", "stream": ""}, '"stream" must not be empty (leave it out for no stream)'),
        ({"type": "t", "stream": "s" * 401}, '"stream" is longer than 400 bytes'),
        ({"type": "t", "id": ""}, '"id" must not be empty (leave it out for no id)'),
        ({"type": "t", "expect": 1}, '"expect" needs a "stream": versions belong to streams'),
        ({"type": "t", "stream": "s", "expect": -1}, '"expect" must be a stream version (an integer >= 0), not -1'),
    ],
)
def test_invalid_append_raises_bad_input_and_writes_nothing(log: Log, kwargs: dict[str, Any], reason: str) -> None:
    log.append("before")
    with pytest.raises(BadInputError) as caught:
        log.append(**kwargs)
    assert (caught.value.reason, caught.value.line, caught.value.exit_code) == (reason, None, 65)
    assert contents(log) == [(1, "before", None, None, None, {}, {})]


def test_failed_first_append_creates_no_log(log: Log, log_path: str) -> None:
    with pytest.raises(BadInputError):
        log.append("")
    assert not os.path.exists(log_path)


@pytest.mark.parametrize(
    "data",
    [b"raw bytes", {1: "int key"}, float("nan"), {"x": [float("inf")]}],
    ids=["bytes", "int-key", "nan", "infinity"],
)
def test_append_refuses_data_json_cannot_represent(log: Log, data: Any) -> None:
    """Regression: such data used to be written, and `evlog replay` then crashed (or printed null)."""
    with pytest.raises(BadInputError):
        log.append("t", data)
    assert contents(log) == []


@pytest.mark.parametrize("meta", [{1: "x"}, {"k": b"x"}, {"k": object()}], ids=["int-key", "bytes", "object"])
def test_append_refuses_meta_json_cannot_represent(log: Log, meta: dict[Any, Any]) -> None:
    """Regression: a non-text meta key made the record, and so the log, unreadable."""
    log.append("before")
    with pytest.raises(BadInputError):
        log.append("t", meta=meta)
    assert contents(log) == [(1, "before", None, None, None, {}, {})]


# -- Log.append_many ---------------------------------------------------------------------


def test_append_many_returns_a_summary(log: Log) -> None:
    log.append_many([{"type": "first", "ts": "2021-01-01T00:00:00Z"}])
    summary = log.append_many(
        [
            {"type": "a", "stream": "s", "data": [1], "meta": {"m": 1}, "id": "i-1", "expect": 0,
             "ts": "2022-01-01T00:00:00Z"},
            {"type": "b", "stream": "s", "ts": "2023-01-01T00:00:00Z", "seq": 7, "version": 9, "hash": "x"},
            {"type": "c", "ts": T0, "data": None},
            {"type": "a", "id": "i-1"},
        ],
        batch_size=2,
    )
    assert isinstance(summary, AppendSummary)
    assert (summary.appended, summary.first_seq, summary.last_seq, summary.duplicates, summary.skipped) == (
        3, 2, 4, 1, 0,
    )
    assert summary.describe() == "appended 3 events (seq 2-4); 1 already present by id, not appended again"
    assert contents(log)[1:] == [
        (2, "a", "s", 1, "i-1", [1], {"m": 1}),
        (3, "b", "s", 2, None, {}, {}),
        (4, "c", None, None, None, None, {}),
    ]
    assert [e.ts for e in log.read(from_=3)] == [1_672_531_200_000_000_000, T0]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 10_000])
def test_append_many_invalid_event_stops_after_committing_before_it(log: Log, batch_size: int) -> None:
    events = [{"type": "ok", "data": n} for n in range(1, 5)] + [{"data": 5}] + [{"type": "ok", "data": 6}]
    with pytest.raises(AppendStopped) as caught:
        log.append_many(events, batch_size=batch_size)
    stopped = caught.value
    assert isinstance(stopped.cause, BadInputError)
    assert (stopped.cause.line, stopped.exit_code) == (5, 65)
    assert (stopped.summary.appended, stopped.summary.first_seq, stopped.summary.last_seq) == (4, 1, 4)
    assert str(stopped) == (
        'line 5: missing "type" (every event needs one)\n'
        "appended 4 events (seq 1-4); stopped at line 5, nothing after it was written"
    )
    assert [row[5] for row in contents(log)] == [1, 2, 3, 4]


@pytest.mark.parametrize("batch_size", [1, 2, 10_000])
def test_append_many_conflict_stops_with_conflict_cause(log: Log, batch_size: int) -> None:
    events: list[dict[str, Any]] = [
        {"type": "a", "stream": "acct"},
        {"type": "b", "stream": "acct", "expect": 1},
        {"type": "c", "stream": "acct", "expect": 1},
        {"type": "d", "stream": "acct"},
    ]
    with pytest.raises(AppendStopped) as caught:
        log.append_many(events, batch_size=batch_size)
    stopped = caught.value
    assert isinstance(stopped.cause, ConflictError)
    assert (stopped.cause.stream, stopped.cause.expected, stopped.cause.actual) == ("acct", 1, 2)
    assert stopped.exit_code == 3
    assert stopped.summary.appended == 2
    assert str(stopped).endswith("appended 2 events (seq 1-2); stopped at line 3, nothing after it was written")
    assert [(row[1], row[3]) for row in contents(log)] == [("a", 1), ("b", 2)]


def test_append_many_ts_before_last_event_stops(log: Log) -> None:
    log.append_many([{"type": "old", "ts": T0}])
    with pytest.raises(AppendStopped) as caught:
        log.append_many([{"type": "ok", "ts": T0 + 5}, {"type": "late", "ts": T0 + 4}])
    assert isinstance(caught.value.cause, BadInputError)
    assert caught.value.cause.line == 2
    assert "times in a log never go backwards" in str(caught.value)
    assert [row[1] for row in contents(log)] == ["old", "ok"]


@pytest.mark.parametrize(
    "bad",
    [{"data": 1}, {"type": "c", "stream": "acct", "expect": 7}, {"type": "c", "ts": 1}],
    ids=["invalid", "conflict", "ts-backwards"],
)
def test_append_many_atomic_writes_nothing_on_a_bad_event(log: Log, bad: dict[str, Any]) -> None:
    log.append("existing", stream="acct")
    events = [{"type": "a", "stream": "acct"}, {"type": "b"}, bad, {"type": "d"}]
    with pytest.raises(AppendStopped) as caught:
        log.append_many(events, batch_size=1, atomic=True)
    assert caught.value.summary.appended == 0
    assert str(caught.value).endswith("stopped at line 3; --atomic: nothing was written")
    assert [row[1] for row in contents(log)] == ["existing"]


@pytest.mark.parametrize(
    "bad",
    [{"type": "t", "meta": {1: "x"}}, {"type": "t", "data": b"x"}, {"type": "t", "data": float("nan")}],
    ids=["meta-int-key", "data-bytes", "data-nan"],
)
def test_append_many_refuses_values_json_cannot_represent(log: Log, bad: dict[str, Any]) -> None:
    with pytest.raises(AppendStopped) as caught:
        log.append_many([{"type": "a"}, bad, {"type": "c"}])
    assert isinstance(caught.value.cause, BadInputError)
    assert (caught.value.cause.line, caught.value.summary.appended) == (2, 1)
    assert contents(log) == [(1, "a", None, None, None, {}, {})]


def test_append_many_atomic_good_input_writes_all(log: Log) -> None:
    summary = log.append_many([{"type": "a", "data": n} for n in range(5)], batch_size=1, atomic=True)
    assert (summary.appended, summary.first_seq, summary.last_seq) == (5, 1, 5)
    assert [row[5] for row in contents(log)] == [0, 1, 2, 3, 4]


def test_append_many_on_reject_skips_bad_events(log: Log) -> None:
    rejected: list[tuple[int | None, type, bytes | None]] = []

    def on_reject(line: int | None, error: EvlogError, raw: bytes | None) -> None:
        rejected.append((line, type(error), raw))

    events: list[dict[str, Any]] = [
        {"type": "a", "stream": "acct"},
        {"type": ""},
        {"type": "b", "stream": "acct", "expect": 0},
        {"type": "c", "stream": "acct", "expect": 1},
        {"colour": "red", "type": "x"},
    ]
    summary = log.append_many(events, batch_size=2, on_reject=on_reject)
    assert rejected == [(2, BadInputError, None), (3, ConflictError, None), (5, BadInputError, None)]
    assert (summary.appended, summary.skipped) == (2, 3)
    assert [(row[1], row[3]) for row in contents(log)] == [("a", 1), ("c", 2)]


def test_append_many_empty_input_does_nothing(log: Log, log_path: str) -> None:
    summary = log.append_many([])
    assert (summary.appended, summary.first_seq, summary.last_seq) == (0, None, None)
    assert not os.path.exists(log_path)


# -- reading ------------------------------------------------------------------------------


@pytest.fixture
def filled(log: Log) -> Log:
    """Eight events over three streams (and none) and four types."""
    for type_, stream in [
        ("deposit", "account-1"),       # 1
        ("deposit", "account-2"),       # 2
        ("order.created", "acct-x"),    # 3
        ("withdraw", "account-1"),      # 4
        ("order.paid", None),           # 5
        ("withdraw.fee", "account-2"),  # 6
        ("deposit", "account-10"),      # 7
        ("note", None),                 # 8
    ]:
        log.append(type_, stream=stream, id=f"id-{type_}-{stream}")
    return log


def seqs(events: Any) -> list[int]:
    return [event.seq for event in events]


@pytest.mark.parametrize(
    "streams, expected",
    [
        (["account-1"], [1, 4]),
        (["account-1", "acct-x"], [1, 3, 4]),
        (["account-2", "account-1", "account-2"], [1, 2, 4, 6]),
        (["account-*"], [1, 2, 4, 6, 7]),
        (["account-1*"], [1, 4, 7]),
        (["acc*"], [1, 2, 3, 4, 6, 7]),
        (["account-*", "acct-x"], [1, 2, 3, 4, 6, 7]),
        (["nope"], []),
        (["account"], []),
    ],
)
def test_read_filters_streams_exactly_or_by_prefix(filled: Log, streams: list[str], expected: list[int]) -> None:
    assert seqs(filled.read(streams=streams)) == expected


@pytest.mark.parametrize(
    "types, expected",
    [
        (["deposit"], [1, 2, 7]),
        (["order.*"], [3, 5]),
        (["withdraw*"], [4, 6]),
        (["deposit", "withdraw*"], [1, 2, 4, 6, 7]),
        (["order.?aid"], [5]),
        (["[dn]*"], [1, 2, 7, 8]),
        (["withdraw"], [4]),
        (["deposi"], []),
    ],
)
def test_read_filters_types_by_glob(filled: Log, types: list[str], expected: list[int]) -> None:
    assert seqs(filled.read(types=types)) == expected


def test_read_combines_streams_types_and_positions(filled: Log) -> None:
    assert seqs(filled.read(streams=["account-*"], types=["deposit"])) == [1, 2, 7]
    assert seqs(filled.read(streams=["account-1", "account-2"], types=["withdraw*"])) == [4, 6]
    assert seqs(filled.read(from_=3, until=6)) == [3, 4, 5, 6]
    assert seqs(filled.read(from_="-2")) == [7, 8]
    assert seqs(filled.read(from_=-3, until=-2)) == [6, 7]
    assert seqs(filled.read(from_="id:id-withdraw-account-1")) == [4, 5, 6, 7, 8]
    assert seqs(filled.read(streams=["account-1"], from_=2)) == [4]
    assert seqs(filled.read(until=100)) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert seqs(filled.read(from_=9)) == []


def test_read_by_time(log: Log) -> None:
    log.append_many([{"type": "t", "ts": T0 + n * 1_000_000_000} for n in range(5)])
    assert seqs(log.read(from_="2023-11-14T22:13:22Z")) == [3, 4, 5]
    assert seqs(log.read(until="2023-11-14T22:13:21.5Z")) == [1, 2]
    assert seqs(log.read(from_="2023-11-14T22:13:21Z", until="2023-11-14T22:13:23Z")) == [2, 3, 4]


def test_read_is_lazy(filled: Log) -> None:
    iterator = filled.read()
    assert next(iterator).seq == 1
    filled.append("later")
    assert seqs(iterator) == [2, 3, 4, 5, 6, 7, 8]  # the range was fixed when reading started


def test_get_returns_the_event_or_none(filled: Log) -> None:
    event = filled.get(4)
    assert event is not None
    assert (event.seq, event.type, event.stream, event.version) == (4, "withdraw", "account-1", 2)
    assert filled.get(9) is None
    assert filled.get(1_000_000) is None


def test_head_is_the_last_seq(filled: Log) -> None:
    assert filled.head() == 8
    filled.append("more")
    assert filled.head() == 9


def test_an_existing_empty_log_has_head_zero(log: Log) -> None:
    with pytest.raises(ConflictError):  # the append opens (creates) the log, then writes nothing
        log.append("t", stream="s", expect=3)
    assert log.head() == 0
    assert list(log.read()) == []
    info = log.info()
    assert (info["events"], info["first_seq"], info["last_seq"], info["streams"], info["types"]) == (
        0, None, None, 0, {},
    )
    assert info["head_hash"] == "0" * 32


def test_info_describes_the_log(filled: Log, log_path: str) -> None:
    info = filled.info()
    assert set(info) == {
        "path", "size_bytes", "events", "first_seq", "last_seq", "first_ts", "last_ts", "streams",
        "types", "format", "log_id", "created", "head_hash",
    }
    events = list(filled.read())
    assert info["path"] == os.path.abspath(log_path)
    assert isinstance(info["size_bytes"], int) and info["size_bytes"] > 0
    assert (info["events"], info["first_seq"], info["last_seq"]) == (8, 1, 8)
    assert (info["first_ts"], info["last_ts"]) == (events[0].ts_text, events[-1].ts_text)
    assert info["streams"] == 4
    assert info["types"] == {
        "deposit": 3, "note": 1, "order.created": 1, "order.paid": 1, "withdraw": 1, "withdraw.fee": 1,
    }
    assert list(info["types"]) == ["deposit", "note", "order.created", "order.paid", "withdraw", "withdraw.fee"]
    assert info["format"] == 1
    assert re.fullmatch(r"[0-9a-f]{32}", info["log_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", info["created"])
    assert re.fullmatch(r"[0-9a-f]{32}", info["head_hash"])
    filled.append("more")
    after = filled.info()
    assert after["head_hash"] != info["head_hash"]
    assert after["log_id"] == info["log_id"]


@pytest.mark.parametrize("call", ["read", "head", "info", "get"])
def test_reading_a_missing_log_raises_and_creates_nothing(log: Log, log_path: str, call: str) -> None:
    with pytest.raises(LogNotFoundError) as caught:
        if call == "read":
            list(log.read())
        elif call == "get":
            log.get(1)
        else:
            getattr(log, call)()
    assert caught.value.exit_code == 66
    assert log_path in str(caught.value)
    assert not os.path.exists(log_path)


# -- given times and ids given again ------------------------------------------------------------


def test_append_many_refuses_a_ts_far_ahead_unless_allowed(log: Log) -> None:
    log.append_many([{"type": "first"}])
    with pytest.raises(AppendStopped) as caught:
        log.append_many([{"type": "ok"}, {"type": "far", "ts": "2100-01-01T00:00:00Z"}])
    assert isinstance(caught.value.cause, BadInputError)
    assert caught.value.cause.line == 2
    assert "every later event would be stamped 2100-01-01T00:00:00Z" in str(caught.value)
    assert [row[1] for row in contents(log)] == ["first", "ok"]
    hour_ahead = time.time_ns() + 3600 * 10**9
    with pytest.raises(AppendStopped):
        log.append_many([{"type": "soon", "ts": hour_ahead}])
    log.append_many([{"type": "soon", "ts": hour_ahead}], max_future=7200)
    log.append_many([{"type": "far", "ts": "2100-01-01T00:00:00Z"}], max_future=None)
    assert [row[1] for row in contents(log)] == ["first", "ok", "soon", "far"]


def test_append_many_takes_integers_as_nanoseconds_whatever_their_size(log: Log) -> None:
    log.append_many([{"type": "a", "ts": 5}, {"type": "b", "ts": 1_700_000_000}])  # the API's unit: no guessing
    assert [e.ts for e in log.read()] == [5, 1_700_000_000]


def test_append_many_strict_ids_refuses_an_id_given_again_with_other_content(log: Log) -> None:
    log.append_many([{"type": "a", "id": "k", "data": {"x": 1, "y": 2}}])
    summary = log.append_many([{"type": "a", "id": "k", "data": {"y": 2, "x": 1}}, {"type": "a", "id": "k", "data": 3}])
    assert (summary.appended, summary.duplicates) == (0, 2)  # without strict_ids: duplicates, nothing written
    same = log.append_many([{"type": "a", "id": "k", "data": {"y": 2, "x": 1}, "meta": {"retry": 1}}], strict_ids=True)
    assert same.duplicates == 1
    with pytest.raises(AppendStopped) as caught:
        log.append_many([{"type": "b"}, {"type": "a", "id": "k", "data": 3}, {"type": "c"}], strict_ids=True)
    assert isinstance(caught.value.cause, BadInputError)
    assert caught.value.cause.line == 2
    assert "id 'k' is already in the log at seq 1 with other data" in str(caught.value)
    assert [row[1] for row in contents(log)] == ["a", "b"]
