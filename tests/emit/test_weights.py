"""Weight initialisation and binding by layer path."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import raises, run  # noqa: E402

from archc import spec
from archc.emit import to_onnx
from archc.emit.weights import FORMATS, bind_weights, init_weights, read_weights
from archc.options import ModelOptions

NET = """
network t {
  input x: 3x16x16
  c1: conv(64, 3, bias=false) bn relu
  c2: conv(64, 3) tanh
  flatten
  fc: dense(10)
}
"""


def graph():
    return spec.load_text(NET, "<t>")


def test_initialisation_is_deterministic_and_seeded():
    a, b, c = init_weights(graph(), 0), init_weights(graph(), 0), init_weights(graph(), 1)
    assert list(a) == ["c1.weight", "c1/bn.weight", "c1/bn.bias", "c1/bn.running_mean", "c1/bn.running_var",
                       "c2.weight", "c2.bias", "fc.weight", "fc.bias"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["c2.weight"], c["c2.weight"])


def test_he_for_relu_through_bn_and_xavier_otherwise():
    w = init_weights(graph(), 0)
    fan_in = 3 * 3 * 3
    assert abs(w["c1.weight"].std() - math.sqrt(2 / fan_in)) < 0.05 * math.sqrt(2 / fan_in)  # He: relu after bn
    limit = math.sqrt(6 / (64 * 9 + 64 * 9))  # Xavier-uniform: tanh follows
    assert np.abs(w["c2.weight"]).max() <= limit
    assert abs(w["c2.weight"].std() - limit / math.sqrt(3)) < 0.05 * limit
    assert (w["c1/bn.weight"] == 1).all() and (w["c1/bn.running_var"] == 1).all()
    assert (w["c2.bias"] == 0).all()


def test_a_tensor_depends_only_on_its_name():
    other = spec.load_text(NET.replace("fc: dense(10)", "fc: dense(10)\n  extra: dense(4)"), "<t>")
    a, b = init_weights(graph(), 0), init_weights(other, 0)
    np.testing.assert_array_equal(a["c2.weight"], b["c2.weight"])


@pytest.mark.parametrize("fmt", ["npz", "safetensors", "onnx"])
def test_bind_round_trip(tmp_path, fmt):
    g = graph()
    rng = np.random.default_rng(5)
    trained = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in init_weights(g, 0).items()}
    trained["c1/bn.running_var"] = np.abs(trained["c1/bn.running_var"]) + 0.5
    path = tmp_path / f"w.{fmt}"
    if fmt == "npz":
        np.savez(path, **trained)
    elif fmt == "safetensors":
        from safetensors.numpy import save_file
        save_file({k.replace("/", "."): v for k, v in trained.items()}, str(path))  # state_dict-style dots
    else:
        onnx.save(to_onnx(g, ModelOptions(simplify=False), weights=trained), str(path))
    model = to_onnx(g, ModelOptions(simplify=False, weights=str(path)))
    got = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for k, v in trained.items():
        np.testing.assert_array_equal(got[k], v)
    (out_a,), _, x = run(g, weights=trained)
    (out_b,), _, _ = run(g, x=x, weights={t.name: numpy_helper.to_array(t) for t in model.graph.initializer
                                          if t.name in trained})
    np.testing.assert_array_equal(out_a, out_b)


def _save(tmp_path, tensors):
    path = tmp_path / "w.npz"
    np.savez(path, **tensors)
    return path


def test_missing_tensor_is_named(tmp_path):
    w = init_weights(graph(), 0)
    del w["c2.bias"]
    with raises("weights-mismatch", naming=("'c2.bias'", "64")):
        bind_weights(graph(), read_weights(_save(tmp_path, w)))


def test_extra_tensor_is_named(tmp_path):
    w = init_weights(graph(), 0)
    w["c3.weight"] = np.zeros((2, 2), np.float32)
    with raises("weights-mismatch", naming="'c3.weight'"):
        bind_weights(graph(), read_weights(_save(tmp_path, w)))


def test_misshaped_tensor_is_named(tmp_path):
    w = init_weights(graph(), 0)
    w["fc.weight"] = np.zeros((10, 5), np.float32)
    with raises("weights-mismatch", naming=("'fc.weight'", "10×5", "'fc'", "10×16384")):
        bind_weights(graph(), read_weights(_save(tmp_path, w)))


def test_unreadable_weights_file(tmp_path):
    bad = tmp_path / "w.npz"
    bad.write_bytes(b"not a zip")
    with raises("bad-weights", naming=str(bad)):
        read_weights(bad)
    with raises("bad-weights", naming=("w.bin", FORMATS)):  # the formats it reads
        read_weights(_touch(tmp_path / "w.bin"))
    with raises("no-file", naming="nope.npz"):
        read_weights(tmp_path / "nope.npz")


def _touch(p):
    p.write_bytes(b"")
    return p
