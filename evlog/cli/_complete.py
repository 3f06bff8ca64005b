"""Shell completion of the names a log holds: event types, streams, groups, projections.

click completes commands and options by itself; the functions here are given
to typer as ``autocompletion=`` and add the values that only the log knows.
They find the log as the command would (the ``--log`` typed before the word
being completed, else ``$EVLOG_PATH``, else ``./events.lmdb``), open it
read-only, and read in one short transaction at most :data:`LIMIT` keys that
start with the typed prefix, from a cursor placed at the prefix: a log with
millions of streams completes as fast as a small one, and never decodes an
event.

Completion runs inside the user's shell at every Tab, so it must never fail
loudly: a missing log, a directory that is not a log, or a storage error
gives no suggestions, not an error or a traceback. A log may come from
someone else: names that would drive the terminal are never offered.
"""

from __future__ import annotations

import contextlib
from typing import Any

import lmdb
import typer

from ..errors import EvlogError
from ..textsafe import visible

LIMIT = 200
"""The most suggestions one Tab reads from the log (a shell shows no more than this usefully)."""


def log_path(ctx: typer.Context) -> str:
    """The log the command line being completed points at."""
    typed = ctx.params.get("log")
    if isinstance(typed, str) and typed:
        return typed  # --log as typed, or $EVLOG_PATH, which click already filled in
    from ..log import default_log_path

    return default_log_path()


def names(path: str, database: bytes, prefix: str, *, limit: int = LIMIT) -> list[str]:
    """Up to ``limit`` keys of one of the log's databases that start with ``prefix``, in key order.

    An empty list when there is no readable evlog log at ``path``; nothing
    is created or written.
    """
    from ..backends import is_url
    from ..backends.lmdb.store import Store

    if is_url(path):
        return []  # completion never reaches out to a server
    try:
        store = Store(path, create=False)
    except (EvlogError, lmdb.Error, OSError):
        return []
    try:
        with store.reading() as txn:
            return _keys_from(txn.cursor(db=store.dbs[database]), prefix, limit)
    except (EvlogError, lmdb.Error):
        return []
    finally:
        store.close()


def _keys_from(cursor: Any, prefix: str, limit: int) -> list[str]:
    # Shells hand over words as the OS does; undecodable bytes round-trip as they came.
    start = prefix.encode(errors="surrogateescape")
    found: list[str] = []
    if not cursor.set_range(start):
        return found
    while len(found) < limit:
        key = bytes(cursor.key())
        if not key.startswith(start):
            break
        with contextlib.suppress(UnicodeDecodeError):  # not a name a shell could offer
            name = key.decode()
            # A name that a terminal would act on (ESC, bidi controls) is not offered:
            # the shell would print it raw in its list of candidates.
            if visible(name) == name:
                found.append(name)
        # streams is a dupsort database (one key, many seqs): step to the next key, not the next seq.
        if not cursor.next_nodup():
            break
    return found


def complete_types(ctx: typer.Context, incomplete: str) -> list[str]:
    """Event types in the log (its per-type counts) that start with what was typed."""
    return names(log_path(ctx), b"types", incomplete)


def complete_streams(ctx: typer.Context, incomplete: str) -> list[str]:
    """Stream names in the log that start with what was typed."""
    return names(log_path(ctx), b"streams", incomplete)


def complete_groups(ctx: typer.Context, incomplete: str) -> list[str]:
    """Follower groups of ``evlog tail --group``."""
    return names(log_path(ctx), b"groups", incomplete)


def complete_projections(ctx: typer.Context, incomplete: str) -> list[str]:
    """Projections stored in the log."""
    return names(log_path(ctx), b"projections", incomplete)
