"""A detector package hands boxes, not raw tensors: `archc compile --detect yolov2` on Tiny YOLOv2, whose Python
loader (Package.detect, archc_detect.py) and C++ loader (run_model: boxes.npy, scores.npy, classes.npy) decode the
13×13×125 region output the same way, and as onnxruntime's output decoded by the reference below (written
independently, cell by cell, from YOLOv2's decoding as the README states it). Random weights give boxes enough at a
low confidence threshold (0.05); the outputs of the library and of onnxruntime differ by rounding (verified to
1e-4 of the range at compile), so their boxes are matched to 1e-2 pixels (or 1e-4 of the coordinate) and their
scores to 1e-5."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import onnxruntime_outputs, raises

import archc
from archc.errors import UsageError
from archc.runtime import PackageError, load_package

pytestmark = pytest.mark.tvm
SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("det") / "tiny"
    archc.compile(SPECS / "yolov2_tiny.arch", target="native", output=folder, quick=0, detect="yolov2")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["detection"]["confidence"] = 0.05  # random weights: few boxes at 0.25
    (folder / "manifest.json").write_text(json.dumps(manifest))
    text = (folder / "detection.txt").read_text().replace("confidence 0.25", "confidence 0.05")
    (folder / "detection.txt").write_text(text)
    return folder


def _reference(raws: list[np.ndarray], det, size: int) -> list[tuple]:
    """YOLO's decoding, cell by cell: (box, score, class) best first, then greedy suppression per class. YOLOv2:
    anchors in grid cells and a softmax over the classes; YOLOv3: anchors in input pixels and a sigmoid a class."""
    found = []
    for index, anchors in det.heads:
        raw, classes = raws[index], det.classes
        _, _, h, w = raw.shape
        for a in range(len(anchors) // 2):
            for y in range(h):
                for x in range(w):
                    v = [float(raw[0, a * (5 + classes) + k, y, x]) for k in range(5 + classes)]
                    sig = [1 / (1 + math.exp(-t)) for t in v]
                    cx, cy = (x + sig[0]) / w, (y + sig[1]) / h
                    if det.kind == "yolov2":
                        bw, bh = anchors[2 * a] * math.exp(v[2]) / w, anchors[2 * a + 1] * math.exp(v[3]) / h
                        top = max(v[5:])
                        probs = [math.exp(t - top) / sum(math.exp(u - top) for u in v[5:]) for t in v[5:]]
                    else:
                        bw, bh = anchors[2 * a] * math.exp(v[2]) / size, anchors[2 * a + 1] * math.exp(v[3]) / size
                        probs = sig[5:]
                    best = max(range(classes), key=lambda k: probs[k])
                    score = sig[4] * probs[best]
                    if score > det.confidence:
                        found.append(((cx - bw / 2) * size, (cy - bh / 2) * size, (cx + bw / 2) * size,
                                      (cy + bh / 2) * size, score, best))
    found.sort(key=lambda b: -b[4])

    def overlap(b: tuple, k: tuple) -> float:
        inter = max(0.0, min(b[2], k[2]) - max(b[0], k[0])) * max(0.0, min(b[3], k[3]) - max(b[1], k[1]))
        return inter / ((b[2] - b[0]) * (b[3] - b[1]) + (k[2] - k[0]) * (k[3] - k[1]) - inter)
    kept: list[tuple] = []
    for b in found:
        if not any(k[5] == b[5] and overlap(b, k) > det.iou for k in kept):
            kept.append(b)
    return kept[:det.max_boxes]


def _match(got, want) -> None:
    """Every reference box has one of the same class in `got` within 1e-2 pixels (and 1e-4 of the coordinate: random
    weights make boxes thousands of pixels wide, e^tw magnifying the rounding) and 1e-5 of its score."""
    assert len(got.scores) == len(want) > 0
    for *box, score, cls in want:
        close = [i for i in range(len(got.scores)) if got.classes[i] == cls
                 and (np.abs(got.boxes[i] - np.asarray(box)) <= 1e-2 + 1e-4 * np.abs(box)).all()
                 and abs(got.scores[i] - score) < 1e-5]
        assert close, (box, score, cls)


def test_the_python_loaders_boxes_are_onnxruntimes_decoded(package):
    pkg = load_package(package)
    x = {"image": np.random.default_rng(4).standard_normal((1, 3, 416, 416)).astype(np.float32)}
    (raw,) = onnxruntime_outputs(package / "model.onnx", x)
    det = pkg.manifest.detection
    assert det.classes == 20 and det.iou == 0.45 and [(o, len(a)) for o, a in det.heads] == [(0, 10)]
    want = _reference([raw], det, 416)
    got = pkg.detect(x)
    _match(got, want)
    assert got.boxes.shape == (len(got.scores), 4) and list(got.scores) == sorted(got.scores, reverse=True)
    strict = pkg.detect(x, confidence=0.85)  # the thresholds can be overridden
    assert 0 < len(strict.scores) < len(got.scores) and strict.scores.min() > 0.85


def test_the_cpp_loader_gives_the_same_boxes(package, tmp_path):
    if shutil.which("g++") is None or not (package / "include").is_dir():
        pytest.skip("needs g++ and TVM's headers in the package: run scripts/install-test-deps.sh")
    build = subprocess.run(["make", "-C", str(package / "cpp")], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    x = np.random.default_rng(5).standard_normal((1, 3, 416, 416)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run([str(package / "run_model"), str(package / "yolov2_tiny.so"), str(tmp_path / "x.npy"), "-o",
                          str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    py = load_package(package).detect({"image": x})
    assert f"detections: {len(py.scores)} above 0.05" in run.stdout
    boxes, scores, classes = (np.load(tmp_path / "out" / f"{n}.npy") for n in ("boxes", "scores", "classes"))
    assert boxes.dtype == np.float32 and classes.dtype == np.int64
    np.testing.assert_allclose(boxes, py.boxes, rtol=0, atol=1e-3)
    np.testing.assert_allclose(scores, py.scores, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(classes, py.classes)


REGION = """network r(num_classes = 4, anchors = [1.0, 1.5, 2.5, 2.0]) {
  input image: 3x64x64
  c1: conv(8, 3, stride=2) leaky(0.1)
  c2: conv(16, 3, stride=4) leaky(0.1)   # 8×8 cells
  head: conv(len(anchors) // 2 * (5 + num_classes), 1)
}
"""


@pytest.mark.cross
def test_an_arm64_detector_gives_the_same_boxes_under_qemu(tmp_path):
    """An aarch64 build of a small YOLOv2-style detector (cross compiled, run under qemu by the Python loader)
    decodes its output into the boxes onnxruntime's output gives."""
    spec = tmp_path / "r.arch"
    spec.write_text(REGION)
    folder = Path(archc.compile(spec, target="arm64", output=tmp_path / "arm", quick=0, detect="yolov2").output)
    pkg = load_package(folder)
    x = {"image": np.random.default_rng(6).standard_normal((1, 3, 64, 64)).astype(np.float32)}
    (raw,) = onnxruntime_outputs(folder / "model.onnx", x)
    det = dataclasses.replace(pkg.manifest.detection, confidence=0.1)
    _match(pkg.detect(x, confidence=0.1), _reference([raw], det, 64))
    assert pkg.emulated  # it ran under qemu


TWO_HEADS = """network t(num_classes = 3, anchors = [10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319]) {
  input image: 3x64x64
  let outputs = len(anchors) // 4 * (5 + num_classes)
  c1: conv(8, 3, stride=2) leaky(0.1)
  c2: conv(16, 3, stride=2) leaky(0.1)
  c3: conv(16, 3, stride=2) leaky(0.1)   # 8×8: the finer head's
  c4: conv(16, 3, stride=2) leaky(0.1)   # 4×4: the coarser head's
  head1: conv(outputs, 1)
  head2: @c3 conv(outputs, 1)
  output head1, head2
}
"""


def test_yolov3_heads_decode_in_both_loaders(tmp_path):
    """--detect yolov3 on a network with two heads, as YOLOv3-tiny: the coarser head (4×4, the first output)
    takes the larger three anchors, the finer the smaller; anchors in input pixels, a sigmoid a class; both
    loaders give onnxruntime's boxes."""
    spec = tmp_path / "two.arch"
    spec.write_text(TWO_HEADS)
    folder = Path(archc.compile(spec, target="native", output=tmp_path / "pkg", quick=0, detect="yolov3").output)
    pkg = load_package(folder)
    det = pkg.manifest.detection
    assert det.kind == "yolov3" and det.heads == ((0, (81.0, 82.0, 135.0, 169.0, 344.0, 319.0)),
                                                  (1, (10.0, 14.0, 23.0, 27.0, 37.0, 58.0)))
    x = {"image": np.random.default_rng(7).standard_normal((1, 3, 64, 64)).astype(np.float32)}
    raws = onnxruntime_outputs(folder / "model.onnx", x)
    got = pkg.detect(x, confidence=0.3)
    _match(got, _reference(raws, dataclasses.replace(det, confidence=0.3), 64))
    if shutil.which("g++") is None or not (folder / "include").is_dir():
        return
    assert subprocess.run(["make", "-C", str(folder / "cpp")], capture_output=True).returncode == 0
    np.save(tmp_path / "x.npy", x["image"])
    run = subprocess.run([str(folder / "run_model"), str(folder / "t.so"), str(tmp_path / "x.npy"), "-o",
                          str(tmp_path / "out")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    full = pkg.detect(x)  # the C++ loader reads the manifest's threshold, 0.25
    np.testing.assert_allclose(np.load(tmp_path / "out" / "boxes.npy"), full.boxes, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "classes.npy"), full.classes)


def test_what_is_not_a_detector_says_so(tmp_path):
    with raises("bad-usage", UsageError, naming="anchors"):
        archc.compile(SPECS / "lenet5.arch", target="native", output=tmp_path / "l", detect="yolov2", quick=0)
    with raises("bad-usage", UsageError, naming="TVM target"):
        archc.compile(SPECS / "yolov2_tiny.arch", output=tmp_path / "t.onnx", detect="yolov2")
    assert not (tmp_path / "l").exists() and not (tmp_path / "t.onnx").exists()
    plain = Path(archc.compile(SPECS / "lenet5.arch", target="native", output=tmp_path / "p", quick=0).output)
    with pytest.raises(PackageError) as info:
        load_package(plain).detect({"image": np.zeros((1, 1, 32, 32), np.float32)})
    assert info.value.code == "not-a-detector" and "--detect" in str(info.value)
