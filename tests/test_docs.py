"""The documentation agrees with the program.

Each command has help text naming its options, every option a command offers is named
in README.md, the README's test command is the one CI runs, and ``import evlog`` stays
free of the command-line libraries (typer, click, rich), as the README's library
section and start-up time rely on.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_evlog

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

# Long options each command must offer and describe in its --help (new ones are caught by the README check).
OPTIONS: dict[str, list[str]] = {
    "append": [
        "--data",
        "--stream",
        "--meta",
        "--id",
        "--expect",
        "--type",
        "--input",
        "--batch",
        "--atomic",
        "--skip-invalid",
        "--rejects",
        "--max-line",
        "--max-future",
        "--strict-ids",
        "--output",
        "--log",
        "--debug",
    ],
    "replay": ["--from", "--until", "--stream", "--type", "--limit", "--output", "--template", "--no-color", "--log",
               "--debug", "--snapshot-max-size", "--fold-timeout"],
    "info": ["--output", "--no-color", "--log", "--debug"],
    "stats": ["--from", "--until", "--stream", "--type", "--output", "--no-color", "--log", "--debug"],
    "streams": ["--sort", "--limit", "--output", "--log", "--debug"],
    "snapshot save": ["--at", "--from", "--fold", "--on", "--init", "--by", "--where", "--fold-file", "--fold-timeout",
                      "--log"],
    "snapshot list": ["--output", "--no-color", "--log"],
    "snapshot drop": ["--before", "--all", "--log"],
    "projection add": ["--fold", "--on", "--init", "--by", "--where", "--fold-file", "--snapshot-every",
                       "--replace", "--from", "--stream", "--type", "--log"],
    "projection list": ["--output", "--no-color", "--log"],
    "projection show": ["--at", "--output", "--snapshot-every", "--snapshot-max-size", "--fold-timeout", "--log"],
    "projection rm": ["--log"],
    "projection sync": ["--into", "--follow", "--table", "--rebuild", "--wait", "--output", "--snapshot-every",
                        "--snapshot-max-size", "--fold-timeout", "--log"],
    "projection status": ["--output", "--no-color", "--log"],
    "export": ["--into", "--follow", "--stream", "--type", "--where", "--table", "--rebuild", "--wait", "--output",
               "--log"],
    "tail": ["--lines", "--follow", "--from", "--stream", "--type", "--where", "--count", "--group", "--exec",
             "--max-attempts", "--reset-filters", "--wait", "--output", "--template", "--no-color", "--log"],
    "group list": ["--output", "--no-color", "--log"],
    "group reset": ["--to", "--log"],
    "group rm": ["--log"],
    "group ack": ["--log"],
    "group dead": ["--output", "--no-color", "--log"],
    "group retry": ["--log"],
    "verify": ["--from", "--output", "--snapshots", "--fold-timeout", "--log"],
    "backup": ["--compact", "--output", "--log"],
}

LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*[a-z]")


def help_text(command: str) -> str:
    result = run_evlog(*command.split(), "--help", env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return result.stdout.decode()


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    return {command: help_text(command) for command in OPTIONS}


@pytest.mark.parametrize("command", list(OPTIONS))
def test_command_help_describes_the_command_and_each_option(helps: dict[str, str], command: str) -> None:
    text = helps[command]
    assert f"Usage: evlog {command}" in text
    for option in OPTIONS[command]:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), option
    # Each option's own line in the options table carries a description, not just a name and metavar.
    for option in OPTIONS[command]:
        line = next(line for line in text.splitlines() if re.match(rf"[│|\s*]*{re.escape(option)}(?![\w-])", line))
        rest = re.sub(r"<[^>]*>|\[[^]]*\]", "", line.split(option, 1)[1])
        assert re.search(r"\b[a-z]{3,}\b", rest), (option, line)


def _all_commands() -> list[tuple[str, Any]]:
    """Every command and subcommand as (name, click command), found by walking the app."""
    import typer

    from evlog.cli import app

    root = typer.main.get_command(app)
    found: list[tuple[str, Any]] = []

    def walk(prefix: str, group: Any) -> None:
        context = group.make_context(prefix or "evlog", [], resilient_parsing=True)
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            full = f"{prefix} {name}".strip()
            found.append((full, command))
            if hasattr(command, "list_commands"):
                walk(full, command)

    walk("", root)
    return found


ALL_COMMANDS = _all_commands()


@pytest.mark.parametrize(("name", "command"), ALL_COMMANDS, ids=[name for name, _ in ALL_COMMANDS])
def test_every_command_has_a_summary_a_paragraph_and_examples(name: str, command: Any) -> None:
    paragraphs = [part.strip() for part in (command.help or "").split("\n\n") if part.strip()]
    assert paragraphs, f"evlog {name} has no help"
    summary = paragraphs[0]
    assert "\n" not in summary and len(summary) <= 80 and summary.endswith("."), summary
    assert "Examples:" in paragraphs, f"evlog {name}: no Examples: paragraph"
    described = paragraphs[1 : paragraphs.index("Examples:")]
    assert described, f"evlog {name}: no paragraph between the summary and the examples"
    examples = paragraphs[paragraphs.index("Examples:") + 1 :]
    assert 2 <= len(examples) <= 3, examples
    for example in examples:
        assert re.match(r"(\w+=\$\()?evlog ", example.replace("\\[", "[")), example


@pytest.mark.parametrize(("name", "command"), ALL_COMMANDS, ids=[name for name, _ in ALL_COMMANDS])
def test_every_option_and_argument_has_help_text(name: str, command: Any) -> None:
    for param in command.params:
        if param.name == "help":
            continue
        assert (getattr(param, "help", None) or "").strip(), f"evlog {name}: {param.name} has no help text"


def test_help_prints_brackets_as_written() -> None:
    # Help is shown with rich, whose markup would swallow `[amount]` in a template example.
    text = help_text("replay")
    assert "{data[amount]}" in text
    assert "d['amount']" in text


def test_top_level_help_lists_the_commands() -> None:
    result = run_evlog("--help", env={"COLUMNS": "200"})
    assert result.returncode == 0
    for command in {command.split()[0] for command in OPTIONS}:
        assert command in result.stdout.decode()


def _in_readme(option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", README) is not None


def test_top_level_options_are_described_and_named_in_the_readme() -> None:
    text = help_text("")
    for option in ("--version", "--install-completion", "--show-completion"):
        assert option in text, option
    offered = set(LONG_OPTION.findall(text)) - {"--help", "--log"}
    assert not {option for option in offered if not _in_readme(option)}


@pytest.mark.parametrize(("name", "command"), ALL_COMMANDS, ids=[name for name, _ in ALL_COMMANDS])
def test_every_command_and_option_is_named_in_the_readme(name: str, command: Any) -> None:
    assert f"evlog {name}" in README, f"evlog {name} is not in README.md"
    offered = {option for param in command.params for option in param.opts if option.startswith("--")}
    missing = {option for option in offered - {"--help"} if not _in_readme(option)}
    assert not missing, f"options of evlog {name} missing from README.md: {sorted(missing)}"


def _quick_start_blocks() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)]


def test_readme_test_command_is_what_ci_runs() -> None:
    blocks = _quick_start_blocks()
    assert len(blocks) >= 2
    readme_command = blocks[1]
    assert "\n" not in readme_command and "pytest" in readme_command
    ci_lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    ci_commands = [line for line in ci_lines if "pytest" in line]
    assert ci_commands == [readme_command]


def test_import_evlog_loads_no_command_line_libraries() -> None:
    code = (
        "import json, sys\n"
        "import evlog\n"
        "from evlog import Log, positions, timefmt\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=True)
    loaded = json.loads(result.stdout)
    for library in ("typer", "click", "rich"):
        assert not [name for name in loaded if name == library or name.startswith(library + ".")], library
    assert "evlog" in loaded and "evlog.cli" not in loaded


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = run_evlog("--version")
    assert result.returncode == 0
    assert result.stdout.decode() == f"evlog {version('evlog-cli')}\n"
