"""The PostgreSQL test fixture itself: a real server, isolated databases, password logins."""

from __future__ import annotations

import pytest


def test_each_test_gets_an_empty_database_that_requires_the_password(pg_database_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_database_url) as conn:
        tables = conn.execute("select count(*) from pg_tables where schemaname = 'public'").fetchone()
        assert tables == (0,)
        conn.execute("create table t (x int)")  # the test's role owns its database
    wrong = pg_database_url.replace(":app-secret@", ":wrong@")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=10)


def test_the_server_listens_on_loopback_only(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        assert conn.execute("show listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("show unix_socket_directories").fetchone() == ("",)
