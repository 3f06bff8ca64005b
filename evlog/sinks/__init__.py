"""Read models and exports in SQL databases: projections and events kept in tables, exactly once.

:func:`sync_projection` and :func:`export_events` are the library API (the
``evlog projection sync`` and ``evlog export`` commands call them);
:mod:`evlog.sinks.target` is the interface each database implements
(:mod:`evlog.sinks.sqlite`, :mod:`evlog.sinks.postgres`). Nothing here is
imported by ``import evlog``: a database client loads only when a sync runs.
"""

from .export import export_events
from .sync import SyncReport, sync_projection

__all__ = ["SyncReport", "export_events", "sync_projection"]
