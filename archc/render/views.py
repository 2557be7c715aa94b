"""Analysis results → Tables: the per-layer table, the per-block table (the papers' layout), totals, a
comparison, a diff. `tables_for` picks the views for a result; cells are written by `render.cells`.
"""
from __future__ import annotations

from archc.analysis.blocks import fold_stages
from archc.analysis.compare import Comparison, Diff
from archc.analysis.model import Analysis, Block, Layer
from archc.ops.registry import onnx_rule
from archc.render.cells import arg_cell, arg_header, dims, kernel_stride, num, output_size, rf_cells
from archc.render.table import Align, Column, Fmt, Table, human_bytes, si

R = Align.RIGHT
CONVENTIONS = [
    "MACs: multiply-accumulates of convolutions, transposed convolutions, dense layers and MatMuls (what "
    "torchvision and fvcore call FLOPs). FLOPs: 2×MACs plus every other op's arithmetic, by the rule for its "
    "ONNX type (see `archc ops --costs`).",
    "Params: trainable weights; batch-norm running statistics are counted apart as non-trainable. "
    "RF: receptive field size, jump (effective stride) and start (centre of the first unit), in input pixels.",
]


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


def layer_row(lay: Layer) -> dict:
    return {"name": lay.name, "op": lay.op, "ks": kernel_stride(lay.kernel, lay.stride),
            "output": output_size(lay.output_shape), "params": lay.params, "macs": lay.macs, "flops": lay.flops,
            "elements": lay.activation_elements,
            "activation": lay.activation_bytes,
            **rf_cells(lay.receptive_field)}


def totals_row(a: Analysis, name_key: str = "name") -> dict:
    t = a.totals
    return {name_key: "Total", "style": "total", "params": t.trainable_params, "macs": t.macs, "flops": t.flops,
            "elements": t.activation_elements, "activation": t.activation_bytes}


def layer_table(a: Analysis) -> Table:
    rows = [layer_row(lay) for lay in a.layers] + [totals_row(a)]
    return Table(_title(a, "layers"), LAYER_COLUMNS, rows, footnotes(a))


# ---- per block ---------------------------------------------------------------------------------------------------
def block_table(a: Analysis, blocks: list[Block] | None = None) -> Table:
    blocks = blocks if blocks is not None else a.blocks
    by_first: dict[str, Block] = {}
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
    for lay in a.layers:
        if lay.name in by_first:
            b = by_first[lay.name]
            rows.append({"name": b.path + (f" ×{b.count}" if b.count > 1 else ""), "type": b.type,
                         "ks": kernel_stride(b.kernel, b.stride) if b.kernel else (
                             f"/{num(b.stride[0])}" if b.stride and max(b.stride) > 1 else ""),
                         "output": output_size(b.output_shape), "depth": b.depth,
                         **{f"arg:{k}": arg_cell(b.args[k]) if k in b.args else "" for k in arg_names},
                         "params": b.params, "macs": b.macs})
        elif lay.name not in in_block:
            rule = onnx_rule(lay.op)
            if rule is not None and rule.folded:
                continue
            rows.append({"name": lay.name, "type": lay.spec_op or lay.op, "ks": kernel_stride(lay.kernel, lay.stride),
                         "output": output_size(lay.output_shape), "depth": 1 if lay.macs else 0,
                         **{f"arg:{k}": "" for k in arg_names}, "params": lay.params, "macs": lay.macs})
    rows.append({"name": "Total", "style": "total", "depth": a.totals.depth, "params": a.totals.trainable_params,
                 "macs": a.totals.macs})
    return Table(_title(a, "blocks"), cols, rows, footnotes(a))


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


def _output_rf(rf: tuple[float, ...] | None, whole: bool) -> str:
    if whole:
        return f"whole ({dims(rf)} before)" if rf else "whole"
    return dims(rf) if rf else ""


def compare_table(c: Comparison) -> Table:
    rows = [{"model": r.model, "input": dims(r.input) if r.input else "", "params": r.params, "macs": r.macs,
             "flops": r.flops, "activations": r.activations, "peak": r.peak, "depth": r.depth,
             "rf": _output_rf(r.rf, r.rf_whole), "weights": r.weights} for r in c.rows]
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


def diff_table(d: Diff) -> Table:
    rows: list[dict] = [
        {"name": c.name, "change": c.change, "output_a": output_size(c.output_a) if c.output_a else "",
         "output_b": output_size(c.output_b) if c.output_b else "", "params_a": c.params_a, "params_b": c.params_b,
         "params_d": c.params_d, "macs_a": c.macs_a, "macs_b": c.macs_b, "macs_d": c.macs_d} for c in d.changes]
    rows.append({"name": "Total", "style": "total", "params_a": d.params_a, "params_b": d.params_b,
                 "params_d": d.params_b - d.params_a, "macs_a": d.macs_a, "macs_b": d.macs_b,
                 "macs_d": d.macs_b - d.macs_a})
    return Table(f"{d.a} → {d.b}: what the change costs", DIFF_COLUMNS, rows,
                 [f"{d.unchanged} layers unchanged (not listed). Layers are matched by name."])


# ---- which views a result gets -------------------------------------------------------------------------------------
def tables_for(result: Analysis | Comparison | Diff, by: str = "block", stages: bool = False) -> list[Table]:
    """One model: its block (or layer) table and totals; a comparison or a diff: its one table."""
    if isinstance(result, Comparison):
        return [compare_table(result)]
    if isinstance(result, Diff):
        return [diff_table(result)]
    if by == "layer":
        return [layer_table(result), totals_table(result)]
    blocks = fold_stages(result.blocks) if stages else result.blocks
    return [block_table(result, blocks), totals_table(result)]
