"""Snapshots: saved fold states, keyed by the whole definition, never a wrong answer.

Snapshots are a cache, so their one promise is that they are invisible in the
answer: replay with snapshots equals replay without, a snapshot is never used
past ``--until``, and a snapshot of one definition is never used by another.

* The property (hypothesis, through the library for speed): random logs,
  random definitions from a fixed family (with and without ``--where``,
  ``--type``, ``--stream``, ``--from``), snapshots saved at random positions
  (while folding with ``snapshot_every`` or with ``snapshots.save`` of a state
  computed without snapshots), random ``--until``: the answer with snapshots
  equals the answer without and a plain Python model; the snapshot used is the
  newest one of that definition at or before ``--until``; other definitions
  use none.
* Through the real command: ``snapshot save/list/drop``, ``--snapshot-every``,
  ``--no-snapshot``. To *see* whether a snapshot is used, a deliberately wrong
  state is planted under a definition's hash: it shows up in the answer of that
  definition (so snapshots are used) and never in the answer of a changed one
  or past ``--until``.

Tests marked ``xfail(strict=True)`` pin down evlog bugs found while writing them.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_evlog
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from evlog import Log, snapshots
from evlog.backends.lmdb.reading import ts_at
from evlog.fold import FoldSpec
from evlog.runner import run_fold

# -- a log for the command-line tests ---------------------------------------------------

# seq n: (type, stream, amount); seq n has ts 2026-11-01T(08+n):00:00Z
CLI_EVENTS: list[tuple[str, str | None, int]] = [
    ("deposit", "acct-a", 100),
    ("deposit", "acct-b", 250),
    ("withdraw", "acct-a", 30),
    ("note", None, 0),
    ("deposit", "acct-a", 500),
    ("withdraw", "acct-b", 40),
    ("deposit", "acct-c", 7),
    ("withdraw", "acct-a", 70),
    ("deposit", "acct-b", 1),
    ("note", None, 0),
]

BALANCES = ("--by", "stream", "--init", '{"balance": 0}',
            "--on", "deposit", "s.balance += d.amount", "--on", "withdraw", "s.balance -= d.amount")
BALANCES_SPEC = FoldSpec(init={"balance": 0}, by="stream",
                         clauses=(("deposit", "s.balance += d.amount"), ("withdraw", "s.balance -= d.amount")))
PLANTED = {"planted": True}


def ts_text(seq: int) -> str:
    return f"2026-11-01T{8 + seq:02d}:00:00Z"


@pytest.fixture
def bank_log(log_path: str) -> str:
    with Log(log_path) as log:
        log.append_many(
            {"type": etype, "stream": stream, "data": {"amount": amount}, "ts": ts_text(seq)}
            for seq, (etype, stream, amount) in enumerate(CLI_EVENTS, 1)
        )
    return log_path


def balances_until(until: int, *, first: int = 1) -> dict[str, dict[str, int]]:
    """The BALANCES fold in plain Python."""
    states: dict[str, dict[str, int]] = {}
    for seq, (etype, stream, amount) in enumerate(CLI_EVENTS, 1):
        if seq < first or seq > until or stream is None:
            continue
        state = states.setdefault(stream, {"balance": 0})
        state["balance"] += amount if etype == "deposit" else -amount if etype == "withdraw" else 0
    return states


def fold(log_path: str, *args: str, env: dict[str, str] | None = None) -> Any:
    result = run_evlog("replay", *args, log=log_path, env=env)
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def listed(log_path: str) -> list[dict[str, Any]]:
    result = run_evlog("snapshot", "list", log=log_path)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.splitlines()]


def plant(log_path: str, spec: FoldSpec, seq: int, states: dict[Any, Any], *, first: int = 1) -> str:
    """Store ``states`` as the snapshot of ``spec`` after ``seq`` (sound but for the state); returns its hash."""
    with Log(log_path) as log:
        store = log.store(write=True)
        snapshots.save(store, spec, first, seq, ts_at(store, seq), states)
    return spec.digest(first).hex()


# -- snapshot save / list ------------------------------------------------------------------


def test_save_prints_hash_and_seq_and_list_shows_it(bank_log: str) -> None:
    result = run_evlog("snapshot", "save", "--at", "6", *BALANCES, log=bank_log)
    assert result.returncode == 0, result.stderr.decode()
    digest, seq = result.stdout.decode().split()
    assert re.fullmatch(r"[0-9a-f]{32}", digest) and seq == "6"
    assert digest == BALANCES_SPEC.digest(1).hex()  # the command and the library name it alike
    assert result.stderr.decode().startswith("evlog: saved the state after seq 6")
    [entry] = listed(bank_log)
    assert set(entry) == {"hash", "seq", "ts", "size", "keys", "problem"}
    assert entry["problem"] is None
    assert entry["hash"] == digest and entry["seq"] == 6
    assert entry["ts"] == ts_text(6).replace("Z", ".000000000Z")
    assert entry["keys"] == 2 and entry["size"] > 0  # acct-a, acct-b so far


def test_save_defaults_to_the_last_event_and_accepts_times(bank_log: str) -> None:
    result = run_evlog("snapshot", "save", "--init", "0", "--fold", "s + 1", log=bank_log)
    assert result.stdout.decode().split()[1] == str(len(CLI_EVENTS))
    result = run_evlog("snapshot", "save", "--at", "2026-11-01T12:30", "--init", "0", "--fold", "s + 1",
                       log=bank_log, env={"TZ": "UTC"})
    assert result.stdout.decode().split()[1] == "4"
    assert [entry["seq"] for entry in listed(bank_log)] == [4, 10]
    assert {entry["keys"] for entry in listed(bank_log)} == {1}


def test_saved_state_is_the_state_at_that_position(bank_log: str) -> None:
    run_evlog("snapshot", "save", "--at", "5", *BALANCES, log=bank_log)
    with Log(bank_log) as log:
        found = snapshots.latest(log.store(), BALANCES_SPEC, 1, 10)
    assert found == (5, balances_until(5))


def test_save_needs_a_fold_and_an_event(bank_log: str, tmp_path: Path) -> None:
    result = run_evlog("snapshot", "save", log=bank_log)
    assert result.returncode == 2 and b"--fold" in result.stderr
    result = run_evlog("snapshot", "save", "--at", "2020-01-01T00:00Z", "--init", "0", "--fold", "s + 1", log=bank_log)
    assert result.returncode == 2 and b"no event" in result.stderr
    result = run_evlog("snapshot", "save", "--fold", "s", log=str(tmp_path / "missing"))
    assert result.returncode == 66
    assert listed(bank_log) == []


def test_list_of_a_log_without_snapshots_is_empty(bank_log: str) -> None:
    assert listed(bank_log) == []


# -- replay uses snapshots, and only the right ones -----------------------------------------


def test_replay_uses_the_snapshot_of_its_definition(bank_log: str) -> None:
    plant(bank_log, BALANCES_SPEC, 6, {"acct-a": {"balance": 1000}})
    # the planted state shows: the fold started after seq 6 (events 7-9 are folded on top of it)
    assert fold(bank_log, *BALANCES) == {"acct-a": {"balance": 930}, "acct-c": {"balance": 7},
                                         "acct-b": {"balance": 1}}
    assert fold(bank_log, *BALANCES, "--no-snapshot") == balances_until(10)


def test_a_saved_snapshot_gives_the_same_answer_as_no_snapshot(bank_log: str) -> None:
    for at in ("3", "7"):
        assert run_evlog("snapshot", "save", "--at", at, *BALANCES, log=bank_log).returncode == 0
    for until in range(1, 12):
        with_snapshot = fold(bank_log, "--until", str(until), *BALANCES)
        assert with_snapshot == fold(bank_log, "--until", str(until), *BALANCES, "--no-snapshot")
        assert with_snapshot == balances_until(until)


def test_a_snapshot_is_never_used_past_until(bank_log: str) -> None:
    plant(bank_log, BALANCES_SPEC, 6, {"acct-a": PLANTED})
    for until in ("5", "-6", "2026-11-01T13:59:59Z"):
        assert fold(bank_log, "--until", until, *BALANCES) == balances_until(5)
    assert fold(bank_log, "--until", "6", *BALANCES) == {"acct-a": PLANTED}


def test_the_newest_snapshot_at_or_before_until_is_used(bank_log: str) -> None:
    plant(bank_log, BALANCES_SPEC, 3, {"k": {"at": 3}})
    plant(bank_log, BALANCES_SPEC, 5, {"k": {"at": 5}})
    plant(bank_log, BALANCES_SPEC, 8, {"k": {"at": 8}})
    assert fold(bank_log, "--until", "4", *BALANCES)["k"] == {"at": 3}
    assert fold(bank_log, "--until", "7", *BALANCES)["k"] == {"at": 5}
    assert fold(bank_log, "--until", "8", *BALANCES)["k"] == {"at": 8}
    assert "k" not in fold(bank_log, "--until", "2", *BALANCES)


CHANGED_DEFINITIONS: list[tuple[str, ...]] = [
    ("--by", "stream", "--init", '{"balance": 1}',
     "--on", "deposit", "s.balance += d.amount", "--on", "withdraw", "s.balance -= d.amount"),
    ("--by", "stream", "--init", '{"balance": 0}',
     "--on", "deposit", "s.balance += d.amount", "--on", "withdraw", "s.balance -= 2 * d.amount"),
    ("--by", "stream", "--init", '{"balance": 0}',
     "--on", "withdraw", "s.balance -= d.amount", "--on", "deposit", "s.balance += d.amount"),
    ("--by", "stream", "--init", '{"balance": 0}',
     "--on", "depos*", "s.balance += d.amount", "--on", "withdraw", "s.balance -= d.amount"),
    ("--by", "stream", "--init", '{"balance": 0}', "--on", "deposit", "s.balance += d.amount"),
    ("--by", 'e.stream or "none"', "--init", '{"balance": 0}',
     "--on", "deposit", "s.balance += d.amount", "--on", "withdraw", "s.balance -= d.amount"),
    (*BALANCES, "--where", "d.amount > 5"),
    (*BALANCES, "--type", "deposit"),
    (*BALANCES, "--type", "*"),
    (*BALANCES, "--stream", "acct-a"),
    (*BALANCES, "--stream", "acct-*"),
    (*BALANCES, "--from", "2"),
    (*BALANCES, "--fold", "s.n = 1"),
]


@pytest.mark.parametrize("definition", CHANGED_DEFINITIONS, ids=range(len(CHANGED_DEFINITIONS)))
def test_a_changed_definition_never_picks_up_an_old_snapshot(bank_log: str, definition: tuple[str, ...]) -> None:
    for seq in (2, 6, 10):
        plant(bank_log, BALANCES_SPEC, seq, {"acct-a": PLANTED})
    assert fold(bank_log, *BALANCES)["acct-a"] == PLANTED  # the planted snapshots are in use
    got = fold(bank_log, *definition)
    assert PLANTED not in got.values()
    assert got == fold(bank_log, *definition, "--no-snapshot")


def test_a_changed_fold_file_never_picks_up_an_old_snapshot(bank_log: str, tmp_path: Path) -> None:
    reducers = tmp_path / "count.fold"
    reducers.write_text("s.n = s.get('n', 0) + 1\n")
    plant(bank_log, FoldSpec(clauses=((None, reducers.read_text()),)), 10, {None: PLANTED})
    assert fold(bank_log, "--fold-file", str(reducers)) == PLANTED  # in use
    reducers.write_text("s.n = s.get('n', 0) + 2\n")
    assert fold(bank_log, "--fold-file", str(reducers)) == {"n": 2 * len(CLI_EVENTS)}



def test_no_snapshot_ignores_snapshots(bank_log: str) -> None:
    plant(bank_log, FoldSpec(init=0, clauses=((None, "s + 1"),)), 5, {None: 1000})
    assert fold(bank_log, "--init", "0", "--fold", "s + 1") == 1005
    assert fold(bank_log, "--init", "0", "--fold", "s + 1", "--no-snapshot") == len(CLI_EVENTS)


def test_scan_folds_from_the_start(bank_log: str) -> None:
    plant(bank_log, FoldSpec(init=0, clauses=((None, "s + 1"),)), 5, {None: 1000})
    result = run_evlog("replay", "--scan", "--init", "0", "--fold", "s + 1", log=bank_log)
    assert [json.loads(line)["state"] for line in result.stdout.splitlines()] == list(range(1, 11))


def test_snapshot_every_saves_while_folding(bank_log: str) -> None:
    assert fold(bank_log, *BALANCES, "--snapshot-every", "3") == balances_until(10)
    entries = listed(bank_log)
    assert {entry["hash"] for entry in entries} == {BALANCES_SPEC.digest(1).hex()}
    # at the first folded event at least 3 seqs after the previous snapshot
    assert [entry["seq"] for entry in entries] == [3, 6, 9]
    for until in range(1, 11):
        assert fold(bank_log, "--until", str(until), *BALANCES) == balances_until(until)


def test_snapshot_every_continues_from_the_snapshot_it_started_at(bank_log: str) -> None:
    fold(bank_log, "--until", "4", "--init", "0", "--fold", "s + 1", "--snapshot-every", "2")
    assert [entry["seq"] for entry in listed(bank_log)] == [2, 4]
    assert fold(bank_log, "--init", "0", "--fold", "s + 1", "--snapshot-every", "2") == len(CLI_EVENTS)
    assert [entry["seq"] for entry in listed(bank_log)] == [2, 4, 6, 8, 10]


def test_snapshot_every_with_no_snapshot_still_saves(bank_log: str) -> None:
    assert fold(bank_log, "--init", "0", "--fold", "s + 1", "--no-snapshot", "--snapshot-every", "5") == 10
    assert [entry["seq"] for entry in listed(bank_log)] == [5, 10]


# -- snapshot drop ---------------------------------------------------------------------


@pytest.fixture
def two_definitions(bank_log: str) -> tuple[str, str, str]:
    """Snapshots of two definitions: counting at 2, 4, 6, 8, 10 and balances at 5, 10."""
    fold(bank_log, "--init", "0", "--fold", "s + 1", "--snapshot-every", "2")
    fold(bank_log, *BALANCES, "--snapshot-every", "4")
    count_hash = FoldSpec(init=0, clauses=((None, "s + 1"),)).digest(1).hex()
    return bank_log, count_hash, BALANCES_SPEC.digest(1).hex()


def drop(log_path: str, *args: str) -> tuple[int, str]:
    result = run_evlog("snapshot", "drop", *args, log=log_path)
    assert "Traceback" not in result.stderr.decode()
    return result.returncode, result.stderr.decode()


def test_drop_by_hash(two_definitions: tuple[str, str, str]) -> None:
    log_path, count_hash, balance_hash = two_definitions
    assert {entry["hash"] for entry in listed(log_path)} == {count_hash, balance_hash}
    assert drop(log_path, count_hash) == (0, "evlog: dropped 5 snapshots\n")
    assert {entry["hash"] for entry in listed(log_path)} == {balance_hash}


def test_drop_by_hash_prefix(two_definitions: tuple[str, str, str]) -> None:
    log_path, count_hash, balance_hash = two_definitions
    assert drop(log_path, balance_hash[:8])[0] == 0
    assert {entry["hash"] for entry in listed(log_path)} == {count_hash}


def test_drop_before_a_position(two_definitions: tuple[str, str, str]) -> None:
    log_path, count_hash, _ = two_definitions
    before = {(entry["hash"], entry["seq"]) for entry in listed(log_path)}
    assert drop(log_path, "--before", "6")[0] == 0
    kept = {item for item in before if item[1] >= 6}
    assert {(entry["hash"], entry["seq"]) for entry in listed(log_path)} == kept
    # a time: before the first event at or after it (seq 9), and only of one definition
    assert drop(log_path, count_hash, "--before", "2026-11-01T17:00Z")[0] == 0
    kept = {(digest, seq) for digest, seq in kept if digest != count_hash or seq >= 9}
    assert {(entry["hash"], entry["seq"]) for entry in listed(log_path)} == kept
    assert (count_hash, 10) in kept and (count_hash, 8) not in kept


def test_drop_all(two_definitions: tuple[str, str, str]) -> None:
    log_path = two_definitions[0]
    assert drop(log_path, "--all")[0] == 0
    assert listed(log_path) == []
    assert drop(log_path, "--all") == (0, "evlog: dropped 0 snapshots\n")


def test_drop_needs_to_be_told_what(two_definitions: tuple[str, str, str]) -> None:
    code, stderr = drop(two_definitions[0])
    assert code == 2 and "--all" in stderr
    assert len(listed(two_definitions[0])) == 7


def test_dropping_snapshots_never_changes_an_answer(two_definitions: tuple[str, str, str]) -> None:
    log_path = two_definitions[0]
    answers = [fold(log_path, "--until", str(until), *BALANCES) for until in (3, 7, 10)]
    drop(log_path, "--before", "5")
    assert [fold(log_path, "--until", str(until), *BALANCES) for until in (3, 7, 10)] == answers
    drop(log_path, "--all")
    assert [fold(log_path, "--until", str(until), *BALANCES) for until in (3, 7, 10)] == answers


def test_drop_with_a_hash_that_is_not_hex_is_a_usage_error(two_definitions: tuple[str, str, str]) -> None:
    code, stderr = drop(two_definitions[0], "zz")
    assert code == 2 and "zz" in stderr


def test_drop_with_an_odd_length_prefix(two_definitions: tuple[str, str, str]) -> None:
    log_path, count_hash, balance_hash = two_definitions
    code, stderr = drop(log_path, count_hash[:7])
    assert code == 0, stderr
    assert {entry["hash"] for entry in listed(log_path)} == {balance_hash}


# -- states that snapshots cannot hold ------------------------------------------------


def test_a_set_state_with_snapshot_every_is_a_clear_error(bank_log: str) -> None:
    result = run_evlog("replay", "--fold", "s = d.values()", "--snapshot-every", "1", log=bank_log)
    assert "Traceback" not in result.stderr.decode()
    assert result.returncode == 65


def test_saving_a_set_state_is_a_clear_error(bank_log: str) -> None:
    result = run_evlog("snapshot", "save", "--fold", "s = d.values()", log=bank_log)
    assert "Traceback" not in result.stderr.decode()
    assert result.returncode == 65


def test_a_huge_integer_state_with_snapshot_every_is_a_clear_error(bank_log: str) -> None:
    result = run_evlog("replay", "--init", "1", "--fold", "s * 10**10", log=bank_log)
    assert result.returncode == 65 and b"Traceback" not in result.stderr
    result = run_evlog("replay", "--init", "1", "--fold", "s * 10**10", "--snapshot-every", "1", log=bank_log)
    assert "Traceback" not in result.stderr.decode()
    assert result.returncode == 65


def test_a_tuple_in_the_state_is_refused_by_a_snapshot_not_silently_changed(bank_log: str) -> None:
    # A snapshot would give the tuple back as a list, and a resumed fold could then
    # answer differently: saving such a state is refused with a clear error instead.
    args = ("--fold", 's.t = s.get("t", ()) + (e.seq,)')
    assert fold(bank_log, *args, "--no-snapshot") == {"t": list(range(1, 11))}
    saved = run_evlog("snapshot", "save", "--at", "4", *args, log=bank_log)
    assert saved.returncode == 65
    assert b"holds a tuple, which a snapshot cannot keep" in saved.stderr
    assert b"Traceback" not in saved.stderr
    assert fold(bank_log, *args) == {"t": list(range(1, 11))}


def test_a_clause_variable_does_not_carry_hidden_state_past_a_snapshot(bank_log: str) -> None:
    clause = "try:\n    n += 1\nexcept Exception:\n    n = 1\ns.n = n"
    without = fold(bank_log, "--fold", clause, "--no-snapshot")
    assert run_evlog("snapshot", "save", "--at", "4", "--fold", clause, log=bank_log).returncode == 0
    assert fold(bank_log, "--fold", clause) == without


# -- the library: which snapshot a fold started from -----------------------------------


def test_run_fold_reports_the_snapshot_it_used(bank_log: str) -> None:
    spec = FoldSpec(init=0, clauses=((None, "s + d.amount"),))
    total = [0]
    for _etype, _stream, amount in CLI_EVENTS:
        total.append(total[-1] + amount)
    with Log(bank_log) as log:
        result, _ = run_fold(log, spec)
        assert (result.snapshot_seq, result.folded_from, result.value(by=False)) == (None, 1, total[10])
        result, _ = run_fold(log, spec, until=7, snapshot_every=3)
        assert [info.seq for info in snapshots.listing(log.store())] == [3, 6]
        for until, used in [(2, None), (3, 3), (5, 3), (6, 6), (10, 6)]:
            result, _ = run_fold(log, spec, until=until)
            assert result.snapshot_seq == used
            assert result.folded_from == (1 if used is None else used + 1)
            assert result.value(by=False) == total[until]
        result, _ = run_fold(log, spec, until=10, use_snapshots=False)
        assert result.snapshot_seq is None and result.value(by=False) == total[10]
        result, _ = run_fold(log, spec, from_=2, until=10)
        assert result.snapshot_seq is None and result.value(by=False) == total[10] - total[1]


# -- the property ---------------------------------------------------------------------

TYPES = ("deposit", "withdraw", "note")
STREAMS = ("s1", "s2", "s3", None)

Model = Callable[[list[dict[str, Any]]], Any]


def _count(events: list[dict[str, Any]]) -> Any:
    counts: dict[str, int] = {}
    for event in events:
        counts[event["type"]] = counts.get(event["type"], 0) + 1
    return counts


def _by(key: Callable[[dict[str, Any]], Any], make: Callable[[], Any],
        step: Callable[[Any, dict[str, Any]], Any]) -> Model:
    def model(events: list[dict[str, Any]]) -> Any:
        states: dict[Any, Any] = {}
        for event in events:
            k = key(event)
            if k is not None:
                states[k] = step(states[k] if k in states else make(), event)
        return states
    return model


def _balance_step(state: dict[str, int], event: dict[str, Any]) -> dict[str, int]:
    sign = {"deposit": 1, "withdraw": -1}.get(event["type"], 0)
    return {"balance": state["balance"] + sign * event["data"]["amount"]}


# name: (init, clauses, by, model over the selected events)
FAMILY: dict[str, tuple[Any, tuple[tuple[str | None, str], ...], str | None, Model]] = {
    "count by type": ({}, ((None, "s[e.type] = s.get(e.type, 0) + 1"),), None, _count),
    "sum of amounts": (0, ((None, "s + d.amount"),), None,
                       lambda events: sum(event["data"]["amount"] for event in events)),
    "seqs in order": ([], ((None, "s.append(e.seq)"),), None, lambda events: [event["seq"] for event in events]),
    "balances by stream": (
        {"balance": 0}, (("deposit", "s.balance += d.amount"), ("withdraw", "s.balance -= d.amount")), "stream",
        _by(lambda event: event["stream"], lambda: {"balance": 0}, _balance_step)),
    "update by stream": ({}, ((None, "s.update(d)"),), "stream",
                         _by(lambda event: event["stream"], dict, lambda state, event: {**state, **event["data"]})),
    "count by integer key": (0, ((None, "s + 1"),), "d.amount % 3",
                             _by(lambda event: event["data"]["amount"] % 3, lambda: 0, lambda state, _e: state + 1)),
    "sum by optional tag": ({"n": 0}, (("*", "s.n += d.amount"),), 'd.get("tag")',
                            _by(lambda event: event["data"].get("tag"), lambda: {"n": 0},
                                lambda state, event: {"n": state["n"] + event["data"]["amount"]})),
}
WHERES: dict[str | None, Callable[[dict[str, Any]], bool]] = {
    None: lambda event: True,
    "d.amount > 3": lambda event: event["data"]["amount"] > 3,
}
TYPE_FILTERS: list[tuple[str, ...]] = [(), ("deposit",), ("deposit", "withdraw"), ("with*",)]
STREAM_FILTERS: list[tuple[str, ...]] = [(), ("s1",), ("s1", "s3"), ("s*",)]


def stream_selected(stream: str | None, patterns: tuple[str, ...]) -> bool:
    if not patterns:
        return True
    return stream is not None and any(
        stream.startswith(pattern[:-1]) if pattern.endswith("*") else stream == pattern for pattern in patterns)


def type_selected(etype: str, patterns: tuple[str, ...]) -> bool:
    import fnmatch

    return not patterns or any(fnmatch.fnmatchcase(etype, pattern) for pattern in patterns)


definitions = st.tuples(
    st.sampled_from(sorted(FAMILY)), st.sampled_from(list(WHERES)), st.sampled_from(TYPE_FILTERS),
    st.sampled_from(STREAM_FILTERS),
)
event_lists = st.lists(
    st.tuples(st.sampled_from(TYPES), st.sampled_from(STREAMS), st.integers(0, 9), st.sampled_from([None, "x", "y"])),
    min_size=1, max_size=30,
)


class Definition:
    """One random fold definition: its spec, where it starts and its Python model."""

    def __init__(self, family: str, where: str | None, types: tuple[str, ...], streams: tuple[str, ...],
                 from_: int | None) -> None:
        init, clauses, by, self.model = FAMILY[family]
        self.spec = FoldSpec(init=init, clauses=clauses, by=by, where=where, types=types, streams=streams)
        self.where, self.types, self.streams, self.from_ = WHERES[where], types, streams, from_

    def expected(self, events: list[dict[str, Any]], until: int) -> Any:
        first = self.from_ or 1
        return self.model([
            event for event in events
            if first <= event["seq"] <= until and type_selected(event["type"], self.types)
            and stream_selected(event["stream"], self.streams) and self.where(event)
        ])

    def run(self, log: Log, until: int, **options: Any) -> Any:
        result, _ = run_fold(log, self.spec, from_=self.from_, until=until, **options)
        return result

    def value(self, result: Any) -> Any:
        return result.value(by=self.spec.by is not None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_events=event_lists, definition=definitions, other=definitions, data=st.data())
def test_replay_with_snapshots_equals_replay_without(
    raw_events: list[tuple[str, str | None, int, str | None]],
    definition: tuple[str, str | None, tuple[str, ...], tuple[str, ...]],
    other: tuple[str, str | None, tuple[str, ...], tuple[str, ...]],
    data: st.DataObject,
) -> None:
    count = len(raw_events)
    positions = st.integers(1, count + 1)
    starts = st.none() | st.integers(1, max(1, count // 2))
    fold_def = Definition(*definition, from_=data.draw(starts, label="from"))
    other_def = Definition(*other, from_=data.draw(st.none() | positions, label="other from"))
    with tempfile.TemporaryDirectory() as tmp, Log(Path(tmp) / "events.lmdb") as log:
        log.append_many(
            {"type": etype, "stream": stream, "data": {"amount": amount, **({"tag": tag} if tag else {})}}
            for etype, stream, amount, tag in raw_events
        )
        events = [event.to_dict() for event in log.read()]
        first = fold_def.from_ or 1
        digest = fold_def.spec.digest(first)

        # 0-3 snapshots of the definition, made while folding or saved from a correct state
        plans = data.draw(st.lists(st.tuples(positions, st.sampled_from(["every", "save"]), st.integers(1, 5),
                                             st.booleans()), max_size=3), label="snapshots")
        for at, how, every, reuse in plans:
            if how == "every":
                result = fold_def.run(log, at, snapshot_every=every, use_snapshots=reuse)
                assert fold_def.value(result) == fold_def.expected(events, at)
            else:
                result = fold_def.run(log, at, use_snapshots=False)
                if result.last >= result.first:
                    store = log.store(write=True)
                    snapshots.save(store, fold_def.spec, first, result.last, ts_at(store, result.last),
                                   result.states)

        saved = sorted(info.seq for info in snapshots.listing(log.store()) if info.digest == digest.hex())
        for until in [*data.draw(st.lists(positions, min_size=1, max_size=3), label="until"), count]:
            with_snapshots = fold_def.run(log, until)
            without = fold_def.run(log, until, use_snapshots=False)
            expected = fold_def.expected(events, until)
            assert fold_def.value(without) == expected
            assert fold_def.value(with_snapshots) == expected
            last = min(until, count)
            usable = [seq for seq in saved if first - 1 <= seq <= last]
            assert with_snapshots.snapshot_seq == (usable[-1] if usable and last >= first else None)
            resumed = with_snapshots.snapshot_seq is not None
            hypothesis_event("resumed from a snapshot" if resumed else "folded from the start")
            if with_snapshots.snapshot_seq is not None:
                assert with_snapshots.snapshot_seq <= until
                assert with_snapshots.folded_from == with_snapshots.snapshot_seq + 1

            # another definition never uses this one's snapshots
            other_first = other_def.from_ or 1
            if other_def.spec.digest(other_first) != digest:
                result = other_def.run(log, until)
                assert result.snapshot_seq is None
                assert other_def.value(result) == other_def.expected(events, until)
