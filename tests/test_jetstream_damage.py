"""A log on a server that someone else wrote to: verify names the damage, other commands refuse it.

The server accepts any message on the log's subjects from any client with the
right to publish there, and a stream of the same name may not be evlog's at
all. These tests write such messages with a plain nats-py client (no evlog
code) and check what ``evlog verify`` says (the seq, exit 1) and what the
other commands do (``damaged log: seq N ...``, exit 74; nothing written).
A backup from such a log leaves nothing behind, and neither does one cut short.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgpack
import pytest
from conftest import run_evlog

from evlog import Log
from evlog.backends.jetstream.url import event_subject, kv_key, parse_location
from evlog.record import chain_hash, seq_key

pytestmark = pytest.mark.usefixtures("nats_url")


def _plain(url: str, work: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``work(js)`` with a plain nats-py JetStream context on the log's server."""
    import nats

    async def main() -> Any:
        nc = await nats.connect(parse_location(url).servers[0])
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())


def _log_with_events(url: str) -> str:
    with Log(url) as log:
        log.append_many([{"type": "opened", "stream": "acct-1", "id": "open-1"},
                         {"type": "deposit", "stream": "acct-1", "data": {"amount": 5}},
                         {"type": "note"}])
        assert log.types() == {"opened": 1, "deposit": 1, "note": 1}  # the derived index is built to seq 3
    return parse_location(url).name


def _record(url: str, seq: int) -> tuple[bytes, str]:
    async def get(js: Any) -> tuple[bytes, str]:
        message = await js.get_msg(parse_location(url).name, seq)
        return message.data, message.subject

    result: tuple[bytes, str] = _plain(url, get)
    return result


def _publish(url: str, subject: str, data: bytes, headers: dict[str, str] | None = None) -> int:
    async def publish(js: Any) -> int:
        return int((await js.publish(subject, data, headers=headers)).seq)

    result: int = _plain(url, publish)
    return result


def _verify_findings(url: str) -> list[str]:
    result = run_evlog("verify", log=url)
    assert result.returncode == 1, result.stderr
    assert "problem" in result.stderr.decode()
    return result.stdout.decode().splitlines()


def _refused(url: str, seq: int, tmp_path: Path, *commands: tuple[str, ...]) -> None:
    """Each command stops with "damaged log: seq N", exit 74; a backup leaves nothing behind."""
    dest = tmp_path / "copy"
    for command in (("backup", str(dest)), *commands):
        result = run_evlog(*command, log=url)
        assert result.returncode == 74, (command, result.stderr)
        assert result.stderr.decode().startswith(f"evlog: damaged log: seq {seq} ("), (command, result.stderr)
        assert "Traceback" not in result.stderr.decode()
    assert not dest.exists()


def test_a_message_that_is_not_a_record(nats_log_url: str, tmp_path: Path) -> None:
    name = _log_with_events(nats_log_url)
    seq = _publish(nats_log_url, event_subject(name, "acct-1"), b'{"not": "a record"}')
    assert seq == 4
    findings = _verify_findings(nats_log_url)
    assert any(line.startswith("seq 4: cannot be decoded") or line.startswith("seq 4: is not an evlog record")
               for line in findings), findings
    _refused(nats_log_url, 4, tmp_path, ("replay",), ("stats",))


def test_a_record_on_the_subject_of_another_stream(nats_log_url: str, tmp_path: Path) -> None:
    name = _log_with_events(nats_log_url)
    data, _ = _record(nats_log_url, 2)  # version 2 of acct-1, chained after seq 1
    seq = _publish(nats_log_url, event_subject(name, "acct-2"), data)
    findings = _verify_findings(nats_log_url)
    assert f"seq {seq}: is an event of 'acct-1' on the subject of 'acct-2' ({event_subject(name, 'acct-2')})" \
        in findings, findings
    _refused(nats_log_url, seq, tmp_path, ("streams",))


def test_a_message_on_a_subject_that_is_no_event_subject(nats_log_url: str, tmp_path: Path) -> None:
    name = _log_with_events(nats_log_url)
    data, _ = _record(nats_log_url, 3)
    seq = _publish(nats_log_url, f"evlog.{name}.other", data)
    findings = _verify_findings(nats_log_url)
    assert f"seq {seq}: is on subject 'evlog.{name}.other', which is not an event subject of this log" in findings
    _refused(nats_log_url, seq, tmp_path)


def test_a_record_that_breaks_the_hash_chain(nats_log_url: str, tmp_path: Path) -> None:
    name = _log_with_events(nats_log_url)
    last, _ = _record(nats_log_url, 2)
    fields = list(msgpack.unpackb(last[:-16], use_list=True))
    fields[2] = 3  # version 3 of acct-1: a sound record but for its chain hash
    forged = msgpack.packb(fields, use_bin_type=True) + bytes(16)
    seq = _publish(nats_log_url, event_subject(name, "acct-1"), forged)
    findings = _verify_findings(nats_log_url)
    assert [line for line in findings if line.startswith(f"seq {seq}: does not match its hash")], findings
    _refused(nats_log_url, seq, tmp_path)
    assert run_evlog("replay", log=nats_log_url).returncode == 0  # readable, only the chain is wrong


def test_a_message_id_that_is_not_the_records_id(nats_log_url: str) -> None:
    name = _log_with_events(nats_log_url)
    data, _ = _record(nats_log_url, 2)
    previous, _ = _record(nats_log_url, 3)
    fields = list(msgpack.unpackb(data[:-16], use_list=True))
    # Version 3 of acct-1 with an id, after seq 3 in time and chain: sound but for its header.
    fields[1], fields[2], fields[5] = msgpack.unpackb(previous[:-16])[1], 3, "deposit-9"
    body = msgpack.packb(fields, use_bin_type=True)
    seq = _publish(nats_log_url, event_subject(name, "acct-1"), body + chain_hash(previous[-16:], seq_key(4), body),
                   headers={"Nats-Msg-Id": "something-else"})
    assert seq == 4
    findings = _verify_findings(nats_log_url)
    assert findings == ["seq 4: has message id 'something-else' but its record's id is 'deposit-9'"]


def test_a_damaged_derived_index_is_reported(nats_log_url: str) -> None:
    name = _log_with_events(nats_log_url)

    async def damage(js: Any) -> None:
        ids = await js.key_value(f"evlog_{name}_ids")
        await ids.put(kv_key("open-1"), b"2")
        meta = await js.key_value(f"evlog_{name}_meta")
        await meta.put("index", msgpack.packb({"upto": 3, "types": {"opened": 2, "note": 1}, "streams": 1}))

    _plain(nats_log_url, damage)
    findings = _verify_findings(nats_log_url)
    assert findings == [
        "seq 2: is in the ids index as 'open-1' but its id is None",
        "seq 1: has id 'open-1', which the ids index gives 2",
        "log: the types index counts 0 events of type 'deposit', the log holds 1",
        "log: the types index counts 2 events of type 'opened', the log holds 1",
    ]

    async def garble(js: Any) -> None:
        meta = await js.key_value(f"evlog_{name}_meta")
        await meta.put("index", b"\xc1 not msgpack")

    _plain(nats_log_url, garble)
    assert "log: the log's index in its meta bucket is damaged; run evlog verify" in _verify_findings(nats_log_url)


def test_a_stream_whose_config_was_changed_is_reported_and_not_written(nats_log_url: str) -> None:
    name = _log_with_events(nats_log_url)

    async def limit(js: Any) -> None:
        # (The server itself refuses to lift deny_delete or deny_purge once set.)
        info = await js.stream_info(name)
        config = info.config
        config.max_msgs = 1000
        await js.update_stream(config)

    _plain(nats_log_url, limit)
    findings = _verify_findings(nats_log_url)
    assert findings == ["log: the stream's config was changed: max_msgs is set (events would be dropped)"]
    appended = run_evlog("append", "late", log=nats_log_url)
    assert appended.returncode == 74 and b"evlog will not write to it" in appended.stderr
    assert _record(nats_log_url, 3)[1] == event_subject(name, None)
    with pytest.raises(Exception, match="no message found"):
        _record(nats_log_url, 4)


def test_a_stream_that_is_not_evlogs_is_refused_and_nothing_is_written(nats_log_url: str, tmp_path: Path) -> None:
    name = parse_location(nats_log_url).name

    async def create(js: Any) -> None:
        await js.add_stream(name=name, subjects=[f"evlog.{name}.>"])
        await js.publish(f"evlog.{name}.n", b"theirs")

    _plain(nats_log_url, create)
    dest = tmp_path / "copy"
    for command in (("append", "mine"), ("verify",), ("backup", str(dest)), ("stats",), ("streams",), ("replay",)):
        result = run_evlog(*command, log=nats_log_url)
        assert result.returncode == 74, (command, result.stderr)
        assert "is not an evlog log" in result.stderr.decode(), command
    assert not dest.exists()

    async def count(js: Any) -> int:
        return int((await js.stream_info(name)).state.messages)

    assert _plain(nats_log_url, count) == 1


def test_backup_of_a_log_on_a_server_into_a_directory(nats_log_url: str, tmp_path: Path) -> None:
    _log_with_events(nats_log_url)
    inside = tmp_path / "missing" / "copy"
    refused = run_evlog("backup", str(inside), log=nats_log_url)
    assert refused.returncode == 2 and b"does not exist" in refused.stderr
    dest = tmp_path / "copy"
    done = run_evlog("backup", str(dest), log=nats_log_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith(f"3 events copied to {dest}; head hash ")
    with Log(str(dest)) as copy:
        assert copy.info()["streams"] == 1 and copy.resolve("id:open-1") == 1
    # The copy is an ordinary local log: it takes appends, and its chain goes on from the server's.
    assert run_evlog("append", "later", log=str(dest)).returncode == 0
    assert run_evlog("verify", log=str(dest)).returncode == 0
    summary = json.loads(run_evlog("verify", "-o", "json", log=str(dest)).stdout)
    assert summary["events"] == 4 and summary["ok"]


def test_verify_snapshots_recomputes_a_servers_snapshots(nats_log_url: str) -> None:
    _log_with_events(nats_log_url)
    saved = run_evlog("snapshot", "save", "--fold", "s + 1", "--init", "0", log=nats_log_url)
    assert saved.returncode == 0, saved.stderr
    result = run_evlog("verify", "--snapshots", log=nats_log_url)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert b"1 snapshot" in result.stdout + result.stderr


def test_a_backup_from_a_server_cut_short_by_sigterm_leaves_nothing(nats_log_url: str, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    lines = "".join(json.dumps({"type": "tick", "stream": f"s-{n % 50}", "data": {"n": n}}) + "\n"
                    for n in range(60_000))
    assert run_evlog("append", log=nats_log_url, input=lines, timeout=120).returncode == 0
    dest = tmp_path / "copy"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    backup = subprocess.Popen([sys.executable, "-m", "evlog", "backup", str(dest), "--log", nats_log_url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 30
    while not (dest / "data.mdb").exists():  # the copy has begun
        assert backup.poll() is None and time.monotonic() < deadline, backup.stderr
        time.sleep(0.005)
    backup.send_signal(signal.SIGTERM)
    _, stderr = backup.communicate(timeout=30)
    assert backup.returncode == 143, stderr
    assert stderr.decode() == "evlog: interrupted by SIGTERM; the partial copy was removed\n"
    assert not dest.exists()


def test_verify_backup_and_streams_on_a_replicated_log(nats_cluster: Any, tmp_path: Path) -> None:
    """On three nodes any replica may answer a read: none of the answers may look like damage."""
    from evlog.backends.jetstream.client import LogClient

    hosts = ",".join(server.partition("://")[2] for server in nats_cluster.urls)
    url = f"nats://{hosts}/replicated"
    with LogClient.connect(parse_location(url)) as client:
        client.create_log_stream(replicas=3)
    lines = "".join(json.dumps({"type": "t", "stream": f"s-{n % 20}", "id": f"i-{n}"}) + "\n" for n in range(3000))
    assert run_evlog("append", "--batch", "250", log=url, input=lines, timeout=120).returncode == 0
    for command in (("verify",), ("verify", "--from", "2999"), ("streams", "-o", "json"), ("stats", "-o", "json")):
        result = run_evlog(*command, log=url, timeout=120)
        assert result.returncode == 0, (command, result.stderr)
    streams = json.loads(run_evlog("streams", "-o", "json", log=url).stdout)
    assert [(s["stream"], s["version"]) for s in streams][:2] == [("s-0", 150), ("s-1", 150)]
    dest = tmp_path / "copy"
    assert run_evlog("backup", str(dest), log=url, timeout=120).returncode == 0
    with Log(url) as log, Log(str(dest)) as copy:
        assert copy.info()["head_hash"] == log.info()["head_hash"]
