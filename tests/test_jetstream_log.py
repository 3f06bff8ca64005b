"""What a ``nats://`` log adds to the shared backend suite: concurrency across processes, limits, faults.

Each test runs the real ``evlog`` command (or several at once) against a
nats-server started by the session's fixture.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import run_evlog
from running import clean_env

from evlog import ConflictError, Log


def _ndjson(count: int, *, stream: str = "s", start: int = 0) -> bytes:
    return b"".join(
        json.dumps({"type": "tick", "stream": stream, "data": {"n": start + n}}).encode() + b"\n"
        for n in range(count)
    )


def test_concurrent_bulk_appenders_make_one_gapless_log(nats_log_url: str) -> None:
    run_evlog("append", "begin", log=nats_log_url)
    writers = [
        subprocess.Popen(
            [sys.executable, "-m", "evlog", "append", "--batch", "50", "--log", nats_log_url],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env(),
        )
        for _ in range(3)
    ]
    for number, writer in enumerate(writers):
        assert writer.stdin is not None
        lines = b"".join(
            json.dumps({"type": "tick", "stream": f"s{n % 5}", "data": {"w": number, "n": n}}).encode() + b"\n"
            for n in range(600)
        )
        writer.stdin.write(lines)
        writer.stdin.close()
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read() if writer.stderr else b""
    with Log(nats_log_url) as log:
        events = list(log.read())
    assert [event.seq for event in events] == list(range(1, 1802))
    seen = {(event.data["w"], event.data["n"]) for event in events[1:]}  # type: ignore[index]
    assert len(seen) == 1800
    versions: dict[str, int] = {}
    for event in events[1:]:
        assert event.stream is not None
        versions[event.stream] = versions.get(event.stream, 0) + 1
        assert event.version == versions[event.stream]
    times = [event.ts for event in events]
    assert times == sorted(times)


def _increment(url: str, worker: int, count: int, results: Any) -> None:
    """Append ``count`` events to stream c, each with --expect of the version last seen (retried on conflict)."""
    won = conflicts = 0
    version = 0
    with Log(url) as log:
        while won < count:
            try:
                log.append("inc", {"worker": worker}, stream="c", expect=version)
                won += 1
                version += 1
            except ConflictError as conflict:
                conflicts += 1
                version = conflict.actual
    results.put((worker, won, conflicts))


def test_expect_holds_against_writers_in_other_processes(nats_log_url: str) -> None:
    run_evlog("append", "begin", log=nats_log_url)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_increment, args=(nats_log_url, n, 15, results)) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    outcomes = [results.get(timeout=5) for _ in workers]
    with Log(nats_log_url) as log:
        stream = list(log.read(streams=["c"]))
    assert [event.version for event in stream] == list(range(1, 46)), "no lost update, no repeated version"
    assert sum(won for _, won, _ in outcomes) == 45


def test_atomic_takes_at_most_one_server_batch(nats_log_url: str) -> None:
    too_many = run_evlog("append", "--atomic", log=nats_log_url, input=_ndjson(1001))
    assert too_many.returncode == 2
    assert "at most 1000 events" in too_many.stderr.decode()
    assert run_evlog("replay", log=nats_log_url).stdout == b"", "nothing was written"
    assert run_evlog("append", "--atomic", log=nats_log_url, input=_ndjson(1000)).returncode == 0
    bad = _ndjson(10) + b'{"type": ""}\n'
    refused = run_evlog("append", "--atomic", log=nats_log_url, input=bad)
    assert refused.returncode == 65 and "--atomic: nothing was written" in refused.stderr.decode()
    with Log(nats_log_url) as log:
        assert log.head() == 1000


def test_a_bulk_append_larger_than_a_server_batch_commits_as_it_goes(nats_log_url: str) -> None:
    bad_line = _ndjson(2500) + b"not json\n"
    stopped = run_evlog("append", "--batch", "10000", log=nats_log_url, input=bad_line)
    assert stopped.returncode == 65
    assert "appended 2,500 events (seq 1-2500); stopped at line 2501" in stopped.stderr.decode()


def test_a_stream_that_is_not_an_evlog_log_is_refused_and_left_untouched(nats_url: str) -> None:
    import asyncio

    import nats

    async def make_foreign() -> int:
        connection = await nats.connect(nats_url)
        stream = connection.jetstream()
        await stream.add_stream(name="foreign", subjects=["evlog.foreign.>"])
        await stream.publish("evlog.foreign.n", b"theirs")
        info = await stream.stream_info("foreign")
        await connection.close()
        return int(info.state.messages)

    assert asyncio.run(make_foreign()) == 1
    for args in (("append", "mine"), ("replay",), ("info",), ("tail", "-n", "1")):
        result = run_evlog(*args, log=f"{nats_url}/foreign")
        assert result.returncode == 74, (args, result.stderr)
        message = result.stderr.decode()
        assert message.count("\n") == 1 and "not an evlog log" in message and "Traceback" not in message

    async def count() -> int:
        connection = await nats.connect(nats_url)
        info = await connection.jetstream().stream_info("foreign")
        await connection.close()
        return int(info.state.messages)

    assert asyncio.run(count()) == 1


def test_an_unreachable_server_is_one_line_within_seconds(tmp_path: Path) -> None:
    from natsserver import free_port

    started = time.monotonic()
    result = run_evlog("append", "x", log=f"nats://127.0.0.1:{free_port()}/shop")
    assert time.monotonic() - started < 15
    assert result.returncode == 74
    message = result.stderr.decode()
    assert message.count("\n") == 1 and "cannot reach the NATS server" in message


def test_without_the_nats_client_the_extra_is_named(nats_log_url: str, tmp_path: Path) -> None:
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'nats' or name.startswith('nats.'):\n"
        "            raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    import os

    paths = [str(tmp_path), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    result = run_evlog("append", "x", log=nats_log_url, env={"PYTHONPATH": os.pathsep.join(p for p in paths if p)})
    assert result.returncode == 2
    assert "pip install 'evlog-cli[nats]'" in result.stderr.decode()


def test_a_local_log_never_imports_the_nats_client(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom evlog import Log\n"
        f"with Log({str(tmp_path / 'l')!r}) as log:\n    log.append('x')\n    list(log.read())\n"
        "print(any(name == 'nats' or name.startswith('nats.') for name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, env=clean_env(), check=True)
    assert result.stdout.strip() == b"False"


def test_info_says_where_and_how_the_log_is_kept(nats_log_url: str) -> None:
    run_evlog("append", "x", "-s", "a", log=nats_log_url)
    result = run_evlog("info", "-o", "json", log=nats_log_url)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["path"] == nats_log_url
    assert (info["replicas"], info["storage"]) == (1, "file")
    assert info["events"] == 1 and info["streams"] == 1
