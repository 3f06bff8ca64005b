"""``evlog verify``: check a log's records, hash chain and indexes.

Findings go to stdout, one line each, so they pipe into ``grep`` and ``wc``;
the summary goes to stderr, and the exit status says whether all held. A
progress bar (:mod:`evlog.cli._progress`) is drawn on stderr when it is a
terminal and the check takes a while; findings for the same terminal are
printed above it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from ._common import DEFAULT_LOG, DebugOption, LogOption, binary_stdout, counted, note, stdout_is_terminal
from ._fold_options import FoldTimeoutOption, fold_timeout

if TYPE_CHECKING:
    from ..snapshot_check import SnapshotCheck
    from ..verify import Verification
    from ._progress import Meter

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})

class VerifyOutput(str, Enum):
    auto = "auto"
    json = "json"


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _write_line(text: str) -> None:
    sys.stdout.write(text + "\n")


def _line_writer(bar: Meter | None) -> Callable[[str], None]:
    """Where findings go: stdout, or above the bar when both are on the terminal."""
    if bar is None or not stdout_is_terminal():
        return _write_line

    def write(text: str) -> None:
        # Printed by the bar's console, which clears and redraws the bar; before
        # the bar shows, and after it, a finding is an ordinary line.
        if not bar.print_above(text):
            _write_line(text)

    return write


def _describe(run: Verification, timing: str = "") -> str:
    """The summary line; ``timing`` (`` in 2.5 s (400,000 events/s)``) when a progress bar was shown."""
    if run.ok:
        if run.events == 0:
            where = "the log is empty" if run.first_seq == 1 else f"no events from seq {run.first_seq}"
            return f"ok: {where}; head hash {run.head_hash}"
        return (
            f"ok: {counted(run.events, 'event')} "
            f"(seq {run.first_seq}-{run.last_seq}) verified{timing}; "
            f"head hash {run.head_hash}, as `evlog info` shows"
        )
    return (
        f"{counted(run.findings, 'problem')} in {counted(run.events, 'event')} "
        f"(seq {run.first_seq}-{run.last_seq}){', checked' + timing if timing else ''}; "
        f"head hash recomputed {run.head_hash or 'unknown (a gap breaks the chain)'}, stored {run.stored_head_hash}"
    )


@app.command(
    help=(
        "Check the records, the hash chain and the indexes.\n\n"
        "Checks seqs without gaps, every record readable in a known format, times never going "
        "backwards, stream versions counting up, the hash chain recomputed record by record, "
        "and the streams, ids and types indexes against the events. On a log on a server (nats://), "
        "also each message's subject and Nats-Msg-Id header against its event, the stream's config "
        "(no deletes, no limits) and the index kept in the log's meta and ids buckets.\n\n"
        "With --snapshots, every saved fold state is checked too: it decodes, the definition it carries "
        "hashes to its key, the chain hash it carries is the one of the event at its seq, and its state "
        "equals its definition folded again from the start (the slow part). A bad one is a line "
        "(snapshot 3f9a2c4e1b7d at seq 1200: ...) that says how to drop it (local logs only, for now).\n\n"
        "Each problem is a line on stdout (seq 1234: ...), the summary goes to stderr; "
        "exit status 0 when all holds, 1 otherwise. Events appended meanwhile are left for the next run.\n\n"
        "Examples:\n\n"
        "  evlog verify\n\n"
        "  evlog verify --snapshots          # also recompute every snapshot\n\n"
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
    snapshots: Annotated[
        bool,
        typer.Option("--snapshots", help="Also check every snapshot, recomputing its state from its definition "
                     "(e.g. evlog verify --snapshots)."),
    ] = False,
    timeout: FoldTimeoutOption = None,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> int:
    from ..log import Log
    from ..verify import verify as run_verify
    from ._progress import progress

    # No bar over JSON on the same terminal: the bar's redraws would overwrite it.
    # The time and rate join the summary line; JSON has none, so there they get a line of their own.
    drawn = not (output is VerifyOutput.json and stdout_is_terminal())
    with Log(log) as opened, progress("verifying", "verified", enabled=drawn,
                                      report=output is VerifyOutput.json) as bar:
        opened.backend(check_format=False)  # a missing log fails here, before a JSON document is begun
        run = run_verify(opened, from_=from_, progress=bar)
        checked = None
        if snapshots:
            from ..snapshot_check import check_snapshots

            checked = check_snapshots(opened, timeout=fold_timeout(opened.path, timeout))
        try:
            if output is VerifyOutput.json:
                _write_json(run, checked)
            else:
                write = _line_writer(bar)
                for finding in run:
                    write(str(finding))
                if checked is not None:
                    from ..textsafe import visible

                    for snapshot_finding in checked:
                        write(visible(str(snapshot_finding)))  # a failing fold's message quotes the log
            sys.stdout.flush()
        except BrokenPipeError:
            # `evlog verify | head -1`: a closed pipe ends other commands with 0,
            # but a reader that went away after a finding must not turn it into a pass.
            _quiet_stdout()
            if bar is not None:
                bar.abandon()
            return 1 if run.findings or (checked is not None and checked.problems) else 0
    if output is VerifyOutput.auto:
        timing = f" {bar.timing(run.events, 'events')}" if bar is not None and bar.shown else ""
        note(_describe(run, timing))
        if checked is not None:
            note(_describe_snapshots(checked))
    return 0 if run.ok and (checked is None or not checked.problems) else 1


def _describe_snapshots(checked: SnapshotCheck) -> str:
    if not checked.problems:
        return f"ok: {counted(checked.checked, 'snapshot')} recomputed, each equal to its fold"
    return (
        f"{counted(checked.problems, 'problem')} in {counted(checked.checked, 'snapshot')}; "
        "snapshots are a cache, so dropping one loses nothing: evlog snapshot drop HASH"
    )


def _write_json(run: Verification, checked: SnapshotCheck | None) -> None:
    """One JSON document, written as the findings come: ``{"findings": [...], "ok": ..., ...}``.

    With snapshots checked, their findings follow the log's (each with its ``snapshot`` hash), and
    the summary counts them (``snapshots``, ``snapshot_problems``) and takes them into ``ok``.
    """
    import orjson

    out = binary_stdout()
    out.write(b'{"findings":[')
    separator = b""
    for finding in run:
        out.write(separator + orjson.dumps({"seq": finding.seq, "problem": finding.problem}))
        separator = b","
    for snapshot_finding in checked or ():
        out.write(separator + orjson.dumps({"seq": snapshot_finding.seq, "snapshot": snapshot_finding.digest,
                                            "problem": snapshot_finding.problem}))
        separator = b","
    summary = run.summary()
    if checked is not None:
        summary["ok"] = summary["ok"] and not checked.problems
        summary["snapshots"] = checked.checked
        summary["snapshot_problems"] = checked.problems
    out.write(b"]," + orjson.dumps(summary)[1:] + b"\n")
