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

from dataclasses import asdict, dataclass, field
from typing import Any

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
    depth: int
    layer_counts: dict[str, int]
    unknown_ops: dict[str, int]  # ops with no cost rule (excluded from macs/flops), with their counts


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
        return next((l for l in self.layers if l.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """The stable JSON contract (schema_version 1), documented in the README."""
        out = {"schema_version": SCHEMA_VERSION, "model": self.model, "source": self.source, "batch": self.batch,
               "inputs": self.inputs, "outputs": self.outputs, "totals": asdict(self.totals),
               "layers": [], "blocks": [asdict(b) for b in self.blocks], "warnings": self.warnings,
               "conventions": __doc__.split("Conventions (also printed as table footnotes):\n")[1].strip()}
        for l in self.layers:
            d = asdict(l)
            d["output_shape"] = list(l.output_shape) if l.output_shape else None
            out["layers"].append(d)
        return out
