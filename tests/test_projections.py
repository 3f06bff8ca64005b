"""Projections: named, stored fold definitions (read models) asked for at any position.

Through the real command: ``evlog projection add/list/show/rm`` and
``evlog replay --projection``. Every answer is compared with the same fold
computed in plain Python over the events read back with ``Log.read()``, and
with ``evlog replay`` given the same fold options. Snapshots that ``show``
saves as it folds are observed with ``evlog snapshot list``; a deliberately
wrong state planted under the projection's definition shows that ``show``
really uses them, and that ``--replace`` and ``rm`` really drop them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_evlog

from evlog import Log, snapshots
from evlog.backends.lmdb.reading import ts_at
from evlog.fold import FoldSpec

# seq n: (type, stream, amount); seq n has ts 2026-11-01T(08+n):00:00Z
EVENTS: list[tuple[str, str | None, int]] = [
    ("deposit", "acct-a", 100),
    ("deposit", "acct-b", 250),
    ("withdraw", "acct-a", 30),
    ("note", None, 0),
    ("deposit", "acct-a", 500),
    ("withdraw", "acct-b", 40),
    ("deposit", "acct-c", 7),
    ("withdraw", "acct-a", 70),
    ("deposit", "acct-b", 1),
    ("order.created", "order-1", 12),
    ("deposit", "acct-c", 3),
    ("note", None, 0),
]
BALANCE_OPTIONS = ("--by", "stream", "--init", '{"balance": 0}',
                   "--on", "deposit", "s.balance += d.amount", "--on", "withdraw", "s.balance -= d.amount")
BALANCE_SPEC = FoldSpec(init={"balance": 0}, by="stream",
                        clauses=(("deposit", "s.balance += d.amount"), ("withdraw", "s.balance -= d.amount")))


def ts_text(seq: int) -> str:
    return f"2026-11-01T{8 + seq:02d}:00:00Z"


@pytest.fixture
def bank_log(log_path: str) -> str:
    with Log(log_path) as log:
        log.append_many(
            {"type": etype, "stream": stream, "data": {"amount": amount}, "ts": ts_text(seq)}
            for seq, (etype, stream, amount) in enumerate(EVENTS, 1)
        )
    return log_path


def balances(log_path: str, until: int | None = None, *, first: int = 1) -> dict[str, dict[str, int]]:
    """The balances fold in plain Python over the events read back from the log."""
    states: dict[str, dict[str, int]] = {}
    with Log(log_path) as log:
        for event in log.read(from_=first, until=until):
            if event.stream is None:
                continue
            state = states.setdefault(event.stream, {"balance": 0})
            if event.type == "deposit":
                state["balance"] += event.data["amount"]
            elif event.type == "withdraw":
                state["balance"] -= event.data["amount"]
    return states


def ok(log_path: str, *args: str, env: dict[str, str] | None = None) -> bytes:
    result = run_evlog(*args, log=log_path, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    return result.stdout


def show(log_path: str, name: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(ok(log_path, "projection", "show", name, *args, env=env))


def listed_snapshots(log_path: str) -> list[tuple[str, int]]:
    lines = ok(log_path, "snapshot", "list").splitlines()
    return [(entry["hash"], entry["seq"]) for entry in map(json.loads, lines)]


def plant(log_path: str, spec: FoldSpec, seq: int, states: dict[Any, Any], *, first: int = 1) -> None:
    with Log(log_path) as log:
        store = log.store(write=True)
        snapshots.save(store, spec, first, seq, ts_at(store, seq), states)


@pytest.fixture
def with_balances(bank_log: str) -> str:
    """The log with a projection `balances` saving a snapshot every 4 events."""
    ok(bank_log, "projection", "add", "balances", *BALANCE_OPTIONS, "--snapshot-every", "4")
    return bank_log


# -- add / list ----------------------------------------------------------------------


def test_add_stores_the_definition_and_list_shows_it(with_balances: str) -> None:
    assert ok(with_balances, "projection", "add", "count", "--init", "0", "--fold", "s + 1", "--type", "deposit",
              "--from", "3") == b""
    entries = [json.loads(line) for line in ok(with_balances, "projection", "list").splitlines()]
    by_name = {entry["name"]: entry for entry in entries}
    assert set(by_name) == {"balances", "count"}
    assert set(by_name["count"]) == {"name", "definition", "from", "snapshot_every", "created"}
    assert by_name["balances"]["definition"] == BALANCE_SPEC.to_record()
    assert by_name["balances"]["snapshot_every"] == 4 and by_name["balances"]["from"] is None
    count = by_name["count"]
    assert count["from"] == "3" and count["snapshot_every"] == 50_000
    assert count["definition"]["types"] == ["deposit"] and count["definition"]["init"] == 0
    assert count["definition"]["clauses"] == [[None, "s + 1"]]
    assert count["created"].endswith("Z")


def test_list_of_a_log_without_projections_is_empty(bank_log: str) -> None:
    assert ok(bank_log, "projection", "list") == b""


def test_add_refuses_an_existing_name(with_balances: str) -> None:
    result = run_evlog("projection", "add", "balances", "--init", "0", "--fold", "s + 1", log=with_balances)
    assert result.returncode == 2
    assert b"balances" in result.stderr and b"--replace" in result.stderr
    assert show(with_balances, "balances") == balances(with_balances)  # unchanged


@pytest.mark.parametrize(("args", "named"), [
    ((), "--fold"),
    (("--init", "0"), "--init"),
    (("--fold", "import os"), "import"),
    (("--fold", "s", "--snapshot-every", "0"), "--snapshot-every"),
])
def test_add_refuses_a_definition_that_is_not_a_valid_fold(bank_log: str, args: tuple[str, ...], named: str) -> None:
    result = run_evlog("projection", "add", "bad", *args, log=bank_log)
    assert result.returncode == 2
    assert named.encode() in result.stderr
    assert b"Traceback" not in result.stderr
    assert ok(bank_log, "projection", "list") == b""


def test_add_refuses_a_name_with_control_characters(bank_log: str) -> None:
    result = run_evlog("projection", "add", "bad\tname", "--fold", "s", log=bank_log)
    assert result.returncode == 2


def test_add_on_a_missing_log_fails_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing.lmdb"
    result = run_evlog("projection", "add", "p", "--fold", "s", log=str(missing))
    assert result.returncode == 66
    assert not missing.exists()


# -- show ----------------------------------------------------------------------------


def test_show_gives_the_state_now(with_balances: str) -> None:
    assert show(with_balances, "balances") == balances(with_balances)


AT_POSITIONS: list[tuple[str, int]] = [
    ("1", 1), ("3", 3), ("6", 6), ("9", 9), ("12", 12), ("99", 12), ("-4", 9),
    ("2026-11-01T14:30", 6),  # local time, run with TZ=UTC
    ("2026-11-01T15:00Z", 7), ("2026-11-01T09:00:00+01:00", 0),
]


@pytest.mark.parametrize(("at", "until"), AT_POSITIONS, ids=[at for at, _ in AT_POSITIONS])
def test_show_at_any_position_matches_python(with_balances: str, at: str, until: int) -> None:
    expected = balances(with_balances, until) if until else {}
    assert show(with_balances, "balances", "--at", at, env={"TZ": "UTC"}) == expected


def test_show_at_positions_in_any_order_uses_and_saves_snapshots_correctly(with_balances: str) -> None:
    for at in (7, 2, 12, 5, 9, 1, 12, 4, 11):
        got = show(with_balances, "balances", "--at", str(at), "--snapshot-every", "1")
        assert got == balances(with_balances, at)
    assert len(listed_snapshots(with_balances)) == 3  # at 4, 8 and 12


def test_show_saves_snapshots_every_n_events(with_balances: str) -> None:
    assert listed_snapshots(with_balances) == []
    show(with_balances, "balances", "--at", "6")
    assert listed_snapshots(with_balances) == []  # the reader's default allows one every 50,000 events
    # The reader allows one every event; the projection's stored 4 makes them rarer.
    show(with_balances, "balances", "--at", "6", "--snapshot-every", "1")
    digest = BALANCE_SPEC.digest(1).hex()
    # every 4 seqs of the log, also where the event there is one the fold leaves out
    # (seq 4 is a note without a stream)
    assert listed_snapshots(with_balances) == [(digest, 4)]
    show(with_balances, "balances", "--snapshot-every", "1")
    assert listed_snapshots(with_balances) == [(digest, 4), (digest, 8), (digest, 12)]


def test_the_readers_interval_is_a_floor_the_stored_one_can_only_raise(with_balances: str) -> None:
    digest = BALANCE_SPEC.digest(1).hex()
    show(with_balances, "balances", "--snapshot-every", "6")  # rarer than the stored 4: the reader's 6
    assert listed_snapshots(with_balances) == [(digest, 6), (digest, 12)]
    ok(with_balances, "snapshot", "drop", "--all")
    ok(with_balances, "replay", "--projection", "balances", "--snapshot-every", "5")
    assert listed_snapshots(with_balances) == [(digest, 5), (digest, 10)]
    ok(with_balances, "snapshot", "drop", "--all")
    show(with_balances, "balances", "--snapshot-every", "0")  # none at all
    ok(with_balances, "replay", "--projection", "balances")  # the default floor, 50,000
    assert listed_snapshots(with_balances) == []


def test_show_uses_the_snapshots_of_its_definition(with_balances: str) -> None:
    plant(with_balances, BALANCE_SPEC, 9, {"planted": {"balance": 1000}})
    got = show(with_balances, "balances")
    assert got["planted"] == {"balance": 1000}  # the fold went on from the planted state
    assert show(with_balances, "balances", "--at", "8") == balances(with_balances, 8)  # never past --at


def test_show_follows_new_events(with_balances: str) -> None:
    show(with_balances, "balances")
    with Log(with_balances) as log:
        log.append("deposit", {"amount": 1000}, stream="acct-a")
        log.append("withdraw", {"amount": 1}, stream="acct-d")
    got = show(with_balances, "balances")
    assert got == balances(with_balances)
    assert got["acct-a"]["balance"] == 100 - 30 + 500 - 70 + 1000 and got["acct-d"] == {"balance": -1}


def test_show_with_from_starts_there(bank_log: str) -> None:
    ok(bank_log, "projection", "add", "late", *BALANCE_OPTIONS, "--from", "5", "--snapshot-every", "2")
    assert show(bank_log, "late") == balances(bank_log, first=5)
    assert show(bank_log, "late", "--at", "8") == balances(bank_log, 8, first=5)
    assert show(bank_log, "late", "--at", "3") == {}


def test_show_of_a_fold_file_projection_keeps_the_file_content(bank_log: str, tmp_path: Path) -> None:
    reducers = tmp_path / "by-type.fold"
    reducers.write_text("kind = e.type\ns[kind] = s.get(kind, 0) + d.amount\n")
    ok(bank_log, "projection", "add", "by-type", "--fold-file", str(reducers))
    reducers.unlink()  # the projection stored the definition, not the path
    expected: dict[str, int] = {}
    for etype, _stream, amount in EVENTS:
        expected[etype] = expected.get(etype, 0) + amount
    assert show(bank_log, "by-type") == expected


def test_show_output_formats(with_balances: str) -> None:
    import msgpack

    assert ok(with_balances, "projection", "show", "balances", "-o", "ndjson").count(b"\n") == 1
    packed = ok(with_balances, "projection", "show", "balances", "-o", "msgpack")
    assert msgpack.unpackb(packed) == balances(with_balances)


def test_show_of_an_unknown_projection_fails(bank_log: str) -> None:
    result = run_evlog("projection", "show", "nope", log=bank_log)
    assert result.returncode == 2
    assert b"nope" in result.stderr and b"Traceback" not in result.stderr


# -- replay --projection --------------------------------------------------------------


@pytest.mark.parametrize("until", [None, "3", "8", "-2"])
def test_replay_projection_equals_show_and_the_same_fold_options(with_balances: str, until: str | None) -> None:
    limit = ("--until", until) if until else ()
    at = ("--at", until) if until else ()
    via_replay = json.loads(ok(with_balances, "replay", "--projection", "balances", *limit))
    assert via_replay == show(with_balances, "balances", *at)
    assert via_replay == json.loads(ok(with_balances, "replay", *BALANCE_OPTIONS, *limit, "--no-snapshot"))


def test_replay_projection_scan_equals_replay_scan(with_balances: str) -> None:
    scan = ok(with_balances, "replay", "--projection", "balances", "--scan")
    assert scan == ok(with_balances, "replay", *BALANCE_OPTIONS, "--scan")
    lines = [json.loads(line) for line in scan.splitlines()]
    assert [line["seq"] for line in lines] == [seq for seq, (_t, stream, _a) in enumerate(EVENTS, 1) if stream]
    assert lines[-1] == {"seq": 11, "ts": ts_text(11).replace("Z", ".000000000Z"), "key": "acct-c",
                         "state": balances(with_balances)["acct-c"]}


def test_replay_projection_refuses_its_own_fold_options(with_balances: str) -> None:
    for extra in (("--fold", "s"), ("--init", "0"), ("--by", "stream"), ("--where", "True"), ("-t", "deposit"),
                  ("-s", "acct-a")):
        result = run_evlog("replay", "--projection", "balances", *extra, log=with_balances)
        assert result.returncode == 2, extra
        assert b"--projection" in result.stderr


def test_replay_of_an_unknown_projection_fails(bank_log: str) -> None:
    result = run_evlog("replay", "--projection", "nope", log=bank_log)
    assert result.returncode == 2 and b"nope" in result.stderr


# -- --replace and rm --------------------------------------------------------------------


def test_replace_redefines_and_drops_the_old_snapshots(with_balances: str) -> None:
    show(with_balances, "balances", "--snapshot-every", "4")
    old = BALANCE_SPEC.digest(1).hex()
    ok(with_balances, "replay", "--init", "0", "--fold", "s + 1", "--snapshot-every", "5")  # someone else's
    other = FoldSpec(init=0, clauses=((None, "s + 1"),)).digest(1).hex()
    assert {digest for digest, _seq in listed_snapshots(with_balances)} == {old, other}
    result = run_evlog("projection", "add", "balances", "--replace", "--init", "0", "--type", "deposit",
                       "--fold", "s + d.amount", log=with_balances)
    assert result.returncode == 0, result.stderr.decode()
    assert b"dropped 3 snapshots" in result.stderr
    assert {digest for digest, _seq in listed_snapshots(with_balances)} == {other}
    assert show(with_balances, "balances") == sum(amount for etype, _s, amount in EVENTS if etype == "deposit")
    [entry] = [json.loads(line) for line in ok(with_balances, "projection", "list").splitlines()]
    assert entry["definition"]["clauses"] == [[None, "s + d.amount"]]
    assert entry["snapshot_every"] == 50_000


def test_replace_of_a_new_name_just_adds(bank_log: str) -> None:
    ok(bank_log, "projection", "add", "fresh", "--replace", "--init", "0", "--fold", "s + 1")
    assert show(bank_log, "fresh") == len(EVENTS)


def test_rm_removes_the_projection_and_its_snapshots(with_balances: str) -> None:
    show(with_balances, "balances", "--snapshot-every", "4")
    ok(with_balances, "replay", "--init", "0", "--fold", "s + 1", "--snapshot-every", "5")
    other = FoldSpec(init=0, clauses=((None, "s + 1"),)).digest(1).hex()
    result = run_evlog("projection", "rm", "balances", log=with_balances)
    assert result.returncode == 0
    assert result.stderr == b"evlog: removed projection 'balances' and 3 snapshots\n"
    assert {digest for digest, _seq in listed_snapshots(with_balances)} == {other}
    assert ok(with_balances, "projection", "list") == b""
    result = run_evlog("projection", "show", "balances", log=with_balances)
    assert result.returncode == 2


def test_rm_of_a_projection_with_from_drops_its_snapshots(bank_log: str) -> None:
    ok(bank_log, "projection", "add", "late", *BALANCE_OPTIONS, "--from", "5", "--snapshot-every", "2")
    show(bank_log, "late", "--snapshot-every", "2")
    assert listed_snapshots(bank_log) != []
    ok(bank_log, "projection", "rm", "late")
    assert listed_snapshots(bank_log) == []


def test_rm_of_an_unknown_projection_fails(bank_log: str) -> None:
    result = run_evlog("projection", "rm", "nope", log=bank_log)
    assert result.returncode == 2
    assert b"nope" in result.stderr and b"Traceback" not in result.stderr


def test_a_new_projection_with_a_removed_name_starts_clean(with_balances: str) -> None:
    plant(with_balances, BALANCE_SPEC, 12, {"planted": {"balance": 1}})
    ok(with_balances, "projection", "rm", "balances")
    ok(with_balances, "projection", "add", "balances", *BALANCE_OPTIONS)
    assert show(with_balances, "balances") == balances(with_balances)
