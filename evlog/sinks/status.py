"""Where each sync of a log stands: its table's seq and lag, read from the targets themselves.

The log records where it was synced (:mod:`evlog.sinks.registry`); the
checkpoint in each database says how far. A target that cannot be reached
is a row that says so, not a failure of the whole listing: status is what a
person looks at when something is wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import EvlogError
from .registry import recorded_targets
from .sync import EVENTS, projection_definition
from .target import open_target

if TYPE_CHECKING:
    from ..log import Log


def sync_status(log: Log) -> list[dict[str, Any]]:
    """One record per recorded sync: table, source, target, last_seq, lag, updated and state.

    ``state`` is ``ok``, ``rebuild due`` (the projection's definition changed
    since the table was built: the next sync rebuilds it), ``projection
    removed``, ``not built`` (no checkpoint: never finished, or the table was
    dropped) or ``unreachable: …``.
    """
    head = log.head()
    log_id = str(log.info()["log_id"])
    found: list[dict[str, Any]] = []
    for recorded in recorded_targets(log):
        record: dict[str, Any] = {"table": recorded.table, "source": recorded.source, "target": recorded.url,
                                  "last_seq": None, "lag": None, "updated": None, "state": "ok"}
        found.append(record)
        try:
            target = open_target(recorded.url, create=False)
            try:
                checkpoint = target.checkpoint(recorded.table)
            finally:
                target.close()
        except EvlogError as exc:
            record["state"] = f"unreachable: {exc}"
            continue
        if checkpoint is None or checkpoint.source != recorded.source or checkpoint.log_id != log_id:
            record["state"] = "not built"
            continue
        record.update(last_seq=checkpoint.last_seq, lag=max(head - checkpoint.last_seq, 0), updated=checkpoint.updated)
        if recorded.source != EVENTS:
            name = recorded.source.removeprefix("projection ")
            try:
                projection = projection_definition(log, name)
            except EvlogError:
                record["state"] = "projection removed"
                continue
            if projection.spec.digest(log.resolve(projection.from_)).hex() != checkpoint.definition:
                record["state"] = "rebuild due"
    return found
