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

Storage. This module is the one implementation of groups; a backend gives
it a :class:`~evlog.backends.GroupEntries` (get, list, put, compare-and-set,
delete of those entries, and the hold of a group's one follower): an LMDB
log its ``groups`` database and a lock file, a log on a server its
``groups`` key-value bucket and a lease entry in it. Each operation is
atomic on its own, so the changes that touch two entries are ordered to
keep the promise if a process dies between them: a dead letter is written
before the position moves past its event (the event comes again, never
goes missing), an acknowledged dead letter is removed before the position
moves, and a group's dead letters are removed before its entry. Every
change of an entry that a follower and a ``group`` command may both make
is a compare-and-set, read again on a conflict.
"""

from __future__ import annotations

import shlex
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from .errors import DamagedLogError, GroupBusyError, UsageError
from .textsafe import visible

if TYPE_CHECKING:
    from .backends import GroupEntries
    from .backends.lmdb.store import Store

__all__ = ["GroupBusyError"]  # re-exported: it was defined here before

U64 = struct.Struct(">Q")

GROUP_NAME_BYTES = 200
_DEAD = b"\xff"
_STATUS_LIMIT = 1 << 31


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

def entries_of(where: GroupEntries | Store) -> GroupEntries:
    """The groups table to work on: a backend's, or that of an LMDB :class:`Store` (as earlier callers pass)."""
    from .backends.lmdb.store import Store

    if not isinstance(where, Store):
        return where
    from .backends.lmdb.groups import LmdbGroups

    return LmdbGroups(where)


def _read(table: GroupEntries, name: str, key: bytes) -> tuple[Group | None, object | None]:
    """The group's entry and its revision (None, None: no such group)."""
    found = table.get(key)
    if found is None:
        return None, None
    return _decode_group(name, found[0]), found[1]


def _no_group(name: str) -> UsageError:
    return UsageError(f"no group named {visible(name)!r} (see evlog group list)")


def get_group(where: GroupEntries | Store, name: str) -> Group | None:
    """The group's entry (None: no such group)."""
    key = check_group_name(name)
    return _read(entries_of(where), name, key)[0]


def require_group(where: GroupEntries | Store, name: str) -> Group:
    """The group's entry; a group that does not exist is a usage error."""
    group = get_group(where, name)
    if group is None:
        raise _no_group(name)
    return group


def check_entry(key: bytes, value: bytes) -> None:
    """Decode one entry of the ``groups`` database as a reader would: :class:`DamagedLogError` if it is bad."""
    name, seq = _decode_key(key)
    if seq is None:
        _decode_group(name, value)
    else:
        _decode_dead(name, seq, value)


def _dead_in(table: GroupEntries, key: bytes) -> list[tuple[DeadLetter, object]]:
    """The group's dead letters with their revisions, in seq order."""
    found = []
    for dead_key, value, revision in table.items(key + _DEAD):
        name, seq = _decode_key(dead_key)
        assert seq is not None
        found.append((_decode_dead(name, seq, value), revision))
    return sorted(found, key=lambda item: item[0].seq)


def dead_letters(where: GroupEntries | Store, name: str) -> list[DeadLetter]:
    """The group's dead letters in seq order."""
    key = check_group_name(name)
    return [letter for letter, _ in _dead_in(entries_of(where), key)]


def list_groups(where: GroupEntries | Store) -> list[tuple[Group, int]]:
    """Every group with its number of dead letters, in name order."""
    groups: dict[str, Group] = {}
    dead: dict[str, int] = {}
    for key, value, _ in entries_of(where).items():
        name, seq = _decode_key(key)
        if seq is None:
            groups[name] = _decode_group(name, value)
        else:
            _decode_dead(name, seq, value)
            dead[name] = dead.get(name, 0) + 1
    for name in dead:
        if name not in groups:
            raise _damaged(name, "it has dead letters but no entry")
    return [(groups[name], dead.get(name, 0)) for name in sorted(groups)]


# -- writing -----------------------------------------------------------------------


def create_group(where: GroupEntries | Store, name: str, position: int, filters: Filters) -> Group:
    """A new group that will deliver from ``position + 1`` on, reading ``filters``."""
    group = Group(name, position, filters)
    entries_of(where).put(check_group_name(name), _encode_group(group))
    return group


def _change(table: GroupEntries, name: str, key: bytes, change: Callable[[Group | None], Group | None]) -> Group | None:
    """Compare-and-set the group's entry to ``change(entry)`` (None: leave it), reading again on a conflict."""
    while True:
        group, revision = _read(table, name, key)
        changed = change(group)
        if changed is None or changed == group:
            return group
        if table.swap(key, _encode_group(changed), revision):
            return changed


def set_filters(where: GroupEntries | Store, name: str, filters: Filters) -> None:
    """Make ``filters`` the group's from now on (its position stays)."""
    key = check_group_name(name)
    _change(entries_of(where), name, key,
            lambda group: None if group is None else Group(name, group.position, filters))


def set_group_position(where: GroupEntries | Store, name: str, seq: int) -> None:
    """Put the group's position at ``seq`` (creating the group, without recorded filters, if needed)."""
    key = check_group_name(name)
    _change(entries_of(where), name, key, lambda group: Group(name, seq, group.filters if group else None))


def group_position(where: GroupEntries | Store, name: str) -> int | None:
    """The last seq the group has acknowledged (None: the group does not exist)."""
    group = get_group(where, name)
    return None if group is None else group.position


def _move_past(table: GroupEntries, name: str, key: bytes, seq: int) -> Group | None:
    """Move the group's position up to ``seq`` (never back); None when there is no such group."""
    return _change(table, name, key, lambda group: None if group is None or seq <= group.position
                   else Group(name, seq, group.filters))


def acknowledge(where: GroupEntries | Store, name: str, seqs: Iterable[int]) -> Group:
    """Record that the work of ``seqs`` is done: the position moves up to the highest, their dead letters go.

    The position never moves back: acknowledging a seq at or before it only
    removes that seq's dead letter, if it has one.
    """
    table = entries_of(where)
    key = check_group_name(name)
    wanted = sorted(set(seqs))
    if get_group(table, name) is None:
        raise _no_group(name)
    for seq in wanted:
        table.delete(_dead_key(key, seq))
    group = _move_past(table, name, key, wanted[-1]) if wanted else get_group(table, name)
    if group is None:
        raise _no_group(name)  # removed meanwhile
    return group


def park(where: GroupEntries | Store, name: str, letter: DeadLetter) -> None:
    """Keep ``letter`` in the group's dead letters and move the group past its event."""
    table = entries_of(where)
    key = check_group_name(name)
    table.put(_dead_key(key, letter.seq), _encode_dead(letter))  # first: dying here delivers the event again
    _move_past(table, name, key, letter.seq)


def requeue(where: GroupEntries | Store, name: str, seqs: Iterable[int] = ()) -> list[int]:
    """Queue dead letters for another delivery (all of them when ``seqs`` is empty); returns their seqs."""
    table = entries_of(where)
    key = check_group_name(name)
    wanted = set(seqs)
    if get_group(table, name) is None:
        raise _no_group(name)
    letters = {letter.seq: (letter, revision) for letter, revision in _dead_in(table, key)}
    missing = sorted(wanted - set(letters))
    if missing:
        listed = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise UsageError(
            f"group {visible(name)!r} has no dead letter at seq {listed} (see evlog group dead {shell_word(name)})"
        )
    chosen = sorted(wanted) if wanted else sorted(letters)
    queued = []
    for seq in chosen:
        letter, revision = letters[seq]
        while True:  # compare-and-set: a follower settling it meanwhile wins
            if table.swap(_dead_key(key, seq), _encode_dead(DeadLetter(seq, letter.attempts, letter.status,
                                                                        letter.time, True)), revision):
                queued.append(seq)
                break
            found = table.get(_dead_key(key, seq))
            if found is None:
                break  # handled meanwhile
            letter, revision = _decode_dead(name, seq, found[0]), found[1]
    table.wake()  # a live follower of the group delivers them at once
    return queued


def settle(where: GroupEntries | Store, name: str, letter: DeadLetter, *, done: bool) -> None:
    """After another delivery of a dead letter: remove it when ``done``, else keep it, no longer queued."""
    table = entries_of(where)
    key = _dead_key(check_group_name(name), letter.seq)
    if done:
        table.delete(key)
    else:
        table.put(key, _encode_dead(letter))


def remove_group(where: GroupEntries | Store, name: str) -> bool:
    """Forget a group and its dead letters; False when there was no such group."""
    table = entries_of(where)
    key = check_group_name(name)
    for dead_key, _, revision in table.items(key + _DEAD):  # first: never dead letters without a group
        table.delete(dead_key, revision)
    return table.delete(key)


# -- one follower per group ---------------------------------------------------------


def busy_message(name: str, holder: str) -> str:
    """Why a second follower of a group is refused; ``holder`` says who holds it (`` (pid N)``) or is empty."""
    return (
        f"group {visible(name)!r} is being followed by another process{holder}; one follower "
        "per group at a time. To spread the work, run one follower with --exec CMD and let CMD hand "
        "events on, or split the events over several groups with disjoint -s/-t/--where filters"
    )


def __getattr__(name: str) -> Any:
    if name == "GroupLock":  # the LMDB lock, once defined here; imported only when asked for
        from .backends.lmdb.groups import GroupLock

        return GroupLock
    raise AttributeError(name)


def shell_word(name: str) -> str:
    """A group name as it is typed in a command that a message suggests."""
    return shlex.quote(visible(name))
