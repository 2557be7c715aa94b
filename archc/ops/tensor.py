"""Tensor plumbing: flatten, reshape, pad, upsample, channel shuffle, reorg, slice, dropout, identity."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from archc.ops.registry import (
    RF,
    Attrs,
    Built,
    EmitCtx,
    Kind,
    NodeView,
    OnnxRule,
    OpDef,
    OpError,
    Param,
    register,
    register_onnx,
    spatial,
)
from archc.shapes import Shape, fmt_dims, numel


def _build_flatten(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    axis = a["axis"]
    if not 0 < axis <= len(x):
        raise OpError(f"axis {axis} is out of range for a rank-{len(x)} input", attr="axis")
    return Built((math.prod(x[:axis]), math.prod(x[axis:])), (), {"axis": axis})


register(OpDef("flatten", "flatten every axis from `axis` on (default: keep the batch)", (Param("axis", Kind.INT, 1),),
               _build_flatten, lambda ctx, attrs: ctx.node("Flatten", [ctx.inputs[0]], axis=attrs["axis"]),
               ("Flatten",)))


def _build_reshape(a: Attrs, shapes: Sequence[Shape]) -> Built:
    """The batch axis is kept; `shape` gives the rest, with at most one −1."""
    x = shapes[0]
    dims = tuple(a["shape"]) if not isinstance(a["shape"], int) else (a["shape"],)
    if sum(d == -1 for d in dims) > 1 or any(d == 0 or d < -1 for d in dims):
        raise OpError(f"reshape sizes must be positive with at most one -1, got {dims}", attr="shape")
    rest = math.prod(x[1:])
    known = math.prod(d for d in dims if d != -1)
    if -1 in dims:
        if rest % known:
            raise OpError(f"cannot reshape {fmt_dims(x)} to N×{dims}: {rest} elements per sample", attr="shape")
        dims = tuple(rest // known if d == -1 else d for d in dims)
    elif known != rest:
        raise OpError(f"cannot reshape {fmt_dims(x)} ({rest} elements per sample) to {fmt_dims(dims)} ({known})",
                      attr="shape", code="shape-mismatch")
    return Built((x[0], *dims), (), {"shape": (x[0], *dims)})


register(OpDef("reshape", "reshape each sample; the batch axis is kept (e.g. reshape(256, 6, 6))",
               (Param("shape", Kind.INTS, varargs=True),), _build_reshape,
               lambda ctx, attrs: ctx.reshape(ctx.inputs[0], attrs["shape"], None), ("Reshape",)))


def _build_pad(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    n = spatial(x, "pad")
    p = a["pads"]
    if isinstance(p, int):
        pads = (p,) * (2 * n)
    elif len(p) == n:
        pads = tuple(p) + tuple(p)
    elif len(p) == 2 * n:
        pads = tuple(p)
    else:
        raise OpError(f"pads has {len(p)} values; give 1, {n} (one per axis) or {2 * n} (begins, ends)", attr="pads")
    if any(v < 0 for v in pads):
        raise OpError("pads must be non-negative (use slice to crop)", attr="pads")
    if a["mode"] == "reflect" and any(pads[i] >= x[2 + i] or pads[n + i] >= x[2 + i] for i in range(n)):
        raise OpError("reflect padding must be smaller than the input size", attr="pads")
    return Built((x[0], x[1], *(x[2 + i] + pads[i] + pads[n + i] for i in range(n))), (),
                 {"pads": (0, 0, *pads[:n], 0, 0, *pads[n:]), "mode": a["mode"], "value": float(a["value"])})


def _emit_pad(ctx: EmitCtx, attrs: Attrs) -> None:
    pads = ctx.const("pads", np.array(attrs["pads"], dtype=np.int64))
    value = ctx.const("value", np.array(attrs["value"], dtype=ctx.np_dtype))
    ctx.node("Pad", [ctx.inputs[0], pads, value], mode=attrs["mode"])


register(OpDef("pad", "pad the spatial axes (constant, reflect or edge)",
               (Param("pads", Kind.INTS), Param("mode", Kind.STR, "constant", choices=("constant", "reflect", "edge")),
                Param("value", Kind.FLOAT, 0.0)), _build_pad, _emit_pad, ("Pad",)))


def _build_upsample(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    n = spatial(x, "upsample")
    scale = a["scale"]
    scales = (float(scale),) * n if isinstance(scale, (int, float)) else tuple(float(s) for s in scale)
    if len(scales) != n or any(s <= 0 for s in scales):
        raise OpError(f"scale needs one positive factor or one per spatial axis ({n})", attr="scale")
    size = tuple(int(math.floor(x[2 + i] * scales[i])) for i in range(n))
    if a["mode"] == "nearest" and a["align_corners"]:
        raise OpError("align_corners applies to bilinear/linear upsampling only", attr="align_corners")
    return Built((x[0], x[1], *size), (), {"scales": (1.0, 1.0, *scales), "mode": a["mode"],
                                            "align_corners": a["align_corners"]})


def _emit_upsample(ctx: EmitCtx, attrs: Attrs) -> None:
    scales = ctx.const("scales", np.array(attrs["scales"], dtype=np.float32))
    kw: dict[str, Any]
    if attrs["mode"] == "nearest":  # PyTorch's nearest: floor(out · in/out)
        kw = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        kw = dict(mode="linear",
                  coordinate_transformation_mode="align_corners" if attrs["align_corners"] else "pytorch_half_pixel")
    ctx.node("Resize", [ctx.inputs[0], "", scales], **kw)


register(OpDef("upsample", "resize by a scale factor (nearest or bilinear/linear)",
               (Param("scale", Kind.FLOATS, 2), Param("mode", Kind.STR, "nearest", choices=("nearest", "bilinear",
                                                                                             "linear")),
                Param("align_corners", Kind.BOOL, False)), _build_upsample, _emit_upsample, ("Resize",)))


def _build_shuffle(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    g = a["groups"]
    if g <= 0 or x[1] % g:
        raise OpError(f"groups={g} does not divide the {x[1]} channels", attr="groups")
    return Built(x, (), {"groups": g})


def _emit_shuffle(ctx: EmitCtx, attrs: Attrs) -> None:
    """N×C×… → N×g×(C/g)×… → swap the two channel axes → N×C×… (ShuffleNet)."""
    x = ctx.in_shapes[0]
    g = attrs["groups"]
    split = ctx.reshape(ctx.inputs[0], (x[0], g, x[1] // g, *x[2:]), "split")
    perm = [0, 2, 1] + list(range(3, len(x) + 1))
    swapped = ctx.node("Transpose", [split], output=ctx.sub("transpose"), name=ctx.sub("transpose"), perm=perm)
    ctx.reshape(swapped, x, None)


register(OpDef("channel_shuffle", "ShuffleNet's channel shuffle across `groups`", (Param("groups", Kind.INT),),
               _build_shuffle, _emit_shuffle, ("Reshape", "Transpose")))


def _build_reorg(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x, s = shapes[0], a["stride"]
    if len(x) != 4:
        raise OpError(f"reorg needs an N×C×H×W input, got {fmt_dims(x)}", code="bad-rank")
    if s < 1 or x[1] % (s * s) or x[2] % s or x[3] % s:
        raise OpError(f"stride {s} must divide the height and width ({x[2]}×{x[3]}) and its square the {x[1]} "
                      "channels", attr="stride")
    return Built((x[0], x[1] * s * s, x[2] // s, x[3] // s), (), {"stride": s})


def _emit_reorg(ctx: EmitCtx, attrs: Attrs) -> None:
    """Darknet's reorg exactly as its layer runs it (`reorg_cpu(..., forward=0)`), which is not ONNX's
    SpaceToDepth: the C×H×W input is read as (C/s²)×(H·s)×(W·s), gathered into C×H×W, and that buffer is the
    output (C·s²)×(H/s)×(W/s). As N×(C/s²)×H×s×W×s → N×s×s×(C/s²)×H×W → the output shape."""
    n, c, h, w = ctx.in_shapes[0]
    s = attrs["stride"]
    split = ctx.reshape(ctx.inputs[0], (n, c // (s * s), h, s, w, s), "split")
    moved = ctx.node("Transpose", [split], output=ctx.sub("transpose"), name=ctx.sub("transpose"),
                     perm=[0, 3, 5, 1, 2, 4])
    ctx.reshape(moved, (n, c * s * s, h // s, w // s), None)


register(OpDef("reorg", "Darknet's reorg (YOLO v2's passthrough): stride×stride blocks of pixels into channels, "
               "in Darknet's own order", (Param("stride", Kind.INT, 2),), _build_reorg, _emit_reorg,
               ("Reshape", "Transpose")))


def _build_slice(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    axis = a["axis"] % len(x) if -len(x) <= a["axis"] < len(x) else None
    if axis is None:
        raise OpError(f"axis {a['axis']} is out of range for a rank-{len(x)} input", attr="axis")
    start, end = a["start"], a["end"] if a["end"] is not None else x[axis]
    if not 0 <= start < end <= x[axis]:
        raise OpError(f"slice [{start}, {end}) is empty or outside the {x[axis]} entries of axis {axis}", attr="end"
                      if 0 <= start < x[axis] else "start", code="empty-output")
    out = list(x)
    out[axis] = end - start
    return Built(tuple(out), (), {"start": start, "end": end, "axis": axis})


def _emit_slice(ctx: EmitCtx, attrs: Attrs) -> None:
    ctx.slice(ctx.inputs[0], [attrs["start"]], [attrs["end"]], [attrs["axis"]], None)


register(OpDef("slice", "keep entries [start, end) of one axis (default: channels), e.g. ShuffleNet's channel split",
               (Param("start", Kind.INT), Param("end", Kind.INT, None), Param("axis", Kind.INT, 1)), _build_slice,
               _emit_slice, ("Slice",)))


def _build_dropout(a: Attrs, shapes: Sequence[Shape]) -> Built:
    if not 0 <= a["p"] < 1:
        raise OpError(f"dropout probability must be in [0, 1), got {a['p']}", attr="p")
    return Built(shapes[0], (), {"p": float(a["p"])})


def _emit_dropout(ctx: EmitCtx, attrs: Attrs) -> None:
    # Inference no-op; kept as a node (the simplifier is told not to remove it) so tables can show it.
    ctx.node("Dropout", [ctx.inputs[0]], doc=f"p={attrs['p']}")


register(OpDef("dropout", "dropout with probability p: an identity at inference, kept in the graph as a record",
               (Param("p", Kind.FLOAT, 0.5),), _build_dropout, _emit_dropout, ("Dropout",),
               transparent_for_init=True))

register(OpDef("identity", "pass the input through (a shortcut branch)", (), lambda a, s: Built(s[0]),
               lambda ctx, attrs: None, (), passthrough=True))


# ---- analysis of ONNX nodes -------------------------------------------------------------------------------------
def _zero(v: NodeView) -> int:
    return 0


_RESIZE_FLOPS = "nearest: none (a copy); linear/cubic: a multiply-add (2 FLOPs) per output element per resized axis"


def _resize_flops(v: NodeView) -> int | None:
    """As _RESIZE_FLOPS says (the rule's flops_doc)."""
    x, y = v.in_shapes[0], v.out_shapes[0]
    if x is None or y is None:
        return None
    if v.attrs.get("mode", "nearest") == "nearest":
        return 0
    axes = sum(1 for a, b in zip(x, y, strict=False) if a != b)  # not strict: a file's ranks may disagree
    return 2 * axes * math.prod(y)


def _reduce_flops(v: NodeView) -> int | None:
    return numel(v.in_shapes[0])


for _op, _rf in (("Reshape", RF.RESHAPE), ("Transpose", RF.RESHAPE), ("Flatten", RF.GLOBAL), ("Pad", RF.PAD),
                 ("Slice", RF.SLICE), ("Dropout", RF.IDENTITY), ("Identity", RF.IDENTITY),
                 ("Squeeze", RF.RESHAPE), ("Unsqueeze", RF.RESHAPE), ("Split", RF.IDENTITY), ("Cast", RF.IDENTITY),
                 ("Expand", RF.IDENTITY), ("Tile", RF.IDENTITY), ("Gather", RF.IDENTITY),
                 ("DepthToSpace", RF.RESHAPE), ("SpaceToDepth", RF.RESHAPE)):
    # a stored float tensor that Expand, Tile or Gather moves into the activations is learned: ViT's class token
    # (Expand → Concat), an embedding table (Gather)
    register_onnx(OnnxRule(_op, "none (data movement)", _zero, rf=_rf,
                           learned_constants=_op in ("Expand", "Tile", "Gather")))
for _op in ("Shape", "Constant", "ConstantOfShape", "Range", "Size"):
    register_onnx(OnnxRule(_op, "none (shape arithmetic)", _zero, rf=RF.GLOBAL, shape_arithmetic=True))
register_onnx(OnnxRule("Resize", _RESIZE_FLOPS, _resize_flops, rf=RF.RESIZE))
register_onnx(OnnxRule("Upsample", _RESIZE_FLOPS, _resize_flops, rf=RF.RESIZE))
for _op in ("ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin", "ReduceL2"):
    register_onnx(OnnxRule(_op, "one per input element", _reduce_flops, rf=RF.GLOBAL))
