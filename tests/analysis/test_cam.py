"""`archc cam`: class activation maps (deck 004; Zhou et al. 2016) on a network trained here to find an object.

A small all-convolutional network with global average pooling and one FC layer is trained (PyTorch, a few seconds)
on synthetic 32×32 pictures: a bright square (class 0) or a bright bar (class 1) at a random place on noise. Its
weights bind to the same network written as an archc spec; on pictures it has not seen, the map of the class it
predicts must peak on the object (nothing in the map is told where that is).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import cli_error, raises

import archc

pytestmark = pytest.mark.torch
SPECS = Path(__file__).resolve().parents[2] / "specs"
GAPNET = """network gapnet {
  input image: 3x32x32
  c1: conv(16, 3) relu
  c2: conv(32, 3, stride=2) relu
  c3: conv(32, 3) relu
  gap
  flatten
  fc: dense(2)
}
"""


def _pictures(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n pictures (n×3×32×32 in [0, 1]), their classes, and each object's box (top, left, bottom, right)."""
    x = rng.uniform(0, 0.3, (n, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    boxes = np.zeros((n, 4), int)
    for i, label in enumerate(labels):
        h, w = (8, 8) if label == 0 else (3, 14)
        top, left = rng.integers(0, 32 - h + 1), rng.integers(0, 32 - w + 1)
        x[i, :, top:top + h, left:left + w] = rng.uniform(0.8, 1.0)
        boxes[i] = (top, left, top + h, left + w)
    return x, labels, boxes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The spec and its trained weights (a PyTorch state_dict), and unseen pictures with their boxes."""
    import torch
    from torch import nn
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                        nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(32, 2))
    x, y, _ = _pictures(800, rng)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    data, target = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(12):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(data[i:i + 64]), target[i:i + 64]).backward()
            opt.step()
    folder = tmp_path_factory.mktemp("cam")
    torch.save(net.state_dict(), folder / "gapnet.pt")
    (folder / "gapnet.arch").write_text(GAPNET)
    return folder, _pictures(20, np.random.default_rng(1))


def test_the_map_of_the_predicted_class_peaks_on_the_object(trained):
    folder, (x, labels, boxes) = trained
    model = archc.load(folder / "gapnet.arch", weights=folder / "gapnet.pt")
    right = on_object = 0
    for i in range(len(x)):
        np.save(folder / "x.npy", x[i:i + 1])
        cam = archc.cam(model, folder / "x.npy")
        right += cam.class_index == labels[i]
        row, col = cam.peak
        top, left, bottom, right_edge = boxes[i]
        on_object += top - 2 <= row < bottom + 2 and left - 2 <= col < right_edge + 2
        assert cam.cam.shape == (16, 16) and cam.upsampled.shape == (32, 32) and cam.features == "c3/relu"
        assert 0 <= cam.upsampled.min() and cam.upsampled.max() <= 1  # normalised, then upsampled (the deck's order)
    assert right >= 18 and on_object >= 18, (right, on_object)


def test_the_cli_draws_the_overlay(trained, tmp_path):
    from PIL import Image
    folder, (x, labels, boxes) = trained
    picture = tmp_path / "square.png"
    Image.fromarray((x[0].transpose(1, 2, 0) * 255).astype(np.uint8)).save(picture)
    out = tmp_path / "map.png"
    done = subprocess.run([sys.executable, "-m", "archc", "cam", str(folder / "gapnet.arch"), str(picture),
                           "--weights", str(folder / "gapnet.pt"), "--class", "1", "-o", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out}: class 1 (score ") and "16×16 maps of 'c3/relu'" in done.stdout
    with Image.open(out) as img:
        assert img.size == (32, 32) and img.mode == "RGB"


def test_the_html_analysis_shows_the_map(trained, tmp_path):
    """`archc analyze --format html --cam IMAGE`: the tables, then the overlay embedded as a PNG with its caption."""
    import base64
    import io
    import re

    from PIL import Image
    folder, (x, labels, _) = trained
    np.save(tmp_path / "x.npy", x[:1])
    page = tmp_path / "gapnet.html"
    done = subprocess.run([sys.executable, "-m", "archc", "analyze", str(folder / "gapnet.arch"), "--format", "html",
                           "--cam", str(tmp_path / "x.npy"), "--weights", str(folder / "gapnet.pt"), "-o", str(page)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    assert "<table>" in html and f"Class activation map: class {labels[0]}" in html
    assert "16×16 maps of &#39;c3/relu&#39;" in html
    (data,) = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    with Image.open(io.BytesIO(base64.b64decode(data))) as img:
        assert img.size == (32, 32)
    done = subprocess.run([sys.executable, "-m", "archc", "analyze", str(folder / "gapnet.arch"), "--cam",
                           str(tmp_path / "x.npy")], capture_output=True, text=True)
    cli_error(done, "bad-usage", 2, naming="--format html")


def test_a_network_without_gap_and_fc_or_a_bad_class_is_one_sentence(trained, tmp_path):
    folder, (x, _, _) = trained
    np.save(tmp_path / "x.npy", x[:1])
    with raises("no-cam", naming="global average pooling"):
        archc.cam(SPECS / "lenet5.arch", tmp_path / "x.npy")
    with raises("bad-option", naming=("class 5", "2 classes")):
        archc.cam(folder / "gapnet.arch", tmp_path / "x.npy", 5, weights=folder / "gapnet.pt")
    np.save(tmp_path / "wrong.npy", x[:1, :, :16])
    with raises("bad-input", naming="1×3×16×32"):
        archc.cam(folder / "gapnet.arch", tmp_path / "wrong.npy", weights=folder / "gapnet.pt")
    done = subprocess.run([sys.executable, "-m", "archc", "cam", str(SPECS / "lenet5.arch"), str(tmp_path / "x.npy"),
                           "-o", str(tmp_path / "no.png")], capture_output=True, text=True)
    cli_error(done, "no-cam", 1)
    assert not (tmp_path / "no.png").exists()


def test_a_1x1_conv_before_the_pooling_maps_its_own_channels(tmp_path):
    """Darknet-19 ends 1×1 conv (1000) → GAP: the map of class j is that conv's channel j (min-max scaled)."""
    x = np.random.default_rng(2).random((1, 3, 224, 224), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    model = archc.load(SPECS / "darknet19.arch")
    cam = archc.cam(model, tmp_path / "x.npy", 7)
    assert cam.features == "features/conv18/conv/leaky_relu" and cam.cam.shape == (7, 7)
    import onnxruntime as ort
    probe = model.proto
    probe.graph.output.append(__import__("onnx").helper.make_empty_tensor_value_info("conv19"))
    (maps,) = ort.InferenceSession(probe.SerializeToString()).run(["conv19"], {"image": x})
    want = maps[0, 7] - maps[0, 7].min()
    np.testing.assert_allclose(cam.cam - cam.cam.min(), want, rtol=1e-4, atol=1e-4 * float(want.max()))
