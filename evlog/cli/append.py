"""``evlog append``: one event from arguments, or many from stdin.

This module is on the hot path of shell loops (one process per event), so it
imports only what appending needs; JSON and rich come in when used.
"""

import contextlib
import re
import signal
import sys
from enum import Enum
from typing import Annotated, Any

import typer

from ..errors import BadInputError, Interrupted, UsageError
from ._common import DEFAULT_LOG, DebugOption, LogOption, note, parse_size, stdin_is_terminal
from ._complete import complete_streams, complete_types

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


class AppendOutput(str, Enum):
    auto = "auto"
    seq = "seq"
    json = "json"
    ndjson = "ndjson"
    none = "none"


class InputFormat(str, Enum):
    ndjson = "ndjson"
    msgpack = "msgpack"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str, where: str) -> Any:
    # The standard json module here, not orjson: it imports in a fraction of
    # the time, and this path runs once per process. NaN and Infinity are
    # refused as orjson refuses them on stdin.
    import json

    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise UsageError(f"{where}: {text!r} is not valid JSON ({exc})") from None


def parse_fields(fields: list[str], data_json: str | None) -> Any:
    """``key=value`` (text) and ``key:=JSON`` fields, or ``--data JSON``, as the event data."""
    if data_json is not None:
        if fields:
            raise UsageError("give the data either as --data JSON or as FIELD arguments, not both")
        return _loads(data_json, "--data")
    data: dict[str, Any] = {}
    for field in fields:
        name, sep, value = field.partition("=")
        if not sep:
            raise UsageError(f"field {field!r} needs key=value (text) or key:=JSON (any JSON value)")
        if name.endswith(":"):
            name = name[:-1]
            parsed = _loads(value, f"field {name}")
        else:
            parsed = value
        if not name:
            raise UsageError(f"field {field!r} has no key before the '='")
        data[name] = parsed
    return data


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdwy]?)\Z")
_DURATION_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 365 * 86400}


def parse_duration(text: str) -> float:
    """``--max-future``: seconds, or a number with s, m, h, d, w or y (365 days): ``5m`` is 300."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise UsageError(
            f"--max-future {text!r} is not a duration; give a number with s, m, h, d, w or y, as in 5m or 2h"
        )
    return float(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def parse_meta(items: list[str]) -> dict[str, Any] | None:
    meta: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--meta {item!r} needs key=value")
        meta[name] = value
    return meta or None


@app.command(
    help=(
        "Append events: one from arguments, or many as NDJSON or msgpack on stdin.\n\n"
        "One event: evlog append TYPE [FIELD ...], where FIELD is key=value (text) or "
        "key:=JSON (any JSON value); it prints the new seq. --expect N appends only if the "
        "stream is at version N (exit 3 otherwise); an --id already in the log appends nothing "
        "and prints the existing seq.\n\n"
        "Many events: with no TYPE (or -) and stdin not a terminal, each input line is an "
        'NDJSON object {"type", "stream", "data", "meta", "id", "expect", "ts"}; '
        "with --type T each line is the data of a T event. Batches commit every --batch "
        "events and within about 20 ms when the input pauses. A bad line stops the run "
        "(exit 65) with its line number and what was written before it. A ts is RFC 3339 text or "
        "integer nanoseconds, at most --max-future ahead of this machine's clock; a line is at most "
        "--max-line long.\n\n"
        "Examples:\n\n"
        "  evlog append deposit amount:=100 -s account-7\n\n"
        "  seq=$(evlog append order.created --data '{\"total\": 12.5}' --id order-17)\n\n"
        "  evlog replay --log old.lmdb | evlog append --log copy.lmdb"
    ),
)
def append(
    event_type: Annotated[
        str | None, typer.Argument(metavar="[TYPE]", help="Event type; omit (or -) to read stdin.",
                                    autocompletion=complete_types)
    ] = None,
    fields: Annotated[
        list[str] | None,
        typer.Argument(metavar="[FIELD]...", help="key=value (text) or key:=JSON data fields."),
    ] = None,
    data: Annotated[str | None, typer.Option("--data", "-d", help="The whole data value as JSON.")] = None,
    stream: Annotated[
        str | None, typer.Option("--stream", "-s", help="Stream (entity) of the event(s).",
                                  autocompletion=complete_streams)
    ] = None,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", "-m", help="Metadata key=value (repeatable).")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="Idempotency key: an id already in the log appends nothing.")
    ] = None,
    expect: Annotated[
        int | None,
        typer.Option("--expect", min=0, help="The version the stream must be at (0: it must not exist yet)."),
    ] = None,
    data_type: Annotated[
        str | None, typer.Option("--type", "-t", help="Read stdin lines as the data of events of this type.",
                                  autocompletion=complete_types)
    ] = None,
    input_format: Annotated[
        InputFormat, typer.Option("--input", "-i", help="Format of stdin.")
    ] = InputFormat.ndjson,
    batch: Annotated[
        int, typer.Option("--batch", min=1, help="Events per transaction when reading stdin.")
    ] = 10_000,
    atomic: Annotated[
        bool, typer.Option("--atomic", help="All of stdin in one transaction: all or nothing.")
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Skip invalid input lines (reported on stderr) instead of stopping.")
    ] = False,
    rejects: Annotated[
        str | None,
        typer.Option("--rejects", metavar="FILE", help="With --skip-invalid: write rejected lines here as NDJSON."),
    ] = None,
    max_line: Annotated[
        str,
        typer.Option("--max-line", metavar="SIZE",
                     help="Refuse input lines (or msgpack maps) longer than this: bytes, K, M or G, e.g. 256M."),
    ] = "64M",
    max_future: Annotated[
        str,
        typer.Option("--max-future", metavar="DURATION",
                     help="Refuse a given ts further ahead of this machine's clock: s, m, h, d, w, y, e.g. 2h."),
    ] = "5m",
    strict_ids: Annotated[
        bool,
        typer.Option("--strict-ids",
                     help="Refuse (exit 65) an id already in the log for other type, stream or data, "
                          "instead of a warning."),
    ] = False,
    output: Annotated[
        AppendOutput,
        typer.Option(
            "--output", "-o",
            help="auto: the seq for one event, nothing for stdin; seq; json (the stored event); ndjson; none.",
        ),
    ] = AppendOutput.auto,
    log: LogOption = DEFAULT_LOG,
    debug: DebugOption = False,
) -> None:
    from ..log import Log

    meta_dict = parse_meta(meta or [])
    if event_type is None or event_type == "-":
        if fields or data is not None or event_id is not None or expect is not None:
            raise UsageError("FIELD, --data, --id and --expect describe one event: give its TYPE too")
        if stdin_is_terminal():
            raise UsageError("give an event TYPE, or pipe NDJSON events to stdin (see evlog append --help)")
        max_line_bytes = parse_size(max_line, "--max-line")
        if max_line_bytes < 1:
            raise UsageError(f"--max-line {max_line!r} is no size for a line; give at least 1 byte, as in 64M")
        limits = (max_line_bytes, parse_duration(max_future), strict_ids)
        with Log(log) as opened:
            _append_stdin(
                opened, stream, meta_dict, data_type, input_format, batch, atomic,
                skip_invalid, rejects, output, limits,
            )
        return
    if data_type is not None:
        raise UsageError("--type is for stdin input; for one event give the TYPE argument")
    with Log(log) as opened:
        from ..ingest import prepare

        try:
            pending = prepare(event_type, parse_fields(fields or [], data), stream=stream, meta=meta_dict,
                              id=event_id, expect=expect, from_json=True)
        except BadInputError as exc:  # arguments, not input data: a usage error
            raise UsageError(exc.reason.replace('"expect"', "--expect").replace('"stream"', "--stream")) from None
        outcome = opened.write_batch([pending], keep_events=True, strict_ids=strict_ids)
        if outcome.stop is not None:
            raise outcome.stop[1]
        if outcome.duplicates:
            _, seq, difference = outcome.duplicates[0]
            if difference is None:
                note(f"id {event_id!r} is already in the log at seq {seq}; nothing appended")
            else:
                note(f"warning: id {event_id!r} is already in the log at seq {seq} with other {difference}; "
                     "nothing appended (--strict-ids refuses this)")
            event = opened.get(seq)
        else:
            event = outcome.written[0]
        assert event is not None
        if output in (AppendOutput.auto, AppendOutput.seq):
            sys.stdout.write(f"{event.seq}\n")
        elif output in (AppendOutput.json, AppendOutput.ndjson):
            import orjson

            option = orjson.OPT_APPEND_NEWLINE
            if output is AppendOutput.json and sys.stdout.isatty():
                option |= orjson.OPT_INDENT_2
            sys.stdout.buffer.write(orjson.dumps(event.to_dict(), option=option))


def _append_stdin(
    log: Any,
    stream: str | None,
    meta: dict[str, Any] | None,
    data_type: str | None,
    input_format: InputFormat,
    batch: int,
    atomic: bool,
    skip_invalid: bool,
    rejects: str | None,
    output: AppendOutput,
    limits: tuple[int, float, bool],
) -> None:
    from .. import feed
    from .._tuning import for_streaming

    for_streaming()
    from ..ingest import check_stream, check_type

    if rejects is not None and not skip_invalid:
        raise UsageError("--rejects goes with --skip-invalid")
    default_stream = check_stream(stream)
    if data_type is not None:
        check_type(data_type)
    on_reject = None
    closing = contextlib.ExitStack()
    if skip_invalid:
        if rejects is not None:
            try:
                reject_file = closing.enter_context(open(rejects, "ab"))  # noqa: SIM115
            except OSError as exc:
                raise UsageError(f"--rejects {rejects}: cannot open for writing ({exc.strerror})") from None
            on_reject = feed.reject_recorder(reject_file)
        else:
            on_reject = feed.reject_printer(_write_stderr)
    print_events = output in (AppendOutput.json, AppendOutput.ndjson, AppendOutput.seq)
    out = sys.stdout.buffer

    def on_commit(summary: Any, placed: list[Any]) -> None:
        if meter is not None:
            meter.count_events(summary.appended)
        if not print_events:
            return
        # One output per input event, in input order: an id already in the log gives its existing event.
        if output is AppendOutput.seq:
            out.write(b"".join(b"%d\n" % (item if type(item) is int else item.seq) for item in placed))
        else:
            import orjson

            option = orjson.OPT_APPEND_NEWLINE
            events = (log.get(item) if type(item) is int else item for item in placed)
            out.write(b"".join(orjson.dumps(event.to_dict(), option=option) for event in events if event))
        out.flush()
        summary.events.clear()

    def on_reused_id(line: int | None, event_id: str, seq: int, difference: str) -> None:
        _write_stderr(
            f"evlog: warning: line {line}: id {event_id!r} is already in the log at seq {seq} with other "
            f"{difference}; not appended again (--strict-ids refuses this)\n"
        )

    from ._common import stdout_is_terminal
    from ._progress import progress, stdin_size

    # A bar by bytes read (of the file's size when stdin is one); no bar when
    # the events themselves are printed on the terminal.
    bar = progress("appending", "appended", unit="bytes", report=False,
                   enabled=not (print_events and stdout_is_terminal()))
    previous_handler = signal.signal(signal.SIGTERM, _raise_terminated)
    with closing, bar as meter:
        if meter is not None:
            meter.total = stdin_size()
        max_line, max_future, strict_ids = limits
        feeder = feed.Feeder(
            log, batch_size=batch, atomic=atomic, on_reject=on_reject, keep_events=print_events,
            on_commit=on_commit, progress=meter.advance if meter is not None else None,
            max_line=max_line, max_future=max_future, strict_ids=strict_ids, on_reused_id=on_reused_id,
        )
        run = feed.feed_msgpack if input_format is InputFormat.msgpack else feed.feed_ndjson
        try:
            summary = run(feeder, sys.stdin.fileno(), data_type=data_type, default_stream=default_stream,
                          default_meta=meta)
        except (KeyboardInterrupt, _Terminated) as exc:
            signal.signal(signal.SIGTERM, previous_handler)
            name, code = ("SIGTERM", 143) if isinstance(exc, _Terminated) else ("Ctrl-C", 130)
            if atomic:
                raise Interrupted(f"interrupted by {name}; --atomic: nothing was written", exit_code=code) from None
            feeder.flush(final=True)  # what was read and validated is committed, not lost
            raise Interrupted(
                f"interrupted by {name}: {feeder.summary.describe()}; input after that was not read",
                exit_code=code,
            ) from None
    if summary.skipped or summary.duplicates or sys.stderr.isatty():
        timing = f" {meter.timing(summary.appended, 'events')}" if meter is not None and meter.shown else ""
        note(summary.describe() + timing)


def _write_stderr(text: str) -> None:
    # sys.stderr looked up at each call: a progress bar redirects it, to print above the bar.
    sys.stderr.write(text)


class _Terminated(Exception):
    """Raised by the SIGTERM handler of a bulk append, to commit and stop."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated
