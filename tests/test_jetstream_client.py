"""The JetStream client under a nats:// log, against a real nats-server: names, streams, publishing, reading.

Each test uses its own log (stream) on the session's server; servers with other
settings (credentials, no JetStream) are started by the test that needs them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evlog.backends.jetstream import url
from evlog.backends.jetstream.client import (
    DuplicateMsgId,
    LogClient,
    MessageTooLarge,
    OutMsg,
    PublishRejected,
    WrongLastSequence,
    parse_version,
)
from evlog.backends.jetstream.url import event_subject, parse_location
from evlog.errors import (
    LogNotFoundError,
    MissingExtraError,
    NotALogError,
    ServerAccessError,
    ServerUnavailableError,
    ServerUnsupportedError,
    UsageError,
)

# --- names -----------------------------------------------------------------------------------------


def test_locations_parse_into_servers_credentials_and_name() -> None:
    plain = parse_location("nats://127.0.0.1:4222/shop")
    assert (plain.servers, plain.name, plain.tls, plain.user, plain.token) == (
        ("nats://127.0.0.1:4222",), "shop", False, None, None)
    assert parse_location("nats://example.com/shop").servers == ("nats://example.com:4222",)
    creds = parse_location("tls://al%40ice:p%3Ass@h1:1,h2:2/shop-2")
    assert (creds.servers, creds.user, creds.password, creds.tls) == (
        ("tls://h1:1", "tls://h2:2"), "al@ice", "p:ss", True)
    token = parse_location("nats://s3cret@[::1]:4223/log_1")
    assert (token.token, token.servers) == ("s3cret", ("nats://[::1]:4223",))
    assert creds.display == "tls://al@ice@h1:1,h2:2/shop-2"
    assert "s3cret" not in token.display and "p:ss" not in repr(creds)


@pytest.mark.parametrize(("text", "said"), [
    ("nats://127.0.0.1:4222", "names no log"),
    ("nats://127.0.0.1:4222/", "names no log"),
    ("http://127.0.0.1/shop", "is not a NATS location"),
    ("nats://127.0.0.1:99999/shop", "port '99999'"),
    ("nats://127.0.0.1:x/shop", "port 'x'"),
    ("nats:///shop", "names no host"),
    ("nats://a,,b/shop", "host name is empty"),
    ("nats://h/a.b", "log name 'a.b' is not allowed"),
    ("nats://h/a/b", "log name 'a/b' is not allowed"),
    ("nats://h/" + "x" * 65, "is not allowed"),
    ("nats://h/KV_x", "KV_ or OBJ_"),
    ("nats://h/shop?x=1", "no '?' or '#'"),
    ("nats://:pw@h/shop", "user name before ':' is empty"),
])
def test_bad_locations_say_what_is_wrong(text: str, said: str) -> None:
    with pytest.raises(UsageError, match=None) as caught:
        parse_location(text)
    assert said in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_password_never_appears_in_a_location_error() -> None:
    with pytest.raises(UsageError) as caught:
        parse_location("nats://user:hunter2@h:1/a.b")
    assert "hunter2" not in str(caught.value)


@given(st.text(max_size=80))
def test_a_log_name_is_a_valid_stream_name_or_refused(name: str) -> None:
    try:
        checked = url.check_log_name(name)
    except UsageError as error:
        assert "is not allowed" in str(error)
        return
    assert checked == name == url.stream_name(name) and 0 < len(name) <= 64
    assert not set(name) & set(".*> \t\r\n/\\") and name.isascii()


@given(st.text())
def test_subject_tokens_round_trip_and_hold_only_safe_characters(text: str) -> None:
    token = url.encode_token(text)
    assert url.decode_token(token) == text
    assert token and set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-=")


@given(st.text(), st.text())
def test_distinct_texts_have_distinct_tokens(a: str, b: str) -> None:
    assert (url.encode_token(a) == url.encode_token(b)) == (a == b)


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_kv_keys_round_trip(parts: list[str]) -> None:
    key = url.kv_key(*parts)
    assert url.kv_key_parts(key) == parts


@given(st.one_of(st.none(), st.text()))
def test_event_subjects_round_trip(stream: str | None) -> None:
    subject = event_subject("shop", stream)
    assert url.stream_of_subject("shop", subject) == stream
    assert subject.startswith("evlog.shop.") and " " not in subject and "*" not in subject


@pytest.mark.parametrize("token", ["", "=2e", "=G1", "a=2", "=41", "a.b", "=FF", "a b"])
def test_tokens_evlog_cannot_have_made_are_refused(token: str) -> None:
    with pytest.raises(ValueError, match="token"):
        url.decode_token(token)


def test_awkward_stream_names_encode_as_documented() -> None:
    assert url.encode_token("") == "="
    assert url.encode_token("order-17_a") == "order-17_a"
    assert url.encode_token("a.b *>") == "a=2Eb=20=2A=3E"
    assert url.encode_token("é") == "=C3=A9"
    assert event_subject("shop", None) == "evlog.shop.n"
    assert url.log_subjects("shop") == "evlog.shop.>"
    assert url.bucket_name("shop", "snapshots") == "evlog_shop_snapshots"


def test_versions_parse() -> None:
    assert parse_version("2.15.1") == (2, 15, 1)
    assert parse_version("v2.12.0-beta.1") == (2, 12, 0)
    assert parse_version("nonsense") == (0, 0, 0)


# --- the client's import -----------------------------------------------------------------------------


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ))


def test_naming_a_nats_log_imports_no_nats_client() -> None:
    done = python("import sys, evlog, evlog.backends.jetstream.url as u; u.parse_location('nats://h/x');"
                  "print('nats' in sys.modules)")
    assert done.stdout.strip() == "False", done.stderr


def test_without_nats_py_the_client_names_the_extra_to_install() -> None:
    done = python(
        "import sys; sys.modules['nats'] = None\n"
        "from evlog.backends.jetstream.client import LogClient\n"
        "from evlog.backends.jetstream.url import parse_location\n"
        "from evlog.errors import MissingExtraError\n"
        "try:\n    LogClient.connect(parse_location('nats://127.0.0.1:1/x'))\n"
        "except MissingExtraError as e:\n    print(e.exit_code, e)\n"
    )
    assert done.stdout.strip() == "2 a nats:// log needs the NATS client: pip install 'evlog-cli[nats]'", done.stderr
    assert issubclass(MissingExtraError, UsageError)


# --- connecting ------------------------------------------------------------------------------------------


@pytest.fixture
def client(nats_log_url: str) -> Iterator[LogClient]:
    """A connected client whose log (stream) exists and is removed after the test."""
    with LogClient.connect(parse_location(nats_log_url)) as connected:
        connected.create_log_stream()
        yield connected
        connected.delete_stream()


def test_an_unreachable_server_is_an_error_within_seconds() -> None:
    from natsserver import free_port

    started = time.monotonic()
    with pytest.raises(ServerUnavailableError) as caught:
        LogClient.connect(parse_location(f"nats://127.0.0.1:{free_port()}/shop"))
    assert time.monotonic() - started < 5
    assert "cannot reach the NATS server" in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.exit_code == 74


def test_wrong_credentials_are_refused_in_one_line(nats_binary: str, tmp_path: Path) -> None:
    from natsserver import NatsServer, running

    with running(NatsServer(nats_binary, tmp_path, extra=("--user", "ann", "--pass", "right"))) as server:
        port = server.url.rpartition(":")[2]
        with LogClient.connect(parse_location(f"nats://ann:right@127.0.0.1:{port}/shop")) as ok:
            assert ok.server_version >= (2, 12, 0)
        started = time.monotonic()
        with pytest.raises(ServerAccessError) as caught:
            LogClient.connect(parse_location(f"nats://ann:wrong@127.0.0.1:{port}/shop"))
        assert time.monotonic() - started < 5
        assert "refused the credentials" in str(caught.value) and "wrong" not in str(caught.value)
        with pytest.raises(ServerAccessError):
            LogClient.connect(parse_location(f"nats://127.0.0.1:{port}/shop"))


def test_a_token_is_accepted_and_a_wrong_one_refused(nats_binary: str, tmp_path: Path) -> None:
    from natsserver import NatsServer, running

    with running(NatsServer(nats_binary, tmp_path, extra=("--auth", "s3cret"))) as server:
        port = server.url.rpartition(":")[2]
        with LogClient.connect(parse_location(f"nats://s3cret@127.0.0.1:{port}/shop")) as ok:
            ok.create_log_stream()
            assert ok.stream_info().last_seq == 0
        with pytest.raises(ServerAccessError) as caught:
            LogClient.connect(parse_location(f"nats://guess@127.0.0.1:{port}/shop"))
        assert "guess" not in str(caught.value)


def test_a_server_without_jetstream_is_named_as_such(nats_binary: str, tmp_path: Path) -> None:
    from natsserver import NatsServer, running

    with running(NatsServer(nats_binary, tmp_path, jetstream=False)) as server:
        with pytest.raises(ServerUnsupportedError) as caught:
            LogClient.connect(parse_location(f"{server.url}/shop"))
        assert "JetStream is not enabled" in str(caught.value) and "-js" in str(caught.value)


# --- the log's stream --------------------------------------------------------------------------------------


def test_the_stream_is_created_gapless_unlimited_and_marked(client: LogClient) -> None:
    info = client.stream_info()
    config = info.config
    assert config["deny_delete"] and config["deny_purge"] and config["allow_direct"] and config["allow_atomic"]
    assert (config["max_age"], config["max_msgs"], config["max_bytes"]) == (0, -1, -1)
    assert config["storage"] == "file" and config["subjects"] == [f"evlog.{client.location.name}.>"]
    assert config["duplicate_window"] >= 9 * 365 * 24 * 3600 * 10**9
    assert info.format == 1 and len(info.log_id) == 36 and info.replicas == 1 and info.storage == "file"
    assert (info.last_seq, info.messages) == (0, 0)
    assert info.created.endswith("Z") and info.created[:2] == "20" and info.leader
    again = client.create_log_stream()  # a second creator opens the same log
    assert again.log_id == info.log_id


def test_a_missing_log_is_not_found_and_nothing_is_created(nats_log_url: str) -> None:
    with LogClient.connect(parse_location(nats_log_url)) as connected:
        with pytest.raises(LogNotFoundError) as caught:
            connected.open_log_stream()
        assert caught.value.exit_code == 66 and "no such log" in str(caught.value)
        with pytest.raises(LogNotFoundError):
            connected.open_log_stream()


def raw_stream(connected: LogClient, **config: Any) -> None:
    name = connected.stream
    connected._api(f"STREAM.CREATE.{name}", {"name": name, "subjects": [f"evlog.{name}.>"], "storage": "file",
                                             **config})


@pytest.mark.parametrize(("config", "said"), [
    ({}, "is not an evlog log"),
    ({"metadata": {"evlog.format": "9"}}, "newer than this evlog's"),
    ({"metadata": {"evlog.format": "1"}, "allow_direct": True, "allow_atomic": True}, "deletes or purges"),
    ({"metadata": {"evlog.format": "1"}, "allow_direct": True, "allow_atomic": True, "deny_delete": True,
      "deny_purge": True, "max_age": 3600 * 10**9}, "max_age is set"),
])
def test_a_stream_that_is_not_an_evlog_log_is_refused_untouched(
        nats_log_url: str, config: dict[str, Any], said: str) -> None:
    with LogClient.connect(parse_location(nats_log_url)) as connected:
        raw_stream(connected, **config)
        try:
            for attempt in (connected.open_log_stream, connected.create_log_stream):
                with pytest.raises(NotALogError) as caught:
                    attempt()
                assert said in str(caught.value) and caught.value.exit_code == 74
            assert connected._api(f"STREAM.INFO.{connected.stream}", b"")["state"]["messages"] == 0
        finally:
            connected.delete_stream()


# --- direct gets and subject counts ------------------------------------------------------------------------


def test_direct_gets_by_seq_and_by_subject(client: LogClient) -> None:
    name = client.location.name
    a, b = event_subject(name, "a.1"), event_subject(name, "b")
    for subject, data in ((a, b"1"), (b, b"2"), (a, b"3")):
        client.publish(subject, data, {"Evlog-Ts": "7"})
    got = client.get(2)
    assert got is not None and (got.seq, got.data, got.subject) == (2, b"2", b)
    assert got.headers == {"Evlog-Ts": "7"}
    assert client.get(4) is None
    last = client.get_last(a)
    assert last is not None and (last.seq, last.data) == (3, b"3")
    assert client.get_last(event_subject(name, "nobody")) is None


def test_subject_counts_give_each_streams_version(client: LogClient) -> None:
    name = client.location.name
    messages = [OutMsg(event_subject(name, f"s{i % 7}"), b"x") for i in range(50)] + [
        OutMsg(event_subject(name, None), b"y")]
    client.publish_batch(messages)
    counts = client.subject_counts(url.streams_filter(name))
    assert counts == {event_subject(name, f"s{k}"): len(range(k, 50, 7)) for k in range(7)}
    assert client.subject_counts(event_subject(name, "s3")) == {event_subject(name, "s3"): 7}
    assert client.subject_counts(event_subject(name, "none")) == {}


def test_subject_counts_past_the_servers_page_are_joined(client: LogClient) -> None:
    name = client.location.name
    total = 100_250  # the server pages subject maps at 100,000
    for start in range(0, total, 1000):
        client.publish_batch([OutMsg(event_subject(name, f"{i}"), b"") for i in range(start, min(start + 1000, total))])
    counts = client.subject_counts(url.streams_filter(name))
    assert len(counts) == total and set(counts.values()) == {1}


# --- publishing ----------------------------------------------------------------------------------------------


def batch(name: str, count: int, *, start: int = 0, ids: bool = True) -> list[OutMsg]:
    return [OutMsg(event_subject(name, f"acct-{i % 3}"), b'{"i":%d}' % i,
                   {"Nats-Msg-Id": f"id-{i}"} if ids else None) for i in range(start, start + count)]


def test_an_atomic_batch_stores_all_in_order_with_their_headers(client: LogClient) -> None:
    name = client.location.name
    ack = client.publish_batch(batch(name, 1000))
    assert (ack.seq, ack.count, ack.duplicate) == (1000, 1000, False)
    ack = client.publish_batch(batch(name, 2, start=1000))
    assert (ack.seq, ack.count) == (1002, 2)
    got = client.get(1001)
    assert got is not None and got.data == b'{"i":1000}' and got.headers is not None
    assert got.headers["Nats-Msg-Id"] == "id-1000"
    with pytest.raises(ValueError, match="1 to 1000"):
        client.publish_batch(batch(name, 1001))


def test_a_batch_with_a_stale_expected_sequence_stores_nothing_and_says_where_the_log_is(client: LogClient) -> None:
    name = client.location.name
    client.publish_batch(batch(name, 3))
    stale = batch(name, 3, start=3)
    stale[0] = OutMsg(stale[0].subject, stale[0].data, {**(stale[0].headers or {}), "Nats-Expected-Last-Sequence": "2"})
    with pytest.raises(WrongLastSequence) as caught:
        client.publish_batch(stale)
    assert caught.value.actual == 3 and caught.value.err_code == 10071
    assert client.stream_info().last_seq == 3
    fresh = [OutMsg(m.subject, m.data, {**(m.headers or {}), "Nats-Expected-Last-Sequence": "3"}) if i == 0 else m
             for i, m in enumerate(stale)]
    assert client.publish_batch(fresh).seq == 6


def test_expected_subject_sequences_guard_each_streams_version(client: LogClient) -> None:
    name = client.location.name
    subject = event_subject(name, "order-1")
    client.publish(subject, b"1", {"Nats-Expected-Last-Subject-Sequence": "0"})
    with pytest.raises(WrongLastSequence) as caught:
        client.publish(subject, b"2", {"Nats-Expected-Last-Subject-Sequence": "0"})
    assert caught.value.actual == 1
    messages = [OutMsg(subject, b"2", {"Nats-Expected-Last-Subject-Sequence": "1"}),
                OutMsg(event_subject(name, "order-2"), b"3", {"Nats-Expected-Last-Subject-Sequence": "0"})]
    assert client.publish_batch(messages).seq == 3


def test_a_batch_repeating_a_stored_id_is_refused_whole(client: LogClient) -> None:
    name = client.location.name
    client.publish_batch(batch(name, 5))
    with pytest.raises(DuplicateMsgId) as caught:
        client.publish_batch(batch(name, 5, start=4))
    assert caught.value.err_code == 10201
    assert client.stream_info().last_seq == 5


def test_a_batch_over_the_servers_limit_is_refused_typed(client: LogClient) -> None:
    with pytest.raises(MessageTooLarge) as caught:
        client.batch_sender().send_unchecked(batch(client.location.name, 1001, ids=False), "too-many").result()
    assert caught.value.err_code == 10199
    assert client.stream_info().last_seq == 0


def test_a_single_publish_of_a_stored_id_acks_the_original(client: LogClient) -> None:
    subject = event_subject(client.location.name, None)
    first = client.publish(subject, b"a", {"Nats-Msg-Id": "k"})
    client.publish(subject, b"b")
    again = client.publish(subject, b"a", {"Nats-Msg-Id": "k"})
    assert (first.seq, first.duplicate) == (1, False)
    assert (again.seq, again.duplicate) == (1, True)
    with pytest.raises(PublishRejected):
        client.publish(subject, b"c", {"Nats-Expected-Last-Sequence": "x"})


def test_a_retried_publish_that_was_stored_gets_a_false_conflict_that_last_is_ours_resolves(
        client: LogClient) -> None:
    name = client.location.name
    subject = event_subject(name, "acct")
    headers = {"Nats-Msg-Id": "retry-1", "Nats-Expected-Last-Sequence": "0"}
    first = client.publish(subject, b"x", headers)  # its ack "lost"
    with pytest.raises(WrongLastSequence):
        client.publish(subject, b"x", headers)  # the retry: a false 10071, not a duplicate ack
    assert client.last_is_ours(["retry-1"]) == first.seq
    assert client.last_is_ours(["retry-1"], subject=subject) == first.seq
    # A batch retried the same way.
    messages = batch(name, 4, start=10)
    messages[0] = OutMsg(messages[0].subject, messages[0].data, {**(messages[0].headers or {}),
                                                                  "Nats-Expected-Last-Sequence": "1"})
    stored = client.publish_batch(messages)
    with pytest.raises((WrongLastSequence, DuplicateMsgId)):
        client.publish_batch(messages)
    assert client.last_is_ours([f"id-{i}" for i in range(10, 14)]) == stored.seq
    # A real conflict: someone else's message came after ours.
    client.publish(event_subject(name, "other"), b"y", {"Nats-Msg-Id": "theirs"})
    assert client.last_is_ours([f"id-{i}" for i in range(10, 14)]) is None
    assert client.last_is_ours([]) is None


# --- reading ----------------------------------------------------------------------------------------------------


def test_a_range_reads_in_order_in_chunks_and_stops_at_its_end(client: LogClient) -> None:
    name = client.location.name
    for start in range(0, 3000, 1000):
        client.publish_batch(batch(name, 1000, start=start))
    chunks = list(client.read(1, 3000, chunk=500))
    seqs = [msg.seq for chunk in chunks for msg in chunk]
    assert seqs == list(range(1, 3001)) and all(0 < len(chunk) <= 500 for chunk in chunks)
    assert chunks[0][0].data == b'{"i":0}' and chunks[0][0].headers is not None
    middle = [msg.seq for chunk in client.read(1500, 1700) for msg in chunk]
    assert middle == list(range(1500, 1701))
    assert list(client.read(5, 4)) == []
    started = time.monotonic()
    tail = [msg.seq for chunk in client.read(2990, 10_000) for msg in chunk]  # past the end: what there is
    assert tail == list(range(2990, 3001)) and time.monotonic() - started < 2


def test_a_filtered_read_yields_only_matches_and_ends_without_waiting(client: LogClient) -> None:
    name = client.location.name
    client.publish_batch(batch(name, 300))
    started = time.monotonic()
    only = [msg.seq for chunk in client.read(1, 300, subjects=event_subject(name, "acct-1")) for msg in chunk]
    assert only == list(range(2, 301, 3))
    assert [c for c in client.read(1, 300, subjects=event_subject(name, "nobody"))] == []
    assert time.monotonic() - started < 2


def test_reading_a_missing_log_is_not_found(nats_log_url: str) -> None:
    with LogClient.connect(parse_location(nats_log_url)) as connected, pytest.raises(LogNotFoundError):
        list(connected.read(1, 10))


def test_a_follower_wakes_for_each_new_message_within_a_millisecond_or_so(client: LogClient, nats_log_url: str) -> None:
    name = client.location.name
    subject = event_subject(name, None)
    client.publish(subject, b"0")
    latencies: list[float] = []
    stamps: dict[int, float] = {}
    count = 200
    go = threading.Event()

    def producer() -> None:  # another process would do; a thread with its own connection is enough here
        import asyncio

        import nats

        async def publish() -> None:
            nc = await nats.connect(nats_log_url.rpartition("/")[0])
            go.wait(10)
            for index in range(count):
                stamps[index + 2] = time.perf_counter()
                await nc.request(subject, b"%d" % index, timeout=5)
                await asyncio.sleep(0.002)
            await nc.close()

        asyncio.run(publish())

    with client.follow(2) as follower:
        thread = threading.Thread(target=producer)
        thread.start()
        go.set()
        seen: list[int] = []
        deadline = time.monotonic() + 30
        while len(seen) < count and time.monotonic() < deadline:
            for msg in follower.next_chunk(timeout=1.0):
                latencies.append(time.perf_counter() - stamps[msg.seq])
                seen.append(msg.seq)
        thread.join()
    assert seen == list(range(2, count + 2))
    latencies.sort()
    p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
    print(f"follow latency p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")
    assert p50 < 0.02  # ~0.5 ms on a quiet machine; generous for a busy one


def test_a_watch_wakes_with_the_newest_seq(client: LogClient) -> None:
    subject = event_subject(client.location.name, None)
    client.publish(subject, b"1")
    with client.watch(1) as watch:
        assert watch.wait(0.1) is None
        client.publish_batch([OutMsg(subject, b"x" * 100) for _ in range(5)])
        assert watch.wait(5) == 6
        (one,) = [msg for msg in [client.get(6)] if msg]
        assert one.data == b"x" * 100


def test_a_follower_waits_quietly_and_returns_nothing_when_nothing_comes(client: LogClient) -> None:
    with client.follow(1) as follower:
        started = time.monotonic()
        assert follower.next_chunk(timeout=0.3) == []
        assert 0.25 < time.monotonic() - started < 2


# --- key-value buckets --------------------------------------------------------------------------------------------


def test_kv_get_put_compare_and_set_delete_and_list(client: LogClient) -> None:
    from evlog.backends.jetstream.kv import RevisionConflict

    bucket = client.kv("snapshots")
    try:
        key = url.kv_key("snap", "balance by stream", "000000000042")
        assert bucket.get(key) is None
        first = bucket.update(key, b"v1", revision=None)
        with pytest.raises(RevisionConflict):
            bucket.update(key, b"v2", revision=None)
        second = bucket.update(key, b"v2", revision=first)
        with pytest.raises(RevisionConflict):
            bucket.update(key, b"v3", revision=first)
        assert bucket.get(key) == (b"v2", second)
        bucket.put(url.kv_key("snap", "other", "1"), b"o")
        bucket.put(url.kv_key("proj", "x"), b"p")
        assert bucket.list_keys(url.kv_key("snap")) == sorted([key, url.kv_key("snap", "other", "1")])
        assert len(bucket.list_keys()) == 3
        bucket.delete(key)
        assert bucket.get(key) is None and key not in bucket.list_keys()
        assert client.kv("snapshots").get(url.kv_key("proj", "x")) == (b"p", 3 + 1)
    finally:
        bucket.destroy()


def test_a_value_larger_than_a_message_is_refused_typed(client: LogClient) -> None:
    bucket = client.kv("meta")
    try:
        with pytest.raises(MessageTooLarge):
            bucket.put("big", b"x" * (2 << 20))
    finally:
        bucket.destroy()


def test_a_missing_bucket_on_a_read_is_not_found(client: LogClient) -> None:
    with pytest.raises(LogNotFoundError, match="no projections"):
        client.kv("projections", create=False)


# --- groups -----------------------------------------------------------------------------------------------------------


def test_a_group_gets_each_event_once_acked_and_again_when_not(client: LogClient) -> None:
    name = client.location.name
    client.publish_batch(batch(name, 10))
    groups = client.groups()
    groups.ensure("mail er", start_seq=3, filter_subjects=[event_subject(name, "acct-0")], ack_wait=1.0)
    assert [g.name for g in groups.all()] == ["mail er"]
    first = groups.fetch("mail er", batch=2, timeout=2)
    assert [d.seq for d in first] == [4, 7] and all(d.delivery == 1 for d in first)
    groups.ack(first[:1])
    rest = groups.fetch("mail er", batch=10, timeout=0.5)
    assert [d.seq for d in rest] == [10]
    groups.ack(rest)
    again = groups.fetch("mail er", batch=10, timeout=3)  # 7 was not acknowledged: given out again
    assert [(d.seq, d.delivery) for d in again] == [(7, 2)]
    groups.ack(again)
    info = groups.info("mail er")
    assert info is not None and (info.ack_floor, info.ack_pending, info.pending) == (10, 0, 0)
    assert groups.fetch("mail er", batch=10, timeout=0.2) == []
    groups.reset("mail er", 5, ack_wait=1.0)
    assert [d.seq for d in groups.fetch("mail er", batch=10, timeout=2)] == [7, 10]
    assert groups.delete("mail er") and not groups.delete("mail er")
    assert groups.info("mail er") is None and groups.all() == []
    with pytest.raises(LogNotFoundError, match="no group 'mail er'"):
        groups.fetch("mail er")


def test_a_group_resumes_after_reconnecting(client: LogClient, nats_log_url: str) -> None:
    name = client.location.name
    client.publish_batch(batch(name, 6))
    groups = client.groups()
    groups.ensure("g")
    groups.ack(groups.fetch("g", batch=3, timeout=2))
    with LogClient.connect(parse_location(nats_log_url)) as other:
        assert [d.seq for d in other.groups().fetch("g", batch=10, timeout=2)] == [4, 5, 6]


def test_the_stream_info_json_is_what_the_server_says(client: LogClient) -> None:
    body = client._api(f"STREAM.INFO.{client.stream}", b"")
    assert json.loads(json.dumps(body))["config"]["name"] == client.stream


def test_a_slow_reader_of_many_large_messages_gets_all_through_flow_control(client: LogClient) -> None:
    name = client.location.name
    payload = b"x" * 2000
    for start in range(0, 20_000, 1000):
        client.publish_batch([OutMsg(event_subject(name, None), payload) for _ in range(start, start + 1000)])
    seqs: list[int] = []
    with client.follow(1, chunk=50) as follower:
        while len(seqs) < 20_000:
            got = follower.next_chunk(timeout=5)
            assert got, f"stalled after {len(seqs)} messages"
            seqs.extend(msg.seq for msg in got)
            if len(seqs) < 2000:
                time.sleep(0.002)  # slower than the server at first: flow control holds it back
    assert seqs == list(range(1, 20_001))


def test_headers_come_back_as_published(client: LogClient) -> None:
    subject = event_subject(client.location.name, "h")
    client.publish(subject, b"{}", {"Evlog-Ts": "1796531211177001667", "Evlog-Id": "é:ü x", "Nats-Msg-Id": "m"})
    (got,) = next(iter(client.read(1, 1)))
    assert got.headers == {"Evlog-Ts": "1796531211177001667", "Evlog-Id": "é:ü x", "Nats-Msg-Id": "m"}
    direct = client.get(1)
    leader = client.get(1, leader=True)
    assert direct is not None and leader is not None and direct.headers == leader.headers == got.headers
    assert client.next_seq(1, subject) == 1 and client.next_seq(2, subject) is None


def test_pipelined_batches_are_stored_in_order_and_a_refused_one_takes_the_later_ones_with_it(
        client: LogClient) -> None:
    name = client.location.name
    sender = client.batch_sender()
    try:
        pending, last = [], 0
        for start in range(0, 10_000, 1000):
            messages = batch(name, 1000, start=start)
            first = messages[0]
            messages[0] = OutMsg(first.subject, first.data, {**(first.headers or {}),
                                                             "Nats-Expected-Last-Sequence": str(last)})
            pending.append(sender.send(messages))
            last += 1000
        acks = [p.result() for p in pending]
        assert [(a.seq, a.count) for a in acks] == [(k * 1000, 1000) for k in range(1, 11)]
        seqs = [int(msg.data[5:-1]) for chunk in client.read(1, 10_000) for msg in chunk]
        assert seqs == list(range(10_000))
        # A batch repeating a stored id is refused; the next, expecting its last seq, is refused too.
        bad = sender.send(batch(name, 10, start=9995))
        after = batch(name, 10, start=20_000)
        after[0] = OutMsg(after[0].subject, after[0].data, {"Nats-Expected-Last-Sequence": "10010"})
        later = sender.send(after)
        with pytest.raises(DuplicateMsgId):
            bad.result()
        with pytest.raises(WrongLastSequence) as caught:
            later.result()
        assert caught.value.actual == 10_000 and client.stream_info().last_seq == 10_000
    finally:
        sender.close()


def test_batch_headers_come_back_as_published_and_line_breaks_are_refused(client: LogClient) -> None:
    subject = event_subject(client.location.name, "é")
    headers = {"Evlog-Id": "é:ü x", "Nats-Msg-Id": "b-1"}
    client.publish_batch([OutMsg(subject, b"1", headers), OutMsg(subject, b"2", {"Evlog-Id": ""})])
    got = [msg for chunk in client.read(1, 2) for msg in chunk]
    assert got[0].headers is not None and got[0].headers["Evlog-Id"] == "é:ü x"
    assert got[0].headers["Nats-Msg-Id"] == "b-1" and got[0].subject == subject
    assert got[1].headers is not None and got[1].headers["Evlog-Id"] == ""
    with pytest.raises(ValueError, match="line break"):
        client.publish_batch([OutMsg(subject, b"3", {"Evlog-Id": "a\r\nNats-Msg-Id: x"}), OutMsg(subject, b"4")])
    assert client.stream_info().last_seq == 2


def test_in_a_batch_only_a_streams_first_message_may_carry_its_expected_sequence(client: LogClient) -> None:
    name = client.location.name
    a, b = event_subject(name, "a"), event_subject(name, "b")
    expect = "Nats-Expected-Last-Subject-Sequence"
    ok = [OutMsg(a, b"1", {expect: "0"}), OutMsg(a, b"2"), OutMsg(b, b"3", {expect: "0"}), OutMsg(a, b"4")]
    assert client.publish_batch(ok).seq == 4
    with pytest.raises(WrongLastSequence) as stale:  # a's last message is 4 now, not 2
        client.publish_batch([OutMsg(a, b"5", {expect: "2"}), OutMsg(b, b"6", {expect: "3"})])
    assert stale.value.actual == 4
    with pytest.raises(PublishRejected) as twice:
        client.publish_batch([OutMsg(a, b"5", {expect: "4"}), OutMsg(a, b"6", {expect: "5"})])
    assert twice.value.err_code == 10164
    assert client.stream_info().last_seq == 4


def test_a_follower_carries_on_in_order_after_its_server_restarts(nats_binary: str, tmp_path: Path) -> None:
    from natsserver import NatsServer, free_port

    server = NatsServer(nats_binary, tmp_path, client_port=free_port(), monitor_port=free_port())
    try:
        server.start()
        location = parse_location(f"{server.url}/restarted")
        with LogClient.connect(location) as connected:
            connected.create_log_stream()
            subject = event_subject("restarted", None)
            connected.publish_batch([OutMsg(subject, b"%d" % i) for i in range(100)])
            seqs: list[int] = []
            with connected.follow(1) as follower:
                while len(seqs) < 100:
                    seqs.extend(msg.seq for msg in follower.next_chunk(timeout=5))
                server.stop()
                server.start()  # same ports, same store: the client reconnects by itself
                deadline = time.monotonic() + 30
                while True:
                    try:
                        connected.publish_batch([OutMsg(subject, b"%d" % i) for i in range(100, 200)])
                        break
                    except ServerUnavailableError:
                        assert time.monotonic() < deadline
                        time.sleep(0.2)
                while len(seqs) < 200 and time.monotonic() < deadline:
                    seqs.extend(msg.seq for msg in follower.next_chunk(timeout=1))
            assert seqs == list(range(1, 201))
    finally:
        server.stop()
