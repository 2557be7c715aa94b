"""Fully connected layers."""
from __future__ import annotations

import math
from collections.abc import Sequence

from archc.ops.registry import (
    RF,
    Attrs,
    Built,
    EmitCtx,
    Init,
    Kind,
    NodeView,
    OnnxRule,
    OpDef,
    OpError,
    Param,
    WeightSpec,
    positive,
    register,
    register_onnx,
)
from archc.shapes import Shape, fmt_dims, numel


def _build_dense(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    if len(x) != 2:
        raise OpError(f"dense needs a flat N×features input, got {fmt_dims(x)}; add `flatten` before it",
                      code="shape-mismatch")
    out = a["out"]
    positive(out, "out")
    ws = [WeightSpec("weight", (out, x[1]), Init.FAN, fan_in=x[1], fan_out=out)]
    if a["bias"]:
        ws.append(WeightSpec("bias", (out,), Init.ZEROS))
    return Built((x[0], out), tuple(ws))


def _emit_dense(ctx: EmitCtx, attrs: Attrs) -> None:
    inputs = [ctx.inputs[0], ctx.weight("weight")] + ([ctx.weight("bias")] if ctx.has_weight("bias") else [])
    ctx.node("Gemm", inputs, transB=1)


register(OpDef("dense", "fully connected layer y = x·Wᵀ + b (W stored out×in, as in PyTorch)",
               (Param("out", Kind.INT), Param("bias", Kind.BOOL, True)), _build_dense, _emit_dense, ("Gemm",),
               aliases=("fc", "linear")))


# ---- analysis of ONNX nodes -------------------------------------------------------------------------------------
def gemm_macs(v: NodeView) -> int | None:
    """Y = A·B (+C): M·N·K multiply-accumulates."""
    a, y = v.in_shapes[0], v.out_shapes[0]
    if a is None or y is None:
        return None
    k = a[0] if v.attrs.get("transA", 0) else a[1]
    return y[0] * y[1] * k


def matmul_macs(v: NodeView) -> int | None:
    a, y = v.in_shapes[0], v.out_shapes[0]
    if a is None or y is None:
        return None
    return math.prod(y) * a[-1]


def _explain_dense(v: NodeView, params: int, nontrainable: int, macs: int | None) -> list[str]:
    x, y = v.in_shapes[0], v.out_shapes[0]
    if x is None or y is None:  # unknown shapes: nothing to write the arithmetic with
        return []
    lines = []
    if params:
        bias = len(v.in_shapes) > 2 and v.in_shapes[2] is not None
        lines.append(f"parameters: inputs·outputs{' + outputs' if bias else ''} = {x[-1]}·{y[-1]}"
                     + (f" + {y[-1]}" if bias else "") + f" = {params:,}")
    if macs is not None:
        lines.append(f"MACs: rows·outputs·inputs = {math.prod(y[:-1])}·{y[-1]}·{x[-1]} = {macs:,}")
    return lines


def _gemm_flops(v: NodeView) -> int | None:
    m = gemm_macs(v)
    if m is None:
        return None
    bias = numel(v.out_shapes[0]) if len(v.in_shapes) > 2 and v.in_shapes[2] is not None else 0
    return None if bias is None else 2 * m + bias


def _matmul_flops(v: NodeView) -> int | None:
    m = matmul_macs(v)
    return None if m is None else 2 * m


register_onnx(OnnxRule("Gemm", "2·MACs, plus one add per output element for the bias", _gemm_flops, gemm_macs,
                       RF.GLOBAL, _explain_dense, trainable_slots=(1, 2)))
register_onnx(OnnxRule("MatMul", "2·MACs", _matmul_flops, matmul_macs, RF.GLOBAL, _explain_dense,
                       trainable_slots=(0, 1)))
