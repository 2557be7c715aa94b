"""CSV rendering of a `Table`: exact raw values, for spreadsheets and scripts (named csv_out: `csv` is the
standard library's)."""
from __future__ import annotations

import csv
import io
from typing import Any

from archc.render._rows import has_cell, is_heading
from archc.render.table import UNKNOWN, Table


def _raw(row: dict[str, Any], key: str) -> Any:
    if not has_cell(row, key):
        return ""  # a totals/group row that leaves a column out has nothing there; that is not an unknown cost
    value = row.get(key)
    return UNKNOWN if value is None else value


def render_csv(table: Table) -> str:
    """Header row of column headers, then one row per table row with raw values (ints/floats exact, unknown as
    "?", a cell a totals row leaves out empty). One table per file; the title and the footnotes are not written
    (CSV is data), nor are group headings (rows that carry only a name). No style column: a totals row is the one
    named "Total".
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.header for c in table.columns])
    for row in table.rows:
        if is_heading(table, row):
            continue
        w.writerow([_raw(row, c.key) for c in table.columns])
    return buf.getvalue()
