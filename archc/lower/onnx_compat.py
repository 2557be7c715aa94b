"""The front door's model → what TVM 0.27's ONNX importer (`relax.frontend.onnx.from_onnx`) takes: a table of
documented rewrites, applied in order each time a model is lowered (the package's `model.onnx` stays the model as
the front door gave it). Each keeps what onnxruntime computes; `tests/lower/test_onnx_compat.py` checks each one
by compiling a small file that needs it and comparing with onnxruntime.

    fold-constants       shape subgraphs (`Shape → Gather → Concat → Reshape`, ShuffleNet's chunk, a flatten by
                         the batch size), `Constant` nodes and any small node whose inputs are all constants become
                         initializers holding their values (`shape_inference.fold_constants`, the analyzer's own
                         fold). TVM's importer needs static shapes: it stops at a shape computed at run time
                         ("emit_te now only supports Tensor that has ShapeExpr shape", "Reshape requires the input
                         new shape to be Shape").
    resize-sizes         a Resize (opset 11-12) given `sizes` with an empty `scales` tensor: the empty input is left
                         out; TVM counts an empty `scales` as given ("Only one of scales and sizes can be provided").
    lp-normalization     LpNormalization(x, axis, p) → Div(x, ReduceL1|ReduceL2(x, axes=[axis], keepdims=1)), which
                         TVM's importer lacks (SSD's conv4_3 L2 norm); y = x / ‖x‖_p along the axis, as onnxruntime.
    lrn-as-conv          LRN(x; size, alpha, beta, bias) → x · exp(−β · log(bias + Conv(x², W))), W the C × C band of
                         α/size over each channel's window: TVM imports LRN as a 3-D average pool over an expanded
                         axis and a scalar `pow` per element, in NCHW between blocked layers (GoogLeNet's two LRNs:
                         22% of its bf16 run); as a 1×1 convolution the sum runs in archc's blocked kernels, and exp
                         and log are vectorized (vector_math).
    roi-align-half-pixel a RoiAlign with half-pixel coordinates (opset 16's default; Detectron2's `aligned`) reads its
                         boxes plus 0.5 − 0.5/spatial_scale: the half pixel is one of the feature map (0.5/scale input
                         pixels), but TVM 0.27's importer subtracts 0.5 input pixels from the boxes and its kernel no
                         more (a 7×7 RoIAlign at stride 16 differed from onnxruntime by 10% of the range, Faster
                         R-CNN's class scores by 4%); with the boxes moved first the shift is the right one.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from archc.shape_inference import FOLD_ELEMENTS, fold_constants, static_shapes
from archc.util.onnx_skeleton import put_weights, take_weights


@dataclass(frozen=True)
class Rewrite:
    name: str
    apply: Callable[[onnx.ModelProto], onnx.ModelProto | None]  # a rewritten copy; None: nothing to rewrite


def for_tvm(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The model with every rewrite of the table applied where it applies, and the names of those applied. The
    weights are held aside meanwhile (`take_weights`): a rewrite works on a copy, and copies the graph alone."""
    applied = []
    held = take_weights(model, FOLD_ELEMENTS)  # no rewrite reads a tensor that large
    out = model
    try:
        for rewrite in REWRITES:
            rewritten = rewrite.apply(out)
            if rewritten is not None:
                out = rewritten
                applied.append(rewrite.name)
    finally:
        put_weights(model, held)
    return put_weights(out, held), applied


def _is_onnx(node: onnx.NodeProto, op: str) -> bool:
    return node.op_type == op and node.domain in ("", "ai.onnx")


def _fold(model: onnx.ModelProto) -> onnx.ModelProto | None:
    constants = {t.name for t in model.graph.initializer}
    if not any(n.op_type in ("Shape", "Size", "Constant") or all(i in constants for i in n.input if i)
               for n in model.graph.node):  # the usual case, a spec's or a simplified graph: no copy made
        return None
    before = len(model.graph.node)
    folded = fold_constants(model)
    return folded if folded is not None and len(folded.graph.node) < before else None


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _resize_sizes(model: onnx.ModelProto) -> onnx.ModelProto | None:
    empty = {t.name for t in model.graph.initializer if 0 in t.dims or (not t.dims and not t.raw_data
                                                                        and not t.float_data)}
    empty |= {n.output[0] for n in model.graph.node if _is_onnx(n, "Constant") and n.attribute
              and n.attribute[0].type == onnx.AttributeProto.TENSOR
              and numpy_helper.to_array(n.attribute[0].t).size == 0}
    hits = [n for n in model.graph.node if _is_onnx(n, "Resize") and len(n.input) >= 4 and n.input[3]
            and n.input[2] in empty]
    if not hits:
        return None
    out = _copy(model)
    for node in out.graph.node:
        if _is_onnx(node, "Resize") and len(node.input) >= 4 and node.input[3] and node.input[2] in empty:
            node.input[2] = ""
    return out


def _lp_normalization(model: onnx.ModelProto) -> onnx.ModelProto | None:
    if not any(_is_onnx(n, "LpNormalization") for n in model.graph.node):
        return None
    out = _copy(model)
    opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), 17)
    nodes = []
    for node in out.graph.node:
        if not _is_onnx(node, "LpNormalization"):
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axis, p = int(attrs.get("axis", -1)), int(attrs.get("p", 2))
        norm = f"{node.output[0]}__archc_l{p}norm"
        reduce_op = "ReduceL1" if p == 1 else "ReduceL2"
        if opset >= 18:  # axes became an input in opset 18
            axes = f"{norm}__axes"
            nodes.append(helper.make_node("Constant", [], [axes], value=helper.make_tensor(axes, onnx.TensorProto.INT64,
                                                                                           [1], [axis])))
            nodes.append(helper.make_node(reduce_op, [node.input[0], axes], [norm], keepdims=1))
        else:
            nodes.append(helper.make_node(reduce_op, [node.input[0]], [norm], axes=[axis], keepdims=1))
        nodes.append(helper.make_node("Div", [node.input[0], norm], list(node.output), name=node.name))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _lrn_as_conv(model: onnx.ModelProto) -> onnx.ModelProto | None:
    if not any(_is_onnx(n, "LRN") for n in model.graph.node):
        return None
    shapes = static_shapes(model)
    out = _copy(model)
    nodes = []
    for node in out.graph.node:
        shape = shapes.get(node.input[0]) if _is_onnx(node, "LRN") else None
        if not shape or len(shape) < 3 or not shape[1]:  # not an LRN, or its channels unknown: TVM's import
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        size, channels = int(attrs["size"]), shape[1]
        alpha, beta, bias = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)), float(attrs.get("bias", 1))
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2  # channels below and above (ONNX: floor and ceil)
        c = np.arange(channels)
        band = ((c[None, :] >= c[:, None] - lo) & (c[None, :] <= c[:, None] + hi)).astype(np.float32)
        x, name = node.input[0], f"{node.output[0]}__archc_lrn"
        weight = band.reshape(channels, channels, *[1] * (len(shape) - 2)) * np.float32(alpha / size)
        out.graph.initializer.extend([numpy_helper.from_array(weight, f"{name}_w"),
                                      numpy_helper.from_array(np.array(bias, np.float32), f"{name}_bias"),
                                      numpy_helper.from_array(np.array(-beta, np.float32), f"{name}_beta")])
        nodes += [helper.make_node("Mul", [x, x], [f"{name}_sq"]),
                  helper.make_node("Conv", [f"{name}_sq", f"{name}_w"], [f"{name}_sum"],
                                   kernel_shape=[1] * (len(shape) - 2)),
                  helper.make_node("Add", [f"{name}_sum", f"{name}_bias"], [f"{name}_d"]),
                  helper.make_node("Log", [f"{name}_d"], [f"{name}_log"]),
                  helper.make_node("Mul", [f"{name}_log", f"{name}_beta"], [f"{name}_exponent"]),
                  helper.make_node("Exp", [f"{name}_exponent"], [f"{name}_scale"]),
                  helper.make_node("Mul", [x, f"{name}_scale"], list(node.output), name=node.name)]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _half_pixel(node: onnx.NodeProto, opset: int) -> bool:
    mode = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "coordinate_transformation_mode"),
                None)
    return (mode.decode() if isinstance(mode, bytes) else mode) == "half_pixel" if mode else opset >= 16


def _roi_align_half_pixel(model: onnx.ModelProto) -> onnx.ModelProto | None:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    if not any(_is_onnx(n, "RoiAlign") and _half_pixel(n, opset) for n in model.graph.node):
        return None
    out = _copy(model)
    nodes = []
    for node in out.graph.node:
        if _is_onnx(node, "RoiAlign") and _half_pixel(node, opset):
            half, raised = f"{node.output[0]}__archc_half", f"{node.output[0]}__archc_rois"
            scale = next((float(helper.get_attribute_value(a)) for a in node.attribute if a.name == "spatial_scale"),
                         1.0)
            out.graph.initializer.append(numpy_helper.from_array(np.array(0.5 - 0.5 / scale, np.float32), half))
            nodes.append(helper.make_node("Add", [node.input[1], half], [raised]))
            node.input[1] = raised
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


REWRITES = (Rewrite("fold-constants", _fold), Rewrite("resize-sizes", _resize_sizes),
            Rewrite("lp-normalization", _lp_normalization), Rewrite("lrn-as-conv", _lrn_as_conv),
            Rewrite("roi-align-half-pixel", _roi_align_half_pixel))
