"""Usage errors: one line in evlog's style, exit 2, with a suggestion that helps.

Every mistake the parser catches (an unknown option or command, a bad or
missing value, an extra argument) is one ``evlog: COMMAND: …`` line that says
where to look for help; binary output is refused on a terminal.
"""

from __future__ import annotations

import io
import json
import re

import msgpack
import pytest
from conftest import run_evlog
from terminal import terminal_output

from evlog import Log


@pytest.fixture
def small_log(log_path: str) -> str:
    with Log(log_path) as log:
        log.append("deposit", {"amount": 5}, stream="acct-1")
        log.append("withdraw", {"amount": 2}, stream="acct-1")
    return log_path


def usage_error(*args: str, log: str) -> str:
    result = run_evlog(*args, env={"EVLOG_PATH": log})  # no --log after the arguments under test
    assert result.returncode == 2, result.stderr.decode()
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert "Usage:" not in lines[0] and "Error:" not in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["replay", "--since", "3"],
         "evlog: replay: no such option --since; did you mean --from? (see evlog replay --help)"),
        (["replay", "--follow"], "evlog: replay: no such option --follow; did you mean evlog tail -f? "
                                 "(see evlog replay --help)"),
        (["replay", "--json"], "evlog: replay: no such option --json; did you mean -o json? (see evlog replay --help)"),
        (["tail", "--limit", "3"],
         "evlog: tail: no such option --limit; did you mean --lines? (see evlog tail --help)"),
        (["stats", "--limit", "3"], "evlog: stats: no such option --limit (see evlog stats --help)"),
        (["replay", "--templat", "{seq}"],
         "evlog: replay: no such option --templat; did you mean --template? (see evlog replay --help)"),
        (["--log", "x.lmdb", "replay"],
         "evlog: no such option --log; options go after the command (evlog COMMAND --log ...) (see evlog --help)"),
        (["group", "--log", "x.lmdb", "list"], "evlog: group: no such option --log; options go after the command "
                                               "(evlog group COMMAND --log ...) (see evlog group --help)"),
        (["replya"], "evlog: no such command replya; did you mean replay? (see evlog --help)"),
        (["fsck"], "evlog: no such command fsck; did you mean verify? (see evlog --help)"),
        (["group", "lst"], "evlog: group: no such command lst; did you mean list? (see evlog group --help)"),
        (["projection", "zzz"], "evlog: projection: no such command zzz; the commands are add, list, show, rm, "
                                "sync, status (see evlog projection --help)"),
        (["replay", "-n", "-1"], "evlog: replay: --limit/-n: -1 is out of range; give 0 or more "
                                 "(see evlog replay --help)"),
        (["replay", "-n", "many"], "evlog: replay: --limit/-n: 'many' is not a whole number; give 0 or more "
                                   "(see evlog replay --help)"),
        (["replay", "-o", "tabel"], "evlog: replay: --output/-o: 'tabel' is not one of 'auto', 'ndjson', 'json', "
                                    "'msgpack', 'table'; did you mean table? (see evlog replay --help)"),
        (["replay", "--from"], "evlog: replay: option --from needs a value (see evlog replay --help)"),
        (["replay", "extra"], "evlog: replay: unexpected extra argument extra (see evlog replay --help)"),
        (["group", "reset"], "evlog: group reset: missing argument name (see evlog group reset --help)"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_parser_errors_are_one_line_with_a_useful_suggestion(small_log: str, args: list[str], expected: str) -> None:
    assert usage_error(*args, log=small_log) == expected


def test_help_shows_number_ranges_in_words(small_log: str) -> None:
    text = run_evlog("replay", "--help", env={"COLUMNS": "150"}).stdout.decode()
    [line] = [line for line in text.splitlines() if "--limit" in line]
    assert re.search(r"-n\s+N \[0 or more\]\s+At most N events", line), line
    assert "int range" not in text and "x>=" not in text
    stats_help = run_evlog("stats", "--help", env={"COLUMNS": "150"}).stdout.decode()
    assert "N [1 to 1000]" in stats_help


@pytest.mark.parametrize(
    "args",
    [["replay", "-o", "msgpack"], ["tail", "-o", "msgpack"], ["streams", "-o", "msgpack"], ["info", "-o", "msgpack"],
     ["group", "list", "-o", "msgpack"], ["snapshot", "list", "-o", "msgpack"],
     ["projection", "list", "--output", "msgpack"], ["replay", "--fold", "s += 1", "--init", "0", "-o", "msgpack"]],
    ids=" ".join,
)
def test_msgpack_is_refused_on_a_terminal_and_written_to_a_pipe(small_log: str, args: list[str]) -> None:
    code, output, stderr = terminal_output(*args, log=small_log)
    assert (code, output) == (2, "")
    [line] = stderr.decode().splitlines()
    command = " ".join(word for word in args if not word.startswith("-") and word not in ("msgpack", "s += 1", "0"))
    assert line == (f"evlog: {command}: -o msgpack writes binary, which is not written to a terminal; pipe it or "
                    f"redirect it (evlog {command} -o msgpack > events.msgpack) (see evlog {command} --help)")
    piped = run_evlog(*args, log=small_log)
    assert piped.returncode == 0, piped.stderr.decode()
    records = list(msgpack.Unpacker(io.BytesIO(piped.stdout), raw=False))
    assert records or args[0] in ("group", "snapshot", "projection")  # no groups, snapshots or projections yet


def test_msgpack_of_a_projection_is_refused_on_a_terminal(small_log: str) -> None:
    assert run_evlog("projection", "add", "count", "--fold", "s += 1", "--init", "0", log=small_log).returncode == 0
    code, output, stderr = terminal_output("projection", "show", "count", "-o", "msgpack", log=small_log)
    assert (code, output) == (2, "")
    assert stderr.decode().startswith("evlog: projection show: -o msgpack writes binary")
    assert msgpack.unpackb(run_evlog("projection", "show", "count", "-o", "msgpack", log=small_log).stdout) == 2


def test_info_msgpack_is_the_json_facts(small_log: str) -> None:
    facts = json.loads(run_evlog("info", "-o", "json", log=small_log).stdout)
    [packed] = list(msgpack.Unpacker(io.BytesIO(run_evlog("info", "-o", "msgpack", log=small_log).stdout)))
    del packed["size_bytes"], facts["size_bytes"]
    assert packed == facts
