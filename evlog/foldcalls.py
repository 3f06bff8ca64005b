"""What a fold's code can call at run time, and the checks that keep it to JSON values.

The fold language (:mod:`evlog.foldlang`) decides at compile time what a
clause may say; this module holds what the generated loop calls while it
runs: the builtins offered (pure functions and the constructors of JSON
values, none of which returns a type, a module, a frame or a function's
internals), the methods a fold may call on each JSON type
(:data:`METHODS`), the per-method tables that check a receiver's exact type
where it was not known when the fold was compiled, and the ordered views
that keep set operations on an object's keys deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterable, KeysView
from typing import Any

from .errors import EvlogError

EXCEPTIONS = (
    "ArithmeticError", "Exception", "KeyError", "IndexError", "LookupError", "TypeError", "ValueError",
    "ZeroDivisionError",
)
SAFE_BUILTINS = (
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float",
    "int", "isinstance", "len", "list", "map", "max", "min", "pow", "range", "reversed", "round",
    "sorted", "str", "sum", "tuple", "zip", *EXCEPTIONS,
)

_SEQUENCE = frozenset({"count", "index"})
_STRING = _SEQUENCE | frozenset({
    "lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "join", "replace",
    "startswith", "endswith", "find", "rfind", "isdigit", "isalpha", "isalnum", "isspace", "islower",
    "isupper", "isdecimal", "isnumeric", "title", "capitalize", "casefold", "swapcase", "partition",
    "rpartition", "zfill", "center", "ljust", "rjust", "removeprefix", "removesuffix", "expandtabs",
})
METHODS: dict[type, frozenset[str]] = {
    dict: frozenset({"get", "keys", "items", "values", "pop", "popitem", "setdefault", "update", "copy",
                     "clear", "fromkeys"}),
    list: _SEQUENCE | frozenset({"append", "extend", "insert", "remove", "reverse", "sort", "pop", "copy",
                                 "clear"}),
    tuple: _SEQUENCE,
    str: _STRING,
    int: frozenset({"bit_length"}),
    bool: frozenset({"bit_length"}),
    float: frozenset({"is_integer"}),
    type(None): frozenset(),
}
"""The methods a fold may call, per exact type of a JSON value.

Every name here is, on every type a decoded value can have (these, and
bytes or msgpack's ext objects, should a damaged log hold one), a pure
method of that type or absent: which is what lets a call on a value known to
come from the log go without a check."""
METHOD_NAMES = frozenset().union(*METHODS.values())


class RefusedCall(Exception):
    """A fold called a method that is not on the allowlist for the receiver's type."""

    def __init__(self, method: str, receiver: type) -> None:
        self.method = method
        self.receiver = receiver
        allowed = sorted(name for name in (t.__name__ for t, names in METHODS.items() if method in names))
        super().__init__(
            f".{method}() called on a {_type_name(receiver)}; folds call methods only on JSON values"
            + (f" (.{method}() is a method of {', '.join(allowed)})" if allowed else "")
        )


def _type_name(kind: type) -> str:
    return "null" if kind is type(None) else kind.__name__


class _MethodTable(dict[type, Callable[..., Any]]):
    """Exact type -> the unbound method ``name`` of that JSON type; any other type is refused."""

    def __init__(self, name: str) -> None:
        super().__init__({kind: getattr(kind, name) for kind, names in METHODS.items() if name in names})
        self.name = name

    def __missing__(self, key: type) -> Callable[..., Any]:
        raise RefusedCall(self.name, key)


_TABLES = {name: _MethodTable(name) for name in METHOD_NAMES}


def bound_method(value: Any, name: str) -> Any:
    """``value.name`` if ``name`` is a fold method of ``value``'s exact type, else :class:`RefusedCall`."""
    _TABLES[name][type(value)]
    return getattr(value, name)


def reraise_own(exc: BaseException) -> None:
    """First thing in every ``except`` handler of a clause: evlog's own errors are not the fold's to catch."""
    if isinstance(exc, (EvlogError, RefusedCall)):
        raise exc


def dict_fromkeys(keys: Iterable[Any], value: Any = None) -> dict[Any, Any]:
    """``dict.fromkeys`` for a fold (a method of the type ``dict``, which is not a JSON value)."""
    return dict.fromkeys(keys, value)


class _OrderedSetOperations:
    """Set operations that give lists in the order of their operands, without repeats."""

    @classmethod
    def _from_iterable(cls, values: Iterable[Any]) -> list[Any]:
        return list(dict.fromkeys(values))

    def __xor__(self, other: object) -> Any:
        # The ABC's own __xor__ joins two results of _from_iterable with |, which lists lack.
        if not isinstance(other, Iterable):
            return NotImplemented
        others = dict.fromkeys(other)
        mine = self  # a KeysView or ItemsView: iterable, with fast membership
        assert isinstance(mine, Iterable)
        return [value for value in mine if value not in others] + [
            value for value in others if value not in mine
        ]

    __rxor__ = __xor__


# The views' set operations deliberately give lists, where the stubs say sets.
class _OrderedKeys(_OrderedSetOperations, KeysView[Any]):  # type: ignore[misc]
    """An object's keys for a fold (see :func:`ordered_view`)."""


class _OrderedItems(_OrderedSetOperations, ItemsView[Any, Any]):  # type: ignore[misc]
    """An object's items for a fold (see :func:`ordered_view`)."""


def ordered_view(value: Any, method: str) -> Any:
    """``value.keys()`` or ``value.items()`` in a fold.

    A dict's key and item views make sets under ``|``, ``&``, ``-`` and ``^``, and
    a set's order of iteration depends on the process's string hashing: a fold
    using one could answer differently in two processes, and snapshots would
    disagree with a replay from the start. A fold gets views whose set
    operations give lists instead, in the order of their operands, without
    repeats. Only a dict has these methods in a fold.
    """
    if type(value) is dict:
        return _OrderedKeys(value) if method == "keys" else _OrderedItems(value)
    raise RefusedCall(method, type(value))


def builtins_namespace() -> dict[str, Any]:
    """The globals of a generated fold: the offered builtins and the runtime helpers clauses use."""
    import builtins

    namespace: dict[str, Any] = {
        "__builtins__": {name: getattr(builtins, name) for name in SAFE_BUILTINS},
        "_view": ordered_view, "_type": type, "_reraise_own": reraise_own, "_dict_fromkeys": dict_fromkeys,
        "_bound": bound_method,
    }
    for name, table in _TABLES.items():
        namespace[f"_m_{name}"] = table
    return namespace
