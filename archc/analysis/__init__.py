"""A loaded model (any ONNX graph, or a spec compiled in memory) → an `Analysis`: per-layer and per-block facts
with totals. The model comes from `archc.frontends.load(path, options, weights=False)`; this stage never reads
files or compiles specs itself.

    analyze(model) = build graph → receptive fields → layers → blocks → peak memory → totals
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from archc.analysis import graph as graph_mod
from archc.analysis.blocks import block_key_fn, build_blocks
from archc.analysis.fold import fold_batch_norms
from archc.analysis.layers import build_layers, depth
from archc.analysis.memory import peak
from archc.analysis.model import Analysis, Block, Layer, ReceptiveField, Totals
from archc.analysis.receptive_field import compute as receptive_fields
from archc.shapes import WEIGHT_PRECISIONS, dtype
from archc.util.downstream import downstream

if TYPE_CHECKING:
    from archc.frontends import Model


def analyze(model: Model, fold_bn: bool = False) -> Analysis:
    """`fold_bn`: analyze the graph an inference engine runs, batch norms folded into their convolutions."""
    proto, folded = fold_batch_norms(model.proto) if fold_bn else (model.proto, 0)
    g = graph_mod.build(proto, model.source)
    warnings = model.warning_lines()
    if fold_bn:
        warnings.append(f"{folded} batch norm{'s' if folded != 1 else ''} folded into the convolutions before them "
                        "(--fold-bn)")
    fields = receptive_fields(g, warnings)
    main_fields = receptive_fields(g, warnings, main_path=True)
    block_of, block_meta = block_key_fn(g.nodes)
    layers = build_layers(g, fields, main_fields, block_of)
    blocks = build_blocks(layers, block_meta)
    p = peak(g)

    unknown = Counter(lay.op for lay in layers if lay.flops is None)  # no rule, or shapes unknown
    no_rule = Counter(n.op_type for n in g.nodes if n.rule is None and not n.shape_only)
    if no_rule:
        weights = sum(lay.params for lay in layers if lay.op in no_rule)
        warnings.append("no cost rule for " + ", ".join(f"{op} ×{n}" for op, n in sorted(no_rule.items())) +
                        ": their MACs and FLOPs are unknown (shown as ?) and left out of the totals" +
                        (f"; their stored tensors ({weights:,} values) are counted as parameters" if weights else ""))
    trainable_names = {t for lay in layers for t in lay.weights}  # a tensor shared by two layers counts once
    buffer_names = {t for lay in layers for t in lay.buffers} - trainable_names
    trainable = sum(g.tensors[t].numel for t in trainable_names)
    nontrainable = sum(g.tensors[t].numel for t in buffer_names)
    params = trainable + nontrainable
    first_input = g.tensors[g.inputs[0]].shape if g.inputs else None
    totals = Totals(
        params=params, trainable_params=trainable, nontrainable_params=nontrainable,
        macs=sum(lay.macs or 0 for lay in layers), flops=sum(lay.flops or 0 for lay in layers),
        activation_elements=sum(lay.activation_elements for lay in layers),
        activation_bytes=sum(lay.activation_bytes for lay in layers),
        peak_memory_bytes=p.total_bytes, peak_activation_bytes=p.activation_bytes, peak_after=p.during,
        peak_tensors=p.tensors, weight_bytes=p.weight_bytes,
        weight_bytes_by_dtype={k: params * dtype(k).itemsize for k in WEIGHT_PRECISIONS},
        depth=depth(layers), depth_longest=depth(layers, main_path=False),
        layer_counts=dict(Counter(lay.op for lay in layers)), unknown_ops=dict(unknown),
        **_two_stage(model, g, layers))
    return Analysis(
        model=model.name, source=model.source, batch=first_input[0] if first_input else 1,
        inputs=[{"name": n, "shape": list(g.tensors[n].shape or ())} for n in g.inputs],
        outputs=[{"name": n, "shape": list(g.tensors[n].shape or ()) if n in g.tensors else None}
                 for n in g.outputs],
        layers=layers, blocks=blocks, totals=totals, warnings=warnings,
        hidden_shape_nodes=sum(1 for n in g.nodes if n.shape_only))


def _two_stage(model: Model, g: graph_mod.NetGraph, layers: list[Layer]) -> dict[str, Any]:
    """A region-based detector's figures (`Totals.proposals`, `per_proposal_macs`, `anchors`): R from the
    proposals input a RoIAlign or MaxRoiPool reads, the per-proposal part: the layers that input reaches;
    the RPN's anchors H×W×k where the spec gives k as its `anchors` parameter and one output has 2k channels."""
    for name in g.inputs[1:]:  # the proposals: an R×4 input that a RoIAlign or MaxRoiPool reads, maybe reshaped
        shape = g.tensors[name].shape or ()
        if shape[-1:] != (4,) or len(shape) not in (2, 3):
            continue
        late, after = downstream((n.proto for n in g.nodes), name)
        if any(n.op_type in ("RoiAlign", "MaxRoiPool") for n in late):
            break
    else:
        return {}
    count = shape[-2]
    late_ids = {id(p) for p in late}
    late_names = {n.name for n in g.nodes if id(n.proto) in late_ids}  # a layer is named after its node
    per_roi = sum(lay.macs or 0 for lay in layers if lay.name in late_names)
    found: dict[str, Any] = {"proposals": count, "per_proposal_macs": per_roi // count if count else 0}
    k = model.graph.params.get("anchors") if model.graph is not None else None
    if isinstance(k, int) and k > 0:
        shapes = [g.tensors[o].shape or () for o in g.outputs if o in g.tensors and o not in after]
        rpn = [s for s in shapes if len(s) == 4 and s[1] == 2 * k]
        if len(rpn) == 1:
            found["anchors"] = [rpn[0][2], rpn[0][3], k]
    return found


__all__ = ["Analysis", "Block", "Layer", "ReceptiveField", "Totals", "analyze"]
