"""A matrix product of many rows by constant weights, run as a 1×1 convolution on archc's blocked kernels.

`x @ W` with W a constant K × N and x holding M ≥ 16 rows of K (ConvNeXt's and Swin's pointwise MLPs on NHWC
tensors, ViT's projections and MLP on its tokens, a 1×1 convolution written as MatMul) is a GEMM. TVM's own kernel
for it is untuned, and archc's dense schedule (dense.py) is a matrix-vector product: it streams all of W once per
row. A 1×1 convolution over M pixels computes the same sums, and archc's convolution kernel is register-tiled
(reg_n pixels × oc_tile channel blocks kept in registers, the packed weights broadcast into FMAs) with
configurations from the shipped tables or the search. So, before the layout plan:

    x [.., K] → rows [M, K] → zero-pad to M' rows (a multiple of 16) → [1, K, M'/16, 16] (NCHW: M' pixels)
      → conv2d 1×1 with weights W^T [N, K, 1, 1] → [1, N, M'/16, 16] → rows [M, N] → [.., N]

The layout pass then blocks the convolution like any other (its transposes fuse into the layout transforms on
either side). A batch-1 fully connected layer (M < 16) stays a dense layer.
"""
from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import Any

import numpy as np
from tvm import relax

from archc.lower.kernels.optable import is_const, is_op_call, shape_of

ROWS = 16  # fewer rows: a matrix-vector product, dense.py's
_WIDTH = 16  # pixels per row of the image the rows become: reg_n divides it (4, 8, 16)


def matmul_as_conv(mod: Any) -> Any:
    """The module with each such matmul in `main` rewritten (above); `mod` itself where none is."""
    return rewrite_calls(mod, _as_conv)


def rewrite_calls(mod: Any, rewrite: Callable[[Any, Any], Any]) -> Any:
    """The module with each call in `main` that `rewrite(block_builder, call)` replaces (it returns the new
    expression, or None to keep the call) replaced; `mod` itself where none is."""
    count = [0]

    @relax.expr_functor.mutator
    class Rewrite(relax.PyExprMutator):
        def visit_call_(self, call: Any) -> Any:
            call = self.visit_expr_post_order(call)
            out = rewrite(self.builder_, call)
            if out is None:
                return call
            count[0] += 1
            return out

    rewriter = Rewrite(mod)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function) and gv.name_hint == "main":
            rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
    return rewriter.builder_.get() if count[0] else mod


def _as_conv(bb: Any, call: Any) -> Any:
    if not is_op_call(call) or call.op.name != "relax.matmul" or len(call.args) != 2:
        return None
    x, w = call.args
    shape = shape_of(x)
    if not is_const(w) or len(w.value.shape) != 2 or len(shape) < 2 or str(x.ty.dtype) != "float32":
        return None
    k, n = (int(d) for d in w.value.shape)
    rows = prod(shape[:-1])
    if shape[-1] != k or rows < ROWS:
        return None
    padded = -(-rows // _WIDTH) * _WIDTH
    op = relax.op
    t = bb.emit(op.reshape(x, [rows, k]))
    if padded != rows:
        t = bb.emit(op.nn.pad(t, [0, padded - rows, 0, 0]))
    t = bb.emit(op.reshape(op.permute_dims(t, [1, 0]), [1, k, padded // _WIDTH, _WIDTH]))
    kernel = np.ascontiguousarray(w.value.numpy().T.reshape(n, k, 1, 1))
    y = bb.emit(op.nn.conv2d(t, relax.const(kernel), out_dtype=str(call.ty.dtype)))
    y = bb.emit(op.permute_dims(op.reshape(y, [n, padded]), [1, 0]))
    if padded != rows:
        y = bb.emit(op.strided_slice(y, axes=[0], begin=[0], end=[rows]))
    return op.reshape(y, [*shape[:-1], n])
