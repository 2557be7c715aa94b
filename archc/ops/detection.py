"""Two-stage detection: RoIAlign of region proposals (Faster and Mask R-CNN), and the cost of the ONNX ops that
detectors' graphs hold (RoiAlign, MaxRoiPool, NonMaxSuppression, TopK).

`roi_align` is a merge: its first branch is the feature map (1×C×H×W), its second the proposals (R boxes of x1, y1,
x2, y2 in input pixels, R×4 or 1×R×4), and its output R×C×size×size: from there the network runs once per proposal,
its batch axis being the proposals (the per-RoI heads of the R-CNN family).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from archc.ops.registry import (
    RF,
    Attrs,
    Built,
    EmitCtx,
    Kind,
    NodeView,
    OnnxRule,
    OpDef,
    OpError,
    Param,
    register,
    register_onnx,
)
from archc.shapes import Shape, fmt_dims, numel


def _build_roi_align(a: Attrs, shapes: Sequence[Shape]) -> Built:
    if len(shapes) != 2:
        raise OpError("roi_align takes two branches: the feature map, then the proposals (R×4 boxes)",
                      code="bad-args")
    x, rois = shapes
    if len(x) != 4 or x[0] != 1:
        raise OpError(f"roi_align's feature map must be 1×C×H×W, got {fmt_dims(x)}", code="shape-mismatch")
    boxes = rois[1:] if len(rois) == 3 and rois[0] == 1 else rois
    if len(boxes) != 2 or boxes[1] != 4:
        raise OpError(f"roi_align's proposals must be R×4 boxes (x1, y1, x2, y2), got {fmt_dims(rois)}",
                      code="shape-mismatch")
    size, stride, sampling = a["size"], a["stride"], a["sampling"]
    if size < 1 or stride <= 0 or sampling < 1:
        raise OpError("roi_align needs size ≥ 1, stride > 0 and sampling ≥ 1", attr="size" if size < 1 else
                      "stride" if stride <= 0 else "sampling")
    return Built((boxes[0], x[1], size, size), (),
                 {"size": size, "scale": 1.0 / stride, "sampling": sampling, "aligned": a["aligned"],
                  "rois": boxes[0]})


def _emit_roi_align(ctx: EmitCtx, attrs: Attrs) -> None:
    """ONNX RoiAlign (opset 16: half-pixel coordinates where `aligned`, Detectron2's default), every box of image 0."""
    r = attrs["rois"]
    boxes = ctx.reshape(ctx.inputs[1], (r, 4), "boxes")
    batch = ctx.const("batch_indices", np.zeros(r, np.int64))
    ctx.node("RoiAlign", [ctx.inputs[0], boxes, batch], output_height=attrs["size"], output_width=attrs["size"],
             sampling_ratio=attrs["sampling"], spatial_scale=float(attrs["scale"]), mode="avg",
             coordinate_transformation_mode="half_pixel" if attrs["aligned"] else "output_half_pixel")


register(OpDef(
    "roi_align", "RoIAlign (Mask R-CNN): each proposal's window of the feature map as size×size cells, each the "
    "mean of sampling² bilinear samples; the output's batch axis is the proposals",
    (Param("size", Kind.INT, 7), Param("stride", Kind.FLOAT, 16, doc="the feature map's stride in input pixels"),
     Param("sampling", Kind.INT, 2), Param("aligned", Kind.BOOL, True)),
    _build_roi_align, _emit_roi_align, ("Reshape", "RoiAlign"), merge=True))


# ---- analysis of ONNX nodes -------------------------------------------------------------------------------------
BILINEAR_FLOPS = 8  # a bilinear sample: 4 weights applied (4 mul) and summed (3 add), then accumulated (1 add)


def _roi_align_flops(v: NodeView) -> int | None:
    out = numel(v.out_shapes[0])
    sampling = int(v.attrs.get("sampling_ratio", 0))
    if out is None or sampling <= 0:  # 0: adaptive, ceil(box size / output size) per box: unknown before running
        return None
    return out * (sampling * sampling * BILINEAR_FLOPS + 1)  # + the mean's divide


def _explain_roi_align(v: NodeView, params: int, nontrainable: int, macs: int | None) -> list[str]:
    """An RoIAlign cell, as the deck draws it: the proposal's box on the feature map, its cells, each cell's
    sampling points and their bilinear interpolation (the FLOPs line after these says how many)."""
    x, y = v.in_shapes[0], v.out_shapes[0]
    if x is None or y is None:
        return []
    r, _, oh, ow = y
    return [f"each of the {r} proposals: its box (x1, y1, x2, y2 in input pixels) times the map's scale (1/stride) "
            f"lands on the {x[2]}×{x[3]}×{x[1]} feature map and is cut into {oh}×{ow} cells of equal size, without "
            "rounding (RoIPool rounds)",
            "each cell: sampling_ratio × sampling_ratio points spread evenly inside it (2×2 in archc's roi_align), "
            "each the bilinear interpolation of the 4 feature pixels around it; the cell is their mean, channel by "
            "channel"]


def _roi_pool_flops(v: NodeView) -> int | None:
    """MaxRoiPool: each output cell compares the input pixels of its bin; the bins are as large as the boxes
    (known only at run time), so the cost is counted for bins of one input pixel per output cell (a lower bound)."""
    return numel(v.out_shapes[0])


def _nms_flops(v: NodeView) -> int | None:
    """Greedy non-maximum suppression of B boxes per class: every pair's IoU in the worst case, B·(B−1)/2 pairs of
    ~15 operations (2 areas, the intersection's 4 max/min and area, union, divide, compare), per batch and class."""
    boxes, scores = (v.in_shapes + [None, None])[:2]
    if not boxes or not scores or len(scores) != 3:
        return None
    n, classes, b = scores
    return n * classes * (b * (b - 1) // 2) * 15


def _topk_flops(v: NodeView) -> int | None:
    """Partial selection: n·log2(k) comparisons per sorted row (a heap of k)."""
    x, k = v.in_shapes[0], v.const_inputs[1] if len(v.const_inputs) > 1 else None
    out = v.out_shapes[0]
    if not x or out is None:
        return None
    axis = int(v.attrs.get("axis", -1)) % len(x)
    kk = int(np.asarray(k).reshape(-1)[0]) if k is not None else out[axis]
    total = numel(x)
    return None if total is None else total * max(1, math.ceil(math.log2(max(kk, 2))))  # rows × n


register_onnx(OnnxRule("RoiAlign", f"per output cell sampling_ratio² bilinear samples of {BILINEAR_FLOPS} operations "
                       "and a divide (sampling_ratio 0, adaptive: unknown)", _roi_align_flops, rf=RF.GLOBAL,
                       explain=_explain_roi_align))
register_onnx(OnnxRule("MaxRoiPool", "one comparison per output cell (bins of one pixel: a lower bound; the bins' "
                       "sizes depend on the boxes)", _roi_pool_flops, rf=RF.GLOBAL))
register_onnx(OnnxRule("NonMaxSuppression", "every pair of boxes per class compared once (worst case), 15 "
                       "operations an IoU", _nms_flops, rf=RF.GLOBAL))
register_onnx(OnnxRule("TopK", "n·log2(k) comparisons per row", _topk_flops, rf=RF.GLOBAL))
