"""The `archc` command as a user meets it: outputs, exit codes, one-line errors, no tracebacks."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import cli_error

ROOT = Path(__file__).resolve().parent.parent
TINY = """# a small test network
network tiny(classes = 10) {
  input image: 3x32x32
  conv1: conv(8, 3) bn relu
  pool: maxpool(2)
  flatten
  fc: dense(classes)
}
"""


def archc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "archc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT)


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.arch"
    p.write_text(TINY)
    return p


def test_compile_writes_runnable_onnx(tiny, tmp_path):
    out = tmp_path / "out" / "tiny.onnx"
    proc = archc("compile", tiny, "--target", "onnx", "-o", out)
    assert proc.returncode == 0, proc.stderr
    # hand count: conv 3·3·3·8+8 = 224, bn 2·8 = 16, fc (8·16·16)·10+10 = 20,490 → 20,730
    assert "wrote" in proc.stdout and "20,730 parameters" in proc.stdout
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"image": np.zeros((1, 3, 32, 32), np.float32)})
    assert y.shape == (1, 10)


def test_input_batch_and_set_overrides(tiny, tmp_path):
    out = tmp_path / "t.onnx"
    proc = archc("compile", tiny, "-o", out, "--input", "2x3x64x64", "--set", "classes=4", "--no-simplify")
    assert proc.returncode == 0, proc.stderr
    model = onnx.load(out)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 64, 64]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [2, 4]
    proc = archc("compile", tiny, "-o", out, "--batch", "8")
    assert [d.dim_value for d in onnx.load(out).graph.input[0].type.tensor_type.shape.dim] == [8, 3, 32, 32]


def test_default_output_name(tiny, tmp_path):
    proc = archc("compile", tiny, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "tiny.onnx").is_file()


def test_several_specs_into_a_folder(tiny, tmp_path):
    other = tmp_path / "other.arch"
    other.write_text(TINY.replace("tiny", "other"))
    proc = archc("compile", tiny, other, "-o", tmp_path / "zoo")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == ["other.onnx", "tiny.onnx"]


@pytest.mark.parametrize("args, status, code, naming", [
    (["compile", "{tiny}", "--target", "x86", "-o", "out.onnx"], 2, "bad-output", ("'x86'", "never.onnx")),
    (["compile", "{tiny}", "--target", "gpu9000"], 2, "unknown-target", ("'gpu9000'", "arm64, cuda")),
    (["compile", "missing.arch"], 1, "no-file", "'missing.arch'"),
    (["compile", "{tiny}", "--input", "3xfoo"], 2, "bad-shape", "'3xfoo'"),
    (["compile", "{tiny}", "--weights", "nope.npz"], 1, "no-file", "'nope.npz'"),
])
def test_errors_are_one_clear_line(tiny, tmp_path, args, status, code, naming):
    args = [a.replace("{tiny}", str(tiny)) for a in args]
    proc = archc(*args, "-o", tmp_path / "never.onnx")
    cli_error(proc, code, status, naming)
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "never.onnx").exists()


@pytest.mark.parametrize("args, code, naming", [
    (["compile", "{tiny}", "--input", "3x32x32"], "bad-input", ("--input", "'image'", "3", "4")),
    (["compile", "{tiny}", "--set", "depth=3"], "bad-args", ("'tiny'", "'depth'")),
])
def test_options_the_spec_refuses_are_its_diagnostics(tiny, tmp_path, args, code, naming):
    args = [a.replace("{tiny}", str(tiny)) for a in args]
    proc = archc(*args, "-o", tmp_path / "never.onnx")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert line.startswith(f"{tiny}:") and line.endswith(f"  [{code}]"), line
    assert all(n in line for n in naming), line
    assert not (tmp_path / "never.onnx").exists()


def test_failed_compile_leaves_previous_output_untouched(tiny, tmp_path):
    out = tmp_path / "t.onnx"
    assert archc("compile", tiny, "-o", out).returncode == 0
    before = out.read_bytes()
    bad = tmp_path / "bad.arch"
    bad.write_text(TINY.replace("dense(classes)", "dense(classes, 3, 4)"))
    proc = archc("compile", bad, "-o", out)
    assert proc.returncode == 2
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


def test_check_reports_and_sets_exit_code(tiny, tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text(TINY.replace("maxpool(2)", "maxpool(2, strid=2)"))
    proc = archc("check", tiny, bad)
    assert proc.returncode == 2
    assert "tiny.arch: ok: tiny, 6 layers, 20,730 parameters, input 1×3×32×32 → output 1×10" in proc.stdout
    assert "bad.arch:5:20: error: maxpool has no argument 'strid'; did you mean 'stride'?" in proc.stderr


def test_help_and_ops():
    proc = archc("--help")
    assert proc.returncode == 0 and "compile" in proc.stdout and "check" in proc.stdout
    proc = archc("ops")
    assert "conv(out, kernel, stride=1, pad=same, dilation=1, groups=1, bias=true)" in proc.stdout
    assert "channel_shuffle(groups)" in proc.stdout


def test_outputs_follow_the_umask(tiny, tmp_path):
    import os
    import stat
    out = tmp_path / "t.onnx"
    assert archc("compile", tiny, "-o", out).returncode == 0
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


# ---- silent misreadings -------------------------------------------------------------------------------------------
def test_misread_specs_are_warned_and_shapes_echoed(tmp_path):
    one_d = tmp_path / "one_d.arch"
    one_d.write_text("network t {\n  input image: 224x224\n  conv(8, 3)\n}\n")
    big_kernel = tmp_path / "kernel.arch"
    big_kernel.write_text("network t {\n  input x: 3x32x32\n  conv(16, 3, stride=4) * 2\n  dwconv(32, 3)\n}\n")
    proc = archc("check", one_d, big_kernel)  # 5,384 = 8 filters × 224 channels × 3 + 8 biases
    assert proc.returncode == 0
    assert "one_d.arch: ok: t, 1 layers, 5,384 parameters, input 1×224×224 → output 1×8×224" in proc.stdout
    assert "one_d.arch:2:3: warning: input 'image' is 224×224: read as 224 channels of length 224, a 1-D network; " \
           "for a one-channel image write 1x224x224 (channels first)  [one-d-input]" in proc.stderr
    assert "kernel.arch:4:3: warning: the 32×32 window is larger than its 2×2 input" in proc.stderr
    assert "[kernel-larger-than-input]" in proc.stderr and proc.stderr.count("warning") == 2


def test_zoo_has_no_misreading_warnings():
    proc = archc("check", *sorted((ROOT / "specs").glob("*.arch")))
    assert proc.returncode == 0 and "warning" not in proc.stderr


def test_spec_not_utf8_is_a_located_error(tmp_path):
    bad = tmp_path / "latin.arch"
    bad.write_bytes("# caf\xe9\nnetwork t {\n input x: 3x8x8\n conv(4, 3)\n}\n".encode("latin-1"))
    proc = archc("check", bad)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "latin.arch:1:6: error: the file is not UTF-8 text: byte 0xe9" in proc.stderr


def test_check_and_compile_read_onnx_files(tmp_path):
    onnx_file = tmp_path / "tiny.onnx"
    assert archc("compile", ROOT / "specs" / "lenet5.arch", "-o", onnx_file).returncode == 0
    proc = archc("check", onnx_file)
    assert proc.returncode == 0 and "ok: tiny, 13 nodes, input 1×1×32×32 → output 1×10" in proc.stdout
    proc = archc("compile", onnx_file, "--batch", "4", "-o", tmp_path / "b4.onnx")
    assert proc.returncode == 0 and "input 4×1×32×32 → output 4×10" in proc.stdout
