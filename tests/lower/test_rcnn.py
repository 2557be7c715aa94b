"""A two-stage detector's package hands boxes: `archc compile --detect faster_rcnn` on the zoo's Faster R-CNN
(ResNet-50-C4, k = 15 anchors, here at 96×128 with 16 proposals and 3 classes to stay small) builds stage one (the
backbone and the RPN) as the package's library and stage two (RoIAlign, res5, the heads) as the package in its
heads/ folder, each verified against onnxruntime on its own graph. Between them both loaders choose the proposals,
and after them decode each class's boxes.

The reference is onnxruntime running the two stages' ONNX files, with the proposals and the decoding computed by
torchvision's own anchor generator and box coder (`torchvision.models.detection`: pure torch code, independent of
archc's) and a greedy suppression written here. Random weights give boxes enough at a low threshold; the map is
6×8 (720 anchors, under pre_nms = 1000, so no near-tie decides which anchors go through suppression). The outputs
of the library and of onnxruntime differ by rounding (verified to 1e-4 of their range), which moves a proposal by up
to ~3e-3 pixels and so the features stage two samples: boxes are matched to 1e-2 pixels and scores to 1e-4 (2e-5
seen); the two loaders, reading the same library outputs, agree to 1e-3 pixels and
1e-6."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import onnxruntime_outputs, raises

import archc
from archc.errors import UsageError
from archc.options import ModelOptions
from archc.runtime import load_package

pytestmark = [pytest.mark.tvm, pytest.mark.torch]
SPECS = Path(__file__).resolve().parents[2] / "specs"
SMALL = ModelOptions(inputs={"image": (1, 3, 96, 128), "rois": (1, 16, 4)}, params={"num_classes": 3})


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rcnn") / "frcnn"
    archc.compile(SPECS / "faster_rcnn_r50_c4.arch", target="native", output=folder, options=SMALL, quick=0,
                  detect="faster_rcnn")
    return folder


def _overlap(b: list, k: list) -> float:
    inter = max(0.0, min(b[2], k[2]) - max(b[0], k[0])) * max(0.0, min(b[3], k[3]) - max(b[1], k[1]))
    union = (b[2] - b[0]) * (b[3] - b[1]) + (k[2] - k[0]) * (k[3] - k[1]) - inter
    return inter / union if union > 0 else 0.0


def _nms(boxes: list, iou: float) -> list[int]:
    """Greedy suppression of boxes (x1, y1, x2, y2, class, …) sorted best first, class by class."""
    kept: list[int] = []
    for i, b in enumerate(boxes):
        if not any(b[4] == boxes[j][4] and _overlap(b, boxes[j]) > iou for j in kept):
            kept.append(i)
    return kept


def _reference(package: Path, image: np.ndarray, det) -> tuple[np.ndarray, list[tuple]]:
    """onnxruntime's two stages, torchvision's anchors and box coder between and after them: the proposals and
    the detections (box, score, class) best first."""
    import torch
    from torchvision_ref import import_torchvision
    import_torchvision()
    from torchvision.models.detection._utils import BoxCoder
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import boxes as box_ops
    p = det.proposals
    first = onnxruntime_outputs(package / "model.onnx", {"image": image})
    scores, deltas = first[p.scores][0], first[p.deltas][0]
    k, (h, w) = len(p.sizes) * len(p.ratios), scores.shape[1:]
    gen = AnchorGenerator(sizes=(tuple(p.sizes),), aspect_ratios=(tuple(p.ratios),))
    cell = gen.generate_anchors(list(p.sizes), list(p.ratios), dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(h) * p.stride, torch.arange(w) * p.stride, indexing="ij")
    shifts = torch.stack([xs, ys, xs, ys], dim=-1).reshape(-1, 1, 4).double()
    anchors = (shifts + cell[None]).reshape(-1, 4)
    logits = torch.from_numpy(scores).double().reshape(2, k, h, w).permute(0, 2, 3, 1).reshape(2, -1)
    prob = torch.softmax(logits, dim=0)[1]
    offsets = torch.from_numpy(deltas).double().reshape(k, 4, h, w).permute(2, 3, 0, 1).reshape(-1, 4)
    boxes = box_ops.clip_boxes_to_image(BoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(offsets, anchors),
                                        (image.shape[2], image.shape[3]))
    keep = box_ops.remove_small_boxes(boxes, 1e-3)
    order = keep[torch.sort(-prob[keep], stable=True).indices][:p.pre_nms]
    listed = [[*map(float, boxes[i]), 0] for i in order]
    chosen = [listed[i][:4] for i in _nms(listed, p.iou)][:p.rois[-2]]
    rois = np.array(chosen + [chosen[-1]] * (p.rois[-2] - len(chosen)), np.float32)
    heads = load_package(package / p.heads)
    feeds = {s.name: first[i] for s, i in zip(heads.inputs[:-1], p.passes, strict=True)}
    feeds[heads.inputs[-1].name] = rois.reshape(p.rois)
    second = onnxruntime_outputs(package / p.heads / "model.onnx", feeds)
    probs = torch.softmax(torch.from_numpy(second[p.cls]).double(), dim=1)[:len(chosen), 1:]
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    found = []
    for r in range(len(chosen)):
        offsets = torch.from_numpy(second[p.box][r]).double().reshape(det.classes, 4)
        decoded = box_ops.clip_boxes_to_image(
            coder.decode_single(offsets, torch.from_numpy(rois[r:r + 1]).double().expand(det.classes, 4)),
            (image.shape[2], image.shape[3]))
        for c in range(det.classes):
            b = decoded[c]
            if probs[r, c] > det.confidence and b[2] - b[0] >= 1e-2 and b[3] - b[1] >= 1e-2:
                found.append([*map(float, b), c, float(probs[r, c])])
    found.sort(key=lambda f: -f[5])
    return rois[:len(chosen)], [tuple(found[i]) for i in _nms(found, det.iou)][:det.max_boxes]


def _match(got, want: list[tuple]) -> None:
    assert len(got.scores) == len(want) > 0
    for *box, cls, score in want:
        assert any(got.classes[i] == cls and (np.abs(got.boxes[i] - np.asarray(box)) <= 1e-2).all()
                   and abs(got.scores[i] - score) < 1e-4 for i in range(len(got.scores))), (box, score, cls)


def test_the_package_holds_both_stages_each_verified(package):
    manifest = json.loads((package / "manifest.json").read_text())
    heads = json.loads((package / "heads" / "manifest.json").read_text())
    assert [i["name"] for i in manifest["inputs"]] == ["image"]  # stage one: the proposals come later
    assert [o["name"] for o in manifest["outputs"]][:2] == ["rpn/scores", "rpn/boxes"]
    assert [o["shape"] for o in manifest["outputs"]] == [[1, 30, 6, 8], [1, 60, 6, 8], [1, 1024, 6, 8]]
    assert [i["shape"] for i in heads["inputs"]] == [[1, 1024, 6, 8], [1, 16, 4]]
    assert [o["shape"] for o in heads["outputs"]] == [[16, 4], [16, 12]]
    assert manifest["verification"]["status"] == heads["verification"]["status"] == "passed"
    p = manifest["detection"]["proposals"]
    assert (p["sizes"], p["ratios"], p["stride"], p["passes"], p["rois"]) == (
        [32, 64, 128, 256, 512], [0.5, 1, 2], 16, [2], [1, 16, 4])  # k = 15: Mask R-CNN's C4 anchors
    assert not (package / "heads" / "lib").exists()  # the outer package's runtime serves both
    assert "the package in `heads/`" in (package / "README.md").read_text()  # its README says what detect does
    assert "stage two of the package in the folder above" in (package / "heads" / "README.md").read_text()


def test_both_loaders_give_onnxruntimes_boxes(package, tmp_path):
    pkg = load_package(package)
    image = np.random.default_rng(8).standard_normal((1, 3, 96, 128)).astype(np.float32)
    det = pkg.manifest.detection
    rois, want = _reference(package, image, det)
    got = pkg.detect({"image": image})
    _match(got, want)
    assert list(got.scores) == sorted(got.scores, reverse=True)
    if shutil.which("g++") is None or not (package / "include").is_dir():
        pytest.skip("needs g++ and TVM's headers in the package: run scripts/install-test-deps.sh")
    build = subprocess.run(["make", "-C", str(package / "cpp")], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    np.save(tmp_path / "x.npy", image)
    run = subprocess.run([str(package / "run_model"), str(package / "faster_rcnn_r50_c4.so"), str(tmp_path / "x.npy"),
                          "-o", str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"proposals: {len(rois)} of 16" in run.stdout and f"detections: {len(got.scores)} above" in run.stdout
    np.testing.assert_allclose(np.load(tmp_path / "out" / "proposals.npy")[:len(rois)], rois, rtol=0, atol=1e-2)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "boxes.npy"), got.boxes, rtol=0, atol=1e-3)
    np.testing.assert_allclose(np.load(tmp_path / "out" / "scores.npy"), got.scores, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "classes.npy"), got.classes)


def test_what_is_not_a_two_stage_detector_says_so(tmp_path):
    spec = tmp_path / "one.arch"
    spec.write_text("network one(num_classes = 3, anchors = 15) {\n  input image: 3x32x32\n"
                    "  c: conv(30, 3)\n}\n")
    with raises("bad-usage", UsageError, naming="proposals input"):
        archc.compile(spec, target="native", output=tmp_path / "y", detect="faster_rcnn", quick=0)
    with raises("bad-usage", UsageError, naming="num_classes"):
        archc.compile(SPECS / "lenet5.arch", target="native", output=tmp_path / "y", detect="faster_rcnn", quick=0)
    with raises("bad-usage", UsageError, naming="anchor_sizes"):
        archc.compile(SPECS / "faster_rcnn_r50_c4.arch", target="native", output=tmp_path / "f",
                      detect="faster_rcnn", options=ModelOptions(params={"anchors": 6}), quick=0)
    assert not (tmp_path / "y").exists() and not (tmp_path / "f").exists()


TINY = """network tiny_rcnn(num_classes = 3, anchors = 15) {
  input image: 3x64x96
  input rois: 8x4
  f: @image conv(16, 3, stride=2, pad=1) relu conv(32, 3, stride=2, pad=1) relu conv(32, 3, stride=2, pad=1) relu
     conv(32, 3, stride=2, pad=1) relu            # 4×6 at stride 16
  rpn: conv(32, 3) relu
  scores: @rpn conv(2 * anchors, 1)
  boxes: @rpn conv(4 * anchors, 1)
  roi: roi_align(7, stride=16) { @f; @rois }
  head: conv(32, 3) relu gap flatten
  cls: dense(num_classes + 1)
  box: @head dense(4 * num_classes)
  output scores, boxes, cls, box
}
"""


@pytest.mark.cross
def test_an_arm64_two_stage_detector_gives_the_same_boxes_under_qemu(tmp_path):
    """Both stages cross compiled for aarch64 and run under qemu by the Python loader (a small two-stage network
    of the same shape: conv backbone at stride 16, RPN with k = 15, RoIAlign, a conv head) give the boxes of
    onnxruntime's stages decoded by the reference."""
    spec = tmp_path / "tiny.arch"
    spec.write_text(TINY)
    folder = Path(archc.compile(spec, target="arm64", output=tmp_path / "arm", quick=0, detect="faster_rcnn").output)
    pkg = load_package(folder)
    image = np.random.default_rng(9).standard_normal((1, 3, 64, 96)).astype(np.float32)
    _, want = _reference(folder, image, pkg.manifest.detection)
    _match(pkg.detect({"image": image}), want)
    assert pkg.emulated and pkg._second.emulated  # both stages ran under qemu
