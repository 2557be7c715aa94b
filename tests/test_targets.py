"""Targets are data: `targets/*.toml`, read by `archc.targets`, listed by `archc targets`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli_error, raises

from archc import targets
from archc.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
ISSUE_TARGETS = {"onnx", "x86", "x86-avx512", "native", "arm64", "rpi4", "graviton3", "cuda", "cuda-sm80",
                 "cuda-sm90"}


def test_every_shipped_file_parses_and_the_named_targets_exist():
    found = {t.name: t for t in targets.all_targets()}
    assert ISSUE_TARGETS <= set(found)
    assert {p.stem for p in (ROOT / "targets").glob("*.toml")} == set(found)
    assert [n for n, t in found.items() if t.backend == "onnx"] == ["onnx"]
    assert found["arm64"].cross_compiler == "aarch64-linux-gnu-gcc" and found["arm64"].runner == "qemu"
    assert found["cuda-sm90"].tvm == {"kind": "cuda", "arch": "sm_90", "host": {"kind": "llvm"}}
    assert found["native"].detect == ("mcpu", "num-cores") and "mcpu" not in found["native"].tvm


def test_unknown_name_suggests_the_closest():
    with raises("unknown-target", UsageError, naming=("'x87'", "'x86'", "arm64, cuda")):
        targets.get("x87")


@pytest.mark.parametrize("text, names", [  # each sentence names the file and the key that is wrong
    ('backend = "onnx"', "`description`"),
    ('description = "d"\nbackend = "tflite"', "`backend`"),
    ('description = "d"\nbackend = "tvm"', "[tvm]"),
    ('description = "d"\nbackend = "tvm"\nrunner = "ssh"\n[tvm]\nkind = "llvm"', "`runner`"),
    ('description = "d"\nbackend = "onnx"\ncolour = 1', "'colour'"),
    ('description = "d"\nbackend = "tvm"\ndetect = ["gpu"]\n[tvm]\nkind = "llvm"', "`detect`"),
    ('description = "d\nbackend', "TOML"),
])
def test_bad_target_files_are_one_sentence(tmp_path, text, names):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with raises("bad-target", naming=(f"target file '{path}'", names)):
        targets.get(str(path))


def test_user_folder_adds_a_target(tmp_path, monkeypatch):
    (tmp_path / "jetson.toml").write_text('description = "Jetson Orin"\nbackend = "tvm"\n'
                                          '[tvm]\nkind = "cuda"\narch = "sm_87"\n')
    monkeypatch.setenv("ARCHC_TARGETS", str(tmp_path))
    t = targets.get("jetson")
    assert t.tvm["arch"] == "sm_87" and t.source == str(tmp_path / "jetson.toml")


def test_cli_lists_targets_and_checks_the_output(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "archc", *args], capture_output=True, text=True, cwd=ROOT)
    out = run("targets")
    assert out.returncode == 0 and out.stdout.startswith("arm64 ")
    assert any(line.startswith("onnx ") and "needs" not in line for line in out.stdout.splitlines())
    out = run("compile", "specs/lenet5.arch", "--target", "cuda", "-o", str(tmp_path / "x.onnx"))
    cli_error(out, "bad-output", 2, naming=("'cuda'", f"'{tmp_path / 'x.onnx'}'"))
    assert not (tmp_path / "x.onnx").exists()
    out = run("compile", "specs/lenet5.arch", "--target", "cuda-sm99")
    cli_error(out, "unknown-target", 2, naming=("'cuda-sm99'", "'cuda-sm90'"))  # and the closest
