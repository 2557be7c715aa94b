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


def rf_cells(rf: ReceptiveField | None) -> dict[str, str]:
    if rf is None:
        return {"rf": "", "jump": "", "start": ""}
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


def arg_cell(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


__all__ = ["arg_cell", "arg_header", "dims", "kernel_stride", "num", "output_size", "rf_cells"]
