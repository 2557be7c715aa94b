"""The cost rules of detectors' ONNX ops (archc/ops/detection.py), per proposal and per box as stated in
`archc ops --costs`, on a foreign ONNX graph: RoiAlign (sampling_ratio² bilinear samples of 8 operations and a
divide per output cell), TopK (n·log2 k comparisons a row) and NonMaxSuppression (every pair of boxes per class,
15 operations an IoU)."""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import archc


def test_roi_align_topk_and_nms_costs(tmp_path):
    nodes = [
        helper.make_node("RoiAlign", ["x", "rois", "idx"], ["cells"], name="roi", output_height=7, output_width=7,
                         sampling_ratio=2, spatial_scale=0.25),
        helper.make_node("TopK", ["scores_flat", "k"], ["top", "top_i"], name="topk", axis=-1),
        helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["kept"], name="nms"),
    ]
    inits = [numpy_helper.from_array(np.zeros(5, np.int64), "idx"), numpy_helper.from_array(np.array([10]), "k")]
    graph = helper.make_graph(nodes, "det", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16]),
        helper.make_tensor_value_info("rois", TensorProto.FLOAT, [5, 4]),
        helper.make_tensor_value_info("scores_flat", TensorProto.FLOAT, [1, 100]),
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 50, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3, 50])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT if n != "kept" else TensorProto.INT64, None)
         for n in ("cells", "top", "kept")], inits)
    path = tmp_path / "det.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    a = archc.analyze(path)
    flops = {lay.name: lay.flops for lay in a.layers}
    assert flops["roi"] == 5 * 8 * 7 * 7 * (2 * 2 * 8 + 1)  # per proposal: 8·49 cells of 4 samples
    assert flops["topk"] == 100 * math.ceil(math.log2(10))
    assert flops["nms"] == 3 * (50 * 49 // 2) * 15
    assert a.layer("roi").output_shape == (5, 8, 7, 7) and a.totals.macs == 0
