"""`archc import FILE.prototxt`: Caffe's published networks as archc specs.

The deploy prototxts are read in place from ../shared/data/caffe-prototxt (BVLC's AlexNet and GoogLeNet,
SqueezeNet 1.0). Caffe prints no FLOPs; its parameter count is the sum of its learned blobs, which is what the
papers and model zoos publish: AlexNet (the two-GPU grouped network) 60,965,224, BVLC GoogLeNet without the
auxiliary heads 6,998,552, SqueezeNet 1.0 1,248,424. The multiply-adds are checked against archc's own zoo specs
of the same networks, whose figures are tested against torchvision and the papers (tests/zoo).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import archc
from archc.diagnostics import SpecError
from archc.importers.caffe import convert

ROOT = Path(__file__).resolve().parents[2]
PROTOTXTS = ROOT.parent / "shared" / "data" / "caffe-prototxt"
pytestmark = pytest.mark.skipif(not PROTOTXTS.is_dir(), reason="the published prototxts are in "
                                "../shared/data/caffe-prototxt: run from a checkout beside the team's shared folder")

# file → (published parameters, the zoo spec of the same network and its parameters, at the prototxt's input size)
PUBLISHED = {"bvlc_alexnet": (60_965_224, None), "bvlc_googlenet": (6_998_552, "googlenet"),
             "squeezenet_v1.0": (1_248_424, "squeezenet1_0")}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_prototxts_import_with_their_parameters_and_macs(name, tmp_path):
    spec = tmp_path / "net.arch"
    imported = archc.import_spec(PROTOTXTS / f"{name}.deploy.prototxt", spec)
    a = archc.analyze(spec)
    params, zoo = PUBLISHED[name]
    assert a.totals.params == imported.weights == params
    assert 2 * a.totals.macs / 1e9 == pytest.approx(imported.bflops, rel=1e-12)
    # a softmax over 1000 classes; SqueezeNet's after its global pool keeps N×1000×1×1, as in Caffe
    assert [tuple(o["shape"]) for o in a.outputs] == [(1, 1000, 1, 1) if name.startswith("squeeze") else (1, 1000)]
    if zoo:  # the same network as archc's zoo has it: the same multiply-adds at the prototxt's input size
        ours = archc.analyze(ROOT / "specs" / f"{zoo}.arch", input=f"1x{a.inputs[0]['shape'][1]}x"
                             f"{a.inputs[0]['shape'][2]}x{a.inputs[0]['shape'][3]}")
        # the published SqueezeNet v1.0 prototxt pads its 1×1 conv10 by 1 (15×15×1000, not torchvision's 13×13;
        # the global pool after it hides that in the output): 512·1000·(15² − 13²) more multiply-adds
        extra = 512 * 1000 * (15 ** 2 - 13 ** 2) if name.startswith("squeeze") else 0
        assert (a.totals.macs, a.totals.params) == (ours.totals.macs + extra, ours.totals.params)


def test_alexnet_reads_as_the_papers_table(tmp_path):
    """In-place ReLU and Dropout on their producer's line; the grouped convolutions of the two-GPU network; each
    comment names the Caffe layers and their lines; sizes 55 → 27 → 13 → 6 as the paper's."""
    text = convert((PROTOTXTS / "bvlc_alexnet.deploy.prototxt").read_text(), "bvlc_alexnet.deploy.prototxt").text
    assert "conv2: conv(256, 5, pad=2, groups=2) relu" in text and "# conv2 (line 55), relu2 (line 75)" in text
    assert "fc6: dense(4096) relu dropout(0.5)" in text and "prob: softmax" in text
    spec = tmp_path / "alexnet.arch"
    spec.write_text(text)
    a = archc.analyze(spec)
    assert [a.layer(n).output_shape[2] for n in ("conv1", "pool1", "pool2", "pool5")] == [55, 27, 13, 6]


def test_googlenet_pools_round_up_as_caffes(tmp_path):
    """Caffe's pooled sizes round up: GoogLeNet's 112 → 56 → 28 → 14 → 7 needs `ceil=true` on the stride-2 pools,
    and none on the stride-1 ones inside the inception modules. Compiled and run: a softmax over 1000 classes."""
    spec = tmp_path / "googlenet.arch"
    archc.import_spec(PROTOTXTS / "bvlc_googlenet.deploy.prototxt", spec)
    text = spec.read_text()
    # the stride-1 pool is in the inception block, once (`x` being the module's input); flat, in each module
    assert text.count("maxpool(3, stride=2, ceil=true)") == 4 and "  pool: @x maxpool(3, stride=1, pad=1)" in text
    assert "inception_3a_pool: @pool2_3x3_s2 maxpool(3, stride=1, pad=1)" in archc.import_spec(
        PROTOTXTS / "bvlc_googlenet.deploy.prototxt", flat=True).text
    out = archc.compile(spec, output=tmp_path / "g.onnx").output
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (prob,) = sess.run(None, {"image": np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)})
    assert prob.shape == (1, 1000) and abs(prob.sum() - 1) < 1e-5


def test_unsupported_layers_are_all_listed_and_syntax_errors_located():
    net = ('name: "n"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
           'layer { name: "a" type: "Convolution" bottom: "data" top: "a" convolution_param { num_output: 4 '
           'kernel_size: 3 dilation: 2 } }\n'
           'layer { name: "b" type: "PReLU" bottom: "a" top: "b" }\n'
           'layer { name: "c" type: "ReLU" bottom: "nowhere" top: "c" }\n')
    with pytest.raises(SpecError) as info:
        convert(net, "n.prototxt")
    assert [(d.code, d.span.line if d.span else 0) for d in info.value.diagnostics] == \
        [("unsupported", 4), ("unsupported", 5), ("unsupported", 6)]
    assert "PReLU" in info.value.diagnostics[1].message and "nowhere" in info.value.diagnostics[2].message
    with pytest.raises(SpecError) as info:
        convert('layer {\n  name: "a"\n  type: "ReLU"\n', "cut.prototxt")
    assert "not closed" in info.value.diagnostics[0].message


def test_cli_prints_caffes_figures_and_refuses_a_broken_caffemodel(tmp_path):
    out = tmp_path / "squeeze.arch"
    done = subprocess.run([sys.executable, "-m", "archc", "import", str(PROTOTXTS / "squeezenet_v1.0.deploy.prototxt"),
                           "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Caffe:   1.723 GFLOPs (2 × multiply-adds), 1,248,424 parameters" in done.stdout
    assert "archc:   1.723 (2 × MACs), 1,248,424 parameters" in done.stdout
    model = tmp_path / "squeeze.caffemodel"
    model.write_bytes(b"\0")
    done = subprocess.run([sys.executable, "-m", "archc", "import", str(PROTOTXTS / "squeezenet_v1.0.deploy.prototxt"),
                           "-o", str(tmp_path / "s2.arch"), "--weights", str(model)], capture_output=True, text=True)
    assert done.returncode == 1 and "bad-weights" in done.stderr and not (tmp_path / "s2.arch").exists()
