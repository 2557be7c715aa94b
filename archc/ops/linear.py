"""Fully connected layers."""
from __future__ import annotations

from archc.ops.registry import Built, Init, Kind, OpDef, OpError, Param, WeightSpec, fmt_shape, positive, register


def _build_dense(a, shapes):
    x = shapes[0]
    if len(x) != 2:
        raise OpError(f"dense needs a flat N×features input, got {fmt_shape(x)}; add `flatten` before it",
                      code="shape-mismatch")
    out = a["out"]
    positive(out, "out")
    ws = [WeightSpec("weight", (out, x[1]), Init.FAN, fan_in=x[1], fan_out=out)]
    if a["bias"]:
        ws.append(WeightSpec("bias", (out,), Init.ZEROS))
    return Built((x[0], out), tuple(ws))


def _emit_dense(ctx, attrs):
    inputs = [ctx.inputs[0], ctx.weight("weight")] + ([ctx.weight("bias")] if ctx.has_weight("bias") else [])
    ctx.node("Gemm", inputs, transB=1)


register(OpDef("dense", "fully connected layer y = x·Wᵀ + b (W stored out×in, as in PyTorch)",
               (Param("out", Kind.INT), Param("bias", Kind.BOOL, True)), _build_dense, _emit_dense, ("Gemm",),
               aliases=("fc", "linear")))
