"""`archc profile` names the right ONNX nodes for each kernel on the networks that broke it: EfficientNet's blocks
(SiLU after each convolution, squeeze-excite gates) and MobileNet v3's (hardswish written out by the exporter as
HardSigmoid and Mul, hardsigmoid gates), channels padded by the blocked layout (24 → 32). Before, a kernel whose
shapes no node had took any node of its kind: a depthwise convolution was given an 864-MAC FC layer and kernels ran
at 48,604 GFLOP/s, a hundred times the machine's peak."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import pytest

import archc
from archc.util.peak import fma_peak

pytestmark = [pytest.mark.tvm, pytest.mark.torch]


def _export(path: Path, act: str) -> Path:
    import torch
    from torch import nn

    activation = {"silu": nn.SiLU, "hardswish": nn.Hardswish, "relu6": nn.ReLU6}[act]
    gate = {"silu": nn.Sigmoid, "hardswish": nn.Hardsigmoid, "relu6": nn.Hardsigmoid}[act]

    class SqueezeExcite(nn.Module):
        def __init__(self, c: int, r: int) -> None:
            super().__init__()
            self.reduce, self.expand = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)
            self.act, self.gate = (nn.ReLU() if act != "silu" else activation()), gate()

        def forward(self, x):
            return x * self.gate(self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True)))))

    class Block(nn.Module):  # MBConv: expand 1×1, depthwise k×k, squeeze-excite, project 1×1 (+ residual)
        def __init__(self, cin: int, cout: int, k: int, stride: int) -> None:
            super().__init__()
            mid = cin * 6
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), activation(),
                nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), activation(),
                SqueezeExcite(mid, max(1, cin // 4)), nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.residual = stride == 1 and cin == cout

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), activation(),
                        Block(16, 24, 3, 2), Block(24, 24, 3, 1), Block(24, 40, 5, 2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(40, 10)).eval()
    torch.onnx.export(net, torch.randn(1, 3, 64, 64), str(path), dynamo=False, opset_version=13, input_names=["x"])
    return path


@pytest.fixture(scope="module")
def peak() -> float:
    return float(fma_peak(1)["gflops"])


@pytest.mark.parametrize("act", ["silu", "hardswish", "relu6"])
def test_every_kernel_gets_the_nodes_it_runs(act, tmp_path, peak):
    path = _export(tmp_path / f"{act}.onnx", act)
    folder = archc.compile(path, "native", tmp_path / "pkg", quick=0, verify=False).output
    profile = archc.profile(folder, repeat=4, threads=1)
    graph = onnx.load(str(path)).graph
    op_of = {n.name: n.op_type for n in graph.node}
    claimed = Counter(name for k in profile.kernels for name in k.nodes)
    heavy = [n.name for n in graph.node if n.op_type in ("Conv", "Gemm")]
    # every convolution and dense layer is run by exactly one kernel, once; no node claimed twice but a
    # HardSigmoid that TVM splits over two kernels (its multiply and add, then its clip)
    assert {name: claimed[name] for name in heavy} == dict.fromkeys(heavy, 1)
    assert all(count == 1 or op_of[name] == "HardSigmoid" for name, count in claimed.items())
    # a ReLU6 (Clip with its bounds as inputs, imported as maximum and minimum) is its convolution's: MobileNet
    # v2's 35 were claimed by no kernel
    clips = [n.name for n in graph.node if n.op_type == "Clip"]
    assert {name: claimed[name] for name in clips} == dict.fromkeys(clips, 1)
    for k in profile.kernels:
        if k.nodes:  # a kernel's first node is of its anchor's kind: a convolution kernel runs a Conv first
            first = op_of[k.nodes[0]]
            if "conv2d" in k.name:
                assert first == "Conv", (k.name, k.nodes)
            elif "matmul" in k.name:
                assert first == "Gemm", (k.name, k.nodes)
        if k.gflops is not None:  # one thread, weights flushed: nothing passes the instruction limit (1.5×: a
            # shared host's peak, measured apart from the kernels, can read low)
            assert k.gflops <= 1.5 * peak, (k.name, k.nodes, k.gflops, peak)
    # the activation after each convolution runs in the convolution's kernel: SiLU's Sigmoid and Mul, or the
    # hardswish's HardSigmoid and Mul, named in the same kernel as their Conv
    fused_tails = [k for k in profile.kernels if k.nodes and op_of[k.nodes[0]] == "Conv"
                   and {"Sigmoid" if act == "silu" else "HardSigmoid", "Mul"} <= {op_of[n] for n in k.nodes}]
    if act == "silu":
        assert len(fused_tails) >= 6, [k.nodes for k in profile.kernels]
    assert profile.kernels and all(k.macs is None or k.macs >= 0 for k in profile.kernels)
