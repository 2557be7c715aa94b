"""The analysis of one model: plain data, saved and reloaded as the documented JSON contract (`to_json`).

Conventions (also printed as table footnotes):
- a MAC is one multiply-accumulate of a convolution, transposed convolution, dense layer (Gemm) or MatMul: the
  figure torchvision and fvcore call "FLOPs";
- FLOPs = 2 × MACs plus the arithmetic of every other op, by the rule registered for its ONNX type
  (`archc ops --costs` lists them); an op without a rule has unknown cost (None, shown "?"), never 0;
- parameters are stored tensors feeding a weight input of an op; batch norm's running statistics are counted
  separately as non-trainable;
- activation size is the output tensor of each layer; shape-computation nodes (integer tensors that only feed
  Reshape/Resize arguments) are left out of the tables.
"""
from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from archc.errors import ArchcError

SCHEMA_VERSION = 1


@dataclass
class ReceptiveField:
    """Per spatial axis: field size, effective stride (jump) and centre of the first unit, in input pixels
    (pixel centres at 0, 1, 2, …). `whole` means every output unit sees the whole input."""

    size: tuple[float, ...]
    stride: tuple[float, ...]
    start: tuple[float, ...]
    whole: bool = False


@dataclass
class Layer:
    name: str
    op: str  # ONNX op type
    block: str  # the top-level block instance (spec block or recovered name prefix), "" at top level
    kernel: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    dilation: tuple[int, ...] | None
    pads: tuple[int, ...] | None
    groups: int | None
    input_shapes: list[tuple[int, ...] | None]
    output_shape: tuple[int, ...] | None
    params: int
    nontrainable: int
    macs: int | None
    flops: int | None
    activation_elements: int
    activation_bytes: int
    receptive_field: ReceptiveField | None
    inputs: list[str] = field(default_factory=list)  # producer layer names (or graph inputs)
    weights: list[str] = field(default_factory=list)  # trainable stored tensors this layer reads
    buffers: list[str] = field(default_factory=list)  # non-trainable ones (BN running statistics)
    spec_op: str | None = None  # archc's own op keyword when the file came from archc
    span: str | None = None  # spec location when the file came from archc
    receptive_field_main: ReceptiveField | None = None  # the main path's: merges leave out broadcast gates


@dataclass
class Block:
    path: str
    type: str
    args: dict[str, Any]
    layers: list[str]
    kernel: tuple[int, ...] | None  # patch size of the block's first windowed layer when the block has one
    stride: tuple[int, ...] | None  # total stride of the block
    output_shape: tuple[int, ...] | None
    depth: int  # layers with MACs on the longest path through the block
    params: int
    macs: int | None
    flops: int | None
    count: int = 1  # consecutive identical instances folded into one stage row


@dataclass
class Totals:
    params: int
    trainable_params: int
    nontrainable_params: int
    macs: int
    flops: int
    activation_elements: int
    activation_bytes: int
    peak_memory_bytes: int
    peak_activation_bytes: int
    peak_after: str  # the layer during which the peak occurs
    peak_tensors: list[str]
    weight_bytes: int  # every stored tensor (weights and constants), at its stored precision
    weight_bytes_by_dtype: dict[str, int]  # float32 / float16 / int8
    depth: int  # layers with MACs on the main path (papers' depth: SE gates are side branches)
    layer_counts: dict[str, int]
    depth_longest: int = 0  # layers with MACs on the longest path, side branches included
    # layers of unknown cost (no rule, or unknown shapes) by op, excluded from macs/flops
    unknown_ops: dict[str, int] = field(default_factory=dict)
    # a region-based detector (a RoIAlign/RoIPool on an R×4 proposals input): R, and the multiply-adds of
    # everything run per proposal (the layers that depend on the proposals), for one proposal
    proposals: int = 0
    per_proposal_macs: int = 0
    anchors: list[int] = field(default_factory=list)  # the RPN's H, W, k where the spec gives k (`anchors`)


@dataclass
class Analysis:
    model: str
    source: str
    batch: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    layers: list[Layer]
    blocks: list[Block]
    totals: Totals
    warnings: list[str] = field(default_factory=list)
    hidden_shape_nodes: int = 0

    def layer(self, name: str) -> Layer | None:
        return next((lay for lay in self.layers if lay.name == name), None)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Analysis:
        """Read back what `to_json` wrote (tuples come back as tuples), so tables can be rendered from saved
        results."""
        check_schema(data, "analysis")
        return _load(cls, {k: v for k, v in data.items() if k not in ("schema_version", "conventions")})

    def to_json(self) -> dict[str, Any]:
        """The stable JSON contract (schema_version 1), documented in the README."""
        layers = []
        for lay in self.layers:
            d = asdict(lay)
            d["output_shape"] = list(lay.output_shape) if lay.output_shape else None
            layers.append(d)
        conventions = (__doc__ or "").split("Conventions (also printed as table footnotes):\n")[1].strip()
        return {"schema_version": SCHEMA_VERSION, "model": self.model, "source": self.source, "batch": self.batch,
                "inputs": self.inputs, "outputs": self.outputs, "totals": asdict(self.totals), "layers": layers,
                "blocks": [asdict(b) for b in self.blocks], "warnings": self.warnings, "conventions": conventions}


def check_schema(data: Any, what: str) -> None:
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ArchcError(f"this is not an archc {what} of schema version {SCHEMA_VERSION} (found "
                         f"{'no schema_version' if version is None else f'version {version}'}); "
                         "analyze the model again with this version of archc", code="bad-analysis")


def _load(tp: Any, value: Any) -> Any:
    """JSON value → the annotated type: dataclasses field by field, tuples from lists, optionals, containers."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        return _load(arms[0], value) if len(arms) == 1 else value
    if is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _load(hints[f.name], value[f.name]) for f in fields(tp) if f.name in value})
    if origin is tuple:
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(_load(item, v) for v in value)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return [_load(item, v) for v in value]
    return value
