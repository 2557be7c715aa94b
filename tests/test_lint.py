"""ruff (on archc/, tests/, benchmarks/ and scripts/) and mypy (on archc/), as configured in pyproject.toml, are
clean. They run here so that the README's one test command (and so CI) checks them; each takes seconds."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("ruff") is None, reason="needs ruff (the test extra): pip install -e '.[test]'")
def test_ruff_is_clean():
    out = subprocess.run(["ruff", "check", "archc", "tests", "benchmarks", "scripts"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_is_clean():
    pytest.importorskip("mypy", reason="needs mypy (the test extra): pip install -e '.[test]'")
    out = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
