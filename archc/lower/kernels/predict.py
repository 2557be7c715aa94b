"""The configuration of a convolution shape that no table holds, predicted from the shapes the tables do hold.

A table entry is a measurement's verdict: on that CPU, for that shape, this register tile won its grid. Shapes
that look alike (same kind of kernel, similar output row, channels and stride) pick alike tiles, so an unknown
shape gets the tiles its nearest table entries chose, each moved onto the unknown shape's own grid (the nearest
row tile that divides its output row, the nearest channel tile that divides its blocks), ranked by the neighbours'
weighted votes. The first one is the build's configuration where nothing is measured; the first few are what the
first compile measures (search.Choices.search with `quick`), so that the short search spends its seconds on the
likely winners instead of the whole grid.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from archc.lower.kernels.conv2d import Config, Workload
from archc.lower.kernels.grid import candidates

NEIGHBOURS = 8  # table entries that vote


def _log(a: float, b: float) -> float:
    return abs(math.log2(max(a, 1) / max(b, 1)))


def distance(a: Workload, b: Workload) -> float:
    """How unlike two convolution shapes are, for choosing a register tile: the output row (which the row tile
    divides) weighs most, then the channels (how long the reduction is, how many channel blocks there are), the
    kernel and the stride; a depthwise shape is never like a dense one; one of another kernel (bf16, float32) is
    less like."""
    if a.depthwise != b.depthwise:
        return math.inf
    (ah, aw), (bh, bw) = a.out_size, b.out_size
    return (2 * _log(aw, bw) + 0.5 * _log(ah, bh) + _log(a.per_group, b.per_group) + _log(a.out_channels,
                                                                                            b.out_channels)
            + _log(a.kernel[0] * a.kernel[1], b.kernel[0] * b.kernel[1]) + (a.kernel != b.kernel) * 0.5
            + (a.strides != b.strides) + (a.oc_bn != b.oc_bn) * 2 + (a.ic_bn != b.ic_bn)
            + (any(a.padding) != any(b.padding)) * 0.5 + (a.step != b.step))


def _unlike(a: Config, b: Config) -> float:
    """How unlike two configurations are: the row tile, the channel tile, and the accumulators they make."""
    return (_log(a.reg_n, b.reg_n) + _log(a.oc_tile, b.oc_tile) + _log(a.reg_n * a.oc_tile, b.reg_n * b.oc_tile)
            + 0.25 * (a.kw_outer != b.kw_outer) + 0.25 * (a.inline_pad != b.inline_pad))


def ranked(key: str, lanes: int, tables: Iterable[Mapping[str, Any]]) -> list[Config]:
    """Configurations for `key`, likeliest first, from the entries of `tables` (workload key → configuration
    record, nearest table first: an entry of a later table counts as a little less like); empty where no entry is
    of the same kind (no depthwise entry for a depthwise shape)."""
    shape = Workload.parse(key)
    near: list[tuple[float, Config]] = []
    for rank, table in enumerate(tables):
        for other, record in table.items():
            entry = _parsed(other)
            if entry is None or other == key:  # not a workload key: nothing to learn from it
                continue
            d = distance(shape, entry) + 0.25 * (rank > 0)
            if d < math.inf:
                near.append((d, Config.from_record(record)))
    near.sort(key=lambda n: n[0])
    grid = candidates(key, lanes)
    votes: dict[Config, float] = defaultdict(float)
    for d, config in near[:NEIGHBOURS]:
        votes[min(grid, key=lambda g: _unlike(g, config))] += 1 / (0.25 + d)
    return sorted(votes, key=lambda c: -votes[c])


@lru_cache(maxsize=4096)
def _parsed(key: str) -> Workload | None:
    """A table's key as a workload (parsed once per process: a prediction reads every entry), None if it is none."""
    try:
        return Workload.parse(key)
    except ValueError:
        return None
