"""ONNX files archc did not write (built here with onnx.helper, or exported by PyTorch), and untrusted ones."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers import raises
from onnx import TensorProto, helper, numpy_helper

from archc import ModelOptions, analyze
from archc.errors import ArchcError

F = TensorProto.FLOAT


def init(name, shape, value=None):
    arr = np.full(shape, 0.5 if value is None else value, dtype=np.float32)
    return numpy_helper.from_array(arr, name)


def save(tmp_path, nodes, inits, inputs, outputs, name="m", opset=17):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return str(path)


def x_input(shape=("N", 3, 32, 32)):
    return helper.make_tensor_value_info("x", F, list(shape))


def y_output():
    return helper.make_tensor_value_info("y", F, None)


def test_bn_grouped_depthwise_transposed_resize_pad(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Conv", ["bn", "w2", "b2"], ["c2"], name="grouped", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         group=4),
        helper.make_node("Conv", ["c2", "w3"], ["c3"], name="depthwise", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         group=16),
        helper.make_node("ConvTranspose", ["c3", "w4"], ["c4"], name="up", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["c4", "", "scales"], ["c5"], name="resize", mode="linear"),
        helper.make_node("Pad", ["c5", "pads"], ["y"], name="pad"),
    ]
    inits = [init("w1", (16, 3, 3, 3)), init("g", (16,), 1), init("b", (16,), 0), init("m", (16,), 0),
             init("v", (16,), 1), init("w2", (16, 4, 3, 3)), init("b2", (16,)), init("w3", (16, 1, 3, 3)),
             init("w4", (16, 8, 2, 2)), numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")]
    a = analyze(save(tmp_path, nodes, inits, [x_input()], [y_output()]))
    L = {layer.name: layer for layer in a.layers}
    assert L["stem"].output_shape == (1, 16, 16, 16) and L["stem"].params == 16 * 3 * 3 * 3
    assert L["stem"].macs == 16 * 16 * 16 * 3 * 3 * 3
    assert (L["bn"].params, L["bn"].nontrainable) == (32, 32)
    assert L["grouped"].params == 16 * 4 * 9 + 16 and L["grouped"].macs == 16 * 16 * 16 * (16 // 4) * 9
    assert L["depthwise"].params == 16 * 9 and L["depthwise"].macs == 16 * 16 * 16 * 9
    assert L["up"].output_shape == (1, 8, 32, 32)
    assert L["up"].macs == 16 * 16 * 16 * 8 * 4  # each input element scattered to C_out·k·k outputs
    assert L["resize"].output_shape == (1, 8, 64, 64) and L["pad"].output_shape == (1, 8, 66, 66)
    assert L["resize"].receptive_field.stride == (0.5, 0.5)
    assert L["pad"].receptive_field.start[0] == L["resize"].receptive_field.start[0] - 0.5
    assert a.totals.trainable_params == 16 * 27 + 32 + 16 * 36 + 16 + 16 * 9 + 16 * 8 * 4
    assert a.batch == 1  # the symbolic batch became 1


def test_reshape_chain_and_shape_subgraph_are_resolved_and_hidden(tmp_path):
    """PyTorch-style flatten: Shape → Gather → Unsqueeze → Concat → Reshape, then a dense layer."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("Shape", ["c"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsq"),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
        helper.make_node("Reshape", ["c", "target"], ["flat"], name="reshape"),
        helper.make_node("Reshape", ["flat", "back"], ["back4"], name="reshape2"),
        helper.make_node("Reshape", ["back4", "target"], ["flat2"], name="reshape3"),
        helper.make_node("Gemm", ["flat2", "fc", "fcb"], ["y"], name="fc", transB=1),
    ]
    inits = [init("w", (4, 3, 1, 1)), numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             numpy_helper.from_array(np.array([1, 4, 8, 8], np.int64), "back"),
             init("fc", (10, 256)), init("fcb", (10,))]
    a = analyze(save(tmp_path, nodes, inits, [x_input((1, 3, 8, 8))], [y_output()]))
    names = [layer.name for layer in a.layers]
    assert names == ["conv", "reshape", "reshape2", "reshape3", "fc"]
    assert a.hidden_shape_nodes == 4
    assert a.layer("fc").output_shape == (1, 10) and a.layer("fc").macs == 256 * 10
    assert a.layer("conv").receptive_field.size == (1.0, 1.0)
    # a reshape to N×256 drops the spatial layout; reshaping back cannot be trusted to restore it: whole input
    assert a.layer("reshape").receptive_field.whole and a.layer("reshape2").receptive_field.whole
    assert a.layer("fc").receptive_field.whole


def test_unknown_op_is_reported_not_zeroed(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("FancyAttention", ["c"], ["d"], name="fancy1", domain="custom.ops"),
             helper.make_node("FancyAttention", ["d"], ["y"], name="fancy2", domain="custom.ops")]
    model = helper.make_model(helper.make_graph(nodes, "m", [x_input((1, 3, 8, 8))], [y_output()],
                                                initializer=[init("w", (4, 3, 3, 3))]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom.ops", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    a = analyze(str(path))
    fancy = a.layer("fancy1")
    assert fancy.macs is None and fancy.flops is None
    assert a.totals.unknown_ops == {"FancyAttention": 2}
    assert a.totals.macs == a.layer("conv").macs  # the totals exclude them, and say so
    assert any("FancyAttention ×2" in w for w in a.warnings)
    from archc.render import render
    from archc.render.views import layer_table
    text = render([layer_table(a)], "table")
    assert "?" in text.split("fancy1")[1].splitlines()[0]
    assert "Totals exclude layers of unknown cost (no cost rule, or unknown shapes): FancyAttention ×2." in text


@pytest.mark.torch
def test_pytorch_export(tmp_path):
    """A torchvision ResNet-18 exported by PyTorch (which folds BN into the convs and names nodes by module)."""
    import sys
    from pathlib import Path

    import torch
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "zoo"))
    from torchvision_ref import reference
    model = reference("resnet18")
    path = tmp_path / "resnet18.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    a = analyze(str(path))
    convs = [layer for layer in a.layers if layer.op == "Conv"]
    assert len(convs) == 20 and a.totals.depth == 18
    assert a.totals.macs == 1_814_073_344  # 1.814 G: torchvision's published _ops for resnet18
    # BN folded into the convs at export: 11,689,512 − BN γ/β (9,600) + fused conv biases (4,800)
    assert a.totals.trainable_params == 11_689_512 - 9_600 + 4_800
    assert not any(layer.op == "Identity" for layer in a.layers)  # exporter's weight copies are not layers
    blocks = {b.path for b in a.blocks}
    assert {"layer1/layer1.0", "layer4/layer4.1"} <= blocks
    assert a.layer("/conv1/Conv").receptive_field.size == (7.0, 7.0)
    b4 = analyze(str(path), ModelOptions(batch=4))
    assert b4.totals.macs == 4 * a.totals.macs


@pytest.fixture(scope="module")
def torchvision_export(tmp_path_factory):
    """torchvision models exported by PyTorch's ONNX exporter, as users export them (symbolic batch)."""
    import sys
    from pathlib import Path
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "zoo"))
    from torchvision_ref import torchvision_models
    folder = tmp_path_factory.mktemp("tv")
    cache: dict[str, tuple[str, object]] = {}

    def export(name: str) -> tuple[str, object]:
        if name not in cache:
            model = getattr(torchvision_models(), name)(weights=None).eval()
            path = folder / f"{name}.onnx"
            torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {0: "N"}})
            weights = list(getattr(torchvision_models(), torchvision_models().get_model_weights(name).__name__))[0]
            cache[name] = (str(path), weights)
        return cache[name]
    return export


@pytest.mark.torch
def test_shufflenet_computed_slices_need_no_simplifier(torchvision_export):
    """ShuffleNet's chunk (Slices whose bounds are computed from the input's shape) and channel shuffle leave ONNX's
    shape inference with symbolic sizes; those were reported as a corrupt file. torchvision publishes 0.145 GFLOPS
    (its GMACs); archc counts the same with no onnx-simplifier pass."""
    path, weights = torchvision_export("shufflenet_v2_x1_0")
    a = analyze(path)
    assert round(a.totals.macs / 1e9, 3) == weights.meta["_ops"] == 0.145
    assert not a.totals.unknown_ops
    assert [w for w in a.warnings if "unknown" in w] == []


@pytest.mark.torch
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0"])
def test_exports_with_constant_nodes_match_torchvision(torchvision_export, name):
    """Constant nodes crashed the analyzer (IndexError); the whole list of twelve exports is in
    benchmarks/torchvision_exports.py."""
    path, weights = torchvision_export(name)
    a = analyze(path)
    assert round(a.totals.macs / 1e9, 3) == weights.meta["_ops"]  # 0.301, 0.386
    assert not a.totals.unknown_ops


def test_custom_op_leaves_what_follows_unknown_not_corrupt(tmp_path):
    """A custom-domain op between two convs: the conv after it was reported as a corrupt file. Now its shapes are
    unknown, said once, and the rest is analyzed."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("MySwish", ["c"], ["s"], name="swish", domain="com.example"),
             helper.make_node("Conv", ["s", "w2"], ["y"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    model = helper.make_model(helper.make_graph(nodes, "m", [x_input()], [y_output()],
                                                initializer=[init("w", (8, 3, 3, 3)), init("w2", (8, 8, 3, 3))]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    a = analyze(str(path))
    assert a.layer("conv1").macs == 32 * 32 * 8 * 27
    assert a.layer("conv2").macs is None and a.layer("conv2").params == 8 * 8 * 9  # weights still counted
    unknown = [w for w in a.warnings if "unknown" in w and "swish" in w]
    assert len(unknown) == 1 and "com.example.MySwish" in unknown[0]
    assert not any("no cost rule for Conv" in w for w in a.warnings)  # the conv has a rule; its shapes are unknown
    assert a.totals.unknown_ops == {"MySwish": 1, "Conv": 1}


def test_file_value_info_fills_what_inference_cannot(tmp_path):
    """Shapes the exporter recorded (with the symbolic batch) are used where inference gives up."""
    nodes = [helper.make_node("MySwish", ["x"], ["s"], name="swish", domain="com.example"),
             helper.make_node("Conv", ["s", "w"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "m", [x_input()], [y_output()], initializer=[init("w", (8, 3, 3, 3))],
                              value_info=[helper.make_tensor_value_info("s", F, ["N", 3, 32, 32])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "recorded.onnx"
    onnx.save(model, str(path))
    a = analyze(str(path), ModelOptions(batch=2))
    assert a.layer("conv").output_shape == (2, 8, 32, 32) and a.layer("conv").macs == 2 * 32 * 32 * 8 * 27


def test_symbolic_batch_is_said_once(tmp_path):
    a = analyze(_conv_model_symbolic(tmp_path))
    assert [w for w in a.warnings if "symbolic batch" in w] == [
        "input 'x' has a symbolic batch 'N': analyzed with batch 1 (--batch N for another)"]
    assert not [w for w in analyze(_conv_model_symbolic(tmp_path), ModelOptions(batch=2)).warnings
                if "symbolic" in w]


def _conv_model_symbolic(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])]
    return save(tmp_path, nodes, [init("w", (4, 3, 3, 3))], [x_input()], [y_output()], name="sym")


def test_input_override_must_name_an_input(tmp_path):
    from archc.errors import UsageError
    with raises("bad-input", UsageError, naming=("--input", "'foo'", "sym.onnx", "its inputs: x")):
        analyze(_conv_model_symbolic(tmp_path), ModelOptions(inputs={"foo": (1, 3, 64, 64)}))


# ---- untrusted files ----------------------------------------------------------------------------------------------
def _conv_model(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])]
    return save(tmp_path, nodes, [init("w", (4, 3, 3, 3))], [x_input((1, 3, 8, 8))], [y_output()])


def test_truncated_file(tmp_path):
    path = tmp_path / "m.onnx"
    data = open(_conv_model(tmp_path), "rb").read()
    path.write_bytes(data[: len(data) // 2])
    with raises("bad-onnx", naming=str(path)):
        analyze(str(path))


def test_garbage_file(tmp_path):
    path = tmp_path / "g.onnx"
    path.write_bytes(b"\x00\xff" * 100)
    with raises("bad-onnx", naming=str(path)):
        analyze(str(path))


def test_cycle(tmp_path):
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["b"], name="second"),
             helper.make_node("Relu", ["b"], ["y"], name="third")]
    with raises("bad-onnx", naming=("cycle", "first", "second")):
        analyze(save(tmp_path, nodes, [], [x_input((1, 3, 4, 4))], [y_output()]))


def test_dangling_input(tmp_path):
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="add")]
    with raises("bad-onnx", naming=("'add'", "'ghost'")):
        analyze(save(tmp_path, nodes, [], [x_input((1, 3, 4, 4))], [y_output()]))


def test_absurd_shapes(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    with raises("bad-shape", naming=("'x'", str(1 << 33))):
        analyze(save(tmp_path, nodes, [], [x_input((1, 3, 1 << 33, 4))], [y_output()]))
    nodes = [helper.make_node("Tile", ["x", "reps"], ["y"], name="tile")]
    reps = numpy_helper.from_array(np.array([1, 1 << 20, 1 << 20, 1], np.int64), "reps")
    with raises("bad-shape", naming="tile.onnx"):
        analyze(save(tmp_path, nodes, [reps], [x_input((1, 3, 1024, 4))], [y_output()], name="tile"))


def test_symbolic_size_needs_input_shape(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    path = save(tmp_path, nodes, [], [x_input(("N", 3, "H", "W"))], [y_output()])
    with raises("needs-shape", naming=("'H'", "axis 2", "--input x=1x3xNxN")):  # the size, and the option to give
        analyze(path)
    assert analyze(path, ModelOptions(inputs={None: (2, 3, 8, 8)})).layers[0].output_shape == (2, 3, 8, 8)


def test_external_data_outside_the_folder_is_refused_and_never_read(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 432)
    inner = tmp_path / "models"
    inner.mkdir()
    w = onnx.TensorProto(name="w", data_type=F, dims=[4, 3, 3, 3], data_location=TensorProto.EXTERNAL)
    w.external_data.add(key="location", value="../secret.bin")
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])]
    model = helper.make_model(helper.make_graph(nodes, "m", [x_input((1, 3, 8, 8))], [y_output()], initializer=[w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = inner / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with raises("unsafe-onnx", naming=("'w'", "'../secret.bin'")):
        analyze(str(path))


def test_external_data_inside_the_folder_is_fine_and_not_loaded(tmp_path):
    w = onnx.TensorProto(name="w", data_type=F, dims=[4, 3, 3, 3], data_location=TensorProto.EXTERNAL)
    w.external_data.add(key="location", value="weights.bin")  # not even present: shapes are all we need
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])]
    model = helper.make_model(helper.make_graph(nodes, "m", [x_input((1, 3, 8, 8))], [y_output()], initializer=[w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    assert analyze(str(path)).totals.trainable_params == 108


def test_missing_file():
    with raises("no-file", naming="/nonexistent/model.onnx"):
        analyze("/nonexistent/model.onnx")


def test_inconsistent_attributes_are_one_error(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3], group=0)]
    with raises("bad-onnx", naming=("'conv'", "group 0")):
        analyze(save(tmp_path, nodes, [init("w", (4, 3, 3, 3))], [x_input((1, 3, 8, 8))], [y_output()]))
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], strides=[0, 2])]
    with raises("bad-onnx", naming=("'pool'", "strides [0, 2]")):
        analyze(save(tmp_path, nodes, [], [x_input((1, 3, 8, 8))], [y_output()], name="pool"))
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", kernel_shape=[3, 3])]
    model = helper.make_model(helper.make_graph(nodes, "m", [x_input((1, 3, 8, 8))], [y_output()],
                                                initializer=[init("w", (4, 3, 3, 3))]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.graph.node[0].attribute[0].type = onnx.AttributeProto.FLOAT  # kernel_shape claims to be a float
    path = tmp_path / "typed.onnx"
    path.write_bytes(model.SerializeToString())
    with raises("bad-onnx", naming=("'conv'", "'kernel_shape'", "FLOAT", "INTS")):
        analyze(str(path))


def test_mutated_onnx_bytes_never_crash(tmp_path):
    """Untrusted input: any byte-level corruption of a real model ends in an analysis or one ArchcError."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import archc
    data = archc.load("specs/lenet5.arch", simplify=False).proto.SerializeToString()

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), min_size=1, max_size=6),
           st.integers(0, len(data)))
    def check(edits, cut):
        b = bytearray(data)
        for pos, val in edits:
            b[pos] = val
        path = tmp_path / "m.onnx"
        path.write_bytes(bytes(b[:cut] if cut % 4 == 0 else b))
        try:
            analyze(str(path))
        except ArchcError as err:
            assert err.code != "error", err  # a kind of failure that has its code

    check()


def test_auto_pad_same_upper_is_resolved_once_for_table_and_field(tmp_path):
    """9 wide, 4×4 at stride 2, SAME_UPPER: output ⌈9/2⌉ = 5, total padding (5 − 1)·2 + 4 − 9 = 3, split 1 before
    and 2 after; the field's first centre is then (4 − 1)/2 − 1 = 0.5."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[4, 4], strides=[2, 2],
                              auto_pad="SAME_UPPER")]
    a = analyze(save(tmp_path, nodes, [init("w", (4, 3, 4, 4))], [x_input((1, 3, 9, 9))], [y_output()]))
    c = a.layer("c")
    assert c.output_shape == (1, 4, 5, 5) and c.pads == (1, 1, 2, 2)
    assert c.receptive_field.start == (0.5, 0.5) and c.receptive_field.size == (4.0, 4.0)


def test_constant_node_feeding_add(tmp_path):
    """A `Constant` node (no inputs) used to crash the node checks with IndexError (exit 70). Six of twelve
    torchvision exports carry one; this is the smallest such file."""
    nodes = [
        helper.make_node("Constant", [], ["k"], name="const",
                         value=numpy_helper.from_array(np.full((1, 3, 1, 1), 2.0, np.float32))),
        helper.make_node("Add", ["x", "k"], ["y"], name="add"),
    ]
    a = analyze(save(tmp_path, nodes, [], [x_input()], [y_output()]))
    L = {layer.name: layer for layer in a.layers}
    assert L["add"].output_shape == (1, 3, 32, 32)
    assert L["add"].flops == 3 * 32 * 32  # one addition per output element
    assert "const" not in L  # a stored tensor, not a layer


def test_constant_node_cli_exit_zero(tmp_path):
    from click.testing import CliRunner

    from archc.cli import main
    nodes = [
        helper.make_node("Constant", [], ["k"], name="const", value_float=2.0),
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "k"], ["y"], name="scale"),
    ]
    path = save(tmp_path, nodes, [init("w", (8, 3, 3, 3))], [x_input()], [y_output()])
    result = CliRunner().invoke(main, ["analyze", path, "--by", "layer"])
    assert result.exit_code == 0, result.output
    assert "scale" in result.output and "conv" in result.output


def test_stored_tensors_outside_weight_slots_are_counted(tmp_path):
    """ViT's class token reaches the activations through Expand → Concat, and an op without a rule (Einsum) has
    weights of its own: both counted as parameters (they were 0), the op's cost still unknown and said."""
    nodes = [
        helper.make_node("Expand", ["cls", "cls_shape"], ["tok"], name="expand"),
        helper.make_node("Concat", ["tok", "x"], ["seq"], name="concat", axis=1),
        helper.make_node("Einsum", ["seq", "proj"], ["y"], name="einsum", equation="bnd,de->bne"),
    ]
    inits = [init("cls", (1, 1, 16)), numpy_helper.from_array(np.array([1, 1, 16], np.int64), "cls_shape"),
             init("proj", (16, 8))]
    x = helper.make_tensor_value_info("x", F, [1, 4, 16])
    a = analyze(save(tmp_path, nodes, inits, [x], [y_output()]))
    # Expand of two stored tensors is a constant: its output is the stored tensor Concat joins in
    assert a.layer("concat").params == 16 and a.layer("einsum").params == 16 * 8
    assert a.totals.trainable_params == 16 + 16 * 8
    assert a.layer("einsum").macs is None
    assert any("Einsum ×1" in w and "(128 values) are counted as parameters" in w for w in a.warnings)


@pytest.mark.torch
def test_vit_counts_its_class_token(torchvision_export):
    path, weights = torchvision_export("vit_b_16")
    a = analyze(path)
    assert a.totals.trainable_params == weights.meta["num_params"] == 86_567_656
    assert round(a.totals.macs / 1e9, 3) == weights.meta["_ops"] == 17.564  # attention MatMuls included


@pytest.mark.torch
def test_fold_bn_makes_a_spec_compare_with_its_inference_export(torchvision_export):
    """PyTorch folds batch norms into the convolutions when exporting in eval mode: with --fold-bn the spec's
    analysis is the export's, figure for figure (BN γ/β 9,600 and statistics 9,600 go, conv biases 4,800 come)."""
    path, _ = torchvision_export("resnet18")
    export = analyze(path)
    spec = analyze("specs/resnet18.arch", fold_bn=True)
    plain = analyze("specs/resnet18.arch")
    assert spec.totals.trainable_params == export.totals.trainable_params == plain.totals.trainable_params - 4_800
    assert spec.totals.nontrainable_params == export.totals.nontrainable_params == 0
    for key in ("macs", "flops", "activation_bytes", "peak_memory_bytes", "layer_counts", "depth"):
        assert getattr(spec.totals, key) == getattr(export.totals, key), key
    assert any("20 batch norms folded" in w for w in spec.warnings)


def test_fold_bn_keeps_what_it_cannot_fold(tmp_path):
    """A batch norm whose conv output is read elsewhere too, or that follows no conv, stays."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn"),
             helper.make_node("Add", ["bn", "c"], ["s"], name="add"),
             helper.make_node("BatchNormalization", ["s", "g", "b", "m", "v"], ["y"], name="bn2")]
    inits = [init("w", (3, 3, 1, 1)), init("g", (3,), 1), init("b", (3,), 0), init("m", (3,), 0), init("v", (3,), 1)]
    a = analyze(save(tmp_path, nodes, inits, [x_input()], [y_output()]), fold_bn=True)
    assert [lay.name for lay in a.layers] == ["conv", "bn", "add", "bn2"]
    assert any("0 batch norms folded" in w for w in a.warnings)


def test_external_data_of_a_constant_node_outside_the_folder_is_refused_too(tmp_path):
    """A `Constant` node's tensor may keep its data in another file as well (onnx's own loader reads those)."""
    import archc
    (tmp_path / "secret.bin").write_bytes(b"\x00" * 16)
    inner = tmp_path / "models"
    inner.mkdir()
    value = onnx.TensorProto(name="c", data_type=F, dims=[4], data_location=TensorProto.EXTERNAL)
    value.external_data.add(key="location", value="../secret.bin")
    nodes = [helper.make_node("Constant", [], ["c"], name="const", value=value),
             helper.make_node("Add", ["x", "c"], ["y"], name="add")]
    model = helper.make_model(helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", F, [1, 4])],
                                                [y_output()]), opset_imports=[helper.make_opsetid("", 17)])
    path = inner / "m.onnx"
    path.write_bytes(model.SerializeToString())
    for read in (analyze, archc.load):
        with raises("unsafe-onnx", naming=("'c'", "'../secret.bin'")):
            read(str(path))
