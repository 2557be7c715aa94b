"""Rendering of results: `Table`s to text, Markdown, CSV, LaTeX and HTML; results themselves to JSON."""
from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from archc.render.csv_out import render_csv
from archc.render.fit import fit_table, table_width
from archc.render.html import Figure, render_html
from archc.render.latex import render_latex
from archc.render.markdown import render_markdown
from archc.render.table import UNITS, UNKNOWN, Align, Column, Fmt, Table, count_fmt, format_cell, human_bytes, si
from archc.render.text import render_text, terminal_width

if TYPE_CHECKING:
    from archc.analysis import Analysis
    from archc.analysis.compare import Comparison, Diff
    from archc.deploy.profile import Profile


class Format(enum.Enum):
    TABLE = "table"
    MD = "md"
    CSV = "csv"
    JSON = "json"
    LATEX = "latex"
    HTML = "html"


_SINGLE = {
    Format.MD: render_markdown,
    Format.CSV: render_csv,
    Format.LATEX: render_latex,
}


def render(tables: list[Table], fmt: Format | str, title: str = "", width: int | None = None,
           figures: Sequence[Figure] = ()) -> str:
    """Render `tables` in `fmt`. Several tables are separated by a blank line (HTML: one page holding them all,
    titled `title` or else the first table's title). A CSV holds one table: several are a ValueError. JSON is not
    rendered from tables: ValueError. `width` fits terminal text (`Format.TABLE`) to that many columns
    (`render_text`); the other formats always show every column."""
    fmt = Format(fmt)
    if isinstance(tables, Table):
        tables = [tables]
    if fmt is Format.JSON:
        raise ValueError("JSON output is produced from the analysis itself, not from rendered tables")
    if fmt is Format.CSV and len(tables) > 1:
        raise ValueError("a CSV file holds one table: render each table to its own CSV")
    if fmt is Format.HTML:
        page_title = title or (tables[0].title if tables else "") or "archc"
        return render_html(tables, page_title, figures=figures)
    if figures:
        raise ValueError("figures are drawn in HTML only")
    if fmt is Format.TABLE:
        parts = [render_text(t, width=width).rstrip("\n") for t in tables]
    else:
        parts = [_SINGLE[fmt](t).rstrip("\n") for t in tables]
    return "\n\n".join(parts) + "\n" if parts else ""


def render_result(result: Analysis | Comparison | Diff | Profile, fmt: Format | str, *, by: str = "block",
                  stages: bool = False, units: str | None = None, totals: bool = False,
                  width: int | Literal["terminal"] | None = None, figures: Sequence[Figure] = ()) -> str:
    """An analysis, comparison or diff in `fmt` (HTML with `figures` after its tables): JSON is the result's own
    contract (readable back with `from_json`); every other format renders the result's views (`views.tables_for`).

    `units`: "exact" (25,557,032) or "si" (25.56M) counts in the layer, block, comparison and diff tables (None:
    exact, but SI in a comparison). `totals`: one model's totals table alone. CSV is one table: the block (or
    layer) table, or with `totals` the totals one row per quantity with raw values (`views.totals_data`).
    `width`: fit terminal text to that many columns, or to the terminal's when "terminal" and standard output is
    one (`text.terminal_width`); None prints every column at full width.
    """
    from archc.analysis import Analysis
    from archc.render.views import tables_for, totals_data
    fmt = Format(fmt)
    if fmt is Format.JSON:
        return json.dumps(result.to_json(), indent=2, default=list) + "\n"
    tables = tables_for(result, by, stages, units=units, totals=totals)
    if fmt is Format.CSV:
        tables = [totals_data(result) if totals and isinstance(result, Analysis) else tables[0]]
    fit = terminal_width() if width == "terminal" else width
    return render(tables, fmt, title=tables[0].title, width=fit if fmt is Format.TABLE else None, figures=figures)


__all__ = [
    "UNKNOWN",
    "Figure",
    "Align",
    "Column",
    "Fmt",
    "Format",
    "Table",
    "UNITS",
    "count_fmt",
    "fit_table",
    "format_cell",
    "human_bytes",
    "render",
    "render_csv",
    "render_html",
    "render_latex",
    "render_markdown",
    "render_result",
    "render_text",
    "si",
    "table_width",
    "terminal_width",
]
