"""Fitting terminal tables to a width: shorter headings, constant columns into a footnote, the least important
columns left out, rows never wrapped, every change said in a footnote."""
from __future__ import annotations

from pathlib import Path

import pytest

import archc
from archc.render import Align, Column, Fmt, Table, fit_table, render_result, render_text, table_width
from archc.render.fit import FULL_HINT, SI_HINT

SPECS = Path(__file__).resolve().parents[2] / "specs"
R = Align.RIGHT


@pytest.fixture(scope="module")
def resnet50():
    return archc.analyze(SPECS / "resnet50.arch")


@pytest.fixture(scope="module")
def googlenet():
    return archc.analyze(SPECS / "googlenet.arch")


def _table_lines(text: str) -> list[str]:
    """The header, rule and data lines of the first table in `text` (from the header to the totals row)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("━")) - 1  # the title may wrap
    end = next((i for i, line in enumerate(lines) if i > start and line.startswith("Total")), len(lines) - 1)
    return lines[start:end + 1]


def synthetic() -> Table:
    cols = [
        Column("name", "Name"),
        Column("kind", "Type of thing", short="Kind", drop=1),
        Column("ks", "Patch/Stride", align=R, short="P/S", drop=2),
        Column("g", "groups", align=R, drop=3, fold=True),
        Column("w", "width", align=R, drop=3, fold=True),
        Column("extra", "Extra info", align=R, drop=5),
        Column("more", "More info", align=R, drop=4),
        Column("params", "Params", Fmt.INT, R),
    ]
    rows = [
        {"name": "a", "kind": "conv", "ks": "3×3/1", "g": "1", "w": "64", "extra": "xx", "more": "yy", "params": 1},
        {"name": "b", "kind": "conv", "ks": "3×3/2", "g": "1", "w": "128", "extra": "xx", "more": "yy",
         "params": 2_000_000},
        {"name": "c", "kind": "pool", "ks": "", "g": "", "w": "", "extra": "", "more": "", "params": 0},
        {"name": "Total", "style": "total", "params": 2_000_001, "g": "9"},  # a totals row does not block folding
    ]
    return Table("t", cols, rows, ["own note"])


def test_a_table_that_fits_is_unchanged():
    t = synthetic()
    assert fit_table(t, table_width(t)) is t
    assert fit_table(t, 1000) is t


def test_fit_order_headings_then_constant_columns_then_drops():
    t = synthetic()
    full = table_width(t)
    # one step: the largest heading saving first (Patch/Stride → P/S saves 7, Type of thing → Kind 9)
    one = fit_table(t, full - 9)
    assert [c.header for c in one.columns][:3] == ["Name", "Kind", "Patch/Stride"]
    assert one.footnotes == ["Shortened headings: Kind = Type of thing.", FULL_HINT, "own note"]
    # then the constant column (groups = 1 wherever given; width varies, so it stays)
    two = fit_table(t, full - 9 - 7 - 9)  # Kind saves 9, P/S 7, groups and its divider 9
    headers = [c.header for c in two.columns]
    assert "groups" not in headers and "width" in headers and "Extra info" in headers
    assert "Left out, the same in every row that has one: groups = 1." in two.footnotes
    # then drops, the highest `drop` first: Extra info (5), More info (4), width (3)
    three = fit_table(t, full - 26)
    assert [c.header for c in three.columns] == ["Name", "Kind", "P/S", "width", "More info", "Params"]
    assert "Left out to fit" in three.footnotes[2] and three.footnotes[2].endswith(": Extra info.")
    # columns with drop=0 always stay: the narrowest fit keeps Name and Params
    least = fit_table(t, 5)
    assert [c.header for c in least.columns] == ["Name", "Params"]
    assert least.footnotes[-2] == FULL_HINT + " " + SI_HINT  # exact numbers of 8 characters and more kept
    assert three.footnotes[-2] == FULL_HINT + " " + SI_HINT
    assert "Left out to fit a width of 5: Type of thing, Patch/Stride, width, Extra info, More info." in least.footnotes


def test_resnet50_block_table_fits_100_columns(resnet50):
    text = render_result(resnet50, "table", width=100)
    block = text.split("\n\n")[0]
    assert max(len(line) for line in block.splitlines()) <= 100  # the table, its title and footnotes
    lines = _table_lines(block)
    header = lines[0].split()
    assert header[:2] == ["Name", "Type"] and header[-2:] == ["Params", "MACs"]
    assert "groups" not in header and "expansion" not in header
    assert "Left out, the same in every row that has one: groups = 1, base width = 64, expansion = 4, num" in block
    assert "`--wide` prints the full table." in block
    # no row wrapped: one line per block, each with its name, output and MACs
    rows = [line for line in lines[2:] if line and not line.startswith(("─", "━"))]
    assert len(rows) == 19 and rows[-1].startswith("Total")
    layer2_1 = next(line for line in rows if line.startswith("layer2_1 "))
    assert "28×28×512" in layer2_1 and layer2_1.endswith("372,506,624")


def test_resnet50_layer_table_drops_the_least_important_columns_first(resnet50):
    text = render_result(resnet50, "table", by="layer", width=120)
    layers = text.split("\n\n")[0]
    header = _table_lines(layers)[0].split()
    # Start, Jump, Act. elements, FLOPs (about 2×MACs), Act. bytes go first; the receptive field stays longer
    assert header == ["Layer", "Op", "K/S", "Output", "Params", "MACs", "RF"]
    assert "Left out to fit a width of 120: FLOPs, Act. elements, Act. bytes, Jump, Start." in layers.replace("\n", " ")
    assert "K/S = Kernel/Stride" in layers
    assert max(len(line) for line in layers.splitlines()) <= 120
    narrow = render_result(resnet50, "table", by="layer", width=100).split("\n\n")[0]
    assert "Left out to fit a width of 100: FLOPs, Act. elements, Act. bytes, RF, Jump, Start." in narrow.replace(
        "\n", " ")
    assert SI_HINT.split(" prints")[0] in narrow  # exact numbers: the hint that SI ones are narrower


def test_essential_columns_are_kept_even_when_too_wide(resnet50):
    text = render_result(resnet50, "table", by="layer", width=40)
    layers = text.split("\n\n")[0]
    lines = _table_lines(layers)
    assert lines[0].split() == ["Layer", "Output", "Params", "MACs"]
    assert len(lines[0]) > 40  # drawn at its own width, rows whole
    conv = next(line for line in lines if line.startswith("stem/conv1 "))
    assert conv.split() == ["stem/conv1", "112×112×64", "9,408", "118,013,952"]
    assert all(len(line) <= 40 for line in layers.splitlines() if line not in lines)  # title, notes wrap


def test_totals_value_wraps_inside_its_column(resnet50):
    text = render_result(resnet50, "table", width=80)
    totals = text.split("\n\n")[1]
    assert max(len(line) for line in totals.splitlines()) <= 80
    lines = totals.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("Peak memory"))
    value_col = _table_lines(totals)[0].index("Value")
    j = next(j for j in range(i + 1, len(lines)) if lines[j][:value_col].strip())  # the next quantity
    assert j - i >= 3  # wrapped over several lines, inside the Value column
    joined = " ".join(line[value_col:].strip() for line in lines[i:j])
    assert "106.9 MiB while running layer1_1/downsample/bn" in joined and "layer1_1/main/conv3/bn)" in joined


def test_googlenet_shortens_the_papers_headings_before_dropping(googlenet):
    text = render_result(googlenet, "table", width=130).split("\n\n")[0]
    header = _table_lines(text)[0]
    for col in ("P/S", "Depth", "#1×1", "#3×3r", "#3×3", "#5×5r", "#5×5", "pp", "Params", "MACs"):
        assert col in header.split(), col
    assert "Shortened headings: P/S = Patch/Stride, #3×3r = #3×3 reduce, #5×5r = #5×5 reduce, pp = pool proj." in (
        text.replace("\n", " "))
    assert "Left out to fit" not in text  # nothing lost at 130
    inception = next(line for line in text.splitlines() if line.startswith("inception_3a "))
    assert inception.split()[1:10] == ["inception", "28×28×256", "2", "64", "96", "128", "16", "32", "32"]


def test_without_a_width_nothing_is_fitted(resnet50):
    text = render_result(resnet50, "table", by="layer")
    header = _table_lines(text)[0]
    assert "Start" in header and "Act. elements" in header and "Kernel/Stride" in header
    assert len(header) > 150 and FULL_HINT not in text
    assert render_text(synthetic()) == render_text(synthetic(), width=1000)
