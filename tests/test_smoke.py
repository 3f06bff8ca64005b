"""End-to-end smoke test of the three commands on one log."""

from __future__ import annotations

import json

from conftest import run_evlog


def test_append_replay_info(log_path: str) -> None:
    first = run_evlog("append", "deposit", "amount:=100", "-s", "account-7", log=log_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == b"1\n"
    replayed = run_evlog("replay", log=log_path)
    event = json.loads(replayed.stdout)
    assert event["type"] == "deposit" and event["data"] == {"amount": 100} and event["version"] == 1
    info = json.loads(run_evlog("info", "-o", "json", log=log_path).stdout)
    assert info["events"] == 1 and info["streams"] == 1 and info["types"] == {"deposit": 1}
