"""Group layers into block instances, like the rows of the papers' tables.

With archc's own files the groups are the spec's block instances (node metadata `archc.blocks`, outermost
instance). Foreign files carry no such record, so groups are recovered from node-name prefixes: exporters name
nodes by module path (`/layer1/layer1.0/conv1/Conv`); the group is the first path segment, or the first two when
the second looks like an index into the first (`layer1/layer1.0`, `features/features.3`).
"""
from __future__ import annotations

import re
from collections import Counter

from archc.analyze.graph import Node, block_frames
from archc.analyze.layers import depth, total_stride
from archc.analyze.model import Block, Layer

_INDEXED = re.compile(r"^(.+?)[._]?(\d+)$")


def _segments(name: str) -> list[str]:
    return [s for s in name.split("/") if s]


def block_key_fn(nodes: list[Node]):
    """Returns node → block path ('' for a top-level layer), and the block types/args by path."""
    meta: dict[str, tuple[str, dict]] = {}
    if any(block_frames(n) for n in nodes) or any("archc.path" in n.meta for n in nodes):
        def key(node: Node) -> str:
            frames = block_frames(node)
            if not frames:
                return ""
            meta.setdefault(frames[0]["path"], (frames[0].get("type", ""), frames[0].get("args", {})))
            return frames[0]["path"]
        return key, meta
    counts = Counter(_segments(n.name)[0] for n in nodes if len(_segments(n.name)) > 1)

    def key(node: Node) -> str:
        seg = _segments(node.name)
        if len(seg) < 2 or counts[seg[0]] < 2:
            return ""
        if len(seg) >= 3:
            m = _INDEXED.match(seg[1])
            if m and (m.group(1) == seg[0] or seg[1].isdigit() or m.group(1).startswith(seg[0])):
                return f"{seg[0]}/{seg[1]}"
        return seg[0]
    return key, meta


def _signature(layers: list[Layer]) -> str:
    counts = Counter(l.op for l in layers if l.macs or l.op in ("Add", "Concat", "Mul", "MaxPool", "AveragePool"))
    return "+".join(f"{n}×{op}" if n > 1 else op for op, n in counts.items()) or "group"


def _sum(values):
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def build_blocks(layers: list[Layer], meta: dict[str, tuple[str, dict]]) -> list[Block]:
    """One Block per block instance, in order of first appearance."""
    groups: dict[str, list[Layer]] = {}
    for l in layers:
        if l.block:
            groups.setdefault(l.block, []).append(l)
    blocks = []
    for path, members in groups.items():
        btype, args = meta.get(path, (_signature(members), {}))
        windowed = [l for l in members if l.kernel]
        blocks.append(Block(
            path=path, type=btype, args=dict(args), layers=[l.name for l in members],
            kernel=windowed[0].kernel if len(windowed) == 1 else None, stride=total_stride(members),
            output_shape=members[-1].output_shape, depth=depth(members),
            params=sum(l.params for l in members), macs=_sum(l.macs for l in members),
            flops=_sum(l.flops for l in members)))
    return blocks


_STAGE = re.compile(r"^(.*?)[_.](\d+)$")


def fold_stages(blocks: list[Block]) -> list[Block]:
    """Consecutive instances of one block type named <stage>_1, <stage>_2, … become one `×N` stage row."""
    out: list[Block] = []
    for b in blocks:
        m = _STAGE.match(b.path.rsplit("/", 1)[-1])
        prev = out[-1] if out else None
        if prev and m and prev.type == b.type and prev.path == m.group(1) and b.count == 1:
            prev.count += 1
            prev.layers += b.layers
            prev.output_shape = b.output_shape
            prev.params += b.params
            prev.macs = None if prev.macs is None or b.macs is None else prev.macs + b.macs
            prev.flops = None if prev.flops is None or b.flops is None else prev.flops + b.flops
            prev.depth += b.depth
            if prev.stride and b.stride:
                prev.stride = tuple(x * y for x, y in zip(prev.stride, b.stride))
            prev.args = {k: v for k, v in prev.args.items() if b.args.get(k) == v}
            continue
        if m:
            b = Block(**{**b.__dict__, "path": m.group(1), "layers": list(b.layers), "args": dict(b.args)})
        out.append(b)
    return out
