"""A log on a 3-node JetStream cluster (R3) keeps every acknowledged event once, in order, through failures.

The stream's leader is killed with SIGKILL while atomic batches are being
published; the publisher retries what was not confirmed with the same
``Nats-Msg-Id`` headers and settles a false conflict on a retry by checking
whether the last message is its own. Afterwards every acknowledged event is
there exactly once and seq is gapless.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from evlog.backends.jetstream.client import (
    DuplicateMsgId,
    LogClient,
    OutMsg,
    PublishAck,
    WrongLastSequence,
)
from evlog.backends.jetstream.url import event_subject, parse_location
from evlog.errors import ServerUnavailableError

EVENTS = 24_000
BATCH = 1000


def cluster_client(cluster: Any, name: str) -> LogClient:
    hosts = ",".join(url.partition("://")[2] for url in cluster.urls)
    return LogClient.connect(parse_location(f"nats://{hosts}/{name}"))


def publish_with_retries(client: LogClient, messages: list[OutMsg], last: int, deadline: float) -> tuple[int, int]:
    """Publish one batch, retrying until it is known stored; returns (new last seq, retries needed)."""
    ids = [(msg.headers or {})["Nats-Msg-Id"] for msg in messages]
    first = messages[0]
    guarded = [OutMsg(first.subject, first.data, {**(first.headers or {}), "Nats-Expected-Last-Sequence": str(last)}),
               *messages[1:]]
    retries = 0
    while True:
        try:
            ack: PublishAck = client.publish_batch(guarded)
            return ack.seq, retries
        except (WrongLastSequence, DuplicateMsgId):
            # An earlier try of this very batch was stored but its ack was lost (the false 10071).
            ours = client.last_is_ours(ids)
            assert ours is not None, f"a conflict that is not our own retry, after seq {last}"
            return ours, retries
        except ServerUnavailableError:  # PublishUnconfirmed, no responders while a leader is elected
            retries += 1
            assert time.monotonic() < deadline, f"no leader took the batch after seq {last}"
            time.sleep(0.2)


def test_killing_the_stream_leader_mid_append_loses_and_repeats_nothing(nats_cluster: Any) -> None:
    name = "failover"
    with cluster_client(nats_cluster, name) as client:
        info = client.create_log_stream(replicas=3)
        assert info.replicas == 3
        leader = nats_cluster.stream_leader(name)
        killed: list[str] = []
        stored = threading.Event()

        def kill_leader_mid_run() -> None:
            stored.wait(30)
            leader.kill()  # SIGKILL, with batches in flight
            killed.append(leader.name)

        killer = threading.Thread(target=kill_leader_mid_run)
        killer.start()
        last, retries = 0, 0
        deadline = time.monotonic() + 40
        try:
            for start in range(0, EVENTS, BATCH):
                messages = [OutMsg(event_subject(name, f"account-{i % 50}"), b'{"i":%d}' % i,
                                   {"Nats-Msg-Id": f"e-{i}", "Evlog-Index": str(i)})
                            for i in range(start, start + BATCH)]
                last, tries = publish_with_retries(client, messages, last, deadline)
                retries += tries
                if last >= EVENTS // 3:
                    stored.set()
        finally:
            stored.set()
            killer.join()
        assert killed == [leader.name]
        assert last == EVENTS
        new_leader = nats_cluster.stream_leader(name)
        assert new_leader is not leader
        nats_cluster.restart(leader)

        seen = [(msg.seq, (msg.headers or {}).get("Nats-Msg-Id")) for chunk in client.read(1, last) for msg in chunk]
        assert [seq for seq, _ in seen] == list(range(1, EVENTS + 1))  # gapless, each once
        assert [msg_id for _, msg_id in seen] == [f"e-{i}" for i in range(EVENTS)]  # in order, none lost or twice
        after = client.stream_info()
        assert (after.last_seq, after.messages, after.replicas) == (EVENTS, EVENTS, 3)
        print(f"{retries} retried publishes; leader {leader.name} -> {new_leader.name}")


def test_a_group_delivers_everything_at_least_once_across_a_leader_kill(nats_cluster: Any) -> None:
    name = "grouped"
    with cluster_client(nats_cluster, name) as client:
        client.create_log_stream(replicas=3)
        for start in range(0, 3000, BATCH):
            client.publish_batch([OutMsg(event_subject(name, None), b"%d" % i, {"Nats-Msg-Id": f"g-{i}"})
                                  for i in range(start, start + BATCH)])
        groups = client.groups()
        groups.ensure("workers", ack_wait=2.0)
        delivered: set[int] = set()
        killed = False
        deadline = time.monotonic() + 40
        while len(delivered) < 3000:
            assert time.monotonic() < deadline, f"{len(delivered)} of 3000 delivered"
            if not killed and len(delivered) >= 1000:
                nats_cluster.stream_leader(name).kill()
                killed = True
            try:
                got = groups.fetch("workers", batch=250, timeout=1.0)
                groups.ack(got)
            except ServerUnavailableError:
                time.sleep(0.2)  # while a leader is elected; what was not acknowledged comes again
                continue
            delivered.update(d.seq for d in got)
        assert delivered == set(range(1, 3001))


def test_a_follower_keeps_every_event_once_in_order_when_its_consumers_node_dies(nats_cluster: Any) -> None:
    name = "followed"
    with cluster_client(nats_cluster, name) as client, cluster_client(nats_cluster, name) as writer:
        client.create_log_stream(replicas=3)
        total, seqs, last = 6000, [], 0
        with client.follow(1) as follower:
            for start in range(0, total, 500):
                if start == total // 2:
                    nats_cluster.consumer_leader(name, follower.consumer).kill()
                messages = [OutMsg(event_subject(name, None), b"%d" % i, {"Nats-Msg-Id": f"f-{i}"})
                            for i in range(start, start + 500)]
                last, _ = publish_with_retries(writer, messages, last, time.monotonic() + 30)
                seqs.extend(msg.seq for msg in follower.next_chunk(timeout=0.05))
            deadline = time.monotonic() + 30
            while len(seqs) < total and time.monotonic() < deadline:
                seqs.extend(msg.seq for msg in follower.next_chunk(timeout=1.0))
            assert follower.resets >= 1
        assert seqs == list(range(1, total + 1))
