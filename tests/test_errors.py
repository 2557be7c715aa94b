"""Every error of archc without a source span carries a short code (as the spec language's diagnostics do), declared
once: ArchcError's in archc/errors.py, the stand-alone runtime's PackageError's in archc/runtime/__init__.py. The CLI
and the carried loader print `PROG: error: <sentence>  [<code>]`; scripts and tests match the code."""
from __future__ import annotations

import ast
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli_error, raises

from archc import errors, runtime
from archc.errors import ArchcError, TvmMissing, UsageError
from archc.measurement.results import MalformedResults
from archc.runtime import CARRIED, PACKAGE_ERROR_EXIT, PackageError, error_line, parse_error_line

ROOT = Path(__file__).resolve().parent.parent
ARCHC = ROOT / "archc"
HOMES = {"ArchcError": errors.CODES, "PackageError": runtime.CODES}  # each root class → its codes' one home
# raises that another change owns and has not given a code yet: file → how many (remove the entry once it has)
UNCODED: dict[str, int] = {}  # files allowed a raise without a code (none now)
KEBAB = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def _name(func: ast.expr) -> str | None:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _classes(trees: dict[str, ast.Module]) -> dict[str, tuple[str, str | None]]:
    """Every error class of archc: name → (its root, the code of its class if it has one of its own)."""
    found: dict[str, tuple[str, str | None]] = {root: (root, None) for root in HOMES}
    grew = True
    while grew:
        grew = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if not isinstance(node, ast.ClassDef) or node.name in found:
                    continue
                base = next((found[b] for b in map(_name, node.bases) if b in found), None)
                if base is None:
                    continue
                code = base[1]
                for stmt in node.body:
                    target = stmt.target if isinstance(stmt, ast.AnnAssign) else (
                        stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None)
                    if isinstance(target, ast.Name) and target.id == "code" and isinstance(stmt.value, ast.Constant):
                        code = stmt.value.value
                found[node.name] = (base[0], code)
                grew = True
    return found


@pytest.fixture(scope="module")
def trees() -> dict[str, ast.Module]:
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(ARCHC.rglob("*.py"))}


def test_every_raise_passes_a_declared_code(trees):
    """`raise ArchcError("…")` (UsageError, PackageError, RemoteError, RemoteUsageError, or any other subclass
    without a code of its own) fails here; so does a code string not declared in the class's home."""
    classes = _classes(trees)
    assert {"UsageError", "RemoteError", "RemoteUsageError", "TvmMissing", "MalformedResults"} <= set(classes)
    missing, undeclared, uncoded = [], [], dict.fromkeys(UNCODED, 0)
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _name(node.func) not in classes:
                continue
            root, own = classes[_name(node.func)]  # type: ignore[index]
            given = next((k.value for k in node.keywords if k.arg == "code"), None)
            if own is None and len(node.args) > 1:  # (message, code) as the root classes take them
                given = node.args[1]
            where = f"{path}:{node.lineno} {_name(node.func)}"
            if given is None and own is None:
                if path in uncoded:
                    uncoded[path] += 1
                else:
                    missing.append(where)
            elif isinstance(given, ast.Constant) and (given.value not in HOMES[root] or given.value == "error"):
                undeclared.append(f"{where} {given.value!r}")
    assert missing == [], "raised without a code"
    assert undeclared == [], "codes not declared in archc/errors.py or archc/runtime/__init__.py"
    assert uncoded == UNCODED, "UNCODED is out of date: remove what has its code now"


def test_classes_with_one_meaning_carry_a_declared_code(trees):
    for name, (root, code) in _classes(trees).items():
        if code is not None:
            assert code in HOMES[root] and code != "error", name
    assert (TvmMissing().code, MalformedResults("a", "is missing").code) == ("no-tvm", "bad-results")


def _literals(trees: dict[str, ast.Module]) -> set[str]:
    """The strings written anywhere in archc but in the declarations of the codes (`Code = Literal[...]`)."""
    found = set()
    for tree in trees.values():
        declared = {id(n) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "Code" for t in node.targets) for n in ast.walk(node)}
        found |= {n.value for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in declared}
    return found


@pytest.mark.parametrize("home", [errors, runtime], ids=["errors", "runtime"])
def test_codes_are_short_kebab_case_and_each_is_used(home, trees):
    """One code per kind of failure: a declared code that nothing in archc raises (or prints) is stale."""
    assert all(KEBAB.fullmatch(c) and len(c) <= 20 for c in home.CODES), sorted(home.CODES)
    assert sorted(home.CODES - _literals(trees) - {"error"}) == []


def test_the_sentence_stays_the_string_and_the_code_rides_along():
    err = ArchcError("weights file 'w.npz' does not exist", code="no-file")
    assert (str(err), err.code, err.exit_code) == ("weights file 'w.npz' does not exist", "no-file", 1)
    assert (UsageError("u", code="bad-option").code, UsageError.exit_code) == ("bad-option", 2)
    back = pickle.loads(pickle.dumps(err))  # a worker process's error keeps its code
    assert (str(back), back.code) == (str(err), err.code)
    with raises("no-file", naming="'w.npz'"):
        raise err


def test_an_error_line_reads_back_into_its_error():
    """How qemu.py gets the emulated loader's PackageError back: its sentence and code, not the printed line."""
    err = PackageError("the input 'image' is missing; the package takes image", code="bad-input")
    line = error_line("archc_runtime.py", err)
    assert line == "archc_runtime.py: error: the input 'image' is missing; the package takes image  [bad-input]"
    back = parse_error_line(line, "emulation-failed")
    assert (str(back), back.code) == (str(err), "bad-input")
    other = parse_error_line("Segmentation fault", "emulation-failed")
    assert (str(other), other.code) == ("Segmentation fault", "emulation-failed")


def _archc(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archc", *args], capture_output=True, text=True, cwd=cwd)


def test_the_cli_ends_an_archc_error_with_its_code(tmp_path):
    out = _archc("compile", "specs/lenet5.arch", "--target", "x87", "-o", str(tmp_path / "p"))
    assert cli_error(out, "unknown-target", 2, naming="'x87'").startswith("unknown target 'x87'")
    assert out.stderr.count("\n") == 1


def test_the_cli_ends_a_package_error_with_its_code(tmp_path):
    out = _archc("run", str(tmp_path))
    cli_error(out, "not-a-package", 1, naming=f"'{tmp_path}'")
    assert out.stderr.count("\n") == 1


def test_the_carried_loader_prints_the_same_form(tmp_path):
    """`python archc_runtime.py PKG` as a package carries it (numpy alone; TVM is not reached)."""
    for name, source in CARRIED.items():
        shutil.copyfile(source, tmp_path / name)
    (tmp_path / "empty").mkdir()

    def loader(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "archc_runtime.py", *args], capture_output=True, text=True,
                              cwd=tmp_path)
    out = loader("empty")
    assert out.returncode == PACKAGE_ERROR_EXIT and "Traceback" not in out.stderr
    assert re.fullmatch(r"archc_runtime\.py: error: 'empty' is not an archc package .*  \[not-a-package\]\n",
                        out.stderr), out.stderr
    out = loader("empty", "--threads", "0")
    assert out.returncode == 2 and out.stderr.splitlines()[-1].startswith("archc_runtime.py: error: --threads ")
    assert out.stderr.endswith("  [bad-threads]\n"), out.stderr
