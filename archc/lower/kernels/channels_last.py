"""Channels-last islands of a CNN (ConvNeXt's blocks) carried in NCHW, so that archc's blocked layout covers them.

ConvNeXt (and the networks built like it) writes each block as

    x (NCHW) → depthwise conv → permute to NHWC → LayerNorm over C → x @ W1 + b1 → GELU → x @ W2 + b2 → × γ
      → permute to NCHW → + x

Left as it is, each permute is a transpose kernel, the matrix products are GEMMs over H·W rows (matmul.py turns them
into 1×1 convolutions through another pair of transposes), and the LayerNorm and GELU run as kernels of their own
between them: ConvNeXt-T spent 20 of its 55 ms outside its convolutions. Yet everything between the two permutes is
per pixel along C. So each permute back to NCHW, and each such matrix product, asks for the NCHW *view* of its
input, found by walking back through the island:

* `permute(x, to NHWC)` is `x`;
* an elementwise op is the same op on its operands' views (a constant along C becomes 1×C×1×1);
* `layer_norm(x, axes=[-1])` is the normalization over axis 1 of the view, written out (mean, variance, rsqrt,
  γ, β) so that the layout pass runs it on the blocked tensor (a channel reduction per pixel, layout.py);
* `x @ W` (W constant, K × N) is the 1×1 convolution of the view with W^T.

The NHWC ops left without a reader are dropped by dead-code elimination; what still reads NHWC gets a permute.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tvm
from tvm import relax

from archc.lower.kernels.optable import Kind, is_const, is_op_call, rule_of, shape_of

TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
PERMUTE, LAYER_NORM = "relax.permute_dims", "relax.nn.layer_norm"  # the island's edges (not layout-pass ops)


def channels_first(mod: Any) -> Any:
    """The module with the channels-last islands of `main` rewritten (above); `mod` itself where there is none."""
    rewriter = _Rewriter(mod)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function) and gv.name_hint == "main":
            rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
    if not rewriter.count:
        return mod
    return tvm.transform.Sequential([relax.transform.CanonicalizeBindings(),
                                     relax.transform.DeadCodeElimination()])(rewriter.builder_.get())


def _axes(call: Any) -> list[int] | None:
    axes = call.attrs.axes
    return None if axes is None else [int(a) for a in axes]


@relax.expr_functor.mutator
class _Rewriter(relax.PyExprMutator):
    def __init__(self, mod: Any) -> None:
        super().__init__(mod)
        self.views: dict[Any, Any] = {}  # var → its NCHW view (None: it has none)
        self.count = 0

    def visit_call_(self, call: Any) -> Any:
        call = self.visit_expr_post_order(call)
        out = self._rewrite(call)
        if out is None:
            return call
        self.count += 1
        return out

    def _rewrite(self, call: Any) -> Any:
        if not is_op_call(call):
            return None
        name = call.op.name
        if name == PERMUTE and _axes(call) == TO_NCHW:
            return self.view(call.args[0])
        if name == "relax.matmul" and len(call.args) == 2:
            x, w = call.args
            if len(shape_of(x)) != 4 or not is_const(w) or len(w.value.shape) != 2 or str(x.ty.dtype) != "float32":
                return None
            view = self.view(x)
            if view is None:
                return None
            k, n = (int(d) for d in w.value.shape)
            kernel = np.ascontiguousarray(w.value.numpy().T.reshape(n, k, 1, 1))
            conv = self.builder_.emit(relax.op.nn.conv2d(view, relax.const(kernel), out_dtype="float32"))
            return relax.op.permute_dims(conv, TO_NHWC)  # read NHWC by whatever is not rewritten
        return None

    def view(self, x: Any) -> Any:
        """The NCHW value whose NHWC permutation `x` is, emitted where it has to be computed; None if none."""
        if not isinstance(x, relax.Var) or len(shape_of(x)) != 4:
            return None
        if x in self.views:
            return self.views[x]
        self.views[x] = None  # until found
        try:
            e = self.lookup_binding(x)
        except Exception:  # noqa: BLE001 - a parameter: no binding
            e = None
        found = self._view_of(x, e) if e is not None and is_op_call(e) else None
        self.views[x] = found
        return found

    def _view_of(self, x: Any, e: Any) -> Any:
        name, bb = e.op.name, self.builder_
        channels = shape_of(x)[3]
        kind = getattr(rule_of(e), "kind", None)  # elementwise ops: the layout table's (optable.py)
        if name == PERMUTE and _axes(e) == TO_NHWC and isinstance(e.args[0], relax.Var):
            return e.args[0]
        if kind is Kind.UNARY and len(e.args) == 1 and shape_of(e.args[0]) == shape_of(x):
            view = self.view(e.args[0])
            return None if view is None else bb.emit(relax.Call(e.op, [view], e.attrs, e.ty_args))
        if kind is Kind.BINARY:
            args = [self._operand(a, shape_of(x)) for a in e.args]
            if any(a is None for a in args) or all(is_const(a) for a in args):
                return None
            return bb.emit(relax.Call(e.op, args, e.attrs, e.ty_args))
        if name == LAYER_NORM and _axes(e) in ([-1], [3]) and all(is_const(a) for a in e.args[1:]):
            view = self.view(e.args[0])
            if view is None:
                return None
            gamma, beta = (_along_channels(a, channels) for a in e.args[1:])
            if gamma is None or beta is None:
                return None
            mean = bb.emit(relax.op.mean(view, [1], keepdims=True))
            centred = bb.emit(relax.op.subtract(view, mean))
            variance = bb.emit(relax.op.mean(relax.op.multiply(centred, centred), [1], keepdims=True))
            scale = bb.emit(relax.op.rsqrt(relax.op.add(variance, relax.const(float(e.attrs.epsilon), "float32"))))
            normed = bb.emit(relax.op.multiply(centred, scale))
            return bb.emit(relax.op.add(relax.op.multiply(normed, gamma), beta))
        return None

    def _operand(self, a: Any, shape: tuple[int, ...]) -> Any:
        """An elementwise op's operand in NCHW: a tensor of the op's NHWC shape as its view, a constant as a
        scalar or one value per channel; None for anything else."""
        if is_const(a):
            return a if a.value.numpy().size == 1 else _along_channels(a, shape[3])
        return self.view(a) if shape_of(a) == shape else None


def _along_channels(c: Any, channels: int) -> Any:
    """A constant of one value per channel along the last axis (C, or 1×…×C) as 1×C×1×1; None otherwise."""
    values = c.value.numpy()
    if values.shape[-1:] != (channels,) or values.size != channels:
        return None
    return relax.const(np.ascontiguousarray(values.reshape(1, channels, 1, 1)))
