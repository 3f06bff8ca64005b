#!/usr/bin/env python3
"""evlog's speed benchmark: each evlog figure beside a peer measured in the same run.

    python scripts/bench.py [--events N] [--repeat R] [--only SECTION ...] [--workdir DIR]

Absolute speeds mean little on a noisy 2-core machine, so each figure is shown
beside a peer doing comparable work on the same data in the same run, as a
ratio with its target. All are whole processes (evlog through the ``evlog``
script next to this Python, as users start it), interleaved round-robin so
noise hits all alike; each figure is a median of R runs (more for start-up).

* append: bulk ``evlog append < events.ndjson`` into a fresh log, beside *raw
  lmdb* (orjson -> msgpack -> ``putmulti``, 10,000 events a transaction: the
  floor for storing these events in LMDB from Python), *raw lmdb + stream
  index* (plus the dupsort ``streams`` index evlog also writes: the fair peer)
  and *sqlite3* (the obvious alternative: an indexed table, WAL, one transaction).
* replay: ``evlog replay -o ndjson`` of the whole log beside a direct cursor
  scan of evlog's ``events`` database printing the same bytes (checked).
* startup: one ``evlog append TYPE FIELD`` beside ``import typer`` (the floor
  for a typer command line), ``import lmdb, msgpack``, bare Python and the
  sqlite3 shell inserting one row.
* until: ``--until <time>`` beside ``--until <seq>`` selecting the same events:
  the difference is the binary search over ``ts``.
* fold: on the same log, a count by type (``replay --fold``) beside a direct
  cursor loop decoding every payload (and, for context, one decoding headers
  only); a per-stream balance (``--by stream --on ...``) beside an sqlite3
  ``GROUP BY`` over the same events and jq's ``reduce`` over the NDJSON (both
  results checked); ``projection show --at`` random positions, from its
  snapshots, beside the trivial ``replay --until 1``; and the balance fold's
  peak memory over N and 2N events (RSS, and the process's anonymous memory).

The data (8 bank-account event types over 10,000 streams, ~110 bytes a line)
is generated from a fixed seed into a temporary directory (inside --workdir if
given), removed at the end. Peers run as ``python bench.py --peer NAME ...``,
dispatched before the harness's imports so that they start as lean as can be.
"""

from __future__ import annotations

import os
import struct
import sys
import time

SEQ = struct.Struct(">Q")
COMMIT_EVERY = 10_000
HASH_SIZE = 16  # the chain hash that ends each evlog record


def lean_process() -> None:
    """The settings evlog's streaming commands give their process: rare GCs, no glibc heap trimming.

    Without them a peer replay spent a third of its time in page faults (0.87 s against 0.53 s).
    """
    import ctypes
    import gc

    gc.set_threshold(100_000, 50, 100)
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc
    mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    mallopt(-2, 16 << 20)  # M_TOP_PAD


def peer_append_lmdb(path: str, index: str) -> None:
    """Store stdin's NDJSON events as msgpack under 8-byte seqs; with index=yes also a stream index."""
    import lmdb
    import msgpack
    import orjson

    env = lmdb.open(path, map_size=1 << 40, max_dbs=2, lib_version=0)
    events = env.open_db(b"events")
    streams = env.open_db(b"streams", dupsort=True, dupfixed=True) if index == "yes" else None
    loads, pack, pack_seq = orjson.loads, msgpack.packb, SEQ.pack
    rows: list[tuple[bytes, bytes]] = []
    index_rows: list[tuple[bytes, bytes]] = []

    def commit() -> None:
        with env.begin(write=True) as txn:
            txn.cursor(db=events).putmulti(rows, append=True)
            if streams is not None:
                txn.cursor(db=streams).putmulti(index_rows, dupdata=True)
        rows.clear()
        index_rows.clear()

    seq = 0
    for seq, line in enumerate(sys.stdin.buffer, 1):
        event, key = loads(line), pack_seq(seq)
        rows.append((key, pack(event)))
        if streams is not None:
            index_rows.append((event["stream"].encode(), key))
        if len(rows) == COMMIT_EVERY:
            commit()
    if rows:
        commit()
    env.close()
    print(seq)


def peer_append_sqlite(path: str) -> None:
    """Insert stdin's NDJSON events into an sqlite table indexed by stream, in one transaction."""
    import sqlite3

    import orjson

    loads, dumps = orjson.loads, orjson.dumps
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, ts INTEGER, type TEXT, stream TEXT, data TEXT)")
    db.execute("CREATE INDEX events_stream ON events (stream)")
    rows = (
        (seq, time.time_ns(), event["type"], event.get("stream"), dumps(event.get("data")).decode())
        for seq, event in enumerate(map(loads, sys.stdin.buffer), 1)
    )
    db.execute("BEGIN")
    count = db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows).rowcount
    db.execute("COMMIT")
    db.close()
    print(count)


def peer_replay(path: str, limit: str) -> None:
    """Print evlog's NDJSON for the first ``limit`` events (0: all) by a direct cursor scan."""
    import lmdb
    import msgpack
    import orjson

    env = lmdb.open(path, max_dbs=16, lib_version=0, readonly=True)
    events = env.open_db(b"events", create=False)
    unpack, dumps, newline, seq_of = msgpack.unpackb, orjson.dumps, orjson.OPT_APPEND_NEWLINE, SEQ.unpack
    shown_second, prefix, stop = -1, "", int(limit) or -1
    out, block = sys.stdout.buffer, []
    with env.begin(db=events, buffers=True) as txn:
        for count, (key, value) in enumerate(txn.cursor(), 1):
            _, ts, version, etype, stream, id_, meta, data = unpack(value[:-HASH_SIZE], use_list=False)
            second, fraction = divmod(ts, 1_000_000_000)
            if second != shown_second:
                shown_second, prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            block.append(dumps({
                "seq": seq_of(key)[0], "ts": f"{prefix}.{fraction:09d}Z", "type": etype, "stream": stream,
                "version": version, "id": id_, "data": unpack(data), "meta": meta or {},
            }, option=newline))
            if len(block) == 512:
                out.write(b"".join(block))
                block.clear()
            if count == stop:
                break
    out.write(b"".join(block))
    out.flush()


def peer_count_types(path: str, payload: str) -> None:
    """Count events by type in a direct cursor scan; payload=yes also decodes every payload, as a naive loop would.

    Prints the counts as JSON (checked against evlog's fold).
    """
    import json

    import lmdb
    import msgpack

    env = lmdb.open(path, readonly=True, max_dbs=16, lib_version=0)
    events = env.open_db(b"events", create=False)
    unpack, decode_payload = msgpack.unpackb, payload == "yes"
    counts: dict[str, int] = {}
    with env.begin(db=events, buffers=True) as txn:
        for value in txn.cursor().iternext(keys=False):
            _, _, _, etype, _, _, _, data = unpack(value[:-HASH_SIZE], use_list=False)
            if decode_payload:
                unpack(data)
            counts[etype] = counts.get(etype, 0) + 1
    print(json.dumps(counts))


def peer_balance_sqlite(path: str) -> None:
    """Per-stream balance as one GROUP BY over the events table; prints {stream: balance} as JSON."""
    import json
    import sqlite3

    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT stream, SUM(CASE type WHEN 'deposit' THEN json_extract(data, '$.amount') "
        "WHEN 'withdraw' THEN -json_extract(data, '$.amount') ELSE 0 END) FROM events GROUP BY stream"
    ).fetchall()
    db.close()
    print(json.dumps(dict(rows)))


WARM_UP = -1  # the index of warm-up ticks: they only show that a follower is running


def peer_tick(target: str, kind: str, count: str, interval_ms: str) -> None:
    """Append ``count`` ticks ``{"i": index}``, one every ``interval_ms``; print their times as a JSON list.

    kind=evlog appends events with ``Log.append`` (the log opened once), kind=file writes NDJSON lines
    of the same shape to a plain file (write + flush). Each time is time.time_ns() (CLOCK_REALTIME,
    comparable across processes) taken as soon as the append or flush returned. Until a line (or EOF)
    arrives on stdin, a warm-up tick (index -1) is appended every 50 ms: the harness says go once its
    follower has printed one, so that no timed tick races the follower's start.
    """
    import contextlib
    import json
    import select

    with contextlib.ExitStack() as stack:
        if kind == "evlog":
            from evlog import Log

            log = stack.enter_context(Log(target))

            def tick(index: int) -> None:
                log.append("tick", {"i": index})
        else:
            out = stack.enter_context(open(target, "ab"))

            def tick(index: int) -> None:
                out.write(b'{"type":"tick","data":{"i":%d}}\n' % index)
                out.flush()

        while not select.select([sys.stdin], [], [], 0.05)[0]:
            tick(WARM_UP)
        stamps: list[int] = []
        interval, start = int(interval_ms) * 1_000_000, time.monotonic_ns()
        for index in range(int(count)):
            # A fixed schedule: a slow append delays its own tick, not every later one.
            delay = start + index * interval - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            tick(index)
            stamps.append(time.time_ns())
    print(json.dumps(stamps))


PEERS: dict[str, Callable[..., None]] = {
    "append-lmdb": peer_append_lmdb, "append-sqlite": peer_append_sqlite, "replay": peer_replay,
    "count-types": peer_count_types, "balance-sqlite": peer_balance_sqlite, "tick": peer_tick,
}

if __name__ == "__main__" and sys.argv[1:2] == ["--peer"]:
    lean_process()
    PEERS[sys.argv[2]](*sys.argv[3:])
    raise SystemExit(0)

# The harness from here on; peer processes never import what follows.
import argparse  # noqa: E402
import itertools  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, NamedTuple  # noqa: E402

import orjson  # noqa: E402

EVENT_TYPES = ("deposit", "withdraw", "account.opened", "account.closed",
               "transfer.sent", "transfer.received", "fee.charged", "interest.paid")
TYPE_WEIGHTS = (30, 22, 3, 1, 14, 14, 10, 6)
STREAMS = 10_000
SEED = 20261127
WORDS = ("rent", "salary", "groceries", "refund", "invoice", "coffee", "travel", "gift",
         "insurance", "utilities", "march", "april", "monthly", "transfer", "savings", "cash")
ENV = {name: value for name, value in os.environ.items() if not name.startswith("EVLOG_")}
# The `evlog` script next to this Python (start-up as users see it), else `python -m evlog`.
_SCRIPT = Path(sys.executable).with_name("evlog")
EVLOG = [str(_SCRIPT)] if os.access(_SCRIPT, os.X_OK) else [sys.executable, "-m", "evlog"]
PEER = [sys.executable, str(Path(__file__).resolve()), "--peer"]


def event_data(rng: random.Random, etype: str) -> dict[str, object]:
    """A plausible payload for one event type; deposits and withdrawals carry a numeric amount."""
    currency = rng.choice(("EUR", "USD", "GBP", "CHF"))
    note = " ".join(rng.choices(WORDS, k=rng.randint(1, 4)))
    if etype in ("deposit", "withdraw", "fee.charged"):
        return {"amount": rng.randint(1, 5000), "currency": currency, "note": note}
    if etype.startswith("transfer."):
        other = "to" if etype == "transfer.sent" else "from"
        return {"amount": rng.randint(1, 5000), "currency": currency, other: f"account-{rng.randrange(STREAMS)}"}
    if etype == "interest.paid":
        return {"amount": rng.randint(1, 200), "rate": round(rng.uniform(0.1, 4.0), 2), "currency": currency}
    if etype == "account.opened":
        return {"owner": rng.choice(WORDS).title(), "currency": currency, "kind": rng.choice(("checking", "savings"))}
    return {"reason": note, "balance": 0}


def generate_events(path: Path, count: int) -> int:
    """Write ``count`` seeded NDJSON events to ``path``; returns its size in bytes."""
    rng = random.Random(SEED)
    with open(path, "wb") as out:
        for start in range(0, count, 10_000):
            out.write(b"".join(
                orjson.dumps({"type": etype, "stream": f"account-{rng.randrange(STREAMS)}",
                              "data": event_data(rng, etype)}, option=orjson.OPT_APPEND_NEWLINE)
                for etype in rng.choices(EVENT_TYPES, TYPE_WEIGHTS, k=min(10_000, count - start))
            ))
    return path.stat().st_size


class Timing(NamedTuple):
    """Seconds a process took: wall clock (the figure), and CPU (user + system: shows contention)."""

    wall: float
    cpu: float


def run(cmd: list[str], *, stdin: Path | None = None, capture: bool = False) -> tuple[Timing, bytes]:
    """Run a whole process; returns its timing and (if captured) its stdout. Failures stop the bench."""
    with open(stdin or os.devnull, "rb") as source:
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        proc = subprocess.run(cmd, stdin=source, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=ENV)
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode().strip()}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Timing(wall, cpu), proc.stdout or b""


def timer(cmd: list[str]) -> Callable[[], Timing]:
    """A job for :func:`interleaved` that runs ``cmd`` and returns its timing."""
    return lambda: run(cmd)[0]


def interleaved(jobs: dict[str, Callable[[], Timing]], runs: int) -> dict[str, Timing]:
    """Median timing of each job over ``runs`` round-robin rounds (the order rotates per round)."""
    names = list(jobs)
    timings: dict[str, list[Timing]] = {name: [] for name in names}
    for round_ in range(runs):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            timings[name].append(jobs[name]())
    return {name: Timing(statistics.median(t.wall for t in values), statistics.median(t.cpu for t in values))
            for name, values in timings.items()}


def remove(path: Path) -> None:
    """Delete a log directory, or a database file with its sidecars."""
    shutil.rmtree(path, ignore_errors=True)
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        path.with_name(name).unlink(missing_ok=True)


def sig(value: float) -> str:
    """Three significant digits with thousands separators: 192,000."""
    return f"{float(f'{value:.3g}'):,.0f}" if value >= 100 else f"{value:.3g}"


def verdict(ratio: float, op: str, bound: float) -> str:
    """``target >= 0.40x: PASS``-style text for a ratio checked against its target."""
    ok = {">=": ratio >= bound, ">": ratio > bound, "<=": ratio <= bound, "<": ratio < bound}[op]
    return f"target {op} {bound:.2f}x: {'PASS' if ok else 'FAIL'}"


def say(text: str = "") -> None:
    print(text, flush=True)


def table(rows: list[tuple[str, ...]]) -> None:
    """Print rows with the first column left-aligned and the rest right-aligned, padded to fit."""
    widths = [max(len(row[i]) if i < len(row) else 0 for row in rows) for i in range(max(map(len, rows)))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(widths[i]) for i, cell in enumerate(row) if i]
        say("  " + "   ".join(cells).rstrip())


class Bench:
    """The run's settings, its data file, the N-event log shared by replay and until, and the summary."""

    def __init__(self, workdir: Path, events: int, repeat: int) -> None:
        self.workdir, self.n, self.repeat = workdir, events, repeat
        self.events_file = workdir / "events.ndjson"
        self.log = workdir / "log.lmdb"
        self.summary: list[str] = []

    def full_log(self) -> Path:
        """The N-event log, kept from the append section or built now by ``evlog append``."""
        if not self.log.exists():
            run([*EVLOG, "append", "--log", str(self.log)], stdin=self.events_file)
        return self.log

    def report(self, section: str, timings: dict[str, Timing], targets: dict[str, tuple[str, float]],
               *, per_event: bool, counts: dict[str, int] | None = None) -> None:
        """Print the figures (evlog's first) as a table and keep a one-line summary.

        Ratios are evlog's rate / the peer's with ``per_event``, else evlog's time / the peer's.
        ``counts`` gives the events of a job that did not process all N (jq on a prefix).
        """
        def rate(name: str, timing: Timing) -> float:
            return (counts or {}).get(name, self.n) / timing.wall

        def cells(name: str, timing: Timing) -> tuple[str, ...]:
            if per_event:
                return f"{sig(rate(name, timing))} ev/s", f"{timing.wall:.2f} s", f"cpu {timing.cpu:.2f} s"
            return f"{timing.wall * 1000:.1f} ms", f"cpu {timing.cpu * 1000:.1f} ms"

        (evlog_name, evlog), *peers = timings.items()
        rows = [(evlog_name, *cells(evlog_name, evlog))]
        quote = [f"{section:<8} {evlog_name} {cells(evlog_name, evlog)[0]}"]
        for name, value in peers:
            ratio = rate(evlog_name, evlog) / rate(name, value) if per_event else evlog.wall / value.wall
            note = verdict(ratio, *targets[name]) if name in targets else ""
            rows.append((name, *cells(name, value), f"{ratio:.2f}x", note))
            quote.append(f"{name} {cells(name, value)[0]} ({ratio:.2f}x{', ' + note if note else ''})")
        table(rows)
        self.summary.append(" | ".join(quote))


def section_append(bench: Bench) -> None:
    say(f"append: {bench.n:,} NDJSON events on stdin into a fresh store, median of {bench.repeat}; "
        "ratio = evlog rate / peer rate")
    commands: dict[str, Callable[[Path], list[str]]] = {
        "evlog": lambda path: [*EVLOG, "append", "--log", str(path)],
        "raw lmdb": lambda path: [*PEER, "append-lmdb", str(path), "no"],
        "raw lmdb + stream index": lambda path: [*PEER, "append-lmdb", str(path), "yes"],
        "sqlite3": lambda path: [*PEER, "append-sqlite", str(path)],
    }
    stored: dict[str, int] = {}

    def job(name: str) -> Callable[[], Timing]:
        def timed() -> Timing:
            target = bench.workdir / f"append-{name}"
            remove(target)
            timing, out = run(commands[name](target), stdin=bench.events_file, capture=True)
            if name != "evlog":
                stored[name] = int(out)  # peers print how many events they stored
            elif not bench.log.exists():
                target.rename(bench.log)  # the first evlog log serves replay and until
            remove(target)
            return timing
        return timed

    seconds = interleaved({name: job(name) for name in commands}, bench.repeat)
    info = run([*EVLOG, "info", "--log", str(bench.full_log()), "-o", "json"], capture=True)[1]
    stored["evlog"] = orjson.loads(info)["events"]
    bench.report("append", seconds, {"raw lmdb": (">=", 0.40), "sqlite3": (">", 1.0)}, per_event=True)
    wrong = {name: count for name, count in stored.items() if count != bench.n}
    if wrong:
        say(f"  WARNING: stored event counts differ from {bench.n:,}: {wrong}")


def section_replay(bench: Bench) -> None:
    say(f"replay: the whole {bench.n:,}-event log as NDJSON to /dev/null, median of {bench.repeat}; "
        "ratio = evlog rate / peer rate")
    log, prefix = str(bench.full_log()), min(bench.n, 2000)
    ours = run([*EVLOG, "replay", "--log", log, "--until", str(prefix), "-o", "ndjson"], capture=True)[1]
    same = ours == run([*PEER, "replay", log, str(prefix)], capture=True)[1]
    seconds = interleaved({
        "evlog": timer([*EVLOG, "replay", "--log", log, "-o", "ndjson"]),
        "direct lmdb scan": timer([*PEER, "replay", log, "0"]),
    }, bench.repeat)
    bench.report("replay", seconds, {"direct lmdb scan": (">=", 0.50)}, per_event=True)
    say(f"  the scan prints {'the same bytes as' if same else 'OTHER BYTES than'} evlog "
        f"for the first {prefix:,} events")


def section_startup(bench: Bench) -> None:
    runs = max(21, 7 * bench.repeat)
    say(f"startup: one process, median of {runs} interleaved runs; ratio = evlog wall time / peer wall time")
    log, db = bench.workdir / "startup.lmdb", bench.workdir / "startup.db"
    run([*EVLOG, "append", "account.opened", "owner=Ada", "--log", str(log)])
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE t (x)")
    commands = {
        "evlog append deposit amount:=1": [*EVLOG, "append", "deposit", "amount:=1", "--log", str(log)],
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "python -c 'import lmdb, msgpack'": [sys.executable, "-c", "import lmdb, msgpack"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    sqlite_cli = shutil.which("sqlite3")
    if sqlite_cli:
        commands["sqlite3 DB 'insert ...'"] = [sqlite_cli, str(db), "insert into t values (1)"]
    for cmd in commands.values():  # warm the caches of exactly these commands
        run(cmd)
    seconds = interleaved({name: timer(cmd) for name, cmd in commands.items()}, runs)
    bench.report("startup", seconds, {"python -c 'import typer'": ("<=", 1.25)}, per_event=False)
    if not sqlite_cli:
        say("  no sqlite3 command on PATH: its figure is skipped")


def section_until(bench: Bench) -> None:
    if bench.n < 20:
        raise SystemExit("bench: the until section needs --events >= 20")
    runs = max(15, 5 * bench.repeat)
    first, last = bench.n // 2, bench.n // 2 + 9
    say(f"until: replay --from {first:,} --until <the time, or the seq, of event {last:,}>, "
        f"median of {runs} interleaved runs")
    replay = [*EVLOG, "replay", "--log", str(bench.full_log()), "-o", "ndjson"]
    until = orjson.loads(run([*replay, "--from", str(last), "--until", str(last)], capture=True)[1])["ts"]
    by_time = [*replay, "--from", str(first), "--until", until]
    by_seq = [*replay, "--from", str(first), "--until", str(last)]
    printed = run(by_time, capture=True)[1].count(b"\n")
    if printed != 10:
        say(f"  note: --until {until} selects {printed:,} events, not 10 (the events of one append "
            "batch share one ts), so both commands get -n 10")
        by_time, by_seq = [*by_time, "-n", "10"], [*by_seq, "-n", "10"]
    timings = interleaved({"--until <time>": timer(by_time), "--until <seq>": timer(by_seq)}, runs)
    ms = {name: f"{timing.wall * 1000:.1f} ms" for name, timing in timings.items()}
    cost = (timings["--until <time>"].wall - timings["--until <seq>"].wall) * 1000
    ok = "PASS" if cost < 10 else "FAIL"
    table([*ms.items(), ("binary search (the difference)", f"{cost:.1f} ms", f"target < 10 ms: {ok}")])
    bench.summary.append(f"until    --until <time> {ms['--until <time>']} | --until <seq> {ms['--until <seq>']} | "
                         f"binary search {cost:.1f} ms (target < 10 ms: {ok})")


# -- fold: folds, projections and their memory ---------------------------------

COUNT_FOLD = ("--fold", "s[e.type] = s.get(e.type, 0) + 1")
BALANCE_FOLD = ("--by", "stream", "--init", '{"balance": 0}',
                "--on", "deposit", "s.balance += d.amount", "--on", "withdraw", "s.balance -= d.amount")
SNAPSHOT_EVERY = 50_000
# jq 1.6 (Debian's) slows down as its input grows, so past this many events it reads
# only the first ones; its figure is a rate all the same.
JQ_16_LIMIT = 200_000
# `.[k] -= x` stops jq 1.6 on a stream's first withdrawal (null minus a number), so
# both branches start a missing balance at 0; this form is also no slower.
JQ_BALANCE = ('reduce inputs as $e ({}; if $e.type == "deposit" then .[$e.stream] = (.[$e.stream] // 0) + '
              '$e.data.amount elif $e.type == "withdraw" then .[$e.stream] = (.[$e.stream] // 0) - '
              '$e.data.amount else . end)')


def fold_cmd(log: Path, *args: str) -> list[str]:
    """``evlog replay`` folding from the first event (ignoring saved snapshots), printing compact JSON."""
    return [*EVLOG, "replay", "--log", str(log), *args, "--no-snapshot", "-o", "ndjson"]


def balances(output: bytes) -> dict[str, int]:
    """``{stream: balance}`` from the balance fold's ``{stream: {"balance": n}}``."""
    return {stream: state["balance"] for stream, state in orjson.loads(output).items()}


def first_difference(ours: dict[str, int], theirs: dict[str, int], *, missing: int | None = None) -> str | None:
    """The first stream whose balances differ (a stream absent on one side counts as ``missing``)."""
    for stream in sorted(ours.keys() | theirs.keys()):
        if ours.get(stream, missing) != theirs.get(stream, missing):
            return f"{stream}: evlog {ours.get(stream, missing)}, peer {theirs.get(stream, missing)}"
    return None


def build_sqlite(bench: Bench) -> Path:
    """The events as an sqlite table (untimed): seq, ts, type, stream and data as JSON text, no index."""
    db = bench.workdir / "fold.db"
    connection = sqlite3.connect(db)
    with connection, open(bench.events_file, "rb") as source:  # one transaction
        connection.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, ts, type TEXT, stream TEXT, data TEXT)")
        connection.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", (
            (seq, time.time_ns(), event["type"], event.get("stream"), orjson.dumps(event.get("data")).decode())
            for seq, event in enumerate(map(orjson.loads, source), 1)
        ))
    connection.close()
    return db


def find_jq() -> str | None:
    """The jq command, installed by apt-get (once) where it is missing and we may."""
    found = shutil.which("jq")
    if found or not shutil.which("apt-get") or os.geteuid() != 0:
        return found
    say("  jq is not installed: trying apt-get install -y jq")
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL,
                             "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}}
    if subprocess.run(["apt-get", "install", "-y", "jq"], **quiet).returncode != 0:
        subprocess.run(["apt-get", "update"], **quiet)  # a fresh container has no package lists yet
        subprocess.run(["apt-get", "install", "-y", "jq"], **quiet)
    return shutil.which("jq")


GNU_TIME = "/usr/bin/time"


class Memory(NamedTuple):
    """A process's peak memory in bytes.

    ``rss`` is the kernel's high-water mark, which counts every resident page,
    also the log's pages that LMDB maps (file-backed, shared with the page
    cache); ``anon`` is the highest RssAnon sampled every few ms: the memory
    the process allocated itself (heap, stacks).
    """

    rss: int
    anon: int


def child_of(pid: int) -> int | None:
    """A child process of ``pid``, found by its parent id in /proc (None: none yet)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    parent = int(stat.read().rsplit(b")", 1)[1].split()[1])  # the name may hold spaces
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                return int(entry)
    return None


def rss_anon(pid: int) -> int:
    """The RssAnon of a running process in bytes (0 where /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_memory(cmd: list[str]) -> tuple[Timing, Memory]:
    """Run a whole process under GNU time, for the peak RSS of that process alone.

    Not wait4's or RUSAGE_CHILDREN's ru_maxrss: a child's high-water mark
    starts at its parent's RSS when it is spawned, so they report at least
    the harness's own size (measured: 66 MB for folds of 100,000 and of
    200,000 events alike, which GNU time puts at 42 and 55 MB). GNU time's
    process is small. Meanwhile the command's RssAnon is sampled.
    """
    with tempfile.NamedTemporaryFile() as peak, tempfile.TemporaryFile() as errors:
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        proc = subprocess.Popen([GNU_TIME, "-f", "%M", "-o", peak.name, *cmd], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=errors, env=ENV)
        child, anon = None, 0
        while proc.poll() is None:
            child = child or child_of(proc.pid)
            if child is not None:
                anon = max(anon, rss_anon(child))
            time.sleep(0.005)
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"bench: {' '.join(cmd)} exited {proc.returncode}: {errors.read().decode().strip()}")
        rss = int(peak.read().split()[-1]) * 1024  # KiB
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Timing(wall, cpu), Memory(rss, anon)


def section_fold(bench: Bench) -> None:
    log = bench.full_log()
    for part in (fold_count, fold_balance, fold_show, fold_memory):
        if part is not fold_count:
            say()
        part(bench, log)


def fold_count(bench: Bench, log: Path) -> None:
    say(f"fold count: events by type over the whole {bench.n:,}-event log, median of {bench.repeat}; "
        "ratio = evlog rate / peer rate")
    commands = {
        "evlog replay --fold (count by type)": fold_cmd(log, *COUNT_FOLD),
        "lmdb loop decoding every payload": [*PEER, "count-types", str(log), "yes"],
        "lmdb loop decoding headers only": [*PEER, "count-types", str(log), "no"],
    }
    # An untimed run of each first: it checks the counts and compiles the fold's modules.
    counts = {name: orjson.loads(run(cmd, capture=True)[1]) for name, cmd in commands.items()}
    seconds = interleaved({name: timer(cmd) for name, cmd in commands.items()}, bench.repeat)
    bench.report("fold", seconds, {"lmdb loop decoding every payload": (">=", 1.50)}, per_event=True)
    ours = counts["evlog replay --fold (count by type)"]
    wrong = [name for name, theirs in counts.items() if theirs != ours]
    total = sum(ours.values())
    say(f"  counts: {len(ours)} types, {total:,} events; "
        + (f"the loops count OTHERWISE: {', '.join(wrong)}" if wrong else "the loops count the same")
        + ("" if total == bench.n else f"; WARNING: not {bench.n:,} events"))


def fold_balance(bench: Bench, log: Path) -> None:
    say(f"fold balance: per-stream balance of deposits and withdrawals, {bench.n:,} events, "
        f"median of {bench.repeat}; ratio = evlog rate / peer rate")
    db = build_sqlite(bench)
    evlog_cmd, sqlite_cmd = fold_cmd(log, *BALANCE_FOLD), [*PEER, "balance-sqlite", str(db)]
    ours, theirs = balances(run(evlog_cmd, capture=True)[1]), orjson.loads(run(sqlite_cmd, capture=True)[1])
    jobs = {"evlog replay --by stream --on ...": timer(evlog_cmd), "sqlite3 SUM ... GROUP BY stream": timer(sqlite_cmd)}
    targets = {"sqlite3 SUM ... GROUP BY stream": (">=", 0.75)}
    counts: dict[str, int] = {}
    jq, jq_output, notes = find_jq(), [b""], []
    if jq is None:
        notes.append("no jq command (and apt-get could not install it): its figure is skipped")
    else:
        version = run([jq, "--version"], capture=True)[1].decode().strip()
        source, events = bench.events_file, bench.n
        if version == "jq-1.6" and bench.n > JQ_16_LIMIT:
            source, events = bench.workdir / "jq-prefix.ndjson", JQ_16_LIMIT
            with open(bench.events_file, "rb") as lines, open(source, "wb") as prefix:
                prefix.writelines(itertools.islice(lines, JQ_16_LIMIT))
            notes.append(f"{version} slows down on long inputs: it reads the first {JQ_16_LIMIT:,} events only "
                         "(its figure is a rate all the same)")
        else:
            notes.append(f"{version} reads all {bench.n:,} events")
        name, cmd = f"{version} reduce", [jq, "-n", JQ_BALANCE, str(source)]

        def jq_job() -> Timing:
            # jq's answer is kept for the check; a pipe instead of /dev/null costs nothing beside its run time.
            timing, jq_output[0] = run(cmd, capture=True)
            return timing

        jobs[name], targets[name], counts[name] = jq_job, (">=", 3.0), events
    seconds = interleaved(jobs, bench.repeat)
    bench.report("fold", seconds, targets, per_event=True, counts=counts)
    difference = first_difference(ours, theirs)
    say(f"  sqlite: {'results agree' if difference is None else 'first difference: ' + difference} "
        f"({len(ours):,} streams)")
    if jq is not None:
        # jq only names streams that had a deposit or withdrawal: the others are at 0.
        expected = ours if events == bench.n else balances(
            run(fold_cmd(log, "--until", str(events), *BALANCE_FOLD), capture=True)[1])
        difference = first_difference(expected, orjson.loads(jq_output[0]), missing=0)
        say(f"  jq: {'results agree' if difference is None else 'first difference: ' + difference} "
            f"(with evlog's fold of the same {events:,} events)")
    for note in notes:
        say(f"  {note}")


def fold_show(bench: Bench, log: Path) -> None:
    runs = max(9, 3 * bench.repeat)
    rng = random.Random(SEED)
    positions = [rng.randint(1, bench.n) for _ in range(runs)]
    say(f"fold show: projection show --at <a random seq>, snapshots every {SNAPSHOT_EVERY:,} events, beside the "
        f"trivial replay --until 1, median of {runs} interleaved runs; ratio = evlog wall time / peer wall time")
    where = ("--log", str(log))
    run([*EVLOG, "projection", "add", "balances", *where, *BALANCE_FOLD, "--snapshot-every", str(SNAPSHOT_EVERY)])
    warm = run([*EVLOG, "projection", "show", "balances", *where, "-o", "ndjson"])[0]
    listing = [*EVLOG, "snapshot", "list", *where, "-o", "ndjson"]
    saved = run(listing, capture=True)[1].count(b"\n")
    say(f"  warm-up: the first show folded all {bench.n:,} events in {warm.wall:.2f} s, saving {saved} snapshots")

    def show(position: int) -> list[str]:
        return [*EVLOG, "projection", "show", "balances", *where, "--at", str(position), "-o", "ndjson"]

    middle = sorted(positions)[runs // 2]  # the fold from the start, to a typical position
    from_start = fold_cmd(log, "--until", str(middle), *BALANCE_FOLD)
    agree = orjson.loads(run(show(middle), capture=True)[1]) == orjson.loads(run(from_start, capture=True)[1])
    upcoming = iter(positions)  # each round asks about the next position
    timings = interleaved({
        "evlog projection show --at P": lambda: run(show(next(upcoming)))[0],
        "evlog replay --until 1": timer([*EVLOG, "replay", *where, "--until", "1", "-o", "ndjson"]),
        f"evlog replay --until {middle} --no-snapshot (the fold from the start)": timer(from_start),
    }, runs)
    bench.report("fold", timings, {"evlog replay --until 1": ("<=", 1.60)}, per_event=False)
    # A show saves a snapshot only after folding --snapshot-every events; say whether the timed ones did.
    saved_since = run(listing, capture=True)[1].count(b"\n") - saved
    say(f"  P: {', '.join(f'{position:,}' for position in positions)}; the timed shows saved {saved_since} snapshots")
    say(f"  show --at {middle:,} {'gives the same state as' if agree else 'gives ANOTHER STATE than'} "
        "the fold from the start")


def fold_memory(bench: Bench, log: Path) -> None:
    say(f"fold memory: peak memory of the balance fold over the whole log, {bench.n:,} and {2 * bench.n:,} events, "
        f"median of {bench.repeat}; ratio = 2N / N")
    if not os.access(GNU_TIME, os.X_OK):
        say(f"  no {GNU_TIME} (GNU time, Debian package `time`): the memory figures are skipped")
        return
    double = bench.workdir / "double.lmdb"
    for _ in range(2):  # the same events twice: streams (and so the state) stay the same size
        run([*EVLOG, "append", "--log", str(double)], stdin=bench.events_file)
    logs, multiple = {"N": log, "2N": double}, {"N": 1, "2N": 2}
    peaks: dict[str, list[Memory]] = {size: [] for size in logs}

    def job(size: str) -> Callable[[], Timing]:
        def measured() -> Timing:
            timing, memory = run_memory(fold_cmd(logs[size], *BALANCE_FOLD))
            peaks[size].append(memory)
            return timing
        return measured

    interleaved({size: job(size) for size in logs}, bench.repeat)
    rss = {size: statistics.median(memory.rss for memory in peaks[size]) for size in logs}
    anon = {size: statistics.median(memory.anon for memory in peaks[size]) for size in logs}
    rss_ratio = rss["2N"] / rss["N"]
    anon_ratio = anon["2N"] / anon["N"] if anon["N"] else float("nan")  # nan: no /proc to sample

    def mb(value: float) -> str:
        return f"{value / 1e6:.0f} MB"

    table([
        ("", "peak RSS", "anonymous", "log file"),
        *((f"{size} = {bench.n * multiple[size]:,} events", mb(rss[size]), mb(anon[size]),
           mb((path / "data.mdb").stat().st_size)) for size, path in logs.items()),
        ("ratio 2N / N", f"{rss_ratio:.2f}x", f"{anon_ratio:.2f}x", "", verdict(rss_ratio, "<=", 1.20)),
    ])
    say("  peak RSS counts the log's pages LMDB maps as they are read (file-backed, shared with the page cache); "
        "anonymous is the process's own memory, sampled every 5 ms")
    remove(double)
    bench.summary.append(f"fold     memory peak RSS {mb(rss['N'])} / {mb(rss['2N'])} "
                         f"({rss_ratio:.2f}x, {verdict(rss_ratio, '<=', 1.20)}) | "
                         f"anonymous {mb(anon['N'])} / {mb(anon['2N'])} ({anon_ratio:.2f}x)")


def warm_caches(bench: Bench) -> None:
    """Run every kind of process once on a few events, so that no timed run compiles bytecode."""
    sample, log = bench.workdir / "warm.ndjson", str(bench.workdir / "warm.lmdb")
    generate_events(sample, 10)
    for cmd in ([*EVLOG, "append", "--log", log], [*PEER, "append-lmdb", log + "-raw", "yes"],
                [*PEER, "append-sqlite", log + "-sqlite"]):
        run(cmd, stdin=sample)
    for cmd in ([*EVLOG, "append", "deposit", "a=1", "--log", log], [*EVLOG, "info", "--log", log],
                [*EVLOG, "replay", "--log", log, "-o", "ndjson"], [*PEER, "replay", log, "0"]):
        run(cmd)


def machine_facts(bench: Bench, size: int) -> None:
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("lmdb", "msgpack", "orjson", "typer"))
    say(f"python {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}")
    say(f"{versions}, evlog-cli {metadata.version('evlog-cli')}, sqlite {sqlite3.sqlite_version}")
    say(f"CPUs: {os.cpu_count()}, events: {bench.n:,} ({size / 1e6:.1f} MB NDJSON, {size / bench.n:.0f} B/line), "
        f"repeat: {bench.repeat}, evlog: {' '.join(EVLOG)}")
    say(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; figures are wall clock, cpu is the "
        "process's user + system time (wall above cpu: waits on the disk, or a busy machine)")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        say("PYTHONDONTWRITEBYTECODE is set: ignored, processes cache bytecode in the work directory as users' do")


SECTIONS: dict[str, Callable[[Bench], None]] = {
    "append": section_append, "replay": section_replay, "startup": section_startup, "until": section_until,
    "fold": section_fold,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, metavar="N", help="events in the data set")
    parser.add_argument("--repeat", type=int, default=3, metavar="R", help="runs per figure (median)")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)})")
    parser.add_argument("--workdir", type=Path, metavar="DIR", help="where the temporary directory goes")
    args = parser.parse_args()
    if args.events < 1 or args.repeat < 1:
        parser.error("--events and --repeat must be at least 1")
    started = time.perf_counter()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="evlog-bench-", dir=args.workdir))
    # Bytecode is cached as on a user's machine, even where PYTHONDONTWRITEBYTECODE is set,
    # but inside the work directory: nothing is written beside the sources.
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    try:
        bench = Bench(workdir, args.events, args.repeat)
        machine_facts(bench, generate_events(bench.events_file, bench.n))
        warm_caches(bench)
        for name, section in SECTIONS.items():
            if not args.only or name in args.only:
                say()
                section(bench)
        say("\nsummary")
        for line in bench.summary:
            say(line)
        say(f"\ntook {time.perf_counter() - started:.0f} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
