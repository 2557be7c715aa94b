"""`archc import` writes a block where the file repeats itself (archc/importers/blocks.py): ResNet-50's and
Darknet-53's residual units, DenseNet-201's conv-conv-concat, GoogLeNet's inception and SqueezeNet's fire modules
become a `block` and a call per unit. The folded spec is the same network as the flat one (`--flat`, a line per
layer): the same totals for every published file, and with the same weights (renamed to the layers' paths under
the calls) the same outputs in onnxruntime; Darknet's .weights bind through the renamed layout."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import archc
from archc.importers import caffe, darknet
from archc.importers.blocks import Line, fold, rename

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
CFGS, PROTOTXTS = DATA / "darknet-cfg", DATA / "caffe-prototxt"
FILES = sorted(CFGS.glob("*.cfg")) + sorted(PROTOTXTS.glob("*.prototxt")) if DATA.is_dir() else []
needs_data = pytest.mark.skipif(not (CFGS.is_dir() and PROTOTXTS.is_dir()), reason="the published files are in "
                                "../shared/data: run from a checkout beside the team's shared folder")


def _convert(path: Path, flat: bool = False) -> archc.importers.Imported:
    convert = darknet.convert if path.suffix == ".cfg" else caffe.convert
    return convert(path.read_text(), path.name, flat)


def _units(text: str, block: str) -> list[int]:
    """The units each call of `block` stands for (`name: block(…) * 3` is 3), in order."""
    return [int(m.group(1) or 1) for m in re.finditer(rf"^  \w+: (?:@\w+ )?{block}\([^)]*\)[^#*\n]*(?:\* (\d+))?",
                                                      text, re.M)]


def _onnx(text: str, path: Path, **options: object) -> onnx.ModelProto:
    path.with_suffix(".arch").write_text(text)
    return onnx.load(archc.compile(path.with_suffix(".arch"), output=path.with_suffix(".onnx"), simplify=False,
                                   **options).output)


def _same_function(name: Path, tmp_path: Path, **options: object) -> None:
    """The folded spec's ONNX, given the flat one's initializers under their renamed names, computes the flat
    one's outputs; with its own (initialised by name, so different) it does not."""
    folded, flat = _convert(name), _convert(name, flat=True)
    assert folded.renames, f"{name.name}: nothing folded"
    a, b = _onnx(folded.text, tmp_path / "folded", **options), _onnx(flat.text, tmp_path / "flat", **options)
    theirs = {rename(t.name, folded.renames): t for t in b.graph.initializer}
    assert sorted(theirs) == sorted(t.name for t in a.graph.initializer)
    shape = [d.dim_value for d in b.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)

    def run(model: onnx.ModelProto) -> list[np.ndarray]:
        return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"image": x})

    before = run(a)
    for t in a.graph.initializer:
        t.CopyFrom(onnx.helper.make_tensor(t.name, theirs[t.name].data_type, theirs[t.name].dims,
                                           onnx.numpy_helper.to_array(theirs[t.name]).ravel()))
    want, got = run(b), run(a)
    assert len(want) == len(got)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * float(np.abs(w).max()))
    assert any(not np.allclose(p, w) for p, w in zip(before, want, strict=True))


@needs_data
def test_resnet50s_bottlenecks_are_blocks():
    """Darknet's ResNet-50 has 16 bottleneck units: the 12 with an identity shortcut are one block (a call per run
    of equal units: 2, 3, 5 and 2, each stage's widths its arguments), the 3 stride-2 projections another; the
    first projection (stride 1, from the max pool) has no twin and stays a line per layer."""
    text = _convert(CFGS / "resnet50.cfg").text
    assert "block conv_x3_shortcut(conv1_out, conv2_out, conv3_out) {" in text
    assert "  shortcut: add { identity; @x } leaky(0.1)" in text and "  x: identity" in text
    assert _units(text, "conv_x3_shortcut") == [2, 3, 5, 2]
    assert _units(text, "conv_x3_shortcut_2") == [1, 1, 1]
    assert "  layers34_53: conv_x3_shortcut(256, 256, 1024) * 5" in text
    assert "# 5 units: conv34 [convolutional] line 269 … shortcut53 [shortcut] line 405" in text
    assert "  conv2: conv(64, 1, bias=false) bn leaky(0.1)" in text  # the first unit, flat


@needs_data
def test_googlenets_inception_modules_are_the_zoos_calls():
    """BVLC GoogLeNet's nine inception modules: one block, called as the zoo's googlenet.arch calls its own
    (Table 1's widths, the Caffe module names), each call's comment giving the module's first and last Caffe
    layers; the block's layers are named as Caffe names them, less the module."""
    imported = _convert(PROTOTXTS / "bvlc_googlenet.deploy.prototxt")
    text = imported.text
    assert "block inception(conv1x1_out, conv3x3_reduce_out, conv3x3_out, conv5x5_reduce_out, conv5x5_out, " \
        "pool_proj_out) {" in text
    ours = re.findall(r"^  (inception_\w+: inception\([^)]*\))", text, re.M)
    zoo = re.findall(r"^  (inception_\w+: inception\([^)]*\))", (ROOT / "specs" / "googlenet.arch").read_text(), re.M)
    assert len(ours) == 9 and ours == zoo
    assert "# inception_3a/1x1 (line 151) … inception_3a/output (line 357)" in text
    assert imported.renames["inception_4c_3x3_reduce"] == "inception_4c/conv3x3_reduce"


@needs_data
def test_squeezenets_fire_modules_are_one_block():
    """SqueezeNet 1.0's eight fire modules; the last carries Caffe's in-place drop9 on its call."""
    text = _convert(PROTOTXTS / "squeezenet_v1.0.deploy.prototxt").text
    assert "block fire(squeeze1x1_out, expand1x1_out, expand3x3_out) {" in text
    assert _units(text, "fire") == [1] * 8
    assert "  fire2: fire(16, 64, 64)" in text and "  fire9: fire(64, 256, 256) dropout(0.5)" in text


@needs_data
def test_densenet201_and_darknet53_are_runs_of_one_block():
    densenet = _convert(CFGS / "densenet201.cfg").text
    assert _units(densenet, "conv_x2_route") == [6, 12, 48, 32] and "block conv_x2_route() {" in densenet
    yolo = _convert(CFGS / "yolov3-spp.cfg").text
    assert _units(yolo, "conv_x2_shortcut") == [1, 2, 8, 8, 4]
    assert "route93: concat { @upsample92; @layers38_61_8 }" in yolo  # a route to the 8th unit's output


@needs_data
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_folded_and_flat_have_the_same_totals(path, tmp_path):
    folded, flat = _convert(path), _convert(path, flat=True)
    assert folded.weights == flat.weights and folded.bflops == flat.bflops
    assert len(folded.layout) == len(flat.layout)
    assert [s for _, s in folded.layout] == [s for _, s in flat.layout]
    assert [n for n, _ in folded.layout] == [rename(n, folded.renames) for n, _ in flat.layout]
    (tmp_path / "a.arch").write_text(folded.text)
    (tmp_path / "b.arch").write_text(flat.text)
    a, b = archc.analyze(tmp_path / "a.arch"), archc.analyze(tmp_path / "b.arch")
    assert (a.totals.params, a.totals.macs, a.totals.nontrainable_params) == \
        (b.totals.params, b.totals.macs, b.totals.nontrainable_params)
    assert [o["shape"] for o in a.outputs] == [o["shape"] for o in b.outputs]
    if not folded.renames:  # nothing repeats: the text is the flat one
        assert folded.text == flat.text


@needs_data
@pytest.mark.parametrize(("name", "options"), [("darknet-cfg/resnet50.cfg", {"input": "1x3x64x64"}),
                                               ("darknet-cfg/densenet201.cfg", {"input": "1x3x64x64"}),
                                               ("caffe-prototxt/bvlc_googlenet.deploy.prototxt", {}),
                                               ("caffe-prototxt/squeezenet_v1.0.deploy.prototxt", {})])
def test_folded_onnx_computes_the_flat_ones_function(name, options, tmp_path):
    _same_function(DATA / name, tmp_path, **options)


@needs_data
def test_networks_without_repeats_stay_flat():
    """AlexNet, VGG-16, Darknet-19 (its 3×3/1×1 alternations differ in width), the YOLOv2s: no unit repeats."""
    for path in [CFGS / "alexnet.cfg", CFGS / "vgg-16.cfg", CFGS / "darknet19.cfg", CFGS / "yolov2.cfg",
                 PROTOTXTS / "bvlc_alexnet.deploy.prototxt"]:
        folded = _convert(path)
        assert "block " not in folded.text and not folded.renames and folded.text == _convert(path, True).text


# ---- units, references and weights, on small cfgs ----------------------------------------------------------------
def _cfg(widths: list[int], extra: str = "") -> str:
    """A stem conv, a residual unit (1×1 to w, 3×3 back to 8, shortcut) per width, a 1×1 head, and `extra`."""
    conv = "[convolutional]\nbatch_normalize=1\nfilters={}\nsize={}\npad=1\nactivation=leaky\n"
    units = "".join(conv.format(w, 1) + conv.format(8, 3) + "[shortcut]\nfrom=-3\nactivation=linear\n"
                    for w in widths)
    return ("[net]\nchannels=3\nheight=8\nwidth=8\n" + conv.format(8, 3) + units +
            "[convolutional]\nfilters=5\nsize=1\nactivation=linear\n" + extra)


def test_a_unit_read_from_outside_stays_flat():
    """A route to the first conv of the second unit: that unit keeps its lines (the route needs the label), the
    others fold; the spec is the same network."""
    cfg = _cfg([4, 4, 2, 2, 2], "[route]\nlayers=4\n[convolutional]\nfilters=3\nsize=1\nactivation=linear\n")
    folded, flat = darknet.convert(cfg, "t.cfg"), darknet.convert(cfg, "t.cfg", flat=True)
    assert "  conv4: conv(4, 1, bias=false) bn leaky(0.1)" in folded.text and "conv18: @conv4 conv(3, 1)" in \
        folded.text
    assert "conv4" not in folded.renames and folded.renames["conv1"] == "layers1_3/conv1"
    assert "  layers7_15: conv_x2_shortcut(2) * 3" in folded.text
    assert _units(folded.text, "conv_x2_shortcut") == [1, 3]
    assert folded.weights == flat.weights


def test_darknet_weights_bind_to_the_folded_spec(tmp_path):
    """A .weights file imported beside the folded spec binds by the renamed names (layers1_6_1/conv1/bn.running_var)
    and gives the outputs the flat spec gives with the same file."""
    cfg = tmp_path / "res.cfg"
    cfg.write_text(_cfg([4, 4, 2, 2]))
    imported = darknet.convert(cfg.read_text(), cfg.name)
    assert ("layers1_6_1/conv1/bn.running_var", (4,)) in imported.layout
    rng = np.random.default_rng(3)
    f = (rng.standard_normal(imported.weights) * 0.3).astype(np.float32)
    at = 0
    for name, shape in imported.layout:  # variances must be positive
        size = int(np.prod(shape))
        if name.endswith("running_var"):
            f[at:at + size] = rng.uniform(0.5, 2.0, size)
        at += size
    weights = tmp_path / "res.weights"
    weights.write_bytes(np.array([0, 2, 0], "<i4").tobytes() + np.array([0], "<i8").tobytes() + f.tobytes())
    x = rng.random((1, 3, 8, 8), dtype=np.float32)
    outs = []
    for flat in (False, True):
        spec = tmp_path / f"res_{flat}.arch"
        archc.import_spec(cfg, spec, weights, flat=flat)
        assert ("block" in spec.read_text()) != flat
        model = archc.load(spec, weights=spec.with_suffix(".npz"))
        assert model.binding is not None and {how for _, _, how in model.binding.pairs} == {"name"}
        outs.append(ort.InferenceSession(model.proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"image": x})[0])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_fold_keeps_what_it_cannot_fold():
    """A unit must occur twice; a plain chain (no merge) folds only where it recurs exactly and back to back;
    unlabelled and comment lines are never in a unit."""
    def unit(k: int) -> list[Line]:  # conv, conv, and both concatenated
        return [Line(f"conv{k}", "conv(8, 1)"), Line(f"conv{k + 1}", "conv(8, 3)"),
                Line(f"cat{k + 2}", f"concat {{ @conv{k + 1}; @conv{k} }}")]

    def chain(*widths: int) -> list[Line]:
        return [Line(f"conv{i}", f"conv({w}, {1 + 2 * (i % 2)})") for i, w in enumerate(widths)]

    assert not fold(unit(0) + [Line("conv3", "conv(4, 1)")]).blocks
    four = unit(0) + unit(3) + unit(6) + unit(9)
    folded = fold(four)
    assert [line.body for line in folded.lines] == ["conv_x2_cat() * 4"]
    assert folded.renames["cat5"] == "layers0_11_2/cat" and folded.refs["cat11"] == "layers0_11_4"
    assert [line.body for line in fold(chain(8, 16, 8, 16, 8, 16, 8, 16, 4, 32)).lines] == \
        ["conv_x2() * 4", "conv(4, 1)", "conv(32, 3)"]
    assert not fold(chain(8, 16, 16, 32, 32, 64, 64, 128)).blocks  # the widths differ: a line each
    for odd in (Line(None, "flatten"), Line(None, text="  # a comment")):
        folded = fold(four[:5] + [odd] + four[5:])
        assert {"conv3", "conv4", "cat5"}.isdisjoint(folded.renames) and "conv0" in folded.renames
    assert fold(four, outputs=["conv4"]).renames.keys().isdisjoint({"conv3", "conv4", "cat5"})


def test_cli_flat_writes_a_line_per_layer(tmp_path):
    cfg = tmp_path / "res.cfg"
    cfg.write_text(_cfg([4, 4, 2, 2]))
    for flag, blocks in (([], True), (["--flat"], False)):
        out = tmp_path / f"res{len(flag)}.arch"
        done = subprocess.run([sys.executable, "-m", "archc", "import", str(cfg), "-o", str(out), *flag],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert ("block conv_x2_shortcut(conv1_out)" in out.read_text()) == blocks
        assert "archc:   " in done.stdout
