"""AST → IR: instantiate blocks, unroll repetition, wire branches, name every layer, and infer every shape.

Naming: a labelled statement `conv1: conv(…) bn relu` names its first layer `conv1` and the rest `conv1/bn`,
`conv1/relu`; repetition appends a 1-based index like the papers (`conv5: … * 3` → `conv5_1` … `conv5_3`); a
block instance's layers live under its name (`inception_3a/b2/conv`); unlabelled layers take their op's name,
numbered when repeated in one scope (`relu`, `relu_2`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archc import ops
from archc.diagnostics import Collector, Diagnostic, Severity, Span, SpecError, note
from archc.ir import BlockFrame, Graph, Node, Value
from archc.ops.registry import RF, OpDef, OpError, onnx_rule
from archc.options import ModelOptions
from archc.shapes import SPEC_DTYPES, fmt_dims
from archc.spec import ast, bind, codes
from archc.spec.bind import BindError, BoundArgs
from archc.spec.evaluate import EvalError, Poisoned, evaluate, type_name
from archc.spec.resolve import Program
from archc.spec.scope import POISON, Flow, Poison, Scope, suggest

MAX_REPEAT = 10_000
MAX_NODES = 200_000
MAX_DEPTH = 64
LARGE_WINDOW = 8  # windows from this size on over a smaller input are warned of (AlexNet's 11×11 sees 227×227)


class _Stop(Exception):
    """Unwinds after an error that leaves nothing sensible to continue from."""


class _Unwind(Exception):
    """Unwinds a runaway recursion (already reported) out to the statement that first used a block of the cycle:
    `depth` is how many block call sites enclose that statement."""

    def __init__(self, depth: int):
        super().__init__(depth)
        self.depth = depth


@dataclass
class _Ctx:
    env: dict[str, Any]
    defaults: Mapping[str, ast.Args]
    scope: Scope


class Expander:
    def __init__(self, program: Program, options: ModelOptions, diags: Collector):
        self.program = program
        self.options = options
        self.diags = diags
        self.nodes: list[Node] = []
        self.taken: dict[str, Span | None] = {}
        self.frames: list[BlockFrame] = []
        self.call_sites: list[tuple[str, Span]] = []
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.by_path: dict[str, Value | Poison] = {}  # every layer output and labelled value by full path, for `@a/b`
        self.defaults_cache: dict[tuple[int, ...], dict[str, ast.Args]] = {}
        self.dtype = "float32"
        self.window_warned: set[Span] = set()  # spec lines already warned of a window larger than its input
        self.recursive: set[str] = set()  # blocks whose runaway recursion is reported

    # ---- diagnostics
    def error(self, code: str, message: str, span: Span | None, notes: Iterable[Diagnostic] = (),
              sites: bool = True) -> None:
        """Record an error; unless `sites` is false, notes name every block call it happened under."""
        site_notes = tuple(note(f"in block '{name}' used here", sp) for name, sp in reversed(self.call_sites)
                           ) if sites else ()
        self.diags.error(code, message, span, tuple(notes) + site_notes)
        if len(self.diags.errors) >= 25:
            raise _Stop()

    def eval(self, e: ast.Expr, ctx: _Ctx) -> Any:
        try:
            return evaluate(e, ctx.env, lambda path, span: self.resolve(path, ctx, span))
        except Poisoned:
            raise _Stop() from None  # a name whose definition failed: that error is reported already
        except EvalError as err:
            self.error(err.code, err.message, err.span)
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
                self.error(codes.NO_NETWORK, f"no network named '{self.options.network}'; this file has "
                           + ", ".join(n.name for n in nets), net.span)
                raise _Stop()
            net = found[0]
        env: dict[str, Any] = {}
        unknown = set(self.options.params) - {p.name for p in net.params}
        if unknown:
            self.error(codes.BAD_ARGS, f"network '{net.name}' has no parameter '{sorted(unknown)[0]}'; its parameters: "
                       + (", ".join(p.name for p in net.params) or "none"), net.span)
        ctx = _Ctx(env, self._defaults(net.defaults), Scope("", None))
        for p in net.params:
            if p.name in self.options.params:
                env[p.name] = self.options.params[p.name]
            elif p.default is not None:
                env[p.name] = self.let(p.default, ctx)
            else:
                self.error(codes.BAD_ARGS, f"network parameter '{p.name}' has no default; pass --set {p.name}=…",
                           p.span)
                env[p.name] = POISON
        last = self.body(net.body, None, ctx)
        if not self.outputs:
            if last is None or last is POISON:
                if last is None:
                    self.error(codes.NO_NETWORK, f"network '{net.name}' has no layers", net.span)
                raise _Stop()
            self.outputs = [last]
        if not self.nodes:
            self.error(codes.NO_NETWORK, f"network '{net.name}' has no layers", net.span)
        params = {p.name: env.get(p.name) for p in net.params}
        return Graph(net.name, self.inputs, self.outputs, self.nodes, self.program.root.file, params)

    def _defaults(self, calls: Sequence[ast.Call]) -> dict[str, ast.Args]:
        """A file's `defaults` line as op → keyword arguments; checked once per file, bad entries dropped."""
        key = tuple(id(c) for c in calls)
        if key not in self.defaults_cache:
            self.defaults_cache[key] = bind.check_defaults(calls, self.error)
        return self.defaults_cache[key]

    def resolve(self, path: str, ctx: _Ctx, span: Span) -> Value:
        """`@name` finds a label in scope (or a tensor passed as a block argument); `@a/b` a layer by path,
        relative to the current scope and then to each enclosing one."""
        v: Value | Poison | None = None
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
            raise EvalError(f"no layer or input named '{path}' before this point" + suggest(path, visible), span,
                            codes.UNKNOWN_NAME)
        if v is POISON:
            raise _Stop()
        return v

    # ---- statements
    def body(self, body: ast.Body, cur: Flow, ctx: _Ctx) -> Flow:
        for stmt in body.stmts:
            cur = self.stmt(stmt, cur, ctx)
        return cur

    def stmt(self, stmt: ast.Stmt, cur: Flow, ctx: _Ctx) -> Flow:
        try:
            return self._stmt(stmt, cur, ctx)
        except _Stop:
            if len(self.diags.errors) >= 25:
                raise
            return POISON

    def _stmt(self, stmt: ast.Stmt, cur: Flow, ctx: _Ctx) -> Flow:
        if isinstance(stmt, ast.LetStmt):
            ctx.env[stmt.name] = self.let(stmt.value, ctx)
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

    def let(self, e: ast.Expr, ctx: _Ctx) -> Any:
        """The value a `let` (or a network parameter) binds; when it fails (reported), the name is poisoned: its
        later uses stop their statements quietly instead of reporting it undefined again and again."""
        try:
            return self.eval(e, ctx)
        except _Stop:
            if len(self.diags.errors) >= 25:
                raise
            return POISON

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
        if dtype not in SPEC_DTYPES:
            self.error(codes.BAD_INPUT, f"unsupported dtype '{dtype}'; use one of {', '.join(SPEC_DTYPES)}",
                       stmt.span)
            raise _Stop()
        shape = (self.options.batch or 1, *dims)
        override = self.options.inputs.get(stmt.name) or (self.options.inputs.get(None) if not self.inputs else None)
        if override is not None:
            if len(override) != len(shape):
                self.error(codes.BAD_INPUT, f"--input gives {len(override)} dimensions but input '{stmt.name}' has "
                           f"{len(shape)} (batch included: {fmt_dims(shape)})", stmt.span)
                raise _Stop()
            shape = tuple(override)
        if stmt.name in self.taken or ctx.scope.lookup(stmt.name):
            self.error(codes.DUPLICATE, f"name '{stmt.name}' is already used", stmt.span)
        self.dtype = dtype
        v = Value(stmt.name, shape, dtype, stmt.span)
        self.taken[stmt.name] = stmt.span
        ctx.scope.values[stmt.name] = v
        self.inputs.append(v)
        if len(shape) == 3 and shape[1] == shape[2] >= 16:  # C×L that looks like H×W: channels forgotten?
            self.diags.warning(codes.ONE_D_INPUT, f"input '{stmt.name}' is {fmt_dims(shape[1:])}: read as "
                               f"{shape[1]} channels of length {shape[2]}, a 1-D network; for a one-channel "
                               f"image write 1x{shape[1]}x{shape[2]} (channels first)", stmt.span)
        return v

    def layer_stmt(self, stmt: ast.LayerStmt, cur: Flow, ctx: _Ctx) -> Flow:
        iterations: list[tuple[str | None, dict[str, Any] | None, bool]] = []  # (label, extra env, is_first)
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

    def auto_name(self, scope: Scope, base: str) -> str:
        name, i = base, 1
        while scope.full(name) in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken[scope.full(name)] = None
        return scope.full(name)

    # ---- chains and elements
    def chain(self, elements: Sequence[ast.Element], cur: Flow, ctx: _Ctx, label: str | None,
              first: ast.Args | None) -> Flow:
        """The label names the chain's first layer (a leading `@ref` is not a layer); the rest go under it."""
        follower_scope = ctx.scope.child(label) if label else ctx.scope
        primary = next((i for i, el in enumerate(elements) if not isinstance(el, ast.Ref)), None)
        if first is not None and (primary is None or not isinstance(elements[primary], ast.Call)):
            self.error(codes.BAD_ARGS, "first(...) applies to a call, not to a branch or reference", elements[0].span)
        for idx, el in enumerate(elements):
            name = ctx.scope.full(label) if (label and idx == primary) else None
            cur = self.element(el, cur, ctx, name, follower_scope, first if idx == primary else None)
        return cur

    def element(self, el: ast.Element, cur: Flow, ctx: _Ctx, name: str | None, name_scope: Scope,
                first: ast.Args | None) -> Value | Poison:
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
                       suggest(el.name, ops.registry.keywords() + list(self.program.blocks)), el.span)
            raise _Stop()
        if op.merge:
            self.error(codes.BAD_ARGS, f"{el.name} merges branches: write `{el.name} {{ branch; branch }}`", el.span)
            raise _Stop()
        bound = self.bind_op(op, el, ctx, first)
        if op.passthrough:
            return cur
        return self.make_node(op, bound, [cur], el.span, name or self.auto_name(name_scope, op.keyword))

    def make_node(self, op: OpDef, bound: BoundArgs, inputs: Sequence[Value | Poison], span: Span, name: str,
                  branch_notes: tuple[Diagnostic, ...] = ()) -> Value:
        ready = [v for v in inputs if v is not POISON]
        if len(ready) < len(inputs):
            raise _Stop()
        try:
            built = op.build(dict(bound.values), [v.shape for v in ready])
        except OpError as err:
            where = span
            if err.attr and err.attr in bound.spans:
                where = bound.spans[err.attr]
            if err.code == codes.SHAPE_MISMATCH and branch_notes:
                self.error(err.code, err.message, where, branch_notes)
            else:
                shapes = " and ".join(fmt_dims(v.shape) for v in ready)
                msg = err.message if err.message.startswith(op.keyword) else f"{op.keyword}: {err.message}"
                self.error(err.code, msg if shapes in msg else f"{msg} (input {shapes})", where)
            raise _Stop() from None
        if len(self.nodes) >= MAX_NODES:
            self.error(codes.BAD_ARGS, f"the network has more than {MAX_NODES} layers", span)
            raise _Stop()
        self.check_window(op, built.attrs.get("kernel_shape"), ready, span)
        out = Value(name, built.shape, self.dtype, span)
        node = Node(name, op.keyword, dict(built.attrs), ready, out, built.weights, span, tuple(self.frames),
                    dict(bound.values))
        out.producer = node
        self.nodes.append(node)
        self.by_path[name] = out
        return out

    def check_window(self, op: OpDef, kernel: Sequence[int] | None, inputs: Sequence[Value], span: Span) -> None:
        """A large window over a smaller input is legal with padding, but usually a misreading: `dwconv(32, 3)`
        written channels-first, as PyTorch does, is a 32×32 kernel with stride 3. Small windows over small maps
        (SSD's 3×3 heads on 1×1, C3D's 3×3×3 on 2 frames) and transposed convolutions (which enlarge) are usual.
        Said once per line of the spec."""
        rule = onnx_rule(op.onnx_ops[0]) if op.onnx_ops else None
        if not kernel or not inputs or span in self.window_warned or (rule is not None and rule.rf is RF.TRANSPOSED):
            return
        sizes = inputs[0].shape[2:]
        if max(kernel) >= LARGE_WINDOW and all(k > s for k, s in zip(kernel, sizes, strict=False)):
            self.window_warned.add(span)
            self.diags.warning(codes.LARGE_KERNEL, f"the {fmt_dims(kernel)} window is larger than its "
                               f"{fmt_dims(sizes)} input; is the first argument the kernel size you meant?", span)

    # ---- arguments (archc/spec/bind.py binds; a mistake is reported here, with the block call sites)
    def bind_op(self, op: OpDef, call: ast.Call, ctx: _Ctx, first: ast.Args | None) -> BoundArgs:
        try:
            return bind.bind_op(op, call, first, evaluate=lambda e: self.eval(e, ctx), names=ctx.env,
                                defaults=ctx.defaults, report=self.error)
        except BindError as err:
            self.error(err.code, err.message, err.span, err.notes)
            raise _Stop() from None

    def bind_block(self, block: ast.BlockDef, call: ast.Call, ctx: _Ctx, first: ast.Args | None) -> BoundArgs:
        try:
            return bind.bind_block(block, call, first, lambda e: self.eval(e, ctx), names=ctx.env,
                                   layers=self.labels(ctx))
        except BindError as err:
            self.error(err.code, err.message, err.span, err.notes)
            raise _Stop() from None

    def labels(self, ctx: _Ctx) -> set[str]:
        """The layer names `@name` would find from here (a bare word naming one is a missing `@`)."""
        return set(ctx.scope.visible()) | {k for k, v in ctx.env.items() if isinstance(v, Value)}

    # ---- blocks and merges
    def recursion(self, block: ast.BlockDef, call: ast.Call) -> None:
        """Blocks nested MAX_DEPTH deep: report a recursion once, with its cycle, and unwind out of it."""
        names = [name for name, _ in self.call_sites]
        if block.name not in names:  # MAX_DEPTH different blocks, each using the next
            self.error(codes.BAD_ARGS, f"blocks nest more than {MAX_DEPTH} deep", call.span, sites=False)
            raise _Stop()
        last = len(names) - 1 - names[::-1].index(block.name)
        cycle = names[last:] + [block.name]
        outer = next(i for i, name in enumerate(names) if name in cycle)  # where the recursion was entered
        if block.name not in self.recursive:
            self.recursive.update(cycle)
            defined = {name: self.program.blocks[name] for name in cycle}
            notes = [note(f"'{name}' is defined here", b.span) for name, b in defined.items()]
            notes.append(note(f"'{names[outer]}' is first used here", self.call_sites[outer][1]))
            self.error(codes.BAD_ARGS, f"block '{block.name}' uses itself ({' → '.join(cycle)} → …) more than "
                       f"{MAX_DEPTH} deep; a recursive block needs an `if` that ends the recursion", call.span,
                       notes, sites=False)
        raise _Unwind(outer)

    def block(self, block: ast.BlockDef, call: ast.Call, cur: Value | Poison, ctx: _Ctx, path: str,
              first: ast.Args | None) -> Value | Poison:
        if len(self.frames) >= MAX_DEPTH:
            self.recursion(block, call)
        values = self.bind_block(block, call, ctx, first).values
        if cur is POISON:
            raise _Stop()
        env: dict[str, Any] = {"in_channels": cur.shape[1], "in_shape": cur.shape}
        self.call_sites.append((block.name, call.span))
        try:
            for p in block.params:
                if p.name in values:
                    env[p.name] = values[p.name]
                else:
                    assert p.default is not None  # bind_block refuses a call that leaves one without default out
                    env[p.name] = self.param_default(p, _Ctx(env, {}, ctx.scope))
            self.frames.append(BlockFrame(path, block.name, {p.name: env[p.name] for p in block.params}, call.span))
            try:
                out = self.body(block.body, cur, _Ctx(env, self._defaults(block.defaults), Scope(path, None)))
            finally:
                self.frames.pop()
        except _Unwind as unwind:
            if len(self.call_sites) - 1 == unwind.depth:  # back at the statement that entered the recursion
                raise _Stop() from None
            raise
        finally:
            self.call_sites.pop()
        result = cur if out is None else out
        self.by_path.setdefault(path, result)
        return result

    def param_default(self, p: ast.Param, ctx: _Ctx) -> Any:
        """A block parameter's default, in the block's environment. A default is an expression, not an argument:
        a bare word there is a name, and one that resembles none was probably meant as a string."""
        assert p.default is not None
        d = p.default
        if isinstance(d, ast.Var) and d.name not in ctx.env and not suggest(d.name, ctx.env):
            self.error(codes.UNKNOWN_NAME, f"undefined name '{d.name}' (a default is an expression: write a word "
                       f'as a string, "{d.name}")', d.span)
            raise _Stop()
        return self.eval(d, ctx)

    def merge(self, el: ast.Merge, cur: Value | Poison, ctx: _Ctx, name: str | None, name_scope: Scope) -> Value:
        op = ops.lookup(el.name)
        if op is None or not op.merge:
            merges = [o.keyword for o in ops.all_ops() if o.merge]
            self.error(codes.UNKNOWN_OP, f"'{el.name}' does not merge branches; use one of {', '.join(merges)}" +
                       suggest(el.name, merges), el.span)
            raise _Stop()
        bound = self.bind_op(op, ast.Call(el.name, el.args, el.span), ctx, None)
        branch_scope = ctx.scope.child(name.rsplit("/", 1)[-1]) if name else ctx.scope
        bctx = _Ctx(ctx.env, ctx.defaults, branch_scope)
        branches: list[tuple[Flow, ast.Stmt | ast.Body]] = []
        dropped = 0  # branches left out because no arm of their `if` applies
        for stmt in el.body.stmts:
            if isinstance(stmt, ast.LetStmt):
                self.stmt(stmt, cur, bctx)
                continue
            branch: ast.Stmt | ast.Body = stmt
            if isinstance(stmt, ast.IfStmt):  # one branch when chosen, none when no `else` applies
                chosen = self.choose(stmt, bctx)
                if chosen is None:
                    dropped += 1
                    continue
                branch = chosen
            out = self.body(branch, cur, bctx) if isinstance(branch, ast.Body) else self.stmt(branch, cur, bctx)
            branches.append((out, branch))
        if not branches:
            self.error(codes.BAD_ARGS, f"{el.name} has no branches" +
                       (" (no `if` in it applies)" if dropped else ""), el.span)
            raise _Stop()
        if any(v is POISON for v, _ in branches):
            raise _Stop()
        only = branches[0][0]
        if len(branches) == 1 and dropped and isinstance(only, Value):  # its `if`s left it one branch:
            return only  # nothing to merge, the branch passes through (any merge: add, mul, concat)
        ends = [(v, s) for v, s in branches if isinstance(v, Value)]  # each branch starts from `cur`: never None
        notes = tuple(note(f"branch {i + 1} ends in {fmt_dims(v.shape)}" +
                           (f" (from {v.producer.name})" if v.producer else f" (input '{v.name}')"),
                           v.span or s.span) for i, (v, s) in enumerate(ends))
        return self.make_node(op, bound, [v for v, _ in ends], el.span, name or self.auto_name(
            name_scope, op.keyword), notes)


def expand(program: Program, options: ModelOptions, diags: Collector) -> Graph:
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
