"""Folds through ``evlog replay``: the reducer language, its output, its errors.

Every fold runs the real command in a subprocess against a small bank-and-shop
log with explicit times, and its answer is compared with the same computation
written in plain Python over the events read back with ``Log.read()`` (or the
NDJSON that ``evlog replay`` prints). Covered:

* the promised one-liners (count by type, sum with ``--init 0``, balances by
  stream up to a local time, ``s.update(d)`` by stream, ``--where`` alone);
* the language: ``s``/``state``, ``e``/``event``, ``d``; attribute access as
  key access; called attributes as methods; expression values as new state;
  ``--on`` globs; ``--by EXPR`` leaving out null keys; ``e`` as replay prints it;
* output: compact JSON when piped, ``-o msgpack``, ``--scan`` NDJSON;
* ``--fold-file``: fold-language statements (a clause like ``--fold``), and
  Python files with ``init``/``apply``/``on_<type>`` (replay only, no snapshots);
* what the compiler refuses (exit 2, pointing at the offending part), builtins
  that are not offered, runtime failures (exit 65, seq/type/stream, hint, no
  traceback), states JSON cannot hold, and option misuse.

Tests marked ``xfail(strict=True)`` pin down evlog bugs found while writing them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import run_evlog

from evlog import Log

# seq: (type, stream, data, ts, extras). Every event has an integer amount.
EVENTS: list[dict[str, Any]] = [
    {"type": "deposit", "stream": "acct-a", "data": {"amount": 100}, "ts": "2026-11-01T09:00:00Z",
     "meta": {"user": "ada"}},
    {"type": "deposit", "stream": "acct-b", "data": {"amount": 250, "currency": "EUR"}, "ts": "2026-11-01T10:00:00Z"},
    {"type": "withdraw", "stream": "acct-a", "data": {"amount": 30}, "ts": "2026-11-01T11:00:00Z", "id": "w-1"},
    {"type": "note", "data": {"amount": 0, "text": "audit"}, "ts": "2026-11-01T11:30:00Z"},
    {"type": "order.created", "stream": "order-1", "data": {"amount": 120, "customer": "c1"},
     "ts": "2026-11-01T11:59:59Z"},
    {"type": "deposit", "stream": "acct-a", "data": {"amount": 500}, "ts": "2026-11-01T12:00:00Z",
     "meta": {"user": "bob"}},
    {"type": "withdraw", "stream": "acct-b", "data": {"amount": 400, "currency": "USD"},
     "ts": "2026-11-01T12:00:00.000000001Z"},
    {"type": "order.paid", "stream": "order-1", "data": {"amount": 120, "customer": "c1"},
     "ts": "2026-11-01T13:00:00Z"},
    {"type": "order.created", "stream": "order-2", "data": {"amount": 15, "customer": "c2"},
     "ts": "2026-11-01T14:00:00Z"},
    {"type": "deposit", "stream": "acct-c", "data": {"amount": 101}, "ts": "2026-11-01T15:00:00Z",
     "meta": {"user": "ada"}},
]


@pytest.fixture
def bank_log(log_path: str) -> str:
    """A log of the ten events above, with their explicit times."""
    with Log(log_path) as log:
        summary = log.append_many(EVENTS)
    assert summary.appended == len(EVENTS)
    return log_path


def read_events(log_path: str, **filters: Any) -> list[dict[str, Any]]:
    """The events as ``evlog replay`` prints them, read through the library."""
    with Log(log_path) as log:
        return [event.to_dict() for event in log.read(**filters)]


def replayed_lines(log_path: str, *args: str) -> list[dict[str, Any]]:
    """The NDJSON lines of a plain ``evlog replay``."""
    result = run_evlog("replay", *args, log=log_path)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.splitlines()]


def fold(log_path: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run ``evlog replay ARGS`` (piped), check it succeeded quietly, and parse its JSON."""
    result = run_evlog("replay", *args, log=log_path, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    assert result.stdout.count(b"\n") == 1 and result.stdout.endswith(b"\n")
    return json.loads(result.stdout)


def failure(log_path: str, *args: str) -> tuple[int, str]:
    """Run a command expected to fail: its exit code and stderr (checked to be traceback-free)."""
    result = run_evlog(*args, log=log_path)
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr, stderr
    assert result.stdout == b""
    return result.returncode, stderr


def ns(text: str) -> int:
    """An RFC 3339 UTC time (whole seconds) as integer nanoseconds."""
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 10**9


# -- the promised one-liners ------------------------------------------------------


def test_count_by_type_matches_python(bank_log: str) -> None:
    expected: dict[str, int] = {}
    for event in read_events(bank_log):
        expected[event["type"]] = expected.get(event["type"], 0) + 1
    assert fold(bank_log, "--fold", "s[e.type] = s.get(e.type, 0) + 1") == expected


def test_sum_of_deposits_with_init_zero_matches_python(bank_log: str) -> None:
    expected = sum(event["data"]["amount"] for event in read_events(bank_log, types=["deposit"]))
    assert expected == 100 + 250 + 500 + 101
    assert fold(bank_log, "--init", "0", "--type", "deposit", "--fold", "s + d.amount") == expected


def test_balances_by_stream_until_a_local_time_match_python(bank_log: str) -> None:
    cutoff = ns("2026-11-01T12:00:00")
    expected: dict[str, dict[str, int]] = {}
    with Log(bank_log) as log:
        for event in log.read():
            if event.ts > cutoff or event.stream is None:
                continue
            state = expected.setdefault(event.stream, {"balance": 0})
            if event.type == "deposit":
                state["balance"] += event.data["amount"]
            elif event.type == "withdraw":
                state["balance"] -= event.data["amount"]
    # the deposit at exactly 12:00 counts, the withdrawal 1 ns later does not
    assert expected == {"acct-a": {"balance": 570}, "acct-b": {"balance": 250}, "order-1": {"balance": 0}}
    got = fold(
        bank_log, "--until", "2026-11-01T12:00", "--by", "stream", "--init", '{"balance": 0}',
        "--on", "deposit", "s.balance += d.amount", "--on", "withdraw", "s.balance -= d.amount",
        env={"TZ": "UTC"},
    )
    assert got == expected


def test_until_without_zone_is_local_time(bank_log: str) -> None:
    """The same cut-off read in UTC+2 ends two hours earlier (10:00Z)."""
    args = ("--until", "2026-11-01T12:00", "--init", "0", "--fold", "s + 1")
    assert fold(bank_log, *args, env={"TZ": "UTC"}) == 6
    assert fold(bank_log, *args, env={"TZ": "Etc/GMT-2"}) == 2


def test_update_by_stream_merges_data_and_leaves_out_events_without_stream(bank_log: str) -> None:
    expected: dict[str, dict[str, Any]] = {}
    for event in read_events(bank_log):
        if event["stream"] is not None:
            expected.setdefault(event["stream"], {}).update(event["data"])
    got = fold(bank_log, "--by", "stream", "--fold", "s.update(d)")
    assert got == expected
    assert list(got) == list(expected)  # keys in order of first appearance
    assert got["acct-b"] == {"amount": 400, "currency": "USD"}


def test_where_alone_filters_printed_events(bank_log: str) -> None:
    expected = [event for event in replayed_lines(bank_log) if event["data"]["amount"] > 100]
    assert [event["seq"] for event in expected] == [2, 5, 6, 7, 8, 10]
    result = run_evlog("replay", "--where", "d.amount > 100", "-o", "ndjson", log=bank_log)
    assert result.returncode == 0, result.stderr.decode()
    assert [json.loads(line) for line in result.stdout.splitlines()] == expected


def test_where_alone_is_applied_after_the_selection_options(bank_log: str) -> None:
    expected = [e for e in read_events(bank_log, from_=2, until=9, types=["deposit", "withdraw"])
                if e["data"]["amount"] > 100]
    got = replayed_lines(bank_log, "--from", "2", "--until", "9", "-t", "deposit", "-t", "withdraw",
                         "--where", "d.amount > 100")
    assert got == expected
    assert [event["seq"] for event in got] == [2, 6, 7]


def test_where_with_a_fold_filters_what_is_folded(bank_log: str) -> None:
    events = read_events(bank_log, streams=["acct-*"])
    expected = [event["seq"] for event in events if event["data"]["amount"] >= 100 and event["type"] != "withdraw"]
    got = fold(bank_log, "-s", "acct-*", "--init", "[]", "--where", 'd.amount >= 100 and e.type != "withdraw"',
               "--fold", "s + [e.seq]")
    assert got == expected == [1, 2, 6, 10]


def test_selection_options_apply_before_the_fold(bank_log: str) -> None:
    events = read_events(bank_log, from_=2, until=9, streams=["acct-a", "acct-b"])
    expected = sum(event["data"]["amount"] for event in events)
    got = fold(bank_log, "--from", "2", "--until", "9", "-s", "acct-a", "-s", "acct-b", "--init", "0",
               "--fold", "s + d.amount")
    assert got == expected == 250 + 30 + 500 + 400


def test_by_stream_with_an_unknown_stream_gives_an_empty_object(bank_log: str) -> None:
    assert fold(bank_log, "-s", "nobody", "--by", "stream", "--fold", "s.update(d)") == {}


def test_empty_selection_prints_the_initial_state(bank_log: str) -> None:
    assert fold(bank_log, "--type", "nothing", "--init", '{"n": 7}', "--fold", "s.n += 1") == {"n": 7}
    assert fold(bank_log, "--type", "nothing", "--fold", "s.n = 1") == {}


# -- the language ------------------------------------------------------------------


def test_fold_clauses_apply_in_order_to_every_event(bank_log: str) -> None:
    expected: list[int] = []
    for event in read_events(bank_log):
        expected += [event["seq"]]
        expected = [*expected[:-1], expected[-1] * 10]
    got = fold(bank_log, "--init", "[]", "--fold", "s + [e.seq]", "--fold", "s[-1] = s[-1] * 10")
    assert got == expected == [seq * 10 for seq in range(1, 11)]


def test_on_applies_only_to_matching_types_with_globs(bank_log: str) -> None:
    events = read_events(bank_log)
    expected = {
        "orders": [event["seq"] for event in events if event["type"].startswith("order.")],
        "deposits": sum(event["data"]["amount"] for event in events if event["type"] == "deposit"),
        "all": len(events),
    }
    got = fold(
        bank_log, "--init", '{"orders": [], "deposits": 0, "all": 0}',
        "--on", "order.*", "s.orders.append(e.seq)",
        "--on", "deposit", "s.deposits += d.amount",
        "--fold", "s.all += 1",
    )
    assert got == expected


def test_long_names_are_aliases_of_short_ones(bank_log: str) -> None:
    short = fold(bank_log, "--fold", "s[e.type] = s.get(e.type, 0) + d.amount")
    long = fold(bank_log, "--fold", 'state[event.type] = state.get(event.type, 0) + event.data.amount')
    subscripts = fold(bank_log, "--fold", 's[e["type"]] = s.get(e["type"], 0) + e["data"]["amount"]')
    assert short == long == subscripts


def test_attribute_access_reads_and_writes_keys_and_called_attributes_stay_methods(bank_log: str) -> None:
    got = fold(bank_log, "--init", '{"total": 0, "seen": {}}',
               "--fold", "s.total += d.amount; s.seen.update({e.type: e.stream}); s.keys_seen = sorted(s.seen.keys())")
    events = read_events(bank_log)
    seen: dict[str, Any] = {}
    for event in events:
        seen.update({event["type"]: event["stream"]})
    assert got == {"total": sum(e["data"]["amount"] for e in events), "seen": seen, "keys_seen": sorted(seen)}


def test_an_expression_value_becomes_the_state_unless_none(bank_log: str) -> None:
    # s.get(...) returns None for a missing key: the state is kept
    assert fold(bank_log, "--init", '{"a": 1}', "--fold", 's.get("missing")') == {"a": 1}
    # a value replaces the state
    assert fold(bank_log, "--init", '{"a": 1}', "--fold", 'e.seq') == len(EVENTS)
    # s.update(d) returns None and keeps the mutated state
    assert fold(bank_log, "--type", "order.*", "--fold", "s.update(d)") == {"amount": 15, "customer": "c2"}


def test_e_is_the_event_as_replay_prints_it(bank_log: str) -> None:
    assert fold(bank_log, "--init", "[]", "--fold", "s.append(e)") == replayed_lines(bank_log)


def test_event_fields_read_one_by_one_match_replay(bank_log: str) -> None:
    got = fold(bank_log, "--init", "[]",
               "--fold", "s.append([e.seq, e.ts, e.type, e.stream, e.version, e.id, e.data, e.meta])")
    expected = [[event[key] for key in ("seq", "ts", "type", "stream", "version", "id", "data", "meta")]
                for event in replayed_lines(bank_log)]
    assert got == expected


def test_e_meta_is_an_object_for_events_without_meta(bank_log: str) -> None:
    expected = [event["seq"] for event in replayed_lines(bank_log) if event["meta"].get("user") == "ada"]
    got = fold(bank_log, "--init", "[]", "--where", 'e.meta.get("user") == "ada"', "--fold", "s.append(e.seq)")
    assert got == expected == [1, 10]
    got = replayed_lines(bank_log, "--where", 'e.meta.get("user") == "ada"')
    assert [event["seq"] for event in got] == expected


@pytest.mark.parametrize("args", [
    ("--init", "[]", "--where", 'e.meta.get("user") == "ada"', "--fold", "s.append(e)"),
    ("--where", 'e.get("type") and e.meta.get("user") == "ada"'),
], ids=["fold", "where alone"])
def test_e_meta_is_an_object_even_when_the_whole_event_is_used(bank_log: str, args: tuple[str, ...]) -> None:
    result = run_evlog("replay", *args, log=bank_log)
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    got = lines[0] if "--fold" in args else lines
    assert [event["seq"] for event in got] == [1, 10]


def test_by_expression_keys_states_and_leaves_out_null_keys(bank_log: str) -> None:
    expected: dict[str, int] = {}
    for event in read_events(bank_log):
        customer = event["data"].get("customer")
        if customer is not None:
            expected[customer] = expected.get(customer, 0) + event["data"]["amount"]
    got = fold(bank_log, "--by", 'd.get("customer")', "--init", "0", "--fold", "s + d.amount")
    assert got == expected == {"c1": 240, "c2": 15}


def test_by_with_integer_keys_prints_them_as_json_object_keys(bank_log: str) -> None:
    expected: dict[str, int] = {}
    for event in read_events(bank_log):
        key = str(event["data"]["amount"] // 100)
        expected[key] = expected.get(key, 0) + 1
    assert fold(bank_log, "--by", "d.amount // 100", "--init", "0", "--fold", "s + 1") == expected


def test_comprehensions_lambdas_and_pure_builtins_work(bank_log: str) -> None:
    got = fold(bank_log, "--init", "[]", "--fold",
               "s.append(sum(abs(x) for x in [d.amount, -1])); s = sorted(s, key=lambda v: -v)[:3]")
    amounts = sorted((event["data"]["amount"] + 1 for event in read_events(bank_log)), reverse=True)[:3]
    assert got == amounts


def test_fold_and_on_clauses_run_in_command_line_order(bank_log: str) -> None:
    # last word per event: the --fold written after the --on must win
    got = fold(bank_log, "--on", "*", 's.last = "on"', "--fold", 's.last = "fold"')
    assert got == {"last": "fold"}


# -- output ---------------------------------------------------------------------------


def test_piped_output_is_compact_json(bank_log: str) -> None:
    result = run_evlog("replay", "--by", "stream", "--init", '{"n": 0}', "--fold", "s.n += 1", log=bank_log)
    assert result.returncode == 0
    assert result.stdout == b'{"acct-a":{"n":3},"acct-b":{"n":2},"order-1":{"n":2},"order-2":{"n":1},' \
                            b'"acct-c":{"n":1}}\n'


def test_msgpack_output_decodes_to_the_same_state(bank_log: str) -> None:
    args = ("--fold", "s[e.type] = s.get(e.type, 0) + d.amount")
    result = run_evlog("replay", *args, "-o", "msgpack", log=bank_log)
    assert result.returncode == 0, result.stderr.decode()
    assert msgpack.unpackb(result.stdout) == fold(bank_log, *args)


def test_scan_prints_the_state_after_every_selected_event(bank_log: str) -> None:
    result = run_evlog("replay", "--scan", "--type", "deposit", "--init", "0", "--fold", "s + d.amount", log=bank_log)
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    expected, total = [], 0
    for event in read_events(bank_log, types=["deposit"]):
        total += event["data"]["amount"]
        expected.append({"seq": event["seq"], "ts": event["ts"], "state": total})
    assert lines == expected


def test_scan_with_by_adds_the_key(bank_log: str) -> None:
    result = run_evlog("replay", "--scan", "--by", "stream", "--init", "0", "--fold", "s + 1", log=bank_log)
    assert result.returncode == 0, result.stderr.decode()
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    expected: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for event in read_events(bank_log):
        if event["stream"] is None:
            continue
        counts[event["stream"]] = counts.get(event["stream"], 0) + 1
        expected.append({"seq": event["seq"], "ts": event["ts"], "key": event["stream"],
                         "state": counts[event["stream"]]})
    assert lines == expected


def test_scan_with_where_prints_only_events_that_pass(bank_log: str) -> None:
    result = run_evlog("replay", "--scan", "--where", "d.amount > 100", "--init", "0", "--fold", "s + 1",
                       log=bank_log)
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == [2, 5, 6, 7, 8, 10]


def test_a_state_set_to_none_prints_null(bank_log: str) -> None:
    scan = run_evlog("replay", "--scan", "--init", "5", "--fold", "s = None", log=bank_log)
    assert json.loads(scan.stdout.splitlines()[-1])["state"] is None
    assert fold(bank_log, "--init", "5", "--fold", "s = None") is None


# -- --fold-file ----------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_fold_file_apply_with_init(bank_log: str, tmp_path: Path) -> None:
    reducers = write(tmp_path, "reducers.py", (
        "def init():\n"
        "    return {'count': {}, 'total': 0}\n"
        "\n"
        "def apply(state, event):\n"
        "    state['count'][event['type']] = state['count'].get(event['type'], 0) + 1\n"
        "    state['total'] += event['data']['amount']\n"
    ))
    events = read_events(bank_log)
    count: dict[str, int] = {}
    for event in events:
        count[event["type"]] = count.get(event["type"], 0) + 1
    expected = {"count": count, "total": sum(event["data"]["amount"] for event in events)}
    assert fold(bank_log, "--fold-file", reducers) == expected


def test_fold_file_on_type_handlers_map_dotted_types(bank_log: str, tmp_path: Path) -> None:
    reducers = write(tmp_path, "reducers.py", (
        "def init():\n"
        "    return 0\n"
        "\n"
        "def on_deposit(state, event):\n"
        "    return state + event['data']['amount']\n"
        "\n"
        "def on_withdraw(state, event):\n"
        "    return state - event['data']['amount']\n"
        "\n"
        "def on_order_created(state, event):\n"
        "    return state + 1000\n"
    ))
    expected = 0
    for event in read_events(bank_log):
        if event["type"] == "deposit":
            expected += event["data"]["amount"]
        elif event["type"] == "withdraw":
            expected -= event["data"]["amount"]
        elif event["type"] == "order.created":
            expected += 1000
    # note, order.paid: no handler and no apply(), so the state is unchanged
    assert fold(bank_log, "--fold-file", reducers) == expected


def test_fold_file_apply_is_the_fallback_for_types_without_handler(bank_log: str, tmp_path: Path) -> None:
    reducers = write(tmp_path, "reducers.py", (
        "def init():\n"
        "    return []\n"
        "def on_order_paid(state, event):\n"
        "    state.append('paid')\n"
        "def apply(state, event):\n"
        "    state.append(event['type'])\n"
    ))
    expected = ["paid" if event["type"] == "order.paid" else event["type"] for event in read_events(bank_log)]
    assert fold(bank_log, "--fold-file", reducers) == expected


def test_fold_file_receives_the_event_as_replay_prints_it(bank_log: str, tmp_path: Path) -> None:
    reducers = write(tmp_path, "reducers.py", "def init():\n    return []\ndef apply(state, event):\n"
                                              "    state.append(event)\n")
    assert fold(bank_log, "--fold-file", reducers) == replayed_lines(bank_log)


def test_fold_file_with_by_stream_and_filters(bank_log: str, tmp_path: Path) -> None:
    reducers = write(tmp_path, "reducers.py", "def apply(state, event):\n"
                                              "    state['n'] = state.get('n', 0) + event['data']['amount']\n")
    expected: dict[str, dict[str, int]] = {}
    for event in read_events(bank_log, types=["deposit"]):
        expected.setdefault(event["stream"], {"n": 0})["n"] += event["data"]["amount"]
    assert fold(bank_log, "--fold-file", reducers, "--by", "stream", "--type", "deposit") == expected


def test_fold_file_of_python_without_handlers_is_refused(bank_log: str, tmp_path: Path) -> None:
    reducers = write(tmp_path, "reducers.py", "def helper(x):\n    return x\n")
    code, stderr = failure(bank_log, "replay", "--fold-file", reducers)
    assert code == 2
    assert "apply" in stderr and "on_" in stderr


def test_fold_file_of_statements_is_one_clause_run_for_every_event(bank_log: str, tmp_path: Path) -> None:
    block = write(tmp_path, "balances.fold", (
        "if e.type == 'deposit':\n"
        "    s.balance += d.amount\n"
        "elif e.type == 'withdraw':\n"
        "    s.balance -= d.amount\n"
        "for key in d:\n"
        "    s.keys_seen[key] = s.keys_seen.get(key, 0) + 1\n"
    ))
    got = fold(bank_log, "--by", "stream", "--init", '{"balance": 0, "keys_seen": {}}', "--fold-file", block)
    expected: dict[str, Any] = {}
    for event in read_events(bank_log):
        if event["stream"] is None:
            continue
        state = expected.setdefault(event["stream"], {"balance": 0, "keys_seen": {}})
        if event["type"] in ("deposit", "withdraw"):
            state["balance"] += event["data"]["amount"] * (1 if event["type"] == "deposit" else -1)
        for key in event["data"]:
            state["keys_seen"][key] = state["keys_seen"].get(key, 0) + 1
    assert got == expected


def test_fold_file_of_statements_is_checked_and_errors_name_the_file_and_line(bank_log: str, tmp_path: Path) -> None:
    block = write(tmp_path, "bad.fold", "s.n = 1\nimport os\n")
    code, stderr = failure(bank_log, "replay", "--fold-file", block)
    assert code == 2
    assert stderr.startswith(f"evlog: --fold-file {block}, line 2: 'import' is not allowed")


def test_fold_file_of_statements_can_be_a_projection(bank_log: str, tmp_path: Path) -> None:
    block = write(tmp_path, "count.fold", "s[e.type] = s.get(e.type, 0) + 1\n")
    assert run_evlog("projection", "add", "counts", "--fold-file", block, log=bank_log).returncode == 0
    listed = run_evlog("projection", "list", "-o", "ndjson", log=bank_log)
    definition = json.loads(listed.stdout)["definition"]
    assert definition["clauses"] == [[None, "s[e.type] = s.get(e.type, 0) + 1\n"]]
    assert definition["fold_file"] is None
    shown = run_evlog("projection", "show", "counts", "-o", "json", log=bank_log)
    assert json.loads(shown.stdout) == fold(bank_log, "--fold", "s[e.type] = s.get(e.type, 0) + 1")


@pytest.mark.parametrize("command", [("projection", "add", "p"), ("snapshot", "save")])
def test_a_python_fold_file_is_never_stored_in_the_log(bank_log: str, tmp_path: Path, command: tuple[str, ...]) -> None:
    reducers = write(tmp_path, "reducers.py", "def apply(state, event):\n    return state\n")
    code, stderr = failure(bank_log, *command, "--fold-file", reducers)
    assert code == 2
    assert stderr.count("\n") == 1 and "Python" in stderr and "evlog replay --fold-file" in stderr
    assert json.loads(run_evlog("projection", "list", "-o", "json", log=bank_log).stdout or b"[]") == []
    assert run_evlog("snapshot", "list", "-o", "ndjson", log=bank_log).stdout == b""


def test_a_python_fold_file_runs_without_snapshots(bank_log: str, tmp_path: Path) -> None:
    reducers = write(tmp_path, "reducers.py", "def init():\n    return 0\ndef apply(state, event):\n"
                                              "    return state + 1\n")
    code, stderr = failure(bank_log, "replay", "--fold-file", reducers, "--snapshot-every", "2")
    assert code == 2 and "--snapshot-every" in stderr and "without snapshots" in stderr
    assert fold(bank_log, "--fold-file", reducers) == len(EVENTS)
    assert run_evlog("snapshot", "list", "-o", "ndjson", log=bank_log).stdout == b""


def test_fold_file_with_a_syntax_error_is_refused(bank_log: str, tmp_path: Path) -> None:
    reducers = write(tmp_path, "reducers.py", "def apply(state, event)\n    return state\n")
    code, stderr = failure(bank_log, "replay", "--fold-file", reducers)
    assert code == 2
    assert stderr.startswith("evlog: --fold-file") and "line 1" in stderr


def test_fold_file_that_does_not_exist_is_a_usage_error(bank_log: str, tmp_path: Path) -> None:
    code, stderr = failure(bank_log, "replay", "--fold-file", str(tmp_path / "missing.py"))
    assert code == 2
    assert "missing.py" in stderr


def test_fold_file_and_fold_are_alternatives(bank_log: str, tmp_path: Path) -> None:
    reducers = write(tmp_path, "reducers.py", "def apply(state, event):\n    return state\n")
    code, stderr = failure(bank_log, "replay", "--fold-file", reducers, "--fold", "s")
    assert code == 2
    assert "--fold-file" in stderr


def test_fold_file_runtime_failure_names_the_event(bank_log: str, tmp_path: Path) -> None:
    reducers = write(tmp_path, "reducers.py", "def on_withdraw(state, event):\n    return state['balance'] - 1\n")
    code, stderr = failure(bank_log, "replay", "--fold-file", reducers)
    assert code == 65
    assert "seq 3" in stderr and "'withdraw'" in stderr and "'acct-a'" in stderr and "balance" in stderr


@pytest.mark.parametrize("source", [
    "raise RuntimeError('boom')\ndef apply(state, event):\n    return state\n",
    "def init():\n    return 1 / 0\ndef apply(state, event):\n    return state\n",
])
def test_fold_file_failing_at_load_or_init_is_reported_without_traceback(
    bank_log: str, tmp_path: Path, source: str
) -> None:
    reducers = write(tmp_path, "reducers.py", source)
    code, stderr = failure(bank_log, "replay", "--fold-file", reducers)
    assert code == 65
    assert stderr.startswith("evlog: ") and "--fold-file" in stderr
    assert "RuntimeError: boom" in stderr or "ZeroDivisionError" in stderr


# -- what the compiler refuses --------------------------------------------------------

REFUSED: list[tuple[str, str, str]] = [
    # (clause, word the message must name, text the caret line must point at)
    ("import os", "import", "import os"),
    ("from os import path", "import", "from os"),
    ("s.x = d.__class__", "__class__", "d.__class__"),
    ("s.x = __import__('os')", "__import__", "__import__"),
    ("s.__setitem__('a', 1)", "__setitem__", "s.__setitem__"),
    ("def f(): pass", "def", "def f"),
    ("class A: pass", "class", "class A"),
    ("global x", "global", "global x"),
    ("nonlocal x", "nonlocal", "nonlocal x"),
    ("s = [(yield 1)]", "yield", "yield 1"),
    ("s.x = '{0.x}'.format(d)", "format", "'{0.x}'.format"),
    ("s = (lambda: (yield))()", "yield", "yield"),
    ("await s", "await", "await s"),
]


@pytest.mark.parametrize(("clause", "word", "pointed"), REFUSED, ids=[item[0] for item in REFUSED])
def test_compiler_refuses_with_a_message_pointing_at_the_offence(
    bank_log: str, clause: str, word: str, pointed: str
) -> None:
    code, stderr = failure(bank_log, "replay", "--fold", clause)
    assert code == 2
    first, *rest = stderr.splitlines()
    assert first.startswith("evlog: --fold ") and word in first and "not allowed" in first
    # the next lines repeat the clause and put a caret under the offending part
    echoed, caret = rest[0], rest[1]
    assert echoed.strip() == clause
    assert caret.strip() == "^"
    start = echoed.index(pointed)
    assert start <= caret.index("^") < start + len(pointed), (echoed, caret)


@pytest.mark.parametrize("option", [("--where",), ("--by",), ("--on", "deposit")])
def test_compiler_checks_every_option_that_takes_code(bank_log: str, option: tuple[str, ...]) -> None:
    args = ["replay", *option, "__import__('os')"]
    if option[0] != "--on":
        args += ["--fold", "s"] if option[0] == "--by" else []
    code, stderr = failure(bank_log, *args)
    assert code == 2
    assert f"evlog: {option[0]}" in stderr and "__import__" in stderr


def test_the_caret_points_at_the_offence_despite_leading_spaces(bank_log: str) -> None:
    code, stderr = failure(bank_log, "replay", "--fold", "  s.n = 1; import os")
    assert code == 2
    echoed, caret = stderr.splitlines()[1:3]
    assert echoed[caret.index("^"):].startswith("import os")


def test_a_syntax_error_is_a_usage_error(bank_log: str) -> None:
    code, stderr = failure(bank_log, "replay", "--fold", "s +")
    assert code == 2
    assert stderr.startswith("evlog: --fold 's +'")


UNOFFERED = [
    's.x = open("{marker}", "w")',
    'eval("open(\'{marker}\', \'w\')")',
    'exec("open(\'{marker}\', \'w\')")',
    's.x = __import__("os").getcwd()',
    "s.x = time()",
    "s.x = random()",
    "print(s)",
    's.x = getattr(d, "amount")',
    "s.x = globals()",
    "s.x = vars()",
    "s.x = type(d)",
    "s.x = hash(e.type)",
    "s.x = id(s)",
    "s.x = input()",
    "s.x = compile('1', 'x', 'eval')",
]


@pytest.mark.parametrize("clause", UNOFFERED)
def test_impure_builtins_are_not_offered(bank_log: str, tmp_path: Path, clause: str) -> None:
    marker = tmp_path / "touched"
    code, stderr = failure(bank_log, "replay", "--fold", clause.format(marker=marker))
    assert code in (2, 65)
    assert stderr.startswith("evlog: ")
    assert not marker.exists()


@pytest.mark.parametrize("clause", ["s = list(set(s) | {e.type})", "s = [*{x for x in s + [e.type]}]",
                                    "s = list(frozenset(s + [e.type]))"])
def test_sets_are_not_offered(bank_log: str, clause: str) -> None:
    """Their order of iteration over strings depends on the process's hash seed."""
    code, stderr = failure(bank_log, "replay", "--init", "[]", "--fold", clause)
    assert code in (2, 65)
    assert stderr.startswith("evlog: ")


@pytest.mark.parametrize("code", [
    "list(dict.fromkeys(s).keys() | [e.type])",
    "list({t: 1 for t in s}.keys() ^ {e.type: 1}.keys())",
    "[k for k in dict.fromkeys(s + [e.type]).keys() - ['x']]",
    "[list(i) for i in {e.type: 1}.items() | dict.fromkeys(['a', 'b'], 1).items()]",
])
def test_folds_are_deterministic_across_processes(bank_log: str, code: str) -> None:
    # Set operations on keys and items would make sets, whose order depends on PYTHONHASHSEED.
    args = ("--init", "[]", "--fold", code)
    answers = {json.dumps(fold(bank_log, *args, env={"PYTHONHASHSEED": str(seed)})) for seed in range(1, 5)}
    assert len(answers) == 1


def test_set_operations_on_keys_give_lists_in_operand_order(bank_log: str) -> None:
    union = fold(bank_log, "--init", "[]", "--fold", "list(dict.fromkeys(s).keys() | [e.type])")
    assert union == list(dict.fromkeys(event["type"] for event in read_events(bank_log)))
    code = "[d.keys() & ['z', 'amount'], {'a': 1, 'b': 2}.keys() - ['a'], 'amount' in d.keys()]"
    assert fold(bank_log, "--until", "1", "--fold", code) == [["amount"], ["b"], True]


# -- runtime failures ----------------------------------------------------------------


def test_a_missing_data_key_lists_the_event_keys_and_suggests_the_closest(bank_log: str) -> None:
    code, stderr = failure(bank_log, "replay", "--init", "0", "--fold", "s + d.amout")
    assert code == 65
    assert stderr.count("\n") == 1
    assert "seq 1" in stderr and "the event has no key 'amout' (its keys: 'amount')" in stderr
    assert "did you mean 'amount'?" in stderr and "--init" not in stderr


def test_an_unknown_name_suggests_the_closest(bank_log: str) -> None:
    code, stderr = failure(bank_log, "replay", "--by", "stram", "--fold", "s.n = 1")
    assert code == 2
    assert stderr.splitlines()[0] == "evlog: --by 'stram': unknown name 'stram'; did you mean 'stream'?"
    code, stderr = failure(bank_log, "replay", "--fold", "s.n = lenn(d)")
    assert code == 2 and "unknown name 'lenn'; did you mean 'len'?" in stderr


def test_on_a_type_the_log_never_saw_warns_with_the_closest(bank_log: str) -> None:
    result = run_evlog("replay", "--on", "order.creatd", "s.n = 1", log=bank_log)
    assert result.returncode == 0
    assert result.stdout == b"{}\n"
    warning = result.stderr.decode()
    assert warning.startswith("evlog: warning: --on 'order.creatd' matches no type in this log")
    assert "'order.created'" in warning and warning.count("\n") == 1
    quiet = run_evlog("replay", "--on", "order.*", "s.n = 1", "--on", "deposit", "s.m = 1", log=bank_log)
    assert quiet.returncode == 0 and quiet.stderr == b""


@pytest.mark.parametrize(
    "args",
    [("replay", "-f"), ("replay", "-f", "-n", "3"), ("replay", "--init", "0", "-f"), ("replay", "-f", "s + 1"),
     ("projection", "add", "p", "-f", "s + 1")],
)
def test_f_is_not_a_fold_option(bank_log: str, args: tuple[str, ...]) -> None:
    code, stderr = failure(bank_log, *args)
    assert code == 2
    assert stderr == f"evlog: {args[0]} has no -f: -f is --follow in evlog tail; the fold option is --fold\n"


def test_missing_key_names_the_event_and_hints_at_init(bank_log: str) -> None:
    code, stderr = failure(bank_log, "replay", "--by", "stream", "--on", "deposit", "s.balance += d.amount",
                           "--on", "withdraw", "s.balance -= d.amount")
    assert code == 65
    assert stderr.count("\n") == 1 and stderr.startswith("evlog: ")
    assert "seq 1" in stderr and "'deposit'" in stderr and "'acct-a'" in stderr
    assert "KeyError 'balance'" in stderr
    assert "--init" in stderr and '{"balance": 0}' in stderr


def test_failure_on_an_event_without_stream_names_seq_and_type(bank_log: str) -> None:
    code, stderr = failure(bank_log, "replay", "--init", "0", "--fold", "s + d.amount // len(d.get('text', ''))")
    assert code == 65
    assert "seq 1" in stderr and "'deposit'" in stderr and "ZeroDivisionError" in stderr
    code, stderr = failure(bank_log, "replay", "--type", "note", "--init", "0", "--fold", "s + d.text")
    assert code == 65
    assert "seq 4" in stderr and "'note'" in stderr and "TypeError" in stderr


@pytest.mark.parametrize(("option", "code_text"), [
    ("--where", "d.customer == 'c1'"),
    ("--by", "d.customer"),
])
def test_failures_in_where_and_by_name_the_event(bank_log: str, option: str, code_text: str) -> None:
    code, stderr = failure(bank_log, "replay", option, code_text, "--init", "0", "--fold", "s + 1")
    assert code == 65
    assert "seq 1" in stderr and "'deposit'" in stderr and "customer" in stderr


def test_failure_in_where_alone_names_the_event(bank_log: str) -> None:
    code, stderr = failure(bank_log, "replay", "--where", "d.customer == 'c1'")
    assert code == 65
    assert "seq 1" in stderr and "customer" in stderr


def test_an_unhashable_by_key_is_a_clean_failure(bank_log: str) -> None:
    code, stderr = failure(bank_log, "replay", "--by", "d", "--fold", "s.n = 1")
    assert code == 65
    assert "seq 1" in stderr and "unhashable" in stderr


def test_a_bare_key_error_is_reported_cleanly(bank_log: str) -> None:
    code, stderr = failure(bank_log, "replay", "--fold", "raise KeyError")
    assert code == 65
    assert "seq 1" in stderr


def test_running_out_of_memory_is_said_in_words(bank_log: str) -> None:
    # A list of 10**13 items is refused at once (far beyond any address space): a MemoryError with no text.
    code, stderr = failure(bank_log, "replay", "--init", "0", "--fold", "len([0] * 10**13)")
    assert code == 65
    assert "failed at seq 1 (type " in stderr and "out of memory; hint: " in stderr
    assert "MemoryError: \n" not in stderr


def test_debug_shows_the_traceback(bank_log: str) -> None:
    result = run_evlog("replay", "--debug", "--init", "0", "--fold", "s + d.text", log=bank_log)
    assert result.returncode != 0
    assert "Traceback" in result.stderr.decode()


@pytest.mark.parametrize("clause", ["s.keys = map(abs, [1])", "s = d.keys()", "s.x = lambda: 1"])
def test_a_state_json_cannot_hold_is_a_clear_error(bank_log: str, clause: str) -> None:
    """Values JSON cannot hold still arise from builtins and views."""
    code, stderr = failure(bank_log, "replay", "--fold", clause)
    assert code == 65
    assert "cannot be written as JSON" in stderr


def test_a_set_state_is_a_clear_error_with_msgpack_and_scan(bank_log: str) -> None:
    for extra in (("-o", "msgpack"), ("--scan",)):
        result = run_evlog("replay", *extra, "--fold", "s = d.values()", log=bank_log)
        assert result.returncode == 65, result.stderr.decode()
        assert "Traceback" not in result.stderr.decode()
        assert "cannot be written as JSON" in result.stderr.decode()


# -- option misuse ------------------------------------------------------------------


USAGE_ERRORS: list[tuple[tuple[str, ...], str]] = [
    (("--init", "0"), "--init"),
    (("--by", "stream"), "--by"),
    (("--init", "{oops", "--fold", "s"), "--init"),
    (("--scan",), "--scan"),
    (("--snapshot-every", "2"), "--snapshot-every"),
    (("--fold", "s", "--limit", "1"), "--limit"),
    (("--fold", "s", "--template", "{seq}"), "--template"),
]


@pytest.mark.parametrize(("args", "named"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_option_misuse_is_a_usage_error(bank_log: str, args: tuple[str, ...], named: str) -> None:
    code, stderr = failure(bank_log, "replay", *args)
    assert code == 2
    assert named in stderr


def test_on_needs_a_type_and_code(bank_log: str) -> None:
    result = run_evlog("replay", "--log", bank_log, "--on", "deposit")
    assert result.returncode == 2
    assert result.stderr.decode() == "evlog: --on 'deposit' needs two values: --on TYPE CODE\n"


def test_states_of_different_keys_never_share_the_initial_value(bank_log: str) -> None:
    got = fold(bank_log, "--by", "stream", "--init", '{"seqs": [], "nested": {"n": 0}}',
               "--fold", "s.seqs.append(e.seq); s.nested.n += 1")
    expected: dict[str, Any] = {}
    for event in read_events(bank_log):
        if event["stream"] is not None:
            state = expected.setdefault(event["stream"], {"seqs": [], "nested": {"n": 0}})
            state["seqs"].append(event["seq"])
            state["nested"]["n"] += 1
    assert got == expected


def test_folding_a_missing_log_fails_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.lmdb"
    result = run_evlog("replay", "--init", "0", "--fold", "s + 1", log=str(missing))
    assert result.returncode == 66
    assert not missing.exists()


def test_compile_errors_are_reported_before_the_log_is_opened(tmp_path: Path) -> None:
    missing = tmp_path / "nope.lmdb"
    result = run_evlog("replay", "--fold", "import os", log=str(missing))
    assert result.returncode == 2


# -- the library ----------------------------------------------------------------------


def test_library_fold_matches_the_command(bank_log: str) -> None:
    from evlog.fold import FoldSpec
    from evlog.runner import run_fold

    spec = FoldSpec(init={"balance": 0}, by="stream",
                    clauses=(("deposit", "s.balance += d.amount"), ("withdraw", "s.balance -= d.amount")))
    with Log(bank_log) as log:
        result, steps = run_fold(log, spec, until=7, use_snapshots=False)
    assert steps is None
    assert result.snapshot_seq is None and result.folded_from == 1 and result.last == 7
    command = fold(bank_log, "--until", "7", "--by", "stream", "--init", '{"balance": 0}',
                   "--on", "deposit", "s.balance += d.amount", "--on", "withdraw", "s.balance -= d.amount")
    assert result.value(by=True) == command


def test_library_scan_yields_every_step(bank_log: str) -> None:
    from evlog.fold import FoldSpec
    from evlog.runner import run_fold

    spec = FoldSpec(init=0, clauses=((None, "s + d.amount"),))
    with Log(bank_log) as log:
        result, steps = run_fold(log, spec, scan_mode=True)
        assert steps is not None
        seen = [(seq, state) for seq, _ts, _key, state in steps]
    running: list[tuple[int, int]] = []
    total = 0
    for event in read_events(bank_log):
        total += event["data"]["amount"]
        running.append((event["seq"], total))
    assert seen == running
    assert result.value(by=False) == total


def test_spec_digest_changes_with_every_part_of_the_definition() -> None:
    from evlog.fold import FoldSpec

    base = FoldSpec(init={}, clauses=((None, "s.n = 1"),))
    variants: list[Callable[[], FoldSpec]] = [
        lambda: FoldSpec(init={"a": 0}, clauses=base.clauses),
        lambda: FoldSpec(clauses=((None, "s.n = 2"),)),
        lambda: FoldSpec(clauses=(("deposit", "s.n = 1"),)),
        lambda: FoldSpec(clauses=((None, "s.n = 1"), (None, "s.n = 1"))),
        lambda: FoldSpec(clauses=base.clauses, by="stream"),
        lambda: FoldSpec(clauses=base.clauses, where="True"),
        lambda: FoldSpec(clauses=base.clauses, streams=("a",)),
        lambda: FoldSpec(clauses=base.clauses, types=("deposit",)),
        lambda: FoldSpec(fold_file="def apply(s, e):\n    return s\n"),
    ]
    digests = {base.digest(), base.digest(first_seq=2), *(make().digest() for make in variants)}
    assert len(digests) == len(variants) + 2
    assert FoldSpec(init={}, clauses=((None, "s.n = 1"),)).digest() == base.digest()


def test_clauses_for_plain_and_glob_types_apply_in_order(log_path: str) -> None:
    # Clauses for different plain type names are compiled as one if/elif chain; a
    # repeated name or a glob starts a new test, so every matching clause still runs,
    # in command-line order.
    with Log(log_path) as log:
        log.append_many([{"type": name} for name in ("deposit", "withdraw", "fee", "deposit")])
    clauses = [("deposit", "s.append('d1')"), ("withdraw", "s.append('w1')"), ("deposit", "s.append('d2')"),
               ("w*", "s.append('w-glob')"), ("fee", "s.append('f')"), ("withdraw", "s.append('w2')")]
    args = [part for pattern, code in clauses for part in ("--on", pattern, code)]
    expected: list[str] = []
    for event_type in ("deposit", "withdraw", "fee", "deposit"):
        expected += [code[10:-2] for pattern, code in clauses
                     if pattern == event_type or (pattern == "w*" and event_type.startswith("w"))]
    assert fold(log_path, "--init", "[]", *args) == expected
