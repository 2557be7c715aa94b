"""Fitting a terminal table to a width: shorter headings first, then columns whose value is the same in every row
(moved to a footnote), then the least important columns, until the table fits. Rows are never wrapped; only a
column marked `wrap` (a sentence-like value) may wrap inside itself, which the text renderer does.

Every change is said in a footnote placed before the table's own, ending with how to see the full table.
"""
from __future__ import annotations

from dataclasses import replace

from rich.cells import cell_len

from archc.render._rows import cell_text, group_label, is_heading, row_style
from archc.render.table import Column, Fmt, Table

GAP = 3  # a divider with one space each side, between two columns (text.py draws them so)
FULL_HINT = "`--wide` prints the full table."
SI_HINT = "`--units si` prints shorter numbers (25.56M)."


def table_width(table: Table) -> int:
    """The width, in terminal cells, of `table` drawn by `render_text` (headings and cells, dividers between)."""
    return _width(table.columns, _cell_widths(table), {})


def _cell_widths(table: Table) -> dict[str, int]:
    widths = {c.key: 0 for c in table.columns}
    first = table.columns[0].key if table.columns else ""
    for row in table.rows:
        if is_heading(table, row):  # a group heading is drawn in the first column only
            widths[first] = max(widths[first], cell_len(group_label(table, row)))
            continue
        for c in table.columns:
            widths[c.key] = max(widths[c.key], cell_len(cell_text(row, c)))
    return widths


def _width(columns: list[Column], cells: dict[str, int], headers: dict[str, str]) -> int:
    if not columns:
        return 0
    return sum(max(cell_len(headers.get(c.key, c.header)), cells[c.key]) for c in columns) + GAP * (len(columns) - 1)


def _same_value(table: Table, col: Column) -> str | None:
    """The one text every row that has a value shows in `col` (totals and group rows aside), else None."""
    values = {cell_text(row, col) for row in table.rows if row_style(row) is None}
    values.discard("")
    return values.pop() if len(values) == 1 else None


def fit_table(table: Table, width: int) -> Table:
    """`table` made at most `width` cells wide if it can be; unchanged when it already fits.

    1. shorter headings (`Column.short`), the largest saving first;
    2. columns marked `fold` whose rows all show one value (block arguments such as groups = 1), rightmost first,
       said in a footnote with their value;
    3. columns with `drop` > 0, the highest number first (the rightmost first among equals).
    Columns with `drop` = 0 are always kept: a table that still does not fit is drawn wider than `width`.
    """
    cells = _cell_widths(table)
    columns = list(table.columns)
    headers: dict[str, str] = {}
    if _width(columns, cells, headers) <= width:
        return table

    def fits() -> bool:
        return _width(columns, cells, headers) <= width

    abbreviated: list[Column] = []

    def saving(c: Column) -> int:
        assert c.short is not None
        return max(cell_len(c.header), cells[c.key]) - max(cell_len(c.short), cells[c.key])

    for c in sorted((c for c in columns if c.short), key=saving, reverse=True):
        if fits() or saving(c) <= 0:
            break
        assert c.short is not None
        headers[c.key] = c.short
        abbreviated.append(c)

    folded: list[tuple[Column, str]] = []
    for c in reversed(table.columns):
        if fits():
            break
        value = _same_value(table, c) if c.fold else None
        if value is not None:
            columns.remove(c)
            folded.append((c, value))

    dropped: list[Column] = []
    droppable = [(c.drop, i, c) for i, c in enumerate(columns) if c.drop > 0]
    for _, _, c in sorted(droppable, key=lambda dic: (dic[0], dic[1]), reverse=True):
        if fits():
            break
        columns.remove(c)
        dropped.append(c)

    if not (abbreviated or folded or dropped):
        return table
    notes = []
    legend = [f"{headers[c.key]} = {c.header}" for c in abbreviated
              if c in columns and not c.header.startswith(headers[c.key])]
    if legend:
        notes.append("Shortened headings: " + ", ".join(legend) + ".")
    if folded:
        notes.append("Left out, the same in every row that has one: " +
                     ", ".join(f"{c.header} = {v}" for c, v in reversed(folded)) + ".")
    if dropped:
        kept_order = {c.key: i for i, c in enumerate(table.columns)}
        names = [c.header for c in sorted(dropped, key=lambda c: kept_order[c.key])]
        notes.append(f"Left out to fit a width of {width}: " + ", ".join(names) + ".")
    notes.append(FULL_HINT)
    if dropped and any(c.fmt is Fmt.INT and cells[c.key] >= 8 for c in columns):  # 1,000,000 and more
        notes[-1] += " " + SI_HINT
    fitted = [replace(c, header=headers[c.key]) if c.key in headers else c for c in columns]
    return Table(table.title, fitted, table.rows, notes + list(table.footnotes))


__all__ = ["FULL_HINT", "GAP", "SI_HINT", "fit_table", "table_width"]
