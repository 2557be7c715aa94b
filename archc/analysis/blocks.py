"""Group layers into block instances, like the rows of the papers' tables.

With archc's own files the groups are the spec's block instances (node metadata `archc.blocks`, outermost
instance). Foreign files carry no such record, so groups are recovered from node-name prefixes: exporters name
nodes by module path (`/layer1/layer1.0/conv1/Conv`); the group is the first path segment, or the first two when
the second looks like an index into the first (`layer1/layer1.0`, `features/features.3`).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable

from archc import metadata
from archc.analysis.graph import Node, block_frames
from archc.analysis.layers import depth, total_stride
from archc.analysis.model import Block, Layer

_INDEXED = re.compile(r"^(.+?)[._]?(\d+)$")


def _segments(name: str) -> list[str]:
    return [s for s in name.split("/") if s]


def block_key_fn(nodes: list[Node]) -> tuple[Callable[[Node], str], dict[str, tuple[str, dict]]]:
    """Returns node → block path ('' for a top-level layer), and the block types/args by path."""
    meta: dict[str, tuple[str, dict]] = {}
    if any(block_frames(n) for n in nodes) or any(metadata.PATH in n.meta for n in nodes):
        def key(node: Node) -> str:
            frames = block_frames(node)
            if not frames:
                return ""
            meta.setdefault(frames[0]["path"], (frames[0].get("type", ""), frames[0].get("args", {})))
            return frames[0]["path"]
        return key, meta
    counts = Counter(_segments(n.name)[0] for n in nodes if len(_segments(n.name)) > 1)

    def prefix_key(node: Node) -> str:
        seg = _segments(node.name)
        if len(seg) < 2 or counts[seg[0]] < 2:
            return ""
        if len(seg) >= 3:
            m = _INDEXED.match(seg[1])
            if m and (m.group(1) == seg[0] or seg[1].isdigit() or m.group(1).startswith(seg[0])):
                return f"{seg[0]}/{seg[1]}"
        return seg[0]
    return prefix_key, meta


def _signature(layers: list[Layer]) -> str:
    """A recovered block's type: its layers with MACs, windows (pooling) or several inputs (merges)."""
    counts = Counter(lay.op for lay in layers if lay.macs or lay.kernel or len(lay.inputs) > 1)
    return "+".join(f"{n}×{op}" if n > 1 else op for op, n in counts.items()) or "group"


def _sum(values: Iterable[int | None]) -> int | None:
    """The total, or None (unknown) when any part is unknown."""
    items = list(values)
    known = [v for v in items if v is not None]
    return None if len(known) != len(items) else sum(known)


def build_blocks(layers: list[Layer], meta: dict[str, tuple[str, dict]]) -> list[Block]:
    """One Block per block instance, in order of first appearance."""
    groups: dict[str, list[Layer]] = {}
    for lay in layers:
        if lay.block:
            groups.setdefault(lay.block, []).append(lay)
    blocks = []
    for path, members in groups.items():
        btype, args = meta.get(path, (_signature(members), {}))
        windowed = [lay for lay in members if lay.kernel]
        blocks.append(Block(
            path=path, type=btype, args=dict(args), layers=[lay.name for lay in members],
            kernel=windowed[0].kernel if len(windowed) == 1 else None, stride=total_stride(members),
            output_shape=members[-1].output_shape, depth=depth(members),
            params=sum(lay.params for lay in members), macs=_sum(lay.macs for lay in members),
            flops=_sum(lay.flops for lay in members)))
    return blocks


_STAGE = re.compile(r"^(.*?)[_.](\d+)$")  # layer1_2 (archc), layer1/layer1.1 (PyTorch export)


def fold_stages(blocks: list[Block]) -> list[Block]:
    """Runs of consecutive instances of one block type named <stage>_1, <stage>_2, … (or <stage>.0, <stage>.1)
    become one `×N` stage row named <stage>; an instance alone keeps its own row and name."""
    runs: list[list[Block]] = []
    for b in blocks:
        m = _STAGE.match(b.path)
        prev = runs[-1][-1] if runs else None
        pm = _STAGE.match(prev.path) if prev else None
        if prev and m and pm and prev.type == b.type and pm.group(1) == m.group(1):
            runs[-1].append(b)
        else:
            runs.append([b])
    out = []
    for run in runs:
        if len(run) == 1:
            out.append(run[0])
            continue
        first, last = run[0], run[-1]
        strides = [b.stride for b in run if b.stride]
        stride = tuple(math.prod(s[i] for s in strides) for i in range(len(strides[0]))) if len(strides) == len(
            run) else None
        stage = _STAGE.match(first.path)
        assert stage is not None  # runs are built from paths that match _STAGE
        parts = stage.group(1).split("/")
        if len(parts) > 1 and parts[-1] == parts[-2]:  # layer1/layer1.0 → layer1
            parts.pop()
        out.append(Block(
            path="/".join(parts), type=first.type,
            args={k: v for k, v in first.args.items() if all(b.args.get(k) == v for b in run)},
            layers=[name for b in run for name in b.layers], kernel=None, stride=stride,
            output_shape=last.output_shape, depth=sum(b.depth for b in run), params=sum(b.params for b in run),
            macs=_sum(b.macs for b in run), flops=_sum(b.flops for b in run), count=len(run)))
    return out
