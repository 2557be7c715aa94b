"""Data flows one way through the stages: a module imports only from stages to its left (README, Design)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ARCHC = Path(__file__).resolve().parent.parent / "archc"

# stage → the archc modules it must never import (at run time or for types)
FORBIDDEN = {
    "analysis": ("archc.spec", "archc.emit", "archc.cli", "archc.api", "archc.render"),
    "render": ("archc.spec", "archc.emit", "archc.cli", "archc.api", "archc.frontends"),
    "emit": ("archc.analysis", "archc.render", "archc.cli", "archc.api", "archc.frontends"),
    "spec": ("archc.emit", "archc.analysis", "archc.render", "archc.cli", "archc.api", "archc.frontends"),
    "ops": ("archc.spec", "archc.emit", "archc.analysis", "archc.render", "archc.cli", "archc.api",
            "archc.frontends"),
}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_stage_imports_only_to_its_left(stage):
    bad = [(str(p.relative_to(ARCHC)), name) for p in sorted((ARCHC / stage).rglob("*.py")) for name in imports(p)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[stage])]
    assert bad == []


def test_nothing_imports_the_cli():
    bad = [str(p.relative_to(ARCHC)) for p in ARCHC.rglob("*.py")
           if p.name not in ("cli.py", "__main__.py") and any(n.startswith("archc.cli") for n in imports(p))]
    assert bad == []


def test_only_the_back_end_imports_tvm():
    """`archc analyze` and `--target onnx` must not need TVM: only archc/lower and archc/runtime import it."""
    bad = [str(p.relative_to(ARCHC)) for p in ARCHC.rglob("*.py")
           if p.relative_to(ARCHC).parts[0] not in ("lower", "runtime")
           and any(n == "tvm" or n.startswith("tvm.") for n in imports(p))]
    assert bad == []


def test_the_runtime_stands_alone():
    """archc/runtime is copied into every package: it may import numpy and TVM, nothing of archc."""
    for p in (ARCHC / "runtime").rglob("*.py"):
        assert not any(n.startswith("archc") for n in imports(p)), p
