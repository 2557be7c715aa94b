"""The one SAME-padding rule (archc.ops.window.same_pads), as the spec's `pad=same` and ONNX's auto_pad use it.

The spec's `same` splits the total padding as ONNX SAME_UPPER when the effective kernel d·(k−1) is odd and pads
d·(k−1)/2 on both sides when it is even (PyTorch's padding=k//2); NodeView.window() resolves auto_pad SAME_UPPER and
SAME_LOWER with the same arithmetic. Both give output = ceil(input / stride), checked against ONNX shape inference,
and the begin/end split is checked against onnxruntime's own auto_pad.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from archc.ops.registry import NodeView
from archc.ops.window import out_sizes, resolve_pads, same_pads

SIZES = (1, 2, 5, 7, 8, 13, 224)
KERNELS = (1, 2, 3, 4, 5, 7)
STRIDES = (1, 2, 3, 4)
DILATIONS = (1, 2, 3)
GRID = list(itertools.product(SIZES, KERNELS, STRIDES, DILATIONS))


def conv_view(size: int, kernel: int, stride: int, dilation: int, auto_pad: str) -> NodeView:
    """A 1-D Conv node as the analyzer sees it (1×1×size input)."""
    attrs = {"kernel_shape": [kernel], "strides": [stride], "dilations": [dilation], "auto_pad": auto_pad}
    out = (1, 1, -(-size // stride))
    return NodeView("Conv", attrs, [(1, 1, size), (1, 1, kernel)], [out], [None, None], [False, True])


def conv_model(sizes: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...],
               **pad_attr: object) -> onnx.ModelProto:
    """One Conv (1 channel in and out, all-ones weight) over a 1×1×sizes input."""
    w = numpy_helper.from_array(np.ones((1, 1, *kernel), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=list(kernel), strides=list(stride),
                            dilations=list(dilation), **pad_attr)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, *sizes])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def inferred_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    out = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.output[0]
    return tuple(d.dim_value for d in out.type.tensor_type.shape.dim)


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("size, kernel, stride, dilation", GRID)
def test_spec_same_and_onnx_same_upper_agree(size, kernel, stride, dilation):
    eff = dilation * (kernel - 1)
    spec = resolve_pads("same", (size,), (kernel,), (stride,), (dilation,))
    k, s, d, upper = conv_view(size, kernel, stride, dilation, "SAME_UPPER").window()
    _, _, _, lower = conv_view(size, kernel, stride, dilation, "SAME_LOWER").window()
    assert (k, s, d) == ((kernel,), (stride,), (dilation,))
    assert upper == same_pads(size, kernel, stride, dilation)
    assert lower == same_pads(size, kernel, stride, dilation, upper=False)
    begin, end = upper
    assert end - begin in (0, 1)  # SAME_UPPER: the odd pixel at the end
    assert lower == (end, begin)  # SAME_LOWER: the same total, the odd pixel at the start
    if eff % 2:
        assert spec == upper
    else:  # PyTorch's padding=k//2: symmetric, whatever the stride
        assert spec == (eff // 2, eff // 2)
    for pads in (spec, upper, lower):
        assert out_sizes((size,), (kernel,), (stride,), (dilation,), pads) == (math.ceil(size / stride),)


@pytest.mark.parametrize("size, kernel, stride, dilation", GRID[::7])
def test_output_size_matches_onnx_shape_inference(size, kernel, stride, dilation):
    for auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        model = conv_model((size,), (kernel,), (stride,), (dilation,), auto_pad=auto_pad)
        k, s, d, pads = conv_view(size, kernel, stride, dilation, auto_pad).window()
        assert inferred_shape(model) == (1, 1, *out_sizes((size,), k, s, d, pads)) == (1, 1, -(-size // stride))


@pytest.mark.parametrize("sizes, kernel, stride", [
    ((9,), (4,), (2,)),
    ((7, 8), (2, 4), (2, 3)),
    ((13, 5), (3, 2), (2, 2)),
    ((8, 10), (4, 4), (3, 1)),
    ((5, 6), (6, 3), (4, 2)),
])
@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_pads_place_the_odd_pixel_as_onnxruntime_does(sizes, kernel, stride, auto_pad):
    """Running auto_pad and the explicit pads NodeView.window() resolved it to gives the same output (onnxruntime
    supports auto_pad SAME only without dilation; dilated cases are covered by the arithmetic tests above)."""
    x_shape = (1, 1, *sizes)
    dilation = (1,) * len(sizes)
    view = NodeView("Conv", {"kernel_shape": list(kernel), "strides": list(stride), "auto_pad": auto_pad},
                    [x_shape, (1, 1, *kernel)], [None], [None, None], [False, True])
    _, _, _, pads = view.window()
    assert any(pads[i] != pads[len(sizes) + i] for i in range(len(sizes)))  # a case where the split matters
    x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
    auto = run(conv_model(sizes, kernel, stride, dilation, auto_pad=auto_pad), x)
    explicit = run(conv_model(sizes, kernel, stride, dilation, pads=list(pads)), x)
    assert auto.shape == explicit.shape == (1, 1, *(-(-n // s) for n, s in zip(sizes, stride, strict=True)))
    np.testing.assert_allclose(auto, explicit, rtol=1e-6, atol=1e-6)


def test_spec_same_is_per_axis():
    """Each axis follows its own effective kernel: odd → SAME_UPPER split, even → symmetric."""
    pads = resolve_pads("same", (7, 8), (2, 3), (3, 3), (1, 1))
    assert same_pads(7, 2, 3, 1) == (0, 1)
    assert pads == (0, 1, 1, 1)
