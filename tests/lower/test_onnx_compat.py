"""Exporter idioms that TVM's ONNX importer does not take as they are, each a tiny hand-made file: compiled for
`native`, and verified by `archc compile` itself against onnxruntime (random inputs, 1e-4 of each output's range);
and the verifier catching a broken rewrite, naming the node it broke."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import archc
from archc.errors import VerificationFailed
from archc.lower import onnx_compat

pytestmark = pytest.mark.tvm
RNG = np.random.default_rng(0)


def _const(name: str, value, dtype=np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype), name)


def _weights(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.3).astype(np.float32), name)


def _bn(name: str, c: int) -> list[onnx.TensorProto]:
    return [_const(f"{name}_s", RNG.random(c) + 0.5, np.float32), _const(f"{name}_b", RNG.standard_normal(c) * .1,
                                                                        np.float32),
            _const(f"{name}_m", RNG.standard_normal(c) * .1, np.float32), _const(f"{name}_v", RNG.random(c) + 0.5,
                                                                                np.float32)]


def _save(path, nodes, inits, opset: int, dims=("N", 3, 16, 16)) -> str:
    graph = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
                              [onnx.ValueInfoProto(name="y")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return str(path)


def flatten_by_batch(path):
    """PyTorch's `x.view(x.size(0), -1)` at opset 11 (Unsqueeze's axes an attribute), after a conv."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Shape", ["c"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
             helper.make_node("Concat", ["n1", "minus1"], ["to"], axis=0),
             helper.make_node("Reshape", ["c", "to"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc", "fcb"], ["y"], transB=1)]
    return _save(path, nodes, [_weights("w", 4, 3, 3, 3), _const("zero", 0), _const("minus1", [-1]),
                               _weights("fc", 10, 4 * 16 * 16), _weights("fcb", 10)], 11)


def channel_shuffle(path):
    """ShuffleNet's chunk and channel shuffle at opset 13: slice bounds and reshape targets computed from Shape."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("Shape", ["c"], ["s"]),
             helper.make_node("Gather", ["s", "one"], ["ch"], axis=0),
             helper.make_node("Div", ["ch", "two"], ["half"]),
             helper.make_node("Unsqueeze", ["half", "axis0"], ["half1"]),
             helper.make_node("Slice", ["c", "start", "half1", "axis1"], ["a"]),
             helper.make_node("Slice", ["c", "half1", "big", "axis1"], ["b"]),
             helper.make_node("Relu", ["b"], ["b1"]),
             helper.make_node("Concat", ["a", "b1"], ["cat"], axis=1),
             helper.make_node("Gather", ["s", "idx"], ["nhw"], axis=0),
             helper.make_node("Split", ["nhw", "split"], ["nn", "hw"], axis=0),
             helper.make_node("Concat", ["nn", "two1", "half1", "hw"], ["to5"], axis=0),
             helper.make_node("Reshape", ["cat", "to5"], ["r5"]),
             helper.make_node("Transpose", ["r5"], ["t5"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t5", "s"], ["y"])]
    return _save(path, nodes, [_weights("w", 8, 3, 1, 1), _const("one", 1), _const("two", 2), _const("axis0", [0]),
                               _const("start", [0]), _const("big", [1 << 30]), _const("axis1", [1]),
                               _const("idx", [0, 2, 3]), _const("split", [1, 2]), _const("two1", [2])], 13)


def paddle_constants(path):
    """paddle2onnx's style at opset 11: every parameter a Constant node (Clip's bounds, Reshape's target, the
    scale of a Div), HardSigmoid with alpha 0.2, hardswish written out."""
    def constant(name, value, dtype=np.float32):
        return helper.make_node("Constant", [], [name], value=_const(name + "_v", value, dtype))
    nodes = [constant("lo", 0.0), constant("hi", 6.0), constant("three", 3.0), constant("to", [0, -1], np.int64),
             constant("shape4", [1, 8, 16, 16], np.int64),
             helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c", "lo", "hi"], ["relu6"]),
             helper.make_node("HardSigmoid", ["relu6"], ["gate"], alpha=0.2, beta=0.5),
             helper.make_node("Mul", ["c", "gate"], ["g"]),
             helper.make_node("Add", ["g", "three"], ["g3"]),
             helper.make_node("Clip", ["g3", "lo", "hi"], ["g6"]),
             helper.make_node("Mul", ["g", "g6"], ["hs"]),
             helper.make_node("Div", ["hs", "three"], ["hswish"]),
             helper.make_node("Reshape", ["hswish", "to"], ["flat"]),
             helper.make_node("Reshape", ["flat", "shape4"], ["y"])]
    return _save(path, nodes, [_weights("w", 8, 3, 3, 3)], 11, dims=(1, 3, 16, 16))


def resize_by_sizes(path):
    """An opset-11 Resize given `sizes` (40×24 from 16×16: ties of nearest rounding) with an empty `scales`, as
    TensorFlow and Paddle exports write it; then a DB head's transposed conv 2×2 stride 2 after a batch norm."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["c", "roi", "scales", "sizes"], ["r"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             helper.make_node("BatchNormalization", ["r", "b1_s", "b1_b", "b1_m", "b1_v"], ["n"]),
             helper.make_node("Relu", ["n"], ["nr"]),
             helper.make_node("ConvTranspose", ["nr", "wt", "wtb"], ["t"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("BatchNormalization", ["t", "b2_s", "b2_b", "b2_m", "b2_v"], ["tn"]),
             helper.make_node("HardSigmoid", ["tn"], ["y"], alpha=1 / 6, beta=0.5)]
    return _save(path, nodes, [_weights("w", 8, 3, 3, 3), _const("roi", [], np.float32),
                               _const("scales", [], np.float32), _const("sizes", [1, 8, 40, 24]),
                               _weights("wt", 8, 4, 2, 2), _weights("wtb", 4), *_bn("b1", 8), *_bn("b2", 4)], 11,
                 dims=(1, 3, 16, 16))


def dynamic_dims(path):
    """Batch, height and width all symbolic: the sizes come from --input; a global pool makes the head fixed."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])]
    return _save(path, nodes, [_weights("w", 6, 3, 3, 3)], 13, dims=("N", 3, "H", "W"))


def roi_align_half_pixel(path) -> str:
    """Detectron2's RoIAlign (opset 16, half-pixel coordinates) at stride 16 on a conv's map, boxes of the image
    held in the file (x1, y1, x2, y2 in input pixels): TVM's importer shifted them by the wrong half pixel."""
    boxes = np.array([[0, 0, 200, 150], [30.5, 40.25, 90, 220], [100, 10, 120, 30], [5, 5, 250, 250]], np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], strides=[16, 16], pads=[1, 1, 1, 1]),
             helper.make_node("RoiAlign", ["c", "boxes", "index"], ["y"], output_height=7, output_width=7,
                              sampling_ratio=2, spatial_scale=1 / 16, coordinate_transformation_mode="half_pixel")]
    inits = [_weights("w", 8, 3, 3, 3), numpy_helper.from_array(boxes, "boxes"), _const("index", [0, 0, 0, 0])]
    return _save(path, nodes, inits, 16, dims=(1, 3, 256, 256))


def local_response_norm(path) -> str:
    """AlexNet's and GoogLeNet's LRN across channels, rewritten as a 1×1 convolution of x² by a band (TVM's own
    import is a 3-D pool and a scalar pow): AlexNet's (window 5, its constants) on 10 channels, padded to a block in
    archc's layout, then a window of 3 with bias 2 (onnxruntime runs odd windows only)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("LRN", ["r"], ["n"], size=5, alpha=1e-4, beta=0.75, bias=1.0),
             helper.make_node("LRN", ["n"], ["y"], size=3, alpha=0.5, beta=0.6, bias=2.0)]
    return _save(path, nodes, [_weights("w", 10, 3, 3, 3)], 13, dims=(1, 3, 16, 16))


IDIOMS = {"roi_align_half_pixel": (roi_align_half_pixel, None, {"roi-align-half-pixel"}),
          "local_response_norm": (local_response_norm, None, {"lrn-as-conv"}),
          "flatten_by_batch": (flatten_by_batch, "1x3x16x16", {"fold-constants"}),
          "channel_shuffle": (channel_shuffle, "1x3x16x16", {"fold-constants"}),
          "paddle_constants": (paddle_constants, None, {"fold-constants"}),
          "resize_by_sizes": (resize_by_sizes, None, {"resize-sizes"}),
          "dynamic_dims": (dynamic_dims, "2x3x24x20", set())}


@pytest.mark.parametrize("idiom", IDIOMS)
def test_exporter_idiom_compiles_and_verifies(idiom, tmp_path):
    make, shape, rewrites = IDIOMS[idiom]
    path = make(tmp_path / f"{idiom}.onnx")
    model = archc.load(path, **({"input": shape} if shape else {}))
    assert set(onnx_compat.for_tvm(model.proto)[1]) == rewrites  # the rewrites this idiom needs, and only those
    result = archc.compile(model, "native", tmp_path / "pkg", quick=0)
    checked = result.verification
    assert checked is not None and checked.status == "passed" and checked.max_rel_diff <= 1e-4, checked
    written = json.loads((tmp_path / "pkg" / "manifest.json").read_text())["verification"]
    assert written["status"] == "passed" and written["reference"].startswith("onnxruntime ")


def test_weights_beyond_one_protobuf_message_compile_verify_and_run(tmp_path, monkeypatch):
    """A model whose weights protobuf cannot hold in one message (ViT-H/14: 2.4 GiB; here the limit is lowered to
    1 KiB, so that a tiny model takes that path): read from external data, inferred and rewritten with its weights
    held aside, verified by an onnxruntime session given them as arrays, and packaged with `model.onnx.data`, which
    the package's loaders read back."""
    from archc.frontends import load
    from archc.runtime import load_package
    from archc.util import onnx_skeleton
    (tmp_path / "src").mkdir()
    path = flatten_by_batch(tmp_path / "src" / "m.onnx")
    proto = onnx.load(str(path))
    onnx.save_model(proto, str(path), save_as_external_data=True, location="m.data", size_threshold=0)
    monkeypatch.setattr(onnx_skeleton, "MAX_WEIGHT_BYTES", 1024)
    result = archc.compile(path, "native", tmp_path / "pkg", quick=0, input="1x3x16x16")
    assert result.verification.status == "passed" and result.verification.max_rel_diff <= 1e-4
    pkg = tmp_path / "pkg"
    assert (pkg / "model.onnx").stat().st_size < 4096 and (pkg / "model.onnx.data").stat().st_size > 40_000
    again = load(pkg / "model.onnx")  # what `archc profile` and `bench` read
    assert {t.name: numpy_helper.to_array(t).tolist() for t in again.proto.graph.initializer} == {
        t.name: numpy_helper.to_array(t).tolist() for t in onnx.load(str(path)).graph.initializer}
    x = {"x": np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    import onnxruntime as ort
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert np.abs(load_package(pkg).run(x)[0] - expected).max() <= 1e-4 * np.abs(expected).max()


def test_a_broken_rewrite_is_caught_and_its_node_named(tmp_path, monkeypatch):
    """A rewrite that changes HardSigmoid's alpha (the kind of importer difference onnxruntime would not share):
    the build is written, marked failed in its manifest, and the error names that node, its op and attributes."""
    def broken(model: onnx.ModelProto) -> onnx.ModelProto | None:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        for node in out.graph.node:
            if node.op_type == "HardSigmoid":
                next(a for a in node.attribute if a.name == "alpha").f = 0.25
                return out
        return None
    monkeypatch.setattr(onnx_compat, "REWRITES", (*onnx_compat.REWRITES, onnx_compat.Rewrite("broken", broken)))
    path = paddle_constants(tmp_path / "paddle.onnx")
    with pytest.raises(VerificationFailed) as caught:
        archc.compile(path, "native", tmp_path / "pkg", quick=0)
    err = caught.value
    assert err.exit_code == 4 and err.verification.status == "failed"
    assert "the first node that diverges is 'gate' (HardSigmoid; alpha=0.2, beta=0.5)" in str(err)
    assert "its inputs agree with onnxruntime's" in str(err)
    written = json.loads((tmp_path / "pkg" / "manifest.json").read_text())["verification"]
    assert written["status"] == "failed" and "'gate' (HardSigmoid" in written["divergence"]


def test_compile_says_how_it_verified_and_no_verify_skips_it(tmp_path):
    path = dynamic_dims(tmp_path / "dyn.onnx")
    out = subprocess.run([sys.executable, "-m", "archc", "compile", path, "--target", "native", "--no-tune",
                          "--input", "1x3x32x32", "-o", str(tmp_path / "a")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "verified: every output equals onnxruntime" in out.stderr and "within 1e-04 of its range" in out.stderr
    out = subprocess.run([sys.executable, "-m", "archc", "compile", path, "--target", "native", "--no-tune",
                          "--input", "1x3x32x32", "--no-verify", "-o", str(tmp_path / "b")], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "verified" not in out.stderr, out.stderr
    assert "verification" not in json.loads((tmp_path / "b" / "manifest.json").read_text())


def test_a_constant_output_is_said_to_verify_little(tmp_path):
    """Zero weights (torchvision leaves ViT's head at zero) make onnxruntime's output 0 everywhere: the check passes
    but says it proves little."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    path = _save(tmp_path / "zero.onnx", nodes, [_const("w", np.zeros((4, 3, 1, 1)), np.float32)], 13,
                 dims=(1, 3, 8, 8))
    checked = archc.compile(path, "native", tmp_path / "pkg", quick=0).verification
    assert checked is not None and checked.status == "passed" and checked.max_rel_diff == 0
    assert checked.note and "is the same number everywhere" in checked.note


def test_a_model_onnxruntime_cannot_run_is_built_and_said_unverified(tmp_path, monkeypatch):
    """onnxruntime failing on the model (mocked at that edge: a model over protobuf's 2 GiB, or an op it lacks, is
    too big or too rare to build here) leaves the package built, its check skipped with why."""
    from archc.lower import verify

    def fails(*_args):
        raise ValueError("Message onnx.ModelProto exceeds maximum protobuf size of 2GB")
    monkeypatch.setattr(verify, "_reference", fails)
    path = dynamic_dims(tmp_path / "dyn.onnx")
    checked = archc.compile(path, "native", tmp_path / "pkg", quick=0, input="1x3x16x16").verification
    assert checked is not None and checked.status == "skipped"
    assert checked.note and "onnxruntime could not run the model" in checked.note and "2GB" in checked.note
