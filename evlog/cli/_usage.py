"""Usage errors in evlog's own words: one line, with a suggestion that helps.

The parser (click, inside typer) answers a mistake with a usage block and an
``Error:`` line, and suggests by spelling alone: ``--since`` got "--init,
--scan". evlog's errors are one line each (``evlog: …``), so every parser
error is reworded here into one::

    evlog: replay: no such option --since; did you mean --from? (see evlog replay --help)

A suggestion comes first from a short table of words people bring from other
tools (``--since`` is ``--from``, ``--follow`` on replay is ``evlog tail -f``),
offered only where the command has the option, then from ``difflib`` over the
command's own options or subcommands, compared without their dashes (with
them, every long option shares two characters with every other).

It is imported only when a parser error is to be worded; the words for
number ranges, needed by every command, are in :mod:`._ranges`.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import Any

from typer._click import exceptions as click_exceptions

from ..textsafe import visible

OPTION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "--since": ("--from",),
    "--after": ("--from",),
    "--start": ("--from",),
    "--begin": ("--from",),
    "--before": ("--until",),
    "--end": ("--until",),
    "--to": ("--until", "--at"),
    "--count": ("--limit", "--lines"),
    "--limit": ("--lines",),
    "--lines": ("--limit",),
    "--max": ("--limit", "--lines"),
    "--head": ("--limit",),
    "--last": ("--lines",),
    "--number": ("--limit", "--lines"),
    "--format": ("--template", "--output"),
    "--fmt": ("--template", "--output"),
    "--filter": ("--where",),
    "--grep": ("--where",),
    "--match": ("--where",),
    "--path": ("--log",),
    "--db": ("--log",),
    "--json": ("-o json",),
    "--ndjson": ("-o ndjson",),
    "--jsonl": ("-o ndjson",),
    "--table": ("-o table",),
    "--msgpack": ("-o msgpack",),
}
"""An option people type -> the options of evlog that do what they meant, the first one a command has wins."""

ELSEWHERE: dict[str, str] = {
    "--follow": "evlog tail -f",
    "--tail": "evlog tail",
}
"""Options that belong to another command: the command to use instead."""

COMMAND_SYNONYMS: dict[str, str] = {
    "cat": "replay", "read": "replay", "dump": "replay", "show": "replay", "events": "replay", "export": "replay",
    "follow": "tail -f", "watch": "tail -f",
    "add": "append", "write": "append", "put": "append", "push": "append", "emit": "append", "import": "append",
    "check": "verify", "fsck": "verify", "validate": "verify",
    "status": "info", "describe": "info",
    "count": "stats", "histogram": "stats",
    "consumer": "group", "consumers": "group", "groups": "group",
    "projections": "projection", "snapshots": "snapshot",
    "ls": "list", "remove": "rm", "delete": "rm", "del": "rm",
}
"""A command people type -> the evlog command (or subcommand) that does it."""


class UnknownCommand(click_exceptions.UsageError):
    """A command or subcommand that does not exist, with the ones that do."""

    def __init__(self, name: str, choices: list[str], ctx: Any) -> None:
        super().__init__(f"no such command {name}", ctx)
        self.name = name
        self.choices = choices


def option_names(command: Any) -> list[str]:
    """Every option name of ``command``, long and short."""
    names = (name for param in command.params
             for name in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())))
    return [name for name in names if name.startswith("-")]


def _close(word: str, choices: list[str]) -> list[str]:
    """Choices spelled like ``word``, the closest first, compared without leading dashes."""
    bare = {choice.lstrip("-"): choice for choice in choices}
    return [bare[match] for match in difflib.get_close_matches(word.lstrip("-"), list(bare), n=3, cutoff=0.6)]


def option_suggestion(name: str, command: Any, command_path: str) -> str:
    """``did you mean --from?`` for an option ``command`` does not have, or ""."""
    own = option_names(command)
    long_name = name.split("=", 1)[0]
    if hasattr(command, "list_commands"):  # a group: its commands take the options
        return f"options go after the command ({command_path} COMMAND {long_name} ...)"
    for meant in OPTION_SYNONYMS.get(long_name, ()):
        if meant.split(" ")[0] in own:
            return f"did you mean {meant}?"
    elsewhere = ELSEWHERE.get(long_name)
    if elsewhere is not None and not command_path.startswith(elsewhere.split(" -")[0]):
        return f"did you mean {elsewhere}?"
    if long_name.startswith("--"):
        found = _close(long_name, [option for option in own if option.startswith("--")])
        if found:
            return f"did you mean {' or '.join(found)}?"
    return ""


def command_suggestion(name: str, choices: list[str]) -> str:
    meant = COMMAND_SYNONYMS.get(name.lower())
    if meant is not None and meant.split(" ")[0] in choices:
        return f"did you mean {meant}?"
    found = _close(name.lower(), choices)
    if found:
        return f"did you mean {' or '.join(found)}?"
    return "the commands are " + ", ".join(choices)


_CLICK_WORDING = (
    (r"^Option '([^']+)' requires an argument\.?$", r"option \1 needs a value"),
    (r"^Option '([^']+)' requires (\d+) arguments\.?$", r"option \1 needs \2 values"),
    (r"^Got unexpected extra argument(?:\(s\)|s)? \((.*)\)$", r"unexpected extra argument \1"),
    (r"^Missing argument '([^']+)'\.?", r"missing argument \1"),
    (r"^Missing option '([^']+)'\.?", r"missing option \1"),
)


@functools.cache
def _click_wording() -> tuple[tuple[re.Pattern[str], str], ...]:
    """The patterns above, compiled on the first parser error (not at every start)."""
    return tuple((re.compile(pattern), wording) for pattern, wording in _CLICK_WORDING)


def _sentence(text: str) -> str:
    """click's capitalised, full-stopped wording as evlog's: lower case, no final stop."""
    text = text.strip()
    for pattern, wording in _click_wording():
        if pattern.match(text):
            text = pattern.sub(wording, text)
            break
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        text = text[0].lower() + text[1:]
    return text.rstrip(".")


def one_line(exc: click_exceptions.UsageError, fallback_path: str = "evlog") -> str:
    """The message (without ``evlog: ``) for a parser error: one line, where, what, and what to do.

    ``fallback_path`` names the command when the error carries no context.
    """
    ctx = exc.ctx
    path = ctx.command_path if ctx is not None else fallback_path
    where = path.removeprefix("evlog").strip()
    if isinstance(exc, UnknownCommand):
        what = f"no such command {exc.name}; {command_suggestion(exc.name, exc.choices)}"
    elif isinstance(exc, click_exceptions.NoSuchOption):
        what = f"no such option {exc.option_name}"
        hint = option_suggestion(exc.option_name, ctx.command, path) if ctx is not None else ""
        if hint:
            what += f"; {hint}"
    elif isinstance(exc, click_exceptions.MissingParameter):
        what = _sentence(exc.format_message())
    elif isinstance(exc, click_exceptions.BadParameter) and exc.param is not None:
        names = "/".join(getattr(exc.param, "opts", ())) or (exc.param.human_readable_name or "")
        what = f"{names}: {_sentence(exc.message)}"
        choices = getattr(exc.param.type, "choices", None)
        if choices:
            given = _given_choice(exc.message)
            close = _close(given, [str(choice) for choice in choices]) if given else []
            if close:
                what += f"; did you mean {close[0]}?"
    else:
        what = _sentence(exc.format_message())
    prefix = f"{where}: " if where else ""
    return visible(f"{prefix}{what} (see {path} --help)")


def _given_choice(message: str) -> str | None:
    match = re.match(r"^'(.*)' is not one of", message)
    return match.group(1) if match else None
