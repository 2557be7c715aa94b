"""Activations: shape-preserving, elementwise (softmax along one axis)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from archc.ops.registry import (
    Attrs,
    Built,
    EmitCtx,
    Init,
    Kind,
    OnnxRule,
    OpDef,
    OpError,
    Param,
    WeightSpec,
    per_output,
    register,
    register_onnx,
)
from archc.shapes import Shape


def _same(a: Attrs, shapes: Sequence[Shape]) -> Built:
    return Built(shapes[0])


def _simple(keyword: str, onnx_op: str, doc: str, gain: str | None = None, aliases: tuple[str, ...] = (),
            **fixed: Any) -> None:
    register(OpDef(keyword, doc, (), _same, lambda ctx, attrs: ctx.node(onnx_op, [ctx.inputs[0]], **fixed),
                   (onnx_op,), aliases=aliases, gain=gain))


_simple("relu", "Relu", "rectified linear unit max(x, 0)", gain="relu")
_simple("tanh", "Tanh", "hyperbolic tangent")
_simple("sigmoid", "Sigmoid", "logistic sigmoid")
_simple("hswish", "HardSwish", "hard swish x·relu6(x+3)/6 (MobileNet v3)", gain="relu", aliases=("hardswish",))
_simple("hsigmoid", "HardSigmoid", "hard sigmoid relu6(x+3)/6", aliases=("hardsigmoid",), alpha=1 / 6, beta=0.5)


def _emit_relu6(ctx: EmitCtx, attrs: Attrs) -> None:
    lo = ctx.const("min", np.array(0.0, dtype=ctx.np_dtype))
    hi = ctx.const("max", np.array(6.0, dtype=ctx.np_dtype))
    ctx.node("Clip", [ctx.inputs[0], lo, hi])


register(OpDef("relu6", "min(max(x, 0), 6) (MobileNet)", (), _same, _emit_relu6, ("Clip",), gain="relu"))

register(OpDef("leaky_relu", "x if x > 0 else alpha·x (Darknet/YOLO use alpha=0.1)",
               (Param("alpha", Kind.FLOAT, 0.01),), lambda a, s: Built(s[0], (), {"alpha": float(a["alpha"])}),
               lambda ctx, attrs: ctx.node("LeakyRelu", [ctx.inputs[0]], alpha=attrs["alpha"]), ("LeakyRelu",),
               aliases=("leaky",), gain="relu"))


def _build_prelu(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    if len(x) < 2:
        raise OpError("prelu needs a channel axis")
    n = 1 if a["shared"] else x[1]
    return Built(x, (WeightSpec("weight", (n,), Init.CONST, value=0.25),), {"shape": (n,) + (1,) * (len(x) - 2)})


def _emit_prelu(ctx: EmitCtx, attrs: Attrs) -> None:
    slope = ctx.weight("weight")
    if len(attrs["shape"]) > 1:  # the weight is stored as [C] (PyTorch); broadcasting needs [C, 1, 1]
        slope = ctx.reshape(slope, attrs["shape"], "slope")
    ctx.node("PRelu", [ctx.inputs[0], slope])


register(OpDef("prelu", "leaky ReLU with a learned slope per channel (or one shared slope)",
               (Param("shared", Kind.BOOL, False),), _build_prelu, _emit_prelu, ("PRelu", "Reshape"),
               gain="relu"))  # Reshape: the slope to C×1×…, to broadcast over the spatial axes


def _emit_silu(ctx: EmitCtx, attrs: Attrs) -> None:
    sig = ctx.node("Sigmoid", [ctx.inputs[0]], output=ctx.sub("sigmoid"), name=ctx.sub("sigmoid"))
    ctx.node("Mul", [ctx.inputs[0], sig])


register(OpDef("silu", "x·sigmoid(x) (swish)", (), _same, _emit_silu, ("Sigmoid", "Mul"), aliases=("swish",),
               gain="relu"))


def _build_softmax(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    axis = a["axis"]
    if not -len(x) <= axis < len(x):
        raise OpError(f"axis {axis} is out of range for a rank-{len(x)} input", attr="axis")
    return Built(x, (), {"axis": axis})


register(OpDef("softmax", "softmax along `axis` (default: channels)", (Param("axis", Kind.INT, 1),), _build_softmax,
               lambda ctx, attrs: ctx.node("Softmax", [ctx.inputs[0]], axis=attrs["axis"]), ("Softmax",)))


# ---- analysis of ONNX nodes: one FLOP per element for an activation (a comparison, a clamp or a lookup; the cost
# of transcendental functions is not modelled), three for a softmax (exponential, sum, divide) ---------------------
for _op in ("Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Elu", "Selu", "Celu",
            "Softplus", "Softsign", "Gelu", "Mish", "Erf", "Exp", "Log", "Sqrt", "Abs", "Neg", "Reciprocal",
            "ThresholdedRelu", "Sign", "Floor", "Ceil", "Round"):
    register_onnx(OnnxRule(_op, "one per output element", per_output(1), folded=True))
register_onnx(OnnxRule("PRelu", "one per output element", per_output(1), trainable_slots=(1,), folded=True))
register_onnx(OnnxRule("Softmax", "three per output element (exponential, sum, divide)", per_output(3)))
register_onnx(OnnxRule("LogSoftmax", "three per output element (exponential, sum, log-subtract)", per_output(3)))
