"""Argument binding: the arguments written at a call matched to an op's or a block's parameters.

An op call binds positional then keyword arguments (a repetition's `first(...)` keywords replacing the call's
own), then the file's `defaults` line, then the op's own defaults, and checks each value's kind; the result keeps
where each argument was written, so a rule's complaint about one argument points at it. A block call binds what
was written and leaves the rest to the block, whose defaults are expressions of its own environment.

Bare words follow one rule, for ops and blocks alike (`bare_word`): an argument written as a single name that
is not defined where the call is written is that word, a string (`pad=valid`, `act(kind=hswish)`). A name inside
arithmetic (`conv(foo + 1, 3)`) is never a word: it must be defined. An op argument that cannot be a string (a
number, a bool) reports an undefined bare word as an undefined name, since it was more likely a misspelled one.

Nothing here knows the expander: expressions are evaluated through the `evaluate` callback given (which reports
its own errors), a mistake that stops the call raises `BindError` for the caller to report, and the few that
don't stop it go to the `report` callback, in the order they are found.
"""
from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from archc import ops
from archc.diagnostics import Diagnostic, Span, note
from archc.ops.registry import REQUIRED, Kind, OpDef, Param
from archc.spec import ast, codes
from archc.spec.scope import suggest

Evaluate = Callable[[ast.Expr], Any]  # an expression's value in the caller's environment
Report = Callable[[str, str, Span | None], None]  # (code, message, span) of an error that does not stop binding


@dataclass(frozen=True)
class BoundArgs:
    values: Mapping[str, Any]  # argument name → value (for an op, defaults applied)
    spans: Mapping[str, Span]  # argument name → where it was written (absent for the op's own defaults)


class BindError(Exception):
    """A binding mistake that leaves nothing to bind: the caller reports it (code, message, span, notes)."""

    def __init__(self, code: str, message: str, span: Span | None, notes: tuple[Diagnostic, ...] = ()):
        super().__init__(message)
        self.code, self.message, self.span, self.notes = code, message, span, notes


def signature(op: OpDef) -> str:
    """`conv(out, kernel, stride=1, pad=same, …)`, as `archc ops` lists it and argument errors quote it."""
    def show(v: Any) -> str:
        return "true" if v is True else "false" if v is False else "input" if v is None else str(v)
    parts = [p.name if p.default is REQUIRED else f"{p.name}={show(p.default)}" for p in op.params]
    return f"{op.keyword}({', '.join(parts)})"


def check_defaults(calls: Iterable[ast.Call], report: Report) -> dict[str, ast.Args]:
    """A file's `defaults` line as op → keyword arguments; every bad entry is reported and dropped."""
    table: dict[str, ast.Args] = {}
    for call in calls:
        op = ops.lookup(call.name)
        if op is None:
            report(codes.UNKNOWN_OP, f"defaults for unknown op '{call.name}'" +
                   suggest(call.name, ops.registry.keywords()), call.span)
            continue
        if call.args.positional:
            report(codes.BAD_ARGS, "defaults take keyword arguments only, e.g. defaults conv(bias=false)", call.span)
        names = {p.name for p in op.params}
        for kw in call.args.keyword:
            if kw.name not in names:
                report(codes.BAD_ARGS, f"{op.keyword} has no argument '{kw.name}'" + suggest(kw.name, names), kw.span)
        table[op.keyword] = ast.Args((), tuple(kw for kw in call.args.keyword if kw.name in names))
    return table


def bare_word(e: ast.Expr, names: Container[str]) -> str | None:
    """The word an argument is when it is written as a bare name that is not defined (`names`: the names defined
    where the call is written); None for any other argument, to be evaluated."""
    return e.name if isinstance(e, ast.Var) and e.name not in names else None


def bind_op(op: OpDef, call: ast.Call, first: ast.Args | None, *, evaluate: Evaluate, names: Container[str],
            defaults: Mapping[str, ast.Args], report: Report) -> BoundArgs:
    """Bind positional and keyword arguments to the op's signature, apply file defaults (`defaults`, checked by
    `check_defaults`), check types. `names` are the names defined where the call is written: a bare word that is
    none of them is a string (`pad=same`), where the argument takes one."""
    params = op.params
    param_names = [p.name for p in params]
    bound: dict[str, Any] = {}
    spans: dict[str, Span] = {}

    def value(e: ast.Expr, p: Param) -> Any:
        return arg_value(e, p, evaluate, names)

    positional = list(call.args.positional)
    if params and params[0].varargs:
        if positional:
            vals = [value(e, params[0]) for e in positional]
            bound[params[0].name] = vals[0] if len(vals) == 1 else tuple(vals)
            spans[params[0].name] = positional[0].span
        positional = []
    if len(positional) > len(params):
        listed = ", ".join(param_names) or "none"
        raise BindError(codes.BAD_ARGS, f"{op.keyword} takes at most {len(params)} positional argument"
                        f"{'s' if len(params) != 1 else ''} ({listed}), got {len(positional)}",
                        positional[len(params)].span)
    for p, e in zip(params, positional, strict=False):  # strict=False: fewer arguments than parameters is fine
        bound[p.name] = value(e, p)
        spans[p.name] = e.span
    keyword = list(call.args.keyword)
    if first is not None:
        if first.positional:
            report(codes.BAD_ARGS, "first(...) takes keyword arguments only", first.positional[0].span)
        keyword = [k for k in keyword if k.name not in {f.name for f in first.keyword}] + list(first.keyword)
    for kw in keyword:
        param = next((p for p in params if p.name == kw.name), None)
        if param is None:
            raise BindError(codes.BAD_ARGS, f"{op.keyword} has no argument '{kw.name}'" +
                            suggest(kw.name, param_names) + f" (arguments: {', '.join(param_names) or 'none'})",
                            kw.span)
        if kw.name in bound:
            raise BindError(codes.BAD_ARGS, f"argument '{kw.name}' given twice", kw.span)
        bound[kw.name] = value(kw.value, param)
        spans[kw.name] = kw.span
    dflt = defaults.get(op.keyword)
    if dflt is not None:
        for kw in dflt.keyword:
            if kw.name not in bound:
                param = next(p for p in params if p.name == kw.name)
                bound[kw.name] = value(kw.value, param)
                spans[kw.name] = kw.span
    for p in params:
        if p.name not in bound:
            if p.default is REQUIRED:
                raise BindError(codes.BAD_ARGS, f"{op.keyword} needs argument '{p.name}' ({p.kind.value}); "
                                f"signature: {signature(op)}", call.span)
            bound[p.name] = p.default
    return BoundArgs(MappingProxyType(bound), MappingProxyType(spans))


def arg_value(e: ast.Expr, p: Param, evaluate: Evaluate, names: Container[str]) -> Any:
    word = bare_word(e, names)  # pad=same, mode=bilinear
    if word is not None and p.kind in (Kind.STR, Kind.PAD, Kind.ANY):
        return check_kind(word, p, e.span)
    return check_kind(evaluate(e), p, e.span)  # an undefined word where no string fits: an undefined name


def check_kind(v: Any, p: Param, span: Span) -> Any:
    """`v` itself when it is of the parameter's kind; else a `bad-type` BindError at `span`."""
    k = p.kind
    is_int = isinstance(v, int) and not isinstance(v, bool)
    is_num = (isinstance(v, (int, float)) and not isinstance(v, bool))
    ok = {
        Kind.INT: is_int,
        Kind.INTS: is_int or (isinstance(v, tuple) and v != () and all(
            isinstance(x, int) and not isinstance(x, bool) for x in v)),
        Kind.FLOAT: is_num,
        Kind.FLOATS: is_num or (isinstance(v, tuple) and v != () and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)),
        Kind.BOOL: isinstance(v, bool),
        Kind.STR: isinstance(v, str) and (not p.choices or v in p.choices),
        Kind.PAD: (isinstance(v, str) and v in ("same", "valid", "causal")) or is_int or (
            isinstance(v, tuple) and v != () and all(isinstance(x, int) and not isinstance(x, bool) for x in v)),
        Kind.ANY: True,
    }[k]
    if not ok:
        want = k.value if not p.choices else "one of " + ", ".join(p.choices)
        hint = " (a bare word that is not a defined name is a string: is a name misspelled?)" if isinstance(
            v, str) and k not in (Kind.STR, Kind.PAD) else ""
        raise BindError(codes.BAD_TYPE, f"argument '{p.name}' must be {want}, got {v!r}{hint}", span)
    return v


def bind_block(block: ast.BlockDef, call: ast.Call, first: ast.Args | None, evaluate: Evaluate, *,
               names: Container[str] = (), layers: Container[str] = ()) -> BoundArgs:
    """The arguments written at a block's call (a repetition's `first(...)` keywords replacing the call's own),
    evaluated where the call is written; a bare word that is none of `names` is a string (`act(kind=hswish)`),
    unless it is one of `layers` (the labels `@name` would find): then the `@` is missing. Parameters left out
    are not in the result: their defaults are expressions of the block's own environment (`in_channels`,
    earlier parameters), evaluated there."""
    args = call.args
    if first is not None:
        args = ast.Args(args.positional, tuple(k for k in args.keyword if k.name not in
                                               {f.name for f in first.keyword}) + first.keyword)
    params = [p.name for p in block.params]
    defined_here = (note(f"'{block.name}' is defined here", block.span),)
    if len(args.positional) > len(params):
        raise BindError(codes.BAD_ARGS, f"block '{block.name}' takes {len(params)} argument"
                        f"{'s' if len(params) != 1 else ''} ({', '.join(params)}), got {len(args.positional)}",
                        args.positional[len(params)].span, defined_here)
    values: dict[str, Any] = {}
    spans: dict[str, Span] = {}

    def value(e: ast.Expr) -> Any:
        word = bare_word(e, names)
        if word is None:
            return evaluate(e)
        if word in layers:
            raise BindError(codes.UNKNOWN_NAME, f"'{word}' is a layer, not a value: pass it as @{word}", e.span)
        return word

    for p, e in zip(block.params, args.positional, strict=False):  # strict=False: the rest may have defaults
        values[p.name] = value(e)
        spans[p.name] = e.span
    for kw in args.keyword:
        if kw.name not in params:
            raise BindError(codes.BAD_ARGS, f"block '{block.name}' has no argument '{kw.name}'" +
                            suggest(kw.name, params) + f" (arguments: {', '.join(params)})", kw.span, defined_here)
        if kw.name in values:
            raise BindError(codes.BAD_ARGS, f"argument '{kw.name}' given twice", kw.span)
        values[kw.name] = value(kw.value)
        spans[kw.name] = kw.span
    missing = [p.name for p in block.params if p.name not in values and p.default is None]
    if missing:
        raise BindError(codes.BAD_ARGS, f"block '{block.name}' needs argument '{missing[0]}' "
                        f"(arguments: {', '.join(params)})", call.span, defined_here)
    return BoundArgs(MappingProxyType(values), MappingProxyType(spans))
