"""Every example in README.md runs, and prints what the README shows.

Documentation rots when its examples are only read. Here each ```console block
of the README is an example to run: a line starting with ``$ `` is a command (a
trailing ``\\`` continues it onto the next line, as in a shell), the lines after
it up to the next command are its expected stdout, a line ``...`` matches any
number of lines, and trailing whitespace is ignored. A ```python block runs too,
and when a ```text block follows it directly, that is its expected stdout. Any
other shell block (```sh, ```bash, …) or unlabelled block is refused outside
"Quick start" (installation, which CI runs itself), so no example escapes.

How it runs, and why:

- All examples run in README order in one fresh temporary directory, so a guide
  can build a log in one block and query it in the next, as a reader would. A
  block selected on its own (``-k README.md:123``) first runs the blocks before
  it, so it sees the same files.
- One ``bash`` per console block, with ``pipefail``: shell variables and
  functions live within a block, files across blocks. A marker printed after
  each command splits the output, so a failure names the command, its README
  line, its exit status and its stderr; a command that must fail says so in the
  README (``|| echo "exit $?"``).
- The environment is fixed: TZ=UTC, COLUMNS=80, NO_COLOR=1, LC_ALL=C, no EVLOG_*
  variables, HOME in the temporary directory, and the directory of this
  Python's ``evlog`` script first on PATH. stdout is a pipe, so ``auto`` output
  is NDJSON/JSON, as when a reader pipes it.
- A block that uses ``jq`` or the ``sqlite3`` shell is skipped (and says so)
  when that command is not installed; the other blocks never depend on them.
- A block that uses PostgreSQL (a ``postgresql://`` URL, ``psql``) runs against
  the session's throwaway cluster (conftest's ``pg_server``), with a database
  ``shop`` owned by the role ``app``, ``localhost`` meaning it through
  ``PGPORT`` and the password in ``PGPASSFILE``; where no cluster can start it
  is skipped, and fails in CI, as every test that needs the server.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
TIMEOUT = 60.0
"""The longest a block may run (the whole README takes well under that)."""

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
SHELL_LANGUAGES = {"sh", "bash", "shell", "zsh", "ksh", "fish", "shell-session", "shellsession"}
INSTALLATION_SECTION = "Quick start"
USES_JQ = re.compile(r"(?<![\w.-])jq(?![\w.-])")
USES_SQLITE3 = re.compile(r"(?<![\w.-])sqlite3(?![\w.-])")
USES_PSQL = re.compile(r"(?<![\w.-])psql(?![\w.-])")
USES_POSTGRES = re.compile(r"postgresql://|(?<![\w.-])psql(?![\w.-])")
ANY_LINES = "..."


@dataclass(frozen=True)
class Command:
    """One ``$ `` command of a console block and the stdout it should print."""

    line: int
    source: str  # as in the README, continuation lines joined with newlines
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    """A fenced block of the README."""

    line: int  # of the opening fence, 1-based
    language: str
    section: str  # the enclosing "## " heading
    body: tuple[str, ...]
    follows_previous: bool = False  # only blank lines between this block and the one before


@dataclass(frozen=True)
class Example:
    """A console block (commands) or a python block (code, with its expected stdout or None)."""

    line: int
    kind: str
    commands: tuple[Command, ...] = ()
    code: str = ""
    expected: tuple[str, ...] | None = None

    @property
    def id(self) -> str:
        return f"README.md:{self.line}"

    def uses_postgres(self) -> bool:
        return any(USES_POSTGRES.search(command.source) for command in self.commands)

    def missing_tool(self, path: str) -> str | None:
        """A command the block runs that is not on ``path`` (jq, the sqlite3 shell), or None."""
        for tool, pattern in (("jq", USES_JQ), ("sqlite3", USES_SQLITE3), ("psql", USES_PSQL)):
            runs = any(pattern.search(command.source) for command in self.commands)
            if runs and shutil.which(tool, path=path) is None:
                return tool
        return None


# -- reading the README --------------------------------------------------------


def fenced_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with their line and section."""
    blocks: list[Block] = []
    lines = text.splitlines()
    section = ""
    index = 0
    last_end = -2
    while index < len(lines):
        line = lines[index]
        opening = FENCE.match(line)
        if opening is None:
            if line.startswith("## "):
                section = line[3:].strip()
            index += 1
            continue
        fence = opening["fence"]
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[end]):
            body.append(lines[end])
            end += 1
        between = lines[last_end + 1 : index]
        follows = last_end >= 0 and all(not gap.strip() for gap in between)
        blocks.append(Block(index + 1, opening["info"].lower(), section, tuple(body), follows))
        last_end = end
        index = end + 1
    return blocks


def console_commands(block: Block) -> tuple[Command, ...]:
    """Split a console block into commands and their expected output."""
    commands: list[Command] = []
    body = list(block.body)
    index = 0
    while index < len(body):
        line = body[index]
        if not line.startswith("$ "):
            if line.strip():
                raise ValueError(f"README.md:{block.line + 1 + index}: output before any `$ ` command")
            index += 1
            continue
        start = index
        source = [line[2:]]
        while source[-1].endswith("\\") and index + 1 < len(body):
            index += 1
            source.append(body[index])
        index += 1
        expected: list[str] = []
        while index < len(body) and not body[index].startswith("$ "):
            expected.append(body[index].rstrip())
            index += 1
        while expected and not expected[-1]:
            expected.pop()
        commands.append(Command(block.line + 1 + start, "\n".join(source), tuple(expected)))
    if not commands:
        raise ValueError(f"README.md:{block.line}: a console block without a `$ ` command")
    return tuple(commands)


def examples(blocks: Sequence[Block]) -> list[Example]:
    """The runnable examples, in README order."""
    found: list[Example] = []
    for index, block in enumerate(blocks):
        if block.language == "console":
            found.append(Example(block.line, "console", commands=console_commands(block)))
        elif block.language == "python":
            after = blocks[index + 1] if index + 1 < len(blocks) else None
            expected = None
            if after is not None and after.language == "text" and after.follows_previous:
                expected = trimmed(after.body)
            found.append(Example(block.line, "python", code="\n".join(block.body) + "\n", expected=expected))
    return found


def unrun_shell_blocks(blocks: Sequence[Block]) -> list[str]:
    """Blocks that look like shell but would not be run: allowed only for installation."""
    return [
        f"README.md:{block.line}: ```{block.language or '(no language)'} in section {block.section!r}"
        for block in blocks
        if (block.language in SHELL_LANGUAGES or not block.language) and block.section != INSTALLATION_SECTION
    ]


def trimmed(lines: Sequence[str]) -> tuple[str, ...]:
    """Lines without trailing whitespace, and without blank lines at the end."""
    result = [line.rstrip() for line in lines]
    while result and not result[-1]:
        result.pop()
    return tuple(result)


def lines_match(expected: Sequence[str], actual: Sequence[str]) -> bool:
    """Whether ``actual`` matches ``expected``, where a ``...`` line matches any number of lines."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(expected):
            return j == len(actual)
        if expected[i] == ANY_LINES:
            return any(match(i + 1, k) for k in range(j, len(actual) + 1))
        return j < len(actual) and expected[i] == actual[j] and match(i + 1, j + 1)

    return match(0, 0)


# -- running -------------------------------------------------------------------


@dataclass
class Outcome:
    """What one command printed; ``status`` is None when the shell never finished it."""

    status: int | None
    stdout: tuple[str, ...]
    stderr: str


@dataclass
class Session:
    """One temporary directory in which the README's examples run in order."""

    directory: Path
    env: dict[str, str]
    examples: list[Example]
    done: dict[int, str | None] = field(default_factory=dict)  # example index -> failure, if any
    postgres: bool = False  # the PostgreSQL blocks have a server

    def use_postgres(self, request: pytest.FixtureRequest) -> None:
        """Point libpq's ``localhost`` at the session's cluster, with a database ``shop`` (once)."""
        if self.postgres:
            return
        import pgserver

        server = request.getfixturevalue("pg_server")  # skips, or fails in CI, where none can start
        pgserver.create_database(server, "shop")
        self.env.update(PGPORT=str(server.port), PGPASSFILE=os.environ["PGPASSFILE"])
        self.postgres = True

    def run_up_to(self, index: int) -> None:
        """Run the examples before ``index`` that have not run yet (their failures are noted)."""
        for earlier in range(index):
            if earlier not in self.done:
                example = self.examples[earlier]
                if example.missing_tool(self.env["PATH"]) is not None or (
                        example.uses_postgres() and not self.postgres):
                    self.done[earlier] = None
                    continue
                self.done[earlier] = self.check(example)

    def check(self, example: Example) -> str | None:
        """Run one example; the first difference from the README as a message, or None."""
        if example.kind == "python":
            return self.check_python(example)
        outcomes = self.run_console(example)
        for command, outcome in zip(example.commands, outcomes, strict=True):
            problem = describe_difference(command.expected, outcome)
            if problem:
                return f"README.md:{command.line}: $ {command.source}\n{problem}"
        return None

    def run_console(self, example: Example) -> list[Outcome]:
        marker = f"--readme-example-{secrets.token_hex(8)}--"
        script = ["set -o pipefail"]
        for command in example.commands:
            script += [
                command.source,
                f"printf '\\n{marker} %s\\n' \"$?\"",
                f"printf '\\n{marker}\\n' >&2",
            ]
        shell_status, stdout, stderr = self.execute(["bash", "-c", "\n".join(script) + "\n"])
        # [out 1, status 1, out 2, status 2, ..., rest]: a command without a status never finished.
        outs = re.split(rf"\n{marker} (\d+)\n", stdout)
        errs = stderr.split(f"\n{marker}\n")
        outcomes = []
        for number in range(len(example.commands)):
            finished = 2 * number + 1 < len(outs)
            text = outs[2 * number] if 2 * number < len(outs) else ""
            err = errs[number] if number < len(errs) else ""
            status = int(outs[2 * number + 1]) if finished else None
            if not finished and shell_status is not None and number == len(outs) // 2:
                err += f"\n(the shell ended here, with exit status {shell_status})"
            outcomes.append(Outcome(status, trimmed(text.splitlines()), err))
        return outcomes

    def check_python(self, example: Example) -> str | None:
        status, stdout, stderr = self.execute([sys.executable, "-c", example.code])
        printed = trimmed(stdout.splitlines()) if example.expected is not None else ()
        problem = describe_difference(example.expected or (), Outcome(status, printed, stderr))
        return f"README.md:{example.line}: the python block\n{problem}" if problem else None

    def execute(self, argv: list[str]) -> tuple[int | None, str, str]:
        """Run ``argv`` in the directory: its exit status (None if it was killed), stdout and stderr.

        It leads a process group of its own. When it ends (or outlives TIMEOUT), what is
        left of the group is killed: a background job outlives its block by mistake only,
        and must neither hold the pipes open nor run on into the next block.
        """
        process = subprocess.Popen(
            argv, cwd=self.directory, env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        chunks: dict[int, list[bytes]] = {1: [], 2: []}
        readers = [
            threading.Thread(target=lambda f=pipe, out=chunks[n]: out.extend(iter(f.read1, b"")), daemon=True)
            for n, pipe in ((1, process.stdout), (2, process.stderr))
            if pipe is not None
        ]
        for reader in readers:
            reader.start()
        status: int | None
        try:
            status = process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            status = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for reader in readers:
            reader.join(timeout=TIMEOUT)
        out, err = (b"".join(chunks[n]).decode(errors="replace") for n in (1, 2))
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        if status is None:
            err += f"\n(killed after {TIMEOUT:.0f} s)"
        return status, out, err


def describe_difference(expected: Sequence[str], outcome: Outcome) -> str:
    """Why an outcome is not what the README shows, or "" when it is."""
    if outcome.status == 0 and lines_match(expected, outcome.stdout):
        return ""
    if outcome.status is None:
        why = "did not finish (the shell stopped or was killed before it ended)"
    elif outcome.status != 0:
        why = f"exit status {outcome.status} (show an expected failure with `|| echo \"exit $?\"`)"
    else:
        why = "stdout differs from the README (- README, + actual)"
    diff = "\n".join(difflib.unified_diff(list(expected), list(outcome.stdout), "README", "actual", lineterm="", n=2))
    parts = [why, diff or "stdout:\n" + "\n".join(outcome.stdout)]
    if outcome.stderr.strip():
        parts.append("stderr:\n" + outcome.stderr.strip())
    return "\n".join(parts)


# -- the tests -------------------------------------------------------------------

BLOCKS = fenced_blocks(README.read_text(encoding="utf-8"))
EXAMPLES = examples(BLOCKS)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    evlog = BIN / "evlog"
    assert os.access(evlog, os.X_OK), f"no evlog script beside {sys.executable}: install the package first"
    directory = tmp_path_factory.mktemp("readme")
    home = tmp_path_factory.mktemp("home")
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVLOG_")}
    env.update(
        PATH=os.pathsep.join([str(BIN), env.get("PATH", os.defpath)]),
        TZ="UTC", COLUMNS="80", NO_COLOR="1", LC_ALL="C", HOME=str(home),
    )
    env.pop("PYTHONPATH", None)
    yield Session(directory, env, EXAMPLES)


@pytest.mark.parametrize("index", range(len(EXAMPLES)), ids=[example.id for example in EXAMPLES])
def test_readme_example(session: Session, index: int, request: pytest.FixtureRequest) -> None:
    example = EXAMPLES[index]
    missing = example.missing_tool(session.env["PATH"])
    if missing is not None:
        pytest.skip(f"{example.id} runs {missing}, which is not on PATH")
    if example.uses_postgres():
        session.use_postgres(request)
    session.run_up_to(index)
    problem = session.check(example)
    session.done[index] = problem
    if problem:
        earlier = [EXAMPLES[i].id for i, failure in session.done.items() if failure and i < index]
        if earlier:
            problem += f"\n(earlier examples failed too, which may explain this: {', '.join(earlier)})"
        pytest.fail(problem, pytrace=False)


def test_readme_has_examples() -> None:
    assert any(example.kind == "console" for example in EXAMPLES)
    assert any(example.kind == "python" for example in EXAMPLES)


def test_every_shell_block_outside_installation_is_an_example() -> None:
    unrun = unrun_shell_blocks(BLOCKS)
    assert not unrun, "write these as ```console examples (or ```text for plain text):\n" + "\n".join(unrun)


# -- the convention itself -------------------------------------------------------


def test_console_blocks_split_into_commands_and_their_output() -> None:
    text = "# T\n\n```console\n$ printf 'a\\n' \\\n    'b'\na   \n...\n\n$ true\n```\n"
    (block,) = fenced_blocks(text)
    first, second = console_commands(block)
    assert (first.line, first.source, first.expected) == (4, "printf 'a\\n' \\\n    'b'", ("a", "..."))
    assert (second.line, second.source, second.expected) == (9, "true", ())


def test_a_text_block_directly_after_python_is_its_output() -> None:
    text = "```python\nprint(1)\n```\n\n```text\n1\n```\n\n```python\npass\n```\ntext\n```text\nx\n```\n"
    first, second = examples(fenced_blocks(text))
    assert first.expected == ("1",) and second.expected is None


def test_three_dots_match_any_number_of_lines() -> None:
    assert lines_match(["a", "...", "z"], ["a", "z"])
    assert lines_match(["a", "...", "z"], ["a", "b", "c", "z"])
    assert lines_match(["...", "z"], ["z"])
    assert not lines_match(["a", "...", "z"], ["a", "b"])
    assert not lines_match(["a"], ["a", "b"])


def test_shell_blocks_are_allowed_only_for_installation() -> None:
    text = "## Quick start\n\n```sh\nmake\n```\n\n## Use\n\n```bash\nls\n```\n\n```\nls\n```\n\n```json\n{}\n```\n"
    assert unrun_shell_blocks(fenced_blocks(text)) == [
        "README.md:9: ```bash in section 'Use'",
        "README.md:13: ```(no language) in section 'Use'",
    ]
