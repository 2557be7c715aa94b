"""`archc import FILE.cfg`: Darknet's networks as archc specs, with Darknet's own figures.

The published cfgs are read in place from ../shared/data/darknet-cfg (pjreddie/darknet's cfg/). For each, the
figures archc's analyzer computes from the imported spec (2 × MACs, parameters) must equal Darknet's: its BFLOPs
(2 × the multiply-adds of convolutional, local and connected layers, as it prints them) and the floats of its
.weights file. Where Darknet's site publishes the figure (pjreddie.com/darknet/imagenet and /yolo, two decimals),
the analyzer's is checked against that too, and the per-layer figures against the printout on its ImageNet page.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import cli_error, raises

import archc
from archc.diagnostics import SpecError
from archc.importers.darknet import convert

ROOT = Path(__file__).resolve().parents[2]
CFGS = ROOT.parent / "shared" / "data" / "darknet-cfg"
pytestmark = pytest.mark.skipif(not CFGS.is_dir(), reason="the published cfgs are in ../shared/data/darknet-cfg: "
                                "run from a checkout beside the team's shared folder")

# pjreddie.com/darknet/imagenet ("Bn Ops") and /darknet/yolo ("BFLOPs"), as published: two decimals
PUBLISHED_BFLOPS = {"alexnet": 2.27, "darknet": 0.96, "vgg-16": 30.94, "extraction": 8.52, "darknet19": 7.29,
                    "resnet50": 9.74, "densenet201": 10.85, "yolov2": 62.94, "yolov3-tiny": 5.56,
                    "yolov3-spp": 141.45}
# what the networks hand to their heads: the decks' figures (YOLO v1's S×S×(B·5 + C) = 7×7×30 flattened, v2's
# 13×13×125 on VOC). The published yolov1.cfg predicts B = 3 boxes a cell (`num=3`): 7×7×(3·5 + 20) = 1715, not
# the paper's B = 2 (1470, as yolov1-tiny.cfg has it)
OUTPUTS = {"yolov1": [(1, 1715)], "yolov1-tiny": [(1, 1470)], "yolov2-voc": [(1, 125, 13, 13)],
           "yolov2-tiny": [(1, 425, 13, 13)], "yolov3-tiny": [(1, 255, 13, 13), (1, 255, 26, 26)],
           "yolov3-spp": [(1, 255, 19, 19), (1, 255, 38, 38), (1, 255, 76, 76)], "darknet19": [(1, 1000, 1, 1)]}


def _imported(tmp_path: Path, cfg: Path) -> tuple[Path, archc.importers.Imported]:
    spec = tmp_path / f"{cfg.stem.replace('-', '_')}.arch"
    return spec, archc.import_spec(cfg, spec)


@pytest.mark.parametrize("name", sorted(p.stem for p in CFGS.glob("*.cfg")) if CFGS.is_dir() else [])
def test_every_published_cfg_imports_with_darknets_figures(name, tmp_path):
    spec, imported = _imported(tmp_path, CFGS / f"{name}.cfg")
    a = archc.analyze(spec)
    assert 2 * a.totals.macs / 1e9 == pytest.approx(imported.bflops, rel=1e-12)
    assert a.totals.params == imported.weights  # archc's BN (weight, bias, mean, var) = Darknet's 4 per filter
    if name in PUBLISHED_BFLOPS:
        assert round(2 * a.totals.macs / 1e9, 2) == PUBLISHED_BFLOPS[name]
    if name in OUTPUTS:
        assert [tuple(o["shape"]) for o in a.outputs] == OUTPUTS[name]


@pytest.mark.parametrize(("spec", "cfg", "params"), [("yolov1_tiny", "yolov1-tiny", {}), ("yolov2", "yolov2-voc", {}),
                                                     ("yolov2_tiny", "yolov2-tiny", {"num_classes": 80})])
def test_the_zoos_yolos_are_darknets_released_networks(spec, cfg, params, tmp_path):
    """The zoo's hand-written Fast YOLO, YOLOv2 and Tiny YOLOv2 against the cfgs Darknet released for them, read by
    the importer: the same parameters (batch-norm statistics included) and multiply-adds, and the same layers."""
    imported, _ = _imported(tmp_path, CFGS / f"{cfg}.cfg")
    theirs, ours = archc.analyze(imported), archc.analyze(ROOT / "specs" / f"{spec}.arch", params=params)
    assert (ours.totals.params, ours.totals.macs) == (theirs.totals.params, theirs.totals.macs)
    assert sorted(lay.macs for lay in ours.layers if lay.macs) == sorted(lay.macs for lay in theirs.layers
                                                                         if lay.macs)


def test_yolov2s_passthrough_and_anchors():
    """YOLOv2's passthrough: conv13's 26×26×512 → 1×1 to 64 → reorg → 13×13×256, beside conv20's 13×13×1024;
    5 anchors (w, h pairs, a network parameter) × (4 + 1 + 20) = 125 numbers a cell."""
    a = archc.analyze(ROOT / "specs" / "yolov2.arch")
    assert a.layer("features/conv13/conv").output_shape == (1, 512, 26, 26)
    assert a.layer("passthrough/reorg").output_shape == (1, 256, 13, 13)
    assert a.layer("route").output_shape == (1, 1280, 13, 13)
    assert [tuple(o["shape"]) for o in archc.analyze(ROOT / "specs" / "yolov2.arch", params={
        "anchors": [1, 1, 2, 2, 3, 3], "num_classes": 80}).outputs] == [(1, 3 * 85, 13, 13)]


def test_per_layer_figures_as_darknet_prints_them(tmp_path):
    """Darknet's ImageNet page prints Darknet-19 at 256×256: layer 0 0.113 BFLOPs, layers 2 and 4 0.604,
    layer 5 0.067; and the cfg's line is in each layer's comment."""
    spec, _ = _imported(tmp_path, CFGS / "darknet19.cfg")
    a = archc.analyze(spec)
    bf = {n: round(2 * a.layer(n).macs / 1e9, 3) for n in ("conv0", "conv2", "conv4", "conv5")}
    assert bf == {"conv0": 0.113, "conv2": 0.604, "conv4": 0.604, "conv5": 0.067}
    text = spec.read_text()
    assert "conv0: conv(32, 3, bias=false) bn leaky(0.1)" in text and "# [convolutional] line" in text


@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov2-tiny", "resnet50", "yolov1-tiny"])
def test_imported_networks_run_in_onnxruntime(name, tmp_path):
    """Routes, upsampling, the stride-1 max pool with one-sided padding (v3-tiny), shortcuts across a projection
    (ResNet-50), connected layers (v1-tiny): compiled to ONNX, run, every output finite and of the spec's shape."""
    spec, imported = _imported(tmp_path, CFGS / f"{name}.cfg")
    out = archc.compile(spec, output=tmp_path / "m.onnx").output
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random(sess.get_inputs()[0].shape, dtype=np.float32)
    got = sess.run(None, {sess.get_inputs()[0].name: x})
    assert [o.name for o in sess.get_outputs()] == imported.outputs
    assert all(np.isfinite(o).all() for o in got)


def _run(cfg: str, tmp_path: Path, names: list[str], x: np.ndarray, batch: int = 1) -> dict[str, np.ndarray]:
    """The cfg imported, compiled with random weights, and the named tensors read from onnxruntime."""
    import onnx
    spec = tmp_path / "t.arch"
    spec.write_text(convert(cfg, "t.cfg").text)
    path = archc.compile(spec, output=tmp_path / "t.onnx", simplify=False).output
    model = onnx.load(path)
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    outs = ort.InferenceSession(model.SerializeToString()).run(names, {"image": x})
    return {**dict(zip(names, outs, strict=True)), **weights}


def test_shortcut_across_a_projection_is_darknets(tmp_path):
    """Darknet's shortcut_cpu: the earlier layer (4 channels at 8×8), sampled every 2nd pixel, is added into the
    first 4 of the later layer's 8 channels at 4×4; the other 4 pass unchanged."""
    cfg = ("[net]\nchannels=3\nheight=8\nwidth=8\n[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
           "[convolutional]\nfilters=8\nsize=1\nstride=2\nactivation=linear\n[shortcut]\nfrom=0\n"
           "activation=linear\n")
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    t = _run(cfg, tmp_path, ["conv0", "conv1", "shortcut2"], x)
    want = t["conv1"].copy()
    want[:, :4] += t["conv0"][:, :, ::2, ::2]
    np.testing.assert_allclose(t["shortcut2"], want, rtol=1e-6, atol=1e-6)


def _reorg_cpu(x: np.ndarray, w: int, h: int, c: int, stride: int) -> np.ndarray:
    """darknet/src/blas.c's reorg_cpu with forward=0 (as reorg_layer.c calls it), transcribed, batch 1."""
    out = np.zeros_like(x)
    out_c = c // (stride * stride)
    for k in range(c):
        for j in range(h):
            for i in range(w):
                c2, offset = k % out_c, k // out_c
                w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                out[i + w * (j + h * k)] = x[w2 + w * stride * (h2 + h * stride * c2)]
    return out


def test_reorg_is_darknets_own_order(tmp_path):
    """YOLO v2's passthrough: not ONNX's SpaceToDepth, but Darknet's reorg_cpu, element for element."""
    cfg = "[net]\nchannels=8\nheight=4\nwidth=6\n[reorg]\nstride=2\n"
    x = np.random.default_rng(1).standard_normal((1, 8, 4, 6)).astype(np.float32)
    got = _run(cfg, tmp_path, ["reorg0"], x)["reorg0"]
    assert got.shape == (1, 32, 2, 3)
    np.testing.assert_array_equal(got.ravel(), _reorg_cpu(x.ravel(), 6, 4, 8, 2))


def test_local_layer_is_a_kernel_per_output_pixel(tmp_path):
    """YOLO v1's [local]: every output pixel its own 3×3 kernel and bias, against NumPy (stride 2, padded);
    weights stored as Darknet does, per place × filter × channel × row × column."""
    cfg = "[net]\nchannels=3\nheight=5\nwidth=6\n[local]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=linear\n"
    x = np.random.default_rng(2).standard_normal((1, 3, 5, 6)).astype(np.float32)
    t = _run(cfg, tmp_path, ["local0"], x)
    w, b, got = t["local0.weight"], t["local0.bias"], t["local0"]
    assert w.shape == (9, 4, 3, 3, 3) and b.shape == (4, 3, 3) and got.shape == (1, 4, 3, 3)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.stack([np.stack([np.einsum("ckl,fckl->f", xp[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3], w[3 * i + j])
                               for j in range(3)], -1) for i in range(3)], -1).transpose(0, 2, 1)[None] + b
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_max_pool_padding_as_darknet_places_it():
    """Darknet pads a max pool by size−1 in all (padding/2 before the input, the rest after): YOLOv3-tiny's
    size-2 stride-1 pool keeps 13×13 by one column and row of padding after."""
    text = convert((CFGS / "yolov3-tiny.cfg").read_text(), "yolov3-tiny.cfg").text
    assert "maxpool11: maxpool(2, stride=1, pad=(0, 0, 1, 1))" in text
    assert "maxpool1: maxpool(2)" in text  # 416 → 208: the padding is never read


def test_every_unsupported_layer_is_listed_with_its_line():
    cfg = ("[net]\nchannels=3\nheight=8\nwidth=8\n[convolutional]\nfilters=4\nsize=3\nactivation=mish\n"
           "[lstm]\noutput=4\n[route]\nlayers=0\ngroups=2\ngroup_id=1\n")
    with pytest.raises(SpecError) as info:
        convert(cfg, "bad.cfg")
    found = [(d.code, d.span.line if d.span else None) for d in info.value.diagnostics]
    assert found == [("unsupported", 8), ("unsupported", 9), ("unsupported", 13)]
    assert "mish" in info.value.diagnostics[0].message and "[lstm]" in info.value.diagnostics[1].message


def test_cli_writes_the_spec_and_prints_both_figures(tmp_path):
    out = tmp_path / "tiny.arch"
    done = subprocess.run([sys.executable, "-m", "archc", "import", str(CFGS / "yolov3-tiny.cfg"), "-o", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Darknet: 5.565 BFLOPs, 8,858,734 floats" in done.stdout and "archc:   5.565 (2 × MACs), 8,858,734" \
        in done.stdout and "outputs: conv15, conv22" in done.stdout
    assert out.read_text().startswith("# Imported from yolov3-tiny.cfg")


def test_cli_errors_are_one_located_line_each(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=8\nheight=8\n[convolutional]\nfilters=4\nsize=3\nactivation=mish\nnonsense\n")
    done = subprocess.run([sys.executable, "-m", "archc", "import", str(bad), "-o", str(tmp_path / "b.arch")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{bad}:8:1: error: a line that is neither" in done.stderr and not (tmp_path / "b.arch").exists()
    other = tmp_path / "net.pbtxt"
    other.write_text("name: 'x'\n")
    cli_error(subprocess.run([sys.executable, "-m", "archc", "import", str(other)], capture_output=True, text=True),
              "bad-import", 1, naming=str(other))
    cli_error(subprocess.run([sys.executable, "-m", "archc", "import", str(tmp_path / "none.cfg")],
                             capture_output=True, text=True), "no-file", 1, naming="none.cfg")



# ---- Darknet's trained weights ----------------------------------------------------------------------------------
TINY = """[net]
channels=3
height=10
width=10
[convolutional]
batch_normalize=1
filters=8
size=3
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
filters=8
size=1
activation=linear
[shortcut]
from=-2
activation=relu
[convolutional]
batch_normalize=1
filters=4
size=1
activation=leaky
[route]
layers=-1,-3
[local]
filters=4
size=3
pad=1
activation=logistic
[connected]
output=6
activation=tanh
"""


def _darknet_forward(x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """TINY as Darknet computes it, straight from the .weights floats `f` in its own layout (parser.c's order:
    biases, then scales, rolling mean and variance with batch norm, then the kernel), batch 1."""
    at = [0]

    def take(*shape: int) -> np.ndarray:
        n = int(np.prod(shape))
        at[0] += n
        return f[at[0] - n:at[0]].reshape(shape)

    def windows(v: np.ndarray, k: int) -> np.ndarray:  # C × H × W × k × k, zero-padded by k // 2
        p = np.pad(v, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)))
        return np.lib.stride_tricks.sliding_window_view(p, (k, k), (1, 2))

    def conv(v: np.ndarray, n: int, k: int, bn: bool) -> np.ndarray:
        b = take(n)
        scale, mean, var = (take(n), take(n), take(n)) if bn else (None, None, None)
        out = np.einsum("nckl,cyxkl->nyx", take(n, v.shape[0], k, k), windows(v, k))
        if bn:  # normalize_cpu: (x − mean) / (sqrt(var) + .000001), then the scale
            out = (out - mean[:, None, None]) / (np.sqrt(var)[:, None, None] + 1e-6) * scale[:, None, None]
        return out + b[:, None, None]

    def leaky(v: np.ndarray) -> np.ndarray:
        return np.where(v > 0, v, 0.1 * v)

    l0 = leaky(conv(x[0], 8, 3, True))                      # 8×10×10
    l1 = l0.reshape(8, 5, 2, 5, 2).max(axis=(2, 4))         # 8×5×5
    l2 = conv(l1, 8, 1, False)
    l3 = np.maximum(l2 + l1, 0)                             # shortcut from=-2, relu
    l4 = leaky(conv(l3, 4, 1, True))                        # 4×5×5
    l5 = np.concatenate([l4, l2])                           # route -1, -3: 12×5×5
    bias = take(4, 5, 5)                                    # local: a bias per output element, then per place a
    kernels = take(25, 4, 12, 3, 3)                         # filters × channels × 3 × 3 kernel
    w5 = windows(l5, 3)
    l6 = np.stack([np.einsum("fckl,ckl->f", kernels[5 * i + j], w5[:, i, j]) for i in range(5) for j in range(5)],
                  axis=1).reshape(4, 5, 5) + bias
    l6 = 1 / (1 + np.exp(-l6))
    b7 = take(6)
    l7 = np.tanh(take(6, 100) @ l6.ravel() + b7)            # connected: outputs × inputs
    assert at[0] == f.size
    return l7[None]


def test_darknet_weights_bind_and_give_darknets_outputs(tmp_path):
    """A cfg with every layer that has weights (batch-normalised and plain convolutions, local, connected) and a
    shortcut and a route between them: a .weights file of random floats (header 0.2.0, 64-bit images seen) is
    imported beside the spec, bound by `--weights`, and the ONNX output equals Darknet's forward pass computed
    here from the file's floats (1e-4 of the range: Darknet's batch norm divides by sqrt(var) + 1e-6, ONNX's by
    sqrt(var + 1e-5))."""
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY)
    floats = convert(TINY, "tiny.cfg").weights
    rng = np.random.default_rng(3)
    f = rng.standard_normal(floats).astype(np.float32) * 0.3
    at, n = 0, 0
    for name, shape in convert(TINY, "tiny.cfg").layout:  # variances must be positive
        size = int(np.prod(shape))
        if name.endswith("running_var"):
            f[at:at + size] = rng.uniform(0.5, 2.0, size)
            n += 1
        at += size
    assert n == 2
    weights = tmp_path / "tiny.weights"
    weights.write_bytes(np.array([0, 2, 0], "<i4").tobytes() + np.array([12800], "<i8").tobytes() + f.tobytes())
    spec = tmp_path / "tiny.arch"
    archc.import_spec(cfg, spec, weights)
    out = archc.compile(spec, weights=tmp_path / "tiny.npz", output=tmp_path / "tiny.onnx").output
    x = rng.random((1, 3, 10, 10), dtype=np.float32)
    (got,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    want = _darknet_forward(x, f.astype(np.float64))
    assert np.abs(got - want).max() <= 1e-4 * np.ptp(want)
    weights.write_bytes(weights.read_bytes()[:-8])  # two floats short: which file, and the counts
    with raises("weights-mismatch", naming=(str(weights), f"{floats - 2:,}", f"{floats:,}")):
        archc.import_spec(cfg, tmp_path / "other.arch", weights)
    assert not (tmp_path / "other.arch").exists()
