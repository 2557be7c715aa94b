"""A two-stage network cut in two at a late input: Faster R-CNN's proposals are chosen from its first stage's
outputs, then fed to its second stage, so the second stage cannot run in the same call as the first.

Stage one is every node that does not depend on the late input (the backbone and the RPN); stage two is the rest
(RoIAlign and the per-proposal heads). The cut is the stage-one tensors that stage two reads: they become outputs
of stage one (after the graph's own outputs) and inputs of stage two (before the late input). Each stage is a whole
ONNX model with static shapes, compiled and verified as any other.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import onnx
from onnx import helper

from archc.errors import UsageError
from archc.frontends import Model
from archc.util.downstream import downstream


@dataclass
class Split:
    first: Model  # the original inputs but `late` → the graph's outputs it computes, then the cut
    second: Model  # the cut, then `late` → the graph's other outputs
    cut: list[str]  # the tensors passed from stage one to stage two, in stage two's input order


def split(model: Model, late: str, second_name: str) -> Split:
    """`model` cut at its input `late` (see the module's docstring); stage two named `second_name`."""
    graph = model.proto.graph
    if late not in {i.name for i in graph.input}:
        raise UsageError(f"'{model.name}' has no input '{late}' to cut the network at", code="bad-usage")
    second_nodes, after = downstream(graph.node, late)
    first_nodes = [n for n in graph.node if not any(o in after for o in n.output)]
    made_first = {o for n in first_nodes for o in n.output} | {i.name for i in graph.input if i.name != late}
    stored = {t.name: t for t in graph.initializer}
    cut = list(dict.fromkeys(name for n in second_nodes for name in n.input
                             if name in made_first and name not in stored))
    if not second_nodes or not first_nodes:
        raise UsageError(f"'{model.name}' does not divide at '{late}': every node is on one side of it",
                         code="bad-usage")
    info = {vi.name: vi for vi in list(graph.value_info) + list(graph.input) + list(graph.output)}
    missing = [name for name in cut if name not in info or not info[name].type.tensor_type.shape.dim]
    if missing:
        raise UsageError(f"the shape of '{missing[0]}' is unknown: '{model.name}' cannot be cut there",
                         code="bad-usage")
    outputs = {o.name: o for o in graph.output}
    first_out = [outputs[o] for o in outputs if o not in after] + [info[name] for name in cut]
    second_out = [outputs[o] for o in outputs if o in after]
    late_info = next(i for i in graph.input if i.name == late)
    first = _model(model, model.name, first_nodes, [i for i in graph.input if i.name != late], first_out, stored, info)
    second = _model(model, second_name, second_nodes, [info[name] for name in cut] + [late_info], second_out, stored,
                    info)
    return Split(first, second, cut)


def _model(model: Model, name: str, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto],
           outputs: list[onnx.ValueInfoProto], stored: dict[str, onnx.TensorProto],
           info: dict[str, onnx.ValueInfoProto]) -> Model:
    used = {name for n in nodes for name in n.input}
    ends = {vi.name for vi in inputs + outputs}
    inner = [info[o] for n in nodes for o in n.output if o in info and o not in ends]
    graph = helper.make_graph(nodes, name, inputs, outputs,
                              [t for name, t in stored.items() if name in used], value_info=inner)
    proto = helper.make_model(graph, opset_imports=model.proto.opset_import, ir_version=model.proto.ir_version,
                              producer_name=model.proto.producer_name)
    return replace(model, proto=proto, name=name, graph=None)
