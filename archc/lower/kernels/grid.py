"""The configurations a convolution's kernel may take (conv2d.Config): the grid a search measures, and the rule
for a shape with nothing measured to go by (an ISA without shipped tables)."""
from __future__ import annotations

from archc.lower.kernels.conv2d import Config, Workload


def _registers(lanes: int) -> int:
    return 32 if lanes == 16 else 16  # AVX-512: 32 zmm; AVX2: 16 ymm (NEON: 32 q, counted as two per 8 lanes)


def rule(key: str, lanes: int) -> Config:
    """The configuration without measurements: the register tile (`reg_n` pixels of the row × `oc_tile` channel
    blocks) with the most accumulators up to 20 of AVX-512's 32 registers (12 of AVX2's 16), ties to more channel
    blocks (each broadcast input value then feeds more FMAs). Measured on this session's Xeon against the former
    rule (a row tile of up to 14 pixels, two channel blocks only where the row was short), each configuration
    built and timed alone: over 24 random shapes of the shipped AVX-512 table and 21 of the held-out networks'
    shapes, 162 → 153 ms in all (ViT's 3072 → 768 products 6.9 → 3.9 ms); over 24 of the AVX2 table's, 191 → 147
    ms (the shipped configurations: 159)."""
    w = Workload.parse(key)
    _, ow = w.out_size
    limit = max(1, (20 if _registers(lanes) == 32 else 12) // max(1, w.oc_bn // lanes))
    tiles = (1,) if w.depthwise else tuple(t for t in (1, 2, 4) if w.oc_chunks % t == 0)
    reg_n, oc_tile = max(((d, t) for t in tiles for d in range(1, ow + 1) if ow % d == 0 and d * t <= limit),
                         key=lambda c: (c[0] * c[1], c[1]), default=(1, 1))
    return Config(reg_n, oc_tile, inline_pad=w.depthwise)


def flat_tiles(w: Workload) -> list[int]:
    """The tiles the grid offers along a 1×1 layer's H·W pixels (Workload.flat, conv2d._flatten): sizes that do
    not divide the row (14×14: 4 of 196 pixels, where a row of 14 has tiles of 7 and 14 only)."""
    return [d for d in range(4, 17) if w.flat(d)]


def candidates(key: str, lanes: int) -> list[Config]:
    """The grid: row tiles that divide the output width (or, for a 1×1 layer, the output's pixels), up to 8
    channel blocks, both kw orders, as long as the accumulators fit the register file with room for the weights
    and the broadcast value."""
    w = Workload.parse(key)
    _, ow = w.out_size
    per_pixel = max(1, w.oc_bn // lanes)
    most = _registers(lanes) - (6 if lanes == 16 else 4)  # 26 of AVX-512's 32, 12 of AVX2's 16 (as `rule`)
    # channel blocks per tile: any count that divides the blocks (a depthwise block has its own input: nothing to
    # share). Not only 1/2/4: MNASNet's 112×112 16 → 48 layer ran 195 µs at 16 pixels × 1 block, 160 at 4 × 3
    tiles = (1,) if w.depthwise else tuple(t for t in range(1, 9) if w.oc_chunks % t == 0)
    reg_ns = sorted({d for d in range(1, min(ow, 28) + 1) if ow % d == 0 and (d >= 4 or d == ow)})
    reg_ns += flat_tiles(w)
    out = []
    for reg_n in reg_ns:
        for oc_tile in tiles:
            accumulators = reg_n * oc_tile * per_pixel
            if w.oc_chunks % oc_tile or accumulators > most or (accumulators < 6 and reg_n < ow):
                continue
            for kw_outer in ((False, True) if w.kernel[1] > 1 else (False,)):
                for inline_pad in ((False, True) if any(w.padding) else (False,)):
                    out.append(Config(reg_n, oc_tile, kw_outer, inline_pad))
    return out or [rule(key, lanes)]
