"""How states become rows: columns and their types, keys, removed keys, cell values.

The rules (the README's "A read model in SQL" says them to users): a
``--by`` projection is one row per key, the key as text in the primary key
column ``key`` (a string as it is, any other value as JSON); one without
``--by`` is one row. An object state's top-level keys are columns; any other
state is the column ``value``. A column's type is that of its values:
integer, real, text, boolean, or JSON for lists and objects; integers and
reals together make a real column while every integer is one a double holds
exactly (the same number), and any other mix makes a JSON column, so no value
is changed or truncated. A key with no value (absent or null) is
NULL. A state of None is a removed key: it has no row.

Which keys changed is learnt from the fold itself (:class:`TouchedStates`),
not by comparing states: comparing would cost a copy of every state per
batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import orjson

from ..errors import UsageError
from .target import Column, ColumnType, check_identifier

KEY_COLUMN = Column("key", "text")
VALUE_COLUMN = "value"
INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1
EXACT = 1 << 53
"""The largest integer every double holds exactly."""
JSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def column_type(value: Any) -> ColumnType:
    """The logical type of a non-null value."""
    kind = type(value)
    if kind is bool:
        return "boolean"
    if kind is int:
        return "integer"
    if kind is float:
        return "real"
    if kind is str:
        return "text"
    return "json"


def key_text(key: Any) -> str:
    """A state's key as the text of the ``key`` column: a string as it is, any other value as JSON."""
    return key if type(key) is str else orjson.dumps(key, option=JSON_OPTIONS).decode()


class TouchedStates(dict[Any, Any]):
    """A fold's states that remember which keys the fold looked at since :meth:`take`.

    The compiled fold reaches a key's state only through ``get`` and item
    assignment (the clauses cannot name ``_states``), so these two see every
    key an event may have changed; the keys whose states are rewritten are
    those, not every key of the projection.
    """

    def __init__(self, states: dict[Any, Any]) -> None:
        super().__init__(states)
        self.touched: set[Any] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.touched.add(key)
        return dict.get(self, key, default)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.touched.add(key)
        dict.__setitem__(self, key, value)

    def take(self) -> set[Any]:
        touched, self.touched = self.touched, set()
        return touched


class Layout:
    """The columns of a state table and their types, as the checkpoint records them."""

    def __init__(self, columns: Iterable[Column], *, keyed: bool) -> None:
        self.columns: dict[str, ColumnType] = {column.name: column.type for column in columns}
        self.keyed = keyed
        self._folded = {name.lower(): name for name in self.columns}
        self._plan: tuple[list[str], list[ColumnType | None]] | None = None
        if keyed:
            self._folded[KEY_COLUMN.name] = KEY_COLUMN.name

    def as_columns(self) -> tuple[Column, ...]:
        return tuple(Column(name, kind) for name, kind in self.columns.items())

    def fits(self, name: str, value: Any) -> bool | None:
        """Whether a non-null value fits column ``name``: True, False (a type conflict) or None (no such column).

        A real column takes integers that a double holds exactly (|n| <= 2**53): 1 and 1.5 are numbers
        of one column, which SQL compares as numbers.
        """
        known = self.columns.get(name)
        if known is None:
            return None
        kind = column_type(value)
        return known == kind or known == "json" or (known == "real" and kind == "integer" and -EXACT <= value <= EXACT)

    def check_new(self, name: Any) -> str:
        """A new column's name, checked; :class:`UsageError` saying why not."""
        if type(name) is not str:
            raise UsageError(f"the state key {name!r} is not text, so it cannot be a column name")
        check_identifier(name, "the state key")
        clash = self._folded.get(name.lower())
        if clash is not None and clash != name:
            what = "the primary key column" if clash == KEY_COLUMN.name else f"the column {clash!r}"
            raise UsageError(f"the state key {name!r} would be the same column as {what} (names are compared "
                             "without case)")
        return name

    def add(self, name: str, kind: ColumnType) -> None:
        self.columns[name] = kind
        self._folded[name.lower()] = name
        self._plan = None

    def cells(self, fields: dict[Any, Any]) -> list[Any]:
        """A state's values for every column in order (see :func:`cell`); ValueError for one that cannot be stored."""
        plan = self._plan
        if plan is None:
            # Text and boolean values go as they are; the other kinds are converted or checked.
            plan = self._plan = (list(self.columns), [None if kind in ("text", "boolean") else kind
                                                      for kind in self.columns.values()])
        names, kinds = plan
        return [value if value is None or kind is None else cell(value, kind)
                for value, kind in zip(map(fields.get, names), kinds, strict=True)]


def state_fields(state: Any) -> dict[Any, Any]:
    """The columns a state fills: an object's keys, else ``value``."""
    return state if type(state) is dict else {VALUE_COLUMN: state}


def infer_layout(states: Iterable[Any], *, keyed: bool) -> Layout:
    """The columns for these states: each column's one type (integers and reals: real), else JSON."""
    layout = Layout((), keyed=keyed)
    kinds: dict[str, set[ColumnType]] = {}
    big: set[str] = set()  # columns with an integer a double cannot hold exactly
    for state in states:
        if state is None:
            continue
        for name, value in state_fields(state).items():
            if value is None:
                continue
            kind = column_type(value)
            seen = kinds.get(name)
            if seen is None:
                layout.add(layout.check_new(name), kind)
                seen = kinds[name] = set()
            seen.add(kind)
            if kind == "integer" and not -EXACT <= value <= EXACT:
                big.add(name)
    for name, seen in kinds.items():
        if len(seen) > 1:
            layout.columns[name] = "real" if seen == {"integer", "real"} and name not in big else "json"
    layout._plan = None
    return layout


def cell(value: Any, kind: ColumnType) -> Any:
    """A value as a target gets it for a column of ``kind`` (see :mod:`evlog.sinks.target`).

    ValueError if it cannot be one.
    """
    if value is None:
        return None
    if kind == "json":
        try:
            return orjson.dumps(value, option=JSON_OPTIONS).decode()
        except orjson.JSONEncodeError as exc:
            raise ValueError(f"it is not a JSON value ({exc})") from None
    if kind == "integer" and not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"the integer {value} does not fit in 64 bits")
    if kind == "real":
        if not math.isfinite(value):
            raise ValueError(f"the number {value} is not finite")
        return float(value)
    return value
