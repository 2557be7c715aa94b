"""`--fold-bn`: the graph an inference engine runs, in which every batch norm right after a convolution is folded
into it (scale into the weights, shift into a bias the conv gains if it had none). A spec and its inference export
(PyTorch folds BN when exporting in eval mode) then compare like for like: the same layers, parameters, FLOPs and
peak memory. Only shapes change hands here; no weight value is read.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto

_FOLDABLE = ("Conv", "ConvTranspose")


def fold_batch_norms(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of the model with each foldable batch norm removed; and how many were folded."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    outputs = {o.name for o in g.output}
    stored = {t.name: t for t in g.initializer}
    rename: dict[str, str] = {}
    drop = []
    for bn in g.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type not in _FOLDABLE or readers.get(conv.output[0], 0) != 1:
            continue
        if conv.output[0] in outputs or not all(i in stored for i in bn.input[1:]):
            continue  # the conv's own output is needed, or the statistics are computed: leave it
        if len(conv.input) < 3 or not conv.input[2]:
            scale = stored[bn.input[1]]
            bias = TensorProto(name=f"{conv.name or conv.output[0]}.folded_bias", data_type=scale.data_type,
                               dims=list(scale.dims))
            g.initializer.append(bias)  # shape only: the analysis counts it, the values are not needed
            while len(conv.input) < 3:
                conv.input.append("")
            conv.input[2] = bias.name
        rename[bn.output[0]] = conv.output[0]
        drop.append(bn)
    for bn in drop:
        g.node.remove(bn)
    for n in g.node:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]
    for o in g.output:
        if o.name in rename:  # keep the graph's output names: the conv now writes the output
            conv = producer[rename[o.name]]
            conv.output[0] = o.name
            for n in g.node:
                for k, i in enumerate(n.input):
                    if i == rename[o.name]:
                        n.input[k] = o.name
    used = {i for n in g.node for i in n.input}
    folded = {i for bn in drop for i in bn.input[1:]}
    for t in [t for t in g.initializer if t.name in folded and t.name not in used]:
        g.initializer.remove(t)  # the folded statistics, γ and β
    return model, len(drop)
