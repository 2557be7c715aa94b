"""Every tensor's static shape, once the inputs' shapes are fixed (the last step of the front door).

Three means, in turn, each only where the one before left a size unknown:
1. ONNX's shape inference with data propagation;
2. folding the shape arithmetic: exporters compute reshape targets and slice bounds at run time (`Shape → Gather
   → Div → Concat → Reshape`: ShuffleNet's chunk and channel shuffle, ViT's patch flattening), which ONNX's data
   propagation gives up on; with the inputs fixed these are constants, so each `Shape` of a known tensor and each
   small node whose inputs are all known constants is evaluated (onnx's reference evaluator) on a scratch copy, and
   inference runs again; the model handed on keeps its nodes, only its recorded shapes change (the back end folds
   the same nodes for real: `fold_constants`, the first of `lower/onnx_compat.py`'s rewrites);
3. the shapes the file itself records (`value_info`), with the input's symbolic sizes replaced by those chosen.
What stays unknown is reported once, naming the node where it starts; the rest is still analyzed.
"""
from __future__ import annotations

from collections.abc import Callable
from copy import copy
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from archc.errors import ArchcError
from archc.shapes import Shape, numel
from archc.util.onnx_skeleton import put_weights, take_weights

MAX_DIM = 1 << 31
MAX_ELEMENTS = 1 << 40
FOLD_ELEMENTS = 4096  # a shape computation's tensors are small; anything larger is data, not arithmetic
_FOLD_ROUNDS = 100  # each round folds what the last one made computable; deep nets need one per stage


def dims_of(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in vi.type.tensor_type.shape.dim]


def static_shapes(proto: onnx.ModelProto) -> dict[str, Shape]:
    out = {}
    for vi in list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output):
        shape = static_shape(vi)
        if shape is not None:
            out[vi.name] = shape
    return out


def unresolved(proto: onnx.ModelProto, known: dict[str, Shape]) -> list[onnx.NodeProto]:
    stored = {t.name for t in proto.graph.initializer}
    return [n for n in proto.graph.node if any(o and o not in known and o not in stored for o in n.output)]


def _infer(proto: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception as err:
        raise ArchcError(f"ONNX shape inference failed on '{path}': {err}", code="bad-onnx") from None


def infer_static_shapes(proto: onnx.ModelProto, path: Path, symbols: dict[str, int] | None = None
                        ) -> tuple[onnx.ModelProto, list[str]]:
    """The model with every shape it can be given recorded, and notices for what stays unknown. Its weights are
    held aside meanwhile (`take_weights`): inference and folding copy the model, several times."""
    held = take_weights(proto, FOLD_ELEMENTS)
    try:
        inferred, notices = _infer_static_shapes(proto, path, symbols)
    finally:
        put_weights(proto, held)
    return put_weights(inferred, held), notices


def _infer_static_shapes(proto: onnx.ModelProto, path: Path, symbols: dict[str, int] | None
                         ) -> tuple[onnx.ModelProto, list[str]]:
    # the file's shapes are a last resort: they may be for another input size (a batch of 1 declared, 8 asked)
    recorded = {vi.name: copy(vi) for vi in list(proto.graph.value_info) + list(proto.graph.output)}
    del proto.graph.value_info[:]
    for vi in proto.graph.output:
        vi.type.tensor_type.ClearField("shape")
    inferred = _infer(proto, path)
    known = static_shapes(inferred)
    if unresolved(inferred, known):
        folded = fold_constants(inferred)
        if folded is not None:
            _copy_shapes(folded, inferred, known)
    filled = False
    for n in unresolved(inferred, known) if recorded else []:
        for o in n.output:
            shape = _recorded_shape(recorded.get(o), symbols or {})
            if o and o not in known and shape is not None:
                inferred.graph.value_info.append(
                    helper.make_tensor_value_info(o, recorded[o].type.tensor_type.elem_type, list(shape)))
                known[o] = shape
                filled = True
    if filled:  # carry the recorded shapes on through the nodes after them
        inferred = _infer(_without_partial(inferred, known), path)
        known = static_shapes(inferred)
    _check_sizes(inferred, path)
    missing = unresolved(inferred, known)
    if not missing:
        return inferred, []
    first = missing[0]
    op = f"{first.domain}.{first.op_type}" if first.domain not in ("", "ai.onnx") else first.op_type
    return inferred, [f"the shapes of {len(missing)} node{'s' if len(missing) > 1 else ''}' outputs are unknown, from "
                      f"node '{first.name or first.output[0]}' ({op}) on: their costs show '?' and are left out of "
                      "the totals (record their shapes in the file's value_info, or simplify it with "
                      "onnx-simplifier, to count them)"]


def _without_partial(proto: onnx.ModelProto, known: dict[str, Shape]) -> onnx.ModelProto:
    """Drop recorded shapes with unknown sizes, so that inference may fill them anew."""
    keep = [vi for vi in proto.graph.value_info if vi.name in known]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(keep)
    return proto


def _copy_shapes(source: onnx.ModelProto, target: onnx.ModelProto, known: dict[str, Shape]) -> None:
    """Shapes that `source` (the folded scratch copy) knows and `target` does not, recorded into `target`."""
    types = {vi.name: vi.type.tensor_type.elem_type for vi in target.graph.value_info}
    outputs = {vi.name: vi for vi in target.graph.output}
    for vi in list(source.graph.value_info) + list(source.graph.output):
        shape = static_shape(vi)
        if shape is None or vi.name in known:
            continue
        made = helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type or types.get(vi.name, 0),
                                             list(shape))
        if vi.name in outputs:
            outputs[vi.name].type.CopyFrom(made.type)
        else:
            for old in [v for v in target.graph.value_info if v.name == vi.name]:
                target.graph.value_info.remove(old)
            target.graph.value_info.append(made)
        known[vi.name] = shape
    for t in source.graph.initializer:  # folded nodes' outputs became constants in the scratch copy
        if t.name not in known and any(t.name in n.output for n in target.graph.node):
            target.graph.value_info.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
            known[t.name] = tuple(t.dims)


def static_shape(vi: onnx.ValueInfoProto) -> Shape | None:
    dims = dims_of(vi)
    if not vi.type.tensor_type.HasField("shape") or not all(isinstance(d, int) for d in dims):
        return None
    return tuple(int(d) for d in dims if isinstance(d, int))


def fold_constants(inferred: onnx.ModelProto) -> onnx.ModelProto | None:
    """A copy whose shape computations (each `Shape` of a tensor of known shape, and each node whose inputs are all
    small constants, `Constant` nodes included) are replaced by initializers holding their values, re-inferred;
    None if ONNX's shape inference fails on the result. The inputs' shapes must be fixed first."""
    model = onnx.ModelProto()
    model.CopyFrom(inferred)
    consts: dict[str, np.ndarray] = {}
    for t in model.graph.initializer:
        size = numel(t.dims) or 0
        if size <= FOLD_ELEMENTS and t.data_location != onnx.TensorProto.EXTERNAL:
            try:
                consts[t.name] = numpy_helper.to_array(t)
            except Exception:  # a tensor read without its data
                pass
    opsets = list(model.opset_import)
    for _ in range(_FOLD_ROUNDS):
        known = static_shapes(model)
        folded: dict[str, np.ndarray] = {}
        keep = []
        for node in model.graph.node:
            values = _fold(node, known, consts, partial(_evaluator, opsets=opsets))
            if values is None:
                keep.append(node)
                continue
            folded.update(values)
            consts.update(values)
        if not folded:
            return model
        del model.graph.node[:]
        model.graph.node.extend(keep)
        model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in folded.items())
        del model.graph.value_info[:]
        try:
            model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception:
            return None
    return model


def _evaluator(node: onnx.NodeProto, opsets: list[onnx.OperatorSetIdProto]) -> Any:
    """onnx's reference evaluator of one node at the model's opsets (Unsqueeze's axes are an attribute before opset
    13 and an input after: evaluated alone, a node would be read at the newest opset)."""
    from onnx.reference import ReferenceEvaluator
    graph = helper.make_graph([node], "fold", [helper.make_tensor_value_info(i, 0, None) for i in node.input if i],
                              [helper.make_tensor_value_info(o, 0, None) for o in node.output if o])
    return ReferenceEvaluator(helper.make_model(graph, opset_imports=opsets))


def _fold(node: onnx.NodeProto, known: dict[str, Shape], consts: dict[str, np.ndarray], evaluator: Callable[..., Any]
          ) -> dict[str, np.ndarray] | None:
    """The node's outputs as constants, when they can be computed now and are small; else None."""
    if node.domain not in ("", "ai.onnx") or not node.output:
        return None
    if node.op_type == "Shape":
        shape = known.get(node.input[0])
        if shape is None:
            return None
        attrs = {a.name: a.i for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end", len(shape))
        return {node.output[0]: np.array(shape[start:end] if "end" in attrs else shape[start:], dtype=np.int64)}
    if node.op_type in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"):
        return None
    inputs = [i for i in node.input if i]
    if not all(i in consts for i in inputs) or any(sub.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                                   for sub in node.attribute):
        return None
    try:
        outputs = evaluator(node).run(None, {i: consts[i] for i in inputs})
    except Exception:  # an op the reference evaluator does not run: leave it to inference
        return None
    if any(np.asarray(o).size > FOLD_ELEMENTS for o in outputs):
        return None
    return {name: np.asarray(o) for name, o in zip(node.output, outputs, strict=False) if name}


def _recorded_shape(vi: onnx.ValueInfoProto | None, symbols: dict[str, int]) -> Shape | None:
    if vi is None or not vi.type.tensor_type.HasField("shape"):
        return None
    dims = [d if isinstance(d, int) and d > 0 else symbols.get(d) if isinstance(d, str) else None for d in dims_of(vi)]
    return tuple(d for d in dims if d is not None) if all(d is not None for d in dims) else None


def _check_sizes(proto: onnx.ModelProto, path: Path) -> None:
    for vi in list(proto.graph.value_info) + list(proto.graph.output):
        dims = dims_of(vi)
        if any(isinstance(d, int) and d >= MAX_DIM for d in dims):
            raise ArchcError(f"'{path}': tensor '{vi.name}' has an absurd shape {dims}", code="bad-shape")
        n = 1
        for d in dims:
            n *= d if isinstance(d, int) else 1
        if n > MAX_ELEMENTS:
            raise ArchcError(f"'{path}': tensor '{vi.name}' would hold {n:.3g} elements; the shapes are absurd",
                             code="bad-shape")
