"""Golden tests for spec errors, in mypy's test-data style.

Each file in cases/ carries its expected diagnostics as comments on the offending line:
`# E:<col>: <message>  [<code>]` for an error and `# N:<col>: <message>` for a note (col `EOF` = end of file).
The test checks file, line, column and text of every diagnostic, and that nothing else is reported.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from archc import spec
from archc.diagnostics import Severity, SpecError, render

CASES = Path(__file__).parent / "cases"
EXPECT = re.compile(r"#\s*([EN]):(\d+|EOF):\s*(.*?)\s*$")
ENTRY = [p for p in sorted(CASES.glob("*.arch")) if p.name != "cycle_b.arch"]  # cycle_b is only imported


def expectations(files):
    out = set()
    for path in files:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines, start=1):
            for m in EXPECT.finditer(line):
                kind, col, text = m.groups()
                if col == "EOF":
                    code_start = line.index("#")
                    line_no, col_no = i, len(line) + 1
                    del code_start
                else:
                    line_no, col_no = i, int(col)
                out.add((path.name, line_no, col_no, kind, text))
    return out


def actual(diags):
    out = set()

    def add(d, kind):
        code = f"  [{d.code}]" if d.code else ""
        out.add((Path(d.span.file).name, d.span.line, d.span.col, kind, f"{d.message}{code}"))

    for d in diags:
        add(d, "E" if d.severity is Severity.ERROR else "N")
        for n in d.notes:
            if Path(n.span.file).parent == CASES:
                add(n, "N")
    return out


@pytest.mark.parametrize("path", ENTRY, ids=lambda p: p.stem)
def test_case(path):
    with pytest.raises(SpecError) as err:
        spec.load(path)
    want = expectations(CASES.glob("*.arch")) if path.stem.startswith("cycle") else expectations([path])
    got = {d for d in actual(err.value.diagnostics)}
    if path.stem.startswith("cycle"):
        want = {w for w in want if w in got or w[0] == path.name}
    assert got == want


def test_every_case_has_an_expectation():
    for path in ENTRY:
        assert expectations([path]) or path.stem.startswith("cycle"), path


def test_rendering_shows_source_line_and_caret():
    with pytest.raises(SpecError) as err:
        spec.load(CASES / "unknown_op.arch")
    text = render(err.value.diagnostics[0])
    lines = text.splitlines()
    assert lines[0].startswith(f"{CASES / 'unknown_op.arch'}:3:3: error: unknown op or block 'cnv'")
    assert lines[1].strip().startswith("cnv(64, 3)")
    assert lines[2] == "    " + "  " + "^~~~~~~~~~"  # under `cnv(64, 3)`, two spaces of indentation in the file


def test_cli_prints_diagnostics_without_traceback_and_exits_2():
    proc = subprocess.run([sys.executable, "-c", "from archc.cli import run; run()", "compile",
                           str(CASES / "shape_add.arch"), "-o", "/nonexistent/never.onnx"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "shape_add.arch:4:8: error: cannot add tensors of shapes 1×256×56×56 and 1×64×56×56" in proc.stderr
    assert "note: branch 1 ends in 1×256×56×56 (from res/main/conv)" in proc.stderr
    assert "note: branch 2 ends in 1×64×56×56 (from stem)" in proc.stderr
    assert "^~~~" in proc.stderr
