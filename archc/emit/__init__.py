"""IR graph → a checked, shape-inferred, optionally simplified ONNX model.

    to_onnx(graph) = build nodes → infer shapes (and compare with archc's own) → check → simplify → check
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from archc.emit.onnx_model import OPSET, build_model
from archc.emit.weights import BindReport, bind_weights, init_weights, read_weights, read_weights_map
from archc.errors import ArchcError, UsageError
from archc.ir import Graph
from archc.options import ModelOptions


def constant_names(graph: Graph) -> set[str]:
    """Names of the non-weight constants archc writes (shape tensors, clip bounds): not weights when binding."""
    model = build_model(graph, {})
    return {t.name for t in model.graph.initializer}


MAX_WEIGHT_BYTES = 2**31 - 2**26  # a protobuf message is limited to 2 GiB; keep room for the graph itself


def weights_for(graph: Graph, options: ModelOptions) -> dict[str, np.ndarray]:
    return weights_and_report(graph, options)[0]


def weights_and_report(graph: Graph, options: ModelOptions) -> tuple[dict[str, np.ndarray], BindReport | None]:
    """The graph's weights, initialised or bound from `options.weights`, and how they were bound (None when
    initialised)."""
    itemsize = np.dtype(graph.inputs[0].dtype).itemsize if graph.inputs else 4
    total = sum(int(np.prod(w.shape)) for _, _, w in graph.weight_items()) * itemsize
    if total > MAX_WEIGHT_BYTES:
        raise ArchcError(f"'{graph.name}' has {total / 2**30:.1f} GiB of weights; ONNX files over 2 GiB need "
                         "external data, which archc does not write yet: make the network smaller", code="too-large")
    if options.weights is None:
        if options.weights_map is not None:
            raise UsageError("a weights map renames the tensors of a weights file: give the file too (--weights)",
                             code="bad-usage")
        return init_weights(graph, options.seed), None
    source = read_weights(options.weights)
    ignore: set[str] = set()
    if options.weights.lower().endswith(".onnx"):  # shape tensors, clip bounds: an ONNX file's non-weights
        ignore = constant_names(graph) | {k for k, a in source.items() if not np.issubdtype(a.dtype, np.floating)}
    weights_map = read_weights_map(options.weights_map) if options.weights_map is not None else None
    binding = bind_weights(graph, source, ignore, weights_map, origin=options.weights)
    return binding.weights, binding.report


def _check_shapes(model: onnx.ModelProto, graph: Graph) -> onnx.ModelProto:
    """ONNX's own shape inference must agree with archc's on every layer output: a disagreement is an archc bug."""
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    known = {vi.name: tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
             for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for node in graph.nodes:
        got = known.get(node.output.name)
        if got is not None and got != tuple(node.output.shape):
            raise AssertionError(f"internal error: archc infers {node.output.shape} for '{node.name}' but ONNX "
                                 f"infers {got}")
    return inferred


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx-simplifier, told to keep what the analyzer must see: batch norms stay separate (their parameters are
    the network's), dropout stays as a record, and equal tensors or layers are not merged (freshly initialised
    zero biases are all equal, and merging them would lose weight names and miscount parameters)."""
    import onnxsim
    simplified, ok = onnxsim.simplify(model, skip_fuse_bn=True, skipped_optimizers=[
        "eliminate_nop_dropout", "fuse_bn_into_conv", "eliminate_duplicate_initializer",
        "eliminate_common_subexpression"])
    if not ok:
        raise ArchcError("onnx-simplifier could not validate the simplified model; rerun with --no-simplify",
                         code="simplify-failed")
    _restore_metadata(model, simplified)
    return simplified


def _restore_metadata(before: onnx.ModelProto, after: onnx.ModelProto) -> None:
    """onnxsim drops node metadata_props; nodes keep their names, so copy the spec locations back by name."""
    meta = {n.name: list(n.metadata_props) for n in before.graph.node}
    for n in after.graph.node:
        if n.name in meta and not n.metadata_props:
            n.metadata_props.extend(meta[n.name])
    after.metadata_props.extend(p for p in before.metadata_props if p.key not in {q.key for q in after.metadata_props})


def to_onnx(graph: Graph, options: ModelOptions | None = None, weights: Mapping[str, np.ndarray] | None = None
            ) -> onnx.ModelProto:
    """The emitter reads `options.weights` (a file to bind), `.seed` (initialisation) and `.simplify`."""
    options = options or ModelOptions()
    weights = weights if weights is not None else weights_for(graph, options)
    model = build_model(graph, weights)
    model = _check_shapes(model, graph)
    onnx.checker.check_model(model, full_check=True)
    if options.simplify:
        model = simplify(model)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        onnx.checker.check_model(model, full_check=True)
    return model


__all__ = ["OPSET", "build_model", "simplify", "to_onnx", "weights_and_report", "weights_for"]
