"""What the views put in their tables: units of counts, the output shapes' convention, CSV for machines, LaTeX
that says what it needs and fits the page."""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import archc
from archc.analysis.compare import compare, diff
from archc.render import Format, render_result
from archc.render.cells import input_convention, output_convention
from archc.render.latex import latex_escape, latex_note
from archc.render.views import block_table, compare_table, diff_table, layer_table, totals_data

SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.fixture(scope="module")
def resnet50():
    return archc.analyze(SPECS / "resnet50.arch")


@pytest.fixture(scope="module")
def lenet():
    return archc.analyze(SPECS / "lenet5.arch")


def _col(table, key):
    return next(c for c in table.columns if c.key == key)


# --- units ---------------------------------------------------------------------------------------------------------


def test_units_exact_by_default_si_when_asked(resnet50):
    exact = render_result(resnet50, "md")
    assert "| **25,557,032** | **4,089,184,256** |" in exact
    si = render_result(resnet50, "md", units="si")
    assert "| **25.56M** | **4.09G** |" in si
    assert "| layer4_1 | bottleneck | /2 | 7×7×2048 | 3 | 512 | 2 | 1 | 64 | 4 |  | 6.04M | 372.51M |" in si
    layers = render_result(resnet50, "md", by="layer", units="si")
    conv1 = next(line for line in layers.splitlines() if line.startswith("| stem/conv1 |"))
    assert conv1.split(" | ")[4:8] == ["9.41k", "118.01M", "236.03M", "802.82k"]  # params, MACs, FLOPs, elements
    assert "3.1 MiB" in conv1  # bytes stay bytes
    # the totals table is unchanged (it prints both)
    assert "4,089,184,256 (4.09G)" in si


def test_units_in_comparison_and_diff(resnet50, lenet):
    c = compare([resnet50, lenet], None)
    assert "| resnet50 | 3×224×224 | 25.56M | 4.09G |" in render_result(c, "md")  # SI by default
    assert "| resnet50 | 3×224×224 | 25,557,032 | 4,089,184,256 |" in render_result(c, "md", units="exact")
    d = diff(resnet50, resnet50)
    assert _col(diff_table(d), "macs_d").fmt.value == "int" and _col(diff_table(d, "si"), "macs_d").fmt.value == "si"
    with pytest.raises(ValueError, match="units"):
        layer_table(resnet50, units="kilo")


def test_csv_is_raw_whatever_the_units(resnet50):
    rows = list(csv.reader(io.StringIO(render_result(resnet50, "csv", units="si"))))
    assert rows[-1][0] == "Total" and "25557032" in rows[-1] and "4089184256" in rows[-1]


# --- the output shapes' convention -----------------------------------------------------------------------------------


def test_output_heading_says_the_convention(resnet50):
    for table in (block_table(resnet50), layer_table(resnet50)):
        assert _col(table, "output").header == "Output (H×W×C)"
        note = next(n for n in table.footnotes if n.startswith("Output (H×W×C)"))
        assert "as papers print it" in note and "batch first (N×C×H×W)" in note
    assert "1×3×224×224" in block_table(resnet50).title  # the batch-first shape the note points to
    md = render_result(resnet50, "md")
    assert "| Name | Type | Patch/Stride | Output (H×W×C) | Depth |" in md
    assert "| stem | stem | /4 | 56×56×64 | 1 |" in md
    c = compare_table(compare([resnet50, resnet50], None))
    assert _col(c, "input").header == "Input (C×H×W)"
    d = diff_table(diff(archc.analyze(SPECS / "resnet18.arch"), resnet50))
    assert _col(d, "output_a").header == "Output A (H×W×C)" and _col(d, "output_b").header == "Output B (H×W×C)"
    assert any(n.startswith("Outputs (H×W×C)") for n in d.footnotes)
    assert _col(diff_table(diff(resnet50, resnet50)), "output_a").header == "Output A"  # no change, no shapes


def test_output_convention_by_rank():
    assert output_convention([(1, 64, 112, 112), (1, 1000)]) == "H×W×C"
    assert output_convention([(1, 16, 100)]) == "L×C"
    assert output_convention([(1, 8, 4, 32, 32)]) == "D×H×W×C"
    assert output_convention([(1, 8, 4, 32, 32), (1, 8, 32, 32)]) == "…×C"
    assert output_convention([(1, 10), None]) is None
    assert input_convention((1, 3, 224, 224)) == "N×C×H×W" and input_convention((1, 10)) is None


# --- CSV: one table per file -----------------------------------------------------------------------------------------


def test_csv_is_the_main_table_alone(resnet50):
    out = render_result(resnet50, "csv")
    assert "\n\n" not in out and "Parameters (trainable)" not in out and "style" not in out
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["Name", "Type", "Patch/Stride", "Output (H×W×C)", "Depth", "width", "stride", "groups",
                       "base width", "expansion", "num classes", "Params", "MACs"]
    assert all(len(r) == len(rows[0]) for r in rows)
    total = rows[-1]
    assert total[0] == "Total" and [r[0] for r in rows].count("Total") == 1
    assert int(total[rows[0].index("Params")]) == 25_557_032
    layers = list(csv.reader(io.StringIO(render_result(resnet50, "csv", by="layer"))))
    assert layers[0][:4] == ["Layer", "Op", "Kernel/Stride", "Output (H×W×C)"] and layers[-1][0] == "Total"
    assert len(layers) == len(resnet50.layers) + 2


def test_csv_totals_when_asked(resnet50):
    out = render_result(resnet50, "csv", totals=True)
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["Quantity", "Value"]
    values = dict(rows[1:])
    t = resnet50.to_json()["totals"]
    assert values["model"] == "resnet50" and values["batch"] == "1"
    for key in ("params", "trainable_params", "nontrainable_params", "macs", "flops", "activation_bytes",
                "peak_memory_bytes", "weight_bytes", "depth"):
        assert int(values[key]) == t[key], key
    assert int(values["weight_bytes_by_dtype.float16"]) == t["weight_bytes_by_dtype"]["float16"]
    assert int(values["layer_counts.Conv"]) == 53
    assert values["peak_after"] == t["peak_after"]
    assert totals_data(resnet50).rows[0] == {"quantity": "model", "value": "resnet50"}
    # --totals in the other formats: the human totals table alone
    md = render_result(resnet50, "md", totals=True)
    assert "| Parameters (trainable) | 25,557,032 |" in md and "| Name |" not in md


# --- LaTeX -----------------------------------------------------------------------------------------------------------


def test_latex_says_its_packages_fits_the_line_and_escapes_backticks(resnet50):
    out = render_result(resnet50, "latex")
    first = out.splitlines()[0]
    assert first.startswith("%") and r"\usepackage{booktabs}" in first and r"\usepackage{graphicx}" in first
    lines = out.splitlines()
    i = lines.index(r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%")
    assert lines[i + 1].startswith(r"\begin{tabular}")
    assert lines[lines.index(r"\end{tabular}") + 1] == "}"
    body = "\n".join(line for line in lines if not line.startswith("%"))
    assert "`" not in body
    assert r"(see \texttt{archc ops -{}-costs})" in out
    assert latex_escape("a `b` c`") == r"a \textasciigrave{}b\textasciigrave{} c\textasciigrave{}"
    assert latex_note("run `x_y` or ` alone") == r"run \texttt{x\_y} or \textasciigrave{} alone"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_wide_table_compiles_without_overfull_box(resnet50, lenet, tmp_path):
    doc = ("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
           "\\begin{document}\n")
    doc += render_result(resnet50, "latex").split("\n\n")[0] + "\n"  # the 13-column block table
    doc += render_result(lenet, "latex", by="layer").split("\n\n")[0] + "\n"  # ~10 rows of 12 columns
    doc += "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc, encoding="utf-8")
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
    log = (tmp_path / "t.log").read_text(errors="replace")
    assert not re.search(r"Overfull \\hbox", log), log[-3000:]


def test_json_unchanged_by_the_table_options(resnet50):
    plain = json.loads(render_result(resnet50, Format.JSON))
    assert json.loads(render_result(resnet50, Format.JSON, units="si", totals=True, width=40)) == plain
