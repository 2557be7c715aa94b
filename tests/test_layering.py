"""Data flows one way through the stages: a module imports only from stages to its left (README, Design)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ARCHC = Path(__file__).resolve().parent.parent / "archc"

# stage → the archc modules it must never import (at run time or for types). The pipeline, left to right:
# importers (a Darknet cfg → spec text), spec language (ops, spec) → IR → ONNX emitter (emit, frontends) →
# analysis → deploy facts (deploy: TVM-free) → TVM lowering (lower) → runtime → measurement (archc bench) →
# rendering (render) → the face (api, cli). runtime stands alone (below).
FACE = ("archc.cli", "archc.api")
FRONT = ("archc.spec", "archc.emit", "archc.frontends")
BACK = ("archc.deploy", "archc.lower", "archc.runtime", "archc.measurement")
FORBIDDEN = {
    "util": ("archc.ops", *FRONT, "archc.analysis", *BACK, "archc.render", *FACE),
    "ops": (*FRONT, "archc.analysis", *BACK, "archc.render", *FACE),
    "spec": ("archc.emit", "archc.frontends", "archc.analysis", *BACK, "archc.render", *FACE),
    # another framework's file → spec text: what the spec language reads next (its diagnostic codes shared)
    "importers": ("archc.emit", "archc.frontends", "archc.analysis", *BACK, "archc.render", *FACE),
    "emit": ("archc.frontends", "archc.analysis", *BACK, "archc.render", *FACE),
    "analysis": ("archc.spec", "archc.emit", *BACK, "archc.render", *FACE),
    "deploy": (*FRONT, "archc.lower", "archc.runtime", "archc.measurement", "archc.render", *FACE),
    "lower": ("archc.measurement", "archc.render", *FACE),
    "measurement": ("archc.render", *FACE),
    "render": (*FRONT, "archc.lower", "archc.runtime", *FACE),
}


def test_every_folder_of_archc_has_rules():
    folders = {p.name for p in ARCHC.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    assert folders == set(FORBIDDEN) | {"runtime"}  # runtime: test_the_runtime_stands_alone


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
    """archc/runtime is copied into every package: it may import numpy, TVM, the manifest's records
    (archc/deploy/manifest.py, carried beside it as archc_manifest.py) and a detector's decoding (detect.py, carried
    as archc_detect.py), nothing else of archc; the records import the standard library alone, the decoding numpy
    besides."""
    import sys
    allowed = {"archc.deploy", "archc.deploy.manifest", "archc.deploy.detect",
               *(f"archc.deploy.manifest.{n}" for n in ("MANIFEST", "Manifest", "ManifestError", "TensorSpec"))}
    for p in (ARCHC / "runtime").rglob("*.py"):
        assert not any(n.startswith("archc") and n not in allowed and not n.startswith(("archc_manifest",
                                                                                           "archc_detect"))
                       for n in imports(p)), p
    records = imports(ARCHC / "deploy" / "manifest.py")
    assert all(n.split(".")[0] in sys.stdlib_module_names | {"__future__"} for n in records), records
    decoding = imports(ARCHC / "deploy" / "detect.py")
    assert all(n.split(".")[0] in sys.stdlib_module_names | {"__future__", "numpy"} for n in decoding), decoding


def test_no_stage_calls_back_through_the_face():
    """`archc/__init__` and `archc.api` are the face: the stages are called by it, never through it (a loop that lazy
    imports would hide). A stage may import archc's modules (`from archc import ops`), not the face's names."""
    import archc
    face_names = {n for n in archc.__all__ if not (ARCHC / n).is_dir() and not (ARCHC / f"{n}.py").is_file()}
    bad = []
    for p in sorted(ARCHC.rglob("*.py")):
        if p.name in ("__init__.py", "__main__.py") and p.parent == ARCHC or p.name in ("api.py", "cli.py"):
            continue
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name == "archc" for a in node.names):
                bad.append((str(p.relative_to(ARCHC)), "import archc"))
            elif isinstance(node, ast.ImportFrom) and node.module == "archc":
                bad += [(str(p.relative_to(ARCHC)), a.name) for a in node.names if a.name in face_names]
    assert bad == []


BACK_END = ("tvm", "archc.lower")
REPORT = str(ARCHC.parent / "reports" / "resnet18.json")  # a real archc bench result, committed


@pytest.mark.parametrize(("argv", "forbidden"), [
    (["analyze", "specs/resnet50.arch"], (*BACK_END, "archc.measurement", "archc.runtime")),
    (["analyze", "specs/lenet5.arch", "--format", "html"], (*BACK_END, "archc.measurement", "archc.runtime")),
    (["report", REPORT, "-o", "{tmp}/r.html"], BACK_END)])
def test_analyze_and_report_import_no_tvm_and_not_the_back_end(argv, forbidden, tmp_path):
    """`archc analyze` and `archc report` must not need TVM, nor load the TVM-bound stage (issue 20: analyze loaded
    15 archc.lower modules through the renderer)."""
    import subprocess
    import sys
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = (f"import sys\nfrom archc.cli import main\nmain({argv!r}, standalone_mode=False)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] == 'tvm' or m.startswith({forbidden!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ARCHC.parent, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# packages whose modules must import one way among themselves: no cycle, not even through an import inside a function
ACYCLIC = ("lower/kernels", "ops")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ARCHC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, known: set[str]) -> set[str]:
    """The modules among `known` that a file imports, at the top or inside a function: `from p import m` names the
    module p.m where that is one (not the package p), `from p.m import x` the module p.m."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            for a in node.names:
                found.add(f"{module}.{a.name}" if f"{module}.{a.name}" in known else module)
    return found & known


def test_no_import_cycle_among_the_kernels_and_the_ops():
    """archc/lower/kernels and archc/ops: the graph of which module imports which (among their own) has no cycle."""
    paths = {_module_name(p): p for folder in ACYCLIC for p in sorted((ARCHC / folder).glob("*.py"))}
    graph = {m: sorted(_imported_modules(p, set(paths)) - {m}) for m, p in paths.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def cycle_from(m: str) -> list[str]:
        state[m] = 1
        path.append(m)
        for n in graph[m]:
            if state.get(n) == 1:
                return [*path[path.index(n):], n]
            if n not in state and (found := cycle_from(n)):
                return found
        state[m] = 2
        path.pop()
        return []

    for m in sorted(graph):
        if m not in state:
            assert not (found := cycle_from(m)), " → ".join(found)
    assert graph["archc.ops.registry"] and graph["archc.lower.kernels.layout"]  # the graph is not empty by mistake
