"""Shell completion: commands and options from the command line's definition, names from the log.

Each test runs the real command the way a shell's completion script does:
``_EVLOG_COMPLETE=complete_bash`` with ``COMP_WORDS`` (the words typed so far)
and ``COMP_CWORD`` (the index of the word being completed), and reads one
suggestion per line. Names come from the log the typed ``--log`` points at,
else ``$EVLOG_PATH``, else ``./events.lmdb``; without a readable log there are
no suggestions, and never an error.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import lmdb
import pytest
from conftest import run_evlog

from evlog import Log
from evlog.follow import set_group_position

TYPES = ["account.opened", "deposit", "order.created", "order.shipped", "withdraw"]
STREAMS = ["account-7", "account-8", "order-1"]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVLOG_", "_EVLOG_", "COMP_"))}
    env.update(extra or {})
    return env


def complete(line: str, *, env: dict[str, str] | None = None, cwd: str | None = None) -> list[str]:
    """The suggestions for the last word of ``line`` (a trailing space: for a new word), as bash asks."""
    words = shlex.split(line)
    cword = len(words) if line.endswith(" ") else len(words) - 1
    result = subprocess.run(
        [sys.executable, "-m", "evlog"],
        env=clean_env({"_EVLOG_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(cword),
                       **(env or {})}),
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60, cwd=cwd,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", result.stderr.decode()
    return [line for line in result.stdout.decode().splitlines() if line]  # no suggestion: one empty line


@pytest.fixture
def named_log(log_path: str) -> str:
    """A log with types, streams, two follower groups and two projections."""
    with Log(log_path) as log:
        log.append_many([{"type": "account.opened", "stream": "account-7"},
                         {"type": "deposit", "stream": "account-7", "data": {"amount": 100}},
                         {"type": "withdraw", "stream": "account-8", "data": {"amount": 30}},
                         {"type": "order.created", "stream": "order-1"},
                         {"type": "order.shipped", "stream": "order-1"}])
        store = log.store(write=True)
        set_group_position(store, "billing", 2)
        set_group_position(store, "backfill", 0)
    for name in ("balances", "counts"):
        added = run_evlog("projection", "add", name, "--fold", "s[e.type] = s.get(e.type, 0) + 1", log=log_path)
        assert added.returncode == 0, added.stderr
    return log_path


# -- commands and options (click's own) ------------------------------------------


def test_commands_complete() -> None:
    assert complete("evlog re") == ["replay"]
    assert set(complete("evlog ")) >= {"append", "replay", "tail", "group", "snapshot", "projection", "info",
                                      "verify", "backup"}
    assert complete("evlog group r") == ["reset", "rm", "retry"]
    assert complete("evlog projection s") == ["show", "sync", "status"]


def test_options_complete() -> None:
    assert complete("evlog replay --fr") == ["--from"]
    assert {"--group", "--follow", "--no-color", "--type", "--stream"} <= set(complete("evlog tail --"))
    assert {"--install-completion", "--show-completion", "--version"} <= set(complete("evlog --"))


# -- names from the log ------------------------------------------------------------


def test_types_complete_from_the_log(named_log: str) -> None:
    assert complete(f"evlog replay --log {named_log} --type ") == TYPES
    assert complete(f"evlog replay --log {named_log} --type de") == ["deposit"]
    assert complete(f"evlog replay --log {named_log} -t order.") == ["order.created", "order.shipped"]
    assert complete(f"evlog tail --log {named_log} -t w") == ["withdraw"]
    assert complete(f"evlog snapshot save --log {named_log} --type acc") == ["account.opened"]
    assert complete(f"evlog replay --log {named_log} --type nothing-like-it") == []


def test_streams_complete_by_prefix(named_log: str) -> None:
    assert complete(f"evlog replay --log {named_log} --stream ") == STREAMS
    assert complete(f"evlog replay --log {named_log} -s acc") == ["account-7", "account-8"]
    assert complete(f"evlog tail --log {named_log} --stream order") == ["order-1"]
    assert complete(f"evlog projection add p --log {named_log} -s account-8") == ["account-8"]


def test_append_and_streams_complete_from_the_log(named_log: str) -> None:
    assert complete(f"evlog append --log {named_log} de") == ["deposit"]
    assert complete(f"evlog append --log {named_log} deposit -s acc") == ["account-7", "account-8"]
    assert complete(f"evlog append --log {named_log} --type order.s") == ["order.shipped"]
    assert complete(f"evlog streams --log {named_log} ord") == ["order-1"]
    assert complete(f"evlog stats --log {named_log} -t with") == ["withdraw"]


def test_groups_complete(named_log: str) -> None:
    assert complete(f"evlog tail --log {named_log} --group ") == ["backfill", "billing"]
    assert complete(f"evlog tail --log {named_log} -g bi") == ["billing"]
    assert complete(f"evlog group reset --log {named_log} ") == ["backfill", "billing"]
    assert complete(f"evlog group rm --log {named_log} ba") == ["backfill"]


def test_projections_complete(named_log: str) -> None:
    assert complete(f"evlog projection show --log {named_log} ") == ["balances", "counts"]
    assert complete(f"evlog projection rm --log {named_log} c") == ["counts"]
    assert complete(f"evlog replay --log {named_log} --projection b") == ["balances"]


def test_names_that_would_drive_the_terminal_are_never_offered(log_path: str) -> None:
    # A log may come from someone else: a stream or type with ESC or a bidi control in its
    # name would be printed raw by the shell in its list of candidates.
    with Log(log_path) as log:
        log.append_many([{"type": "pay\u202emoc.evil", "stream": "acct-\u2066evil"},
                         {"type": "payment", "stream": "acct-1"}])
    assert complete(f"evlog replay --log {log_path} --type pay") == ["payment"]
    assert complete(f"evlog replay --log {log_path} --stream acct-") == ["acct-1"]


def test_log_is_found_like_the_command_finds_it(named_log: str, tmp_path: Path) -> None:
    other = str(tmp_path / "other.lmdb")
    with Log(other) as log:
        log.append("shipment.sent", stream="parcel-1")
    # $EVLOG_PATH without --log ...
    assert complete("evlog replay --type ", env={"EVLOG_PATH": other}) == ["shipment.sent"]
    # ... a --log typed earlier wins over it ...
    assert complete(f"evlog replay --log {named_log} --type ", env={"EVLOG_PATH": other}) == TYPES
    assert complete(f"evlog replay -L {other} -s ", env={"EVLOG_PATH": named_log}) == ["parcel-1"]
    # ... and without either, ./events.lmdb.
    assert Path(named_log).name == "events.lmdb"
    assert complete("evlog replay --type d", cwd=str(Path(named_log).parent)) == ["deposit"]


def _foreign_lmdb(path: Path) -> Path:
    env = lmdb.open(str(path), map_size=1 << 20, lib_version=0)
    with env.begin(write=True) as txn:
        txn.put(b"deposit", b"1")
    env.close()
    return path


@pytest.mark.parametrize("kind", ["missing", "empty directory", "plain file", "other files", "foreign lmdb"])
def test_no_readable_log_gives_no_suggestions_and_no_error(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    if kind == "empty directory":
        target.mkdir()
    elif kind == "plain file":
        target.write_text("deposit\n")
    elif kind == "other files":
        target.mkdir()
        (target / "notes.txt").write_text("deposit\n")
    elif kind == "foreign lmdb":
        _foreign_lmdb(target)
    def state() -> list[tuple[str, int]]:
        # lock.mdb is LMDB's reader table, which any reader may touch; the data must stay as it was.
        return sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*") if p.name != "lock.mdb")

    before = state()
    for line in (f"evlog replay --log {target} --type ", f"evlog replay --log {target} -s ",
                 f"evlog tail --log {target} --group ", f"evlog projection show --log {target} "):
        assert complete(line) == []  # complete() also checks exit 0 and an empty stderr (no traceback)
    assert state() == before  # nothing created or written
    assert complete("evlog replay --type ", cwd=str(tmp_path)) == []  # ./events.lmdb does not exist


def test_completion_reads_a_bounded_number_of_names(log_path: str) -> None:
    with Log(log_path) as log:
        log.append_many({"type": "tick", "stream": f"s-{n:04d}"} for n in range(1500))
    everything = complete(f"evlog replay --log {log_path} -s ")
    assert len(everything) == 200 and everything == [f"s-{n:04d}" for n in range(200)]
    assert complete(f"evlog replay --log {log_path} -s s-142") == [f"s-142{n}" for n in range(10)]
    assert complete(f"evlog replay --log {log_path} -s s-1499") == ["s-1499"]


def test_zsh_protocol_gets_the_same_names(named_log: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "evlog"],
        env=clean_env({"_EVLOG_COMPLETE": "complete_zsh",
                       "_TYPER_COMPLETE_ARGS": f"evlog replay --log {named_log} --type order."}),
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
    )
    assert result.returncode == 0 and result.stderr == b""
    assert '"order.created"' in result.stdout.decode() and '"order.shipped"' in result.stdout.decode()


# -- installing ----------------------------------------------------------------------

BASH = shutil.which("bash")
EVLOG_SCRIPT = Path(sys.executable).with_name("evlog")
needs_bash = pytest.mark.skipif(BASH is None or not EVLOG_SCRIPT.exists(), reason="needs bash and the evlog script")


def test_completion_script_for_an_explicit_shell() -> None:
    result = subprocess.run([sys.executable, "-m", "evlog"], env=clean_env({"_EVLOG_COMPLETE": "source_bash"}),
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert result.returncode == 0
    script = result.stdout.decode()
    assert "_EVLOG_COMPLETE=complete_bash" in script and "complete -o default -F _evlog_completion evlog" in script


@needs_bash
def test_show_completion_prints_a_script_that_completes_in_bash(named_log: str) -> None:
    # bash runs evlog as a child (not exec'd: `; true`), so evlog detects bash as its shell.
    shown = subprocess.run([BASH, "-c", f"{shlex.quote(sys.executable)} -m evlog --show-completion; true"],
                           env=clean_env(), capture_output=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    script = shown.stdout.decode()
    assert "_evlog_completion" in script
    probe = (
        f"{script}\n"
        f"COMP_WORDS=(evlog replay --log {shlex.quote(named_log)} --type or); COMP_CWORD=5\n"
        "_evlog_completion evlog\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    path = f"{EVLOG_SCRIPT.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    completed = subprocess.run([BASH, "--norc", "-c", probe], env=clean_env({"PATH": path}),
                               capture_output=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.decode().split() == ["order.created", "order.shipped"]


@needs_bash
def test_install_completion_writes_the_script_and_sources_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    installed = subprocess.run([BASH, "-c", f"{shlex.quote(sys.executable)} -m evlog --install-completion; true"],
                               env=clean_env({"HOME": str(home)}), capture_output=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    script = home / ".bash_completions" / "evlog.sh"
    assert "_evlog_completion" in script.read_text()
    assert f"source '{script}'" in (home / ".bashrc").read_text()
