"""Terminal rendering of a `Table` with rich."""
from __future__ import annotations

import io
import shutil
import sys
from typing import Literal, cast

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from archc.render._rows import GROUP, TOTAL, cell_text, group_label, is_heading, row_style
from archc.render.fit import GAP, fit_table
from archc.render.table import Align, Table

ColorSystemName = Literal["auto", "standard", "256", "truecolor", "windows"] | None

MIN_WIDTH = 120

# SIMPLE_HEAVY with a thin rule between sections, so that end_section draws a line above a totals row.
_BOX = box.Box(
    "    \n"
    "    \n"
    " ━━ \n"
    "    \n"
    " ── \n"
    " ━━ \n"
    "    \n"
    "    \n"
)


MIN_WRAP = 24  # a wrapping column (the totals' Value) is never made narrower than this


def _cells(table: Table, limit: int | None = None) -> tuple[list[list[str]], list[int], bool]:
    """Every cell's text, each column's width, and whether a `wrap` column had to be narrowed (down to MIN_WRAP)
    to fit `limit`; widths are measured once here (rich would measure each cell twice)."""
    texts: list[list[str]] = []
    for row in table.rows:
        if row_style(row) == GROUP and is_heading(table, row):
            texts.append([group_label(table, row)] + [""] * (len(table.columns) - 1))
        else:
            texts.append([cell_text(row, col) for col in table.columns])
    widths = [max([cell_len(col.header)] + [cell_len(t[i]) for t in texts]) for i, col in enumerate(table.columns)]
    total = sum(widths) + GAP * (len(widths) - 1)
    narrowed = False
    if limit is not None and total > limit:
        for i, col in enumerate(table.columns):
            if col.wrap and total > limit:
                narrower = max(MIN_WRAP, cell_len(col.header), widths[i] - (total - limit))
                total -= widths[i] - min(narrower, widths[i])
                narrowed = narrowed or narrower < widths[i]
                widths[i] = min(narrower, widths[i])
    return texts, widths, narrowed


def _plain_body(table: Table, texts: list[list[str]], widths: list[int]) -> list[str]:
    """The table as rich draws it without colour (header, heavy rule, rows, a thin rule above a totals row), in
    linear time: rich's layout of a 4,000-row table took seconds."""
    def line(cells: list[str]) -> str:
        parts = [c + " " * (w - cell_len(c)) if col.align is not Align.RIGHT else " " * (w - cell_len(c)) + c
                 for c, w, col in zip(cells, widths, table.columns)]
        return (" " * GAP).join(parts).rstrip()
    total = sum(widths) + GAP * (len(widths) - 1)
    out = [line([col.header for col in table.columns]), "━" * total]
    for i, cells in enumerate(texts):
        if i > 0 and row_style(table.rows[i]) == TOTAL:
            out.append("─" * total)
        out.append(line(cells))
    return out


def _build(table: Table, limit: int | None = None) -> tuple[RichTable, int]:
    """The rich table (for colour, or a column that wraps), with the widths `_cells` measured."""
    rows = table.rows
    texts, widths, _ = _cells(table, limit)
    total = sum(widths) + GAP * (len(widths) - 1)
    rt = RichTable(
        box=_BOX,
        header_style="bold",
        show_edge=False,
        pad_edge=False,
    )
    for col, width in zip(table.columns, widths):
        rt.add_column(
            Text(col.header),  # Text, never markup: headers and cells are shown verbatim
            justify="right" if col.align is Align.RIGHT else "left",
            no_wrap=not col.wrap, overflow="fold", width=width, min_width=width,
        )
    for i, (row, cells) in enumerate(zip(rows, texts)):
        style = row_style(row)
        # A separator line above a totals row: rich draws it under the previous row.
        end_section = i + 1 < len(rows) and row_style(rows[i + 1]) == TOTAL
        if style == GROUP and is_heading(table, row):
            rt.add_row(Text(cells[0], style="dim italic"), *[Text("") for _ in cells[1:]], end_section=end_section)
            continue
        rt.add_row(
            *[Text(c) for c in cells],
            style="bold" if style == TOTAL else ("dim italic" if style == GROUP else None),
            end_section=end_section,
        )
    return rt, total  # one pad each side of a divider, and the divider


def _plain(table: Table, texts: list[list[str]], widths: list[int], width: int | None) -> str:
    def wrapped(text: str) -> list[str]:  # the title and footnotes wrap at a terminal's width, as rich wraps them
        if width is None or cell_len(text) <= width:
            return [text]
        buf = io.StringIO()
        Console(file=buf, width=width, color_system=None, highlight=False, emoji=False, markup=False,
                legacy_windows=False).print(Text(text), width=width)
        return [line.rstrip() for line in buf.getvalue().rstrip("\n").split("\n")]
    lines = wrapped(table.title) if table.title else []
    lines += _plain_body(table, texts, widths)
    for note in table.footnotes:
        lines += wrapped(note)
    return "\n".join(lines) + "\n"


def terminal_width() -> int | None:
    """The width to fit a table printed on standard output: the terminal's (`COLUMNS` overrides it, as
    `shutil.get_terminal_size` reads it), or None when standard output is not a terminal (a pipe or a file keeps
    every column)."""
    try:
        if not sys.stdout.isatty():
            return None
    except (AttributeError, ValueError):  # replaced or closed stdout
        return None
    return shutil.get_terminal_size().columns


def render_text(table: Table, console: Console | None = None, width: int | None = None) -> str:
    """The table as terminal text. Rows are never wrapped.

    Without `width` the table is never truncated (the lines grow with the table). With `width` (a terminal's)
    a wider table is fitted (`fit.fit_table`: shorter headings, constant columns into a footnote, the least
    important columns left out, each change said in a footnote), the title and footnotes wrap at `width`, and a
    column marked `wrap` wraps inside itself; a table that still does not fit is drawn at its own width.

    Without `console` the result is plain text (no ANSI escapes). With one, the result carries that console's
    colour system (ANSI escapes when it has colour): write it as is (sys.stdout.write / click.echo), do not
    pass it to console.print, which would re-parse it.
    """
    if width is not None:
        table = fit_table(table, width)
    if console is None:
        texts, widths, narrowed = _cells(table, width)
        if not narrowed:  # plain text and no cell wraps: lay it out here
            return _plain(table, texts, widths, width)
    rt, needed = _build(table, width)
    # rich reports the system as a plain str but takes one of its literal names: the same value passed back
    color_system = cast(ColorSystemName, console.color_system) if console is not None else None
    if width is None:
        notes_width = max((len(n) for n in [table.title, *table.footnotes]), default=0)
        console_width = max(MIN_WIDTH, needed, notes_width)
    else:
        console_width = max(needed, width)
    buf = io.StringIO()
    out = Console(
        file=buf,
        width=console_width,
        color_system=color_system,
        force_terminal=color_system is not None,
        no_color=console.no_color if console is not None else False,
        highlight=False,
        emoji=False,
        markup=False,
        legacy_windows=False,
        soft_wrap=False,
    )
    if table.title:  # printed above rather than as rich's title, which would wrap to the table's width
        out.print(Text(table.title, style="bold"), width=width)
    out.print(rt)
    for note in table.footnotes:
        out.print(Text(note, style="dim"), width=width)
    text = buf.getvalue()
    if color_system is None:  # plain text: drop rich's trailing padding so output diffs cleanly
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    return text
