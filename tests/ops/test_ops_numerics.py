"""Every op, compiled through ONNX and run in onnxruntime, against PyTorch's own implementation.

Shapes: archc's inferred shape must equal the output's (and ONNX shape inference, which `to_onnx` checks).
Values: same within float32 tolerance (atol 1e-5, rtol 1e-4).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs PyTorch and torchvision: pip install -e '.[test]'")
F = torch.nn.functional
pytestmark = pytest.mark.torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import one_layer, run  # noqa: E402


def T(a):
    return torch.from_numpy(np.asarray(a))


def check(layer, shape, ref, blocks=""):
    graph = one_layer(layer, shape, blocks)
    (out,), w, x = run(graph)
    with torch.no_grad():
        expected = ref(T(x), {k.split(".", 1)[1] if "." in k else k: T(v) for k, v in w.items()}).numpy()
    assert out.shape == graph.outputs[0].shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-4)
    return graph


CASES = {
    # convolution: rank, stride, dilation, groups, padding modes
    "conv2d_same": ("conv(8, 3)", "3x10x10", lambda x, w: F.conv2d(x, w["weight"], w["bias"], padding=1)),
    "conv2d_stride2_same_even_input": ("conv(8, 3, stride=2)", "3x10x10",
                                       lambda x, w: F.conv2d(x, w["weight"], w["bias"], stride=2, padding=1)),
    # even kernel: SAME splits total padding (k-1=3) as 1 before, 2 after (TF SAME_UPPER)
    "conv2d_even_kernel_same": ("conv(4, 4)", "2x9x9",
                                lambda x, w: F.conv2d(F.pad(x, (1, 2, 1, 2)), w["weight"], w["bias"])),
    "conv2d_valid_tuple_stride": ("conv(6, (3, 5), stride=(2, 1), pad=valid, bias=false)", "3x11x12",
                                  lambda x, w: F.conv2d(x, w["weight"], stride=(2, 1))),
    "conv2d_groups_dilation": ("conv(8, 3, dilation=2, groups=4)", "8x12x12",
                               lambda x, w: F.conv2d(x, w["weight"], w["bias"], padding=2, dilation=2, groups=4)),
    "conv2d_explicit_asymmetric": ("conv(4, 3, pad=(0, 1, 2, 1))", "2x8x8",  # begins (0, 1), ends (2, 1)
                                   lambda x, w: F.conv2d(F.pad(x, (1, 1, 0, 2)), w["weight"], w["bias"])),
    "conv1d_causal_dilated": ("conv(5, 2, dilation=4, pad=causal)", "3x20",
                              lambda x, w: F.conv1d(F.pad(x, (4, 0)), w["weight"], w["bias"], dilation=4)),
    "conv3d_groups": ("conv(4, 3, stride=(1, 2, 2), groups=2)", "4x6x9x9",
                      lambda x, w: F.conv3d(x, w["weight"], w["bias"], stride=(1, 2, 2), padding=1, groups=2)),
    "dwconv_multiplier": ("dwconv(3, stride=2, multiplier=2)", "4x9x9",
                          lambda x, w: F.conv2d(x, w["weight"], w["bias"], stride=2, padding=1, groups=4)),
    "deconv_k4s2p1": ("deconv(6, 4, stride=2, pad=1)", "3x7x7",
                      lambda x, w: F.conv_transpose2d(x, w["weight"], w["bias"], stride=2, padding=1)),
    "deconv_output_padding_groups": ("deconv(4, 3, stride=2, pad=1, output_padding=1, groups=2)", "4x5x5",
                                     lambda x, w: F.conv_transpose2d(x, w["weight"], w["bias"], stride=2, padding=1,
                                                                     output_padding=1, groups=2)),
    "deconv1d_same": ("deconv(3, 4, stride=2, pad=same)", "2x9",  # total pad 4+1-1... = k-s = 2: 1 each side
                      lambda x, w: F.conv_transpose1d(x, w["weight"], w["bias"], stride=2, padding=1)),
    # pooling
    "maxpool_ceil": ("maxpool(3, stride=2, ceil=true)", "2x112x112",
                     lambda x, w: F.max_pool2d(x, 3, 2, ceil_mode=True)),
    "maxpool_pad": ("maxpool(3, stride=2, pad=1)", "2x9x9", lambda x, w: F.max_pool2d(x, 3, 2, padding=1)),
    "maxpool_ceil_pad_edge": ("maxpool(3, stride=2, pad=1, ceil=true)", "1x6x6",
                              lambda x, w: F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True)),
    "avgpool_exclude_pad": ("avgpool(3, stride=2, pad=1)", "2x8x8",
                            lambda x, w: F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False)),
    "avgpool_include_pad": ("avgpool(3, stride=1, pad=1, count_include_pad=true)", "2x5x5",
                            lambda x, w: F.avg_pool2d(x, 3, 1, padding=1, count_include_pad=True)),
    "maxpool1d": ("maxpool(3)", "2x17", lambda x, w: F.max_pool1d(x, 3)),
    "avgpool3d": ("avgpool((1, 2, 2))", "2x4x6x6", lambda x, w: F.avg_pool3d(x, (1, 2, 2))),
    "gap": ("gap", "5x7x7", lambda x, w: x.mean(dim=(2, 3), keepdim=True)),
    "gmp1d": ("gmp", "5x9", lambda x, w: x.amax(dim=2, keepdim=True)),
    # dense, reshape
    "flatten_dense": ("flatten dense(7)", "2x3x3", lambda x, w: F.linear(x.flatten(1), w["weight"], w["bias"])),
    "reshape": ("reshape(3, -1)", "6x2x2", lambda x, w: x.reshape(1, 3, 8)),
    # normalisation
    "lrn": ("lrn(5, alpha=1e-4, beta=0.75, bias=2)", "8x4x4",
            lambda x, w: F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=2.0)),
    "l2norm": ("l2norm(20)", "6x3x3", lambda x, w: F.normalize(x, dim=1) * w["weight"].view(1, -1, 1, 1)),
    # activations
    "relu6": ("relu6", "3x4x4", lambda x, w: F.relu6(x * 4)),
    "leaky": ("leaky_relu(0.1)", "3x4x4", lambda x, w: F.leaky_relu(x, 0.1)),
    "prelu": ("prelu", "3x4x4", lambda x, w: F.prelu(x, w["weight"])),
    "hswish": ("hswish", "3x4x4", lambda x, w: F.hardswish(x)),
    "hsigmoid": ("hsigmoid", "3x4x4", lambda x, w: F.hardsigmoid(x)),
    "silu": ("silu", "3x4x4", lambda x, w: F.silu(x)),
    "softmax": ("flatten softmax", "3x2x2", lambda x, w: F.softmax(x.flatten(1), dim=1)),
    "tanh_sigmoid": ("tanh sigmoid", "3x4", lambda x, w: torch.sigmoid(torch.tanh(x))),
    # plumbing
    "upsample_nearest": ("upsample(2)", "2x3x5", lambda x, w: F.interpolate(x, scale_factor=2, mode="nearest")),
    "upsample_bilinear": ("upsample(2, mode=bilinear)", "2x5x4",
                          lambda x, w: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)),
    "upsample_bilinear_corners": ("upsample(2, mode=bilinear, align_corners=true)", "2x5x4",
                                  lambda x, w: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)),
    "pad_reflect": ("pad((1, 2), mode=reflect)", "2x5x6", lambda x, w: F.pad(x, (2, 2, 1, 1), mode="reflect")),
    "pad_constant": ("pad(1, value=3)", "2x3x3", lambda x, w: F.pad(x, (1, 1, 1, 1), value=3.0)),
    "channel_shuffle": ("channel_shuffle(3)", "6x2x2", lambda x, w: F.channel_shuffle(x, 3)),
    "slice_channels": ("slice(2, 5)", "6x2x2", lambda x, w: x[:, 2:5]),
    "dropout_is_identity": ("dropout(0.3)", "3x4", lambda x, w: x),
    # merges
    "add_residual": ("add { conv(4, 3); identity }", "4x5x5",
                     lambda x, w: F.conv2d(x, w["weight"], w["bias"], padding=1) + x),
    "mul_se_gate": ("mul { identity; gap sigmoid }", "4x5x5",
                    lambda x, w: x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True))),
    "concat_crop": ("concat(crop=true) { identity; maxpool(2) }", "2x9x9",  # 9→4: crop offset (9-4)//2 = 2
                    lambda x, w: torch.cat([x[:, :, 2:6, 2:6], F.max_pool2d(x, 2)], dim=1)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_op_matches_pytorch(name):
    layer, shape, ref = CASES[name]
    if name == "relu6":  # scale the input so both clip bounds are exercised
        graph = one_layer(layer, shape)
        x = np.random.default_rng(1).standard_normal(graph.inputs[0].shape).astype(np.float32) * 4
        (out,), _, _ = run(graph, x)
        np.testing.assert_allclose(out, F.relu6(T(x)).numpy(), atol=1e-6)
        return
    check(layer, shape, ref)


def test_batchnorm_uses_running_statistics():
    graph = one_layer("bn(eps=1e-3)", "4x3x3")
    rng = np.random.default_rng(3)
    w = {"bn.weight": rng.random(4).astype(np.float32) + 0.5, "bn.bias": rng.standard_normal(4).astype(np.float32),
         "bn.running_mean": rng.standard_normal(4).astype(np.float32),
         "bn.running_var": rng.random(4).astype(np.float32) + 0.5}
    (out,), _, x = run(graph, weights=w)
    expected = F.batch_norm(T(x), T(w["bn.running_mean"]), T(w["bn.running_var"]), T(w["bn.weight"]),
                            T(w["bn.bias"]), training=False, eps=1e-3).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("batch", [1, 3])
def test_batch_dimension_flows_through(batch):
    from archc import spec
    from archc.options import ModelOptions
    g = spec.load_text("network t {\n input x: 3x8x8\n conv(4, 3) flatten dense(2)\n}", "<t>",
                       ModelOptions(batch=batch))
    assert g.outputs[0].shape == (batch, 2)
    (out,), _, _ = run(g)
    assert out.shape == (batch, 2)
