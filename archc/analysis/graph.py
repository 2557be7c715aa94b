"""An ONNX graph as NetworkX sees it: nodes in executed order, tensors with shapes, and the rule for each op.

Checks here are the ones an untrusted file needs before any arithmetic: every node input must be produced by a
node, be a graph input or a stored tensor; the graph must be acyclic; tensor names must be produced once.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NoReturn

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from archc import metadata
from archc.errors import ArchcError
from archc.ops.registry import RF, NodeView, OnnxRule, onnx_rule
from archc.shapes import numel, onnx_itemsize

_SMALL = 64  # constants up to this many elements are read (pads, scales, shape vectors); weights never are
_INT_TYPES = {TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT8,
              TensorProto.BOOL}


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...] | None
    dtype: int
    stored: bool = False  # an initializer or a Constant node's output
    value: np.ndarray | None = None  # only for small stored tensors

    @property
    def itemsize(self) -> int:
        return onnx_itemsize(self.dtype)

    @property
    def numel(self) -> int:
        return numel(self.shape or ()) or 0


@dataclass
class Node:
    index: int
    name: str
    proto: onnx.NodeProto
    rule: OnnxRule | None
    view: NodeView
    meta: dict[str, str] = field(default_factory=dict)
    shape_only: bool = False  # shape arithmetic: hidden from layer tables

    @property
    def op_type(self) -> str:
        return self.proto.op_type


@dataclass
class NetGraph:
    model: onnx.ModelProto
    nodes: list[Node]
    tensors: dict[str, Tensor]
    inputs: list[str]
    outputs: list[str]
    dag: nx.DiGraph  # node index → node index, one edge per tensor handed over
    producer: dict[str, int]
    consumers: dict[str, list[int]]


_UNSET = NodeView("", {}, [], [], [], [])


def _tensor_shape(vi: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(d.dim_value)
    return tuple(dims)


def _attrs(node: onnx.NodeProto, name: str, source: str) -> dict:
    """Attributes with the ONNX schema's defaults filled in, as plain Python values. An attribute whose type is
    not the one the schema declares (a corrupt or hand-edited file) is an error, not a crash later on."""
    out = {}
    try:
        schema = onnx.defs.get_schema(node.op_type, domain=node.domain or "")
    except Exception:  # an op onnx does not know (custom domain): only the written attributes
        schema = None
    if schema is not None:
        for key, a in schema.attributes.items():
            if a.default_value is not None and a.default_value.type != 0:
                out[key] = helper.get_attribute_value(a.default_value)
    for a in node.attribute:
        declared = schema.attributes.get(a.name) if schema is not None else None
        # OpSchema.AttrType numbers its members as AttributeProto does; onnx's stub omits the pybind enum's .value
        declared_type = declared.type.value if declared is not None else None  # type: ignore[attr-defined]
        if declared is not None and a.type != declared_type:
            raise ArchcError(f"'{source}': node '{name}' ({node.op_type}) has attribute '{a.name}' of type "
                             f"{onnx.AttributeProto.AttributeType.Name(a.type) if a.type in range(15) else a.type}, "
                             f"but ONNX declares {onnx.AttributeProto.AttributeType.Name(declared_type)}; the file is "
                             "corrupt or was edited by hand", code="bad-onnx")
        try:
            v = helper.get_attribute_value(a)
        except Exception:
            raise ArchcError(f"'{source}': node '{name}' ({node.op_type}) has an unreadable attribute "
                             f"'{a.name}'", code="bad-onnx") from None
        out[a.name] = v.decode(errors="replace") if isinstance(v, bytes) else (
            tuple(v) if isinstance(v, list) else v)
    return out


def _check_text(values: Iterable[object], what: str, source: str) -> None:
    """Protobuf hands back bytes for a string field that is not UTF-8: such a file is corrupt."""
    for v in values:
        if not isinstance(v, str):
            raise ArchcError(f"'{source}': a {what} is not valid UTF-8 text; the file is corrupt", code="bad-onnx")


def build(model: onnx.ModelProto, source: str) -> NetGraph:
    g = model.graph
    tensors: dict[str, Tensor] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tensors[vi.name] = Tensor(vi.name, _tensor_shape(vi), vi.type.tensor_type.elem_type)
    for t in g.initializer:
        value = None
        if np.prod(t.dims, dtype=np.int64) <= _SMALL and t.data_location != TensorProto.EXTERNAL:
            try:
                value = numpy_helper.to_array(t)
            except Exception:
                value = None
        tensors[t.name] = Tensor(t.name, tuple(t.dims), t.data_type, stored=True, value=value)
    initializers = {t.name for t in g.initializer}
    inputs = [i.name for i in g.input if i.name not in initializers]

    producer: dict[str, int] = {}
    nodes: list[Node] = []
    for idx, p in enumerate(g.node):
        _check_text([p.op_type, p.name, p.domain, *p.input, *p.output], "node name, op type or tensor name", source)
        name = p.name or f"{p.op_type}_{idx}"
        for out in p.output:
            if not out:
                continue
            if out in producer or out in initializers or out in inputs:
                raise ArchcError(f"'{source}': tensor '{out}' is produced twice (by node '{name}'); the graph is "
                                 "not valid ONNX", code="bad-onnx")
            producer[out] = idx
        if p.op_type == "Constant" and p.output:
            _constant_output(p, tensors, source)
        nodes.append(Node(idx, name, p, onnx_rule(p.op_type), _UNSET,  # the view is made below, once shapes are known
                          {m.key: m.value for m in p.metadata_props}))

    names = {n.name for n in nodes}
    if len(names) != len(nodes):  # unnamed or duplicate names: make them unique and stable
        seen: dict[str, int] = {}
        for n in nodes:
            k = seen.get(n.name, 0)
            seen[n.name] = k + 1
            if k:
                n.name = f"{n.name}#{k + 1}"

    consumers: dict[str, list[int]] = {}
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(nodes)))
    for n in nodes:
        for inp in n.proto.input:
            if not inp:
                continue
            if inp not in producer and inp not in initializers and inp not in inputs:
                raise ArchcError(f"'{source}': node '{n.name}' ({n.op_type}) reads '{inp}', which no node produces "
                                 "and which is neither a graph input nor a stored tensor", code="bad-onnx")
            consumers.setdefault(inp, []).append(n.index)
            if inp in producer:
                dag.add_edge(producer[inp], n.index)
    for out in g.output:
        if out.name not in producer and out.name not in inputs and out.name not in initializers:
            raise ArchcError(f"'{source}': graph output '{out.name}' is produced by no node", code="bad-onnx")
    if not nx.is_directed_acyclic_graph(dag):
        cycle = nx.find_cycle(dag)
        chain = " → ".join(nodes[a].name for a, _ in cycle) + f" → {nodes[cycle[0][0]].name}"
        raise ArchcError(f"'{source}': the graph has a cycle ({chain}); ONNX graphs must be acyclic", code="bad-onnx")

    order = list(range(len(nodes)))
    if any(b < a for a, b in dag.edges):  # not stored in executable order: run it in a topological one
        order = list(nx.lexicographical_topological_sort(dag))
        nodes = [nodes[i] for i in order]

    for n in nodes:
        ins = [tensors.get(i) if i else None for i in n.proto.input]
        outs = [tensors.get(o) for o in n.proto.output]
        real_ins = [t for i, t in zip(n.proto.input, ins) if i]
        if real_ins and all(t is not None and t.stored for t in real_ins):
            # a constant subgraph (an exporter's Identity or Cast of a weight): its outputs are stored tensors too
            n.shape_only = True
            for t in outs:
                if t is not None:
                    t.stored = True
            n.view = NodeView(n.op_type, {}, [t.shape if t else None for t in ins],
                              [t.shape if t else None for t in outs], [None] * len(ins), [True] * len(ins))
            continue
        n.view = NodeView(n.op_type, _attrs(n.proto, n.name, source), [t.shape if t else None for t in ins],
                          [t.shape if t else None for t in outs], [t.value if t else None for t in ins],
                          [bool(t and t.stored) for t in ins])
        n.shape_only = (n.rule is not None and n.rule.shape_arithmetic) or (
            all(t is not None and t.dtype in _INT_TYPES and t.shape is not None and len(t.shape) <= 1 for t in outs)
            and bool(outs))
    for n in nodes:
        _check_node(n, source)
    return NetGraph(model, nodes, tensors, inputs, [o.name for o in g.output], dag, producer, consumers)


_CONSTANT_DTYPES = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                    "value_ints": np.int64}


def _constant_output(p: onnx.NodeProto, tensors: dict[str, Tensor], source: str) -> None:
    """A Constant node's output is a stored tensor, whichever of its value attributes holds the data (shape
    inference gives the shape; the value is kept when small, for the rules that read pads or scales)."""
    name = p.output[0]
    arr = None
    if len(p.attribute) == 1:
        a = p.attribute[0]
        try:
            if a.name == "value":
                arr = numpy_helper.to_array(a.t)
            elif a.name in _CONSTANT_DTYPES:
                arr = np.asarray(helper.get_attribute_value(a), dtype=_CONSTANT_DTYPES[a.name])
        except Exception:
            raise ArchcError(f"'{source}': Constant node '{p.name or name}' holds an unreadable value; the file is "
                             "corrupt", code="bad-onnx") from None
    t = tensors.get(name)
    if t is None:
        dtype = helper.np_dtype_to_tensor_dtype(arr.dtype) if arr is not None else 0
        t = tensors[name] = Tensor(name, None, dtype)
    t.stored = True
    if arr is not None:
        t.shape = t.shape or tuple(arr.shape)
        t.value = arr if arr.size <= _SMALL else None


def _check_node(n: Node, source: str) -> None:
    """Values the arithmetic divides by or multiplies with must make sense; a file where they do not is corrupt."""
    def bad(what: str) -> NoReturn:
        raise ArchcError(f"'{source}': node '{n.name}' ({n.op_type}) has {what}; the file is corrupt or inconsistent",
                         code="bad-onnx")
    a = n.view.attrs
    rank = n.view.spatial_rank()
    # the window's rank is checked against the input's only where that shape is known (unknown: warned elsewhere)
    windowed = n.rule is not None and n.rule.rf in (RF.WINDOW, RF.TRANSPOSED) and bool(n.view.in_shapes and
                                                                                       n.view.in_shapes[0])
    for key in ("kernel_shape", "strides", "dilations"):
        values = a.get(key)
        if values is not None and any(not isinstance(v, int) or v <= 0 for v in values):
            bad(f"{key} {list(values)} (they must be positive)")
        if values and windowed and len(values) != rank:
            bad(f"{key} {list(values)} for an input with {rank} spatial axes")
    if windowed and len(n.view.kernel()) not in (0, rank):
        bad(f"a {len(n.view.kernel())}-D kernel for an input with {rank} spatial axes")
    if a.get("pads") is not None and any(not isinstance(v, int) or v < 0 for v in a["pads"]):
        bad(f"pads {list(a['pads'])} (they must be non-negative)")
    if a.get("pads") and windowed and len(a["pads"]) != 2 * rank:
        bad(f"pads {list(a['pads'])} for an input with {rank} spatial axes")
    group = a.get("group")
    x = n.view.in_shapes[0] if n.view.in_shapes else None
    if group is not None and (not isinstance(group, int) or group <= 0 or (x and len(x) > 1 and x[1] % group)):
        bad(f"group {group}, which does not divide its {x[1] if x and len(x) > 1 else '?'} input channels")
    for shape in n.view.out_shapes:
        if shape is not None and n.rule is not None and not n.shape_only and any(d <= 0 for d in shape):
            bad(f"an output of shape {list(shape)} (an empty or negative size)")


def block_frames(node: Node) -> list[dict]:
    """archc's block stack from node metadata, outermost first (empty for foreign files)."""
    raw = node.meta.get(metadata.BLOCKS)
    if not raw:
        return []
    try:
        frames = json.loads(raw)
        return frames if isinstance(frames, list) else []
    except ValueError:
        return []
