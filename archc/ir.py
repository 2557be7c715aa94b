"""The intermediate representation between a spec and ONNX: a graph of layers with every shape inferred.

Nodes are spec layers (one `conv`, one `add`), not ONNX nodes: the emitter may write several ONNX nodes for one.
Every node keeps the `Span` of the spec text it came from and the stack of block instances it sits in.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from archc.diagnostics import Span
from archc.ops.registry import WeightSpec
from archc.shapes import Shape


@dataclass(frozen=True)
class BlockFrame:
    """One block instance: `inception_3a` of type `inception` with its arguments."""

    path: str
    type: str
    args: Mapping[str, Any]
    span: Span


@dataclass(eq=False)
class Value:
    name: str
    shape: Shape
    dtype: str
    span: Span | None = None
    producer: Node | None = None


@dataclass(eq=False)
class Node:
    name: str  # the spec path, e.g. inception_3a/b2/conv
    op: str  # registry keyword
    attrs: Mapping[str, Any]
    inputs: list[Value]
    output: Value
    weights: tuple[WeightSpec, ...]
    span: Span | None
    blocks: tuple[BlockFrame, ...] = ()
    args: Mapping[str, Any] = field(default_factory=dict)  # the arguments as bound in the spec

    @property
    def params(self) -> int:
        """Trainable parameters (the figure papers and torchvision's num_params report)."""
        return sum(math.prod(w.shape) for w in self.weights if w.trainable)

    @property
    def nontrainable(self) -> int:
        """Non-trainable tensors such as batch norm's running mean and variance."""
        return sum(math.prod(w.shape) for w in self.weights if not w.trainable)

    @property
    def block(self) -> str:
        return self.blocks[-1].path if self.blocks else ""


@dataclass
class Graph:
    name: str
    inputs: list[Value]
    outputs: list[Value]
    nodes: list[Node]
    source: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)  # network parameters, e.g. num_classes
    doc: str = ""
    warnings: list = field(default_factory=list)  # located diagnostics of severity warning

    @property
    def num_params(self) -> int:
        """Trainable parameters, the papers' convention; see `num_nontrainable` for BN statistics."""
        return sum(n.params for n in self.nodes)

    @property
    def num_nontrainable(self) -> int:
        return sum(n.nontrainable for n in self.nodes)

    def weight_items(self) -> Iterator[tuple[str, Node, WeightSpec]]:
        """(tensor name, node, WeightSpec) in graph order; tensor names are `<node path>.<suffix>`."""
        for n in self.nodes:
            for w in n.weights:
                yield f"{n.name}.{w.suffix}", n, w

    def consumers(self) -> dict[int, list[Node]]:
        out: dict[int, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                out.setdefault(id(v), []).append(n)
        return out

    def verify(self) -> None:
        """Internal invariants: unique node names, every input defined before use."""
        seen_nodes, defined = set(), {id(v) for v in self.inputs}
        for n in self.nodes:
            assert n.name not in seen_nodes, f"duplicate node {n.name}"
            seen_nodes.add(n.name)
            for v in n.inputs:
                assert id(v) in defined, f"{n.name} reads {v.name} before it is defined"
            defined.add(id(n.output))
        for v in self.outputs:
            assert id(v) in defined
