"""IR graph → a checked, shape-inferred, optionally simplified ONNX model.

    to_onnx(graph) = build nodes → infer shapes (and compare with archc's own) → check → simplify → check

The checks and the simplifier run with the large weights held aside (`_held_aside`), which are put back at the end.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from archc.emit.onnx_model import OPSET, build_model
from archc.emit.weights import BindReport, bind_weights, init_weights, read_weights, read_weights_map
from archc.errors import ArchcError, UsageError
from archc.ir import Graph
from archc.options import ModelOptions
from archc.util.onnx_skeleton import MAX_WEIGHT_BYTES


def constant_names(graph: Graph) -> set[str]:
    """Names of the non-weight constants archc writes (shape tensors, clip bounds): not weights when binding."""
    model = build_model(graph, {})
    return {t.name for t in model.graph.initializer}




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


HELD_ELEMENTS = 4096  # elements: weights at least this large are held aside while the model is checked and simplified


def _held_aside(model: onnx.ModelProto, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Which weights to keep out of `model` (built without weights) while it is checked and simplified: each is
    declared as a graph input of its type and shape instead; the others become initializers now. ONNX's checker,
    its shape inference and onnx-simplifier each copy the whole model, several times (VGG-16: 528 MB of weights,
    18 s of 23), and none needs a weight's values. Only a weight whose every consumer also reads something computed
    is held, so no constant folding the simplifier could do is lost."""
    constant = {t.name for t in model.graph.initializer} | set(weights)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    held = {name: arr for name, arr in weights.items() if np.size(arr) >= HELD_ELEMENTS and name in consumers
            and all(any(i and i not in constant for i in n.input) for n in consumers[name])}
    model.graph.initializer.extend(numpy_helper.from_array(np.asarray(arr), name)
                                   for name, arr in weights.items() if name not in held)
    model.graph.input.extend(onnx.helper.make_tensor_value_info(
        name, onnx.helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape)) for name, arr in held.items())
    return held


def _put_back(model: onnx.ModelProto, held: Mapping[str, np.ndarray], order: list[str]) -> onnx.ModelProto:
    """The held weights as initializers again, in the emitter's order (weights, then constants); one the
    simplifier left unused is dropped, as it drops unused initializers."""
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    inputs = [v for v in model.graph.input if v.name not in held]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    by_name = {t.name: t for t in model.graph.initializer}
    by_name.update((name, numpy_helper.from_array(np.asarray(arr), name)) for name, arr in held.items()
                   if name in used)
    rank = {name: i for i, name in enumerate(order)}
    del model.graph.initializer[:]
    model.graph.initializer.extend(sorted(by_name.values(), key=lambda t: rank.get(t.name, len(rank))))
    return model


def to_onnx(graph: Graph, options: ModelOptions | None = None, weights: Mapping[str, np.ndarray] | None = None
            ) -> onnx.ModelProto:
    """The emitter reads `options.weights` (a file to bind), `.seed` (initialisation) and `.simplify`."""
    options = options or ModelOptions()
    weights = weights if weights is not None else weights_for(graph, options)
    model = build_model(graph, {})  # nodes and constants; the weights are added by _held_aside and _put_back
    order = list(weights) + [t.name for t in model.graph.initializer]
    held = _held_aside(model, weights)
    model = _check_shapes(model, graph)
    onnx.checker.check_model(model, full_check=True)
    if options.simplify:
        model = simplify(model)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        onnx.checker.check_model(model, full_check=True)
    return _put_back(model, held, order)


__all__ = ["OPSET", "build_model", "simplify", "to_onnx", "weights_and_report", "weights_for"]
