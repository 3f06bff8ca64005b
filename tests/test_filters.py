"""``--stream`` and ``--type`` take one pattern language: exact names and shell globs, for every reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_evlog

from evlog import Log

STREAMS = ["user-10", "user-20", "user-21", "user-3", "admin-10", "a[1]", "a1"]


@pytest.fixture
def users(tmp_path: Path) -> str:
    path = str(tmp_path / "events.lmdb")
    with Log(path) as log:
        log.append_many(
            {"type": "login" if n % 2 else "user.logout", "stream": stream, "data": {"n": n}}
            for n, stream in enumerate(STREAMS, 1)
        )
    return path


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["user-20"], ["user-20"]),  # an exact name: through the stream index
        (["user-20", "user-3"], ["user-20", "user-3"]),
        (["user-*"], ["user-10", "user-20", "user-21", "user-3"]),  # a prefix
        (["user-*0"], ["user-10", "user-20"]),  # silently matched nothing before
        (["*-10"], ["user-10", "admin-10"]),
        (["user-?"], ["user-3"]),
        (["user-2[01]", "admin-*"], ["user-20", "user-21", "admin-10"]),
        (["a[[]1]"], ["a[1]"]),  # a glob character itself, as fnmatch escapes it
        (["a[1]"], ["a1"]),
        (["nobody-*"], []),
    ],
)
def test_stream_patterns_are_shell_globs_everywhere(users: str, patterns: list[str], expected: list[str]) -> None:
    with Log(users) as log:
        assert [event.stream for event in log.read(streams=patterns)] == expected
    options = [arg for pattern in patterns for arg in ("-s", pattern)]
    replayed = run_evlog("replay", *options, "--template", "{stream}", log=users)
    assert (replayed.returncode, replayed.stdout.decode().split()) == (0, expected)
    folded = run_evlog("replay", *options, "--fold", "s + [e.stream]", "--init", "[]", log=users)
    assert folded.returncode == 0, folded.stderr
    assert folded.stdout.decode().strip() == "[" + ",".join(f'"{name}"' for name in expected) + "]"
    tailed = run_evlog("tail", "-n", "100", *options, "--template", "{stream}", log=users)
    assert (tailed.returncode, tailed.stdout.decode().split()) == (0, expected)


def test_types_and_streams_share_the_language(users: str) -> None:
    result = run_evlog("replay", "-t", "user.*", "-s", "user-*0", "--template", "{seq} {type}", log=users)
    assert result.stdout.decode().splitlines() == ["2 user.logout"]
    result = run_evlog("replay", "-t", "log?n", "-s", "user-[23]*", "--template", "{seq}", log=users)
    assert result.stdout.decode().split() == ["3"]
