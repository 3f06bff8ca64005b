"""``evlog verify``: check a log's records, hash chain and indexes.

Findings go to stdout, one line each, so they pipe into ``grep`` and ``wc``;
the summary goes to stderr, and the exit status says whether all held. The
progress bar (rich, imported only then) is drawn only on a terminal and only
for logs large enough to take a while.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import DEFAULT_LOG, DebugOption, LogOption, binary_stdout, note, stdout_is_terminal

if TYPE_CHECKING:
    from ..verify import Verification

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})

PROGRESS_ABOVE = 100_000
"""Draw a progress bar only for more events than this: below it verify takes well under a second."""


class VerifyOutput(str, Enum):
    auto = "auto"
    json = "json"


class _Bar:
    """A progress callback that draws a rich bar on stderr once it learns the range is large."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._progress is None:
            if total <= PROGRESS_ABOVE:
                return
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("verifying"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
                redirect_stdout=False,  # findings are written by line() below
                redirect_stderr=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("verify", total=total)
        self._progress.update(self._task, completed=done)

    def line(self, text: str) -> None:
        """Write a finding to stdout; above the bar when both are on the terminal."""
        if self._progress is not None and stdout_is_terminal():
            # Printed by the bar's console, which clears and redraws the bar:
            # as it is, unwrapped, never read as markup.
            self._progress.console.print(text, soft_wrap=True, markup=False, highlight=False, emoji=False)
        else:
            sys.stdout.write(text + "\n")

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (OSError, ValueError):
        return False


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _write_line(text: str) -> None:
    sys.stdout.write(text + "\n")


def _describe(run: Verification) -> str:
    if run.ok:
        if run.events == 0:
            where = "the log is empty" if run.first_seq == 1 else f"no events from seq {run.first_seq}"
            return f"ok: {where}; head hash {run.head_hash}"
        return (
            f"ok: {run.events:,} event{'' if run.events == 1 else 's'} "
            f"(seq {run.first_seq}-{run.last_seq}) verified; "
            f"head hash {run.head_hash}, as `evlog info` shows"
        )
    problems = "1 problem" if run.findings == 1 else f"{run.findings:,} problems"
    return (
        f"{problems} in {run.events:,} event{'' if run.events == 1 else 's'} "
        f"(seq {run.first_seq}-{run.last_seq}); "
        f"head hash recomputed {run.head_hash or 'unknown (a gap breaks the chain)'}, stored {run.stored_head_hash}"
    )


@app.command(
    help=(
        "Check the records, the hash chain and the indexes.\n\n"
        "Checks seqs without gaps, every record readable in a known format, times never going "
        "backwards, stream versions counting up, the hash chain recomputed record by record, "
        "and the streams, ids and types indexes against the events.\n\n"
        "Each problem is a line on stdout (seq 1234: ...), the summary goes to stderr; "
        "exit status 0 when all holds, 1 otherwise. Events appended meanwhile are left for the next run.\n\n"
        "Examples:\n\n"
        "  evlog verify\n\n"
        "  evlog verify --from -10000        # the last 10,000 events only\n\n"
        "  evlog verify -o json | jq .head_hash"
    ),
)
def verify(
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="POS",
            help="Check from this position on (seq, -N from the end, a time, id:KEY); the chain "
            "starts from the hash stored in the record before it.",
        ),
    ] = None,
    output: Annotated[
        VerifyOutput,
        typer.Option("--output", "-o", help="auto: findings as lines, summary on stderr; json: one JSON document."),
    ] = VerifyOutput.auto,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> int:
    from ..log import Log
    from ..verify import verify as run_verify

    # No bar over JSON on the same terminal: the bar's redraws would overwrite it.
    drawn = _stderr_is_terminal() and not (output is VerifyOutput.json and stdout_is_terminal())
    bar = _Bar() if drawn else None
    with Log(log) as opened:
        run = run_verify(opened, from_=from_, progress=bar)
        try:
            if output is VerifyOutput.json:
                _write_json(run)
            else:
                write = bar.line if bar is not None else _write_line
                for finding in run:
                    write(str(finding))
            sys.stdout.flush()
        except BrokenPipeError:
            # `evlog verify | head -1`: a closed pipe ends other commands with 0,
            # but a reader that went away after a finding must not turn it into a pass.
            _quiet_stdout()
            return 1 if run.findings else 0
        finally:
            if bar is not None:
                bar.close()
    if output is VerifyOutput.auto:
        note(_describe(run))
    return 0 if run.ok else 1


def _write_json(run: Verification) -> None:
    """One JSON document, written as the findings come: ``{"findings": [...], "ok": ..., ...}``."""
    import orjson

    out = binary_stdout()
    out.write(b'{"findings":[')
    separator = b""
    for finding in run:
        out.write(separator + orjson.dumps({"seq": finding.seq, "problem": finding.problem}))
        separator = b","
    summary = orjson.dumps(run.summary())
    out.write(b"]," + summary[1:] + b"\n")
