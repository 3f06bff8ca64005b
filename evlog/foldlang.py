"""The fold language: checking and rewriting the clauses users write.

``--fold``, ``--on``, ``--where``, ``--by`` and fold-language ``--fold-file``
blocks take short Python statements or expressions over ``s`` (the state),
``e`` (the event) and ``d`` (its data). A stored projection carries such code
from whoever wrote the log, so the language is defined by what it allows,
never by a list of what it refuses:

* **Syntax** is an allowlist of node types (:data:`ALLOWED_NODES`). Decided
  one by one:

  - ``match`` is allowed with literal, sequence, mapping, ``|`` and capture
    patterns; class patterns (``case C(x=...)``) are refused, since they call
    ``getattr`` with any name, and so are value patterns other than literals
    (a dotted name in a pattern is a real attribute read).
  - ``try``/``except``/``else`` are allowed, ``finally`` is not (a
    ``continue`` or ``break`` in it swallows any exception, the fold's time
    limit included). ``except`` names exception classes offered as builtins;
    a bare ``except:`` is refused. The name bound by ``except E as x`` holds
    an exception object: it can be passed to ``str()`` or raised again, and
    nothing else reaches into it (its attributes are key access, its methods
    are not those of a JSON value). Every handler first lets evlog's own
    errors (the time limit, a refused call) through.
  - ``lambda`` is allowed (``sorted(s, key=lambda v: -v)``); its arguments
    are names checked like any other, its defaults expressions like any other.
  - list and dict comprehensions and generator expressions are allowed (set
    comprehensions are not: a set's order depends on the process's hashing).
  - ``:=`` is allowed, binding a checked name.
  - f-strings are allowed, with ``!r``/``!s``/``!a`` and nested format specs:
    they call ``format(value, spec)``, which for the values a fold can hold
    parses a spec and never follows an attribute. ``str.format`` and
    ``format_map`` are not methods a fold can call (their field names walk
    attributes: ``"{0.__self__}"``).

* **Names.** Every name a clause reads is ``s``/``state``, ``e``/``event``,
  ``d``, an offered builtin, or a name the clause itself binds. Every name
  bound, whatever binds it (assignment, ``for``, comprehension, ``:=``,
  ``except ... as``, a pattern capture, a lambda argument, ``del``), must not
  start with ``_`` (the generated loop's names all do) nor be an offered
  builtin; only a plain assignment (``s = ...``, ``s += ...``) may rebind
  ``s``, ``e`` or ``d``.

* **Attributes.** ``x.key`` is key access (``x["key"]``), as it always was.
  A called attribute ``x.m(...)`` is a method call only if ``m`` is in
  :data:`evlog.foldcalls.METHODS` for the receiver's type, one of the JSON value types
  (dict, list, str, int, float, bool, None, tuple). Where the receiver's type
  is known when the clause is compiled (a literal, or ``s``/``d``/``e`` that
  no clause rebinds: values decoded from the log) the call is direct; where
  it is not, the call goes through a per-method table keyed by the
  receiver's exact type (:mod:`evlog.foldcalls`), which refuses any other type
  (a builtin, a type, a function, an iterator, an exception).

* **Builtins** are pure functions and the constructors of JSON values
  (:data:`evlog.foldcalls.SAFE_BUILTINS`): none returns a type, a module, a frame or a
  function's internals. ``map``, ``filter``, ``zip`` and friends return
  iterators, which a fold can only iterate.

Rewriting for the generated loop of :mod:`evlog.fold`: attribute access
becomes key access, ``e.type`` and friends become loop locals, unknown
receivers' calls go through their method table, and an expression
statement's value becomes the new state. What a clause reads is recorded so
that the loop decodes only the parts of an event in use.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError
from .foldcalls import EXCEPTIONS, METHOD_NAMES, SAFE_BUILTINS

EVENT_FIELDS = ("seq", "ts", "type", "stream", "version", "id", "data", "meta")
ALIASES = {"state": "s", "event": "e"}
FOLD_NAMES = ("s", "e", "d")
ALLOWED_NODES: frozenset[type[ast.AST]] = frozenset({
    ast.Module, ast.Expression, ast.Expr, ast.Assign, ast.AugAssign, ast.Delete, ast.Pass, ast.Break,
    ast.Continue, ast.If, ast.For, ast.While, ast.Raise, ast.Assert, ast.Try, ast.ExceptHandler,
    ast.Match, ast.match_case, ast.MatchValue, ast.MatchSingleton, ast.MatchSequence, ast.MatchMapping,
    ast.MatchStar, ast.MatchAs, ast.MatchOr,
    ast.BoolOp, ast.NamedExpr, ast.BinOp, ast.UnaryOp, ast.Lambda, ast.IfExp, ast.Dict, ast.List,
    ast.Tuple, ast.ListComp, ast.DictComp, ast.GeneratorExp, ast.comprehension, ast.Compare, ast.Call,
    ast.keyword, ast.arguments, ast.arg, ast.JoinedStr, ast.FormattedValue, ast.Constant, ast.Attribute,
    ast.Subscript, ast.Starred, ast.Name, ast.Slice,
    ast.Load, ast.Store, ast.Del,
    ast.And, ast.Or, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift,
    ast.RShift, ast.BitOr, ast.BitXor, ast.BitAnd, ast.MatMult, ast.Invert, ast.Not, ast.UAdd, ast.USub,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Is, ast.IsNot, ast.In, ast.NotIn,
})
"""Every syntax node a clause may contain; anything else is refused by name."""

_WHAT: dict[type[ast.AST], str] = {
    ast.Import: "'import'", ast.ImportFrom: "'import'", ast.FunctionDef: "'def'",
    ast.AsyncFunctionDef: "'def'", ast.ClassDef: "'class'", ast.Global: "'global'",
    ast.Nonlocal: "'nonlocal'", ast.Yield: "'yield'", ast.YieldFrom: "'yield'", ast.Await: "'await'",
    ast.AsyncFor: "'async for'", ast.AsyncWith: "'async with'", ast.With: "'with'",
    ast.Return: "'return'", ast.AnnAssign: "an annotation",
    ast.MatchClass: "a class pattern in 'case' (it reads attributes by name)",
    ast.Set: "a set (use a list, a tuple or the keys of an object)",
    ast.SetComp: "a set (use a list, a tuple or the keys of an object)",
}

LOOP_NAMES = {"s", "e", "d", "_e_seq", "_e_ts", "_e_type", "_e_stream", "_e_version", "_e_id", "_e_meta"}


class FoldSyntaxError(UsageError):
    """A fold clause is not valid or uses something folds do not offer."""


# -- compiling clauses ---------------------------------------------------------


def _literal_pattern_value(node: ast.expr) -> bool:
    """Whether a ``case`` value pattern is a literal (a dotted name would be an attribute read)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _literal_pattern_value(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        return _literal_pattern_value(node.left) and _literal_pattern_value(node.right)
    return False


class _Rewriter(ast.NodeTransformer):
    """Checks one clause and rewrites it to the loop's local names."""

    def __init__(self, option: str, code: str, fixed: frozenset[str]) -> None:
        self.option = option
        self.code = code
        self.fixed = fixed  # s, e, d where no clause rebinds them: values decoded from the log
        self.event_fields: set[str] = set()
        self.whole_event = False
        self.uses_data = False
        self.uses_state = False
        self.own: set[str] = set()
        self.methods: set[str] = set()
        self.data_keys: set[str] = set()
        self.state_keys: set[str] = set()
        self.handlers = 0

    def refuse(self, node: ast.AST, what: str, *, allowed: bool = False, hint: str = "") -> FoldSyntaxError:
        column = getattr(node, "col_offset", None)
        line = getattr(node, "lineno", None)
        pointer = ""
        if "\n" not in self.code:
            shown = f"{self.option} {self.code!r}"
            if column is not None:
                pointer = f"\n  {self.code}\n  {' ' * column}^"
        else:
            shown = f"{self.option}, line {line}" if line is not None else self.option
        suffix = "" if allowed else " is not allowed in a fold"
        return FoldSyntaxError(f"{shown}: {what}{suffix}{'; ' + hint if hint else ''}{pointer}")

    # -- names ---------------------------------------------------------------

    def check_binding(self, name: str, node: ast.AST, *, assignment: bool) -> str:
        """A name some construct binds: never private, never a builtin; s/e/d only by assignment."""
        target = ALIASES.get(name, name)
        if target.startswith("_"):
            raise self.refuse(node, f"the name {name!r} (names starting with '_')")
        if target in SAFE_BUILTINS:
            raise self.refuse(node, f"rebinding the builtin {name!r}")
        if target in FOLD_NAMES and not assignment:
            raise self.refuse(node, f"binding {name!r} here (rebind {name} only with {name} = ...)")
        if target not in FOLD_NAMES:
            self.own.add(target)
        return target

    def collect_bindings(self, tree: ast.AST) -> None:
        """Check every name the clause binds, whatever binds it; remember its own."""
        assigned: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for inner in ast.walk(target):
                        if isinstance(inner, ast.Name):
                            assigned.add(id(inner))
                        elif isinstance(inner, (ast.Subscript, ast.Attribute)):
                            break
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                self.check_binding(node.id, node, assignment=id(node) in assigned)
            elif isinstance(node, ast.arg):
                self.check_binding(node.arg, node, assignment=False)
            elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name is not None:
                self.check_binding(node.name, node, assignment=False)
            elif isinstance(node, ast.MatchMapping) and node.rest is not None:
                self.check_binding(node.rest, node, assignment=False)

    def check_loops(self, statements: list[ast.stmt], in_loop: bool) -> None:
        """``break``/``continue`` only inside the clause's own loops (never the generated one)."""
        for statement in statements:
            if isinstance(statement, (ast.Break, ast.Continue)) and not in_loop:
                word = "break" if isinstance(statement, ast.Break) else "continue"
                raise self.refuse(statement, f"'{word}' outside a loop of the fold's own")
            for name, value in ast.iter_fields(statement):
                if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                    inside = in_loop or (isinstance(statement, (ast.For, ast.While)) and name == "body")
                    self.check_loops(value, inside)
                elif isinstance(value, list):
                    for item in value:
                        if isinstance(item, (ast.ExceptHandler, ast.match_case)):
                            self.check_loops(item.body, in_loop)

    def unknown_name(self, node: ast.Name) -> FoldSyntaxError:
        known = [*FOLD_NAMES, *ALIASES, *SAFE_BUILTINS, *sorted(self.own)]
        close = difflib.get_close_matches(node.id, [*known, *EVENT_FIELDS], n=1, cutoff=0.7)
        hint = "folds have s (state), e (event), d (its data) and pure builtins such as len, sum, max"
        if close:
            name = close[0]
            if name in EVENT_FIELDS and name not in known:
                name = "stream" if self.option == "--by" and name == "stream" else f"e.{name}"
            hint = f"did you mean {name!r}?"
        return self.refuse(node, f"unknown name {node.id!r}; {hint}", allowed=True)

    # -- visiting ------------------------------------------------------------

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if type(node) not in ALLOWED_NODES:
            raise self.refuse(node, _WHAT.get(type(node), f"'{type(node).__name__}'"))
        return super().generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, bytes) or node.value is Ellipsis:
            raise self.refuse(node, "a bytes or '...' literal (JSON has neither)")
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        name = ALIASES.get(node.id, node.id)
        if name.startswith("_"):
            raise self.refuse(node, f"the name {node.id!r} (names starting with '_')")
        if isinstance(node.ctx, ast.Load) and name not in FOLD_NAMES and name not in SAFE_BUILTINS \
                and name not in self.own:
            raise self.unknown_name(node)
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

    def _note_key(self, receiver: ast.AST, key: object) -> None:
        """Remember constant keys read from d and s, to tell which one lacked a key when a fold fails."""
        if isinstance(key, str) and isinstance(receiver, ast.Name):
            name = ALIASES.get(receiver.id, receiver.id)
            if name == "d":
                self.data_keys.add(key)
            elif name == "s":
                self.state_keys.add(key)
        elif isinstance(key, str) and isinstance(receiver, ast.Attribute) and receiver.attr == "data" \
                and isinstance(receiver.value, ast.Name) and ALIASES.get(receiver.value.id, receiver.value.id) == "e":
            self.data_keys.add(key)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if node.attr.startswith("__"):
            raise self.refuse(node, f"the attribute {node.attr!r}")
        if isinstance(node.ctx, ast.Load):
            local = self._event_field(node.value, node.attr)
            if local is not None:
                return ast.copy_location(local, node)
        self._note_key(node.value, node.attr)
        value = self.visit(node.value)
        key = ast.Subscript(value=value, slice=ast.Constant(node.attr), ctx=node.ctx)
        return ast.copy_location(key, node)

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if isinstance(node.slice, ast.Constant):
            if isinstance(node.ctx, ast.Load):
                local = self._event_field(node.value, node.slice.value)
                if local is not None:
                    return ast.copy_location(local, node)
            self._note_key(node.value, node.slice.value)
        return self.generic_visit(node)

    def visit_MatchValue(self, node: ast.MatchValue) -> ast.AST:
        if not _literal_pattern_value(node.value):
            raise self.refuse(node, "a 'case' value that is not a literal (a dotted name reads an attribute)")
        return node

    def visit_MatchMapping(self, node: ast.MatchMapping) -> ast.AST:
        if not all(_literal_pattern_value(key) for key in node.keys):
            raise self.refuse(node, "a 'case' key that is not a literal (a dotted name reads an attribute)")
        return self.generic_visit(node)

    def visit_Try(self, node: ast.Try) -> ast.AST:
        if node.finalbody:
            raise self.refuse(node.finalbody[0], "'finally' (a break or continue in it would swallow any error)")
        return self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        caught = node.type
        names = caught.elts if isinstance(caught, ast.Tuple) else [caught] if caught is not None else []
        if caught is None or not all(isinstance(name, ast.Name) and name.id in EXCEPTIONS for name in names):
            raise self.refuse(node, f"this 'except' (name one or more of {', '.join(EXCEPTIONS)})")
        node = self.generic_visit(node)  # type: ignore[assignment]
        assert isinstance(node, ast.ExceptHandler)
        # Every handler lets evlog's own errors through first (the time limit, a refused call).
        if node.name is None:
            self.handlers += 1
            node.name = f"_c{self.handlers}"
        guard = ast.Expr(ast.Call(func=ast.Name(id="_reraise_own", ctx=ast.Load()),
                                  args=[ast.Name(id=node.name, ctx=ast.Load())], keywords=[]))
        node.body.insert(0, ast.copy_location(guard, node))
        return node

    def _known_json(self, node: ast.expr) -> bool:
        """Whether an expression's value is, whatever happens at run time, a JSON (or decoded) value."""
        if isinstance(node, ast.Name):
            return ALIASES.get(node.id, node.id) in self.fixed
        if isinstance(node, ast.Constant):
            return not isinstance(node.value, bytes)
        return isinstance(node, (ast.Dict, ast.List, ast.Tuple, ast.ListComp, ast.DictComp, ast.JoinedStr))

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        args = [self.visit(arg) for arg in node.args]
        keywords = [self.visit(keyword) for keyword in node.keywords]
        if not isinstance(func, ast.Attribute):
            return ast.copy_location(ast.Call(func=self.visit(func), args=args, keywords=keywords), node)
        method = func.attr
        if method.startswith("_"):
            raise self.refuse(func, f"the method {method!r}")
        if isinstance(func.value, ast.Name) and func.value.id == "dict" and method == "fromkeys":
            call = ast.Call(func=ast.Name(id="_dict_fromkeys", ctx=ast.Load()), args=args, keywords=keywords)
            return ast.copy_location(call, node)
        if method not in METHOD_NAMES:
            formats = method in ("format", "format_map")
            hint = "its fields read attributes by name: use an f-string" if formats else \
                "folds call only the methods of JSON values, such as get, setdefault, append, split"
            raise self.refuse(func, f"the method {method!r}", hint=hint)
        if method == "get" and args and isinstance(args[0], ast.Constant):
            self._note_key(func.value, args[0].value)
        receiver = self.visit(func.value)
        if method in ("keys", "items") and not args and not keywords:
            # x.keys() -> _view(x, "keys"): see ordered_view.
            view = ast.Call(func=ast.Name(id="_view", ctx=ast.Load()), args=[receiver, ast.Constant(method)],
                            keywords=[])
            return ast.copy_location(view, node)
        if self._known_json(func.value):
            attribute = ast.copy_location(ast.Attribute(value=receiver, attr=method, ctx=ast.Load()), func)
            return ast.copy_location(ast.Call(func=attribute, args=args, keywords=keywords), node)
        if not isinstance(receiver, ast.Name):
            # A receiver with possible side effects is evaluated once: _bound(x, NAME)(...).
            bound = ast.Call(func=ast.Name(id="_bound", ctx=ast.Load()), args=[receiver, ast.Constant(method)],
                             keywords=[])
            return ast.copy_location(ast.Call(func=bound, args=args, keywords=keywords), node)
        # Unknown receiver: _m_NAME[_type(x)](x, ...) refuses anything but a JSON value.
        self.methods.add(method)
        table = ast.Subscript(
            value=ast.Name(id=f"_m_{method}", ctx=ast.Load()),
            slice=ast.Call(func=ast.Name(id="_type", ctx=ast.Load()), args=[receiver], keywords=[]),
            ctx=ast.Load(),
        )
        return ast.copy_location(ast.Call(func=table, args=[receiver, *args], keywords=keywords), node)


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
    methods: set[str] = field(default_factory=set)
    data_keys: set[str] = field(default_factory=set)
    state_keys: set[str] = field(default_factory=set)
    fixed: frozenset[str] = frozenset(FOLD_NAMES)


def rebound(codes: Iterable[tuple[str, bool]]) -> set[str]:
    """Of s, e and d, those some clause may rebind (``(code, is_fold_clause)`` pairs; unparsable code is skipped).

    An expression statement of a fold clause rebinds ``s`` (its value becomes the state).
    """
    names: set[str] = set()
    for code, is_clause in codes:
        try:
            tree = ast.parse(code.strip(), mode="exec" if is_clause else "eval")
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                names.add(ALIASES.get(node.id, node.id))
            elif isinstance(node, ast.Expr) and is_clause:
                names.add("s")
    return names & set(FOLD_NAMES)


def parse_clause(option: str, code: str, analysis: Analysis, *, expression: bool) -> Any:
    """The rewritten clause: a list of statements, or with ``expression`` one expression."""
    code = code.strip()  # so that error columns point into the text that is shown
    try:
        tree = ast.parse(code, mode="eval" if expression else "exec")
    except SyntaxError as exc:
        where = f"line {exc.lineno}, column {exc.offset}" if "\n" in code else f"column {exc.offset}"
        shown = f"{option} {code!r}" if "\n" not in code else option
        raise FoldSyntaxError(f"{shown}: {exc.msg} ({where})") from None
    rewriter = _Rewriter(option, code, analysis.fixed)
    rewriter.collect_bindings(tree)
    if isinstance(tree, ast.Module):
        rewriter.check_loops(tree.body, in_loop=False)
    tree = rewriter.visit(tree)
    analysis.own_names |= rewriter.own
    analysis.event_fields |= rewriter.event_fields
    analysis.whole_event |= rewriter.whole_event
    analysis.uses_data |= rewriter.uses_data or rewriter.whole_event
    analysis.methods |= rewriter.methods
    analysis.data_keys |= rewriter.data_keys
    analysis.state_keys |= rewriter.state_keys
    if expression:
        assert isinstance(tree, ast.Expression)
        return tree.body
    assert isinstance(tree, ast.Module)
    if not tree.body:
        raise FoldSyntaxError(f"{option} is empty")
    return tree.body


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
        # Outside the clauses' try: a payload that does not decode is damage, not a fold failure.
        lines.append("try:\n d = _unpack(_e_data, ext_hook=_no_ext, max_bin_len=0)\n"
                     "except Exception as _x:\n _damaged(_x, _e_seq, 'the payload')")
    if "ts" in analysis.event_fields or analysis.whole_event:
        # Outside the clauses' try too: a ts that is not an integer is damage, not a fold failure.
        lines.append("try:\n _e_ts = _format_ts(_ts)\n"
                     "except Exception as _x:\n _damaged(_x, _e_seq, 'its ts')")
    if "meta" in analysis.event_fields or analysis.whole_event:
        lines.append("_e_meta = _e_meta or {}")
    if analysis.whole_event:
        lines.append(
            "e = {'seq': _e_seq, 'ts': _e_ts, 'type': _e_type, 'stream': _e_stream, 'version': _e_version,"
            " 'id': _e_id, 'data': d, 'meta': _e_meta}"
        )
    return lines
