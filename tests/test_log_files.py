"""The files of a log directory: never followed through a symlink, private when new, readable when read-only.

LMDB opens ``data.mdb`` and ``lock.mdb`` with ``O_CREAT`` and follows
symlinks; evlog checks each of its files with ``lstat`` before LMDB sees
them. A log the user cannot write (another user's, an archived read-only
copy) is read without LMDB's lock, as ``sqlite3 -readonly`` reads a file.
"""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import shutil
import stat
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_evlog

from evlog import Log
from evlog.cli import main

READERS = {
    "info": ["info", "-o", "json"],
    "replay": ["replay", "-o", "ndjson"],
    "verify": ["verify"],
    "stats": ["stats", "-o", "json"],
    "streams": ["streams", "-o", "json"],
    "tail": ["tail", "-n", "1", "-o", "ndjson"],
    "fold": ["replay", "--fold", "s + 1", "--init", "0"],
}


def make_log(path: str | Path, events: int = 3) -> None:
    with Log(str(path)) as log:
        log.append_many([{"type": "a", "stream": "s", "data": {"n": n}} for n in range(events)])


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- symlinks, FIFOs -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["lock.mdb", "data.mdb", "commits", "group-6a6f62.lock"])
def test_a_symlink_in_the_log_is_refused_and_its_target_left_alone(tmp_path: Path, name: str) -> None:
    log = tmp_path / "events.lmdb"
    make_log(log)
    target = tmp_path / "precious"
    if name == "data.mdb":
        shutil.copy(log / "data.mdb", target)  # a real log file elsewhere: still not followed
    else:
        target.write_bytes(b"the user's own file\n")
    before = target.read_bytes(), os.stat(target).st_mtime_ns
    (log / name).unlink(missing_ok=True)
    (log / name).symlink_to(target)
    for args in [*READERS.values(), ["append", "x"], ["backup", str(tmp_path / "copy")]]:
        result = run_evlog(*args, log=str(log))
        assert result.returncode == 74, (args, result.stderr)
        assert result.stderr.decode() == (
            f"evlog: {log}/{name} is a symbolic link, not a regular file; a log's files must be regular "
            "files: nothing was opened (remove it if the log came from someone else)\n"
        )
    assert (target.read_bytes(), os.stat(target).st_mtime_ns) == before
    assert not (tmp_path / "copy").exists()


def test_a_dangling_commits_symlink_creates_nothing(tmp_path: Path) -> None:
    log = tmp_path / "events.lmdb"
    make_log(log)
    (log / "commits").unlink()
    (log / "commits").symlink_to(tmp_path / "planted")
    result = run_evlog("append", "x", log=str(log))
    assert result.returncode == 74 and b"commits is a symbolic link" in result.stderr
    assert not (tmp_path / "planted").exists()


def test_a_fifo_as_the_data_file_is_refused_without_hanging(tmp_path: Path) -> None:
    for existing in (True, False):
        log = tmp_path / f"events-{existing}.lmdb"
        if existing:
            make_log(log)
            (log / "data.mdb").unlink()
        else:
            log.mkdir()
        os.mkfifo(log / "data.mdb")
        for args in (["append", "x"], ["info"], ["verify"]):
            result = run_evlog(*args, log=str(log), timeout=20)
            assert result.returncode == 74
            assert result.stderr.decode().endswith("data.mdb is a FIFO, not a regular file; a log's files must be "
                                                   "regular files: nothing was opened (remove it if the log came "
                                                   "from someone else)\n")


def test_a_log_directory_that_is_a_symlink_is_followed(tmp_path: Path) -> None:
    make_log(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert run_evlog("append", "y", log=str(tmp_path / "link")).returncode == 0
    result = run_evlog("replay", "-o", "ndjson", log=str(tmp_path / "link"))
    assert (result.returncode, result.stdout.count(b"\n")) == (0, 4)


# -- permissions ---------------------------------------------------------------------


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("value", [0o022, 0o000, 0o077])
def test_a_new_log_is_private_whatever_the_umask(tmp_path: Path, value: int) -> None:
    with umask(value):
        by_command = tmp_path / "command.lmdb"
        assert run_evlog("append", "x", log=str(by_command)).returncode == 0
        by_library = tmp_path / "library.lmdb"
        make_log(by_library)
        copy = tmp_path / "copy"
        assert run_evlog("backup", str(copy), log=str(by_command)).returncode == 0
        compact = tmp_path / "compact"
        assert run_evlog("backup", "--compact", str(compact), log=str(by_command)).returncode == 0
    for log in (by_command, by_library, copy, compact):
        assert mode(log) == 0o700, log
        for name in os.listdir(log):
            assert mode(log / name) == 0o600, (log, name)
    assert {"data.mdb", "lock.mdb", "commits"} <= set(os.listdir(by_command))


def test_an_existing_log_keeps_its_permissions(tmp_path: Path) -> None:
    log = tmp_path / "events.lmdb"
    make_log(log)
    os.chmod(log, 0o750)
    for name in os.listdir(log):
        os.chmod(log / name, 0o640)
    assert run_evlog("append", "x", log=str(log)).returncode == 0
    assert run_evlog("info", log=str(log)).returncode == 0
    assert mode(log) == 0o750
    assert {name: mode(log / name) for name in os.listdir(log)} == dict.fromkeys(os.listdir(log), 0o640)


# -- backup destinations -------------------------------------------------------------


def test_a_backup_into_the_log_or_through_a_symlink_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "events.lmdb"
    make_log(log)
    (tmp_path / "empty").mkdir()
    (tmp_path / "to-empty").symlink_to(tmp_path / "empty")
    (tmp_path / "to-log").symlink_to(log)
    cases = {
        str(log): "it is inside the log",
        str(log / "copy"): "it is inside the log",
        str(tmp_path / "to-log" / "copy"): "it is inside the log",
        str(tmp_path / "to-empty"): "it is a symbolic link",
    }
    for dest, reason in cases.items():
        result = run_evlog("backup", dest, log=str(log))
        assert result.returncode == 2, dest
        assert result.stderr.decode().startswith(f"evlog: cannot back up to {dest}: {reason}")
    assert sorted(os.listdir(log)) == ["commits", "data.mdb", "lock.mdb"]
    assert os.listdir(tmp_path / "empty") == []


# -- logs the user cannot write ------------------------------------------------------


def _import_commands(scratch: Path) -> None:
    """Run each command once here, on a log of our own, so that the forked children find every module
    imported: a process that gave up root cannot read this interpreter's standard library."""
    log = scratch / "warm-up.lmdb"
    make_log(log)
    with contextlib.suppress(SystemExit):
        main(["projection", "add", "count", "--fold", "s + 1", "--init", "0", "--log", str(log)])
    for args in [*READERS.values(), ["backup", str(scratch / "warm-up-copy")], ["projection", "show", "count"]]:
        with contextlib.suppress(SystemExit):
            main([*args, "--log", str(log)])
    shutil.rmtree(log)
    shutil.rmtree(scratch / "warm-up-copy")


def run_evlog_in_process(args: list[str], *, uid: int | None = None) -> tuple[int, bytes, bytes]:
    """``evlog ARGS`` in a forked child (as user ``uid`` when given): exit status, stdout, stderr."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 70
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False))
                sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), line_buffering=True)
                if uid is not None:
                    os.setgroups([])
                    os.setgid(uid)
                    os.setuid(uid)
                main(args)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return os.waitstatus_to_exitcode(status), out.read(), err.read()


@pytest.fixture
def other_user() -> int | None:
    """The uid to read as: nobody when the tests run as root (who ignores permissions), else ourselves."""
    if os.getuid() != 0:
        return None
    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("running as root and there is no user 'nobody' to read a log as")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that another user can enter (pytest's tmp_path is private to us)."""
    path = Path(tempfile.mkdtemp(prefix="evlog-shared-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        for root, dirs, _ in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
        shutil.rmtree(path)


@pytest.mark.parametrize("layout", ["read-only-copy", "another-users-log"])
def test_a_log_the_user_cannot_write_is_read_without_a_lock(
    shared_dir: Path, other_user: int | None, layout: str
) -> None:
    _import_commands(shared_dir)
    log = shared_dir / "events.lmdb"
    make_log(log)
    added = run_evlog("projection", "add", "count", "--fold", "s + 1", "--init", "0", "--snapshot-every", "1",
                      log=str(log))
    assert added.returncode == 0, added.stderr
    if layout == "read-only-copy":  # an archived backup: nothing in it writable
        for name in os.listdir(log):
            os.chmod(log / name, 0o444)
        os.chmod(log, 0o555)
    else:  # another user's log, made with umask 022
        os.chmod(log, 0o755)
        for name in os.listdir(log):
            os.chmod(log / name, 0o644)
    before = {name: (log / name).read_bytes() for name in os.listdir(log)}
    dest = shared_dir / "backups"
    dest.mkdir(mode=0o777)
    os.chmod(dest, 0o777)
    commands = {**READERS, "backup": ["backup", str(dest / "copy")], "projection": ["projection", "show", "count"]}
    for name, args in commands.items():
        code, out, err = run_evlog_in_process([*args, "--log", str(log)], uid=other_user)
        assert code == 0, (name, err)
        lines = err.decode().splitlines()
        assert lines[0] == (
            f"evlog: {log} is not writable here: reading it without a lock, which is safe only while nobody "
            "writes to it"
        ), name
        if name == "projection":  # it may not save its snapshots here, and says so; the answer is whole
            assert out == b"3\n"
        else:
            assert all(line.startswith("evlog: ok") for line in lines[1:]), (name, lines)
        if name == "replay":
            assert out.count(b"\n") == 3
    assert {name: (log / name).read_bytes() for name in os.listdir(log)} == before
    assert run_evlog("verify", log=str(dest / "copy")).returncode == 0


def test_a_log_the_user_cannot_read_fails_every_command(
    shared_dir: Path, other_user: int | None
) -> None:
    _import_commands(shared_dir)
    log = shared_dir / "events.lmdb"
    make_log(log)
    os.chmod(log, 0o755)
    for name in os.listdir(log):
        os.chmod(log / name, 0o600 if other_user is not None else 0o000)
    for name, args in {**READERS, "backup": ["backup", str(shared_dir / "copy")]}.items():
        code, _, err = run_evlog_in_process([*args, "--log", str(log)], uid=other_user)
        assert code == 74, (name, code, err)
        assert err.decode().endswith("Permission denied; check the permissions of the log directory\n"), (name, err)
