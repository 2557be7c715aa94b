"""IR graph → onnx.ModelProto. One registry `emit` per layer; this module supplies the helpers they call."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from archc import metadata, ops
from archc.ir import Graph, Node
from archc.shapes import dtype

OPSET = 17
IR_VERSION = 10  # node metadata_props need IR 10; onnxruntime and TVM both read it


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if hasattr(v, "producer"):  # a tensor passed to a block: record which one
        return f"@{v.name}"
    return v


class EmitContext:
    """What one layer's `emit` rule sees: its input/output names and shapes, and node/constant builders."""

    def __init__(self, node: Node, out: _Builder):
        self._node = node
        self._out = out
        self.name = node.name
        self.inputs = [v.name for v in node.inputs]
        self.in_shapes = [v.shape for v in node.inputs]
        self.output = node.output.name
        self.np_dtype = dtype(node.output.dtype).numpy

    def sub(self, suffix: str) -> str:
        return f"{self.name}/{suffix}"

    def has_weight(self, suffix: str) -> bool:
        return any(w.suffix == suffix for w in self._node.weights)

    def weight(self, suffix: str) -> str:
        assert self.has_weight(suffix), (self.name, suffix)
        return f"{self.name}.{suffix}"

    def const(self, suffix: str, array: np.ndarray) -> str:
        name = f"{self.name}.{suffix}"
        self._out.constants.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op_type: str, inputs: Iterable[str], output: str | None = None, name: str | None = None,
             doc: str | None = None, **attrs: Any) -> str:
        output = output or self.output
        proto = helper.make_node(op_type, list(inputs), [output], name=name or self.name, **attrs)
        if doc:
            proto.doc_string = doc
        self._out.annotate(proto, self._node)
        self._out.nodes.append(proto)
        return output

    def reshape(self, x: str, shape: Sequence[int], sub: str | None) -> str:
        target = self.const(f"{sub or 'reshape'}_shape", np.array(shape, dtype=np.int64))
        return self.node("Reshape", [x, target], **({"output": self.sub(sub), "name": self.sub(sub)} if sub else {}))

    def slice(self, x: str, starts: Sequence[int], ends: Sequence[int], axes: Sequence[int], sub: str | None) -> str:
        tag = sub or "slice"
        args = [self.const(f"{tag}_{k}", np.array(v, dtype=np.int64)) for k, v in
                (("starts", starts), ("ends", ends), ("axes", axes))]
        return self.node("Slice", [x, *args], **({"output": self.sub(sub), "name": self.sub(sub)} if sub else {}))


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []

    @staticmethod
    def annotate(proto: onnx.NodeProto, node: Node) -> None:
        """Record where each ONNX node came from, so the analyzer can point back at the spec and group by block."""
        meta = {metadata.PATH: node.name, metadata.LAYER: node.op, metadata.BLOCK: node.block}
        if node.blocks:
            meta[metadata.BLOCKS] = json.dumps([{"path": f.path, "type": f.type,
                                                "args": {k: _jsonable(v) for k, v in f.args.items()}}
                                               for f in node.blocks])
        if node.args:
            meta[metadata.ARGS] = json.dumps({k: _jsonable(v) for k, v in node.args.items()})
        if node.span:
            meta[metadata.SPAN] = str(node.span)
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)


def _shape_only(name: str, elem_type: int, shape: Sequence[int]) -> onnx.TensorProto:
    t = onnx.TensorProto(name=name, data_type=elem_type)
    t.dims.extend(shape)
    return t


def build_model(graph: Graph, weights: Mapping[str, np.ndarray] | None, doc: str = "") -> onnx.ModelProto:
    """`weights=None` writes weight tensors with their shapes but no data (for the analyzer)."""
    out = _Builder()
    for node in graph.nodes:
        op = ops.lookup(node.op)
        assert op is not None, node.op  # the IR holds registered ops only
        op.emit(EmitContext(node, out), node.attrs)
    # an output that is a network input passed straight through needs a node to carry its name
    if weights is None:  # shapes only, for analysis: no tensor is allocated
        initializers = [_shape_only(name, dtype(node.output.dtype).onnx, w.shape)
                        for name, node, w in graph.weight_items()]
    else:
        initializers = [numpy_helper.from_array(np.asarray(arr), name) for name, arr in weights.items()]
    g = helper.make_graph(
        out.nodes, graph.name,
        [helper.make_tensor_value_info(v.name, dtype(v.dtype).onnx, list(v.shape)) for v in graph.inputs],
        [helper.make_tensor_value_info(v.name, dtype(v.dtype).onnx, list(v.shape)) for v in graph.outputs],
        initializer=initializers + out.constants,
    )
    model = helper.make_model(g, producer_name="archc", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = doc or graph.doc
    props = {metadata.NETWORK: graph.name, metadata.SOURCE: graph.source,
             metadata.PARAMS: json.dumps({k: _jsonable(v) for k, v in graph.params.items()})}
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    return model
