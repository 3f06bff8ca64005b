"""evlog: an append-only event log in LMDB for one machine and shell pipelines.

The library is the product; the ``evlog`` command is a thin layer over it.
``import evlog`` loads neither typer nor rich, so scripts and the command's
fast paths start quickly.

    >>> from evlog import Log
    >>> with Log("events.lmdb") as log:                        # doctest: +SKIP
    ...     log.append("deposit", {"amount": 100}, stream="account-7")
    ...     for event in log.read(types=["deposit"]):
    ...         print(event.seq, event.data)
"""

from .errors import (
    AppendStopped,
    BadInputError,
    ConflictError,
    DamagedLogError,
    EvlogError,
    ForeignTableError,
    Interrupted,
    LogNotFoundError,
    NotALogError,
    PositionError,
    StorageError,
    SyncBusyError,
    TargetError,
    TargetValueError,
    UsageError,
)
from .event import AppendSummary, Event
from .log import Log

__version__ = "0.1.0.dev0"

__all__ = [
    "AppendStopped",
    "AppendSummary",
    "BadInputError",
    "ConflictError",
    "DamagedLogError",
    "Event",
    "EvlogError",
    "ForeignTableError",
    "Interrupted",
    "Log",
    "LogNotFoundError",
    "NotALogError",
    "PositionError",
    "StorageError",
    "SyncBusyError",
    "TargetError",
    "TargetValueError",
    "UsageError",
    "__version__",
]
