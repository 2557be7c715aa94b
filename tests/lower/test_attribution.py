"""Which ONNX nodes each compiled kernel runs (archc profile's node and MAC columns), on ResNet-18's real kernels.

ResNet-18 is the hard case: TVM keeps one kernel for layers of equal shape, and two kernels share a convolution's
shapes but differ in their tail (conv+BN+ReLU and conv+BN+residual add+ReLU); the importer also calls a
downsampling block's shortcut before its second convolution, out of file order."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import archc
from archc import targets

pytestmark = pytest.mark.tvm


@pytest.fixture(scope="module")
def resnet18():
    from archc.lower.build import import_onnx
    from archc.lower.profile import kernels_of
    from archc.lower.tune import prepare
    from archc.lower.tvm_target import tvm_target
    model = archc.load(Path(__file__).resolve().parents[2] / "specs" / "resnet18.arch")
    mod = prepare(import_onnx(model), tvm_target(targets.get("native")))
    return kernels_of(mod, model), archc.analyze(model)


def test_every_node_runs_in_exactly_one_kernel_and_the_macs_add_up(resnet18):
    kernels, analysis = resnet18
    owned = Counter(n for k in kernels for n in k.nodes)
    assert set(owned) == {lay.name for lay in analysis.layers} and set(owned.values()) == {1}
    assert sum(k.macs or 0 for k in kernels) == analysis.totals.macs == 1_814_073_344  # torchvision: 1.814 G


def test_equal_shapes_are_told_apart_by_their_tail(resnet18):
    kernels, analysis = resnet18
    op = {lay.name: lay.op for lay in analysis.layers}
    for k in kernels:
        convs = [n for n in k.nodes if op[n] == "Conv"]
        adds = [n for n in k.nodes if op[n] == "Add"]
        assert len(convs) == k.calls or not convs
        if "_add3_" in k.name or "_add6_" in k.name or "_add9_" in k.name or "_add12_" in k.name:
            assert len(adds) == k.calls and all(c.endswith("main/conv2") for c in convs), k.nodes
        elif convs and convs[0].startswith("layer"):
            assert not adds and all(c.endswith(("main/conv1", "downsample")) for c in convs), k.nodes
