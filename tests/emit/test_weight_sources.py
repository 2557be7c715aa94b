"""Binding weights from the files people have: PyTorch state_dicts and checkpoints, matched by name, by a weights
map, or by order with every shape and suffix checked; and the report of what matched."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import cli_error, raises
from onnx import helper, numpy_helper

import archc
from archc import spec
from archc.emit import weights_and_report, weights_for
from archc.emit.weights import (
    NESTED_KEYS,
    bind_weights,
    init_weights,
    read_weights,
    read_weights_map,
)
from archc.errors import UsageError
from archc.options import ModelOptions

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "zoo"))
from torchvision_ref import import_torchvision, randomize_bn  # noqa: E402

NET = """
network t {
  input x: 3x16x16
  c1: conv(64, 3, bias=false) bn relu
  c2: conv(64, 3) tanh
  flatten
  fc: dense(10)
}
"""
# the same network as a PyTorch nn.Sequential would name it, in state_dict order
TORCH_NAMES = ["features.0.weight", "features.1.weight", "features.1.bias", "features.1.running_mean",
               "features.1.running_var", "features.3.weight", "features.3.bias", "classifier.weight",
               "classifier.bias"]


def graph():
    return spec.load_text(NET, "<t>")


def trained(seed: int = 5) -> dict[str, np.ndarray]:
    """archc name → distinct random values (a wrong pairing of equal shapes shows)."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in init_weights(graph(), 0).items()}


def torch_named(ours: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return dict(zip(TORCH_NAMES, ours.values()))


def save_npz(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    np.savez(path, **tensors)  # keeps the order
    return path


def assert_bound(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


# ---- matching by order ------------------------------------------------------------------------------------------

def test_other_names_bind_by_order_and_the_report_says_so():
    want = trained()
    binding = bind_weights(graph(), torch_named(want), origin="net.npz")
    assert_bound(binding.weights, want)
    assert binding.report.line() == "weights: 9 tensors bound (0 by name, 9 by order) from net.npz"
    assert binding.report.pairs[0] == ("features.0.weight", "c1.weight", "order")


def test_names_first_then_the_rest_in_order():
    want = trained()
    source = torch_named(want)
    # two tensors carry archc's names (one with dots for slashes), and sit out of order in the file
    source = {"fc.bias": want["fc.bias"], "c1.bn.running_var": want["c1/bn.running_var"],
              **{k: v for k, v in source.items() if k not in ("classifier.bias", "features.1.running_var")}}
    report = bind_weights(graph(), source).report
    assert (report.by_name, report.by_order) == (2, 7)
    assert ("c1.bn.running_var", "c1/bn.running_var", "name") in report.pairs
    assert_bound(bind_weights(graph(), source).weights, want)


def test_a_shape_mismatch_names_the_pair_and_the_count_so_far():
    source = torch_named(trained())
    source["features.3.weight"] = np.zeros((64, 64, 5, 5), np.float32)
    with raises("weights-mismatch", naming=("'features.3.weight'", "'net.npz'", "64×64×5×5", "'c2.weight'",
                                            "64×64×3×3", "after 5 of 9", "(0 by name, 5 by order)")):
        bind_weights(graph(), source, origin="net.npz")


def test_order_never_swaps_batch_norm_statistics_of_equal_shape(tmp_path):
    """A .safetensors file lists tensors sorted by name (bias, running_mean, running_var, weight): pairing by order
    would give γ the bias, so a suffix that disagrees is an error, with the reason."""
    from safetensors.numpy import save_file
    path = tmp_path / "net.safetensors"
    save_file(torch_named(trained()), str(path))
    assert list(read_weights(path))[:2] == ["classifier.bias", "classifier.weight"]
    with raises("weights-mismatch", naming=".safetensors file keeps no order"):  # why order cannot pair them
        weights_for(graph(), ModelOptions(weights=str(path)))
    source = {k: v for k, v in torch_named(trained()).items()}
    source = {k: source[k] for k in ["features.0.weight", "features.1.bias", "features.1.weight",
                                     *TORCH_NAMES[3:]]}
    with raises("weights-mismatch", naming=("'features.1.bias'", "'c1/bn.weight'", "suffix (.bias, not .weight)",
                                            "after 1 of 9")):
        bind_weights(graph(), source)


def test_an_extra_or_missing_tensor_after_order_is_named():
    source = torch_named(trained())
    with raises("weights-mismatch", naming=("'aux.weight'", "(shape 3)", "after 9 of 9", "`aux.weight = -`")):
        bind_weights(graph(), {**source, "aux.weight": np.zeros(3, np.float32)})
    del source["classifier.bias"]
    with raises("weights-mismatch", naming=("'fc.bias'", "(shape 10)", "after 8 of 9")):
        bind_weights(graph(), source)


def test_onnx_initializers_bind_by_order_without_the_files_constants(tmp_path):
    """An ONNX file from another exporter: its own names, plus integer shape tensors that are not weights."""
    want = trained()
    inits = [numpy_helper.from_array(np.array([1, -1], np.int64), "onnx::Reshape_42")]
    inits += [numpy_helper.from_array(v, f"onnx::Param_{i}") for i, v in enumerate(want.values())]
    model = helper.make_model(helper.make_graph([], "g", [], [], initializer=inits))
    path = tmp_path / "other.onnx"
    onnx.save(model, str(path))
    assert_bound(weights_for(graph(), ModelOptions(weights=str(path))), want)


# ---- a weights map ---------------------------------------------------------------------------------------------

def test_weights_map_renames_and_leaves_out(tmp_path):
    want = trained()
    source = torch_named(want)
    # a file whose order alone cannot bind: the head first, and an auxiliary classifier archc does not have
    source = {"classifier.weight": source.pop("classifier.weight"), "classifier.bias": source.pop("classifier.bias"),
              **source, "aux.fc.weight": np.zeros((3, 3), np.float32)}
    npz = save_npz(tmp_path / "net.npz", source)
    m = tmp_path / "net.map"
    m.write_text("# PyTorch name = archc name\n"
                 "classifier.weight = fc.weight\n"
                 "classifier.bias   = fc.bias   # dots or slashes\n"
                 "\n"
                 "aux.fc.weight = -            # not in the archc network\n")
    weights, report = weights_and_report(graph(), ModelOptions(weights=str(npz), weights_map=str(m)))
    assert_bound(weights, want)
    assert report is not None
    assert (report.by_name, report.renamed, report.by_order, report.left_out) == (0, 2, 7, ("aux.fc.weight",))
    assert report.line() == (f"weights: 9 tensors bound (0 by name, 2 renamed by {m}, 7 by order) from {npz}; "
                             f"1 left out by {m}")


@pytest.mark.parametrize("text, code, naming", [
    ("nope.weight = fc.weight\n", "weights-mismatch", ("line 1:", "'nope.weight'")),
    ("# c\nclassifier.bias = fc.nope\n", "weights-mismatch", ("line 2:", "'fc.nope'", "'t'")),
    ("classifier.bias\n", "bad-weights-map", ("line 1:", "`source name = archc name`")),
    ("classifier.bias = fc.bias\nclassifier.bias = -\n", "bad-weights-map", ("line 2:", "'classifier.bias'",
                                                                             "line 1")),
    ("classifier.bias = fc.weight\n", "weights-mismatch", ("line 1:", "'classifier.bias'", "10", "'fc'")),
    ("features.0.weight = c2.weight\n", "weights-mismatch", ("line 1:", "'features.0.weight'", "64×3×3×3")),
    ("classifier.bias = fc.bias\nfeatures.3.bias = fc.bias\n", "weights-mismatch",
     ("'classifier.bias'", "'features.3.bias'", "'fc.bias'")),
])
def test_weights_map_errors_name_the_line(tmp_path, text, code, naming):
    npz = save_npz(tmp_path / "net.npz", torch_named(trained()))
    m = tmp_path / "net.map"
    m.write_text(text)
    with raises(code, naming=(f"weights map '{m}'", *naming)):
        weights_for(graph(), ModelOptions(weights=str(npz), weights_map=str(m)))


def test_weights_map_needs_weights_and_must_exist(tmp_path):
    with raises("bad-usage", UsageError, naming="--weights"):
        weights_for(graph(), ModelOptions(weights_map="net.map"))
    with raises("no-file", naming=f"weights map '{tmp_path / 'nope.map'}'"):
        read_weights_map(tmp_path / "nope.map")


def test_initialised_weights_have_no_report(tmp_path):
    g = graph()
    assert weights_and_report(g, ModelOptions(weights=str(save_npz(tmp_path / "w.npz", trained()))))[1] is not None
    assert weights_and_report(g, ModelOptions())[1] is None


def test_cli_takes_a_weights_map(tmp_path):
    arch = tmp_path / "t.arch"
    arch.write_text(NET)
    npz = save_npz(tmp_path / "net.npz", torch_named(trained()))
    m = tmp_path / "net.map"
    m.write_text("classifier.weight = fc.weight\n")
    out = tmp_path / "t.onnx"
    run = [sys.executable, "-m", "archc", "compile", arch, "--weights", npz, "--weights-map", m, "-o", out,
           "--no-simplify"]
    proc = subprocess.run(run, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    got = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    np.testing.assert_array_equal(got["fc.weight"], trained()["fc.weight"])
    m.write_text("classifier.weight = fc.weihgt\n")
    proc = subprocess.run(run, capture_output=True, text=True, cwd=ROOT)
    cli_error(proc, "weights-mismatch", 1, naming=(f"weights map '{m}'", "'fc.weihgt'"))


def test_api_compile_takes_a_weights_file_keyword(tmp_path):
    arch = tmp_path / "t.arch"
    arch.write_text(NET)
    with raises("no-file", naming="nope.npz"):
        archc.compile(arch, output=tmp_path / "t.onnx", weights=str(tmp_path / "nope.npz"))


# ---- PyTorch files ---------------------------------------------------------------------------------------------

def test_pytorch_file_without_torch_says_to_install_it(tmp_path, monkeypatch):
    # A mock at the edge of an unavailable package: `None` in sys.modules makes `import torch` raise ImportError,
    # as on a machine without PyTorch. Nothing of archc is replaced.
    monkeypatch.setitem(sys.modules, "torch", None)
    path = tmp_path / "net.pth"
    path.write_bytes(b"PK")
    with raises("no-torch", naming=(str(path), "pip install torch")):  # and how to install it
        read_weights(path)


def _torch_state_dict(want: dict[str, np.ndarray]) -> dict:
    import torch
    return {k: torch.from_numpy(v.copy()) for k, v in torch_named(want).items()}


@pytest.mark.torch
def test_state_dict_file_binds(tmp_path):
    import torch
    want = trained()
    sd = _torch_state_dict(want)
    sd["features.1.num_batches_tracked"] = torch.tensor(7)  # a counter, never a weight
    torch.save(sd, tmp_path / "net.pt")
    weights, report = weights_and_report(graph(), ModelOptions(weights=str(tmp_path / "net.pt")))
    assert_bound(weights, want)
    assert report.line() == f"weights: 9 tensors bound (0 by name, 9 by order) from {tmp_path / 'net.pt'}"


@pytest.mark.torch
@pytest.mark.parametrize("key", NESTED_KEYS)
def test_checkpoint_dict_binds_its_state_dict(tmp_path, key):
    import torch
    want = trained()
    sd = _torch_state_dict(want)
    sd["classifier.bias"] = sd["classifier.bias"].to(torch.bfloat16)  # no numpy dtype: read as float32
    want["fc.bias"] = sd["classifier.bias"].float().numpy()
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 12, key: sd, "optimizer": {"lr": 0.1}, "best_acc": 0.71}, path)
    assert_bound(weights_for(graph(), ModelOptions(weights=str(path))), want)


@pytest.mark.torch
def test_pickled_model_and_other_objects_are_refused(tmp_path):
    import torch
    torch.save(torch.nn.Linear(2, 3), tmp_path / "model.pt")
    with raises("bad-weights", naming=(str(tmp_path / "model.pt"), "torch.nn.modules.linear.Linear",
                                       "`model.state_dict()`")):
        read_weights(tmp_path / "model.pt")
    torch.save({"epoch": 3, "weights": {}}, tmp_path / "odd.pt")
    with raises("bad-weights", naming=("odd.pt", "'epoch'", "'state_dict', 'model_state_dict' or 'model'")):
        read_weights(tmp_path / "odd.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with raises("bad-weights", naming=("list.pt", "list")):
        read_weights(tmp_path / "list.pt")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with raises("bad-weights", naming=(str(tmp_path / "junk.pth"), "torch.load")):
        read_weights(tmp_path / "junk.pth")


@pytest.mark.torch
def test_torchvision_resnet18_state_dict_compiles_and_matches_torchvision(tmp_path):
    """The issue's case: torchvision's real ResNet-18 state_dict layout (random values, non-trivial BN statistics),
    saved with torch.save, bound to specs/resnet18.arch by order (no name matches), and the compiled ONNX gives
    torchvision's outputs."""
    import onnxruntime as ort
    import torch
    torch.manual_seed(0)
    model = randomize_bn(import_torchvision().models.resnet18(weights=None)).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), path)

    loaded = archc.load(ROOT / "specs" / "resnet18.arch", ModelOptions(weights=str(path)))
    result = archc.compile(loaded, output=tmp_path / "resnet18.onnx")
    assert loaded.binding.line() == f"weights: 102 tensors bound (0 by name, 102 by order) from {path}"

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    sess = ort.InferenceSession(result.output, providers=["CPUExecutionProvider"])
    (ours,) = sess.run(None, {sess.get_inputs()[0].name: x})
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    assert ours.shape == theirs.shape == (1, 1000)
    scale = max(1.0, float(np.abs(theirs).max()))
    assert float(np.abs(ours - theirs).max()) <= 1e-5 * scale
