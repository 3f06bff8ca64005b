"""Snapshots and projections of a log on a server: what only the key-value buckets can get wrong.

The behaviour both kinds of log share is in the backend suite. Here the
buckets are written around evlog, with nats-py, as someone with access to the
server could: entries keyed as evlog keys them (the hex of the LMDB key),
crafted values, keys evlog never makes. Whatever is in the bucket, a
snapshot is used only where its chain hash is the log's, and a bad
projection entry is damage, exit 74. A value larger than the server's
max_payload is not saved, and reading makes no bucket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import pytest
from conftest import run_evlog

from evlog import Log, snapshots
from evlog.fold import FoldSpec
from evlog.runner import run_fold

COUNT = ("--init", "0", "--fold", "s + d.n")
COUNT_SPEC = FoldSpec(init=0, clauses=((None, "s + d.n"),))


def _raw(url: str, purpose: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``work`` on the log's ``purpose`` bucket through a plain nats-py connection."""
    import nats

    server, name = url.rsplit("/", 1)

    async def run() -> Any:
        client = await nats.connect(server)
        try:
            return await work(await client.jetstream().key_value(f"evlog_{name}_{purpose}"))
        finally:
            await client.close()

    return asyncio.run(run())


def _buckets(url: str) -> list[str]:
    import nats

    server, name = url.rsplit("/", 1)

    async def run() -> list[str]:
        client = await nats.connect(server)
        try:
            names = [info.config.name for info in await client.jetstream().streams_info()]
        finally:
            await client.close()
        return sorted(found for found in names if found.startswith(f"KV_evlog_{name}_"))

    return asyncio.run(run())


def _filled(url: str, count: int) -> None:
    with Log(url) as log:
        log.append_many([{"type": "tick", "data": {"n": 1}}] * count)


def test_snapshots_are_keyed_as_on_lmdb_and_a_crafted_one_for_another_history_is_never_used(
    nats_log_url: str,
) -> None:
    _filled(nats_log_url, 30)
    saved = run_evlog("snapshot", "save", *COUNT, "--at", "10", log=nats_log_url)
    assert saved.returncode == 0, saved.stderr
    digest = bytes.fromhex(saved.stdout.split()[0].decode())
    key_at_10 = (digest + (10).to_bytes(8, "big")).hex()

    async def keys(kv: Any) -> list[str]:
        return sorted(await kv.keys())

    assert _raw(nats_log_url, "snapshots", keys) == [key_at_10]

    async def forge(kv: Any) -> None:
        # A copy of the honest snapshot moved to seq 25 with a state that lies: it keeps the
        # chain hash of seq 10, which is not the log's at 25.
        record = msgpack.unpackb((await kv.get(key_at_10)).value, strict_map_key=False)
        record["states"] = [[None, 1_000_000]]
        await kv.put((digest + (25).to_bytes(8, "big")).hex(), msgpack.packb(record, use_bin_type=True))

    _raw(nats_log_url, "snapshots", forge)
    replayed = run_evlog("replay", *COUNT, "-o", "json", log=nats_log_url)
    assert replayed.returncode == 0 and json.loads(replayed.stdout) == 30
    with Log(nats_log_url) as log:
        result, _ = run_fold(log, COUNT_SPEC)
    assert (result.snapshot_seq, result.value(by=False)) == (10, 30)
    listed = [json.loads(line) for line in run_evlog("snapshot", "list", "-o", "ndjson", log=nats_log_url).stdout
              .splitlines()]
    assert [(s["seq"], s["problem"] is None) for s in listed] == [(10, True), (25, False)]
    assert "made for another history" in listed[1]["problem"]


def test_the_newest_snapshot_at_or_before_a_seq_is_found_across_byte_boundaries(nats_log_url: str) -> None:
    _filled(nats_log_url, 300)
    with Log(nats_log_url) as log:
        tables = log.backend(write=True)
        for seq in (1, 9, 10, 255, 256, 257, 280):
            snapshots.save(tables, COUNT_SPEC, 1, seq, tables.ts_at(seq), {None: seq})
        for until, expected in ((300, 280), (279, 257), (256, 256), (255, 255), (254, 10), (10, 10), (9, 9)):
            result, _ = run_fold(log, COUNT_SPEC, until=until)
            assert (until, result.snapshot_seq, result.value(by=False)) == (until, expected, until)


def test_a_damaged_projection_entry_or_a_key_evlog_never_writes_is_damage(nats_log_url: str) -> None:
    _filled(nats_log_url, 3)
    assert run_evlog("projection", "add", "count", *COUNT, log=nats_log_url).returncode == 0

    async def damage(kv: Any) -> None:
        await kv.put(b"count".hex(), b"\x92\x01\x02")  # msgpack, but a list, not a projection record

    _raw(nats_log_url, "projections", damage)
    shown = run_evlog("projection", "show", "count", log=nats_log_url)
    assert shown.returncode == 74, shown.stderr
    assert shown.stderr.startswith(b"evlog: damaged log") and b"not a projection record" in shown.stderr
    assert b"remove it with evlog projection rm count" in shown.stderr
    assert run_evlog("projection", "rm", "count", log=nats_log_url).returncode == 0

    async def foreign(kv: Any) -> None:
        await kv.put("not-hex.key", b"anything")

    _raw(nats_log_url, "projections", foreign)
    listed = run_evlog("projection", "list", log=nats_log_url)
    assert listed.returncode == 74 and b"not UTF-8" in listed.stderr
    assert b"projection rm $'\\xffnot-hex.key'" in listed.stderr
    removed = run_evlog("projection", "rm", b"\xffnot-hex.key".decode(errors="surrogateescape"), log=nats_log_url)
    assert removed.returncode == 0, removed.stderr
    assert run_evlog("projection", "list", "-o", "ndjson", log=nats_log_url).stdout == b""


def test_a_foreign_snapshot_key_is_listed_as_a_problem_and_dropped(nats_log_url: str) -> None:
    _filled(nats_log_url, 3)
    assert run_evlog("snapshot", "save", *COUNT, log=nats_log_url).returncode == 0

    async def foreign(kv: Any) -> None:
        await kv.put("junk", b"\x00")

    _raw(nats_log_url, "snapshots", foreign)
    listed = [json.loads(line) for line in run_evlog("snapshot", "list", "-o", "ndjson", log=nats_log_url).stdout
              .splitlines()]
    assert [s["problem"] is None for s in listed] == [True, False]
    assert listed[1]["hash"] == (b"\xffjunk").hex() and "5 bytes" in listed[1]["problem"]
    with Log(nats_log_url) as log:
        assert run_fold(log, COUNT_SPEC)[0].snapshot_seq == 3
    dropped = run_evlog("snapshot", "drop", listed[1]["hash"], log=nats_log_url)
    assert dropped.returncode == 0 and b"dropped 1 snapshot" in dropped.stderr

    async def keys(kv: Any) -> list[str]:
        return list(await kv.keys())

    assert len(_raw(nats_log_url, "snapshots", keys)) == 1


def test_a_state_larger_than_the_servers_max_payload_is_not_saved_and_said_once(nats_log_url: str) -> None:
    with Log(nats_log_url) as log:
        log.append_many([{"type": "blob", "data": {"text": "x" * 60_000}}] * 30)
    fold = ("--init", "[]", "--fold", "s + [d.text]")
    result = run_evlog("replay", *fold, "--snapshot-every", "10", "-o", "json", log=nats_log_url)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 30
    assert result.stderr.count(b"more than the largest value the server takes") == 1
    assert b"after seq 20" in result.stderr
    listed = run_evlog("snapshot", "list", "-o", "ndjson", log=nats_log_url).stdout.splitlines()
    assert [json.loads(line)["seq"] for line in listed] == [10]
    saved = run_evlog("snapshot", "save", *fold, log=nats_log_url)
    assert saved.returncode == 65 and b"it was not saved" in saved.stderr


def test_reading_snapshots_and_projections_makes_no_bucket(nats_log_url: str) -> None:
    _filled(nats_log_url, 5)
    for command in (("snapshot", "list"), ("projection", "list"), ("replay", *COUNT),
                    ("snapshot", "drop", "--all")):
        result = run_evlog(*command, log=nats_log_url)
        assert result.returncode == 0, (command, result.stderr)
    missing = run_evlog("projection", "show", "nothing", log=nats_log_url)
    assert missing.returncode == 2 and b"no projection named 'nothing'" in missing.stderr
    assert [name for name in _buckets(nats_log_url) if "snapshots" in name or "projections" in name] == []
    assert run_evlog("snapshot", "save", *COUNT, log=nats_log_url).returncode == 0
    assert [name for name in _buckets(nats_log_url) if "snapshots" in name] != []


@pytest.mark.parametrize("name", ["with space", "dots.and/slash", "ünïcode", "*", ">"])
def test_projection_names_of_any_text_round_trip(nats_log_url: str, name: str) -> None:
    _filled(nats_log_url, 4)
    assert run_evlog("projection", "add", name, *COUNT, log=nats_log_url).returncode == 0
    listed = run_evlog("projection", "list", "-o", "ndjson", log=nats_log_url)
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == [name]
    shown = run_evlog("projection", "show", name, "-o", "json", log=nats_log_url)
    assert shown.returncode == 0 and json.loads(shown.stdout) == 4


def test_a_projection_from_the_bucket_runs_on_the_readers_terms(nats_log_url: str) -> None:
    _filled(nats_log_url, 30)
    assert run_evlog("projection", "add", "count", *COUNT, log=nats_log_url).returncode == 0

    async def rewrite(kv: Any, change: Callable[[dict[str, Any]], None]) -> None:
        record = msgpack.unpackb((await kv.get(b"count".hex())).value, strict_map_key=False)
        change(record)
        await kv.put(b"count".hex(), msgpack.packb(record, use_bin_type=True))

    # The author asks for a snapshot after every event: the reader's floor (50,000 by default) decides.
    _raw(nats_log_url, "projections", lambda kv: rewrite(kv, lambda record: record.update(snapshot_every=1)))
    shown = run_evlog("projection", "show", "count", "-o", "json", log=nats_log_url)
    assert shown.returncode == 0 and json.loads(shown.stdout) == 30
    assert run_evlog("snapshot", "list", "-o", "ndjson", log=nats_log_url).stdout == b""
    floor = run_evlog("projection", "show", "count", "--snapshot-every", "10", log=nats_log_url)
    assert floor.returncode == 0
    listed = run_evlog("snapshot", "list", "-o", "ndjson", log=nats_log_url).stdout.splitlines()
    assert [json.loads(line)["seq"] for line in listed] == [10, 20, 30]

    # A definition that holds Python is never run from a log: it is damage, with the command that removes it.
    def python(record: dict[str, Any]) -> None:
        record["spec"]["fold_file"] = "def on_tick(state, event):\n    return state\n"

    _raw(nats_log_url, "projections", lambda kv: rewrite(kv, python))
    refused = run_evlog("projection", "show", "count", log=nats_log_url)
    assert refused.returncode == 74 and b"holds Python code" in refused.stderr
    assert b"remove it with evlog projection rm count" in refused.stderr
