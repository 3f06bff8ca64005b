"""Several `evlog append` processes writing one log at the same time.

LMDB has one writer at a time and evlog assigns seq and stream versions
inside the write transaction, so concurrent appenders must still leave a
gapless log: seq 1..N, every input event exactly once, each process's events
in its input order, and every stream's versions 1..k along seq order.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from evlog import Event, Log

PROCESSES = 4


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}


def read_all(log_path: str) -> list[Event]:
    with Log(log_path) as log:
        return list(log.read())


def assert_gapless_with_stream_versions(events: list[Event]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    versions: dict[str, list[int]] = defaultdict(list)
    for event in events:
        if event.stream is None:
            assert event.version is None
        else:
            versions[event.stream].append(event.version)  # type: ignore[arg-type]
    for stream, found in versions.items():
        assert found == list(range(1, len(found) + 1)), stream


def producer_input(process: int, count: int) -> bytes:
    """NDJSON for one process: a third on three streams every process shares, a third on its own, a third on none."""
    lines = []
    for i in range(count):
        stream = [f"shared-{(i // 3) % 3}", f"own-{process}", None][i % 3]
        event = {"type": "work", "id": f"p{process}-{i}", "data": {"p": process, "i": i}}
        if stream is not None:
            event["stream"] = stream
        lines.append(json.dumps(event))
    return ("\n".join(lines) + "\n").encode()


def test_concurrent_bulk_appends_make_a_gapless_log(tmp_path: Path, log_path: str) -> None:
    count = 500
    inputs = []
    for process in range(PROCESSES):
        path = tmp_path / f"input-{process}.ndjson"
        path.write_bytes(producer_input(process, count))
        inputs.append(path)
    runs = []
    for path in inputs:
        with path.open("rb") as stdin:
            runs.append(subprocess.Popen(
                [sys.executable, "-m", "evlog", "append", "--batch", "7", "--log", log_path],
                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
            ))
    for run in runs:
        stdout, stderr = run.communicate(timeout=60)
        assert (run.returncode, stdout, stderr) == (0, b"", b"")

    events = read_all(log_path)
    assert len(events) == PROCESSES * count
    assert_gapless_with_stream_versions(events)
    seen = [(e.data["p"], e.data["i"]) for e in events]
    assert sorted(seen) == [(p, i) for p in range(PROCESSES) for i in range(count)]
    for process in range(PROCESSES):
        mine = [e for e in events if e.data["p"] == process]
        assert [e.data["i"] for e in mine] == list(range(count))  # each process's input order is kept
        assert all(e.id == f"p{process}-{e.data['i']}" for e in mine)
    shared = [e for e in events if e.stream == "shared-0"]
    assert len(shared) == PROCESSES * len(range(0, count, 9))
    assert len({e.data["p"] for e in shared}) == PROCESSES
    with Log(log_path) as log:
        info = log.info()
    assert info["events"] == PROCESSES * count
    assert info["types"] == {"work": PROCESSES * count}
    assert info["streams"] == 3 + PROCESSES


def test_concurrent_single_event_shell_loops(log_path: str) -> None:
    runs_each = 30
    py = shlex.quote(sys.executable)
    log = shlex.quote(log_path)
    loops = []
    for process in range(PROCESSES):
        script = (
            f"for i in $(seq 1 {runs_each}); do "
            f"{py} -m evlog append tick n:=$i p:={process} -s shared --log {log} || exit 1; done"
        )
        loops.append(subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=clean_env()))
    printed: list[int] = []
    for loop in loops:
        stdout, stderr = loop.communicate(timeout=120)
        assert (loop.returncode, stderr) == (0, b"")
        printed.extend(int(line) for line in stdout.split())

    total = PROCESSES * runs_each
    assert sorted(printed) == list(range(1, total + 1))  # each run printed its own, distinct seq
    events = read_all(log_path)
    assert len(events) == total
    assert_gapless_with_stream_versions(events)
    assert [e.version for e in events] == list(range(1, total + 1))
    for process in range(PROCESSES):
        assert [e.data["n"] for e in events if e.data["p"] == process] == list(range(1, runs_each + 1))


def test_processes_creating_the_same_log_at_once_all_append(tmp_path: Path) -> None:
    # A process that opened the log while another was creating it once took the
    # half-made log for another program's environment (exit 74, about 1 start in 240).
    for round_ in range(8):
        log_path = str(tmp_path / f"new-{round_}.lmdb")
        runs = [
            subprocess.Popen([sys.executable, "-m", "evlog", "append", "--log", log_path, "t", f"n:={n}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
            for n in range(6)
        ]
        results = [(run.returncode, err) for run in runs for _, err in [run.communicate(timeout=60)]]
        assert results == [(0, b"")] * 6
        assert sorted(event.data["n"] for event in read_all(log_path)) == list(range(6))
