"""Helpers of the sync tests: the ``target_url`` fixture and reading a table back as states.

``target_url`` is a fresh database of each kind the sync writes: SQLite
always; PostgreSQL where the session's throwaway cluster (the ``pg_database_url``
fixture of conftest) can run. Modules that test behaviour every target must
have import it, so one suite defines a target.

A table is compared with the projection as *states*: each row read back,
its NULLs left out and each value decoded by the column type the checkpoint
records (JSON text parsed, 0/1 made booleans), keyed by the key's text. Two
tables are the same read model when they read back the same states.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_evlog

from evlog import Log
from evlog.fold import FoldSpec
from evlog.runner import run_fold
from evlog.sinks.rows import key_text, state_fields
from evlog.sinks.target import open_target

TARGETS = ["sqlite", "postgresql"]


@pytest.fixture(params=TARGETS)
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'read.db'}"
    try:
        url: str = request.getfixturevalue("pg_database_url")
    except pytest.FixtureLookupError:
        pytest.skip("no PostgreSQL fixture in this checkout")
    return url


def decode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "json":
        return json.loads(value) if isinstance(value, str) else value
    if kind == "boolean":
        return bool(value)
    if kind == "real":
        return float(value)
    return value


def table_states(url: str, table: str) -> tuple[int, dict[Any, Any]]:
    """``(last_seq, {key text: {column: value}})`` of a table evlog built (key None for a one-row table)."""
    target = open_target(url, create=False)
    try:
        checkpoint = target.checkpoint(table)
        assert checkpoint is not None, f"no checkpoint for {table}"
        names = [column.name for column in checkpoint.columns]
        kinds = [column.type for column in checkpoint.columns]
        key = checkpoint.key_column
        if not names and key is None:
            return checkpoint.last_seq, {}
        rows = target.read_rows(table, ([key] if key else []) + (names or [key]))
    finally:
        target.close()
    states: dict[Any, Any] = {}
    for row in rows:
        values = row[1:] if key else row
        fields = {name: decode(value, kind) for name, value, kind in zip(names, values, kinds, strict=False)}
        states[row[0] if key else None] = {name: value for name, value in fields.items() if value is not None}
    return checkpoint.last_seq, states


def expected_states(log_path: str, name: str, until: int) -> dict[Any, Any]:
    """The projection's states at seq ``until`` as the table should hold them, folded afresh without snapshots."""
    from evlog.snapshots import get_projection

    with Log(log_path) as log:
        projection = get_projection(log.backend(), name)
        spec: FoldSpec = projection.spec
        if until < 1:
            states: dict[Any, Any] = {} if spec.by is not None else {None: spec.init}
        else:
            result, _ = run_fold(log, spec, from_=projection.from_, until=until, use_snapshots=False)
            states = result.states
    shown: dict[Any, Any] = {}
    for key, state in states.items():
        if state is None:
            continue
        fields = {k: v for k, v in state_fields(state).items() if v is not None}
        shown[key_text(key) if spec.by is not None else None] = fields
    return shown


def add_projection(log_path: str, name: str, *options: str) -> None:
    result = run_evlog("projection", "add", name, *options, log=log_path)
    assert result.returncode == 0, result.stderr.decode()


BALANCES = ("--by", "stream", "--init", '{"balance": 0, "deposits": 0}',
            "--on", "deposit", "s.balance += d.amount; s.deposits += 1",
            "--on", "withdraw", "s.balance -= d.amount",
            "--on", "close", "s = None")


def bank_events(count: int, accounts: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """Deposits, withdrawals and now and then a closed account, over ``accounts`` streams."""
    import random

    rng = random.Random(seed)
    events = []
    for _ in range(count):
        stream = f"acct-{rng.randrange(accounts)}"
        roll = rng.random()
        kind = "close" if roll < 0.02 else "withdraw" if roll < 0.4 else "deposit"
        events.append({"type": kind, "stream": stream, "data": {"amount": rng.randrange(1, 500)}})
    return events
