"""scripts/demo.sh, the README's first command, runs and shows what it says it shows.

The demo is the first thing a new user runs, after installing, with the installed
``evlog`` on PATH and the default log in the current directory; so does this test,
in a temporary directory. Its events carry ids, so a second run appends nothing:
the test runs it twice and checks that too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.sh"
BIN = Path(sys.executable).parent


def run_demo(directory: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVLOG_")}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", os.defpath)])
    return subprocess.run(
        [str(DEMO)], cwd=directory, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )


def test_demo_runs_and_is_idempotent(tmp_path: Path) -> None:
    assert os.access(BIN / "evlog", os.X_OK), f"no evlog script beside {sys.executable}: install the package first"
    first = run_demo(tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "== append: NDJSON events through a pipe ==" in lines
    assert lines[lines.index("== append: one event from arguments (prints its seq) ==") + 1] == "6"
    assert '{"account-1":{"balance":115},"account-2":{"balance":250}}' in lines
    assert '{"account-1":{"balance":100},"account-2":{"balance":0}}' in lines
    assert "evlog: ok: 6 events (seq 1-6) verified" in first.stderr
    info = json.loads(lines[-1])
    assert (info["events"], info["streams"], info["path"]) == (6, 2, str(tmp_path / "events.lmdb"))

    second = run_demo(tmp_path)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout.splitlines()[-1])["events"] == 6
