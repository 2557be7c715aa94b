"""Convolutions: conv (1-D/2-D/3-D, grouped, dilated), dwconv (depthwise), deconv (transposed), local (a kernel per
output pixel)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from archc.ops.registry import (
    REQUIRED,
    RF,
    Attrs,
    Built,
    CostRule,
    EmitCtx,
    EmitRule,
    ExplainRule,
    Init,
    Kind,
    NodeView,
    OnnxRule,
    OpDef,
    OpError,
    Param,
    WeightSpec,
    dims,
    per_axis,
    positive,
    register,
    register_onnx,
    spatial,
)
from archc.ops.window import out_sizes, resolve_pads
from archc.shapes import Shape, numel


def _kernel_weights(out: int, cin_per_group: int, groups: int, kernel: Shape, bias: bool,
                    transposed: bool = False) -> tuple[WeightSpec, ...]:
    k = math.prod(kernel)
    shape = (cin_per_group * groups, out // groups, *kernel) if transposed else (out, cin_per_group, *kernel)
    ws = [WeightSpec("weight", shape, Init.FAN, fan_in=cin_per_group * k, fan_out=out // groups * k)]
    if bias:
        ws.append(WeightSpec("bias", (out,), Init.ZEROS))
    return tuple(ws)


def _common(a: Attrs, x: Shape, op: str) -> tuple[int, Shape, Shape, Shape]:
    """Spatial rank, kernel, strides and dilations, checked."""
    n = spatial(x, op)
    k = per_axis(a["kernel"], n, "kernel")
    s = per_axis(a["stride"], n, "stride")
    d = per_axis(a["dilation"], n, "dilation")
    positive(k, "kernel")
    positive(s, "stride")
    positive(d, "dilation")
    return n, k, s, d


def build_conv(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    n, k, s, d = _common(a, x, "conv")
    cin, out, g = x[1], a["out"], a["groups"]
    positive(out, "out")
    positive(g, "groups")
    if cin % g:
        raise OpError(f"groups={g} does not divide the {cin} input channels", attr="groups")
    if out % g:
        raise OpError(f"groups={g} does not divide the {out} output channels", attr="groups")
    pads = resolve_pads(a["pad"], x[2:], k, s, d)
    size = out_sizes(x[2:], k, s, d, pads)
    return Built((x[0], out, *size), _kernel_weights(out, cin // g, g, k, a["bias"]),
                 dict(kernel_shape=k, strides=s, pads=pads, dilations=d, group=g))


def build_dwconv(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    spatial(x, "dwconv")
    positive(a["multiplier"], "multiplier")
    return build_conv({**a, "out": x[1] * a["multiplier"], "groups": x[1]}, shapes)


def build_deconv(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    n, k, s, d = _common(a, x, "deconv")
    cin, out, g = x[1], a["out"], a["groups"]
    positive(out, "out")
    positive(g, "groups")
    if cin % g or out % g:
        raise OpError(f"groups={g} must divide both the {cin} input and {out} output channels", attr="groups")
    pads = resolve_pads(a["pad"], x[2:], k, s, d) if a["pad"] != "same" else None
    op = per_axis(a["output_padding"], n, "output_padding")
    positive(op, "output_padding", allow_zero=True)
    for i in range(n):
        if op[i] >= max(s[i], d[i]):
            raise OpError(f"output_padding {op[i]} must be smaller than the stride or the dilation",
                          attr="output_padding")
    if pads is None:  # "same" for a transposed conv: output = input × stride
        pads_b, pads_e = [], []
        for i in range(n):
            total = d[i] * (k[i] - 1) + 1 + op[i] - s[i]
            if total < 0:
                raise OpError("pad=same needs a kernel at least as large as the stride", attr="pad")
            pads_b.append(total // 2)
            pads_e.append(total - total // 2)
        pads = tuple(pads_b + pads_e)
    size = []
    for i in range(n):
        o = (x[2 + i] - 1) * s[i] - pads[i] - pads[n + i] + d[i] * (k[i] - 1) + op[i] + 1
        if o <= 0:
            raise OpError(f"output would be empty: padding {pads[i]}+{pads[n + i]} removes the whole "
                          f"{(x[2 + i] - 1) * s[i] + d[i] * (k[i] - 1) + 1}-pixel output", code="empty-output")
        size.append(o)
    return Built((x[0], out, *size), _kernel_weights(out, cin // g, g, k, a["bias"], transposed=True),
                 dict(kernel_shape=k, strides=s, pads=pads, dilations=d, group=g, output_padding=op))


def _emit(op_type: str) -> EmitRule:
    def emit(ctx: EmitCtx, attrs: Attrs) -> None:
        inputs = [ctx.inputs[0], ctx.weight("weight")]
        if ctx.has_weight("bias"):
            inputs.append(ctx.weight("bias"))
        onnx_attrs: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}
        ctx.node(op_type, inputs, **onnx_attrs)
    return emit


_WINDOW = (
    Param("stride", Kind.INTS, 1),
    Param("pad", Kind.PAD, "same"),
    Param("dilation", Kind.INTS, 1),
)

register(OpDef(
    "conv", "convolution (1-D/2-D/3-D from the input's rank); groups=in_channels is depthwise",
    (Param("out", Kind.INT, REQUIRED, doc="output channels"), Param("kernel", Kind.INTS), *_WINDOW,
     Param("groups", Kind.INT, 1), Param("bias", Kind.BOOL, True)),
    build_conv, _emit("Conv"), ("Conv",)))

register(OpDef(
    "dwconv", "depthwise convolution: one filter (or `multiplier` filters) per input channel",
    (Param("kernel", Kind.INTS), *_WINDOW, Param("multiplier", Kind.INT, 1), Param("bias", Kind.BOOL, True)),
    build_dwconv, _emit("Conv"), ("Conv",)))

register(OpDef(
    "deconv", "transposed convolution; output = (in−1)·stride − pads + dilation·(kernel−1) + output_padding + 1",
    (Param("out", Kind.INT), Param("kernel", Kind.INTS), Param("stride", Kind.INTS, 1), Param("pad", Kind.PAD, 0),
     Param("output_padding", Kind.INTS, 0), Param("dilation", Kind.INTS, 1), Param("groups", Kind.INT, 1),
     Param("bias", Kind.BOOL, True)),
    build_deconv, _emit("ConvTranspose"), ("ConvTranspose",), aliases=("conv_transpose",)))


def build_local(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    if len(x) != 4:
        raise OpError(f"local takes an N×C×H×W input, got rank {len(x)}", code="bad-rank")
    _, k, s, d = _common({**a, "dilation": 1}, x, "local")
    out = a["out"]
    positive(out, "out")
    pads = resolve_pads(a["pad"], x[2:], k, s, d)
    oh, ow = out_sizes(x[2:], k, s, d, pads)
    places, taps = oh * ow, x[1] * k[0] * k[1]
    weights = [WeightSpec("weight", (places, out, x[1], *k), Init.FAN, fan_in=taps, fan_out=out * k[0] * k[1])]
    if a["bias"]:
        weights.append(WeightSpec("bias", (out, oh, ow), Init.ZEROS))
    return Built((x[0], out, oh, ow), tuple(weights), dict(kernel=k, strides=s, pads=pads, size=(oh, ow)))


def _emit_local(ctx: EmitCtx, attrs: Attrs) -> None:
    """A locally connected layer (YOLO v1's [local]): a k×k window per output pixel, each place its own kernel.
    ONNX has no op for it, so: the k·k strided views of the padded input stacked as N×C×k²×OH×OW (Darknet's
    im2col order: channel, then window row and column), one matrix product per place (OH·OW × F × C·k² by
    C·k² × N), and the bias of every output element."""
    import numpy as np
    n, c = ctx.in_shapes[0][:2]
    (kh, kw), (sh, sw), pads, (oh, ow) = attrs["kernel"], attrs["strides"], attrs["pads"], attrs["size"]
    x = ctx.inputs[0]
    if any(pads):
        x = ctx.node("Pad", [x, ctx.const("pads", np.array([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]))],
                     output=ctx.sub("pad"), name=ctx.sub("pad"))
    axes, steps = ctx.const("axes", np.array([2, 3])), ctx.const("steps", np.array([sh, sw]))
    two = ctx.const("unsqueeze", np.array([2]))
    views = []
    for dy in range(kh):
        for dx in range(kw):
            view = ctx.node("Slice", [x, ctx.const(f"start{dy}_{dx}", np.array([dy, dx])),
                                      ctx.const(f"end{dy}_{dx}", np.array([dy + sh * (oh - 1) + 1,
                                                                           dx + sw * (ow - 1) + 1])),
                                      axes, steps],
                            output=ctx.sub(f"view{dy}_{dx}"), name=ctx.sub(f"view{dy}_{dx}"))
            views.append(ctx.node("Unsqueeze", [view, two], output=ctx.sub(f"tap{dy}_{dx}"),
                                  name=ctx.sub(f"tap{dy}_{dx}")))
    stacked = ctx.node("Concat", views, output=ctx.sub("taps"), name=ctx.sub("taps"), axis=2)
    columns = ctx.reshape(stacked, (n, c * kh * kw, oh * ow), "columns")
    columns = ctx.node("Transpose", [columns], output=ctx.sub("per_place"), name=ctx.sub("per_place"),
                       perm=[2, 1, 0])
    kernels = ctx.reshape(ctx.weight("weight"), (oh * ow, -1, c * kh * kw), "kernels")
    product = ctx.node("MatMul", [kernels, columns], output=ctx.sub("matmul"), name=ctx.sub("matmul"))
    back = ctx.node("Transpose", [product], output=ctx.sub("back"), name=ctx.sub("back"), perm=[2, 1, 0])
    if ctx.has_weight("bias"):
        shaped = ctx.reshape(back, (n, -1, oh, ow), "shaped")
        ctx.node("Add", [shaped, ctx.weight("bias")])
    else:
        ctx.reshape(back, (n, -1, oh, ow), None)


register(OpDef(
    "local", "locally connected 2-D layer (YOLO v1): a convolution whose kernel differs at every output pixel",
    (Param("out", Kind.INT, REQUIRED, doc="output channels"), Param("kernel", Kind.INTS),
     Param("stride", Kind.INTS, 1), Param("pad", Kind.PAD, "same"), Param("bias", Kind.BOOL, True)),
    build_local, _emit_local, ("Pad", "Slice", "Unsqueeze", "Concat", "Reshape", "Transpose", "MatMul", "Add")))


# ---- analysis of ONNX nodes -------------------------------------------------------------------------------------
def conv_macs(v: NodeView) -> int | None:
    """Each output element: C_in/groups · prod(kernel) multiply-accumulates."""
    x, y = v.in_shapes[0], v.out_shapes[0]
    if x is None or y is None:
        return None
    return math.prod(y) * (x[1] // v.attrs.get("group", 1)) * math.prod(v.kernel())


def deconv_macs(v: NodeView) -> int | None:
    """Each input element is scattered to C_out/groups · prod(kernel) outputs."""
    x, y = v.in_shapes[0], v.out_shapes[0]
    if x is None or y is None:
        return None
    return math.prod(x) * (y[1] // v.attrs.get("group", 1)) * math.prod(v.kernel())


def _explain(transposed: bool) -> ExplainRule:
    def explain(v: NodeView, params: int, nontrainable: int, macs: int | None) -> list[str]:
        x, y = v.in_shapes[0], v.out_shapes[0]
        if x is None or y is None:  # unknown shapes: nothing to write the arithmetic with
            return []
        g, k = v.attrs.get("group", 1), v.kernel()
        bias = len(v.in_shapes) > 2 and v.in_shapes[2] is not None
        lines = [f"parameters: F·F·C_in/groups·C_out{' + C_out' if bias else ''} = {dims(k)}·{x[1]}/{g}·{y[1]}"
                 + (f" + {y[1]}" if bias else "") + f" = {params:,}"]
        if macs is None:
            return lines
        if transposed:
            lines.append(f"MACs: every input element is scattered to F·F·C_out/groups outputs: {dims(x)} · "
                         f"{dims(k)}·{y[1]}/{g} = {macs:,}")
        else:
            batch = f"{y[0]}·" if y[0] > 1 else ""
            lines.append(f"MACs: N·H_out·W_out·C_out · F·F·C_in/groups = {batch}{dims(y[2:])}·{y[1]} · "
                         f"{dims(k)}·{x[1]}/{g} = {macs:,}")
        return lines
    return explain


def _flops_with_bias(macs: CostRule) -> CostRule:
    def rule(v: NodeView) -> int | None:
        m = macs(v)
        if m is None:
            return None
        bias = numel(v.out_shapes[0]) if len(v.in_shapes) > 2 and v.in_shapes[2] is not None else 0
        return None if bias is None else 2 * m + bias
    return rule


register_onnx(OnnxRule("Conv", "2·MACs, plus one add per output element for the bias", _flops_with_bias(conv_macs),
                       conv_macs, RF.WINDOW, _explain(transposed=False), trainable_slots=(1, 2)))
register_onnx(OnnxRule("ConvTranspose", "2·MACs, plus one add per output element for the bias",
                       _flops_with_bias(deconv_macs), deconv_macs, RF.TRANSPOSED, _explain(transposed=True),
                       trainable_slots=(1, 2)))
