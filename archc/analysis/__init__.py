"""Any ONNX graph (or a spec, compiled in memory) → an `Analysis`: per-layer and per-block facts with totals.

    analyze(path) = load → build graph → receptive fields → layers → blocks → peak memory → totals
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from archc.analyze import graph as graph_mod
from archc.analyze.blocks import block_key_fn, build_blocks
from archc.analyze.layers import build_layers, depth
from archc.analyze.load import LoadOptions, load
from archc.analyze.memory import peak
from archc.analyze.model import Analysis, Block, Layer, ReceptiveField, Totals
from archc.analyze.receptive_field import compute as receptive_fields

WEIGHT_ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1}


def analyze(path: str | Path, options: LoadOptions = LoadOptions()) -> Analysis:
    model, name = load(path, options)
    g = graph_mod.build(model, str(path))
    warnings: list[str] = [p.value for p in model.metadata_props if p.key == "archc.warning"]
    fields = receptive_fields(g, warnings)
    block_of, block_meta = block_key_fn(g.nodes)
    layers = build_layers(g, fields, block_of)
    blocks = build_blocks(layers, block_meta)
    p = peak(g)

    unknown = Counter(l.op for l in layers if l.flops is None)
    if unknown:
        warnings.append("no cost rule for " + ", ".join(f"{op} ×{n}" for op, n in sorted(unknown.items())) +
                        ": their MACs and FLOPs are unknown (shown as ?) and left out of the totals")
    trainable_names = {t for l in layers for t in l.weights}  # a tensor shared by two layers counts once
    buffer_names = {t for l in layers for t in l.buffers} - trainable_names
    trainable = sum(g.tensors[t].numel for t in trainable_names)
    nontrainable = sum(g.tensors[t].numel for t in buffer_names)
    params = trainable + nontrainable
    first_input = g.tensors[g.inputs[0]].shape if g.inputs else None
    totals = Totals(
        params=params, trainable_params=trainable, nontrainable_params=nontrainable,
        macs=sum(l.macs or 0 for l in layers), flops=sum(l.flops or 0 for l in layers),
        activation_elements=sum(l.activation_elements for l in layers),
        activation_bytes=sum(l.activation_bytes for l in layers),
        peak_memory_bytes=p.total_bytes, peak_activation_bytes=p.activation_bytes, peak_after=p.during,
        peak_tensors=p.tensors, weight_bytes=p.weight_bytes,
        weight_bytes_by_dtype={k: params * v for k, v in WEIGHT_ITEMSIZE.items()},
        depth=depth(layers), layer_counts=dict(Counter(l.op for l in layers)), unknown_ops=dict(unknown))
    return Analysis(
        model=name, source=str(path), batch=first_input[0] if first_input else 1,
        inputs=[{"name": n, "shape": list(g.tensors[n].shape or ())} for n in g.inputs],
        outputs=[{"name": n, "shape": list(g.tensors[n].shape or ()) if n in g.tensors else None}
                 for n in g.outputs],
        layers=layers, blocks=blocks, totals=totals, warnings=warnings,
        hidden_shape_nodes=sum(1 for n in g.nodes if n.shape_only))


__all__ = ["Analysis", "Block", "Layer", "LoadOptions", "ReceptiveField", "Totals", "analyze"]
