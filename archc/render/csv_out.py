"""CSV rendering of a `Table`: exact raw values, for spreadsheets and scripts (named csv_out: `csv` is the
standard library's)."""
from __future__ import annotations

import csv
import io
from typing import Any

from archc.render._rows import has_cell, row_style
from archc.render.table import UNKNOWN, Table


def _raw(row: dict[str, Any], key: str) -> Any:
    if not has_cell(row, key):
        return ""  # a totals/group row that leaves a column out has nothing there; that is not an unknown cost
    value = row.get(key)
    return UNKNOWN if value is None else value


def render_csv(table: Table) -> str:
    """Header row of column headers, then raw values (ints/floats exact, unknown as "?").

    A trailing "style" column ("total", "group" or empty) is added only when some row has a style.
    The title and the footnotes are not written: CSV is data.
    """
    styled = any(row_style(r) is not None for r in table.rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.header for c in table.columns] + (["style"] if styled else []))
    for row in table.rows:
        values = [_raw(row, c.key) for c in table.columns]
        if styled:
            values.append(row_style(row) or "")
        w.writerow(values)
    return buf.getvalue()
