"""`archc quantize`: a float32 model → its int8 QDQ form calibrated on the user's inputs (onnxruntime's static
quantization), with its agreement with the float32 model; bad input gets one sentence and leaves nothing written."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import cli_error, raises
from onnx import numpy_helper

import archc
from archc.emit.quantize import Agreement
from archc.errors import UsageError

NET = """network small {
  input x: 3x32x32
  c1: conv(16, 3, pad=1) bn relu
  p1: maxpool(2)
  c2: conv(32, 3, pad=1) bn relu
  gap
  flatten
  fc: dense(10)
}
"""


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """The net, a folder of 16 calibration tensors (.npy) and its percentile-calibrated int8 model, written."""
    folder = tmp_path_factory.mktemp("quantize")
    (folder / "small.arch").write_text(NET)
    (folder / "cal").mkdir()
    rng = np.random.default_rng(5)
    for i in range(16):
        np.save(folder / "cal" / f"x{i:02d}.npy", rng.random((1, 3, 32, 32), dtype=np.float32))
    (folder / "cal" / "notes.txt").write_text("not an input: skipped")
    result = archc.quantize(folder / "small.arch", folder / "cal", folder / "small.int8.onnx", check=8)
    return folder, result


def test_a_kept_layer_stays_float32(calibrated, tmp_path):
    """--keep-fp32 c2: c2's weights stay float32 initializers (onnxruntime's nodes_to_exclude), the other layers'
    are int8 behind DequantizeLinear; the summary says so; a name the model lacks is one sentence naming its
    layers, and nothing is written."""
    folder, _ = calibrated
    result = archc.quantize(folder / "small.arch", folder / "cal", tmp_path / "kept.onnx", check=0, keep_fp32=["c2"])
    model = onnx.load(tmp_path / "kept.onnx")
    made = {o: n.op_type for n in model.graph.node for o in n.output}
    weights = {n.name: made.get(n.input[1], "initializer") for n in model.graph.node if n.op_type in ("Conv", "Gemm")}
    assert weights == {"c1": "DequantizeLinear", "c2": "initializer", "fc": "DequantizeLinear"}
    assert result.kept == ("c2",) and "1 node kept in fp32" in result.summary
    with raises("bad-option", UsageError, naming=("'c9'", "c1, c2, fc")):
        archc.quantize(folder / "small.arch", folder / "cal", tmp_path / "bad.onnx", check=0, keep_fp32=["c9"])
    assert not (tmp_path / "bad.onnx").exists()


def test_the_qdq_model_has_int8_weights_per_channel_and_runs(calibrated):
    folder, result = calibrated
    model = onnx.load(folder / "small.int8.onnx")
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 2 and "BatchNormalization" not in ops  # folded before quantizing
    assert result.quantized_nodes == ops.count("QuantizeLinear") >= 3 and result.calibration == 16
    stored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for conv, channels in zip((n for n in model.graph.node if n.op_type == "Conv"), (16, 32), strict=True):
        dq = next(n for n in model.graph.node if n.output[0] == conv.input[1])  # the weight's DequantizeLinear
        weight, scale, zero = (stored[name] for name in dq.input)
        assert weight.dtype == np.int8 and scale.shape == (channels,)  # per output channel
        assert not zero.any()  # symmetric
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    (y,) = ort.InferenceSession(str(folder / "small.int8.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert y.shape == (1, 10) and np.isfinite(y).all()


def test_its_agreement_with_float32_is_measured_not_assumed(calibrated):
    """On the inputs it was calibrated on, the int8 model stays within a few quantization steps of float32 and
    keeps the best class; the figures are recomputed here from the two models on onnxruntime."""
    folder, result = calibrated
    cal = result.on_calibration
    assert cal.inputs == 16 and cal.top1 is not None and cal.top1 >= 15 and cal.max_rel_diff < 0.05
    assert result.on_random.inputs == 8 and result.on_random.max_rel_diff > 0
    fp32 = archc.load(folder / "small.arch").proto
    sessions = [ort.InferenceSession(m, providers=["CPUExecutionProvider"])
                for m in (fp32.SerializeToString(), str(folder / "small.int8.onnx"))]
    worst = 0.0
    for f in sorted((folder / "cal").glob("*.npy")):
        want, got = (s.run(None, {"x": np.load(f)})[0] for s in sessions)
        worst = max(worst, float(np.abs(got - want).max() / np.abs(want).max()))  # of its largest magnitude
    assert worst == pytest.approx(cal.max_rel_diff, rel=1e-6)
    assert "calibrated by percentile on 16 inputs" in result.summary


def test_the_calibration_method_sets_the_ranges(calibrated):
    """min-max takes each activation's whole range; entropy and percentile clip it: the first activation's scale
    differs between methods (a method that did nothing would leave the model as min-max's)."""
    folder, _ = calibrated

    def first_scale(proto: onnx.ModelProto) -> float:
        stored = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        q = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] != "x")
        return float(stored[q.input[1]])

    scales = {m: first_scale(archc.quantize(folder / "small.arch", folder / "cal", method=m, check=0).proto)
              for m in ("minmax", "percentile", "entropy")}
    assert scales["minmax"] >= scales["percentile"] and len(set(scales.values())) >= 2


def test_a_low_agreement_is_said():
    assert "below 99%" in Agreement(100, 0.2, 95, 99).line("random inputs")
    assert "below" not in Agreement(100, 0.01, 100, 100).line("random inputs")
    assert "top-1" not in Agreement(4, 0.01, None, None).line("random inputs")  # not a classifier


def test_bad_calibration_input_is_one_sentence(calibrated, tmp_path):
    folder, _ = calibrated
    with raises("no-file", naming=str(tmp_path / "none")):
        archc.quantize(folder / "small.arch", tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with raises("bad-input", naming="no images or .npy files"):
        archc.quantize(folder / "small.arch", tmp_path / "empty")
    (tmp_path / "wrong").mkdir()
    np.save(tmp_path / "wrong" / "a.npy", np.zeros((1, 3, 16, 16), np.float32))
    with raises("bad-input", naming="1×3×32×32"):
        archc.quantize(folder / "small.arch", tmp_path / "wrong")
    with raises("bad-option", UsageError, naming="'fast'"):
        archc.quantize(folder / "small.arch", folder / "cal", method="fast")
    out = tmp_path / "x.int8.onnx"
    cli = subprocess.run([sys.executable, "-m", "archc", "quantize", str(folder / "small.arch"), "--calibrate",
                          str(tmp_path / "empty"), "-o", str(out)], capture_output=True, text=True)
    cli_error(cli, "bad-input", naming="no images or .npy files")
    assert not out.exists()


def test_an_activation_too_narrow_for_a_histogram_is_one_sentence(tmp_path):
    """A sigmoid driven to saturation (as MobileNet v3's gates can be on random inputs) spans too narrow a range for
    onnxruntime's 2,048-bin histogram, and its percentile calibrator raised numpy's ValueError ("Too many bins for
    data range"): now one sentence naming --method minmax, which calibrates that model."""
    from onnx import TensorProto, helper
    node = helper.make_node
    inits = [numpy_helper.from_array(np.full((4, 3, 1, 1), 1e-3, np.float32), "w"),
             numpy_helper.from_array(np.array([-1000.0], np.float32), "b"),
             numpy_helper.from_array(np.ones((2, 4, 1, 1), np.float32), "w2")]
    nodes = [node("Conv", ["x", "w"], ["c"]), node("Add", ["c", "b"], ["a"]), node("Sigmoid", ["a"], ["s"]),
             node("Conv", ["s", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "narrow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], inits)
    path = tmp_path / "narrow.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    (tmp_path / "cal").mkdir()
    for i in range(3):
        np.save(tmp_path / "cal" / f"{i}.npy", np.random.default_rng(i).standard_normal((3, 8, 8)).astype(np.float32))
    with raises("bad-calibration", naming="--method minmax"):
        archc.quantize(path, tmp_path / "cal", tmp_path / "out.onnx", check=0)
    assert not (tmp_path / "out.onnx").exists()
    assert archc.quantize(path, tmp_path / "cal", check=0, method="minmax").quantized_nodes > 0


def test_cli_writes_the_model_and_prints_its_agreement(calibrated, tmp_path):
    folder, _ = calibrated
    out = tmp_path / "q.onnx"
    cli = subprocess.run([sys.executable, "-m", "archc", "quantize", str(folder / "small.arch"), "--calibrate",
                          str(folder / "cal"), "-o", str(out), "--method", "minmax", "--check", "4"],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    lines = cli.stdout.splitlines()
    assert lines[0].startswith(f"wrote {out}: int8 QDQ") and "calibrated by minmax on 16 inputs" in lines[0]
    assert "calibration inputs: max rel. diff" in lines[1] and "random inputs: max rel. diff" in lines[2]
    assert len(lines) == 3  # the quantizer's own progress lines are not mixed in
    onnx.checker.check_model(str(out))


def test_a_batch_is_calibrated_on_as_many_files_and_a_series_on_arrays(calibrated, tmp_path):
    """At batch 2 the 16 files are 8 batches (each item's top class compared); a 1-D network (C×T input) takes .npy
    arrays of its item shape, and a picture is refused in one sentence."""
    folder, _ = calibrated
    two = archc.quantize(archc.load(folder / "small.arch", batch=2), folder / "cal", check=4)
    assert two.calibration == 16 and two.on_calibration.inputs == 16 and two.on_random.inputs == 4
    assert two.on_calibration.top1 is not None and two.on_calibration.top1 >= 15
    (tmp_path / "series.arch").write_text("network series {\n  input s: 2x64\n  c: conv(8, 5, pad=2) relu\n"
                                          "  gap\n  flatten\n  fc: dense(6)\n}\n")
    (tmp_path / "cal").mkdir()
    for i in range(6):
        np.save(tmp_path / "cal" / f"s{i}.npy", np.random.default_rng(i).standard_normal((2, 64)).astype(np.float32))
    series = archc.quantize(tmp_path / "series.arch", tmp_path / "cal", check=2)
    assert series.calibration == 6 and series.quantized_nodes >= 2
    (tmp_path / "pictures").mkdir()
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "pictures" / "a.png")
    with raises("bad-input", naming=("2×64", "a.png", ".npy")):
        archc.quantize(tmp_path / "series.arch", tmp_path / "pictures")
