"""`--log` pointing at things that are not evlog logs, or not logs this evlog can use.

Every command gets a clear one-line message and the documented exit code
(66: no log there; 74: the path is not an evlog log, or one of a newer
format), and writes nothing into what it was pointed at: the bytes of every
file (and the contents of every LMDB database) are the same afterwards, no
file is added (``lock.mdb`` aside, which LMDB itself maintains), and a backup
destination is not created. Appending creates a log only where the README
says it may: a path that does not exist, or an empty directory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import lmdb
import pytest
from conftest import run_evlog

from evlog import Log

READ_COMMANDS: list[list[str]] = [
    ["info"],
    ["verify"],
    ["replay"],
    ["replay", "--fold", "s[e.type] = 1"],
    ["snapshot", "list"],
    ["projection", "list"],
]
APPEND_STDIN = b'{"type": "intruder", "data": 1}\n'


def file_state(path: Path) -> dict[str, Any]:
    """What is at ``path``: each file's size, hash and mtime (lock.mdb: only that it exists)."""
    if path.is_file():
        return {".": (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)}
    if not path.exists():
        return {}
    state: dict[str, Any] = {}
    for child in sorted(path.iterdir()):
        if child.name == "lock.mdb":
            state[child.name] = "exists"
        else:
            data = child.read_bytes()
            state[child.name] = (len(data), hashlib.sha256(data).hexdigest(), child.stat().st_mtime_ns)
    return state


def lmdb_contents(path: Path) -> dict[bytes | None, list[tuple[bytes, bytes]]]:
    """Every key and value of every database of an LMDB environment (read with lmdb itself)."""
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=64, lib_version=0)
    try:
        with env.begin() as txn:
            main = list(txn.cursor())
        contents: dict[bytes | None, list[tuple[bytes, bytes]]] = {None: main}
        for name, _ in main:
            try:
                db = env.open_db(name, create=False)
            except lmdb.Error:
                continue  # a plain key of the main database, not a named database
            with env.begin() as txn:
                contents[name] = list(txn.cursor(db=db))
        return contents
    finally:
        env.close()


def run_every_command(target: Path, tmp_path: Path) -> list[tuple[list[str], Any]]:
    """Each read command, a backup, and both kinds of append, on ``target``."""
    runs = []
    for command in READ_COMMANDS:
        runs.append((command, run_evlog(*command, log=str(target))))
    dest = tmp_path / "backup-dest"
    runs.append((["backup"], run_evlog("backup", str(dest), log=str(target))))
    assert not dest.exists(), "a backup of something that is no log created its destination"
    runs.append((["append", "-"], run_evlog("append", log=str(target), input=APPEND_STDIN)))
    runs.append((["append", "one"], run_evlog("append", "intruder", "n:=1", log=str(target))))
    return runs


def assert_refused_by_all(runs: list[tuple[list[str], Any]], code: int, words: str) -> None:
    for command, run in runs:
        text = run.stderr.decode()
        assert run.returncode == code, (command, text)
        assert b"Traceback" not in run.stderr and run.stdout == b"", (command, text)
        assert text.startswith("evlog: ") and text.count("\n") == 1, (command, text)
        assert words in text, (command, text)


# -- things that are not logs -------------------------------------------------------


def test_a_plain_file(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_bytes(b"just some text\n")
    before = file_state(target)
    assert_refused_by_all(run_every_command(target, tmp_path), 74, "is a file, not a log")
    assert file_state(target) == before


def test_a_path_that_does_not_exist(tmp_path: Path) -> None:
    target = tmp_path / "missing.lmdb"
    for command in READ_COMMANDS:
        run = run_evlog(*command, log=str(target))
        assert (run.returncode, run.stdout) == (66, b""), (command, run.stderr)
        assert run.stderr.startswith(b"evlog: no log at ")
        assert not target.exists()  # reading creates nothing
    run = run_evlog("append", "first", log=str(target))  # appending creates the log (README)
    assert (run.returncode, run.stdout) == (0, b"1\n")
    assert run_evlog("verify", log=str(target)).returncode == 0


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ("missing-parent/sub/events.lmdb", "does not exist; create it first (mkdir -p "),
        ("notes.txt/events.lmdb", "a part of that path is a file, not a directory"),
    ],
)
def test_a_path_that_cannot_be_made(tmp_path: Path, where: str, words: str) -> None:
    (tmp_path / "notes.txt").write_bytes(b"just some text\n")
    target = tmp_path / where
    for command in READ_COMMANDS:
        run = run_evlog(*command, log=str(target))
        assert (run.returncode, run.stdout) == (66, b""), (command, run.stderr)
        assert run.stderr.startswith(b"evlog: no log at ")
    one = run_evlog("append", "x", log=str(target))
    assert_refused_by_all([(["append", "x"], one)], 74, words)
    many = run_evlog("append", log=str(target), input=APPEND_STDIN)
    assert (many.returncode, many.stdout) == (74, b"")
    assert many.stderr.decode() == one.stderr.decode() + "evlog: nothing was written\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]  # nothing was made


def test_an_empty_path(tmp_path: Path) -> None:
    runs = [(command, run_evlog(*command, log="")) for command in [*READ_COMMANDS, ["tail", "-f", "--wait"]]]
    runs.append((["backup"], run_evlog("backup", str(tmp_path / "copy"), log="")))
    runs.append((["append", "-"], run_evlog("append", log="", input=APPEND_STDIN)))
    runs.append((["append", "one"], run_evlog("append", "intruder", "n:=1", log="")))
    assert_refused_by_all(runs, 2, "the log path is empty; name the log's directory")
    log = str(tmp_path / "events.lmdb")
    run_evlog("append", "x", log=log)
    refused = run_evlog("backup", "", log=log)
    assert refused.returncode == 2
    assert refused.stderr == b"evlog: the backup destination is empty; name a new or empty directory\n"


def test_an_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    for command in READ_COMMANDS:
        run = run_evlog(*command, log=str(target))
        assert (run.returncode, run.stdout) == (66, b""), (command, run.stderr)
        assert b"holds no data.mdb" in run.stderr
        assert list(target.iterdir()) == []
    dest = tmp_path / "backup-dest"
    assert run_evlog("backup", str(dest), log=str(target)).returncode == 66
    assert not dest.exists()
    # "append an event to create a log there"
    run = run_evlog("append", log=str(target), input=APPEND_STDIN)
    assert (run.returncode, run.stderr) == (0, b"")
    assert run_evlog("verify", log=str(target)).returncode == 0
    with Log(str(target)) as log:
        assert [e.type for e in log.read()] == ["intruder"]


def test_a_directory_of_other_files(tmp_path: Path) -> None:
    target = tmp_path / "photos"
    target.mkdir()
    (target / "cat.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)))
    (target / "notes.txt").write_text("hello\n")
    before = file_state(target)
    runs = run_every_command(target, tmp_path)
    # A directory of other files can never become a log: every command says so (74).
    assert_refused_by_all(runs, 74, "a directory with other files")
    assert file_state(target) == before


def test_a_data_file_that_is_not_lmdb(tmp_path: Path) -> None:
    target = tmp_path / "fake.lmdb"
    target.mkdir()
    (target / "data.mdb").write_bytes(b"not an LMDB file at all " * 1000)
    before = file_state(target)
    assert_refused_by_all(run_every_command(target, tmp_path), 74, "not a readable LMDB environment")
    after = file_state(target)
    after.pop("lock.mdb", None)  # LMDB creates its lock file on open, before it reads data.mdb
    assert after == before


# -- other programs' LMDB environments ------------------------------------------------


def make_foreign_named(path: Path) -> None:
    env = lmdb.open(str(path), max_dbs=4, lib_version=0)
    things = env.open_db(b"things")
    with env.begin(write=True) as txn:
        for i in range(50):
            txn.put(b"thing-%03d" % i, b"value %d" % i, db=things)
    env.close()


def make_foreign_main_only(path: Path) -> None:
    env = lmdb.open(str(path), lib_version=0)
    with env.begin(write=True) as txn:
        for i in range(50):
            txn.put(b"key-%03d" % i, b"value %d" % i)
    env.close()


def make_foreign_with_a_meta_db(path: Path) -> None:
    """Another program that happens to call one of its databases "meta"."""
    env = lmdb.open(str(path), max_dbs=4, lib_version=0)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"owner", b"someone else", db=meta)
    env.close()


@pytest.mark.parametrize("make", [make_foreign_named, make_foreign_with_a_meta_db])
def test_another_programs_lmdb_environment(tmp_path: Path, make: Any) -> None:
    target = tmp_path / "theirs"
    make(target)
    before_files, before_data = file_state(target), lmdb_contents(target)
    assert_refused_by_all(run_every_command(target, tmp_path), 74, "LMDB environment of another program")
    assert lmdb_contents(target) == before_data
    assert file_state(target) == before_files


def test_another_programs_environment_with_only_a_main_database(tmp_path: Path) -> None:
    target = tmp_path / "theirs"
    make_foreign_main_only(target)
    before_data = lmdb_contents(target)
    runs = run_every_command(target, tmp_path)
    assert lmdb_contents(target) == before_data, "evlog wrote into another program's environment"
    assert_refused_by_all(runs, 74, "LMDB environment of another program")


def test_an_empty_lmdb_environment_becomes_a_log_on_append(tmp_path: Path) -> None:
    """An environment with no data at all is an empty one: reads find no log, an append creates it."""
    target = tmp_path / "blank"
    lmdb.open(str(target), lib_version=0).close()
    for command in READ_COMMANDS:
        run = run_evlog(*command, log=str(target))
        assert run.returncode == 66 and b"empty" in run.stderr, (command, run.stderr)
    assert run_evlog("append", "first", log=str(target)).returncode == 0
    assert run_evlog("verify", log=str(target)).returncode == 0


def test_an_empty_data_file_becomes_a_log_on_append(tmp_path: Path) -> None:
    """A 0-byte data.mdb (a process killed while creating the log) takes an append."""
    target = tmp_path / "half-made"
    target.mkdir()
    (target / "data.mdb").write_bytes(b"")
    run = run_evlog("append", "first", log=str(target))
    assert (run.returncode, run.stdout, run.stderr) == (0, b"1\n", b"")
    assert run_evlog("verify", log=str(target)).returncode == 0


def test_an_empty_data_file_is_no_log_for_readers(tmp_path: Path) -> None:
    target = tmp_path / "half-made"
    target.mkdir()
    (target / "data.mdb").write_bytes(b"")
    for command in READ_COMMANDS:
        run = run_evlog(*command, log=str(target))
        assert b"Traceback" not in run.stderr
        assert run.returncode == 66 and run.stderr.startswith(b"evlog: no log at "), (command, run.stderr)
    assert (target / "data.mdb").stat().st_size == 0


# -- a log of a newer format ----------------------------------------------------------


def test_a_log_of_a_newer_format(tmp_path: Path) -> None:
    target = tmp_path / "future.lmdb"
    made = run_evlog("append", "--log", str(target), input=b'{"type": "old", "stream": "s", "id": "x"}\n')
    assert made.returncode == 0
    env = lmdb.open(str(target), max_dbs=16, lib_version=0)
    meta = env.open_db(b"meta", create=False)
    with env.begin(write=True) as txn:
        txn.put(b"format", b"99", db=meta)
    env.close()
    before_files, before_data = file_state(target), lmdb_contents(target)
    assert_refused_by_all(run_every_command(target, tmp_path), 74, "format 99, newer than this evlog")
    assert lmdb_contents(target) == before_data
    assert file_state(target) == before_files
