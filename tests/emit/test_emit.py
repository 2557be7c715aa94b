"""Spec → ONNX: validity, simplification that keeps outputs, node names and metadata."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import raises, run  # noqa: E402

from archc import spec
from archc.emit import to_onnx
from archc.emit.onnx_model import build_model
from archc.options import ModelOptions

NET = """
block unit(c, stride = 1) {
  add {
    main: { a: conv(c, 3, stride=stride, bias=false) bn relu6; b: conv(c, 3, bias=false) bn }
    if stride != 1 or in_channels != c { proj: conv(c, 1, stride=stride) bn } else { identity }
  }
  relu
}
network t(classes = 5) {
  input x: 3x32x32
  stem: conv(16, 3) bn relu
  stage: unit(32) * 2 first(stride=2)
  gap
  flatten
  dropout(0.2)
  fc: dense(classes)
}
"""


def test_simplified_model_is_valid_and_has_same_outputs():
    g = spec.load_text(NET, "<t>")
    (plain,), w, x = run(g, simplify=False)
    (simple,), _, _ = run(g, x=x, weights=w, simplify=True)
    np.testing.assert_allclose(simple, plain, rtol=1e-5, atol=1e-6)
    model = to_onnx(g)
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("BatchNormalization") == 6  # not fused into the convs
    assert "Dropout" in ops  # kept as a record


def test_simplification_keeps_every_weight_tensor():
    """Fresh zero biases and BN identity vectors are all equal; onnxsim must not merge them into one tensor."""
    g = spec.load_text(NET, "<t>")
    model = to_onnx(g)
    stored = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    for name, _, w in g.weight_items():
        assert stored[name] == int(np.prod(w.shape)), name


def test_every_intermediate_shape_is_inferred():
    model = to_onnx(spec.load_text(NET, "<t>"))
    inferred = {vi.name for vi in model.graph.value_info} | {o.name for o in model.graph.output}
    for node in model.graph.node:
        for out in node.output:
            assert out in inferred, out


def test_node_names_are_spec_paths_with_metadata():
    model = to_onnx(spec.load_text(NET, "<t>"))
    names = [n.name for n in model.graph.node]
    assert names[:3] == ["stem", "stem/bn", "stem/relu"]
    assert "stage_1/main/a" in names and "stage_1/proj" in names and "stage_2/add" in names
    assert "stage_2/proj" not in names  # identity shortcut in the second repetition
    node = next(n for n in model.graph.node if n.name == "stage_1/main/a")
    meta = {p.key: p.value for p in node.metadata_props}
    assert meta["archc.path"] == "stage_1/main/a" and meta["archc.layer"] == "conv"
    assert meta["archc.block"] == "stage_1"
    assert json.loads(meta["archc.blocks"]) == [{"path": "stage_1", "type": "unit", "args": {"c": 32, "stride": 2}}]
    assert json.loads(meta["archc.args"])["stride"] == 2
    assert meta["archc.span"] == "<t>:4:16"
    assert {p.key: p.value for p in model.metadata_props}["archc.params"] == '{"classes": 5}'


def test_onnx_shape_inference_disagreement_is_caught():
    g = spec.load_text(NET, "<t>")
    g.nodes[0].output.shape = (1, 16, 31, 31)  # corrupt archc's own inference
    with pytest.raises(AssertionError, match="archc infers .* but ONNX infers"):
        to_onnx(g, ModelOptions(simplify=False))


def test_float16_network():
    g = spec.load_text("network h {\n input x: 3x8x8 float16\n conv(4, 3) relu gap\n}", "<t>")
    model = to_onnx(g)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    (out,), _, _ = run(g, x=np.ones((1, 3, 8, 8), np.float16))
    assert out.dtype == np.float16


def test_multiple_outputs():
    g = spec.load_text("network m {\n input x: 3x8x8\n a: conv(4, 3)\n b: conv(2, 1)\n c: @a relu\n"
                       " output b, c\n}", "<t>")
    outs, _, _ = run(g)
    assert [o.shape for o in outs] == [(1, 2, 8, 8), (1, 4, 8, 8)]


def test_too_large_for_one_onnx_file():
    g = spec.load_text("network big {\n input x: 100000\n dense(60000)\n}", "<t>")
    with raises("too-large", naming="'big'"):
        to_onnx(g)


def test_build_is_cheap_without_weights():
    g = spec.load_text(NET, "<t>")
    model = build_model(g, {})
    assert len(model.graph.initializer) > 0  # only the constants (clip bounds)
