"""GitHub-flavoured Markdown rendering of a `Table`."""
from __future__ import annotations

from archc.render._rows import cell_text, group_label, is_heading, row_style
from archc.render.table import Align, Table


def _esc(s: str) -> str:
    """A cell's text made safe inside a pipe table: | escaped, line breaks flattened."""
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def _bold(s: str) -> str:
    return f"**{s}**" if s else s


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_markdown(table: Table) -> str:
    """The table as a GitHub pipe table under a `### title` heading, footnotes as a list below."""
    out: list[str] = []
    if table.title:
        out += [f"### {table.title}", ""]
    out.append(_line([_esc(c.header) for c in table.columns]))
    out.append(_line(["---:" if c.align is Align.RIGHT else "---" for c in table.columns]))
    for row in table.rows:
        style = row_style(row)
        if is_heading(table, row):
            out.append(_line([_bold(_esc(group_label(table, row)))] + [""] * (len(table.columns) - 1)))
            continue
        cells = [_esc(cell_text(row, c)) for c in table.columns]
        if style is not None:  # totals and group rows with values: bold
            cells = [_bold(c) for c in cells]
        out.append(_line(cells))
    if table.footnotes:
        out.append("")
        out += [f"- {note}" for note in table.footnotes]
    return "\n".join(out) + "\n"
