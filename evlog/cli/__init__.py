"""The ``evlog`` command: a thin typer layer over the library, and its error boundary.

Start-up time is part of the product (``evlog append`` runs once per event in
shell loops), so subcommands are loaded lazily: the top-level group knows
only their names and imports a command's module when it is invoked (or when
help lists them). rich is never imported unless something is drawn.

:func:`main` is the one place where exceptions become exit codes: library
errors carry theirs (:mod:`evlog.errors`), usage errors exit 2, Ctrl-C 130,
and a closed stdout ends the command quietly. ``--debug`` (or
``EVLOG_DEBUG=1``) lets the traceback through instead. Every message is
printed through :func:`evlog.textsafe.visible_lines` (a library message may
quote a stream or type from the log), and parser errors are reworded into
evlog's one-line form by :mod:`evlog.cli._usage`.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Annotated, Any

import lmdb
import typer
from typer._click import exceptions as click_exceptions
from typer.core import TyperGroup

from ..errors import EvlogError
from ._ranges import word_int_ranges

# command name -> (module, the panel that lists it in `evlog --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "append": ("evlog.cli.append", "Write"),
    "replay": ("evlog.cli.replay", "Read"),
    "tail": ("evlog.cli.tail", "Read"),
    "group": ("evlog.cli.group", "Read"),
    "stats": ("evlog.cli.stats", "Read"),
    "streams": ("evlog.cli.streams", "Read"),
    "snapshot": ("evlog.cli.snapshot", "State"),
    "projection": ("evlog.cli.projection", "State"),
    "export": ("evlog.cli.export", "Read"),
    "info": ("evlog.cli.info", "Maintenance"),
    "verify": ("evlog.cli.verify", "Maintenance"),
    "backup": ("evlog.cli.backup", "Maintenance"),
}


# The commands that take fold clauses (whose --fold/--on order matters).
FOLD_COMMANDS = ("replay", "snapshot", "projection")


class _PipeClosed(Exception):
    """The reader of stdout went away."""


class CommandGroup(TyperGroup):
    """A command group whose unknown subcommand is an :class:`UnknownCommand` (worded by :mod:`._usage`)."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and not ctx.resilient_parsing and not args[0].startswith("-") \
                and self.get_command(ctx, args[0]) is None:
            from ._usage import UnknownCommand

            raise UnknownCommand(args[0], list(self.list_commands(ctx)), ctx)
        name, command, rest = super().resolve_command(ctx, args)
        global resolved_path
        resolved_path = f"{ctx.command_path} {name}"
        return name, command, rest


resolved_path = "evlog"
"""The command being parsed, for the parser's errors that carry no context (an option without its value)."""


class LazyGroup(CommandGroup):
    """A command group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def invoke(self, ctx: Any) -> Any:
        # typer turns a broken pipe into exit status 1; a closed pipe
        # (`evlog replay | head -1`) is a normal end for a filter, so it is
        # passed to main() as its own exception to end quietly.
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise _PipeClosed from None

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        # Built once: resolving a command asks for it twice (see CommandGroup), and typer's
        # building of a command with many options is a measurable part of start-up.
        built = _BUILT.get(cmd_name)
        if built is not None:
            return built
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command: Any = typer.main.get_command(module.app)
        command.name = cmd_name
        command.rich_help_panel = entry[1]
        _prepare(command)
        _BUILT[cmd_name] = command
        return command


_BUILT: dict[str, Any] = {}
"""Commands built by :meth:`LazyGroup.get_command`, by name."""


def _prepare(command: Any) -> None:
    """What every command shares, set once here rather than in each module.

    Help text prints as written (typer reads it as rich markup, where
    ``{data[amount]}`` or ``s[e.type]`` would lose their brackets); number
    ranges read ``N [0 or more]``; an ``--output`` that offers msgpack refuses
    it on a terminal; a subcommand group words an unknown subcommand.
    """
    from ._common import refuse_binary_on_terminal

    if command.help:
        command.help = command.help.replace("[", "\\[")
    for param in command.params:
        if getattr(param, "help", None):
            param.help = param.help.replace("[", "\\[")
        if param.name == "output" and "msgpack" in getattr(param.type, "choices", ()):
            param.callback = _then(param.callback, refuse_binary_on_terminal)
    word_int_ranges(command)
    if type(command) is TyperGroup:
        # typer built the group; its class is swapped for the subclass that words unknown subcommands.
        command.__class__ = CommandGroup
    for sub in getattr(command, "commands", {}).values():
        _prepare(sub)


def _then(first: Any, second: Any) -> Any:
    """A click parameter callback running ``first`` (if any), then ``second`` on its result."""
    if first is None:
        return second

    def both(ctx: Any, param: Any, value: Any) -> Any:
        return second(ctx, param, first(ctx, param, value))

    return both


app = typer.Typer(
    cls=LazyGroup,
    name="evlog",
    help=(
        "An append-only event log for one machine and for shell pipelines.\n\n"
        "The log is an LMDB directory chosen by --log, else $EVLOG_PATH, else ./events.lmdb."
    ),
    no_args_is_help=True,
    # --install-completion/--show-completion: typer loads its completion code with itself,
    # so offering them costs start-up nothing measurable (see scripts/bench.py --only startup).
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"evlog {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """An append-only event log for one machine and for shell pipelines."""


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the exit flush cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> None:
    """Run the command line and exit with the code of its outcome."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("EVLOG_DEBUG", "") not in ("", "0")
    command_name = next((arg for arg in args if not arg.startswith("-")), None)
    options = args[: args.index("--")] if "--" in args else args
    # `projection sync -f` is --follow, as in tail: only the fold-taking subcommands are checked.
    subcommand = next((arg for arg in args[args.index(command_name) + 1:] if not arg.startswith("-")), None) \
        if command_name is not None else None
    if command_name in FOLD_COMMANDS and "-f" in options and (command_name, subcommand) != ("projection", "sync"):
        # -f meant --fold here once; it means --follow (of tail) everywhere now. Said before
        # parsing, which would take the clause after it for a stray argument.
        print(f"evlog: {command_name} has no -f: -f is --follow in evlog tail; the fold option is --fold",
              file=sys.stderr)
        sys.exit(2)
    if command_name in FOLD_COMMANDS and any(
        arg in ("--on", "--fold") or arg.startswith("--fold=") for arg in args
    ):
        from ._fold_options import ordered_fold_clauses

        args = ordered_fold_clauses(args)
    command = typer.main.get_command(app)
    code = 0
    try:
        result = command.main(args=args, prog_name="evlog", standalone_mode=False)
        code = result if isinstance(result, int) else 0
        sys.stdout.flush()
    except EvlogError as exc:
        _flush_quietly()
        if debug:
            traceback.print_exc()
        from ..textsafe import visible_lines

        # Each line of a message is marked as evlog's, but for indented excerpts
        # (a fold's source with a caret under the fault) that the mark would shift.
        for line in visible_lines(str(exc)):
            print(line if line.startswith(" ") else f"evlog: {line}", file=sys.stderr)
        code = exc.exit_code
    except lmdb.Error as exc:
        # Storage failures the library did not anticipate: still no traceback.
        if debug:
            raise
        from ..textsafe import visible

        _flush_quietly()
        print(f"evlog: storage error: {visible(str(exc))}; run with --debug for details", file=sys.stderr)
        code = 74
    except click_exceptions.NoArgsIsHelpError as exc:
        exc.show()
        code = 0
    except click_exceptions.UsageError as exc:
        from ._usage import one_line

        _flush_quietly()
        print(f"evlog: {one_line(exc, resolved_path)}", file=sys.stderr)
        code = 2
    except click_exceptions.ClickException as exc:
        from ..textsafe import visible

        _flush_quietly()
        print(f"evlog: {visible(exc.format_message())}", file=sys.stderr)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        if debug:
            raise
        _flush_quietly()
        print("evlog: interrupted", file=sys.stderr)
        code = 130
    except (BrokenPipeError, _PipeClosed):
        _quiet_stdout()
        code = 0
    except OSError as exc:
        # I/O failures no command anticipated: exit 74 like storage errors, and no traceback.
        if debug:
            raise
        from ..textsafe import visible

        _flush_quietly()
        where = f": {exc.filename}" if exc.filename else ""
        print(f"evlog: {visible(f'{exc.strerror or exc}{where}')}; run with --debug for details", file=sys.stderr)
        code = 74
    sys.exit(code)


def _flush_quietly() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    except (OSError, ValueError):
        pass
