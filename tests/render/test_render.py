"""Renderers: text (rich), Markdown, CSV, LaTeX, HTML, and the `render` dispatcher."""
from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess

import pytest

from archc.render import (
    Align,
    Column,
    Fmt,
    Format,
    Table,
    render,
    render_csv,
    render_html,
    render_latex,
    render_markdown,
    render_text,
)

XSS = "<script>alert(1)</script>"


def make_table() -> Table:
    cols = [
        Column("name", "Layer"),
        Column("op", "Op"),
        Column("params", "Params", Fmt.INT, Align.RIGHT),
        Column("macs", "MACs", Fmt.SI, Align.RIGHT),
        Column("weights", "Weights", Fmt.BYTES, Align.RIGHT),
    ]
    rows = [
        {"name": "stem", "style": "group"},
        {"name": "conv1_1", "op": "Conv 7×7", "params": 9408, "macs": 118_013_952, "weights": 37_632},
        {"name": "relu", "op": "Relu", "params": 0, "macs": 0, "weights": 0},
        {"name": XSS, "op": "Custom|Op", "params": None, "macs": None, "weights": None},
        {"name": "Total", "style": "total", "params": 25_557_032, "macs": 4_089_184_256, "weights": 102_228_128},
    ]
    notes = ["? = unknown cost (op not modelled)", "MACs: 1 multiply-add → 1; 50% of x_y & $"]
    return Table("ResNet-50 layers", cols, rows, notes)


# --- text ----------------------------------------------------------------------------------------------------------


def test_text_headers_numbers_unknown():
    out = render_text(make_table())
    for header in ("Layer", "Op", "Params", "MACs", "Weights"):
        assert header in out
    assert "ResNet-50 layers" in out
    assert "25,557,032" in out  # Fmt.INT
    assert "4.09G" in out  # Fmt.SI
    assert "97.5 MiB" in out  # Fmt.BYTES
    assert "118.01M" in out
    assert "\x1b[" not in out  # plain text without a console
    unknown_line = next(line for line in out.splitlines() if "alert" in line)
    assert XSS in unknown_line  # shown verbatim, not parsed as rich markup
    assert unknown_line.split()[-3:] == ["?", "?", "?"]
    relu_line = next(line for line in out.splitlines() if line.startswith("relu"))
    assert relu_line.split()[-4:] == ["0", "0", "0", "B"]  # a real zero stays 0 ("0 B")
    assert "? = unknown cost" in out and "→" in out  # footnotes under the table


def test_text_right_alignment_and_totals_separator():
    out = render_text(make_table())
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("Layer"))
    conv = next(line for line in lines if line.startswith("conv1_1"))
    total_i = next(i for i, line in enumerate(lines) if line.startswith("Total"))
    total = lines[total_i]
    # right-aligned numeric columns: Params values end where the header ends
    params_end = header.index("Params") + len("Params")
    assert conv[:params_end].endswith("9,408")
    assert total[:params_end].endswith("25,557,032")
    assert total.rstrip().endswith("97.5 MiB")
    # a rule just above the totals line
    assert set(lines[total_i - 1].strip()) <= {"─", "━"} and lines[total_i - 1].strip()
    # totals row leaves the Op column blank (absent key in a total row), not "?"
    assert "?" not in total


def test_text_wide_table_not_truncated():
    long_name = "features.denseblock4.denselayer16.conv2." + "x" * 200
    t = Table(
        "wide",
        [Column("name", "Layer"), Column("macs", "MACs", Fmt.SI, Align.RIGHT)],
        [{"name": long_name, "macs": 4_089_184_256}],
    )
    out = render_text(t)
    assert long_name in out
    assert "…" not in out
    assert any(long_name in line and "4.09G" in line for line in out.splitlines())


def test_text_with_console_keeps_colour():
    from rich.console import Console

    console = Console(file=io.StringIO(), width=40, color_system="truecolor")
    out = render_text(make_table(), console)
    assert "\x1b[" in out  # styled (bold totals, dim group)
    assert "25,557,032" in out  # not squeezed to the console's 40 columns
    assert console.file.getvalue() == ""  # returned, not printed


# --- markdown ------------------------------------------------------------------------------------------------------


def test_markdown():
    out = render_markdown(make_table())
    lines = out.splitlines()
    assert lines[0] == "### ResNet-50 layers"
    assert "| Layer | Op | Params | MACs | Weights |" in lines
    assert "| --- | --- | ---: | ---: | ---: |" in lines
    assert "| **stem** |  |  |  |  |" in lines  # group row
    assert "| conv1_1 | Conv 7×7 | 9,408 | 118.01M | 36.8 KiB |" in lines
    assert f"| {XSS} | Custom\\|Op | ? | ? | ? |" in lines  # pipe escaped, unknown as ?
    assert "| **Total** |  | **25,557,032** | **4.09G** | **97.5 MiB** |" in lines
    assert "- ? = unknown cost (op not modelled)" in lines
    # every table row has the same number of (unescaped) cell separators
    table_lines = [line for line in lines if line.startswith("|")]
    counts = {len(re.findall(r"(?<!\\)\|", line)) for line in table_lines}
    assert counts == {6}


# --- CSV -----------------------------------------------------------------------------------------------------------


def test_csv_raw_values():
    out = render_csv(make_table())
    rows = list(csv.reader(io.StringIO(out)))
    # no "style" column: a totals row is the one named Total; a group heading (a name alone) is not data
    assert rows[0] == ["Layer", "Op", "Params", "MACs", "Weights"]
    assert rows[1] == ["conv1_1", "Conv 7×7", "9408", "118013952", "37632"]
    assert rows[2] == ["relu", "Relu", "0", "0", "0"]
    assert rows[3] == [XSS, "Custom|Op", "?", "?", "?"]  # unknown is "?", never empty or 0
    assert rows[4] == ["Total", "", "25557032", "4089184256", "102228128"]
    assert len(rows) == 5 and "style" not in out and "group" not in out
    assert "4.09G" not in out and "25,557,032" not in out
    assert "unknown cost" not in out  # footnotes are not data


def test_csv_no_style_column_without_styles_and_floats_exact():
    t = Table("t", [Column("a", "A"), Column("x", "X", Fmt.FLOAT, Align.RIGHT)], [{"a": "n", "x": 0.123456789}])
    rows = list(csv.reader(io.StringIO(render_csv(t))))
    assert rows == [["A", "X"], ["n", "0.123456789"]]


# --- LaTeX ---------------------------------------------------------------------------------------------------------


def test_latex_structure_and_escaping():
    out = render_latex(make_table())
    lines = out.splitlines()
    assert lines[0].startswith("% ") and r"\usepackage{booktabs}" in lines[0] and r"\usepackage{graphicx}" in lines[0]
    assert lines[1:4] == [r"\begin{table}[t]", r"\centering", r"\small"]
    assert r"\caption{ResNet-50 layers}" in lines
    assert r"\begin{tabular}{l l r r r}" in lines
    i_top, i_mid = lines.index(r"\toprule"), lines.index(r"\midrule")
    assert i_top < i_mid and lines[i_top + 1] == r"Layer & Op & Params & MACs & Weights \\"
    assert r"\multicolumn{5}{l}{\textit{stem}} \\" in lines
    assert r"conv1\_1 & Conv 7$\times$7 & 9,408 & 118.01M & 36.8 KiB \\" in lines
    assert r"Custom|Op & ? & ? & ? \\" in out
    assert "<script>" not in out
    total_i = next(i for i, line in enumerate(lines) if line.startswith(r"\textbf{Total}"))
    assert lines[total_i - 1] == r"\midrule"
    assert r"\textbf{25,557,032}" in lines[total_i] and r"\textbf{4.09G}" in lines[total_i]
    assert lines.index(r"\bottomrule") == total_i + 1
    assert lines[-1] == r"\end{table}"
    assert lines.index(r"\end{tabular}") < lines.index(r"\par\smallskip")
    assert r"1 multiply-add $\rightarrow$ 1; 50\% of x\_y \& \$" in out
    # every data row has n-1 unescaped & separators
    for line in lines[i_mid + 1 : lines.index(r"\bottomrule")]:
        if line.startswith((r"\midrule", r"\multicolumn")):
            continue
        assert len(re.findall(r"(?<!\\)&", line)) == 4, line
    assert out.count("{") == out.count("}") + out.count(r"\}") - out.count(r"\{")  # balanced groups


def test_latex_escapes_all_specials():
    from archc.render.latex import latex_escape

    assert latex_escape(r"a\b&c%d$e#f_g{h}i~j^k") == (
        r"a\textbackslash{}b\&c\%d\$e\#f\_g\{h\}i\textasciitilde{}j\textasciicircum{}k"
    )
    assert latex_escape("3×3 → 1") == r"3$\times$3 $\rightarrow$ 1"
    t = Table("a_b & c", [Column("n_1", "n_1 %")], [{"n_1": "x"}])
    out = render_latex(t)
    assert r"\caption{a\_b \& c}" in out and r"n\_1 \%" in out


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles(tmp_path):
    doc = "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
    doc += "\\begin{document}\n"
    doc += render_latex(make_table()) + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc, encoding="utf-8")
    r = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout[-3000:]


# --- HTML ----------------------------------------------------------------------------------------------------------


def test_html_escapes_everything():
    t = make_table()
    t.title = "layers of " + XSS
    t.footnotes.append("note " + XSS)
    out = render_html([t], title="page " + XSS, extra={"model": XSS, XSS: "v"})
    assert "<script" not in out.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert out.count("&lt;script&gt;") >= 6  # cell, table title, footnote, page title x2, extra key + value


def test_html_structure():
    t = make_table()
    blocks = Table(
        "Blocks",
        [Column("block", "Block"), Column("macs", "MACs", Fmt.SI, Align.RIGHT)],
        [{"block": "layer1", "macs": 1_000_000}],
    )
    out = render_html([t, blocks], title="ResNet-50", extra={"input": "1×3×224×224"})
    assert out.startswith("<!DOCTYPE html>")
    assert "generated by archc" in out
    assert "<h1>ResNet-50</h1>" in out
    assert out.count("<table>") == 2 and "<h2>Blocks</h2>" in out and "<h2>ResNet-50 layers</h2>" in out
    assert '<td class="r">25,557,032</td>' in out and '<td class="r">4.09G</td>' in out
    assert '<th class="r">Params</th>' in out and '<th class="l">Layer</th>' in out
    assert '<tr class="total">' in out
    assert '<td class="heading" colspan="5">stem</td>' in out
    assert '<td class="r">?</td>' in out
    assert "<li>? = unknown cost (op not modelled)</li>" in out
    assert "1×3×224×224" in out
    assert "position: sticky" in out


def test_html_self_contained():
    out = render_html([make_table()], title="x")
    assert "http://" not in out and "https://" not in out
    assert not re.search(r"""\b(src|href)\s*=""", out, re.I)
    assert "<link" not in out.lower() and "<script" not in out.lower() and "@import" not in out
    assert "<style>" in out


# --- dispatcher ----------------------------------------------------------------------------------------------------


def test_render_dispatch():
    t = make_table()
    assert render([t], Format.MD) == render_markdown(t)
    assert render([t], "csv") == render_csv(t)
    assert render([t], Format.LATEX) == render_latex(t)
    assert render([t], Format.TABLE).rstrip("\n") == render_text(t).rstrip("\n")
    assert render([t], Format.HTML, title="page").startswith("<!DOCTYPE html>")
    assert "<h1>page</h1>" in render([t], Format.HTML, title="page")
    with pytest.raises(ValueError):
        render([t], Format.JSON)
    assert {f.value for f in Format} == {"table", "md", "csv", "json", "latex", "html"}


@pytest.mark.parametrize("fmt", [Format.TABLE, Format.MD, Format.LATEX])
def test_render_several_tables_blank_line(fmt):
    a = Table("A", [Column("x", "X", Fmt.INT, Align.RIGHT)], [{"x": 1}])
    b = Table("B", [Column("y", "Y", Fmt.INT, Align.RIGHT)], [{"y": 2}])
    out = render([a, b], fmt)
    first = render([a], fmt).rstrip("\n")
    second = render([b], fmt).rstrip("\n")
    assert out == first + "\n\n" + second + "\n"


def test_render_csv_holds_one_table():
    a = Table("A", [Column("x", "X", Fmt.INT, Align.RIGHT)], [{"x": 1}])
    b = Table("B", [Column("y", "Y", Fmt.INT, Align.RIGHT)], [{"y": 2}])
    with pytest.raises(ValueError, match="one table"):
        render([a, b], Format.CSV)
    assert render([a], Format.CSV) == "X\n1\n"


def test_template_is_package_data():
    from importlib import resources

    assert resources.files("archc.render").joinpath("templates", "table.html.j2").is_file()


@pytest.mark.parametrize("width", [None, 100, 72])
def test_plain_text_is_what_rich_draws(width):
    """Plain text is laid out by archc in linear time (rich took seconds on a 4,000-row table); it must be exactly
    what rich draws without colour, title, rules, totals separator and wrapped footnotes included."""
    import io

    from rich.console import Console

    import archc
    from archc.render.text import render_text
    from archc.render.views import tables_for
    a = archc.analyze("specs/googlenet.arch")
    for by in ("block", "layer"):
        for table in tables_for(a, by):
            rich_drawn = render_text(table, Console(file=io.StringIO(), color_system=None), width)
            assert render_text(table, None, width) == rich_drawn
