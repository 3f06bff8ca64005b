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

The ranges of numeric options are described in words (``0 or more``), in
``--help`` and in errors, instead of click's ``x>=0``.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from typer._click import exceptions as click_exceptions
from typer._click import types as click_types

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


def _range_in_words(kind: Any, *, whole: bool) -> str:
    """``0 or more``, ``1 to 10``, ``more than 0``: a click range's bounds as people say them."""
    low, high = kind.min, kind.max
    if whole:  # an open bound of whole numbers is the next whole number
        low = None if low is None else low + 1 if kind.min_open else low
        high = None if high is None else high - 1 if kind.max_open else high
    low_words = None if low is None else f"more than {low}" if kind.min_open and not whole else f"{low}"
    high_words = None if high is None else f"less than {high}" if kind.max_open and not whole else f"{high}"
    if low_words is not None and high_words is not None:
        return f"{low_words} to {high_words}" if whole else f"{low_words} and {high_words}"
    if low_words is not None:
        return low_words if low_words.startswith("more") else f"{low_words} or more"
    return f"{high_words}" if str(high_words).startswith("less") else f"{high_words} or less"


def _check_range(kind: Any, number: float, param: Any, ctx: Any, *, whole: bool) -> None:
    if (kind.min is not None and (number < kind.min or (kind.min_open and number == kind.min))) or (
        kind.max is not None and (number > kind.max or (kind.max_open and number == kind.max))
    ):
        kind.fail(f"{value_text(number)} is out of range; give {_range_in_words(kind, whole=whole)}", param, ctx)


def value_text(number: float) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)


class WordedIntRange(click_types.IntRange):
    """An int range that says its bounds in words, in ``--help`` and in errors."""

    def _describe_range(self) -> str:
        return _range_in_words(self, whole=True)

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number; give {self._describe_range()}", param, ctx)
        _check_range(self, number, param, ctx, whole=True)
        return number


class WordedFloatRange(click_types.FloatRange):
    """A number range (seconds, say) that says its bounds in words, in ``--help`` and in errors."""

    def _describe_range(self) -> str:
        return _range_in_words(self, whole=False)

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number; give {self._describe_range()}", param, ctx)
        if number != number:  # NaN compares false with every bound
            self.fail(f"{value!r} is not a number; give {self._describe_range()}", param, ctx)
        _check_range(self, number, param, ctx, whole=False)
        return number


def word_int_ranges(command: Any) -> None:
    """Give the number-range options of ``command`` a metavar (``N``) and a range in words."""
    for param in command.params:
        kind = getattr(param, "type", None)
        if isinstance(kind, click_types.IntRange) and not isinstance(kind, WordedIntRange):
            param.type = WordedIntRange(kind.min, kind.max, kind.min_open, kind.max_open, kind.clamp)
            if getattr(param, "metavar", None) is None:
                param.metavar = "N"
        elif isinstance(kind, click_types.FloatRange) and not isinstance(kind, WordedFloatRange):
            param.type = WordedFloatRange(kind.min, kind.max, kind.min_open, kind.max_open, kind.clamp)


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
    (re.compile(r"^Option '([^']+)' requires an argument\.?$"), r"option \1 needs a value"),
    (re.compile(r"^Option '([^']+)' requires (\d+) arguments\.?$"), r"option \1 needs \2 values"),
    (re.compile(r"^Got unexpected extra argument(?:\(s\)|s)? \((.*)\)$"), r"unexpected extra argument \1"),
    (re.compile(r"^Missing argument '([^']+)'\.?"), r"missing argument \1"),
    (re.compile(r"^Missing option '([^']+)'\.?"), r"missing option \1"),
)


def _sentence(text: str) -> str:
    """click's capitalised, full-stopped wording as evlog's: lower case, no final stop."""
    text = text.strip()
    for pattern, wording in _CLICK_WORDING:
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
