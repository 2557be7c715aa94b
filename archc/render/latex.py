"""LaTeX (booktabs) rendering of a `Table`, ready to paste into a paper. Needs \\usepackage{booktabs} and
\\usepackage{graphicx} (a table wider than the line is shrunk to it with \\resizebox); the output says so in a
comment at its top."""
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
    "`": r"\textasciigrave{}",
    "\n": " ",
}
_RE = re.compile("|".join(re.escape(k) for k in _SPECIALS))


def latex_escape(s: str) -> str:
    """Escape LaTeX specials (\\ & % $ # _ { } ~ ^ < > `) and map a few Unicode symbols (× → …) to math."""
    return _RE.sub(lambda m: _SPECIALS[m.group(0)], s)


_CODE = re.compile(r"`([^`\n]+)`")


def latex_note(s: str) -> str:
    """A footnote's text: `code` spans (a command, an option) set in \\texttt, everything else escaped; a stray
    backtick is escaped like any special."""
    out, pos = [], 0
    for m in _CODE.finditer(s):
        out.append(latex_escape(s[pos:m.start()]))
        out.append(r"\texttt{" + latex_escape(m.group(1)).replace("--", "-{}-") + "}")
        pos = m.end()
    out.append(latex_escape(s[pos:]))
    return "".join(out)


PACKAGES = r"% archc table: needs \usepackage{booktabs} and \usepackage{graphicx} (\resizebox shrinks it to the line)"
# Shrinks the tabular to the line's width when it is wider, never enlarges it (graphicx reads \width, the
# natural width, inside \resizebox's size arguments).
_FIT = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%"


def render_latex(table: Table) -> str:
    """A `table` float with a booktabs `tabular`, shrunk to the line's width when wider (needs booktabs and
    graphicx, as a comment on its first line says)."""
    n = len(table.columns)
    spec = " ".join("r" if c.align is Align.RIGHT else "l" for c in table.columns)
    out = [PACKAGES, r"\begin{table}[t]", r"\centering", r"\small"]
    if table.title:
        out.append(rf"\caption{{{latex_escape(table.title)}}}")
    out.append(_FIT)
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
    out.append("}")
    if table.footnotes:
        out.append(r"\par\smallskip")
        out.append(r"\begingroup\footnotesize")
        out += [latex_note(note) + r"\par" for note in table.footnotes]
        out.append(r"\endgroup")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"
