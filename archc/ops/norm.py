"""Normalisation: batch norm, local response norm (AlexNet), L2 norm with a learned scale (SSD)."""
from __future__ import annotations

from collections.abc import Sequence

from archc.ops.registry import (
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
    per_output,
    positive,
    register,
    register_onnx,
)
from archc.shapes import Shape, numel


def _build_bn(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    if len(x) < 2:
        raise OpError("bn needs a channel axis")
    c = x[1]
    # state_dict order of torch.nn.BatchNorm: weight, bias, running_mean, running_var (the last two not trainable)
    return Built(x, (WeightSpec("weight", (c,), Init.ONES), WeightSpec("bias", (c,), Init.ZEROS),
                     WeightSpec("running_mean", (c,), Init.ZEROS, trainable=False),
                     WeightSpec("running_var", (c,), Init.ONES, trainable=False)),
                 {"epsilon": float(a["eps"]), "momentum": float(a["momentum"])})


def _emit_bn(ctx: EmitCtx, attrs: Attrs) -> None:
    ctx.node("BatchNormalization", [ctx.inputs[0]] + [ctx.weight(s) for s in
                                                       ("weight", "bias", "running_mean", "running_var")],
             epsilon=attrs["epsilon"], momentum=1.0 - attrs["momentum"])  # ONNX momentum is PyTorch's 1 − m


register(OpDef("bn", "batch normalisation (inference form, running statistics)",
               (Param("eps", Kind.FLOAT, 1e-5), Param("momentum", Kind.FLOAT, 0.1)), _build_bn, _emit_bn,
               ("BatchNormalization",), aliases=("batchnorm",), transparent_for_init=True))


def _build_lrn(a: Attrs, shapes: Sequence[Shape]) -> Built:
    positive(a["size"], "size")
    return Built(shapes[0], (), {"size": a["size"], "alpha": float(a["alpha"]), "beta": float(a["beta"]),
                                 "bias": float(a["bias"])})


register(OpDef("lrn", "local response normalisation across channels (AlexNet: size=5, alpha=1e-4, beta=0.75, bias=2)",
               (Param("size", Kind.INT), Param("alpha", Kind.FLOAT, 1e-4), Param("beta", Kind.FLOAT, 0.75),
                Param("bias", Kind.FLOAT, 1.0)), _build_lrn,
               lambda ctx, attrs: ctx.node("LRN", [ctx.inputs[0]], **attrs), ("LRN",)))


def _build_l2norm(a: Attrs, shapes: Sequence[Shape]) -> Built:
    x = shapes[0]
    c = x[1]
    return Built(x, (WeightSpec("weight", (c,), Init.CONST, value=float(a["scale"])),),
                 {"shape": (c,) + (1,) * (len(x) - 2)})


def _emit_l2norm(ctx: EmitCtx, attrs: Attrs) -> None:
    normed = ctx.node("LpNormalization", [ctx.inputs[0]], output=ctx.sub("norm"), name=ctx.sub("norm"), axis=1, p=2)
    ctx.node("Mul", [normed, ctx.reshape(ctx.weight("weight"), attrs["shape"], "scale")])


register(OpDef("l2norm", "L2 normalisation across channels times a learned per-channel scale (SSD conv4_3)",
               (Param("scale", Kind.FLOAT, 20.0),), _build_l2norm, _emit_l2norm,
               ("LpNormalization", "Reshape", "Mul")))  # Reshape: the per-channel scale to C×1×1


# ---- analysis of ONNX nodes -------------------------------------------------------------------------------------
def _lrn_flops(v: NodeView) -> int | None:
    n = numel(v.out_shapes[0])
    return None if n is None else n * (2 * v.attrs.get("size", 1) + 3)


def _explain_bn(v: NodeView, params: int, nontrainable: int, macs: int | None) -> list[str]:
    y = v.out_shapes[0]
    if y is None:  # unknown shape: nothing to write the arithmetic with
        return []
    c = y[1]
    return [f"parameters: γ and β per channel = 2·{c} = {params:,} trainable, plus running mean and variance "
            f"2·{c} = {nontrainable:,} non-trainable"]


register_onnx(OnnxRule("BatchNormalization", "two per element (inference: one scale and one shift)", per_output(2),
                       explain=_explain_bn, trainable_slots=(1, 2), buffer_slots=(3, 4), folded=True))
register_onnx(OnnxRule("LRN", "2·size per element for the windowed sum of squares, plus 3 (scale, power, divide)",
                       _lrn_flops))
register_onnx(OnnxRule("LpNormalization", "three per element (square, sum, divide)", per_output(3)))
register_onnx(OnnxRule("InstanceNormalization", "four per element (mean, variance, normalise, scale-shift)",
                       per_output(4), trainable_slots=(1, 2)))
register_onnx(OnnxRule("LayerNormalization", "four per element (mean, variance, normalise, scale-shift)",
                       per_output(4), trainable_slots=(1, 2)))
register_onnx(OnnxRule("GroupNormalization", "four per element (mean, variance, normalise, scale-shift)",
                       per_output(4), trainable_slots=(1, 2)))
