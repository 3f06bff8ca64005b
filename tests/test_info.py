"""``evlog info``: the facts about a log, as JSON for scripts and as a table on a terminal.

Checks every field of ``-o json`` against a log built with known events and times,
a log that exists but holds no events, and the head hash: it moves with every append
and is the same for two logs that hold the same events at the same times.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import run_evlog
from terminal import terminal_output

from evlog import Log
from evlog.timefmt import parse_rfc3339

NS = 1_000_000_000
TS_TEXT = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z\Z")
HEX32 = re.compile(r"\A[0-9a-f]{32}\Z")
FIELDS = [
    "path",
    "size_bytes",
    "events",
    "first_seq",
    "last_seq",
    "first_ts",
    "last_ts",
    "streams",
    "types",
    "format",
    "log_id",
    "created",
    "head_hash",
]

BANK: list[dict[str, Any]] = [
    {"type": "account.opened", "stream": "account-1", "ts": "2026-11-01T09:00:00Z", "data": {"owner": "Ada"}},
    {"type": "deposit", "stream": "account-1", "ts": "2026-11-01T09:30:00.25Z", "data": {"amount": 100}},
    {"type": "account.opened", "stream": "account-2", "ts": "2026-11-01T10:00:00Z", "data": {"owner": "Grace"}},
    {"type": "deposit", "stream": "account-2", "ts": "2026-11-01T10:00:00Z", "data": {"amount": 250}},
    {"type": "deposit", "stream": "account-1", "ts": "2026-11-01T11:00:00Z", "data": {"amount": 5}},
    {"type": "audit", "ts": "2026-11-01T12:00:00.000000007Z", "id": "audit-1"},
]


def make_log(path: str, events: Sequence[Mapping[str, Any]]) -> str:
    with Log(path) as log:
        log.append_many(events)
    return path


def info_json(log: str) -> dict[str, Any]:
    result = run_evlog("info", "-o", "json", log=log)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    facts: dict[str, Any] = json.loads(result.stdout)
    return facts


@pytest.fixture
def bank_log(log_path: str) -> str:
    return make_log(log_path, BANK)


def test_info_json_fields(bank_log: str) -> None:
    before = time.time_ns()
    facts = info_json(bank_log)
    assert list(facts) == FIELDS
    assert facts["path"] == os.path.abspath(bank_log)
    assert facts["events"] == 6
    assert (facts["first_seq"], facts["last_seq"]) == (1, 6)
    assert facts["first_ts"] == "2026-11-01T09:00:00.000000000Z"
    assert facts["last_ts"] == "2026-11-01T12:00:00.000000007Z"
    assert facts["streams"] == 2
    assert facts["types"] == {"deposit": 3, "account.opened": 2, "audit": 1}
    assert facts["format"] == 1
    assert HEX32.match(facts["log_id"])
    assert HEX32.match(facts["head_hash"]) and facts["head_hash"] != "0" * 32
    assert TS_TEXT.match(facts["created"])
    # The log was created by this test, moments ago.
    assert before - 120 * NS < _parse(facts["created"]) <= time.time_ns()


def _parse(text: str) -> int:
    ns = parse_rfc3339(text)
    assert ns is not None
    return ns


def test_info_size_is_the_size_of_the_log_files(bank_log: str) -> None:
    facts = info_json(bank_log)
    on_disk = sum(os.path.getsize(os.path.join(bank_log, name)) for name in os.listdir(bank_log))
    assert facts["size_bytes"] == on_disk > 0


def test_info_piped_prints_json_by_default(bank_log: str) -> None:
    result = run_evlog("info", log=bank_log)
    assert result.returncode == 0
    assert json.loads(result.stdout) == info_json(bank_log)


def test_info_from_the_library_matches_the_command(bank_log: str) -> None:
    with Log(bank_log) as log:
        assert log.info() == info_json(bank_log)


def test_info_path_is_absolute_for_a_relative_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_log("relative.lmdb", BANK[:1])
    with Log("relative.lmdb") as log:
        assert log.info()["path"] == str(tmp_path / "relative.lmdb")


def test_info_of_a_log_without_events(log_path: str) -> None:
    refused = run_evlog("append", "deposit", "-s", "account-1", "--expect", "1", log=log_path)
    assert refused.returncode == 3  # creates the log, writes no event
    facts = info_json(log_path)
    assert list(facts) == FIELDS
    assert facts["events"] == 0
    assert facts["first_seq"] is None and facts["last_seq"] is None
    assert facts["first_ts"] is None and facts["last_ts"] is None
    assert facts["streams"] == 0 and facts["types"] == {}
    assert facts["format"] == 1 and HEX32.match(facts["log_id"])
    assert TS_TEXT.match(facts["created"])
    assert HEX32.match(facts["head_hash"])


def test_head_hash_changes_with_every_append(log_path: str) -> None:
    seen: list[str] = []
    for amount in range(4):
        result = run_evlog("append", "deposit", f"amount:={amount}", "-s", "account-1", log=log_path)
        assert result.returncode == 0, result.stderr
        facts = info_json(log_path)
        assert facts["events"] == amount + 1
        seen.append(facts["head_hash"])
    assert len(set(seen)) == len(seen)
    assert all(HEX32.match(value) for value in seen)


def test_duplicate_id_leaves_the_head_hash_alone(log_path: str) -> None:
    assert run_evlog("append", "deposit", "--id", "dep-1", log=log_path).returncode == 0
    head = info_json(log_path)["head_hash"]
    again = run_evlog("append", "deposit", "--id", "dep-1", log=log_path)
    assert again.returncode == 0 and again.stdout == b"1\n"
    assert info_json(log_path)["head_hash"] == head


def test_same_events_at_the_same_times_give_the_same_head_hash(tmp_path: Path) -> None:
    first = make_log(str(tmp_path / "a.lmdb"), BANK)
    second = make_log(str(tmp_path / "b.lmdb"), BANK)
    a, b = info_json(first), info_json(second)
    assert a["head_hash"] == b["head_hash"]
    assert a["log_id"] != b["log_id"]


@pytest.mark.parametrize(
    "change",
    [
        {"ts": "2026-11-01T12:00:00.000000008Z"},
        {"data": {"amount": 6}},
        {"type": "audit.done"},
        {"id": "audit-2"},
        {"meta": {"by": "ada"}},
        {"stream": "account-3"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_any_difference_in_an_event_changes_the_head_hash(tmp_path: Path, change: dict[str, Any]) -> None:
    same = make_log(str(tmp_path / "a.lmdb"), BANK)
    changed = make_log(str(tmp_path / "b.lmdb"), [*BANK[:-1], {**BANK[-1], **change}])
    assert info_json(same)["head_hash"] != info_json(changed)["head_hash"]


def test_head_hash_depends_on_the_whole_history(tmp_path: Path) -> None:
    # The same last event after a different first one: the chain makes the heads differ.
    changed_first = [{**BANK[0], "data": {"owner": "Eve"}}, *BANK[1:]]
    a = make_log(str(tmp_path / "a.lmdb"), BANK)
    b = make_log(str(tmp_path / "b.lmdb"), changed_first)
    assert info_json(a)["head_hash"] != info_json(b)["head_hash"]


def run_in_terminal(*args: str, log: str, columns: int = 100) -> tuple[int, str, bytes]:
    """Run evlog with stdout on a pseudo-terminal: exit code, visible text, stderr."""
    code, raw, stderr = terminal_output(*args, log=log, columns=columns)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    return code, text.replace("\r\n", "\n"), stderr


def test_info_on_a_terminal_draws_a_table(bank_log: str) -> None:
    code, text, stderr = run_in_terminal("info", log=bank_log)
    assert (code, stderr) == (0, b"")
    facts = info_json(bank_log)
    assert not text.lstrip().startswith("{")
    for label in ("path", "size", "events", "first", "last", "streams", "format", "log id", "created", "head hash"):
        assert re.search(rf"^{label}\s", text, re.MULTILINE), label
    assert facts["head_hash"] in text and facts["log_id"] in text and facts["path"] in text
    assert re.search(r"^deposit\s+3\s+50\.0%$", text, re.MULTILINE)
    assert re.search(r"^account\.opened\s+2\s+33\.3%$", text, re.MULTILINE)


def test_info_table_of_a_log_without_events(log_path: str) -> None:
    assert run_evlog("append", "x", "-s", "s", "--expect", "1", log=log_path).returncode == 3
    code, text, stderr = run_in_terminal("info", log=log_path)
    assert (code, stderr) == (0, b"")
    assert re.search(r"^events\s+0\s*$", text, re.MULTILINE)


def test_info_json_on_a_terminal_is_still_json(bank_log: str) -> None:
    code, text, _ = run_in_terminal("info", "-o", "json", log=bank_log)
    assert code == 0
    assert json.loads(text) == info_json(bank_log)


def test_info_groups_digits_and_aligns_like_stats(log_path: str) -> None:
    events = [{"type": "deposit" if i % 3 else "account.opened", "stream": f"account-{i % 1200}",
               "ts": f"2026-11-01T09:{i // 600:02d}:{i // 10 % 60:02d}Z"} for i in range(1234)]
    make_log(log_path, events)
    code, text, stderr = run_in_terminal("info", log=log_path, columns=120)
    assert (code, stderr) == (0, b"")
    lines = text.rstrip("\n").splitlines()
    assert not any(line != line.rstrip() for line in lines), "no trailing blanks"
    facts = lines[: lines.index("")]
    # Every value starts in one column, after the longest label.
    assert {len(line) - len(line.split("  ", 1)[1].lstrip()) for line in facts if "  " in line} == {11}
    assert re.search(r"^events {5}1,234$", text, re.MULTILINE)
    assert re.search(r"^streams {4}1,200$", text, re.MULTILINE)
    assert re.search(r"^first {6}seq 1 {5}2026-11-01 09:00:00 UTC$", text, re.MULTILINE), text
    assert re.search(r"^last {7}seq 1234  2026-11-01 09:02:03 UTC$", text, re.MULTILINE), text
    # The types as stats lists them: counts grouped and right-aligned, with their shares.
    assert re.search(r"^types +events +share$", text, re.MULTILINE)
    assert re.search(r"^deposit +822 +66\.6%$", text, re.MULTILINE)
    assert re.search(r"^account\.opened +412 +33\.4%$", text, re.MULTILINE)
    drawn = run_evlog("stats", "-o", "table", log=log_path, env={"TZ": "UTC"}).stdout.decode()
    assert re.search(r"^events +1,234$", drawn, re.MULTILINE)
