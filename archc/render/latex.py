"""LaTeX (booktabs) rendering of a `Table`, ready to paste into a paper."""
from __future__ import annotations

import re

from archc.render._rows import TOTAL, cell_text, group_label, is_heading, row_style
from archc.render.table import Align, Table

_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "×": r"$\times$",
    "→": r"$\rightarrow$",
    "←": r"$\leftarrow$",
    "≈": r"$\approx$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "±": r"$\pm$",
    "·": r"$\cdot$",
    "−": r"$-$",
    "µ": r"$\mu$",
    "…": r"\ldots{}",
    "\n": " ",
}
_RE = re.compile("|".join(re.escape(k) for k in _SPECIALS))


def latex_escape(s: str) -> str:
    """Escape LaTeX specials (\\ & % $ # _ { } ~ ^ < >) and map a few Unicode symbols (× → …) to math."""
    return _RE.sub(lambda m: _SPECIALS[m.group(0)], s)


def render_latex(table: Table) -> str:
    """A `table` float with a booktabs `tabular` (needs \\usepackage{booktabs})."""
    n = len(table.columns)
    spec = " ".join("r" if c.align is Align.RIGHT else "l" for c in table.columns)
    out = [r"\begin{table}[t]", r"\centering", r"\small"]
    if table.title:
        out.append(rf"\caption{{{latex_escape(table.title)}}}")
    out.append(rf"\begin{{tabular}}{{{spec}}}")
    out.append(r"\toprule")
    out.append(" & ".join(latex_escape(c.header) for c in table.columns) + r" \\")
    out.append(r"\midrule")
    for i, row in enumerate(table.rows):
        style = row_style(row)
        if style == TOTAL and i > 0:
            out.append(r"\midrule")
        if is_heading(table, row):
            out.append(rf"\multicolumn{{{n}}}{{l}}{{\textit{{{latex_escape(group_label(table, row))}}}}} \\")
            continue
        cells = [latex_escape(cell_text(row, c)) for c in table.columns]
        if style == TOTAL:
            cells = [rf"\textbf{{{c}}}" if c else c for c in cells]
        elif style is not None:
            cells = [rf"\textit{{{c}}}" if c else c for c in cells]
        out.append(" & ".join(cells) + r" \\")
    out.append(r"\bottomrule")
    out.append(r"\end{tabular}")
    if table.footnotes:
        out.append(r"\par\smallskip")
        out.append(r"\begingroup\footnotesize")
        out += [latex_escape(note) + r"\par" for note in table.footnotes]
        out.append(r"\endgroup")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"
