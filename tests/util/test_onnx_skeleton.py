"""Reading an ONNX file without its weights: the same graph, large tensors' data left out, small ones kept."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from archc.util.onnx_skeleton import SMALL, WireError, load_skeleton


def model(tmp_path):
    big = numpy_helper.from_array(np.arange(8 * 3 * 3 * 3, dtype=np.float32).reshape(8, 3, 3, 3), "w")
    small = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape")
    floats = helper.make_tensor("f", TensorProto.FLOAT, [100], [0.5] * 100)  # float_data, not raw_data
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3]),
             helper.make_node("Reshape", ["c", "shape"], ["y"], name="flat")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[big, small, floats])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    m.metadata_props.add(key="k", value="v")
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    return path, m


def test_same_model_without_large_data(tmp_path):
    path, full = model(tmp_path)
    skel = load_skeleton(path)
    assert skel.graph.node == full.graph.node and skel.graph.input == full.graph.input
    assert skel.producer_name == "test" and skel.metadata_props == full.metadata_props
    t = {x.name: x for x in skel.graph.initializer}
    assert list(t["w"].dims) == [8, 3, 3, 3] and t["w"].data_type == TensorProto.FLOAT and not t["w"].raw_data
    assert list(t["f"].dims) == [100] and not t["f"].float_data
    assert numpy_helper.to_array(t["shape"]).tolist() == [1, -1]  # at most SMALL elements: kept
    assert 2 <= SMALL < 100


@pytest.mark.parametrize("cut", [1, 7, 40, -3])
def test_truncated_bytes_are_an_error(tmp_path, cut):
    path, _ = model(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:cut] if cut > 0 else data[:cut])
    with pytest.raises(WireError):
        load_skeleton(path)


def test_empty_file(tmp_path):
    (tmp_path / "e.onnx").write_bytes(b"")
    with pytest.raises(WireError, match="empty"):
        load_skeleton(tmp_path / "e.onnx")


def test_weights_held_aside_and_put_back_are_the_same_model(tmp_path):
    """take_weights leaves the graph and every tensor's name, type and dims, the large ones marked as held external
    data (which ONNX's shape inference accepts); put_weights restores the values, float_data ones as raw_data."""
    from archc.util.onnx_skeleton import HELD, put_weights, take_weights
    _, m = model(tmp_path)
    before = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    held = take_weights(m, 64)
    assert sorted(held) == ["f", "w"]  # "shape" has 2 elements: it stays
    assert all(not t.raw_data and not t.float_data for t in m.graph.initializer if t.name in held)
    assert {e.value for t in m.graph.initializer if t.name in held for e in t.external_data} == {HELD}
    onnx.shape_inference.infer_shapes(m, strict_mode=True)
    assert take_weights(m, 64) == {}  # nothing left to take: held tensors are external now
    put_weights(m, held)
    after = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    assert not any(t.external_data for t in m.graph.initializer)


def test_write_model_puts_weights_beyond_one_message_in_external_data(tmp_path, monkeypatch):
    """Over protobuf's 2 GiB (here a limit of 100 bytes), the weights go to `<file>.data` beside the model (those
    over 1 KiB: the rest stay inline): onnx reads the pair back equal, the hash covers both files, and the model in
    memory keeps its weights."""
    import hashlib

    from archc.util import onnx_skeleton
    _, m = model(tmp_path)
    m.graph.initializer.append(numpy_helper.from_array(np.linspace(0, 1, 1000, dtype=np.float32), "big"))
    before = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    small = onnx_skeleton.write_model(m, tmp_path / "whole.onnx")
    assert not (tmp_path / "whole.onnx.data").exists()
    assert small == hashlib.sha256((tmp_path / "whole.onnx").read_bytes()).hexdigest()
    monkeypatch.setattr(onnx_skeleton, "MAX_WEIGHT_BYTES", 100)
    digest = onnx_skeleton.write_model(m, tmp_path / "split.onnx")
    files = [(tmp_path / "split.onnx").read_bytes(), (tmp_path / "split.onnx.data").read_bytes()]
    assert digest == hashlib.sha256(files[0] + files[1]).hexdigest()
    assert len(files[1]) == 1000 * 4 and len(files[0]) < 2000
    back = onnx.load(str(tmp_path / "split.onnx"))
    assert all(np.array_equal(numpy_helper.to_array(t), before[t.name]) for t in back.graph.initializer)
    assert all(np.array_equal(numpy_helper.to_array(t), before[t.name]) for t in m.graph.initializer)
