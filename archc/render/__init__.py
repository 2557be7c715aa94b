"""Rendering of results: `Table`s to text, Markdown, CSV, LaTeX and HTML; results themselves to JSON."""
from __future__ import annotations

import enum
import json
from typing import TYPE_CHECKING

from archc.render.csv_out import render_csv
from archc.render.html import render_html
from archc.render.latex import render_latex
from archc.render.markdown import render_markdown
from archc.render.table import UNKNOWN, Align, Column, Fmt, Table, format_cell, human_bytes, si
from archc.render.text import render_text

if TYPE_CHECKING:
    from archc.analysis import Analysis
    from archc.analysis.compare import Comparison, Diff


class Format(enum.Enum):
    TABLE = "table"
    MD = "md"
    CSV = "csv"
    JSON = "json"
    LATEX = "latex"
    HTML = "html"


_SINGLE = {
    Format.TABLE: render_text,
    Format.MD: render_markdown,
    Format.CSV: render_csv,
    Format.LATEX: render_latex,
}


def render(tables: list[Table], fmt: Format | str, title: str = "") -> str:
    """Render `tables` in `fmt`. Several tables are separated by a blank line (HTML: one page holding them all,
    titled `title` or else the first table's title). JSON is not rendered from tables: ValueError."""
    fmt = Format(fmt)
    if isinstance(tables, Table):
        tables = [tables]
    if fmt is Format.JSON:
        raise ValueError("JSON output is produced from the analysis itself, not from rendered tables")
    if fmt is Format.HTML:
        page_title = title or (tables[0].title if tables else "") or "archc"
        return render_html(tables, page_title)
    parts = [_SINGLE[fmt](t).rstrip("\n") for t in tables]
    return "\n\n".join(parts) + "\n" if parts else ""


def render_result(result: Analysis | Comparison | Diff, fmt: Format | str, *, by: str = "block",
                  stages: bool = False) -> str:
    """An analysis, comparison or diff in `fmt`: JSON is the result's own contract (readable back with
    `from_json`); every other format renders the result's views (`views.tables_for`)."""
    from archc.render.views import tables_for
    fmt = Format(fmt)
    if fmt is Format.JSON:
        return json.dumps(result.to_json(), indent=2, default=list) + "\n"
    tables = tables_for(result, by, stages)
    return render(tables, fmt, title=tables[0].title)


__all__ = [
    "UNKNOWN",
    "Align",
    "Column",
    "Fmt",
    "Format",
    "Table",
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
]
