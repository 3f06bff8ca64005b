"""Folds written to escape: each is refused, or runs without reaching anything outside its data.

A stored projection is code from whoever wrote the log, run by whoever reads
it; so is a ``--fold`` pasted from somewhere. Every clause here was written to
reach something a fold must not: the generated loop's own variables, the
attributes of builtins, types, functions, generators and exceptions, module
globals through ``str.format``. Through the real command each one is either
refused with a one-line message naming the offence (exit 2, at compile time
or when a call is attempted at run time), or runs and fails or answers
without having touched anything but its data. A marker file proves that no
clause wrote anywhere, and a hypothesis test generates clauses from the
grammar and watches every C call the fold makes.

A projection record written straight into a log (as an attacker would, with
lmdb and msgpack) is refused on ``projection show`` and
``replay --projection`` the same way.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest
from conftest import run_evlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evlog import Log
from evlog.errors import UsageError
from evlog.fold import FoldError, FoldSpec
from evlog.foldcalls import METHODS, SAFE_BUILTINS
from evlog.runner import run_fold

EVENTS: list[dict[str, Any]] = [
    {"type": "deposit", "stream": "acct-a", "data": {"amount": 100, "tags": ["x"]}, "meta": {"user": "ada"}},
    {"type": "withdraw", "stream": "acct-a", "data": {"amount": 30, "tags": []}},
    {"type": "note", "data": {"amount": 0, "text": "audit"}},
]


@pytest.fixture
def small_log(log_path: str) -> str:
    with Log(log_path) as log:
        log.append_many(EVENTS)
    return log_path


def outcome(log_path: str, *args: str) -> tuple[int, str, bytes]:
    """Exit code, stderr and stdout of ``evlog ARGS``, checked to be free of tracebacks."""
    result = run_evlog(*args, log=log_path)
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr, stderr
    return result.returncode, stderr, result.stdout


def refused(log_path: str, clause: str, *extra: str) -> str:
    """The one-line message of a clause refused with exit 2 (at compile time or when its call runs)."""
    code, stderr, stdout = outcome(log_path, "replay", *extra, "--fold", clause)
    assert code == 2, (clause, stderr)
    assert stdout == b""
    first = stderr.splitlines()[0]
    assert first.startswith("evlog: ")
    return first


def compile_refused(clause: str) -> str:
    """The message of a clause the compiler refuses, through the library (for the larger matrices)."""
    from evlog.fold import CompiledFold

    with pytest.raises(UsageError) as refusal:
        CompiledFold(FoldSpec(clauses=((None, clause),)))
    assert refusal.value.exit_code == 2
    return str(refusal.value)


# -- refused at compile time: every binder, every attribute path --------------------

LOOP_VARIABLES = ["_states", "_init", "_fail", "_unpack", "_snapshot", "_e_type", "_v", "_x", "_view",
                  "_m_get", "_type", "__builtins__"]

BINDERS = [
    "{name} = 1",
    "{name} += 1",
    "for {name} in [1]: pass",
    "s.x = [1 for {name} in [1]]",
    "s.x = {{1: 2 for {name} in [1]}}",
    "s.x = list(1 for {name} in [1])",
    "s.x = ({name} := 1)",
    "s.x = [({name} := 1) for y in [1]]",
    "s.x = (lambda {name}: 1)(2)",
    "s.x = (lambda {name}=1: 1)()",
    "s.x = (lambda *{name}: 1)()",
    "s.x = (lambda **{name}: 1)()",
    "s.x = (lambda *, {name}=1: 1)()",
    "try:\n    1 / 0\nexcept ZeroDivisionError as {name}:\n    pass",
    "match d:\n    case {name}:\n        pass",
    "match d:\n    case [*{name}]:\n        pass",
    "match d:\n    case {{**{name}}}:\n        pass",
    "match d:\n    case {{'amount': 1 as {name}}}:\n        pass",
    "a, *{name} = [1, 2]",
    "[a, {name}] = [1, 2]",
    "del {name}",
]


@pytest.mark.parametrize("binder", BINDERS)
@pytest.mark.parametrize("name", ["_states", "_fail"])
def test_no_binder_reaches_the_loop_variables(small_log: str, binder: str, name: str) -> None:
    message = refused(small_log, binder.format(name=name))
    assert repr(name) in message and "not allowed" in message


@pytest.mark.parametrize("name", LOOP_VARIABLES)
def test_no_loop_variable_is_readable_or_writable(small_log: str, name: str) -> None:
    assert repr(name) in refused(small_log, f"s.x = {name}")
    assert repr(name) in refused(small_log, f"s.x = [{name} for {name} in [1]]")


ASSIGNMENTS = ("{name} =", "{name} +=", "a, *{name} =", "[a, {name}] =")


@pytest.mark.parametrize("binder", [b for b in BINDERS if not b.startswith(("del", *ASSIGNMENTS))])
@pytest.mark.parametrize("name", ["s", "d", "e", "state"])
def test_fold_names_are_rebound_only_by_plain_assignment(binder: str, name: str) -> None:
    assert "not allowed" in compile_refused(binder.format(name=name))


@pytest.mark.parametrize("binder", BINDERS)
@pytest.mark.parametrize("name", ["len", "dict", "KeyError"])
def test_builtins_are_never_rebound(binder: str, name: str) -> None:
    assert f"rebinding the builtin {name!r}" in compile_refused(binder.format(name=name))


def test_fold_names_and_builtins_through_the_command(small_log: str) -> None:
    assert "binding 's' here" in refused(small_log, "s.x = [1 for s in [1]]")
    assert "binding 'd' here" in refused(small_log, "try:\n    1 / 0\nexcept KeyError as d:\n    pass")
    assert "rebinding the builtin 'len'" in refused(small_log, "s.x = (lambda len=1: len)()")


def test_s_is_never_deleted(small_log: str) -> None:
    assert "'s'" in refused(small_log, "del s")


REFUSED_CLAUSES = {
    "match class pattern": "match len:\n    case o(__self__=b):\n        s.x = 1",
    "match class pattern on a JSON type": "match d:\n    case dict(amount=a):\n        s.a = a",
    "match dotted value": "match d:\n    case d.amount:\n        pass",
    "match dotted mapping key": "match d:\n    case {d.amount: 1}:\n        pass",
    "bare except": "try:\n    1 / 0\nexcept:\n    pass",
    "except of a non-exception": "try:\n    1 / 0\nexcept len:\n    pass",
    "except BaseException": "try:\n    1 / 0\nexcept BaseException:\n    pass",
    "finally": "for x in [1]:\n    try:\n        pass\n    finally:\n        continue",
    "str.format": "s.x = '{0.__self__.__loader__}'.format(len)",
    "format on a literal": "s.x = '{0}'.format(1)",
    "format_map": "s.x = '{amount}'.format_map(d)",
    "format through a name": "f = 'x'\ns.x = f.format(1)",
    "decorator on def": "@len\ndef f():\n    pass",
    "decorator on class": "@len\nclass A:\n    pass",
    "def": "def f(): pass",
    "class": "class A: pass",
    "import": "import os",
    "generator send": "(x for x in [1]).send(None)",
    "yield": "s.x = [(yield)]",
    "closure cells": "f = lambda: s\ns.x = f.__closure__",
    "function globals": "s.x = (lambda: 0).__globals__",
    "function code": "s.x = (lambda: 0).__code__",
    "type": "s.x = type(d)",
    "mro": "s.x = dict.mro()",
    "subclasses": "s.x = int.__subclasses__()",
    "getattr": "s.x = getattr(d, 'x')",
    "exception traceback": "try:\n    1 / 0\nexcept ZeroDivisionError as err:\n    s.x = err.__traceback__",
    "exception with_traceback": "try:\n    1 / 0\nexcept ZeroDivisionError as err:\n    err.with_traceback(None)",
    "iterator next": "s.x = map(len, ['a']).__next__()",
    "iter": "s.x = iter([1])",
    "vars": "s.x = vars()",
    "bytes": "s.x = b'x'",
    "set": "s.x = {1}",
    "with": "with d:\n    pass",
    "global": "global s",
    "return": "return",
    "break out of the loop": "break",
    "continue the loop": "continue",
    "await": "await d",
}


@pytest.mark.parametrize("clause", REFUSED_CLAUSES.values(), ids=REFUSED_CLAUSES.keys())
def test_refused_at_compile_time(small_log: str, clause: str) -> None:
    message = refused(small_log, clause)
    assert "not allowed" in message or "unknown name" in message, message


DUNDERS = ["__class__", "__self__", "__dict__", "__module__", "__reduce_ex__", "__subclasses__", "__globals__",
           "__call__", "__init__", "__base__"]


@pytest.mark.parametrize("builtin", SAFE_BUILTINS)
def test_no_dunder_of_any_builtin(small_log: str, builtin: str) -> None:
    for attribute in DUNDERS:  # read, called, and as a receiver
        for clause in (f"s.x = {builtin}.{attribute}", f"s.x = {builtin}.{attribute}()",
                       f"s.x = {builtin}.{attribute}.get"):
            assert repr(attribute) in compile_refused(clause)
        assert "not allowed" in compile_refused(f"s.x = {builtin}.{attribute}.mro()")
    # and through the real command, the first of them
    assert "'__class__'" in refused(small_log, f"s.x = {builtin}.__class__")


# -- refused when the call is made: methods on what is not a JSON value --------------

RUNTIME_REFUSED = {
    "a builtin function": ("f = len\ns.x = f.count(1)", "builtin_function_or_method"),
    "a type, unbound str.join": ("f = str\ns.x = f.join(',', ['a'])", "type"),
    "a type, through the builtin's name": ("s.x = str.join(',', ['a'])", "type"),
    "a lambda": ("f = lambda: 0\ns.x = f.count(1)", "function"),
    "a generator": ("g = (x for x in [1])\ns.x = g.count(1)", "generator"),
    "a map iterator": ("s.x = map(len, ['a']).count(1)", "map"),
    "a zip iterator": ("s.x = zip([1]).index(1)", "zip"),
    "an enumerate iterator": ("s.x = enumerate(d).index(1)", "enumerate"),
    "a range": ("s.x = range(3).count(1)", "range"),
    "an exception": ("try:\n    1 / 0\nexcept ZeroDivisionError as err:\n    s.x = err.count(1)",
                     "ZeroDivisionError"),
    "an exception class": ("s.x = KeyError.index(1)", "type"),
    "keys of a list": ("s.x = d.tags.keys()", "list"),
    "a dict method on a string": ("s.x = e.type.get('x')", "str"),
}


@pytest.mark.parametrize(("clause", "kind"), RUNTIME_REFUSED.values(), ids=RUNTIME_REFUSED.keys())
def test_refused_when_called_on_anything_but_a_json_value(small_log: str, clause: str, kind: str) -> None:
    message = refused(small_log, clause)
    assert "at seq 1" in message and f"called on a {kind}" in message
    assert "only on JSON values" in message


def test_a_refused_call_cannot_be_caught_by_the_fold(small_log: str) -> None:
    clause = "try:\n    s.x = len.count(1)\nexcept Exception:\n    s.caught = True"
    assert "called on a builtin_function_or_method" in refused(small_log, clause)


# -- allowed, and contained --------------------------------------------------------


def fold(log_path: str, *args: str) -> Any:
    code, stderr, stdout = outcome(log_path, "replay", *args)
    assert code == 0, stderr
    return json.loads(stdout)


def test_contained_uses_of_each_construct_work(small_log: str) -> None:
    clause = (
        "match d:\n"
        "    case {'amount': 0, **rest}:\n"
        "        s.zero = list(rest)\n"
        "    case {'amount': int(n)} if False:\n"
        "        pass\n"
        "    case {'amount': amount, 'tags': [first, *others]}:\n"
        "        s.first = first\n"
        "    case _:\n"
        "        pass\n"
        "try:\n"
        "    s.ratio = 1 / d.amount\n"
        "except ZeroDivisionError as err:\n"
        "    s.error = str(err)\n"
        "s.total = s.get('total', 0) + (doubled := d.amount * 2)\n"
        "s.sorted = sorted([d.amount, -1], key=lambda v, sign=-1: sign * v)\n"
        "s.pairs = {k: len(str(v)) for k, v in d.items()}\n"
        "a, *b = [1, 2, 3]\n"
        "s.b = b\n"
        "s.f = f'{e.type!r:>12}|{d.amount:{\"0\"}{5}d}|{len!s:.9}'\n"
        "s.i = isinstance(d, dict) and isinstance(d.amount, (int, float))\n"
        "s.m = list(map(abs, filter(None, [d.amount, 0, -2])))\n"
        "s.keys = dict.fromkeys(['a', 'b']).keys() | ['c']\n"
    )
    # "int(n)" is a class pattern: refused; the clause without it runs.
    assert "class pattern" in refused(small_log, clause)
    got = fold(small_log, "--fold", clause.replace("    case {'amount': int(n)} if False:\n        pass\n", ""))
    assert got["zero"] == ["text"] and got["first"] == "x" and got["error"] == "division by zero"
    assert got["total"] == 260 and got["sorted"] == [0, -1] and got["b"] == [2, 3]
    assert got["f"] == "      'note'|00000|<built-in"
    assert got["i"] is True and got["m"] == [2] and got["keys"] == ["a", "b", "c"]


@pytest.mark.parametrize("clause", [
    "s.x = [1].x",
    "s.x = (x for x in [1]).gi_frame.f_globals",
    "s.x = (x for x in [1])['gi_frame']",
    "s.x = len.__name__ if False else len['x']",
    "s.x = KeyError('k').args",
    "s.x = (lambda: 0).x",
])
def test_attribute_reads_are_key_reads_and_reach_nothing(small_log: str, clause: str) -> None:
    code, stderr, _ = outcome(small_log, "replay", "--fold", clause)
    assert code in (2, 65)
    assert stderr.startswith("evlog: ") and "Warning" not in stderr


@pytest.mark.parametrize("clause", ["s.x = f'{len!r}'", "s.x = f'{KeyError(1)!a}'", "s.x = f'{d!r:>{40}}'"])
def test_f_string_conversions_and_nested_specs_give_text_only(small_log: str, clause: str) -> None:
    got = fold(small_log, "--fold", clause)
    assert isinstance(got["x"], str)


def test_a_format_spec_on_a_function_is_an_error_not_a_reach(small_log: str) -> None:
    code, stderr, _ = outcome(small_log, "replay", "--fold", "s.x = f'{len:{d.amount}}'")
    assert code == 65 and "TypeError" in stderr


def test_a_fold_that_never_ends_stops_at_its_time_limit(small_log: str) -> None:
    for clause in ("while True:\n    pass",
                   "while True:\n    try:\n        while True:\n            pass\n    except Exception:\n        pass"):
        code, stderr, stdout = outcome(small_log, "replay", "--fold-timeout", "1", "--fold", clause)
        assert code == 65 and stdout == b""
        assert stderr.startswith("evlog: the fold was stopped after 1 s at seq 1; ")
        assert "--fold-timeout" in stderr and stderr.count("\n") == 1


def test_the_time_limit_also_bounds_a_scan_and_a_projection(small_log: str) -> None:
    code, stderr, _ = outcome(small_log, "replay", "--scan", "--fold-timeout", "0.5", "--fold",
                              "while e.seq == 2:\n    pass")
    assert code == 65 and "at seq 2" in stderr
    assert run_evlog("projection", "add", "spin", "--fold", "while True:\n    pass", log=small_log).returncode == 0
    code, stderr, _ = outcome(small_log, "projection", "show", "spin", "--fold-timeout", "0.5")
    assert code == 65 and "stopped after 0.5 s at seq 1" in stderr


def test_time_limit_is_a_no_op_outside_the_main_thread_and_for_none() -> None:
    import threading

    from evlog.fold import time_limit

    with time_limit(None):
        pass
    done: list[bool] = []
    thread = threading.Thread(target=lambda: done.append(_in_time_limit()))
    thread.start()
    thread.join()
    assert done == [True]


def _in_time_limit() -> bool:
    from evlog.fold import time_limit

    with time_limit(0.01):
        import time

        time.sleep(0.05)
    return True


def test_the_fold_timeout_default_depends_on_who_owns_the_log(small_log: str) -> None:
    from evlog.cli._fold_options import fold_timeout

    assert fold_timeout(small_log, None) is None  # created by this user
    assert fold_timeout(small_log, 0) is None and fold_timeout(small_log, 5) == 5
    assert fold_timeout(str(Path(small_log) / "nowhere"), None) == 300


# -- the method allowlist holds on every value a decoded log can give -----------------


def test_every_allowed_method_is_pure_on_every_decodable_type() -> None:
    decodable = [dict, list, tuple, str, bytes, int, float, bool, type(None), msgpack.ExtType, msgpack.Timestamp]
    names = set().union(*METHODS.values())
    for kind in decodable:
        for name in names:
            member = getattr(kind, name, None)
            if member is None:
                continue
            owner = next(base for base in kind.__mro__ if name in vars(base))
            assert owner in (dict, list, tuple, str, bytes, int, float), (kind, name, owner)
            assert type(member).__name__ in ("method_descriptor", "classmethod_descriptor",
                                             "builtin_function_or_method"), (kind, name)


# -- a stored projection written by someone else ----------------------------------------


def plant_projection(log_path: str, name: str, spec_record: Any) -> None:
    """Write a projection entry straight into the log, bypassing evlog."""
    env = lmdb.open(log_path, max_dbs=16, subdir=True, lock=True)
    try:
        projections = env.open_db(b"projections")
        value = msgpack.packb({"spec": spec_record, "from": None, "snapshot_every": 1000, "created": 0},
                              use_bin_type=True)
        with env.begin(write=True) as txn:
            txn.put(name.encode(), value, db=projections)
    finally:
        env.close()


def record_of(code: str, **changes: Any) -> dict[str, Any]:
    record = FoldSpec(clauses=((None, code),)).to_record()
    record.update(changes)
    return record


HOSTILE_RECORDS = {
    "match class pattern": record_of("match len:\n    case o(__self__=b):\n        s.x = 1"),
    "loop variable": record_of("_states = {}"),
    "str.format": record_of("s.x = '{0.__self__.__loader__}'.format(len)"),
    "walrus on _fail": record_of("s.x = (_fail := 1)"),
    "where": record_of("s.n = 1", where="__import__('os')"),
    "by": record_of("s.n = 1", by="[_init for _init in [1]]"),
    "method on a builtin": record_of("f = len\ns.x = f.index(1)"),
}


@pytest.fixture
def projected_log(small_log: str) -> str:
    # Created through evlog, so that the log and its projections database exist.
    assert run_evlog("projection", "add", "fine", "--fold", "s.n = 1", log=small_log).returncode == 0
    return small_log


@pytest.mark.parametrize("record", HOSTILE_RECORDS.values(), ids=HOSTILE_RECORDS.keys())
@pytest.mark.parametrize("command", [("projection", "show", "evil"), ("replay", "--projection", "evil")])
def test_a_planted_projection_is_refused(projected_log: str, tmp_path: Path, record: dict[str, Any],
                                         command: tuple[str, ...]) -> None:
    plant_projection(projected_log, "evil", record)
    code, stderr, stdout = outcome(projected_log, *command)
    assert code == 2, stderr
    assert stdout == b""
    assert stderr.startswith("evlog: ")


PYTHON_SOURCE = "import os\ndef apply(state, event):\n    open({marker!r}, 'w').write('ran')\n    return state\n"


@pytest.mark.parametrize("command", [("projection", "show", "evil"), ("replay", "--projection", "evil")])
def test_a_planted_python_fold_file_is_refused_and_never_run(projected_log: str, tmp_path: Path,
                                                             command: tuple[str, ...]) -> None:
    marker = tmp_path / "touched"
    record = FoldSpec().to_record()
    record["fold_file"] = PYTHON_SOURCE.format(marker=str(marker))
    plant_projection(projected_log, "evil", record)
    code, stderr, stdout = outcome(projected_log, *command)
    # Reported as damage (exit 74), which projection rm repairs: never run.
    assert code == 74 and stdout == b""
    assert stderr.count("\n") == 1 and "holds Python code" in stderr and "older evlog" in stderr
    assert "evlog projection rm evil" in stderr
    assert not marker.exists()
    assert run_evlog("projection", "rm", "evil", log=projected_log).returncode == 0
    assert not marker.exists()


MALFORMED = {
    "not an object": [1, 2],
    "clauses not a list": {**FoldSpec().to_record(), "clauses": 5},
    "a clause not a pair": {**FoldSpec().to_record(), "clauses": [["a"]]},
    "code not a string": {**FoldSpec().to_record(), "clauses": [[None, 5]]},
    "pattern not a string": {**FoldSpec().to_record(), "clauses": [[7, "s"]]},
    "by not a string": {**FoldSpec().to_record(), "by": ["stream"]},
    "streams not strings": {**FoldSpec().to_record(), "streams": [1]},
    "no init": {key: value for key, value in FoldSpec().to_record().items() if key != "init"},
    "init not JSON": {**FoldSpec().to_record(), "init": {"a": b"bytes"}},
    "init with an ext type": {**FoldSpec().to_record(), "init": [msgpack.ExtType(1, b"x")]},
}


@pytest.mark.parametrize("record", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_definition_is_a_damaged_log(projected_log: str, record: Any) -> None:
    plant_projection(projected_log, "evil", record)
    code, stderr, _ = outcome(projected_log, "projection", "show", "evil")
    assert code == 74, stderr
    assert stderr.startswith("evlog: damaged log: projection 'evil': ") and stderr.count("\n") == 1
    assert "remove it with evlog projection rm evil" in stderr
    assert stderr.rstrip().endswith("run evlog verify")


# -- records and payloads that do not decode, inside the fold loop ---------------------


def overwrite_record(log_path: str, seq: int, body: bytes) -> None:
    """Replace an event's record bytes (body + the 16-byte chain hash) in place."""
    env = lmdb.open(log_path, max_dbs=16, subdir=True)
    try:
        events = env.open_db(b"events")
        with env.begin(write=True) as txn:
            key = seq.to_bytes(8, "big")
            old = txn.get(key, db=events)
            txn.put(key, body + old[-16:], db=events)
    finally:
        env.close()


def envelope(data: bytes) -> bytes:
    return msgpack.packb([1, 1_700_000_000 * 10**9, 1, "deposit", "acct-a", None, None, data], use_bin_type=True)


DAMAGED = {
    "not msgpack": b"\xc1\xc1\xc1",
    "a short record": msgpack.packb([1, 2, 3]),
    "an ext type in the record": msgpack.packb([1, 2, 1, "deposit", None, None, msgpack.ExtType(5, b"x"), b""]),
    "a payload that is not msgpack": envelope(b"\xc1"),
    "an ext type in the payload": envelope(msgpack.packb({"amount": msgpack.ExtType(3, b"x")})),
    "a non-string key in the payload": envelope(msgpack.packb({1: 2}, strict_types=False)),
    "bytes in the payload": envelope(msgpack.packb({"amount": b"xx"}, use_bin_type=True)),
    "a payload that is not bytes": envelope(7),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("body", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_record_that_does_not_decode_in_a_fold_is_a_damaged_log(small_log: str, body: bytes) -> None:
    overwrite_record(small_log, 2, body)
    code, stderr, stdout = outcome(small_log, "replay", "--init", "0", "--fold", "s + d.amount")
    assert code == 74, stderr
    assert stderr.startswith("evlog: damaged log: seq 2 (") and stderr.count("\n") == 1
    assert stdout == b""


def crafted(event_type: Any, stream: Any) -> bytes:
    return msgpack.packb([1, 1_700_000_000 * 10**9, 1, event_type, stream, None, None, msgpack.packb({"amount": 1})],
                         use_bin_type=True)


@pytest.mark.parametrize(("body", "args"), [
    (crafted(5, "acct-a"), ("--on", "dep*", "s.n = 1")),
    (crafted(5, "acct-a"), ("-t", "dep*", "--fold", "s.n = 1")),
    (crafted("deposit", {"a": 1}), ("-s", "acct-*", "--fold", "s.n = 1")),
    (crafted("deposit", 7), ("-s", "acct-*", "--fold", "s.n = 1")),
], ids=["int type, --on glob", "int type, -t glob", "object stream, -s", "int stream, -s"])
def test_record_fields_of_the_wrong_kind_are_damage_where_a_filter_uses_them(
    small_log: str, body: bytes, args: tuple[str, ...]
) -> None:
    overwrite_record(small_log, 2, body)
    code, stderr, stdout = outcome(small_log, "replay", *args)
    assert code == 74, stderr
    assert stderr.startswith("evlog: damaged log: seq 2 (the record") and stderr.count("\n") == 1
    assert stdout == b""


# -- generated folds: nothing reaches a non-JSON object's attribute ----------------------

JSON_TYPES = tuple(METHODS)
BUILTINS_MODULE = sys.modules["builtins"]

RECEIVERS = [*SAFE_BUILTINS, "s", "d", "e", "e.meta", "d.tags", "e.type", "1", "1.5", "True", "None", "'text'",
             "[1, 'a']", "(1, 2)", "{'k': 1}", "(lambda: 0)", "(x for x in [1])", "map(abs, [1])",
             "KeyError('k')", "range(2)", "f'{d.amount}'"]
ATTRIBUTES = ["__class__", "__self__", "__globals__", "__code__", "__closure__", "__dict__", "__subclasses__",
              "__init__", "__loader__", "__builtins__", "__reduce__", "gi_frame", "gi_code", "f_globals",
              "f_back", "tb_frame", "co_code", "mro", "format", "format_map", "fromkeys", "count", "index",
              "get", "join", "keys", "items", "values", "pop", "append", "send", "throw", "close",
              "with_traceback", "args", "to_bytes", "decode", "encode", "real", "start", "upper", "split",
              "startswith", "setdefault", "update", "sort", "copy", "bit_length", "is_integer"]
BINDERS_GRAMMAR = [
    "{n} = {r}\ns.out = {use}",
    "for {n} in [{r}]:\n    s.out = {use}",
    "s.out = [{use} for {n} in [{r}]]",
    "s.out = {{0: {use} for {n} in [{r}]}}",
    "s.out = ({n} := {r}) and {use}",
    "s.out = (lambda {n}={r}: {use})()",
    "s.out = (lambda {n}: {use})({r})",
    "try:\n    raise KeyError({r})\nexcept KeyError as {n}:\n    s.out = {use}",
    "match {r}:\n    case {n}:\n        s.out = {use}",
    "{n}, *rest = [{r}, 1]\ns.out = {use}",
]
NAMES = ["x", "item", "_states", "_fail", "_init", "_m_get", "s", "d", "e", "len", "dict", "state", "__builtins__"]


@st.composite
def hostile_clauses(draw: st.DrawFn) -> str:
    receiver = draw(st.sampled_from(RECEIVERS))
    attribute = draw(st.one_of(st.sampled_from(ATTRIBUTES),
                               st.from_regex(r"\A_{0,2}[a-z]{1,8}_{0,2}\Z")))
    name = draw(st.sampled_from(NAMES))
    target = draw(st.sampled_from([name, receiver]))
    args = draw(st.sampled_from(["", "1", "'a'", "[1]", "d", "len", "'a', 'b'"]))
    use = draw(st.sampled_from([f"{target}.{attribute}", f"{target}.{attribute}({args})",
                                f"{target}.{attribute}.{attribute}({args})", f"str({target}.{attribute}({args}))"]))
    template = draw(st.sampled_from(BINDERS_GRAMMAR))
    return template.format(n=name, r=receiver, use=use)


@pytest.fixture(scope="module")
def shared_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    path = tmp_path_factory.mktemp("hostile") / "events.lmdb"
    with Log(path) as log:
        log.append_many(EVENTS)
        yield log


def _watch_calls(violations: list[str]) -> Any:
    """A profiler that records every C call made from fold code that is not an offered builtin or a JSON method."""

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "c_call" or frame.f_code.co_filename != "<fold>":
            return
        owner = getattr(arg, "__self__", None)
        name = getattr(arg, "__name__", "?")
        if owner is BUILTINS_MODULE:
            if name not in SAFE_BUILTINS:
                violations.append(f"builtin {name}")
        elif type(owner) in JSON_TYPES:
            if name not in METHODS[type(owner)]:
                violations.append(f"{type(owner).__name__}.{name}")
        else:
            violations.append(f"{type(owner).__name__}.{name}")

    return profile


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(clause=hostile_clauses())
def test_generated_folds_never_reach_a_non_json_attribute(shared_log: Log, clause: str) -> None:
    spec = FoldSpec(clauses=((None, clause),))
    try:
        from evlog.fold import CompiledFold

        CompiledFold(spec)
    except UsageError:
        return  # refused at compile time
    violations: list[str] = []
    sys.setprofile(_watch_calls(violations))
    try:
        run_fold(shared_log, spec, use_snapshots=False, timeout=5)
    except (UsageError, FoldError):
        pass  # refused when called, or failed on the data: either way it reached nothing
    finally:
        sys.setprofile(None)
    assert violations == [], (clause, violations)
