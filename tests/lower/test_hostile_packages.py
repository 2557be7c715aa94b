"""Packages received from elsewhere, broken by accident or on purpose: each is one sentence and a non-zero exit from
`archc run` and `archc_runtime.py`, never a crash (SIGBUS) or an internal error. (A library path leaving the
folder is refused by the manifest's records: tests/deploy/test_manifest.py.)"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import archc

pytestmark = pytest.mark.tvm
SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.fixture(scope="module")
def lenet(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile") / "lenet5"
    return Path(archc.compile(SPECS / "lenet5.arch", target="native", output=folder, quick=0, verify=False).output)


def _copy(lenet: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "pkg"
    shutil.copytree(lenet, folder)
    return folder


def _refused(folder: Path, loader: bool = False) -> str:
    """`archc run` on the folder (and with `loader`, the package's own archc_runtime.py, the same code carried): exit
    non-zero with one line, no traceback; the last lines of each, joined."""
    lines = []
    commands = [[sys.executable, "-m", "archc", "run", str(folder)]]
    if loader:
        commands.append([sys.executable, str(folder / "archc_runtime.py"), str(folder)])
    for cmd in commands:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert out.returncode not in (0, 70) and out.returncode > 0, (cmd, out.returncode, out.stderr)
        assert "Traceback" not in out.stderr and "internal error" not in out.stderr, out.stderr
        lines.append(out.stderr.strip().splitlines()[-1])
    return "\n".join(lines)


def test_a_truncated_library_is_refused_before_it_is_loaded(lenet, tmp_path):
    folder = _copy(lenet, tmp_path)
    library = folder / "lenet5.so"
    library.write_bytes(library.read_bytes()[:8192])  # dlopen of this dies with SIGBUS
    said = _refused(folder, loader=True)
    assert said.count("is truncated (8192 bytes") == 2 and "copy the package again" in said
    assert said.count("[corrupt-package]") == 2


def test_a_library_that_is_not_elf_is_refused(lenet, tmp_path):
    folder = _copy(lenet, tmp_path)
    (folder / "lenet5.so").write_bytes(b"#!/bin/sh\necho hello\n")
    said = _refused(folder)
    assert said.count("is not a shared library") == 1 and said.count("[corrupt-package]") == 1


@pytest.mark.parametrize("edit", [{"shape": [1, 1, 999, 999]}, {"dtype": "float64", "shape": [1, 32, 32]}],
                         ids=["shape", "dtype-and-rank"])
def test_a_manifest_that_contradicts_its_library_is_a_corrupt_package(lenet, tmp_path, edit):
    folder = _copy(lenet, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["inputs"][0].update(edit)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    said = _refused(folder)
    assert said.count("does not take the inputs its manifest lists") == 1 and said.count("[corrupt-package]") == 1


def test_input_files_are_read_as_arrays_only(lenet, tmp_path):
    """`archc run --input`: a file that is not .npy/.npz, or one holding pickled objects, is refused in one sentence
    that never suggests unpickling (numpy's own message does: loading a pickle runs its code)."""
    import numpy as np
    from helpers import raises

    from archc.runtime import PackageError, load_package
    pkg = load_package(lenet)
    (tmp_path / "text.npy").write_text("hello")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "objects.npz", image=np.array([{"a": 1}], dtype=object))
    with raises("bad-input", PackageError, naming="is neither a .npy nor an .npz file"):
        pkg.read_inputs(tmp_path / "text.npy")
    for name in ("objects.npy", "objects.npz"):
        with raises("bad-input", PackageError, naming=["holds Python objects", "never loads"]) as err:
            pkg.read_inputs(tmp_path / name)
        assert "allow_pickle" not in str(err.value)
    np.savez(tmp_path / "good.npz", image=np.zeros((1, 1, 32, 32), np.float32))
    assert pkg.read_inputs(tmp_path / "good.npz")["image"].shape == (1, 1, 32, 32)
