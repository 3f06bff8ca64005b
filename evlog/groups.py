"""Durable consumer groups: a named position in the log, its filters, its dead letters.

A group promises *at least once*: its position (the last seq whose work is
known to be done) moves only on an acknowledgement. ``--exec CMD`` acknowledges
an event when CMD exits 0; ``evlog group ack NAME SEQ`` acknowledges for a
program that reads a pipe. Output that a pipe accepted is not work done, so a
plain ``tail --group`` moves nothing itself. A CMD that keeps failing is retried
with a bounded exponential backoff, then its event is parked as a *dead
letter* (kept in the log) and the group moves on; ``group retry`` queues dead
letters again, and the next run of the group delivers queued ones before new
events.

One follower per group at a time, by design: a group delivers its events in
seq order and its position is one number, which competing consumers would
break (an event acknowledged out of order leaves a hole that one number
cannot describe). A second follower is refused with the holder's pid; work is
spread by several groups with disjoint filters, or by a CMD that hands events
on to a pool of its own.

Entries of the ``groups`` database (every one is untrusted input when read:
a log may come from someone else, so a bad one is :class:`DamagedLogError`):

* ``name`` (UTF-8) -> msgpack map ``{"position": int, "streams": [str],
  "types": [str], "where": str | None}``. A bare 8-byte big-endian number is
  a position written by an earlier evlog, whose filters are not known.
* ``name + b"\\xff" + seq`` (8 bytes, big-endian) -> msgpack map
  ``{"attempts": int, "status": int, "time": int, "queued": bool}``: a dead
  letter. ``0xFF`` never occurs in UTF-8, so a dead letter's key is never a
  group's name (and shell completion, which offers only text keys, never
  shows one); the dead letters of a group sort together.

Stored filters are only ever compared with a run's own options, never
compiled or run: a run reads with the ``--where`` its user typed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import lmdb
import msgpack

from .backends.lmdb.store import U64, Store
from .errors import DamagedLogError, EvlogError, StorageError, UsageError
from .textsafe import visible

GROUP_NAME_BYTES = 200
_DEAD = b"\xff"
_STATUS_LIMIT = 1 << 31


class GroupBusyError(EvlogError):
    """Another process follows the same group."""


def check_group_name(name: str) -> bytes:
    """The key of a group's entry; a name evlog cannot keep is a usage error."""
    encoded = name.encode(errors="surrogateescape")
    if (not name or len(encoded) > GROUP_NAME_BYTES or any(ord(char) < 32 for char in name)
            or _valid_utf8(encoded) is None):
        raise UsageError(
            f"group name {visible(name)!r}: give 1 to {GROUP_NAME_BYTES} bytes of text without control characters"
        )
    return encoded


def _valid_utf8(data: bytes) -> str | None:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True)
class Filters:
    """The selection a group reads: its streams, types and ``--where``, as given on the command line."""

    streams: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    where: str | None = None

    @classmethod
    def of(cls, streams: Iterable[str] | None, types: Iterable[str] | None, where: str | None) -> Filters:
        """Filters in a canonical form: the order and repetition of ``-s``/``-t`` do not matter."""
        return cls(tuple(sorted(set(streams or ()))), tuple(sorted(set(types or ()))), where)

    def describe(self) -> str:
        """The filters as command-line options, for messages (``no filters`` when there are none)."""
        words = [f"-s {shlex.quote(s)}" for s in self.streams] + [f"-t {shlex.quote(t)}" for t in self.types]
        if self.where is not None:
            words.append(f"--where {shlex.quote(self.where)}")
        return visible(" ".join(words)) if words else "no filters"


@dataclass(frozen=True)
class Group:
    """A group's entry: the last seq acknowledged, and its filters (None: not recorded)."""

    name: str
    position: int
    filters: Filters | None


@dataclass(frozen=True)
class DeadLetter:
    """An event a group's CMD failed on ``attempts`` times; ``queued`` once ``group retry`` asked for it again.

    ``status`` is CMD's last exit status, or minus the number of the signal that ended it.
    """

    seq: int
    attempts: int
    status: int
    time: int
    queued: bool


# -- decoding (every entry is untrusted) ---------------------------------------------


def _damaged(name: str, what: str) -> DamagedLogError:
    return DamagedLogError(f"group {visible(name)!r}: {what}")


def _unpack(name: str, value: bytes, what: str) -> dict[str, Any]:
    try:
        found = msgpack.unpackb(value, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise _damaged(name, f"its {what} does not decode ({exc or type(exc).__name__})") from None
    if type(found) is not dict:
        raise _damaged(name, f"its {what} is not a map")
    return found


def _count(name: str, record: dict[str, Any], key: str, what: str, *, low: int = 0,
           high: int = (1 << 64) - 1) -> int:
    value = record.get(key)
    if type(value) is not int or not low <= value <= high:
        raise _damaged(name, f"its {what} {key} is {_shown(value)}, not a number from {low} to {high}")
    return value


def _shown(value: Any) -> str:
    return visible(repr(value))[:60]


def _texts(name: str, record: dict[str, Any], key: str) -> tuple[str, ...]:
    value = record.get(key)
    if type(value) is not list or not all(type(item) is str for item in value):
        raise _damaged(name, f"its filter {key} is {_shown(value)}, not a list of text")
    return tuple(value)


def _decode_group(name: str, value: bytes) -> Group:
    if len(value) == U64.size:  # every map evlog writes is longer
        return Group(name, int(U64.unpack(value)[0]), None)  # written by an earlier evlog: position only
    record = _unpack(name, value, "entry")
    if set(record) != {"position", "streams", "types", "where"}:
        raise _damaged(name, f"its entry has the fields {_shown(sorted(map(str, record)))}")
    where = record["where"]
    if where is not None and type(where) is not str:
        raise _damaged(name, f"its filter where is {_shown(where)}, not text")
    filters = Filters(_texts(name, record, "streams"), _texts(name, record, "types"), where)
    return Group(name, _count(name, record, "position", "entry"), filters)


def _encode_group(group: Group) -> bytes:
    filters = group.filters or Filters()
    value: bytes = msgpack.packb(
        {"position": group.position, "streams": list(filters.streams), "types": list(filters.types),
         "where": filters.where},
        use_bin_type=True,
    )
    return value


def _decode_key(key: bytes) -> tuple[str, int | None]:
    """A key as (group name, None) or, for a dead letter, (group name, seq)."""
    encoded, mark, rest = key.partition(_DEAD)
    name = _valid_utf8(encoded)
    shown = name if name is not None else encoded.decode(errors="replace")
    if name is None or not name or any(ord(char) < 32 for char in name):
        raise _damaged(shown, "its name is not text evlog writes")
    if not mark:
        return name, None
    if len(rest) != U64.size or U64.unpack(rest)[0] == 0:
        raise _damaged(name, f"a dead letter has a key of {len(rest)} bytes after the name, not a seq")
    return name, int(U64.unpack(rest)[0])


def _decode_dead(name: str, seq: int, value: bytes) -> DeadLetter:
    record = _unpack(name, value, f"dead letter at seq {seq}")
    if set(record) != {"attempts", "status", "time", "queued"} or type(record["queued"]) is not bool:
        raise _damaged(name, f"its dead letter at seq {seq} has the fields {_shown(record)}")
    what = f"dead letter at seq {seq}:"
    return DeadLetter(
        seq,
        _count(name, record, "attempts", what, low=1),
        _count(name, record, "status", what, low=-_STATUS_LIMIT, high=_STATUS_LIMIT),
        _count(name, record, "time", what),
        record["queued"],
    )


def _encode_dead(letter: DeadLetter) -> bytes:
    value: bytes = msgpack.packb(
        {"attempts": letter.attempts, "status": letter.status, "time": letter.time, "queued": letter.queued}
    )
    return value


def _dead_key(key: bytes, seq: int) -> bytes:
    return key + _DEAD + U64.pack(seq)


# -- reading -----------------------------------------------------------------------


def _get(txn: lmdb.Transaction, store: Store, key: bytes) -> Group | None:
    value = txn.get(key, db=store.dbs[b"groups"])
    return None if value is None else _decode_group(key.decode(), bytes(value))


def get_group(store: Store, name: str) -> Group | None:
    """The group's entry (None: no such group)."""
    key = check_group_name(name)
    with store.reading(buffers=False) as txn:
        return _get(txn, store, key)


def require_group(store: Store, name: str) -> Group:
    """The group's entry; a group that does not exist is a usage error."""
    group = get_group(store, name)
    if group is None:
        raise UsageError(f"no group named {visible(name)!r} (see evlog group list)")
    return group


def check_entry(key: bytes, value: bytes) -> None:
    """Decode one entry of the ``groups`` database as a reader would: :class:`DamagedLogError` if it is bad."""
    name, seq = _decode_key(key)
    if seq is None:
        _decode_group(name, value)
    else:
        _decode_dead(name, seq, value)


def _dead_in(txn: lmdb.Transaction, store: Store, key: bytes) -> Iterator[DeadLetter]:
    cursor = txn.cursor(db=store.dbs[b"groups"])
    prefix = key + _DEAD
    if not cursor.set_range(prefix):
        return
    for found, value in cursor:
        found = bytes(found)
        if not found.startswith(prefix):
            return
        name, seq = _decode_key(found)
        assert seq is not None
        yield _decode_dead(name, seq, bytes(value))


def dead_letters(store: Store, name: str) -> list[DeadLetter]:
    """The group's dead letters in seq order."""
    key = check_group_name(name)
    with store.reading(buffers=False) as txn:
        return list(_dead_in(txn, store, key))


def list_groups(store: Store) -> list[tuple[Group, int]]:
    """Every group with its number of dead letters, in name order."""
    groups: dict[str, Group] = {}
    dead: dict[str, int] = {}
    with store.reading(buffers=False) as txn:
        for key, value in txn.cursor(db=store.dbs[b"groups"]):
            name, seq = _decode_key(bytes(key))
            if seq is None:
                groups[name] = _decode_group(name, bytes(value))
            else:
                _decode_dead(name, seq, bytes(value))
                dead[name] = dead.get(name, 0) + 1
    for name in dead:
        if name not in groups:
            raise _damaged(name, "it has dead letters but no entry")
    return [(groups[name], dead.get(name, 0)) for name in sorted(groups)]


# -- writing -----------------------------------------------------------------------


def _put(txn: lmdb.Transaction, store: Store, group: Group) -> None:
    txn.put(check_group_name(group.name), _encode_group(group), db=store.dbs[b"groups"])


def create_group(store: Store, name: str, position: int, filters: Filters) -> Group:
    """A new group that will deliver from ``position + 1`` on, reading ``filters``."""
    group = Group(name, position, filters)
    store.write(lambda txn: _put(txn, store, group), notify=False)
    return group


def set_filters(store: Store, name: str, filters: Filters) -> None:
    """Make ``filters`` the group's from now on (its position stays)."""
    key = check_group_name(name)

    def work(txn: lmdb.Transaction) -> None:
        group = _get(txn, store, key)
        if group is not None:
            _put(txn, store, Group(name, group.position, filters))

    store.write(work, notify=False)


def set_group_position(store: Store, name: str, seq: int) -> None:
    """Put the group's position at ``seq`` (creating the group, without recorded filters, if needed)."""
    key = check_group_name(name)

    def work(txn: lmdb.Transaction) -> None:
        group = _get(txn, store, key)
        _put(txn, store, Group(name, seq, group.filters if group else None))

    store.write(work, notify=False)


def group_position(store: Store, name: str) -> int | None:
    """The last seq the group has acknowledged (None: the group does not exist)."""
    group = get_group(store, name)
    return None if group is None else group.position


def acknowledge(store: Store, name: str, seqs: Iterable[int]) -> Group:
    """Record that the work of ``seqs`` is done: the position moves up to the highest, their dead letters go.

    The position never moves back: acknowledging a seq at or before it only
    removes that seq's dead letter, if it has one.
    """
    key = check_group_name(name)
    wanted = sorted(set(seqs))

    def work(txn: lmdb.Transaction) -> Group:
        group = _get(txn, store, key)
        if group is None:
            raise UsageError(f"no group named {visible(name)!r} (see evlog group list)")
        for seq in wanted:
            txn.delete(_dead_key(key, seq), db=store.dbs[b"groups"])
        if wanted and wanted[-1] > group.position:
            group = Group(name, wanted[-1], group.filters)
            _put(txn, store, group)
        return group

    result: Group = store.write(work, notify=False)
    return result


def park(store: Store, name: str, letter: DeadLetter) -> None:
    """Keep ``letter`` in the group's dead letters and move the group past its event."""
    key = check_group_name(name)

    def work(txn: lmdb.Transaction) -> None:
        txn.put(_dead_key(key, letter.seq), _encode_dead(letter), db=store.dbs[b"groups"])
        group = _get(txn, store, key)
        if group is not None and letter.seq > group.position:
            _put(txn, store, Group(name, letter.seq, group.filters))

    store.write(work, notify=False)


def requeue(store: Store, name: str, seqs: Iterable[int] = ()) -> list[int]:
    """Queue dead letters for another delivery (all of them when ``seqs`` is empty); returns their seqs."""
    key = check_group_name(name)
    wanted = set(seqs)

    def work(txn: lmdb.Transaction) -> list[int]:
        if _get(txn, store, key) is None:
            raise UsageError(f"no group named {visible(name)!r} (see evlog group list)")
        letters = {letter.seq: letter for letter in _dead_in(txn, store, key)}
        missing = sorted(wanted - set(letters))
        if missing:
            listed = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
            raise UsageError(
                f"group {visible(name)!r} has no dead letter at seq {listed} (see evlog group dead {shell_word(name)})"
            )
        chosen = sorted(wanted) if wanted else sorted(letters)
        for seq in chosen:
            letter = letters[seq]
            queued = DeadLetter(seq, letter.attempts, letter.status, letter.time, True)
            txn.put(_dead_key(key, seq), _encode_dead(queued), db=store.dbs[b"groups"])
        return chosen

    # Notified: a live follower of the group wakes up and delivers them at once.
    result: list[int] = store.write(work, notify=True)
    return result


def settle(store: Store, name: str, letter: DeadLetter, *, done: bool) -> None:
    """After another delivery of a dead letter: remove it when ``done``, else keep it, no longer queued."""
    key = _dead_key(check_group_name(name), letter.seq)

    def work(txn: lmdb.Transaction) -> None:
        if done:
            txn.delete(key, db=store.dbs[b"groups"])
        else:
            txn.put(key, _encode_dead(letter), db=store.dbs[b"groups"])

    store.write(work, notify=False)


def remove_group(store: Store, name: str) -> bool:
    """Forget a group and its dead letters; False when there was no such group."""
    key = check_group_name(name)

    def work(txn: lmdb.Transaction) -> bool:
        db = store.dbs[b"groups"]
        dead = [_dead_key(key, letter.seq) for letter in _dead_in(txn, store, key)]
        for found in dead:
            txn.delete(found, db=db)
        return bool(txn.delete(key, db=db))

    result: bool = store.write(work, notify=False)
    return result


# -- one follower per group ---------------------------------------------------------


class GroupLock:
    """Only one follower per group at a time: an exclusive lock on ``group-<hex>.lock`` in the log.

    The operating system drops the lock when its process ends in any way
    (even ``kill -9``), so a crashed follower never blocks its successor. The
    holder writes its pid into the file, so a refused process can say who
    holds it. The file must be a regular file: it is opened without following
    a symlink, and anything else in its place is refused.
    """

    def __init__(self, log_path: str, name: str) -> None:
        self.path = os.path.join(log_path, f"group-{check_group_name(name).hex()}.lock")
        self.fd: int | None = None
        self.name = name

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        shown = f"{visible(self.path)}"
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if os.path.islink(self.path):
                raise StorageError(
                    f"{shown} is a symbolic link, not a lock file; remove it (evlog never makes one)"
                ) from None
            raise StorageError(f"cannot open {shown}: {exc.strerror}; check the log directory") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise StorageError(f"{shown} is not a regular file; remove it (evlog only ever makes a regular file)")
        return fd

    def acquire(self) -> None:
        import fcntl

        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise GroupBusyError(
                f"group {visible(self.name)!r} is being followed by another process{holder}; one follower "
                "per group at a time. To spread the work, run one follower with --exec CMD and let CMD hand "
                "events on, or split the events over several groups with disjoint -s/-t/--where filters"
            ) from None
        with contextlib.suppress(OSError):  # who holds it is for messages only
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def __enter__(self) -> GroupLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self, *, remove: bool = False) -> None:
        """Drop the lock; with ``remove`` (the group is gone) delete its file too."""
        if self.fd is not None:
            if remove:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
            os.close(self.fd)
            self.fd = None


def shell_word(name: str) -> str:
    """A group name as it is typed in a command that a message suggests."""
    return shlex.quote(visible(name))


def _holder(fd: int) -> str:
    """`` (pid N)`` from a lock file's content, or nothing when it holds no plausible pid."""
    try:
        text = os.pread(fd, 24, 0).strip()
    except OSError:
        return ""
    return f" (pid {int(text)})" if text.isdigit() and 0 < int(text) < 1 << 32 else ""
