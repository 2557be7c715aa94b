"""How papers write a layer's facts in a table cell: kernel/stride `7×7/2`, output `112×112×64` (spatial sizes,
then channels; the batch is in the table's title), receptive fields, block arguments and column headings."""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from archc.analysis.model import ReceptiveField
from archc.shapes import fmt_dims as dims


def num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def kernel_stride(kernel: Sequence[int] | None, stride: Sequence[int] | None) -> str:
    if not kernel:
        return ""
    s = stride or (1,) * len(kernel)
    return f"{dims(kernel)}/{num(s[0]) if len(set(s)) == 1 else dims(s)}"


def output_size(shape: Sequence[int] | None) -> str:
    """N×C×H×W → H×W×C; N×F → F."""
    if not shape:
        return "?"
    if len(shape) <= 2:
        return num(shape[-1])
    return dims(tuple(shape[2:]) + (shape[1],))


_SPATIAL = {1: "L", 2: "H×W", 3: "D×H×W"}


def output_convention(shapes: Sequence[Sequence[int] | None]) -> str | None:
    """How `output_size` writes these shapes, for a column heading: 'H×W×C' for images, 'L×C' or 'D×H×W×C' for
    1-D or 3-D data, '…×C' for a mix; None when none has spatial axes (vectors show their length)."""
    ranks = {len(s) - 2 for s in shapes if s and len(s) > 2}
    if not ranks:
        return None
    if len(ranks) == 1 and (r := ranks.pop()) in _SPATIAL:
        return f"{_SPATIAL[r]}×C"
    return "…×C"


def input_convention(shape: Sequence[int] | None) -> str | None:
    """How ONNX stores an input of this rank: N×C×H×W for images (None for other ranks)."""
    if not shape or len(shape) - 2 not in _SPATIAL:
        return None
    return f"N×C×{_SPATIAL[len(shape) - 2]}"


def output_note(shapes: Sequence[Sequence[int] | None], inputs: Sequence[Sequence[int] | None]) -> str | None:
    """The footnote that says why outputs are written spatial-first while the title's input is batch-first."""
    conv = output_convention(shapes)
    if conv is None:
        return None
    vectors = any(s and len(s) <= 2 for s in shapes)
    stored = {c for c in (input_convention(s) for s in inputs) if c}
    title = f" ({', '.join(sorted(stored))})" if stored else ""
    return (f"Output ({conv}): spatial size, then channels, as papers print it" +
            ("; a vector shows its length" if vectors else "") +
            f". The batch is left out: the title gives the input as ONNX stores it, batch first{title}.")


def rf_cells(rf: ReceptiveField | None, main: ReceptiveField | None = None) -> dict[str, str]:
    """Size, jump and start; where a gate makes the strict field the whole input but the main path's is finite
    (squeeze-excitation), the main path's beside it: `whole; main 99×99`, with its jump and start."""
    if rf is None:
        return {"rf": "", "jump": "", "start": ""}
    if rf.whole and main is not None and not main.whole:
        return {**rf_cells(main), "rf": f"whole; main {dims(main.size)}"}
    if rf.whole:
        return {"rf": f"whole ({dims(rf.size)})", "jump": "", "start": ""}
    return {"rf": dims(rf.size), "jump": dims(rf.stride) if len(set(rf.stride)) > 1 else num(rf.stride[0]),
            "start": dims(rf.start) if len(set(rf.start)) > 1 else num(rf.start[0])}


_WIDTH_ARG = re.compile(r"^c(\d)x(\d)(r?)$")


def arg_header(name: str) -> str:
    """GoogLeNet's columns: c3x3r → '#3×3 reduce', c5x5 → '#5×5', pool_proj → 'pool proj'."""
    m = _WIDTH_ARG.match(name)
    if m:
        return f"#{m.group(1)}×{m.group(2)}" + (" reduce" if m.group(3) else "")
    return name.replace("_", " ")


def arg_short(name: str) -> str | None:
    """A short heading for a block argument, used when a table is fitted to a terminal: c3x3r → '#3×3r',
    pool_proj → 'pp'; None when there is none shorter."""
    m = _WIDTH_ARG.match(name)
    if m:
        return f"#{m.group(1)}×{m.group(2)}" + ("r" if m.group(3) else "")
    words = [w for w in name.split("_") if w]
    if len(words) > 1:
        return "".join(w[0] for w in words)
    return None


def arg_cell(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


__all__ = ["arg_cell", "arg_header", "arg_short", "dims", "input_convention", "kernel_stride", "num",
           "output_convention", "output_note", "output_size", "rf_cells"]
