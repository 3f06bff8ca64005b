"""A bulk append through the loss of the stream's leader, on a 3-node cluster with an R3 log.

The stream leader is killed with SIGKILL while ``evlog append`` is writing
20,000 events from a pipe. Whatever the append then says (done, or stopped
with what it wrote), afterwards: every event it acknowledged is in the log,
none is stored twice, seqs are gapless, stream versions count 1..N, and the
hash chain holds (a copy into a local log has the same head hash).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import run_evlog
from running import clean_env

from evlog import Log

EVENTS = 20_000
STREAMS = 50


def _line(number: int) -> bytes:
    return json.dumps({"type": "tick", "stream": f"s-{number % STREAMS}", "data": {"n": number}}).encode() + b"\n"


def _cluster_url(cluster: Any, name: str) -> str:
    hosts = ",".join(url.removeprefix("nats://") for url in cluster.urls)
    return f"nats://{hosts}/{name}"


def test_killing_the_leader_mid_append_loses_and_repeats_nothing(nats_cluster: Any, tmp_path: Path) -> None:
    url = _cluster_url(nats_cluster, "failover")
    with Log(url) as log:
        log.append("start")
        assert log.info()["replicas"] == 3
        stream = log.backend().client.stream  # type: ignore[attr-defined]
    appender = subprocess.Popen(
        [sys.executable, "-m", "evlog", "append", "--log", url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(),
    )
    assert appender.stdin is not None
    killed = False
    try:
        for number in range(1, EVENTS + 1):
            appender.stdin.write(_line(number))
            if number % 500 == 0:
                appender.stdin.flush()
                time.sleep(0.02)  # a live producer: batches commit as they come
            if number == EVENTS // 4:
                appender.stdin.flush()
                time.sleep(0.3)
                leader = nats_cluster.stream_leader(stream)
                os.kill(leader.pid, 9)
                killed = True
        appender.stdin.close()
    except BrokenPipeError:
        pass  # the append stopped: what it says is checked below
    appender.wait(timeout=150)
    assert appender.stderr is not None
    stderr = appender.stderr.read()
    assert killed
    message = stderr.decode()
    with Log(_cluster_url(nats_cluster, "failover")) as log:
        events = list(log.read())
        info = log.info()
    numbers = [event.data["n"] for event in events[1:]]  # type: ignore[index]
    assert [event.seq for event in events] == list(range(1, len(events) + 1)), "seqs are gapless"
    assert len(numbers) == len(set(numbers)), "no event is stored twice"
    if appender.returncode == 0:
        assert sorted(numbers) == list(range(1, EVENTS + 1)), message
    else:
        stopped = re.search(r"appended ([\d,]+) events? .*stopped at line (\d+)", message)
        assert stopped, message
        acknowledged = int(stopped[1].replace(",", ""))
        assert set(range(1, acknowledged + 1)) <= set(numbers), "no acknowledged event is lost"
    versions: dict[str, int] = {}
    for event in events:
        if event.stream is not None:
            versions[event.stream] = versions.get(event.stream, 0) + 1
            assert event.version == versions[event.stream]
    copy = str(tmp_path / "copy.lmdb")
    replayed = run_evlog("replay", log=url, timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    assert run_evlog("append", log=copy, input=replayed.stdout).returncode == 0
    with Log(copy) as local:
        assert local.info()["head_hash"] == info["head_hash"], "the hash chain holds"
    assert run_evlog("verify", log=copy).returncode == 0
