"""The zoo through the back end: every spec that fits the CI budget compiles for this machine with archc's own
kernels and no tuning (the shipped configurations), leaves no kernel naive, runs, and equals onnxruntime on the
same ONNX and input to 1e-4 of the output's range. The rest of the zoo (VGG, deeper ResNets, DenseNet, the 3-D
nets, detectors and segmenters: mostly their compile time, 20–60 s each) is checked by
`benchmarks/zoo_backend.py --all`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, onnxruntime_outputs

import archc
from archc.runtime import load_package

pytestmark = [pytest.mark.tvm, pytest.mark.slow]
SPECS = Path(__file__).resolve().parents[2] / "specs"
# 1-D (char_cnn, fcn1d, tcn), classic, depthwise/grouped (MobileNets, ShuffleNet), Inception, residual, LeakyReLU;
# ResNet-18 is test_kernels.py's test_layout_plan_of_resnet18, the same build through the command line
FITS = ["alexnet", "char_cnn", "fcn1d", "tcn", "squeezenet1_1", "mobilenet_v1", "mobilenet_v2", "shufflenet_v2_x1_0",
        "googlenet", "resnet50", "darknet19"]



@pytest.mark.parametrize("name", FITS)
def test_zoo_model_compiles_runs_and_matches_onnxruntime(name, tmp_path):
    folder = Path(archc.compile(SPECS / f"{name}.arch", target="native", output=tmp_path / name, quick=0,
                                db=tmp_path / "db").output)
    build = json.loads((folder / "manifest.json").read_text())["build"]
    assert build["kernels_naive"] == 0 and build["kernels_archc"] > 0  # every kernel scheduled, none searched
    pkg = load_package(folder)
    x = pkg.random_inputs(seed=7)
    want = onnxruntime_outputs(folder / "model.onnx", x)
    assert_close(pkg.run(x), want)
    # the outputs say something (a saturated softmax would equal anything alike)
    assert all(np.isfinite(w).all() and float(np.ptp(w)) > 0 for w in want)
