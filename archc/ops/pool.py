"""Pooling: max/average (1-D/2-D/3-D, ceil mode, padding) and global average/max."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from archc.ops.registry import (
    RF,
    Attrs,
    BuildRule,
    Built,
    EmitCtx,
    EmitRule,
    Kind,
    NodeView,
    OnnxRule,
    OpDef,
    OpError,
    Param,
    per_axis,
    positive,
    register,
    register_onnx,
    spatial,
)
from archc.ops.window import out_sizes, resolve_pads
from archc.shapes import Shape, numel


def _build_pool(op: str) -> BuildRule:
    def build(a: Attrs, shapes: Sequence[Shape]) -> Built:
        x = shapes[0]
        n = spatial(x, op)
        k = per_axis(a["kernel"], n, "kernel")
        s = per_axis(a["stride"] if a["stride"] is not None else a["kernel"], n, "stride")
        d = per_axis(a.get("dilation", 1), n, "dilation")
        positive(k, "kernel")
        positive(s, "stride")
        positive(d, "dilation")
        pads = resolve_pads(a["pad"], x[2:], k, s, d)
        for i in range(n):
            if max(pads[i], pads[n + i]) > k[i] // 2 and a["pad"] not in ("same",):
                raise OpError(f"padding {max(pads[i], pads[n + i])} is more than half the kernel {k[i]}; "
                              f"such windows would see only padding", attr="pad")
        size = out_sizes(x[2:], k, s, d, pads, ceil=a["ceil"])
        attrs: dict[str, Any] = dict(kernel_shape=k, strides=s, pads=pads, ceil_mode=int(a["ceil"]))
        if op == "maxpool":
            attrs["dilations"] = d
        else:
            attrs["count_include_pad"] = int(a["count_include_pad"])
        return Built((x[0], x[1], *size), (), attrs)
    return build


def _emit(op_type: str) -> EmitRule:
    def emit(ctx: EmitCtx, attrs: Attrs) -> None:
        onnx_attrs: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}
        ctx.node(op_type, [ctx.inputs[0]], **onnx_attrs)
    return emit


def _build_global(op: str) -> BuildRule:
    def build(a: Attrs, shapes: Sequence[Shape]) -> Built:
        x = shapes[0]
        n = spatial(x, op)
        return Built((x[0], x[1], *([1] * n)))
    return build


_COMMON = (Param("kernel", Kind.INTS), Param("stride", Kind.INTS, None, doc="defaults to the kernel"),
           Param("pad", Kind.PAD, 0), Param("ceil", Kind.BOOL, False))

register(OpDef("maxpool", "max pooling; stride defaults to the kernel size",
               (*_COMMON, Param("dilation", Kind.INTS, 1)), _build_pool("maxpool"), _emit("MaxPool"), ("MaxPool",)))
register(OpDef("avgpool", "average pooling; padding is excluded from the average unless count_include_pad",
               (*_COMMON, Param("count_include_pad", Kind.BOOL, False)), _build_pool("avgpool"),
               _emit("AveragePool"), ("AveragePool",)))
register(OpDef("gap", "global average pooling (to 1×1)", (), _build_global("gap"),
               lambda ctx, attrs: ctx.node("GlobalAveragePool", [ctx.inputs[0]]), ("GlobalAveragePool",),
               aliases=("global_avgpool",)))
register(OpDef("gmp", "global max pooling (to 1×1)", (), _build_global("gmp"),
               lambda ctx, attrs: ctx.node("GlobalMaxPool", [ctx.inputs[0]]), ("GlobalMaxPool",),
               aliases=("global_maxpool",)))


# ---- analysis of ONNX nodes -------------------------------------------------------------------------------------
def _window_flops(v: NodeView) -> int | None:
    n = numel(v.out_shapes[0])
    return None if n is None else n * math.prod(v.attrs.get("kernel_shape", (1,)))


def _input_flops(v: NodeView) -> int | None:
    return numel(v.in_shapes[0])


register_onnx(OnnxRule("MaxPool", "prod(kernel) comparisons per output element", _window_flops, rf=RF.WINDOW))
register_onnx(OnnxRule("AveragePool", "prod(kernel) adds/divide per output element", _window_flops, rf=RF.WINDOW))
register_onnx(OnnxRule("GlobalAveragePool", "one add per input element", _input_flops, rf=RF.GLOBAL))
register_onnx(OnnxRule("GlobalMaxPool", "one comparison per input element", _input_flops, rf=RF.GLOBAL))
