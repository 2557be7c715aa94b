"""Foreign ONNX through the back end: PyTorch exports archc did not write compile, run and equal onnxruntime.

Each export keeps what PyTorch's exporter really writes: BatchNormalization nodes, a symbolic batch with its shape
subgraph (Shape → Gather → Unsqueeze → Concat → Reshape for `x.view(x.size(0), -1)`), Resize from
`F.interpolate`, depthwise convolutions, Clip for ReLU6. Tolerance as in test_backend.py: 1e-4 of the output's
range.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import assert_close, onnxruntime_outputs

import archc
from archc.runtime import load_package

pytestmark = [pytest.mark.tvm, pytest.mark.torch]



def _models():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class ConvBNFlatten(nn.Module):
        """BN after each conv and `view(size(0), -1)`: the shape subgraph of every classifier export."""
        def __init__(self):
            super().__init__()
            self.f = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                   nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(32), nn.ReLU())
            self.fc = nn.Linear(32 * 4 * 4, 10)

        def forward(self, x):
            x = self.f(x)
            return self.fc(x.view(x.size(0), -1))

    class InvertedResidual(nn.Module):
        """MobileNet v2's block: expand 1×1, depthwise 3×3, project 1×1, ReLU6, the residual add, then GAP."""
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16),
                                      nn.ReLU6())
            self.block = nn.Sequential(nn.Conv2d(16, 96, 1, bias=False), nn.BatchNorm2d(96), nn.ReLU6(),
                                       nn.Conv2d(96, 96, 3, padding=1, groups=96, bias=False), nn.BatchNorm2d(96),
                                       nn.ReLU6(), nn.Conv2d(96, 16, 1, bias=False), nn.BatchNorm2d(16))
            self.head = nn.Linear(16, 5)

        def forward(self, x):
            x = self.stem(x)
            x = x + self.block(x)
            return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    class TinyUNet(nn.Module):
        """Down, up by bilinear interpolation, concatenate the skip: U-Net's Resize/Concat pattern."""
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
            self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
            self.dec = nn.Conv2d(24, 2, 1)

        def forward(self, x):
            skip = self.enc(x)
            up = F.interpolate(self.down(skip), scale_factor=2, mode="bilinear", align_corners=False)
            return self.dec(torch.cat([up, skip], dim=1))

    return {"conv_bn_flatten": (ConvBNFlatten(), 16), "inverted_residual": (InvertedResidual(), 32),
            "tiny_unet": (TinyUNet(), 24)}


def _export(model, size: int, path: Path) -> None:
    import torch
    torch.manual_seed(0)
    for m in model.modules():  # BN with statistics that are not the identity, so folding it wrong shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    torch.onnx.export(model, torch.zeros(1, 3, size, size), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17,
                      do_constant_folding=False)  # folding would fuse BN into the convs: keep what users export


@pytest.mark.parametrize("name", ["conv_bn_flatten", "inverted_residual", "tiny_unet"])
def test_pytorch_export_compiles_and_matches_onnxruntime(tmp_path, name):
    model, size = _models()[name]
    path = tmp_path / f"{name}.onnx"
    _export(model, size, path)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    expected = {"conv_bn_flatten": {"BatchNormalization", "Shape", "Reshape"},
                "inverted_residual": {"BatchNormalization", "Clip", "Add"}, "tiny_unet": {"Resize", "Concat"}}[name]
    assert expected <= ops, f"the export no longer has {expected - ops}: the test would not test what it says"
    folder = Path(archc.compile(path, target="native", output=tmp_path / "pkg", quick=0).output)
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype("float32")
    assert_close(load_package(folder).run({"x": x}), onnxruntime_outputs(path, {"x": x}))


@pytest.mark.parametrize("p", [1, 2])
def test_lp_normalization_which_tvm_cannot_import_is_rewritten(tmp_path, p):
    """SSD's L2 norm (ONNX LpNormalization, absent from TVM's importer) becomes Div(x, ReduceL{p}(x)) on the way in,
    and equals onnxruntime's LpNormalization."""
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.random.default_rng(2).standard_normal((8, 3, 3, 3)).astype("float32"), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("LpNormalization", ["c"], ["y"], axis=1, p=p)]
    g = helper.make_graph(nodes, "norm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])], initializer=[w])
    path = tmp_path / "norm.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    folder = Path(archc.compile(path, target="native", output=tmp_path / "pkg", quick=0).output)
    x = {"x": np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype("float32")}
    assert_close(load_package(folder).run(x), onnxruntime_outputs(path, x))
    assert [n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node] == ["Conv", "LpNormalization"]
