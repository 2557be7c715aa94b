"""Peak memory of inference: all stored weights, plus the activations alive while each node runs, in the
executed (topological) order, a tensor being freed right after its last reader has run. Graph inputs are alive
from the start, graph outputs to the end; a node's inputs and outputs are both alive while it runs.
"""
from __future__ import annotations

from dataclasses import dataclass

from archc.analysis.graph import NetGraph


@dataclass
class Peak:
    total_bytes: int
    activation_bytes: int
    weight_bytes: int
    during: str  # the node running when the peak occurs
    tensors: list[str]  # activations alive at the peak, largest first


def peak(g: NetGraph) -> Peak:
    weight_bytes = sum(t.numel * t.itemsize for t in g.tensors.values() if t.stored)
    size = {name: t.numel * t.itemsize for name, t in g.tensors.items() if not t.stored and t.shape is not None}
    last_use: dict[str, int] = {}
    for step, node in enumerate(g.nodes):
        for i in node.proto.input:
            if i in size:
                last_use[i] = step
    keep = set(g.outputs)
    live = {name for name in g.inputs if name in size}
    current = sum(size[n] for n in live)
    best = Peak(weight_bytes + current, current, weight_bytes, "(inputs)", sorted(live))
    for step, node in enumerate(g.nodes):
        for out in node.proto.output:
            if out in size and out not in live:
                live.add(out)
                current += size[out]
        if current > best.activation_bytes:
            best = Peak(weight_bytes + current, current, weight_bytes, node.name,
                        sorted(live, key=lambda n: (-size[n], n)))
        for name in set(node.proto.input) | set(node.proto.output):
            if name in live and name not in keep and last_use.get(name, -1) <= step:
                live.discard(name)
                current -= size[name]
    return best
