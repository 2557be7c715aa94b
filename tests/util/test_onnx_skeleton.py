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
