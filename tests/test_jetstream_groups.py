"""Groups on a log on a server: the lease of the one follower, and a follower killed with the stream's leader.

What groups must do on every kind of log is in the shared backend suite; this
adds what is particular to a server: a follower's hold is a lease in the
log's ``groups`` bucket (taken over at once from a dead process of this host,
refused with the holder named otherwise), and the fault test of a 3-node
cluster: while ``tail -f --group G --exec CMD`` handles events, the stream's
leader is killed with SIGKILL (the follower waits out the election), then the
follower itself; started again, it handles every event at least once and the
group reaches the head.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
from conftest import run_evlog
from running import clean_env

from evlog import Log, LogNotFoundError
from evlog.backends.jetstream.client import LogClient
from evlog.backends.jetstream.kv import Bucket
from evlog.backends.jetstream.url import kv_key, parse_location


def handled_seqs(path: Path) -> list[int]:
    """The seqs CMD recorded (a line cut short by a kill is not a handled event)."""
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split("\n") if line.strip().isdigit()]


def test_reading_the_groups_of_a_log_that_has_none_creates_nothing(nats_log_url: str) -> None:
    with Log(nats_log_url) as log:
        log.append("first")
    assert run_evlog("group", "list", "-o", "ndjson", log=nats_log_url).stdout == b""
    assert run_evlog("group", "dead", "g", log=nats_log_url).returncode == 2  # no such group
    with LogClient.connect(parse_location(nats_log_url)) as client:
        try:
            Bucket.open(client, "groups", create=False)
        except LogNotFoundError:
            return
        raise AssertionError("reading groups created their bucket")


def test_a_hold_left_by_a_process_of_another_host_is_refused_until_it_runs_out(nats_log_url: str) -> None:
    with Log(nats_log_url) as log:
        log.append("first")
    assert run_evlog("tail", "--group", "g", log=nats_log_url).returncode == 0
    with LogClient.connect(parse_location(nats_log_url)) as client:
        bucket = Bucket.open(client, "groups")
        soon = time.time_ns() + 3 * 10**9
        bucket.put(kv_key("lock", "g"), msgpack.packb({"host": "elsewhere", "pid": 4242, "expires": soon}))
        refused = run_evlog("tail", "--group", "g", log=nats_log_url)
        assert refused.returncode == 1
        assert b"group 'g' is being followed by another process (pid 4242 on host elsewhere;" in refused.stderr
        while time.time_ns() < soon:
            time.sleep(0.1)
        taken = run_evlog("tail", "--group", "g", log=nats_log_url)  # run out: taken over
        assert taken.returncode == 0, taken.stderr
        assert bucket.get(kv_key("lock", "g")) is None  # and given up at the end


def test_the_entries_are_the_bytes_of_an_lmdb_log(nats_log_url: str, log_path: str) -> None:
    from evlog import groups

    for where in (nats_log_url, log_path):
        with Log(where) as log:
            log.append("first")
            table = log.backend().groups()
            groups.create_group(table, "mail er", 0, groups.Filters.of(["a-*"], ["x"], "d.n > 1"))
            groups.park(table, "mail er", groups.DeadLetter(1, 5, -9, 1234, False))
    with Log(nats_log_url) as remote, Log(log_path) as local:
        assert remote.backend().groups().items() == [
            (key, value, remote.backend().groups().get(key)[1])  # type: ignore[index]
            for key, value, _ in local.backend().groups().items()
        ]


class Supervised:
    """``evlog tail -f --group G --exec CMD`` started again whenever it ends, as a service manager would."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.starts = 0
        self.failures: list[bytes] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "evlog", *self.args], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
        self.starts += 1

    def check(self) -> None:
        """Start it again if it has ended (during a leader election it may find no server to answer)."""
        assert self.process is not None
        if self.process.poll() is not None:
            assert self.process.stderr is not None
            self.failures.append(self.process.stderr.read())
            self.process.stderr.close()
            time.sleep(0.2)
            self.start()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        assert self.process.stderr is not None
        self.process.stderr.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


def group_position(url: str, name: str) -> int | None:
    """The group's position, or None while the cluster cannot say (a leader election)."""
    result = run_evlog("group", "list", "-o", "ndjson", log=url)
    if result.returncode != 0:
        return None
    for line in result.stdout.splitlines():
        found = json.loads(line)
        if found["group"] == name:
            return int(found["position"])
    return None


def wait_handled(path: Path, count: int, follower: Supervised, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(set(handled_seqs(path))) < count:
        assert time.monotonic() < deadline, f"{len(set(handled_seqs(path)))} handled; {follower.failures}"
        follower.check()
        time.sleep(0.01)


def test_a_follower_killed_with_the_stream_leader_resumes_and_misses_nothing(nats_cluster: Any,
                                                                             tmp_path: Path) -> None:
    began = time.monotonic()
    hosts = ",".join(url.partition("://")[2] for url in nats_cluster.urls)
    name = "orders"
    url = f"nats://{hosts}/{name}"
    with LogClient.connect(parse_location(url)) as client:
        assert client.create_log_stream(replicas=3, created=str(time.time_ns())).replicas == 3
    first = 400
    with Log(url) as log:
        log.append_many([{"type": "order.created", "stream": f"order-{n % 20}", "data": {"n": n}}
                         for n in range(first)])
    handled = tmp_path / "handled"
    command = f'echo "$EVLOG_SEQ" >> {handled}'
    follower = Supervised(["tail", "-f", "--group", "mailer", "--exec", command, "--log", url])
    try:
        wait_handled(handled, first // 4, follower, 20)
        leader = nats_cluster.stream_leader(name)
        leader.kill()  # SIGKILL during delivery: the follower waits out the election
        wait_handled(handled, first // 2, follower, 20)
        assert (follower.starts, follower.failures) == (1, [])  # it waited the election out, never ended
        follower.kill()  # SIGKILL during delivery, maybe while CMD runs or its ack is in flight
        at_kill = len(handled_seqs(handled))
        follower.start()  # one that starts while the cluster is still settling may end: it is started again
        more = 100
        appended = False
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, (
                f"{len(set(handled_seqs(handled)))} handled, starts {follower.starts}, failures {follower.failures}")
            follower.check()
            if not appended:
                result = run_evlog("append", log=url, input="".join(
                    json.dumps({"type": "order.paid", "data": {"n": n}}) + "\n" for n in range(more)))
                appended = result.returncode == 0
            elif group_position(url, "mailer") == first + more:
                break
            time.sleep(0.2)
    finally:
        follower.stop()
    seqs = handled_seqs(handled)
    assert set(seqs) == set(range(1, first + more + 1))  # every event handled at least once
    repeated = len(seqs) - len(set(seqs))
    assert repeated <= follower.starts, seqs  # at most the event in hand when each run ended
    print(f"killed at {at_kill} handled; {repeated} handled twice; follower started {follower.starts} times; "
          f"{time.monotonic() - began:.1f} s")


def test_a_lease_that_ran_out_is_taken_over_and_its_old_holder_stops(nats_log_url: str) -> None:
    import pytest

    from evlog.backends.jetstream.group_entries import Lease
    from evlog.errors import GroupBusyError

    with Log(nats_log_url) as log:
        log.append("first")
    with LogClient.connect(parse_location(nats_log_url)) as client:
        bucket = Bucket.open(client, "groups")
        first = Lease(bucket, "g", lease=1.0)
        first.acquire()
        second = Lease(bucket, "g", lease=1.0)
        second.host = "elsewhere"  # another host: its pid cannot be checked, only the lease's end
        with pytest.raises(GroupBusyError, match=r"pid \d+ on host "):
            second.acquire()
        first.renewed = 0.0  # a renewal is due
        first.keep()  # renewed: still refused
        with pytest.raises(GroupBusyError):
            second.acquire()
        deadline = time.monotonic() + 10
        while True:  # not renewed for longer than the lease: taken over
            try:
                second.acquire()
                break
            except GroupBusyError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        first.renewed = 0.0
        with pytest.raises(GroupBusyError, match="took the group over while this follower had not renewed"):
            first.keep()
        first.release()  # gives up nothing of the new holder's
        assert bucket.get(kv_key("lock", "g")) is not None
        second.release()
        assert bucket.get(kv_key("lock", "g")) is None
