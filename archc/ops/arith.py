"""Merges of branches: elementwise add (residuals), mul (squeeze-excitation gates), concat (inception, DenseNet).

A merge is written `add { branch; branch }`; each branch starts from the merge's input. Add and mul follow
NumPy broadcasting (an SE gate N×C×1×1 scales N×C×H×W); concat needs equal sizes except along `axis`, unless
`crop=true`, which centre-crops every branch to the smallest spatial size first (the 2015 U-Net's skip copies).
"""
from __future__ import annotations

from collections.abc import Sequence

from archc.ops.registry import (
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
    register,
    register_onnx,
)
from archc.shapes import Shape, fmt_dims, numel


def _broadcast(shapes: Sequence[Shape]) -> Shape | None:
    rank = max(len(s) for s in shapes)
    out = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0} - {1}
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _build_elementwise(name: str) -> BuildRule:
    def build(a: Attrs, shapes: Sequence[Shape]) -> Built:
        if len(shapes) < 2:
            raise OpError(f"{name} needs at least two branches, got {len(shapes)}", code="bad-args")
        out = _broadcast(shapes)
        if out is None:
            raise OpError(f"cannot {name} tensors of shapes " + " and ".join(fmt_dims(s) for s in shapes),
                          code="shape-mismatch")
        return Built(out)
    return build


def _emit_elementwise(op_type: str) -> EmitRule:
    def emit(ctx: EmitCtx, attrs: Attrs) -> None:
        acc = ctx.inputs[0]
        for i, other in enumerate(ctx.inputs[1:], start=1):
            last = i == len(ctx.inputs) - 1
            acc = ctx.node(op_type, [acc, other], **({} if last else {"output": ctx.sub(f"{i}"),
                                                                          "name": ctx.sub(f"{i}")}))
    return emit


register(OpDef("add", "elementwise sum of the branches (residual connections)", (), _build_elementwise("add"),
               _emit_elementwise("Add"), ("Add",), merge=True))
register(OpDef("mul", "elementwise product of the branches (gates, squeeze-excitation)", (),
               _build_elementwise("multiply"), _emit_elementwise("Mul"), ("Mul",), merge=True))


def _build_concat(a: Attrs, shapes: Sequence[Shape]) -> Built:
    if not shapes:
        raise OpError("concat needs at least one branch", code="bad-args")
    rank = len(shapes[0])
    axis = a["axis"] % rank if -rank <= a["axis"] < rank else None
    if axis is None or any(len(s) != rank for s in shapes):
        raise OpError("concat needs branches of the same rank and an axis inside it: " +
                      ", ".join(fmt_dims(s) for s in shapes), code="shape-mismatch")
    crops = None
    if a["crop"]:
        target = tuple(min(s[i] for s in shapes) for i in range(2, rank))
        crops = []
        for s in shapes:
            starts = tuple((s[2 + i] - target[i]) // 2 for i in range(len(target)))
            crops.append(None if s[2:] == target else starts)
        shapes = [s[:2] + target for s in shapes]
    for s in shapes[1:]:
        if any(s[i] != shapes[0][i] for i in range(rank) if i != axis):
            raise OpError(f"cannot concat along axis {axis}: sizes differ elsewhere in " +
                          " and ".join(fmt_dims(s) for s in shapes), code="shape-mismatch")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return Built(tuple(out), (), {"axis": axis, "crops": tuple(crops) if crops else None,
                                  "sizes": tuple(s[2:] for s in shapes)})


def _emit_concat(ctx: EmitCtx, attrs: Attrs) -> None:
    inputs = list(ctx.inputs)
    for i, starts in enumerate(attrs["crops"] or ()):
        if starts is not None:
            size = attrs["sizes"][i]
            axes = list(range(2, 2 + len(size)))
            ends = [b + s for b, s in zip(starts, size, strict=True)]
            inputs[i] = ctx.slice(inputs[i], list(starts), ends, axes, f"crop{i}")
    ctx.node("Concat", inputs, axis=attrs["axis"])


register(OpDef("concat", "concatenate the branches along `axis` (default: channels); crop=true centre-crops first",
               (Param("axis", Kind.INT, 1), Param("crop", Kind.BOOL, False)), _build_concat, _emit_concat,
               ("Concat", "Slice"), merge=True))  # Slice: crop=true's centre crops


# ---- analysis of ONNX nodes: an n-input elementwise op costs n−1 operations per output element ----------------
def _nary(v: NodeView) -> int | None:
    n = numel(v.out_shapes[0])
    return None if n is None else n * max(1, len(v.in_shapes) - 1)


for _op in ("Add", "Sub", "Mul", "Div"):  # a stored operand with several elements is a learned scale or bias
    register_onnx(OnnxRule(_op, "one per output element", _nary, learned_constants=True))
for _op in ("Sum", "Max", "Min", "Mean", "Pow", "Where", "Equal", "Greater", "Less", "And", "Or", "Not"):
    register_onnx(OnnxRule(_op, "n−1 per output element for n inputs", _nary))
register_onnx(OnnxRule("Concat", "none (data movement)", lambda v: 0,
                       learned_constants=True))  # a stored float tensor joined to the activations: a learned token
