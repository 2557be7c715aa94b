"""Analysis results → Tables: the per-layer table, the per-block table (the papers' layout), totals, a
comparison, a diff. `tables_for` picks the views for a result; cells are written by `render.cells`.
"""
from __future__ import annotations

from archc.analysis.blocks import fold_stages
from archc.analysis.compare import Comparison, Diff
from archc.analysis.model import Analysis, Block, Layer
from archc.deploy.profile import Profile
from archc.ops.registry import onnx_rule
from archc.render.cells import (
    arg_cell,
    arg_header,
    arg_short,
    dims,
    input_convention,
    kernel_stride,
    num,
    output_convention,
    output_note,
    output_size,
    rf_cells,
)
from archc.render.table import Align, Column, Fmt, Table, count_fmt, human_bytes, si

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


def _output_header(shapes: list, name: str = "Output") -> str:
    conv = output_convention(shapes)
    return f"{name} ({conv})" if conv else name


def footnotes(a: Analysis) -> list[str]:
    notes = list(CONVENTIONS)
    note = output_note([lay.output_shape for lay in a.layers], [i["shape"] for i in a.inputs])
    if note:
        notes.append(note)
    if a.totals.unknown_ops:
        notes.append("Totals exclude layers of unknown cost (no cost rule, or unknown shapes): " +
                     ", ".join(f"{op} ×{n}" for op, n in sorted(a.totals.unknown_ops.items())) + ".")
    if a.hidden_shape_nodes:
        notes.append(f"{a.hidden_shape_nodes} shape-computation nodes are not listed.")
    return notes


# ---- per layer ---------------------------------------------------------------------------------------------------
# `drop`: which columns a terminal too narrow leaves out first (the highest number first; 0: always kept).
def layer_columns(units: str | None = None, output: str = "Output") -> list[Column]:
    count = count_fmt(units, Fmt.INT)
    return [
        Column("name", "Layer"), Column("op", "Op", drop=1),
        Column("ks", "Kernel/Stride", align=R, short="K/S", drop=2),
        Column("output", output, align=R, short="Output"), Column("params", "Params", count, R),
        Column("macs", "MACs", count, R), Column("flops", "FLOPs", count, R, drop=5),
        Column("elements", "Act. elements", count, R, drop=6), Column("activation", "Act. bytes", Fmt.BYTES, R, drop=4),
        Column("rf", "RF", align=R, drop=3), Column("jump", "Jump", align=R, drop=7),
        Column("start", "Start", align=R, drop=8),
    ]


LAYER_COLUMNS = layer_columns()


def layer_row(lay: Layer) -> dict:
    return {"name": lay.name, "op": lay.op, "ks": kernel_stride(lay.kernel, lay.stride),
            "output": output_size(lay.output_shape), "params": lay.params, "macs": lay.macs, "flops": lay.flops,
            "elements": lay.activation_elements,
            "activation": lay.activation_bytes,
            **rf_cells(lay.receptive_field, lay.receptive_field_main)}


def totals_row(a: Analysis, name_key: str = "name") -> dict:
    t = a.totals
    return {name_key: "Total", "style": "total", "params": t.trainable_params, "macs": t.macs, "flops": t.flops,
            "elements": t.activation_elements, "activation": t.activation_bytes}


def layer_table(a: Analysis, units: str | None = None) -> Table:
    """One row per layer. `units`: counts as "exact" integers (the default) or "si" (25.56M)."""
    rows = [layer_row(lay) for lay in a.layers] + [totals_row(a)]
    output = _output_header([lay.output_shape for lay in a.layers])
    return Table(_title(a, "layers"), layer_columns(units, output), rows, footnotes(a))


# ---- per block ---------------------------------------------------------------------------------------------------
def block_table(a: Analysis, blocks: list[Block] | None = None, units: str | None = None) -> Table:
    """One row per block instance (or `blocks`, e.g. folded stages), layers outside blocks on their own rows.
    `units`: counts as "exact" integers (the default) or "si" (25.56M)."""
    count = count_fmt(units, Fmt.INT)
    blocks = blocks if blocks is not None else a.blocks
    by_first: dict[str, Block] = {}
    for b in blocks:
        by_first.setdefault(b.layers[0], b)
    arg_names: list[str] = []
    for b in blocks:
        for k, v in b.args.items():
            if k not in arg_names and not (isinstance(v, str) and v.startswith("@")):
                arg_names.append(k)
    output = _output_header([lay.output_shape for lay in a.layers])
    cols = [Column("name", "Name"), Column("type", "Type", drop=1),
            Column("ks", "Patch/Stride", align=R, short="P/S", drop=2),
            Column("output", output, align=R, short="Output"), Column("depth", "Depth", Fmt.INT, R, drop=4)]
    cols += [Column(f"arg:{k}", arg_header(k), align=R, short=arg_short(k), drop=3, fold=True) for k in arg_names]
    cols += [Column("params", "Params", count, R), Column("macs", "MACs", count, R)]
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
        ("Depth (layers with MACs on the main path)", str(t.depth) + (
            f" ({t.depth_longest} on the longest path, side branches such as SE gates included)"
            if t.depth_longest and t.depth_longest != t.depth else "")),
        ("Layers by type", ", ".join(f"{op} {n}" for op, n in sorted(t.layer_counts.items(), key=lambda x: -x[1]))),
    ]
    if t.anchors:
        h, w, k = t.anchors
        rows.append(("RPN anchors (H×W×k)", f"{h}×{w}×{k} = {h * w * k:,} ({k} a location of the {h}×{w} map)"))
    if t.proposals:
        rows.append(("Per proposal (the layers after the proposals input)",
                     f"{t.per_proposal_macs:,} MACs ({si(t.per_proposal_macs)}), run for each of {t.proposals:,}: "
                     f"{t.proposals * t.per_proposal_macs:,} ({si(t.proposals * t.per_proposal_macs)})"))
    if t.unknown_ops:
        rows.append(("Of unknown cost (excluded)", ", ".join(f"{op} ×{n}" for op, n in t.unknown_ops.items())))
    return Table(_title(a, "totals"), [Column("what", "Total"), Column("value", "Value", wrap=True)],
                 [{"what": k, "value": v} for k, v in rows])


def totals_data(a: Analysis) -> Table:
    """The totals for machines (`--totals --format csv`): one row per quantity, named as in the JSON contract's
    `totals` (nested ones as `weight_bytes_by_dtype.float16`, `layer_counts.Conv`), raw values."""
    t = a.to_json()["totals"]
    rows: list[dict] = [{"quantity": "model", "value": a.model}, {"quantity": "batch", "value": a.batch}]
    for key, value in t.items():
        if isinstance(value, dict):
            rows += [{"quantity": f"{key}.{k}", "value": v} for k, v in value.items()]
        elif isinstance(value, list):
            rows.append({"quantity": key, "value": " ".join(map(str, value))})
        else:
            rows.append({"quantity": key, "value": value})
    return Table(_title(a, "totals"), [Column("quantity", "Quantity"), Column("value", "Value")], rows)


# ---- comparisons -------------------------------------------------------------------------------------------------
def compare_columns(units: str | None = None, input_header: str = "Input") -> list[Column]:
    count = count_fmt(units, Fmt.SI)
    return [
        Column("model", "Model"), Column("input", input_header, align=R, short="Input", drop=4),
        Column("params", "Params", count, R), Column("macs", "MACs", count, R),
        Column("flops", "FLOPs", count, R, drop=5), Column("activations", "Activations", Fmt.BYTES, R, drop=6),
        Column("peak", "Peak memory", Fmt.BYTES, R, drop=2), Column("depth", "Depth", Fmt.INT, R, drop=3),
        Column("rf", "Output RF", align=R, drop=8), Column("weights", "Weights (fp32)", Fmt.BYTES, R, drop=7),
    ]


COMPARE_COLUMNS = compare_columns()


def _output_rf(rf: tuple[float, ...] | None, whole: bool) -> str:
    if whole:
        return f"whole ({dims(rf)} before)" if rf else "whole"
    return dims(rf) if rf else ""


def compare_table(c: Comparison, units: str | None = None) -> Table:
    """One row per model. `units`: counts as "si" (25.56M, the default) or "exact" integers."""
    rows = [{"model": r.model, "input": dims(r.input) if r.input else "", "params": r.params, "macs": r.macs,
             "flops": r.flops, "activations": r.activations, "peak": r.peak, "depth": r.depth,
             "rf": _output_rf(r.rf, r.rf_whole), "weights": r.weights} for r in c.rows]
    notes = [CONVENTIONS[0], "Peak memory: weights plus the activations alive at once when run in graph order."]
    stored = {conv for conv in (input_convention((1, *r.input)) for r in c.rows if r.input) if conv}
    header = f"Input ({stored.pop()[2:]})" if len(stored) == 1 else "Input"
    if header != "Input":
        notes.append(f"{header}: each model's first input as ONNX stores it, without the batch.")
    return Table("Model comparison", compare_columns(units, header), rows, notes)


# ---- diff ----------------------------------------------------------------------------------------------------------
def diff_columns(units: str | None = None, conv: str | None = None) -> list[Column]:
    count = count_fmt(units, Fmt.INT)
    suffix = f" ({conv})" if conv else ""
    return [
        Column("name", "Layer"), Column("change", "Change"),
        Column("output_a", "Output A" + suffix, align=R, short="Output A", drop=6),
        Column("output_b", "Output B" + suffix, align=R, short="Output B", drop=5),
        Column("params_a", "Params A", count, R, drop=4), Column("params_b", "Params B", count, R, drop=2),
        Column("params_d", "ΔParams", count, R), Column("macs_a", "MACs A", count, R, drop=3),
        Column("macs_b", "MACs B", count, R, drop=1), Column("macs_d", "ΔMACs", count, R),
    ]


DIFF_COLUMNS = diff_columns()


def diff_table(d: Diff, units: str | None = None) -> Table:
    """The layers that differ. `units`: counts as "exact" integers (the default) or "si" (25.56M)."""
    rows: list[dict] = [
        {"name": c.name, "change": c.change, "output_a": output_size(c.output_a) if c.output_a else "",
         "output_b": output_size(c.output_b) if c.output_b else "", "params_a": c.params_a, "params_b": c.params_b,
         "params_d": c.params_d, "macs_a": c.macs_a, "macs_b": c.macs_b, "macs_d": c.macs_d} for c in d.changes]
    rows.append({"name": "Total", "style": "total", "params_a": d.params_a, "params_b": d.params_b,
                 "params_d": d.params_b - d.params_a, "macs_a": d.macs_a, "macs_b": d.macs_b,
                 "macs_d": d.macs_b - d.macs_a})
    shapes = [s for c in d.changes for s in (c.output_a, c.output_b) if s]
    notes = [f"{d.unchanged} layers unchanged (not listed). Layers are matched by name."]
    conv = output_convention(shapes)
    if conv:
        notes.append(f"Outputs ({conv}): spatial size, then channels, as papers print them; the batch is left out.")
    return Table(f"{d.a} → {d.b}: what the change costs", diff_columns(units, conv), rows, notes)


# ---- which views a result gets -------------------------------------------------------------------------------------
def profile_table(p: Profile) -> Table:
    """`archc profile`: each kernel's time, share and arguments, slowest first; the kernels' sum and the measured
    end-to-end time below."""
    cols = [Column("name", "Kernel"), Column("calls", "Calls", Fmt.INT, R), Column("us", "Time (µs)", Fmt.FLOAT, R),
            Column("share", "Share", align=R), Column("macs", "MACs", Fmt.INT, R),
            Column("gflops", "GFLOP/s", Fmt.FLOAT, R), Column("vector", "Vector", align=R),
            Column("nodes", "ONNX nodes", wrap=True), Column("args", "Arguments", wrap=True)]
    total = p.kernels_seconds or 1.0
    rows: list[dict] = [{"name": k.name, "calls": k.calls, "us": k.total_seconds * 1e6,
                         "share": f"{100 * k.total_seconds / total:.1f}%", "macs": k.macs,
                         "gflops": "" if k.macs == 0 else k.gflops, "vector": k.vector or "?",
                         "nodes": _node_list(k.nodes),
                         "args": ", ".join(k.args)}
                        for k in p.kernels]
    rows.append({"name": "Kernels (sum)", "style": "total", "us": p.kernels_seconds * 1e6, "share": "100.0%"})
    rows.append({"name": "End to end (median)", "style": "total", "us": p.end_to_end_seconds * 1e6})
    return Table(f"{p.package}: kernels ({p.target})", cols, rows,
                 ["Each kernel timed alone on random arguments of its shapes (TVM's time_evaluator); the end-to-end "
                  "time is the whole model's, the difference is what runs between kernels. ONNX nodes: matched "
                  "by op and shapes (TVM keeps no node names); MACs theirs, from the analyzer. Vector: the widest "
                  "register of a packed float32 instruction in the kernel's machine code (scalar: none; ?: no "
                  "disassembler, or a GPU kernel)."])


def _node_list(nodes: list[str], most: int = 4) -> str:
    return ", ".join(nodes[:most]) + (f" … (+{len(nodes) - most})" if len(nodes) > most else "")


def tables_for(result: Analysis | Comparison | Diff | Profile, by: str = "block", stages: bool = False,
               units: str | None = None, totals: bool = False) -> list[Table]:
    """One model: its block (or layer) table and totals, or with `totals` the totals alone; a comparison or a
    diff: its one table (`totals` does not apply). `units`: "exact" or "si" counts (None: each table's own)."""
    if isinstance(result, Profile):
        return [profile_table(result)]
    if isinstance(result, Comparison):
        return [compare_table(result, units)]
    if isinstance(result, Diff):
        return [diff_table(result, units)]
    if totals:
        return [totals_table(result)]
    if by == "layer":
        return [layer_table(result, units), totals_table(result)]
    blocks = fold_stages(result.blocks) if stages else result.blocks
    return [block_table(result, blocks, units), totals_table(result)]
