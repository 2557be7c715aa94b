"""The wheel holds every subpackage of archc, the zoo and the target definitions (pyproject lists packages by hand
to map specs/ and targets/ into it)."""
from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "archc").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"


def _can_build_wheels() -> bool:
    try:
        import setuptools.command.bdist_wheel  # noqa: F401  (in setuptools since 70.1)
        return True
    except ImportError:
        return False


@pytest.mark.skipif(not _can_build_wheels(), reason="needs setuptools >= 70.1: pip install -U setuptools")
def test_wheel_ships_specs_and_targets(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("archc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "archc/zoo/resnet50.arch" in names and "archc/zoo/lib/resnet.arch" in names
    assert "archc/target_defs/onnx.toml" in names and "archc/target_defs/cuda-sm90.toml" in names
    assert "archc/spec/grammar.lark" in names and "archc/render/templates/table.html.j2" in names
    assert "archc/lower/cpp/main.cc" in names and "archc/lower/cpp/Makefile" in names  # the C++ loader
    assert "archc/runtime/pool.c" in names  # the parallel runtime linked into every CPU library
    tables = {f"archc/lower/kernels/tables/{p.parent.name}/{p.name}"
              for p in (ROOT / "archc" / "lower" / "kernels" / "tables").glob("*/*.json")}
    assert len(tables) >= 2 and tables <= names  # every CPU's table of every ISA
    assert {f"archc/zoo/{p.name}" for p in (ROOT / "specs").glob("*.arch")} <= names
