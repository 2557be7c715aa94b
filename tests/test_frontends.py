"""The front door: a spec or an ONNX file plus one `ModelOptions` becomes a `Model` with static shapes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import raises
from onnx import TensorProto, helper, numpy_helper

import archc
from archc import ModelOptions
from archc.frontends import load

SPECS = Path(__file__).resolve().parent.parent / "specs"


def conv_onnx(path: Path, batch="N") -> Path:
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_spec_with_and_without_weights():
    full = load(SPECS / "lenet5.arch")
    shapes_only = load(SPECS / "lenet5.arch", weights=False)
    assert full.kind == shapes_only.kind == "arch" and full.name == "lenet5"
    assert full.has_weights and not shapes_only.has_weights
    assert full.params == shapes_only.params == 61_706 and full.graph is not None
    assert full.inputs == shapes_only.inputs == [("image", (1, 1, 32, 32))]
    assert full.outputs == [("logits", (1, 10))] or full.outputs[0][1] == (1, 10)
    # the analyzer's form holds no weight data, only shapes
    assert all(not t.raw_data and not t.float_data for t in shapes_only.proto.graph.initializer)
    assert sum(len(t.raw_data) for t in full.proto.graph.initializer) == 4 * 61_706


def test_options_reach_the_spec():
    m = load(SPECS / "lenet5.arch", ModelOptions(batch=4, params={"num_classes": 7}), weights=False)
    assert m.inputs[0][1] == (4, 1, 32, 32) and m.outputs[0][1] == (4, 7)


def test_onnx_file_gets_static_shapes(tmp_path):
    m = load(conv_onnx(tmp_path / "c.onnx"), ModelOptions(batch=3))
    assert m.kind == "onnx" and m.name == "c" and m.graph is None and m.params is None
    assert m.inputs == [("x", (3, 3, 8, 8))] and m.outputs == [("y", (3, 4, 6, 6))]
    assert m.layer_count == 1


def test_any_suffix_is_tried_as_onnx(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x80\x02not onnx")
    with raises("bad-onnx", naming=(str(bad), ".arch specs and .onnx models")):  # what archc reads
        load(bad)
    good = conv_onnx(tmp_path / "model.bin")
    assert load(good).outputs[0][1] == (1, 4, 6, 6)


def test_folder_and_missing_file(tmp_path):
    with raises("no-file", naming=(f"'{tmp_path}'", "folder")):
        load(tmp_path)
    with raises("no-file", naming="nope.onnx"):
        load(tmp_path / "nope.onnx")


def test_keyword_options_are_model_options():
    m = archc.load(SPECS / "lenet5.arch", input="2x1x32x32", shapes_only=True)
    assert m.inputs[0][1] == (2, 1, 32, 32)
    with pytest.raises(TypeError, match="unknown option 'bath'"):
        archc.load(SPECS / "lenet5.arch", bath=2)


def test_an_onnx_file_read_for_shapes_cannot_be_compiled(tmp_path):
    """Read without weights (for analysis), the model holds none: compiling it must refuse, not write empty tensors."""
    path = conv_onnx(tmp_path / "c.onnx")
    m = archc.load(path, shapes_only=True)
    assert not m.has_weights
    with raises("no-weights", naming=str(path)):
        archc.compile(m, output=tmp_path / "out.onnx")
