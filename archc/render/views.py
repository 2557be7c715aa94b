"""Analysis → Tables: the per-layer table, the per-block table (the papers' layout), totals, comparisons, diffs.

Sizes are written as papers write them: kernel/stride `7×7/2`, output `112×112×64` (spatial sizes, then
channels; the batch is in the title).
"""
from __future__ import annotations

import re

from archc.analyze.blocks import fold_stages  # noqa: F401  (re-exported for the CLI)
from archc.analyze.model import Analysis, Block, Layer, ReceptiveField
from archc.ops.registry import onnx_rule
from archc.render.table import Align, Column, Fmt, Table, human_bytes, si

R = Align.RIGHT
CONVENTIONS = [
    "MACs: multiply-accumulates of convolutions, transposed convolutions, dense layers and MatMuls (what "
    "torchvision and fvcore call FLOPs). FLOPs: 2×MACs plus every other op's arithmetic, by the rule for its "
    "ONNX type (see `archc ops --costs`).",
    "Params: trainable weights; batch-norm running statistics are counted apart as non-trainable. "
    "RF: receptive field size, jump (effective stride) and start (centre of the first unit), in input pixels.",
]


# ---- formatting as papers write it -------------------------------------------------------------------------------
def dims(values) -> str:
    return "×".join(_num(v) for v in values)


def _num(v) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def kernel_stride(kernel, stride) -> str:
    if not kernel:
        return ""
    s = stride or (1,) * len(kernel)
    return f"{dims(kernel)}/{_num(s[0]) if len(set(s)) == 1 else dims(s)}"


def output_size(shape) -> str:
    """N×C×H×W → H×W×C; N×F → F."""
    if not shape:
        return "?"
    if len(shape) <= 2:
        return _num(shape[-1])
    return dims(tuple(shape[2:]) + (shape[1],))


def rf_cells(rf: ReceptiveField | None) -> dict:
    if rf is None:
        return {"rf": "", "jump": "", "start": ""}
    if rf.whole:
        return {"rf": f"whole ({dims(rf.size)})", "jump": "", "start": ""}
    return {"rf": dims(rf.size), "jump": dims(rf.stride) if len(set(rf.stride)) > 1 else _num(rf.stride[0]),
            "start": dims(rf.start) if len(set(rf.start)) > 1 else _num(rf.start[0])}


def _title(a: Analysis, what: str) -> str:
    inputs = ", ".join(f"{i['name']} {dims(i['shape'])}" for i in a.inputs)
    return f"{a.model}: {what} (input {inputs})"


def footnotes(a: Analysis) -> list[str]:
    notes = list(CONVENTIONS)
    if a.totals.unknown_ops:
        notes.append("Totals exclude ops without a cost rule: " +
                     ", ".join(f"{op} ×{n}" for op, n in sorted(a.totals.unknown_ops.items())) + ".")
    if a.hidden_shape_nodes:
        notes.append(f"{a.hidden_shape_nodes} shape-computation nodes are not listed.")
    return notes


# ---- per layer ---------------------------------------------------------------------------------------------------
LAYER_COLUMNS = [
    Column("name", "Layer"), Column("op", "Op"), Column("ks", "Kernel/Stride", align=R),
    Column("output", "Output", align=R), Column("params", "Params", Fmt.INT, R), Column("macs", "MACs", Fmt.INT, R),
    Column("flops", "FLOPs", Fmt.INT, R), Column("elements", "Act. elements", Fmt.INT, R),
    Column("activation", "Act. bytes", Fmt.BYTES, R),
    Column("rf", "RF", align=R), Column("jump", "Jump", align=R), Column("start", "Start", align=R),
]


def layer_row(l: Layer) -> dict:
    return {"name": l.name, "op": l.op, "ks": kernel_stride(l.kernel, l.stride), "output": output_size(l.output_shape),
            "params": l.params, "macs": l.macs, "flops": l.flops, "elements": l.activation_elements,
            "activation": l.activation_bytes,
            **rf_cells(l.receptive_field)}


def totals_row(a: Analysis, name_key: str = "name") -> dict:
    t = a.totals
    return {name_key: "Total", "style": "total", "params": t.trainable_params, "macs": t.macs, "flops": t.flops,
            "elements": t.activation_elements, "activation": t.activation_bytes}


def layer_table(a: Analysis) -> Table:
    rows = [layer_row(l) for l in a.layers] + [totals_row(a)]
    return Table(_title(a, "layers"), LAYER_COLUMNS, rows, footnotes(a))


# ---- per block ---------------------------------------------------------------------------------------------------
_WIDTH_ARG = re.compile(r"^c(\d)x(\d)(r?)$")


def arg_header(name: str) -> str:
    """GoogLeNet's columns: c3x3r → '#3×3 reduce', c5x5 → '#5×5', pool_proj → 'pool proj'."""
    m = _WIDTH_ARG.match(name)
    if m:
        return f"#{m.group(1)}×{m.group(2)}" + (" reduce" if m.group(3) else "")
    return name.replace("_", " ")


def block_table(a: Analysis, blocks: list[Block] | None = None) -> Table:
    blocks = blocks if blocks is not None else a.blocks
    by_first = {}
    for b in blocks:
        by_first.setdefault(b.layers[0], b)
    arg_names: list[str] = []
    for b in blocks:
        for k, v in b.args.items():
            if k not in arg_names and not (isinstance(v, str) and v.startswith("@")):
                arg_names.append(k)
    cols = [Column("name", "Name"), Column("type", "Type"), Column("ks", "Patch/Stride", align=R),
            Column("output", "Output", align=R), Column("depth", "Depth", Fmt.INT, R)]
    cols += [Column(f"arg:{k}", arg_header(k), align=R) for k in arg_names]
    cols += [Column("params", "Params", Fmt.INT, R), Column("macs", "MACs", Fmt.INT, R)]
    rows = []
    in_block = {name for b in blocks for name in b.layers}
    for l in a.layers:
        if l.name in by_first:
            b = by_first[l.name]
            rows.append({"name": b.path + (f" ×{b.count}" if b.count > 1 else ""), "type": b.type,
                         "ks": kernel_stride(b.kernel, b.stride) if b.kernel else (
                             f"/{_num(b.stride[0])}" if b.stride and max(b.stride) > 1 else ""),
                         "output": output_size(b.output_shape), "depth": b.depth,
                         **{f"arg:{k}": _arg(b.args[k]) if k in b.args else "" for k in arg_names},
                         "params": b.params, "macs": b.macs})
        elif l.name not in in_block:
            rule = onnx_rule(l.op)
            if rule is not None and rule.folded:
                continue
            rows.append({"name": l.name, "type": l.spec_op or l.op, "ks": kernel_stride(l.kernel, l.stride),
                         "output": output_size(l.output_shape), "depth": 1 if l.macs else 0,
                         **{f"arg:{k}": "" for k in arg_names}, "params": l.params, "macs": l.macs})
    rows.append({"name": "Total", "style": "total", "depth": a.totals.depth, "params": a.totals.trainable_params,
                 "macs": a.totals.macs})
    return Table(_title(a, "blocks"), cols, rows, footnotes(a))


def _arg(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# ---- totals --------------------------------------------------------------------------------------------------------
def totals_table(a: Analysis) -> Table:
    t = a.totals
    rows = [
        ("Parameters (trainable)", f"{t.trainable_params:,}"),
        ("Non-trainable (BN statistics)", f"{t.nontrainable_params:,}"),
        ("MACs", f"{t.macs:,} ({si(t.macs)})"),
        ("FLOPs", f"{t.flops:,} ({si(t.flops)})"),
        ("Activations (all layer outputs)", f"{t.activation_elements:,} elements, {human_bytes(t.activation_bytes)}"),
        ("Peak memory (weights + live activations)",
         f"{human_bytes(t.peak_memory_bytes)} while running {t.peak_after}: {human_bytes(t.weight_bytes)} weights + "
         f"{human_bytes(t.peak_activation_bytes)} activations ({', '.join(t.peak_tensors[:4])}"
         f"{', …' if len(t.peak_tensors) > 4 else ''})"),
        ("Weights float32 / float16 / int8", " / ".join(human_bytes(v) for v in t.weight_bytes_by_dtype.values())),
        ("Depth (layers with MACs on the longest path)", str(t.depth)),
        ("Layers by type", ", ".join(f"{op} {n}" for op, n in sorted(t.layer_counts.items(), key=lambda x: -x[1]))),
    ]
    if t.unknown_ops:
        rows.append(("Without a cost rule (excluded)", ", ".join(f"{op} ×{n}" for op, n in t.unknown_ops.items())))
    return Table(_title(a, "totals"), [Column("what", "Total"), Column("value", "Value")],
                 [{"what": k, "value": v} for k, v in rows])


# ---- comparisons -------------------------------------------------------------------------------------------------
COMPARE_COLUMNS = [
    Column("model", "Model"), Column("input", "Input", align=R), Column("params", "Params", Fmt.SI, R),
    Column("macs", "MACs", Fmt.SI, R), Column("flops", "FLOPs", Fmt.SI, R),
    Column("activations", "Activations", Fmt.BYTES, R), Column("peak", "Peak memory", Fmt.BYTES, R),
    Column("depth", "Depth", Fmt.INT, R), Column("rf", "Output RF", align=R),
    Column("weights", "Weights (fp32)", Fmt.BYTES, R),
]
SORT_KEYS = [c.key for c in COMPARE_COLUMNS]


def _output_rf(a: Analysis) -> str:
    """The largest field among the layers that feed the outputs (before any global layer)."""
    spatial = [l.receptive_field for l in a.layers if l.receptive_field is not None]
    finite = [rf for rf in spatial if not rf.whole]
    if spatial and spatial[-1].whole:
        return f"whole ({dims(finite[-1].size)} before)" if finite else "whole"
    return dims(spatial[-1].size) if spatial else ""


def compare_table(analyses: list[Analysis], sort: str | None = None) -> Table:
    rows = [{"model": a.model, "input": dims(a.inputs[0]["shape"][1:]) if a.inputs else "",
             "params": a.totals.trainable_params, "macs": a.totals.macs, "flops": a.totals.flops,
             "activations": a.totals.activation_bytes, "peak": a.totals.peak_memory_bytes,
             "depth": a.totals.depth, "rf": _output_rf(a), "weights": a.totals.weight_bytes_by_dtype["float32"]}
            for a in analyses]
    if sort:
        rows.sort(key=lambda r: (r[sort] is None, r[sort]), reverse=sort not in ("model", "input", "rf"))
    notes = [CONVENTIONS[0], "Peak memory: weights plus the activations alive at once when run in graph order."]
    return Table("Model comparison", COMPARE_COLUMNS, rows, notes)


# ---- diff ----------------------------------------------------------------------------------------------------------
DIFF_COLUMNS = [
    Column("name", "Layer"), Column("change", "Change"), Column("output_a", "Output A", align=R),
    Column("output_b", "Output B", align=R), Column("params_a", "Params A", Fmt.INT, R),
    Column("params_b", "Params B", Fmt.INT, R), Column("params_d", "ΔParams", Fmt.INT, R),
    Column("macs_a", "MACs A", Fmt.INT, R), Column("macs_b", "MACs B", Fmt.INT, R),
    Column("macs_d", "ΔMACs", Fmt.INT, R),
]


def _delta(a, b):
    return None if a is None or b is None else b - a


def diff_table(a: Analysis, b: Analysis) -> Table:
    """Layers matched by name; a row for each layer that was added, removed or changed its output or cost."""
    la, lb = {l.name: l for l in a.layers}, {l.name: l for l in b.layers}
    order = [l.name for l in a.layers] + [l.name for l in b.layers if l.name not in la]
    rows = []
    for name in order:
        x, y = la.get(name), lb.get(name)
        if x and y and (x.output_shape, x.params, x.macs, x.op) == (y.output_shape, y.params, y.macs, y.op):
            continue
        change = "added" if x is None else "removed" if y is None else "changed"
        rows.append({"name": name, "change": change,
                     "output_a": output_size(x.output_shape) if x else "", "output_b":
                     output_size(y.output_shape) if y else "",
                     "params_a": x.params if x else 0, "params_b": y.params if y else 0,
                     "params_d": (y.params if y else 0) - (x.params if x else 0),
                     "macs_a": x.macs if x else 0, "macs_b": y.macs if y else 0,
                     "macs_d": _delta(x.macs if x else 0, y.macs if y else 0)})
    ta, tb = a.totals, b.totals
    rows.append({"name": "Total", "style": "total", "params_a": ta.trainable_params, "params_b": tb.trainable_params,
                 "params_d": tb.trainable_params - ta.trainable_params, "macs_a": ta.macs, "macs_b": tb.macs,
                 "macs_d": tb.macs - ta.macs})
    same = len(a.layers) - sum(1 for r in rows if r.get("change") in ("changed", "removed"))
    return Table(f"{a.model} → {b.model}: what the change costs", DIFF_COLUMNS, rows,
                 [f"{same} layers unchanged (not listed). Layers are matched by name."])
