"""The fold language: checking and rewriting the clauses users write.

``--fold``, ``--on``, ``--where`` and ``--by`` take short Python statements or
expressions over ``s`` (the state), ``e`` (the event) and ``d`` (its data).
This module parses each one, refuses what a fold must not do (imports,
definitions, ``global``, generators, sets, dunder names, names not offered),
and rewrites the rest for the generated loop of :mod:`evlog.fold`: attribute
access becomes key access, ``e.type`` and friends become loop locals, and an
expression statement's value becomes the new state. It also records what a
clause reads, so that the loop decodes only the parts of an event in use.
"""

from __future__ import annotations

import ast
from collections.abc import ItemsView, Iterable, KeysView
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError

EVENT_FIELDS = ("seq", "ts", "type", "stream", "version", "id", "data", "meta")
ALIASES = {"state": "s", "event": "e"}
SAFE_BUILTINS = (
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float",
    "int", "isinstance", "len", "list", "map", "max", "min", "pow", "range", "reversed", "round",
    "sorted", "str", "sum", "tuple", "zip", "ArithmeticError", "Exception", "KeyError",
    "IndexError", "LookupError", "TypeError", "ValueError", "ZeroDivisionError",
)
REFUSED = {
    ast.Import: "import", ast.ImportFrom: "import", ast.FunctionDef: "def", ast.AsyncFunctionDef: "def",
    ast.ClassDef: "class", ast.Global: "global", ast.Nonlocal: "nonlocal", ast.Yield: "yield",
    ast.YieldFrom: "yield", ast.Await: "await", ast.AsyncFor: "async for", ast.AsyncWith: "async with",
    ast.With: "with",
    # A set's order of iteration depends on the process's string hashing, so a
    # fold using one could answer differently in two runs: no sets.
    ast.Set: "a set (use a list, a tuple or the keys of an object)",
    ast.SetComp: "a set (use a list, a tuple or the keys of an object)",
}



class FoldSyntaxError(UsageError):
    """A fold clause is not valid or uses something folds do not offer."""



# -- compiling clauses ---------------------------------------------------------


class _Rewriter(ast.NodeTransformer):
    """Checks one clause and rewrites it to the loop's local names."""

    def __init__(self, option: str, code: str) -> None:
        self.option = option
        self.code = code
        self.event_fields: set[str] = set()
        self.whole_event = False
        self.uses_data = False
        self.uses_state = False

    def refuse(self, node: ast.AST, what: str) -> FoldSyntaxError:
        column = getattr(node, "col_offset", None)
        pointer = ""
        if column is not None and "\n" not in self.code:
            pointer = f"\n  {self.code}\n  {' ' * column}^"
        return FoldSyntaxError(f"{self.option} {self.code!r}: {what} is not allowed in a fold{pointer}")

    def generic_visit(self, node: ast.AST) -> ast.AST:
        refused = REFUSED.get(type(node))
        if refused is not None:
            raise self.refuse(node, refused if " " in refused else f"'{refused}'")
        return super().generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        name = ALIASES.get(node.id, node.id)
        if name.startswith("_"):
            raise self.refuse(node, f"the name {node.id!r} (names starting with '_')")
        if name == "e":
            self.whole_event = True
        elif name == "d":
            self.uses_data = True
        elif name == "s":
            self.uses_state = True
        return ast.copy_location(ast.Name(id=name, ctx=node.ctx), node)

    def _event_field(self, node: ast.AST, key: object) -> ast.AST | None:
        """``e.type`` / ``e["type"]`` -> the loop's local for that field."""
        if isinstance(node, ast.Name) and ALIASES.get(node.id, node.id) == "e" and key in EVENT_FIELDS:
            if key == "data":
                self.uses_data = True
                return ast.Name(id="d", ctx=ast.Load())
            self.event_fields.add(str(key))
            return ast.Name(id=f"_e_{key}", ctx=ast.Load())
        return None

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if node.attr.startswith("__"):
            raise self.refuse(node, f"the attribute {node.attr!r}")
        if isinstance(node.ctx, ast.Load):
            local = self._event_field(node.value, node.attr)
            if local is not None:
                return ast.copy_location(local, node)
        value = self.visit(node.value)
        key = ast.Subscript(value=value, slice=ast.Constant(node.attr), ctx=node.ctx)
        return ast.copy_location(key, node)

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if isinstance(node.ctx, ast.Load) and isinstance(node.slice, ast.Constant):
            local = self._event_field(node.value, node.slice.value)
            if local is not None:
                return ast.copy_location(local, node)
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        if isinstance(func, ast.Attribute):
            if func.attr.startswith("_"):
                raise self.refuse(func, f"the method {func.attr!r}")
            if func.attr in ("keys", "items") and not node.args and not node.keywords:
                # x.keys() -> _view(x, "keys"): see ordered_view.
                view = ast.Call(func=ast.Name(id="_view", ctx=ast.Load()),
                                args=[self.visit(func.value), ast.Constant(func.attr)], keywords=[])
                return ast.copy_location(view, node)
            method = ast.Attribute(value=self.visit(func.value), attr=func.attr, ctx=ast.Load())
            node.func = ast.copy_location(method, func)
        else:
            node.func = self.visit(func)
        node.args = [self.visit(arg) for arg in node.args]
        node.keywords = [self.visit(keyword) for keyword in node.keywords]
        return node


@dataclass
class Clause:
    pattern: str | None
    body: list[ast.stmt]


@dataclass
class Analysis:
    own_names: set[str] = field(default_factory=set)
    event_fields: set[str] = field(default_factory=set)
    whole_event: bool = False
    uses_data: bool = False


def parse_clause(option: str, code: str, analysis: Analysis, *, expression: bool) -> Any:
    """The rewritten clause: a list of statements, or with ``expression`` one expression."""
    code = code.strip()  # so that error columns point into the text that is shown
    try:
        tree = ast.parse(code.strip(), mode="eval" if expression else "exec")
    except SyntaxError as exc:
        raise FoldSyntaxError(f"{option} {code!r}: {exc.msg} (column {exc.offset})") from None
    rewriter = _Rewriter(option, code)
    tree = rewriter.visit(tree)
    analysis.own_names |= _check_names(tree, rewriter) - LOOP_NAMES
    analysis.event_fields |= rewriter.event_fields
    analysis.whole_event |= rewriter.whole_event
    analysis.uses_data |= rewriter.uses_data or rewriter.whole_event
    if expression:
        assert isinstance(tree, ast.Expression)
        return tree.body
    assert isinstance(tree, ast.Module)
    if not tree.body:
        raise FoldSyntaxError(f"{option} is empty")
    return tree.body


LOOP_NAMES = {"s", "e", "d", "_view", "_e_seq", "_e_ts", "_e_type", "_e_stream", "_e_version", "_e_id", "_e_meta"}


def _check_names(tree: ast.AST, rewriter: _Rewriter) -> set[str]:
    """Every name a clause reads must be one of the fold's, a pure builtin, or its own; returns its own."""
    own = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load)}
    own |= {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)}
    offered = own | LOOP_NAMES | set(SAFE_BUILTINS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in offered:
            raise rewriter.refuse(
                node, f"the name {node.id!r} (folds have s, e, d and pure builtins such as len, sum, max)"
            )
    return own


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
    repeats. Anything but a dict keeps its own method.
    """
    if type(value) is dict:
        return _OrderedKeys(value) if method == "keys" else _OrderedItems(value)
    return getattr(value, method)()


def new_state_rule(statements: list[ast.stmt]) -> list[ast.stmt]:
    """An expression statement's value becomes the state unless it is None."""
    result: list[ast.stmt] = []
    for statement in statements:
        if isinstance(statement, ast.Expr):
            assign = ast.parse("_v = None\nif _v is not None: s = _v").body
            assign[0].value = statement.value  # type: ignore[attr-defined]
            for node in assign:
                ast.copy_location(node, statement)
                ast.fix_missing_locations(node)
            result.extend(assign)
        else:
            result.append(statement)
    return result



def event_prelude(analysis: Analysis) -> list[str]:
    """Lines that give a clause the parts of the event it reads, and no more."""
    lines = []
    if analysis.uses_data:
        lines.append("d = _unpack(_e_data)")
    if "ts" in analysis.event_fields or analysis.whole_event:
        lines.append("_e_ts = _format_ts(_ts)")
    if "meta" in analysis.event_fields or analysis.whole_event:
        lines.append("_e_meta = _e_meta or {}")
    if analysis.whole_event:
        lines.append(
            "e = {'seq': _e_seq, 'ts': _e_ts, 'type': _e_type, 'stream': _e_stream, 'version': _e_version,"
            " 'id': _e_id, 'data': d, 'meta': _e_meta}"
        )
    return lines
