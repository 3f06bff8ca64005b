"""Every error evlog raises, each with the process exit code it stands for.

The library raises these; the command line has one boundary that prints the
message and exits with ``exit_code``. Keeping the code on the exception keeps
that mapping in one place and lets library users branch on the class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .event import AppendSummary


class EvlogError(Exception):
    """Base class of every evlog error; ``exit_code`` is the CLI's exit status."""

    exit_code = 1


class UsageError(EvlogError):
    """An option or argument has a value evlog cannot use."""

    exit_code = 2


class PositionError(UsageError):
    """A ``--from``/``--until``/``--at`` position cannot be parsed or resolved."""


class ConflictError(EvlogError):
    """A stream was not at the version an append expected (``--expect``)."""

    exit_code = 3

    def __init__(self, message: str, *, stream: str, expected: int, actual: int) -> None:
        super().__init__(message)
        self.stream = stream
        self.expected = expected
        self.actual = actual


class BadInputError(EvlogError):
    """Input data is malformed; ``line`` (1-based) or ``offset`` says where."""

    exit_code = 65

    def __init__(
        self, reason: str, *, line: int | None = None, offset: int | None = None
    ) -> None:
        self.reason = reason
        self.line = line
        self.offset = offset
        super().__init__(self._where() + reason)

    def _where(self) -> str:
        if self.line is not None:
            return f"line {self.line}: "
        if self.offset is not None:
            return f"byte offset {self.offset}: "
        return ""


class LogNotFoundError(EvlogError):
    """The log a read command was pointed at does not exist."""

    exit_code = 66


class NotALogError(EvlogError):
    """The path exists but is not an evlog log, or one of a newer format."""

    exit_code = 74


class StorageError(EvlogError):
    """LMDB or the file system failed (disk full, permissions, corruption)."""

    exit_code = 74


class DamagedLogError(StorageError):
    """A stored record, counter or entry does not decode as evlog wrote it.

    Every byte read from a log is untrusted input (a log may come from
    someone else), so a bad one is this error, never a traceback or a wrong
    answer. ``seq`` names the event when the damage is in one.
    """

    def __init__(self, what: str, *, seq: int | None = None) -> None:
        self.seq = seq
        self.what = what
        where = f"seq {seq} ({what})" if seq is not None else what
        super().__init__(f"damaged log: {where}; run evlog verify")


class Interrupted(EvlogError):
    """A signal (Ctrl-C, SIGTERM) ended the command; ``exit_code`` is 128 + its number."""

    def __init__(self, message: str, *, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class AppendStopped(EvlogError):
    """A bulk append stopped at a bad event after committing what preceded it.

    ``cause`` is the error of the event that stopped the run (its exit code is
    the one the CLI uses) and ``summary`` says what was written before it.
    """

    def __init__(self, cause: EvlogError, summary: AppendSummary, written_note: str) -> None:
        self.cause = cause
        self.summary = summary
        self.exit_code = cause.exit_code
        super().__init__(f"{cause}\n{written_note}")



class MissingExtraError(UsageError):
    """A log or target needs an optional client library (an extra) that is not installed."""


class ServerUnavailableError(StorageError):
    """A server holding the log could not be reached, or did not answer in time."""


class ServerAccessError(StorageError):
    """A server holding the log refused the credentials or the operation (authorization)."""


class ServerUnsupportedError(StorageError):
    """A server holding the log lacks what evlog needs (JetStream, a recent enough version)."""


class GroupBusyError(EvlogError):
    """Another process follows the same group (one follower per group at a time)."""


class SyncBusyError(EvlogError):
    """Another process syncs into the same table of the same database (the message names it)."""


class TargetError(StorageError):
    """A database target failed: it cannot be reached, refused the login, or its write failed."""


class ForeignTableError(TargetError):
    """A table of the name a sync would write exists and was not created by evlog; it is left alone."""


class TargetValueError(EvlogError):
    """A value the target database cannot store; ``key`` names the state's key where known."""

    exit_code = 65

    def __init__(self, message: str, *, key: object = None) -> None:
        super().__init__(message)
        self.key = key
