"""The block size of each blocked tensor: the layout plan's choice, made once over the whole graph before it is
rewritten (layout.py).

Tensors joined by ops that keep the layout (elementwise ops, pools, channel reductions, a depthwise convolution's
input and output: optable.py, the table the rewriter reads too) must share it, else a relayout runs between them:
they form one *group*, and each group takes one layout. A group that some convolution writes chooses among the
target's vector width and 8 channels per block, its channels zero-padded up to whole blocks where they do not
divide (MobileNet v2's 24 → 32, LeNet's 6 → 8, YOLOv3's 255 → 256), by the modelled sum of the times of the
convolutions that write and read it:

* a convolution writing blocks of `bn` channels on `lanes`-wide vectors fills bn/lanes of each register:
  its time ∝ MACs × (padded / true output channels) × lanes / bn; except where a half-width FMA does as much
  work per lane as a full one (AMD Zen 4 runs a 512-bit FMA as two 256-bit halves: its 256-bit and 512-bit
  peaks are equal, measured by pipeline.half_width_cost), where blocks of lanes/2 cost 1.1× full ones;
* a convolution reading the group broadcasts one input channel at a time (the vector holds output channels):
  its time ∝ MACs × (padded / true input channels), whatever the block.

Measured on this model's inputs (AVX-512, MobileNet v2's 56×56 layers, each searched): 144 → 24 1×1 writing
8-blocks 202 µs, padded 16-blocks 124 µs (the model says 1.5×, measured 1.63×); 24 → 144 reading 8-blocks 181 µs,
reading the padded 16-blocks 208 µs (model 1.33×, measured 1.15×): padding wins the pair, 332 vs 383 µs.
Groups read by a grouped convolution are never padded (the padding would land between its groups): where 8 does
not divide their channels they take 4, 2 or 1 channels per block. A group read by a channel concatenation may be
padded: the concatenation then runs in NCHW (its inputs' padding dropped), which costs a relayout of its inputs
and output but lets the convolutions that write them fill whole vectors. ShuffleNet v2 ×1.0 (116, 232 and 464
channels meeting at concatenations, each followed by the channel shuffle, which runs in NCHW anyway) went from
1.20× to 0.87× onnxruntime this way (blocks of 4 and 8 before: its branches' convolutions at 27-80 GFLOP/s);
keeping blocks of 8 where 8 divides (232) and padding only the others gave 0.93× (one run, alternating).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Any

from tvm import relax

from archc.lower.kernels.optable import Kind, is_const, per_channel, rule_of


@dataclass
class _Group:
    channels: set[int] = field(default_factory=set)
    writes: list[int] = field(default_factory=list)  # MACs of the convolutions writing it (depthwise: its own)
    reads: list[int] = field(default_factory=list)  # MACs of the convolutions reading it
    unpaddable: bool = False
    full: bool = False  # written by a convolution whose kernel takes only full-width blocks (int8's)


def padded(channels: int, bn: int) -> int:
    return -(-channels // bn) * bn


def is_depthwise(groups: int, channels: int, out_channels: int, per_group: int) -> bool:
    """A convolution of `groups` groups, `channels` in, `out_channels` out, `per_group` input channels per group
    (its weight's second dimension) that is depthwise: one input and one output channel per group."""
    return groups == channels == out_channels and per_group == 1 and channels > 1


def choose(bindings: list[Any], lanes: int, shape: Any, half_width_cost: float = 2.0,
           full: frozenset[Any] = frozenset()) -> dict[Any, int]:
    """var → its block, for every variable of a group some convolution writes (the others: the rule's).
    `half_width_cost`: what a block of lanes/2 channels costs per MAC written against a full one (lanes/bn for
    other blocks): 2 where a half-width FMA does half the work, 1.1 where it does as much per lane (Zen 4).
    `full`: the outputs of convolutions whose kernel writes full-width blocks only (`--precision int8`'s and
    bf16's steps: one VPDPBUSD or VDPBF16PS fills 16 output channels); their groups take the full width, padded if
    need be, unless a grouped convolution reads them. Else MobileNet v2's 24-channel projections, blocks of 8 in
    float32, ran in float32: 160 and 184 µs of its 2.7 ms in int8 (its bf16 build: 3-6% slower)."""
    ids: dict[Any, int] = {}  # var → its index (TVM hands out a new Python object per access: no `is`)
    parent: list[int] = []

    def find(v: Any) -> int:
        i = ids.setdefault(v, len(ids))
        parent.extend(range(len(parent), len(ids)))
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: Any, b: Any) -> None:
        parent[find(a)] = find(b)

    convs: list[tuple[Any, Any, int, bool, bool]] = []  # (output, input, MACs, depthwise, grouped)
    for b in bindings:
        v, e = b.var, b.value
        find(v)
        if isinstance(e, relax.Var):
            union(v, e)
            continue
        rule = rule_of(e)
        if rule is None:
            continue
        kind = rule.kind
        if kind is Kind.CLAMP:  # the importer's Clip (ReLU6): elementwise on its first argument
            fields = getattr(e.args[1], "fields", [])
            if fields and isinstance(fields[0], relax.Var) and shape(fields[0]) == shape(v):
                union(v, fields[0])
        elif kind is Kind.CONV and len(e.args) == 2 and is_const(e.args[1]) and isinstance(e.args[0], relax.Var):
            out, data = shape(v), shape(e.args[0])
            w = [int(d) for d in e.args[1].value.shape]
            if len(out) < 3 or len(data) < 3:
                continue
            macs = prod(out) * w[1] * prod(w[2:])
            n_groups = int(e.attrs.groups)
            depthwise = is_depthwise(n_groups, data[1], out[1], w[1])
            convs.append((v, e.args[0], macs, depthwise, n_groups > 1 and not depthwise))
            if depthwise:
                union(v, e.args[0])
        elif kind in (Kind.UNARY, Kind.POOL, Kind.REDUCE) and isinstance(e.args[0], relax.Var) \
                and shape(v)[1:2] == shape(e.args[0])[1:2]:  # not a reduction over the channels: one per pixel
            union(v, e.args[0])
        elif kind is Kind.BINARY:
            for a in e.args:
                if isinstance(a, relax.Var) and (shape(a) == shape(v) or per_channel(shape(a), shape(v))):
                    union(v, a)
    groups: dict[int, _Group] = {}

    def group(v: Any) -> _Group:
        return groups.setdefault(find(v), _Group())

    for out, data, macs, depthwise, grouped in convs:
        group(out).writes.append(macs)  # a depthwise one writes the group it reads (the same vectors)
        if not depthwise:
            group(data).reads.append(macs)
        if grouped:
            group(out).unpaddable = group(data).unpaddable = True
        if out in full:
            group(out).full = True
    for v in list(ids):
        if find(v) in groups and len(shape(v)) in (3, 4):
            groups[find(v)].channels.add(shape(v)[1])
    best: dict[int, int] = {}
    for root, g in groups.items():
        if not g.writes or len(g.channels) != 1:
            continue
        (c,) = g.channels
        costs = {}
        # a group that cannot be padded (a grouped convolution's) takes the largest block that divides it, partly
        # filled vectors being far faster than TVM's untuned NCHW kernel (2.4 GFLOP/s)
        narrow = [next(bn for bn in (4, 2, 1) if c % bn == 0)] if g.unpaddable and c % 8 else []
        for bn in dict.fromkeys((lanes,) if g.full and not (g.unpaddable and c % lanes) else (lanes, 8, *narrow)):
            if c % bn and g.unpaddable:
                continue
            ratio = padded(c, bn) / c
            width = half_width_cost if bn * 2 == lanes else lanes / bn
            costs[bn] = sum(g.writes) * ratio * width + sum(g.reads) * ratio
        if costs:  # ties: the unpadded, then the wider block
            best[root] = min(costs, key=lambda bn: (costs[bn], c % bn != 0, -bn))
    return {v: best[find(v)] for v in list(ids) if find(v) in best}
