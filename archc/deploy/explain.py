"""`archc compile --explain-layout`: the layout plan a package was built with, as a table."""
from __future__ import annotations

from typing import Any


def table(plan: dict[str, Any]) -> str:
    convs = plan.get("convolutions", [])
    rows = [("#", "convolution", "in", "out", "relayout", "folded ops")]
    rows += [(str(i), c["conv"], c["in"], c["out"], "yes" if c["relayout"] else "", str(c["folded"] or ""))
             for i, c in enumerate(convs, 1)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"layout plan: {len(convs)} convolutions in NCHW[x]c ({plan.get('lanes')} fp32 lanes per vector)"]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    transforms = plan.get("transforms", [])
    lines.append(f"layout changes between ops: {len(transforms)}")
    lines += [f"  {t}" for t in transforms]
    return "\n".join(lines)
