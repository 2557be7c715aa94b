"""AST → IR: instantiate blocks, unroll repetition, wire branches, name every layer, and infer every shape.

Naming: a labelled statement `conv1: conv(…) bn relu` names its first layer `conv1` and the rest `conv1/bn`,
`conv1/relu`; repetition appends a 1-based index like the papers (`conv5: … * 3` → `conv5_1` … `conv5_3`); a
block instance's layers live under its name (`inception_3a/b2/conv`); unlabelled layers take their op's name,
numbered when repeated in one scope (`relu`, `relu_2`).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping

from archc import ops
from archc.diagnostics import Collector, Severity, Span, SpecError, note
from archc.ir import BlockFrame, Graph, Node, Value
from archc.ops.registry import REQUIRED, Kind, OpError, fmt_shape
from archc.spec import ast, codes
from archc.spec.evaluate import EvalError, evaluate, type_name
from archc.spec.resolve import Program

MAX_REPEAT = 10_000
MAX_NODES = 200_000
MAX_DEPTH = 64
DTYPES = ("float32", "float16", "float64")
_POISON = object()  # shape of a value whose producer failed: later checks that need shapes are skipped


@dataclass(frozen=True)
class Options:
    """Overrides from the command line: full input shapes (batch included), the batch alone, network params."""

    inputs: Mapping[str | None, tuple[int, ...]] = field(default_factory=dict)
    batch: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    include_path: tuple[str, ...] = ()
    network: str | None = None


class _Stop(Exception):
    """Unwinds after an error that leaves nothing sensible to continue from."""


class _Scope:
    def __init__(self, path: str, parent: "_Scope | None"):
        self.path = path
        self.parent = parent  # None at a block boundary: a block sees only its own labels
        self.values: dict[str, Value] = {}

    def full(self, local: str) -> str:
        return f"{self.path}/{local}" if self.path else local

    def child(self, label: str) -> "_Scope":
        return _Scope(self.full(label), self)

    def lookup(self, name: str) -> Value | None:
        s = self
        while s is not None:
            if name in s.values:
                return s.values[name]
            s = s.parent
        return None

    def visible(self) -> list[str]:
        names, s = [], self
        while s is not None:
            names += list(s.values)
            s = s.parent
        return names


@dataclass
class _Ctx:
    env: dict[str, Any]
    defaults: Mapping[str, ast.Args]
    scope: _Scope


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class Expander:
    def __init__(self, program: Program, options: Options, diags: Collector):
        self.program = program
        self.options = options
        self.diags = diags
        self.nodes: list[Node] = []
        self.taken: dict[str, Span | None] = {}
        self.frames: list[BlockFrame] = []
        self.call_sites: list[tuple[str, Span]] = []
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.by_path: dict[str, Value] = {}  # every layer output and labelled value by full path, for `@a/b`
        self.defaults_cache: dict[tuple, dict[str, ast.Args]] = {}
        self.dtype = "float32"

    # ---- diagnostics
    def error(self, code: str, message: str, span: Span | None, notes=()) -> None:
        site_notes = tuple(note(f"in block '{name}' used here", sp) for name, sp in reversed(self.call_sites))
        self.diags.error(code, message, span, tuple(notes) + site_notes)
        if len(self.diags.errors) >= 25:
            raise _Stop()

    def eval(self, e: ast.Expr, ctx: _Ctx):
        try:
            return evaluate(e, ctx.env, lambda path, span: self.resolve(path, ctx, span))
        except EvalError as err:
            msg = err.message
            if err.code == codes.UNKNOWN_NAME and isinstance(e, ast.Var):
                msg += _suggest(e.name, ctx.env)
            self.error(err.code, msg, err.span)
            raise _Stop() from None

    # ---- entry
    def network(self) -> Graph:
        nets = self.program.root.networks
        if not nets:
            self.error(codes.NO_NETWORK, "this file defines no network (only blocks); "
                       "write `network NAME { input x: 3x224x224 … }`", Span(self.program.root.file, 1, 1, 1, 2))
            raise _Stop()
        net = nets[0]
        if self.options.network:
            found = [n for n in nets if n.name == self.options.network]
            if not found:
                raise _Stop(self.error(codes.NO_NETWORK, f"no network named '{self.options.network}'; this file has "
                                       + ", ".join(n.name for n in nets), net.span))
            net = found[0]
        env: dict[str, Any] = {}
        unknown = set(self.options.params) - {p.name for p in net.params}
        if unknown:
            self.error(codes.BAD_ARGS, f"network '{net.name}' has no parameter '{sorted(unknown)[0]}'; its parameters: "
                       + (", ".join(p.name for p in net.params) or "none"), net.span)
        ctx = _Ctx(env, self._defaults(net.defaults), _Scope("", None))
        for p in net.params:
            if p.name in self.options.params:
                env[p.name] = self.options.params[p.name]
            elif p.default is not None:
                env[p.name] = self.eval(p.default, ctx)
            else:
                self.error(codes.BAD_ARGS, f"network parameter '{p.name}' has no default; pass --set {p.name}=…",
                           p.span)
        last = self.body(net.body, None, ctx)
        if not self.outputs:
            if last is None or last is _POISON:
                if last is None:
                    self.error(codes.NO_NETWORK, f"network '{net.name}' has no layers", net.span)
                raise _Stop()
            self.outputs = [last]
        if not self.nodes:
            self.error(codes.NO_NETWORK, f"network '{net.name}' has no layers", net.span)
        params = {p.name: env.get(p.name) for p in net.params}
        return Graph(net.name, self.inputs, self.outputs, self.nodes, self.program.root.file, params)

    def _defaults(self, calls) -> dict[str, ast.Args]:
        """A file's `defaults` line as op → keyword arguments; checked once per file, bad entries dropped."""
        key = tuple(id(c) for c in calls)
        if key not in self.defaults_cache:
            self.defaults_cache[key] = self._check_defaults(calls)
        return self.defaults_cache[key]

    def _check_defaults(self, calls) -> dict[str, ast.Args]:
        table: dict[str, ast.Args] = {}
        for call in calls:
            op = ops.lookup(call.name)
            if op is None:
                self.error(codes.UNKNOWN_OP, f"defaults for unknown op '{call.name}'" +
                           _suggest(call.name, ops.registry.keywords()), call.span)
                continue
            if call.args.positional:
                self.error(codes.BAD_ARGS, "defaults take keyword arguments only, e.g. defaults conv(bias=false)",
                           call.span)
            names = {p.name for p in op.params}
            for kw in call.args.keyword:
                if kw.name not in names:
                    self.error(codes.BAD_ARGS, f"{op.keyword} has no argument '{kw.name}'" + _suggest(kw.name, names),
                               kw.span)
            table[op.keyword] = ast.Args((), tuple(kw for kw in call.args.keyword if kw.name in names))
        return table

    def resolve(self, path: str, ctx: _Ctx, span: Span) -> Value:
        """`@name` finds a label in scope (or a tensor passed as a block argument); `@a/b` a layer by path,
        relative to the current scope and then to each enclosing one."""
        v = None
        if "/" not in path:
            v = ctx.scope.lookup(path)
            if v is None and isinstance(ctx.env.get(path), Value):
                v = ctx.env[path]
        if v is None:
            prefix = ctx.scope.path
            while True:
                v = self.by_path.get(f"{prefix}/{path}" if prefix else path)
                if v is not None or not prefix:
                    break
                prefix = prefix.rpartition("/")[0]
        if v is None:
            visible = ctx.scope.visible() + [k for k, x in ctx.env.items() if isinstance(x, Value)]
            raise EvalError(f"no layer or input named '{path}' before this point" + _suggest(path, visible), span,
                            codes.UNKNOWN_NAME)
        if v is _POISON:
            raise _Stop()
        return v

    # ---- statements
    def body(self, body: ast.Body, cur, ctx: _Ctx):
        for stmt in body.stmts:
            cur = self.stmt(stmt, cur, ctx)
        return cur

    def stmt(self, stmt, cur, ctx: _Ctx):
        try:
            return self._stmt(stmt, cur, ctx)
        except _Stop:
            if len(self.diags.errors) >= 25:
                raise
            return _POISON

    def _stmt(self, stmt, cur, ctx: _Ctx):
        if isinstance(stmt, ast.LetStmt):
            ctx.env[stmt.name] = self.eval(stmt.value, ctx)
            return cur
        if isinstance(stmt, ast.InputStmt):
            return self.input(stmt, ctx)
        if isinstance(stmt, ast.OutputStmt):
            if self.frames:
                self.error(codes.BAD_INPUT, "output is declared in the network, not inside a block", stmt.span)
            for name, span in stmt.names:
                try:
                    v = self.resolve(name, ctx, span)
                except EvalError as err:
                    self.error(err.code, err.message, err.span)
                    continue
                if v in self.outputs:
                    self.error(codes.DUPLICATE, f"'{name}' is already an output", span)
                else:
                    self.outputs.append(v)
            return cur
        if isinstance(stmt, ast.IfStmt):
            chosen = self.choose(stmt, ctx)
            return self.body(chosen, cur, ctx) if chosen is not None else cur
        return self.layer_stmt(stmt, cur, ctx)

    def choose(self, stmt: ast.IfStmt, ctx: _Ctx) -> ast.Body | None:
        """The body an `if … else if … else` chain selects, or None when none applies."""
        while True:
            cond = self.eval(stmt.cond, ctx)
            if not isinstance(cond, bool):
                self.error(codes.BAD_TYPE, f"the condition must be true or false, got {type_name(cond)}",
                           stmt.cond.span)
                raise _Stop()
            if cond:
                return stmt.then
            if not isinstance(stmt.orelse, ast.IfStmt):
                return stmt.orelse
            stmt = stmt.orelse

    def input(self, stmt: ast.InputStmt, ctx: _Ctx) -> Value:
        if self.frames or ctx.scope.path:
            self.error(codes.BAD_INPUT, "inputs are declared at the top of the network body", stmt.span)
            raise _Stop()
        dims = tuple(self.eval(d, ctx) for d in stmt.dims)
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dims):
            self.error(codes.BAD_INPUT, f"input dimensions must be positive integers, got {dims}", stmt.span)
            raise _Stop()
        dtype = stmt.dtype or "float32"
        if dtype not in DTYPES:
            self.error(codes.BAD_INPUT, f"unsupported dtype '{dtype}'; use one of {', '.join(DTYPES)}", stmt.span)
            raise _Stop()
        shape = (self.options.batch or 1, *dims)
        override = self.options.inputs.get(stmt.name) or (self.options.inputs.get(None) if not self.inputs else None)
        if override is not None:
            if len(override) != len(shape):
                self.error(codes.BAD_INPUT, f"--input gives {len(override)} dimensions but input '{stmt.name}' has "
                           f"{len(shape)} (batch included: {fmt_shape(shape)})", stmt.span)
                raise _Stop()
            shape = tuple(override)
        if stmt.name in self.taken or ctx.scope.lookup(stmt.name):
            self.error(codes.DUPLICATE, f"name '{stmt.name}' is already used", stmt.span)
        self.dtype = dtype
        v = Value(stmt.name, shape, dtype, stmt.span)
        self.taken[stmt.name] = stmt.span
        ctx.scope.values[stmt.name] = v
        self.inputs.append(v)
        return v

    def layer_stmt(self, stmt: ast.LayerStmt, cur, ctx: _Ctx):
        iterations: list[tuple[str | None, dict | None, bool]] = []  # (label, extra env, is_first)
        rep = stmt.repeat
        if rep is None:
            iterations.append((stmt.label, None, True))
        elif isinstance(rep, ast.RepeatN):
            n = self.eval(rep.count, ctx)
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REPEAT:
                self.error(codes.BAD_ARGS, f"repeat count must be an integer in 1..{MAX_REPEAT}, got {n!r}",
                           rep.count.span)
                raise _Stop()
            for i in range(n):
                iterations.append((f"{stmt.label}_{i + 1}" if stmt.label else None, None, i == 0))
        else:
            items = self.eval(rep.items, ctx)
            if not isinstance(items, tuple) or not items or len(items) > MAX_REPEAT:
                self.error(codes.BAD_ARGS, f"'for {rep.var} in …' needs a non-empty list, got {items!r}",
                           rep.items.span)
                raise _Stop()
            for i, item in enumerate(items):
                iterations.append((f"{stmt.label}_{i + 1}" if stmt.label else None, {rep.var: item}, i == 0))
        first_override = rep.first if isinstance(rep, ast.RepeatN) else None
        for label, extra, is_first in iterations:
            ictx = ctx if extra is None else _Ctx({**ctx.env, **extra}, ctx.defaults, ctx.scope)
            span = stmt.label_span or stmt.span
            if label is not None:
                self.claim(ctx.scope.full(label), span)
            if isinstance(stmt.chain, ast.Body):
                if not stmt.chain.stmts and is_first:
                    self.diags.warning(codes.EMPTY_GROUP, "this group has no layers: it passes its input through "
                                       "(write `identity` if that is meant)", stmt.span)
                inner = ictx.scope.child(label) if label else ictx.scope
                cur = self.body(stmt.chain, cur, _Ctx(dict(ictx.env), ictx.defaults, inner))
            else:
                cur = self.chain(stmt.chain, cur, ictx, label, first_override if is_first else None)
            if label is not None and cur is not None:
                ctx.scope.values[label] = cur
                self.by_path.setdefault(ctx.scope.full(label), cur)
        if stmt.label and rep is not None and cur is not None:
            ctx.scope.values[stmt.label] = cur
            self.by_path.setdefault(ctx.scope.full(stmt.label), cur)
        return cur

    def claim(self, full: str, span: Span | None) -> None:
        if full in self.taken:
            prev = self.taken[full]
            self.error(codes.DUPLICATE, f"name '{full}' is already used", span,
                       (note("first used here", prev),) if prev else ())
            raise _Stop()
        self.taken[full] = span

    def auto_name(self, scope: _Scope, base: str) -> str:
        name, i = base, 1
        while scope.full(name) in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken[scope.full(name)] = None
        return scope.full(name)

    # ---- chains and elements
    def chain(self, elements, cur, ctx: _Ctx, label: str | None, first: ast.Args | None):
        """The label names the chain's first layer (a leading `@ref` is not a layer); the rest go under it."""
        follower_scope = ctx.scope.child(label) if label else ctx.scope
        primary = next((i for i, el in enumerate(elements) if not isinstance(el, ast.Ref)), None)
        if first is not None and (primary is None or not isinstance(elements[primary], ast.Call)):
            self.error(codes.BAD_ARGS, "first(...) applies to a call, not to a branch or reference", elements[0].span)
        for idx, el in enumerate(elements):
            name = ctx.scope.full(label) if (label and idx == primary) else None
            cur = self.element(el, cur, ctx, name, follower_scope, first if idx == primary else None)
        return cur

    def element(self, el, cur, ctx: _Ctx, name: str | None, name_scope: _Scope, first):
        if isinstance(el, ast.Ref):
            try:
                return self.resolve(el.name, ctx, el.span)
            except EvalError as err:
                self.error(err.code, err.message, err.span)
                raise _Stop() from None
        if cur is None:
            self.error(codes.BAD_INPUT, "this layer has no input; declare `input NAME: C×H×W` first", el.span)
            raise _Stop()
        if isinstance(el, ast.Merge):
            return self.merge(el, cur, ctx, name, name_scope)
        block = self.program.blocks.get(el.name)
        if block is not None and ops.lookup(el.name) is None:
            return self.block(block, el, cur, ctx, name or self.auto_name(name_scope, el.name), first)
        op = ops.lookup(el.name)
        if op is None:
            self.error(codes.UNKNOWN_OP, f"unknown op or block '{el.name}'" +
                       _suggest(el.name, ops.registry.keywords() + list(self.program.blocks)), el.span)
            raise _Stop()
        if op.merge:
            self.error(codes.BAD_ARGS, f"{el.name} merges branches: write `{el.name} {{ branch; branch }}`", el.span)
            raise _Stop()
        attrs = self.bind_op(op, el, ctx, first)
        if op.passthrough:
            return cur
        return self.make_node(op, attrs, [cur], el.span, name or self.auto_name(name_scope, op.keyword))

    def make_node(self, op, attrs, inputs: list, span: Span, name: str, branch_notes=()):
        if any(v is _POISON for v in inputs):
            raise _Stop()
        try:
            built = op.build(attrs, [v.shape for v in inputs])
        except OpError as err:
            where = span
            arg_spans = attrs.get("__spans__", {})
            if err.attr and err.attr in arg_spans:
                where = arg_spans[err.attr]
            if err.code == codes.SHAPE_MISMATCH and branch_notes:
                self.error(err.code, err.message, where, branch_notes)
            else:
                shapes = " and ".join(fmt_shape(v.shape) for v in inputs)
                msg = err.message if err.message.startswith(op.keyword) else f"{op.keyword}: {err.message}"
                self.error(err.code, msg if shapes in msg else f"{msg} (input {shapes})", where)
            raise _Stop() from None
        if len(self.nodes) >= MAX_NODES:
            self.error(codes.BAD_ARGS, f"the network has more than {MAX_NODES} layers", span)
            raise _Stop()
        out = Value(name, built.shape, self.dtype, span)
        args = {k: v for k, v in attrs.items() if k != "__spans__"}
        node = Node(name, op.keyword, dict(built.attrs), list(inputs), out, built.weights, span, tuple(self.frames),
                    args)
        out.producer = node
        self.nodes.append(node)
        self.by_path[name] = out
        return out

    def bind_op(self, op, call: ast.Call, ctx: _Ctx, first: ast.Args | None) -> dict:
        """Bind positional and keyword arguments to the op's signature, apply file defaults, check types."""
        params = op.params
        names = [p.name for p in params]
        bound: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        positional = list(call.args.positional)
        if params and params[0].varargs:
            if positional:
                vals = [self.arg_value(e, ctx, params[0]) for e in positional]
                bound[params[0].name] = vals[0] if len(vals) == 1 else tuple(vals)
                spans[params[0].name] = positional[0].span
            positional = []
        if len(positional) > len(params):
            self.error(codes.BAD_ARGS, f"{op.keyword} takes at most {len(params)} positional argument"
                       f"{'s' if len(params) != 1 else ''} ({', '.join(names) or 'none'}), got {len(positional)}",
                       positional[len(params)].span)
            raise _Stop()
        for p, e in zip(params, positional):
            bound[p.name] = self.arg_value(e, ctx, p)
            spans[p.name] = e.span
        keyword = list(call.args.keyword)
        if first is not None:
            if first.positional:
                self.error(codes.BAD_ARGS, "first(...) takes keyword arguments only", first.positional[0].span)
            keyword = [k for k in keyword if k.name not in {f.name for f in first.keyword}] + list(first.keyword)
        for kw in keyword:
            p = next((p for p in params if p.name == kw.name), None)
            if p is None:
                self.error(codes.BAD_ARGS, f"{op.keyword} has no argument '{kw.name}'" + _suggest(kw.name, names) +
                           f" (arguments: {', '.join(names) or 'none'})", kw.span)
                raise _Stop()
            if kw.name in bound:
                self.error(codes.BAD_ARGS, f"argument '{kw.name}' given twice", kw.span)
                raise _Stop()
            bound[kw.name] = self.arg_value(kw.value, ctx, p)
            spans[kw.name] = kw.span
        dflt = ctx.defaults.get(op.keyword)
        if dflt is not None:
            for kw in dflt.keyword:
                if kw.name not in bound:
                    p = next(p for p in params if p.name == kw.name)
                    bound[kw.name] = self.arg_value(kw.value, ctx, p)
                    spans[kw.name] = kw.span
        for p in params:
            if p.name not in bound:
                if p.default is REQUIRED:
                    self.error(codes.BAD_ARGS, f"{op.keyword} needs argument '{p.name}' ({p.kind.value}); "
                               f"signature: {self.signature(op)}", call.span)
                    raise _Stop()
                bound[p.name] = p.default
        bound["__spans__"] = spans
        return bound

    @staticmethod
    def signature(op) -> str:
        def show(v):
            return "true" if v is True else "false" if v is False else "input" if v is None else str(v)
        parts = [p.name if p.default is REQUIRED else f"{p.name}={show(p.default)}" for p in op.params]
        return f"{op.keyword}({', '.join(parts)})"

    def arg_value(self, e: ast.Expr, ctx: _Ctx, p):
        # Bare words name string choices: pad=same, mode=bilinear.
        if isinstance(e, ast.Var) and e.name not in ctx.env and p.kind in (Kind.STR, Kind.PAD):
            value = e.name
        else:
            value = self.eval(e, ctx)
        return self.check_kind(value, p, e.span)

    def check_kind(self, v, p, span):
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
            self.error(codes.BAD_TYPE, f"argument '{p.name}' must be {want}, got {v!r}", span)
            raise _Stop()
        return v

    # ---- blocks and merges
    def block(self, block: ast.BlockDef, call: ast.Call, cur, ctx: _Ctx, path: str, first):
        if len(self.frames) >= MAX_DEPTH:
            self.error(codes.BAD_ARGS, f"blocks nest more than {MAX_DEPTH} deep (is '{block.name}' recursive?)",
                       call.span)
            raise _Stop()
        args = call.args
        if first is not None:
            args = ast.Args(args.positional, tuple(k for k in args.keyword if k.name not in
                                                   {f.name for f in first.keyword}) + first.keyword)
        names = [p.name for p in block.params]
        if len(args.positional) > len(names):
            self.error(codes.BAD_ARGS, f"block '{block.name}' takes {len(names)} argument"
                       f"{'s' if len(names) != 1 else ''} ({', '.join(names)}), got {len(args.positional)}",
                       args.positional[len(names)].span, (note(f"'{block.name}' is defined here", block.span),))
            raise _Stop()
        values: dict[str, Any] = {}
        for p, e in zip(block.params, args.positional):
            values[p.name] = self.eval(e, ctx)
        for kw in args.keyword:
            if kw.name not in names:
                self.error(codes.BAD_ARGS, f"block '{block.name}' has no argument '{kw.name}'" +
                           _suggest(kw.name, names) + f" (arguments: {', '.join(names)})", kw.span,
                           (note(f"'{block.name}' is defined here", block.span),))
                raise _Stop()
            if kw.name in values:
                self.error(codes.BAD_ARGS, f"argument '{kw.name}' given twice", kw.span)
                raise _Stop()
            values[kw.name] = self.eval(kw.value, ctx)
        missing = [p.name for p in block.params if p.name not in values and p.default is None]
        if missing:
            self.error(codes.BAD_ARGS, f"block '{block.name}' needs argument '{missing[0]}' "
                       f"(arguments: {', '.join(names)})", call.span,
                       (note(f"'{block.name}' is defined here", block.span),))
            raise _Stop()
        if cur is _POISON:
            raise _Stop()
        env: dict[str, Any] = {"in_channels": cur.shape[1], "in_shape": cur.shape}
        self.call_sites.append((block.name, call.span))
        try:
            for p in block.params:
                env[p.name] = values[p.name] if p.name in values else self.eval(p.default, _Ctx(env, {}, ctx.scope))
            self.frames.append(BlockFrame(path, block.name, {p.name: env[p.name] for p in block.params}, call.span))
            try:
                out = self.body(block.body, cur, _Ctx(env, self._defaults(block.defaults), _Scope(path, None)))
            finally:
                self.frames.pop()
        finally:
            self.call_sites.pop()
        out = cur if out is None else out
        self.by_path.setdefault(path, out)
        return out

    def merge(self, el: ast.Merge, cur, ctx: _Ctx, name: str | None, name_scope: _Scope):
        op = ops.lookup(el.name)
        if op is None or not op.merge:
            merges = [o.keyword for o in ops.all_ops() if o.merge]
            self.error(codes.UNKNOWN_OP, f"'{el.name}' does not merge branches; use one of {', '.join(merges)}" +
                       _suggest(el.name, merges), el.span)
            raise _Stop()
        attrs = self.bind_op(op, ast.Call(el.name, el.args, el.span), ctx, None)
        branch_scope = ctx.scope.child(name.rsplit("/", 1)[-1]) if name else ctx.scope
        bctx = _Ctx(ctx.env, ctx.defaults, branch_scope)
        branches: list[tuple[Value, ast.Stmt]] = []
        for stmt in el.body.stmts:
            if isinstance(stmt, ast.LetStmt):
                self.stmt(stmt, cur, bctx)
                continue
            if isinstance(stmt, ast.IfStmt):  # one branch when chosen, none when no `else` applies
                stmt = self.choose(stmt, bctx)
                if stmt is None:
                    continue
            out = self.body(stmt, cur, bctx) if isinstance(stmt, ast.Body) else self.stmt(stmt, cur, bctx)
            branches.append((out, stmt))
        if not branches:
            self.error(codes.BAD_ARGS, f"{el.name} has no branches", el.span)
            raise _Stop()
        if any(v is _POISON for v, _ in branches):
            raise _Stop()
        notes = tuple(note(f"branch {i + 1} ends in {fmt_shape(v.shape)}" +
                           (f" (from {v.producer.name})" if v.producer else f" (input '{v.name}')"),
                           v.span or s.span) for i, (v, s) in enumerate(branches))
        return self.make_node(op, attrs, [v for v, _ in branches], el.span, name or self.auto_name(
            name_scope, op.keyword), notes)


def expand(program: Program, options: Options, diags: Collector) -> Graph:
    exp = Expander(program, options, diags)
    try:
        graph = exp.network()
    except _Stop:
        graph = None
    diags.raise_if_errors()
    if graph is None:  # unreachable in practice: every _Stop records an error first
        raise SpecError(diags.diagnostics)
    graph.verify()
    graph.warnings = [d for d in diags.diagnostics if d.severity is Severity.WARNING]
    return graph
