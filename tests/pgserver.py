"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary directory, one server per session.

The server listens only on 127.0.0.1 on a free port, with no unix socket, and
is stopped by its pid. PostgreSQL refuses to run as root (and CI runs as
root), so as root the cluster belongs to an unprivileged user: the data
directory is handed to that user and the server is started with
``subprocess.Popen(user=...)``, which switches user in the child itself, so the
pid we hold is the postmaster's own (``runuser`` or ``su`` would put a process
of theirs between us and it).

Authentication: the superuser ``postgres`` is trusted from 127.0.0.1 (test use
only); the role ``app`` has a password and must give it (SCRAM), so a wrong
password can be tested against a real refusal.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

APP_USER = "app"
APP_PASSWORD = "app-secret"
START_TIMEOUT = 60.0
"""The longest wait for a new cluster to accept connections (the machine may be busy)."""


class ServerUnavailable(Exception):
    """PostgreSQL cannot be started here; the message says why."""


@dataclass
class PgServer:
    """A running cluster: its port, its postmaster's pid and the directory that holds it."""

    port: int
    pid: int
    root: Path
    proc: subprocess.Popen[bytes]

    def url(self, dbname: str = "postgres", *, user: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password is not None else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    @property
    def log_text(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Immediate shutdown by pid (SIGQUIT), SIGKILL if it lingers; then remove the directory."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGQUIT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        shutil.rmtree(self.root, ignore_errors=True)


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ServerUnavailable(f"{name} is not on the PATH (PostgreSQL server binaries are needed)")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run_as() -> tuple[int, int] | None:
    """The (uid, gid) to run the server as: None when not root, else the unprivileged ``nobody``."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("EVLOG_TEST_PG_USER", "nobody")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ServerUnavailable(
            f"running as root and there is no user {name!r} to run PostgreSQL as "
            "(PostgreSQL refuses to run as root; set EVLOG_TEST_PG_USER to an unprivileged user)"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _reachable_tmp() -> str:
    """A temporary directory every user can pass through: $TMPDIR if it is one, else /tmp."""
    place = Path(tempfile.gettempdir()).resolve()
    if all(os.stat(part).st_mode & 0o001 for part in (place, *place.parents)):
        return str(place)
    return "/tmp"


def _as_user(ids: tuple[int, int] | None) -> dict[str, object]:
    if ids is None:
        return {}
    return {"user": ids[0], "group": ids[1], "extra_groups": []}


def start() -> PgServer:
    """Create and start a cluster; raise :class:`ServerUnavailable` with the reason when it cannot."""
    initdb, postgres = _binary("initdb"), _binary("postgres")
    ids = _run_as()
    # Not under pytest's tmp_path: its directories are 0700 root's, which the
    # server's user could not enter.
    root = Path(tempfile.mkdtemp(prefix="evlog-pg-", dir=_reachable_tmp() if ids is not None else None))
    try:
        if ids is not None:
            os.chown(root, *ids)
        data = root / "data"
        done = subprocess.run(
            [initdb, "-D", str(data), "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync",
             "--auth=trust"],
            capture_output=True, env={**os.environ, "LC_ALL": "C"}, timeout=120, **_as_user(ids),
        )
        if done.returncode != 0:
            raise ServerUnavailable("initdb failed: " + done.stderr.decode(errors="replace").strip()[-500:])
        # pg_hba is read top-down and the first matching line decides.
        (data / "pg_hba.conf").write_text(
            f"host all {APP_USER} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        last_error = ""
        for _attempt in range(5):  # a free port can be taken between the probe and the bind
            port = _free_port()
            log = open(root / "server.log", "ab")  # noqa: SIM115 - the server writes it until stop()
            proc = subprocess.Popen(
                [postgres, "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                 "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB",
                 "-c", "password_encryption=scram-sha-256"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env={**os.environ, "LC_ALL": "C"},
                start_new_session=True, **_as_user(ids),
            )
            log.close()
            server = PgServer(port=port, pid=proc.pid, root=root, proc=proc)
            if _wait_ready(server):
                _setup_roles(server)
                return server
            last_error = server.log_text.strip()[-800:]
            if proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
            if "could not bind" not in last_error and "Address already in use" not in last_error:
                break
        raise ServerUnavailable("postgres did not start: " + last_error)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _wait_ready(server: PgServer) -> bool:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return False
        try:
            with psycopg.connect(server.url(), connect_timeout=5):
                return True
        except psycopg.OperationalError:
            time.sleep(0.05)  # polling for a condition, bounded by the deadline
    return False


def _setup_roles(server: PgServer) -> None:
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {APP_USER} LOGIN CREATEDB PASSWORD '{APP_PASSWORD}'")


def create_database(server: PgServer, name: str) -> str:
    """A new empty database owned by ``app``; returns the URL that logs in as ``app`` with its password."""
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER {APP_USER}')
    return server.url(name, user=APP_USER, password=APP_PASSWORD)
