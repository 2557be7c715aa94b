"""The op registry: every fact about a spec op lives in one `OpDef`, and every stage asks it.

A spec keyword (`conv`, `maxpool`, `relu6`, …) maps to one `OpDef`. Its `build` rule is a pure function of the
bound arguments and the input shapes: it checks them, resolves defaults that depend on the input (rank, channels,
"same" padding), and returns the output shape, the weight tensors and the concrete attributes the emitter writes.
Rules raise `OpError` (defined in errors.py, imported from here) without a location; the caller that knows the
spec line attaches it.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from archc.ops.errors import OpError
from archc.ops.window import same_pads
from archc.shapes import Shape, fmt_dims, numel


class Kind(enum.Enum):
    """Argument types of the spec language. `INTS` accepts an int or a tuple (one per spatial axis)."""

    INT = "an integer"
    INTS = "an integer or a tuple of integers"
    FLOAT = "a number"
    FLOATS = "a number or a tuple of numbers"
    BOOL = "true or false"
    STR = "a string"
    PAD = "a padding: same, valid, causal, an integer or a tuple"
    ANY = "a value"


REQUIRED = object()


@dataclass(frozen=True)
class Param:
    name: str
    kind: Kind
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()
    doc: str = ""
    varargs: bool = False  # collects every positional argument into a tuple: reshape(256, 6, 6)


class Init(enum.Enum):
    """How the emitter initialises a weight tensor (see emit/weights.py)."""

    FAN = "fan"  # conv/dense kernels: He for ReLU-family followers, Xavier otherwise
    ZEROS = "zeros"
    ONES = "ones"
    CONST = "const"  # filled with WeightSpec.value


@dataclass(frozen=True)
class WeightSpec:
    """One weight tensor of a layer. `suffix` is the PyTorch-style name (`weight`, `bias`, `running_mean`)."""

    suffix: str
    shape: Shape
    init: Init
    trainable: bool = True
    fan_in: int = 1
    fan_out: int = 1
    value: float = 0.0


@dataclass(frozen=True)
class Built:
    """What `build` returns: the output shape, weights in PyTorch state_dict order, and attributes to emit."""

    shape: Shape
    weights: tuple[WeightSpec, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)


class EmitCtx(Protocol):
    """What an `emit` rule may use of the emitter's context (archc.emit.onnx_model.EmitContext implements it)."""

    name: str
    inputs: list[str]
    in_shapes: list[Shape]
    output: str
    np_dtype: np.dtype[Any]

    def sub(self, suffix: str) -> str: ...

    def has_weight(self, suffix: str) -> bool: ...

    def weight(self, suffix: str) -> str: ...

    def const(self, suffix: str, array: np.ndarray) -> str: ...

    def node(self, op_type: str, inputs: Sequence[str], output: str | None = None, name: str | None = None,
             doc: str | None = None, **attrs: Any) -> str: ...

    def reshape(self, x: str, shape: Sequence[int], sub: str | None) -> str: ...

    def slice(self, x: str, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int], sub: str | None) -> str:
        ...


Attrs = Mapping[str, Any]  # a layer's bound spec arguments (to `build`) or its concrete attributes (to `emit`)
BuildRule = Callable[[Attrs, Sequence[Shape]], Built]
EmitRule = Callable[[EmitCtx, Attrs], object]  # the return value, if any (a node's output name), is ignored


@dataclass(frozen=True)
class OpDef:
    keyword: str
    doc: str
    params: tuple[Param, ...]
    build: BuildRule
    emit: EmitRule
    onnx_ops: tuple[str, ...]  # ONNX op types the emitter writes for this op, for the docs and the analyzer
    aliases: tuple[str, ...] = ()
    merge: bool = False  # takes one input per branch of a `name { ... }` body
    gain: str | None = None  # "relu" if a ReLU-family activation: the preceding kernel gets He initialisation
    passthrough: bool = False  # emits no node; the output is the input (identity)
    transparent_for_init: bool = False  # batch norm, dropout: look through it when choosing an initialiser


_REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    names = (op.keyword, *op.aliases)
    for key in names:  # every name checked before any is stored: a refused op leaves no trace
        if key in _REGISTRY:
            raise ValueError(f"op {key!r} registered twice")
    for key in names:
        _REGISTRY[key] = op
    return op


def lookup(keyword: str) -> OpDef | None:
    return _REGISTRY.get(keyword)


def all_ops() -> list[OpDef]:
    seen: dict[str, OpDef] = {}
    for op in _REGISTRY.values():
        seen.setdefault(op.keyword, op)
    return sorted(seen.values(), key=lambda o: o.keyword)


def keywords() -> list[str]:
    return sorted(_REGISTRY)


# ---- helpers shared by the rules -------------------------------------------------------------------------------
def spatial(shape: Shape, op: str, min_rank: int = 3, max_rank: int = 5) -> int:
    """Number of spatial axes of an N×C×… tensor; 1-D, 2-D and 3-D are handled by one loop, never by branches."""
    if not min_rank <= len(shape) <= max_rank:
        raise OpError(f"{op} needs an input of rank {min_rank}..{max_rank} (N×C×spatial), got {fmt_dims(shape)}",
                      code="shape-mismatch")
    return len(shape) - 2


def per_axis(value: int | Iterable[int], n: int, name: str) -> tuple[int, ...]:
    """Broadcast an int to n spatial axes, or check a tuple has one entry per axis."""
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise OpError(f"{name} has {len(value)} values but the input has {n} spatial axes", attr=name)
    return value


def positive(values: int | tuple[int, ...], name: str, allow_zero: bool = False) -> None:
    for v in (values if isinstance(values, tuple) else (values,)):
        if v < 0 or (v == 0 and not allow_zero):
            raise OpError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {v}", attr=name)


def dims(values: Iterable[float]) -> str:
    """7·7·3, as the explain formulas write products."""
    return fmt_dims(values, "·")


# ---- ONNX-side rules: what the analyzer needs to know about an ONNX op type -----------------------------------
class RF(enum.Enum):
    """How an op moves a receptive field (see analyze/receptive_field.py)."""

    WINDOW = "window"  # sliding window: kernel, stride, dilation, pads (conv, pooling)
    TRANSPOSED = "transposed"  # transposed convolution
    IDENTITY = "identity"  # elementwise, normalisation, concat: the field of the widest input
    GLOBAL = "global"  # the whole input (global pooling, dense layers, flatten)
    RESIZE = "resize"  # upsampling: jump shrinks
    PAD = "pad"  # shifts the start
    SLICE = "slice"  # a crop shifts the start
    RESHAPE = "reshape"  # kept when the trailing spatial sizes are kept (channel shuffle), else whole input


@dataclass(frozen=True)
class NodeView:
    """What an ONNX-side rule sees of one node: attributes with ONNX defaults, shapes, and small constants."""

    op_type: str
    attrs: Mapping[str, Any]
    in_shapes: list[Shape | None]
    out_shapes: list[Shape | None]
    const_inputs: list[Any]  # numpy values of small constant inputs (shape tensors, scales), else None
    initializer_inputs: list[bool]  # input i is a stored tensor (weights)

    def kernel(self) -> tuple[int, ...]:
        k = self.attrs.get("kernel_shape")
        if k:
            return tuple(k)
        w = self.in_shapes[1] if len(self.in_shapes) > 1 else None
        return tuple(w[2:]) if w else ()

    def spatial_rank(self) -> int:
        x = self.in_shapes[0] if self.in_shapes else None  # a Constant node has no inputs
        return len(x) - 2 if x else 0

    def window(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(kernel, strides, dilations, pads as begins…ends) of a conv or pooling node, ONNX defaults filled in and
        `auto_pad` resolved against the input size."""
        n = self.spatial_rank()
        k = self.kernel() or (1,) * n
        s = tuple(self.attrs.get("strides") or (1,) * n)
        d = tuple(self.attrs.get("dilations") or (1,) * n)
        pads = tuple(self.attrs.get("pads") or (0,) * (2 * n))
        auto = self.attrs.get("auto_pad", "NOTSET")
        if auto in ("SAME_UPPER", "SAME_LOWER") and (x := self.in_shapes[0]):
            split = [same_pads(x[2 + i], k[i], s[i], d[i], upper=auto == "SAME_UPPER") for i in range(n)]
            pads = tuple(b for b, _ in split) + tuple(e for _, e in split)
        elif auto == "VALID":
            pads = (0,) * (2 * n)
        return k, s, d, pads


CostRule = Callable[[NodeView], int | None]  # MACs or FLOPs of one node; None means unknown
ExplainRule = Callable[[NodeView, int, int, int | None], list[str]]


@dataclass(frozen=True)
class OnnxRule:
    """Cost and structure of one ONNX op type.

    Conventions: a MAC is one multiply-accumulate, counted only for convolutions, transposed convolutions, dense
    layers (Gemm) and matrix products; `flops` is the op's whole arithmetic (2 per MAC plus the rest), written
    out in `flops_doc`. Returning None means "unknown": never a silent 0.
    """

    op_type: str
    flops_doc: str
    flops: CostRule
    macs: CostRule = lambda v: 0  # the default marks an op without MACs (see counts_macs)
    rf: RF = RF.IDENTITY
    # `--explain`: the parameter and MAC arithmetic with the node's own numbers (view, params, non-trainable, macs)
    explain: ExplainRule | None = None
    shape_arithmetic: bool = False  # computes shapes, not activations (Shape, Range…): hidden from tables
    trainable_slots: tuple[int, ...] = ()  # inputs that are learned weights when stored in the file
    buffer_slots: tuple[int, ...] = ()  # stored but not trained (batch norm running statistics)
    learned_constants: bool = False  # a stored float tensor with more than one element is a learned weight
    folded: bool = False  # activations and batch norm: papers' tables fold them into the layer before

    @property
    def counts_macs(self) -> bool:
        return self.macs is not _NO_MACS


_NO_MACS = OnnxRule.__dataclass_fields__["macs"].default
_ONNX_RULES: dict[str, OnnxRule] = {}


def register_onnx(rule: OnnxRule) -> OnnxRule:
    if rule.op_type in _ONNX_RULES:
        raise ValueError(f"ONNX rule {rule.op_type!r} registered twice")
    _ONNX_RULES[rule.op_type] = rule
    return rule


def onnx_rule(op_type: str) -> OnnxRule | None:
    return _ONNX_RULES.get(op_type)


def onnx_rules() -> list[OnnxRule]:
    return sorted(_ONNX_RULES.values(), key=lambda r: r.op_type)


def per_output(k: float = 1) -> CostRule:
    """A FLOP rule: k operations per output element."""
    def rule(v: NodeView) -> int | None:
        n = numel(v.out_shapes[0]) if v.out_shapes else None
        return None if n is None else int(k * n)
    return rule
