"""Folds: a definition (:class:`FoldSpec`) compiled once into one loop over the log.

The generated function runs the whole fold: decode each record's envelope,
filter, pick the state for the event's key, apply every clause in order (as
checked and rewritten by :mod:`evlog.foldlang`), and move on. Clauses are
never ``eval``'d per event, and the loop decodes only what the clauses read:
a fold that never reads ``d`` or ``e.data`` never decodes a payload, and one
made only of ``--on`` clauses skips other types before decoding anything.

Folds are deterministic (no time, randomness, I/O or sets), which is what
makes snapshots valid, and contained (see :mod:`evlog.foldlang`), which is
what makes a projection stored in a log from someone else safe to run. The
one exception is a Python ``--fold-file`` (functions ``init``/``apply``/
``on_<type>``): the user's own code from the user's own disk, run by
``replay`` only, never stored in a log and never given snapshots.

Bytes read from the log are decoded inside the loop, outside the clauses'
``try``: a record or payload that does not decode as evlog wrote it is a
:class:`~evlog.errors.DamagedLogError` naming its seq, never a fold failure.
A fold's run time can be bounded (:func:`time_limit`) at no cost per event.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import orjson

from .errors import BadInputError, DamagedLogError, EvlogError, UsageError
from .foldcalls import RefusedCall, builtins_namespace
from .foldlang import (
    FOLD_NAMES,
    Analysis,
    Clause,
    FoldSyntaxError,
    event_prelude,
    new_state_rule,
    parse_clause,
    rebound,
)
from .foldspec import FOLD_ENGINE, FoldSpec, PythonFoldFileError, load_fold_file, parse_init

__all__ = [
    "FOLD_ENGINE", "CompiledFold", "FoldError", "FoldSpec", "FoldTimeout", "PythonFoldFileError",
    "RefusedCallError", "check_serialisable", "compile_where", "load_fold_file", "parse_init", "time_limit",
]


class FoldError(EvlogError):
    """A fold failed on an event (its seq, type and stream are named)."""

    exit_code = 65


class FoldTimeout(FoldError):
    """A fold ran past its time limit (``--fold-timeout``); ``seq`` is the event it had reached."""

    def __init__(self, seconds: float, seq: int | None) -> None:
        self.seconds = seconds
        self.seq = seq
        reached = f" at seq {seq}" if seq is not None else ""
        super().__init__(
            f"the fold was stopped after {seconds:g} s{reached}; a fold that needs longer: raise "
            f"--fold-timeout (e.g. --fold-timeout {max(seconds * 4, 60):g}, or 0 for no limit)"
        )


class RefusedCallError(UsageError):
    """A fold called a method on a value that is not a JSON value, or not one of its type's fold methods."""



_GLOB = re.compile(r"[*?\[]")


class _AnyGlobCache(dict[str, bool]):
    """type -> whether any of several globs matches it, computed once per type."""

    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.regex = re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns))

    def __missing__(self, key: str) -> bool:
        matched = self[key] = self.regex.match(key) is not None
        return matched


class _GlobCache(dict[str, bool]):
    """type -> whether it matches a glob, computed once per type."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.regex = re.compile(fnmatch.translate(pattern))

    def __missing__(self, key: str) -> bool:
        matched = self[key] = self.regex.match(key) is not None
        return matched


# -- generating the loop ------------------------------------------------------

_LOOP = '''
def _fold(_chunks, _states, _init, _unpack, _format_ts, _on, _types, _streams, _fail, _bad_format,
          _snapshot, _snapshot_every, _last_snapshot, _relevant, _no_ext, _damaged):
    {single_state}
    _prev_ts = 0
    for _seqs, _values in _chunks:
        # A chunk is a run of seqs from a first one, or the seqs of a stream.
        for _e_seq, _v in (enumerate(_values, _seqs) if isinstance(_seqs, int) else zip(_seqs, _values)):
            # SNAPSHOT: (generated only when snapshots are saved)
            # The record's fields are checked where they are used: a field of the wrong
            # kind fails the filters inside this try (free unless it raises) as damage.
            try:
                _f, _ts, _e_version, _e_type, _e_stream, _e_id, _e_meta, _e_data = _unpack(
                    _v[:-16], use_list=False, ext_hook=_no_ext)
                if _f != 1:
                    _bad_format(_e_seq, _f)
                _prev_ts = _ts
                # FILTERS
            except Exception as _x:
                _damaged(_x, _e_seq, "the record")
    if _snapshot_every and _prev_ts and _e_seq - _last_snapshot >= _snapshot_every:
        {save_single}_snapshot(_e_seq, _prev_ts, _states)
    return _states
'''


class CompiledFold:
    """A fold definition compiled into one loop function."""

    def __init__(self, spec: FoldSpec, *, scan: bool = False, snapshots: bool = True) -> None:
        self.spec = spec
        self.scan = scan
        self.snapshots = snapshots
        if spec.fold_file is not None and spec.clauses:
            raise UsageError("a Python --fold-file is an alternative to --fold and --on: give one or the other")
        # s, e and d that no clause rebinds hold values decoded from the log (or --init):
        # their method calls need no check at run time.
        codes = [(code, True) for _, code in spec.clauses]
        codes += [(code, False) for code in (spec.where, spec.by) if code is not None]
        changed = rebound(codes) | ({"s"} if spec.fold_file is not None else set())  # apply() may return anything
        analysis = Analysis(fixed=frozenset(FOLD_NAMES) - changed)
        clauses = [
            Clause(pattern, parse_clause("--fold" if pattern is None else f"--on {pattern}", code, analysis,
                                    expression=False))
            for pattern, code in spec.clauses
        ]
        where = parse_clause("--where", spec.where, analysis, expression=True) if spec.where else None
        by = None
        if spec.by is not None:
            by_code = "e.stream" if spec.by == "stream" else spec.by
            by = parse_clause("--by", by_code, analysis, expression=True)
        self.file_handlers = _FileHandlers(spec.fold_file) if spec.fold_file is not None else None
        if self.file_handlers is not None:
            analysis.whole_event = analysis.uses_data = True
        self.analysis = analysis
        self.patterns = [_GlobCache(c.pattern) if c.pattern is not None else None for c in clauses]
        # With only --on clauses, an event of a type none of them names changes
        # no state: it is skipped before its payload is decoded. (A --by stream
        # key still gets its initial state, as it would from a full run.)
        self.relevant = (
            _AnyGlobCache([c.pattern for c in clauses if c.pattern is not None])
            if clauses and all(c.pattern is not None for c in clauses) and where is None and not scan
            and self.file_handlers is None and spec.by in (None, "stream")
            else None
        )
        self.function = self._generate(clauses, where, by)

    def _generate(self, clauses: list[Clause], where: ast.expr | None, by: ast.expr | None) -> Callable[..., Any]:
        analysis = self.analysis
        module = ast.parse(_LOOP.format(
            single_state="s = _states.get(None, _init())" if by is None else "pass",
            save_single="_states[None] = s; " if by is None else "",
        ))
        function = module.body[0]
        assert isinstance(function, ast.FunctionDef)
        outer = function.body[2]
        assert isinstance(outer, ast.For)
        inner = outer.body[0]
        assert isinstance(inner, ast.For)
        prelude: list[ast.stmt] = []
        code: list[str] = []
        if self.snapshots:
            # Snapshots are taken here, before the event, of the state after the one
            # before: every event passes this point, also those a filter skips below.
            inner.body[:0] = ast.parse(
                "if _prev_ts and _e_seq - 1 - _last_snapshot >= _snapshot_every:\n"
                + (" _states[None] = s\n" if by is None else "")
                + " _snapshot(_e_seq - 1, _prev_ts, _states)\n _last_snapshot = _e_seq - 1"
            ).body
        # Filters first: cheapest, and skipping an event skips its decoding.
        if self.spec.types:
            code.append("if not _types[_e_type]: continue")
        if self.spec.streams:
            code.append("if _streams is not None and not _streams[_e_stream]: continue")
        if self.relevant is not None:
            code.append(
                "if not _relevant[_e_type]:\n"
                + (" if _e_stream is not None and _e_stream not in _states: _states[_e_stream] = _init()\n"
                   if self.spec.by == "stream" else "")
                + " continue"
            )
        envelope = inner.body[-1]
        assert isinstance(envelope, ast.Try)
        for line in code:
            envelope.body.extend(ast.parse(line).body)
        for line in event_prelude(analysis):
            prelude.extend(ast.parse(line).body)
        # --where, --by and the clauses run inside one try: any failure of the
        # user's code is reported with the event it failed on.
        body: list[ast.stmt] = []
        # A clause's own variables start every event unset (None): values kept
        # from the previous event would be state that snapshots do not hold.
        for name in sorted(analysis.own_names):
            body.extend(ast.parse(f"{name} = None").body)
        if where is not None:
            test = ast.parse("if not _w: continue").body[0]
            assert isinstance(test, ast.If)
            test.test = ast.UnaryOp(op=ast.Not(), operand=where)
            body.append(test)
        statements_of = [new_state_rule(clause.body) for clause in clauses]
        # Clauses that only mutate the state (s.balance += ...) leave the dict in
        # _states as it is: no store back per event is needed.
        rebinds = self.file_handlers is not None or any(
            isinstance(node, ast.Name) and node.id == "s" and not isinstance(node.ctx, ast.Load)
            for statements in statements_of for statement in statements for node in ast.walk(statement)
        )
        if by is not None:
            pick = ast.parse(
                "_k = None\nif _k is None: continue\ns = _states.get(_k)\n"
                + ("if s is None: s = _init()" if rebinds else "if s is None: s = _states[_k] = _init()")
            ).body
            pick[0].value = by  # type: ignore[attr-defined]
            body.extend(pick)
        # Clauses for different plain type names exclude each other (an event has one
        # type, and fold code cannot rebind _e_type): they chain as if/elif, so an event
        # is compared only until its clause is found.
        chain_tail: ast.If | None = None  # the last test of a chain of plain type names
        chained: set[str] = set()
        for index, clause in enumerate(clauses):
            statements = statements_of[index]
            if clause.pattern is not None:
                # A plain type name is compared directly; a glob goes through a cache.
                exact = not _GLOB.search(clause.pattern)
                condition = f"_e_type == {clause.pattern!r}" if exact else f"_on[{index}][_e_type]"
                guard = ast.parse(f"if {condition}: pass").body[0]
                assert isinstance(guard, ast.If)
                guard.body = statements
                if exact and chain_tail is not None and clause.pattern not in chained:
                    chain_tail.orelse = [guard]
                else:
                    body.append(guard)
                    chained = set()
                if exact:
                    chain_tail = guard
                    chained.add(clause.pattern)
                else:
                    chain_tail, chained = None, set()
            else:
                body.extend(statements)
                chain_tail, chained = None, set()
        if self.file_handlers is not None:
            body.extend(ast.parse("_v = _file(_e_type, s, e)\nif _v is not None: s = _v").body)
        failing = "_fail(_x, _e_seq, _e_type, _e_stream, d)" if analysis.uses_data else \
            "_fail(_x, _e_seq, _e_type, _e_stream)"
        guarded = ast.parse(f"try:\n pass\nexcept Exception as _x:\n {failing}").body[0]
        assert isinstance(guarded, ast.Try)
        guarded.body = body or [ast.Pass()]
        after: list[ast.stmt] = []
        if by is not None and rebinds:
            after.extend(ast.parse("_states[_k] = s").body)
        if self.scan:
            after.extend(ast.parse(
                "yield (_e_seq, _ts, _k, s)" if by is not None else "yield (_e_seq, _ts, None, s)"
            ).body)
        inner.body = [*inner.body, *prelude, guarded, *after]
        end = ast.parse("_states[None] = s").body if by is None else []
        tail = function.body[3:]
        if not self.snapshots:
            tail = tail[1:]  # the final snapshot check
        function.body = [*function.body[:2], outer, *end, *tail]
        if self.scan:
            function.body[-1] = ast.Return(value=None)
        ast.fix_missing_locations(module)
        namespace = builtins_namespace()
        if self.file_handlers is not None:
            namespace["_file"] = self.file_handlers
        exec(_quiet_compile(module, "<fold>"), namespace)  # the generated loop, compiled once
        return namespace["_fold"]  # type: ignore[no-any-return]

    def run(
        self,
        chunks: Iterator[tuple[int | Iterable[int], list[bytes]]],
        states: dict[Any, Any],
        *,
        types: Callable[[str | None], bool] | None,
        streams: Callable[[str | None], bool] | None,
        snapshot: Callable[[int, int, dict[Any, Any]], None] | None = None,
        snapshot_every: int = 0,
        start_seq: int = 0,
    ) -> Any:
        """Fold the chunks into ``states`` (key -> state; key None without ``--by``)."""
        from .timefmt import format_ts

        init_bytes = orjson.dumps(self.spec.init)
        init = (lambda: orjson.loads(init_bytes)) if isinstance(self.spec.init, (dict, list)) else (
            lambda: self.spec.init
        )
        if self.file_handlers is not None and self.file_handlers.init is not None:
            init = _guarded_init(self.file_handlers.init)
        return self.function(
            chunks, states, init, msgpack.unpackb, format_ts, self.patterns,
            _PredicateCache(types) if types else None, _PredicateCache(streams) if streams else None,
            _failure_reporter(self.analysis), _bad_format, snapshot, snapshot_every, start_seq, self.relevant,
            _no_ext, _damaged,
        )


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Stop a fold that runs longer than ``seconds`` with :class:`FoldTimeout`.

    An interval timer (SIGALRM) costs nothing per event. It works in the main
    thread only (where Python runs signal handlers); elsewhere, and for None
    or 0, this does nothing. The clauses cannot catch the error: every
    ``except`` in a clause lets evlog's own errors through.
    """
    import signal
    import threading

    if not seconds or seconds <= 0 or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise FoldTimeout(seconds, _seq_reached(frame))

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def time_limited(seconds: float | None, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` run under :func:`time_limit`."""

    def limited(*args: Any, **kwargs: Any) -> Any:
        with time_limit(seconds):
            return function(*args, **kwargs)

    return limited


def _seq_reached(frame: Any) -> int | None:
    """The seq the generated loop was at, found on the stack the timer interrupted."""
    while frame is not None:
        if frame.f_code.co_name in ("_fold", "_where") and frame.f_code.co_filename in ("<fold>", "<where>"):
            seq = frame.f_locals.get("_e_seq")
            return seq if isinstance(seq, int) else None
        frame = frame.f_back
    return None


def limited_steps(steps: Iterator[Any], seconds: float | None) -> Iterator[Any]:
    """A scan's steps (``(seq, ...)`` tuples) under :func:`time_limit`, counted while they are consumed."""
    last: int | None = None
    with time_limit(seconds):
        try:
            for step in steps:
                last = step[0]
                yield step
        except FoldTimeout as exc:
            if exc.seq is None and last is not None:
                raise FoldTimeout(exc.seconds, last) from None
            raise


def compile_where(code: str) -> Callable[[int, tuple[Any, ...]], bool]:
    """``--where EXPR`` alone (no fold): a predicate over ``(seq, envelope)``."""
    analysis = Analysis()
    expression = parse_clause("--where", code, analysis, expression=True)
    assert isinstance(expression, ast.expr)
    lines = ["_f, _ts, _e_version, _e_type, _e_stream, _e_id, _e_meta, _e_data = _envelope"]
    lines.extend(event_prelude(analysis))
    body = "".join(f"    {part}\n" for line in lines for part in line.splitlines())
    module = ast.parse("def _where(_e_seq, _envelope):\n" + body
                       + "    try:\n        return bool(_x)\n"
                       "    except Exception as _exc:\n        _fail(_exc, _e_seq, _e_type, _e_stream, "
                       + ("d, " if analysis.uses_data else "") + "what='the filter')\n")
    function = module.body[0]
    assert isinstance(function, ast.FunctionDef)
    guarded = function.body[-1]
    assert isinstance(guarded, ast.Try) and isinstance(guarded.body[0], ast.Return)
    call = guarded.body[0].value
    assert isinstance(call, ast.Call)
    call.args = [expression]
    ast.fix_missing_locations(module)
    from .timefmt import format_ts

    namespace = builtins_namespace()
    namespace.update({"_unpack": msgpack.unpackb, "_format_ts": format_ts, "_fail": _failure_reporter(analysis),
                      "_no_ext": _no_ext, "_damaged": _damaged})
    exec(_quiet_compile(module, "<where>"), namespace)  # compiled once, called per event
    return namespace["_where"]  # type: ignore[no-any-return]


def _quiet_compile(module: ast.Module, name: str) -> Any:
    """Compile generated code without Python's warnings about it (``[1].x`` becomes ``[1]["x"]``):
    the fold reports its own failures, with the event, when it runs."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        return compile(module, name, "exec")


def _guarded_init(init: Callable[[], Any]) -> Callable[[], Any]:
    """A fold file's ``init()``, its failures reported like any fold failure."""

    def guarded() -> Any:
        try:
            return init()
        except Exception as exc:
            raise FoldError(f"--fold-file: init() failed: {type(exc).__name__}: {exc}") from exc

    return guarded


class _PredicateCache(dict[Any, bool]):
    def __init__(self, predicate: Callable[[Any], bool]) -> None:
        super().__init__()
        self.predicate = predicate

    def __missing__(self, key: Any) -> bool:
        result = self[key] = self.predicate(key)
        return result


class _FileHandlers:
    """The functions of a ``--fold-file``: ``init()``, ``apply(s, e)``, ``on_<type>(s, e)``."""

    def __init__(self, source: str) -> None:
        namespace: dict[str, Any] = {"__name__": "evlog_fold_file"}
        try:
            exec(compile(source, "<fold-file>", "exec"), namespace)  # the user's own reducer module
        except SyntaxError as exc:
            raise FoldSyntaxError(f"--fold-file: {exc.msg} at line {exc.lineno}") from None
        except Exception as exc:
            raise FoldError(f"--fold-file failed while loading: {type(exc).__name__}: {exc}") from exc
        self.namespace = namespace
        self.init: Callable[[], Any] | None = namespace.get("init")
        self.apply: Callable[[Any, Any], Any] | None = namespace.get("apply")
        self.by_type: dict[str, Callable[[Any, Any], Any] | None] = {}
        if self.apply is None and not any(name.startswith("on_") for name in namespace):
            raise FoldSyntaxError("--fold-file defines neither apply(state, event) nor on_<type>(state, event)")

    def __call__(self, etype: str, state: Any, event: Any) -> Any:
        handler = self.by_type.get(etype, _UNSET)
        if handler is _UNSET:
            handler = self.namespace.get("on_" + re.sub(r"\W", "_", etype)) or self.apply
            self.by_type[etype] = handler
        return None if handler is None else handler(state, event)


_UNSET: Any = object()


def _no_ext(code: int, data: bytes) -> Any:
    """msgpack's hook for ext types, which evlog never writes: called only for damaged bytes."""
    raise ValueError(f"an ext type ({code}), which evlog never writes")


def _damaged(exc: BaseException, seq: int, what: str) -> None:
    """A record or payload that does not decode, in the fold loop: damage at ``seq``."""
    if isinstance(exc, EvlogError):
        raise exc
    if isinstance(exc, TypeError) and "NoneType" in str(exc):
        raise DamagedLogError("there is no record at this seq", seq=seq) from None
    if isinstance(exc, MemoryError):
        raise exc
    reason = str(exc) or type(exc).__name__
    raise DamagedLogError(f"{what} does not decode as evlog writes it: {reason}", seq=seq) from None


def _failure_reporter(analysis: Analysis) -> Callable[..., None]:
    """The loop's ``_fail``, knowing which constant keys the clauses read from the data and the state."""

    def fail(exc: BaseException, seq: int, etype: str, stream: str | None, data: Any = None,
             what: str = "the fold") -> None:
        _fail(exc, seq, etype, stream, what, data=data, analysis=analysis)

    return fail


def _fail(exc: BaseException, seq: int, etype: str, stream: str | None, what: str = "the fold", *,
          data: Any = None, analysis: Analysis | None = None) -> None:
    if isinstance(exc, EvlogError):
        raise exc
    where = f"seq {seq} (type {etype!r}" + (f", stream {stream!r})" if stream is not None else ")")
    if isinstance(exc, RefusedCall):
        raise RefusedCallError(f"{what} at {where}: {exc}") from None
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    hint = ""
    if isinstance(exc, MemoryError):
        reason, hint = "out of memory", "; hint: the fold asked for more memory than there is; keep less in the state"
    elif isinstance(exc, KeyError) and exc.args:
        key = exc.args[0]
        reason = f"KeyError {key!r} (no such key)"
        from_data = analysis is not None and key in analysis.data_keys and (
            key not in analysis.state_keys or (isinstance(data, dict) and key not in data))
        if from_data and isinstance(data, dict) and isinstance(key, str):
            import difflib

            keys = [name for name in data if isinstance(name, str)]
            shown = ", ".join(repr(name) for name in keys[:20]) + (", ..." if len(keys) > 20 else "")
            close = difflib.get_close_matches(key, keys, n=1)
            reason = f"the event has no key {key!r} (its keys: {shown or 'none'})"
            if close:
                hint = f"; did you mean {close[0]!r}? For a key some events lack, use .get(), e.g. d.get({key!r}, 0)"
            else:
                hint = f"; hint: for a key some events lack, use .get(), e.g. d.get({key!r}, 0)"
        else:
            hint = (
                f"; hint: if the state has no {key!r} yet, start it with --init, e.g. --init '{{\"{key}\": 0}}'; "
                f"for a key some events lack, use .get(), e.g. d.get({key!r}, 0)"
            )
    elif isinstance(exc, NameError):
        hint = "; hint: the names are s (state), e (event) and d (its data)"
    elif isinstance(exc, TypeError) and "NoneType" in str(exc):
        hint = "; hint: a value is missing (null); check --init or use .get()"
    raise FoldError(f"{what} failed at {where}: {reason}{hint}") from exc


def _bad_format(seq: int, found: object) -> None:
    from .errors import NotALogError

    raise NotALogError(f"record at seq {seq} has format {found!r}; upgrade evlog to read this log")


def check_serialisable(state: Any) -> bytes:
    """The state as JSON bytes, or a clear error for values JSON cannot hold."""
    try:
        return orjson.dumps(state, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise BadInputError(
            f"the fold's state cannot be written as JSON ({exc}); keep it to objects, arrays, "
            "strings, numbers, booleans and null (a set: use a list or an object of keys)"
        ) from None
