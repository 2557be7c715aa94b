"""Row helpers shared by the renderers (which row is a total, which is a group heading, what a cell shows)."""
from __future__ import annotations

from typing import Any

from archc.render.table import Column, Table, format_cell

TOTAL = "total"
GROUP = "group"


def row_style(row: dict[str, Any]) -> str | None:
    """The row's "style" key ("total", "group") or None for a plain row."""
    style = row.get("style")
    return style if style in (TOTAL, GROUP) else None


def is_heading(table: Table, row: dict[str, Any]) -> bool:
    """A group row that carries nothing but its name (no other column key): shown as one spanning heading."""
    if row_style(row) != GROUP:
        return False
    return not any(c.key in row for c in table.columns[1:])


def group_label(table: Table, row: dict[str, Any]) -> str:
    """The name a group row shows: its first column's value (or a "group"/"name"/"label" key)."""
    for key in ([table.columns[0].key] if table.columns else []) + ["group", "name", "label"]:
        value = row.get(key)
        if value is not None:
            return str(value)
    return ""


def has_cell(row: dict[str, Any], key: str) -> bool:
    """False only for a key a totals/group row leaves out (shown blank, not as unknown)."""
    return key in row or row_style(row) is None


def cell_text(row: dict[str, Any], col: Column) -> str:
    """What a cell shows. None is unknown ("?"). An absent key is unknown too in a plain row, but blank in a totals
    or group row (a totals line has nothing to say under "op"; a group heading only has a name)."""
    if not has_cell(row, col.key):
        return ""
    return format_cell(row.get(col.key), col.fmt)
