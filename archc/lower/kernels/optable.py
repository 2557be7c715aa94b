"""What the layout pass knows of each Relax op: one table, read by the block plan (blocks.py: which tensors must
share a layout) and by the rewriter (layout.py: which rule rewrites the op on blocked tensors).

An op the table does not name runs in NCHW (its blocked inputs re-laid out first), and the plan joins nothing
through it. Each kind is one rule of the rewriter (`_Rewriter.conv`, `.unary`, …) and one way the plan groups
tensors:

    conv    a convolution: archc's kernel on NCHW[x]c data; a depthwise one's input and output share a group
    unary   elementwise on one tensor: its output shares its input's group
    binary  elementwise on two (constants broadcast per channel): shares the group of each input of its shape or
            of one value per channel (a squeeze-excite gate, N×C×1×1); one value per pixel (N×1×H×W, a channel
            reduction's) broadcasts as N×1×H×W×1
    pool    a window over H×W per channel: shares its input's group
    reduce  a reduction over H×W kept as 1×1: shares its input's group; or over the channels kept as one (a
            channel LayerNorm's mean per pixel): N×1×H×W×1, a group of its own that broadcasts over the blocks
    concat  along channels, blocked where every input's block divides its channels; an input padded to whole
            blocks (blocks.py) makes it run in NCHW
    dense   x @ W with W constant: packed weights, NCHW data (no group)
    clamp   the importer's Clip (ReLU6), a call_tir of its maximum/minimum kernels: elementwise on its first
            argument
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import tvm
from tvm import relax
from tvm.ir.expr import Constant


class Kind(enum.Enum):
    CONV = "conv"
    UNARY = "unary"
    BINARY = "binary"
    POOL = "pool"
    REDUCE = "reduce"
    CONCAT = "concat"
    DENSE = "dense"
    CLAMP = "clamp"


@dataclass(frozen=True)
class OpRule:
    kind: Kind
    one_d: bool = False  # a 1-D convolution or pool: run as a 2-D one of height 1 on N×C/bn×1×L×bn
    # an op whose result stays finite where its operands are finite, zeros included: a binary one may broadcast a
    # gate whose zero-padded channels hold zeros (a divide would make them NaN, which a zero weight does not cancel),
    # a unary one may run on zero-padded channels (rsqrt may not)
    zero_safe: bool = False


def _all(kind: Kind, *names: str, one_d: bool = False, zero_safe: bool = False) -> dict[str, OpRule]:
    return {f"relax.{name}": OpRule(kind, one_d, zero_safe) for name in names}


OPS: dict[str, OpRule] = {
    **_all(Kind.CONV, "nn.conv2d"),
    **_all(Kind.CONV, "nn.conv1d", one_d=True),
    **_all(Kind.UNARY, "nn.relu", "clip", "nn.leakyrelu", "sigmoid", "tanh", "nn.silu", "nn.gelu", "nn.gelu_tanh",
           "exp", "sqrt", "negative", "abs", "nn.relu6", "hard_sigmoid", "erf", zero_safe=True),
    **_all(Kind.UNARY, "rsqrt"),  # infinite at 0: never on zero-padded channels
    # a QDQ model's pairs (one scale and zero point): a zero-padded channel quantizes to the zero point, not 0
    **_all(Kind.UNARY, "quantize", "dequantize"),
    **_all(Kind.BINARY, "add", "subtract", "multiply", "maximum", "minimum", zero_safe=True),
    **_all(Kind.BINARY, "divide"),
    **_all(Kind.POOL, "nn.max_pool2d", "nn.avg_pool2d"),
    **_all(Kind.POOL, "nn.max_pool1d", "nn.avg_pool1d", one_d=True),
    **_all(Kind.REDUCE, "mean", "max", "sum"),
    **_all(Kind.CONCAT, "concat"),
    **_all(Kind.DENSE, "matmul"),
    **_all(Kind.CLAMP, "call_tir"),
}


def rule_of(e: Any) -> OpRule | None:
    """The table's rule for a binding's value: a call of an op it names; None for anything else."""
    return OPS.get(e.op.name) if is_op_call(e) else None


def is_op_call(e: Any) -> bool:
    """A call of a Relax op (not of a function or a PrimFunc)."""
    return isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op)


def is_const(e: Any) -> bool:
    return isinstance(e, Constant)


def shape_of(e: Any) -> tuple[int, ...]:
    """A Relax expression's static shape; () where it has none (a tuple, a symbolic dimension)."""
    shape = getattr(e.ty, "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return ()
    try:
        return tuple(int(d) for d in shape.values)
    except TypeError:  # a symbolic dimension
        return ()


def per_channel(a: tuple[int, ...], v: tuple[int, ...]) -> bool:
    """Whether a tensor of shape `a` holds one value per channel of the N×C×… tensor of shape `v` (N×C×1×1: a
    squeeze-excite gate), so that it broadcasts against it in the blocked layout too (1×C/bn×1×1×bn)."""
    return len(a) == len(v) >= 3 and a[:2] == v[:2] and all(d == 1 for d in a[2:]) and a != v
