"""Winograd's minimal filtering F(m×m, 3×3): a 3×3 stride-1 convolution in the blocked layout with fewer multiplies.

Lavin & Gray (CVPR'16): an m×m tile of a 3×3 convolution's output is Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A for the (m+2)×(m+2)
input tile d around it. Summed over the input channels, the α² = (m+2)² elementwise products become α² independent
matrix products (tiles × input channels by input × output channels): F(4×4, 3×3) does 36 multiplies per tile and
channel pair where the direct convolution does 144. The matrices are TVM's (topi.nn.winograd_util: Cook-Toom on the
interpolation points Barabasz et al. chose for accuracy).

Three kernels, data flowing one way:
* the input transform (INPUT): each tile's Bᵀ d B, one dimension at a time (ROWS, then INPUT), the convolution's
  zero padding a bounds check on the loads; written as α² groups of channel blocks × one row of tiles, so that
* the products are archc's blocked convolution (conv2d.compute) as a 1×1 convolution of α² groups, with the
  transformed weights (`weights`, packed at build time): its register tile, schedule and configuration are any
  convolution's;
* the output transform (OUTPUT): Aᵀ M A, one dimension at a time (COLS, then OUTPUT), the convolution's epilogue
  (bias, ReLU, the residual add) fused into it.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import tvm
from tvm import te
from tvm.topi.nn.winograd_util import _cook_toom_convolution, _interpolation_points

from archc.lower.kernels import conv2d, dpbf16, generic

ROWS = "archc_winograd_rows"  # Bᵀ d: the input tile transformed along its rows
INPUT = "archc_winograd_input"  # (Bᵀ d) B: the transformed input tile
COLS = "archc_winograd_cols"  # M A: the products transformed along their columns
OUTPUT = "archc_winograd_output"  # Aᵀ (M A): the output tile
TILES = "archc_winograd_tiles"  # the input transform's annotation: the tiles along a row (TW)
OUT_EWISE_FUSABLE = 4  # TVM's op pattern kOutEWiseFusable: the epilogue fuses into the output transform


@cache
def matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aᵀ (m × α), Bᵀ (α × α) and G (α × 3) of F(m×m, 3×3), in float64."""
    a, b, g = _cook_toom_convolution(_interpolation_points(m + 1), m, 3)
    return np.asarray(a, np.float64).T, np.asarray(b, np.float64).T, np.asarray(g, np.float64)


def tiles(height: int, width: int, padding: Sequence[int], m: int) -> tuple[int, int]:
    """The tiles of m×m outputs (along the height, along the width) that cover a 3×3 stride-1 output."""
    top, left, bottom, right = padding
    return -(-(height + top + bottom - 2) // m), -(-(width + left + right - 2) // m)


def weights(w: np.ndarray, m: int) -> np.ndarray:
    """The transformed weights G g Gᵀ of OIHW 3×3 weights, as the α² 1×1 convolutions' OIHW weights
    (α², O, I, 1, 1), position ε·α + ν first."""
    _, _, g = matrices(m)
    u = np.einsum("ea,oiab,nb->enoi", g, w.astype(np.float64), g)
    return u.reshape(-1, *w.shape[:2], 1, 1).astype(w.dtype)


def tile_size(channels: int, out_channels: int, kernel: Sequence[int], strides: Sequence[int],
              dilation: Sequence[int], per_group: int, out_size: Sequence[int]) -> int:
    """m of the F(m×m, 3×3) that computes this convolution, 0 where the direct kernel is faster. `per_group`: the
    input channels each output channel reads as archc computes it (all of them; a grouped convolution's group,
    merged into whole blocks: ResNeXt-50's 4-channel groups as 16).

    Per 4×4 tile, F(4×4) saves 108 of the direct kernel's 144 multiply-adds per (output channel, input channel it
    reads) pair, and pays the transforms: measured on Zen 4 inside ResNet-18 (2 threads, caches cold), an input
    channel's tile costs the time of ~1,600 multiply-adds of the direct kernel to transform, an output channel's
    ~400. So it takes F(4×4) where 108·O·I ≥ 1,600·C + 400·O, I being `per_group`: ResNet's and VGG's layers by far
    (1.5-2.9× faster alone), DenseNet's 128 → 32 (2×, measured: the network 0.96 → 0.83× onnxruntime), not
    ResNeXt's groups of 16 (their products are a sixteenth of the transforms' channels: the network was 3% slower
    with them). At 7×7 (four tiles of 4×4 for 49 outputs: a third of the products wasted, rows of 4 tiles too
    short for the register tile) F(4×4) was slower and F(2×2) no faster (0.90×): outputs under 12×12 stay direct."""
    if list(kernel) != [3, 3] or list(strides) != [1, 1] or list(dilation) != [1, 1]:
        return 0
    if min(channels, out_channels, per_group) < 16 or out_size[0] * out_size[1] < 12 * 12:
        return 0
    return 4 if 108 * out_channels * per_group >= 1600 * channels + 400 * out_channels else 0


def _combination(coefficients: np.ndarray, terms: list[Any], dtype: str) -> Any:
    """Σ cᵢ·tᵢ over the non-zero coefficients (a coefficient of ±1 without its multiply)."""
    total = None
    for c, t in zip(coefficients, terms, strict=True):
        if c == 0:
            continue
        term = t if c == 1 else -t if c == -1 else t * tvm.tirx.const(float(c), dtype)
        total = term if total is None else total + term
    return total


def _row(index: Any, rows: np.ndarray, terms: list[Any], dtype: str) -> Any:
    """Row `index` (a loop variable, a constant once the loop is unrolled) of `rows` applied to `terms`."""
    value = _combination(rows[-1], terms, dtype)
    for r in range(len(rows) - 2, -1, -1):
        value = tvm.tirx.Select(index == r, _combination(rows[r], terms, dtype), value)
    return value


def transform_input(data: Any, padding: Sequence[int], m: int, bf16: bool = False) -> Any:
    """Bᵀ d B of every (m+2)×(m+2) input tile of NCHW[bn]c data, as (1, α²·C/bn, 1, tiles, bn): group ε·α + ν holds
    the chunks of every tile's transformed value (ε, ν), tile (b, ty, tx) at column (b·TH + ty)·TW + tx. `bf16`:
    rounded to bf16, zero tiles added up to a count the products' register tiles divide. `data` may be bf16 bits
    (`conv2d.to_bf16`'s), read as float32."""
    n, chunks, height, width, bn = (int(d) for d in data.shape)
    top, left = int(padding[0]), int(padding[1])
    th, tw = tiles(height, width, padding, m)
    _, bt, _ = matrices(m)
    alpha = m + 2
    bits = str(data.dtype) == dpbf16.BITS
    dtype = "float32" if bits else data.dtype

    def read(c: Any, p: Any, r: int, col: Any, i: Any) -> Any:
        inside, value = conv2d.padded_read(data, p // (th * tw), c, p // tw % th * m + r - top,
                                           p % tw * m + col - left, i)
        return tvm.tirx.if_then_else(inside, dpbf16.value(value) if bits else value, tvm.tirx.const(0, dtype))

    rows = te.compute((chunks, n * th * tw, alpha, alpha, bn),
                      lambda c, p, eps, col, i: _row(eps, bt, [read(c, p, r, col, i) for r in range(alpha)], dtype),
                      name=ROWS)

    count = n * th * tw
    # bf16: as many tiles as a row the stepped kernel's register tiles divide (conv2d.widened: UNet's 142² tiles
    # at 568² as 20,165), the extra ones zeros; its tensorized steps take no tail, and it reads V unpadded
    wide = count + (conv2d.widened(count, 1, 1, 1, (0, 0, 0, 0))[0][3] if bf16 else 0)

    def cell(_z: Any, ec: Any, _y: Any, p: Any, i: Any) -> Any:
        e, c = ec // chunks, ec % chunks
        q = tvm.tirx.min(p, count - 1) if wide > count else p
        value = _row(e % alpha, bt, [rows[c, q, e // alpha, col, i] for col in range(alpha)], dtype)
        value = tvm.tirx.if_then_else(p < count, value, tvm.tirx.const(0, dtype)) if wide > count else value
        return dpbf16.bits(value) if bf16 else value

    return te.compute((1, alpha * alpha * chunks, 1, wide, bn), cell, name=INPUT, attrs={TILES: tw})


def transform_output(products: Any, shape: Sequence[int], padding: Sequence[int], m: int) -> Any:
    """Aᵀ M A of the products (1, α²·K/bn, 1, tiles, bn): the convolution's output, NCHW[bn]c, for data of `shape`
    (NCHW[x]c) and `padding`."""
    n, _, height, width, _ = (int(d) for d in shape)
    _, groups, _, _, bn = (int(d) for d in products.shape)
    alpha = m + 2
    chunks = groups // (alpha * alpha)
    th, tw = tiles(height, width, padding, m)
    top, left, bottom, right = padding
    at, _, _ = matrices(m)
    dtype = products.dtype

    cols = te.compute((chunks, n * th * tw, alpha, m, bn),
                      lambda k, p, eps, xm, i: _row(xm, at, [products[0, (eps * alpha + nu) * chunks + k, 0, p, i]
                                                             for nu in range(alpha)], dtype),
                      name=COLS)

    def cell(b: Any, k: Any, y: Any, x: Any, i: Any) -> Any:
        p = (b * th + y // m) * tw + x // m
        return _row(y % m, at, [cols[k, p, eps, x % m, i] for eps in range(alpha)], dtype)

    return te.compute((n, chunks, height + top + bottom - 2, width + left + right - 2, bn), cell, name=OUTPUT)


def schedule_input(sch: Any) -> None:
    """The input transform: each task a channel block's row of tiles; per tile, the α² values of a channel block
    computed in registers from its loads (both passes unrolled), the channel block a vector."""
    _inline_others(sch, (ROWS, INPUT))
    block, rows = sch.get_sblock(INPUT), sch.get_sblock(ROWS)
    chunks = int(sch.get(rows).writes[0].source.shape[0])
    _, ec, _, p, i = sch.get_loops(block)
    e, c = sch.split(ec, [None, chunks])
    ty, tx = sch.split(p, [None, int(sch.get(block).annotations[TILES])])
    sch.reorder(c, ty, tx, e, i)
    sch.parallel(sch.fuse(c, ty))
    sch.compute_at(rows, tx)
    sch.set_scope(rows, 0, generic.TILE)  # one tile's: registers
    *_, eps, col, lanes = sch.get_loops(rows)
    sch.unroll(eps)
    sch.unroll(col)
    sch.vectorize(lanes)
    sch.unroll(e)
    sch.vectorize(i)


def schedule_output(sch: Any) -> None:
    """The output transform with the epilogue fused: each task a channel block's row of tiles; per tile, its m×m
    outputs of a channel block computed in registers from the α² products (both passes unrolled), the epilogue
    applied before they are stored."""
    _inline_others(sch, (COLS,), last=True)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    out, cols = blocks[-1], sch.get_sblock(COLS)
    m = int(sch.get(cols).writes[0].source.shape[3])  # (chunks, tiles, α, m, bn)
    b, k, y, x, i = sch.get_loops(out)
    ty, ym = sch.split(y, [None, m])
    tx, xm = sch.split(x, [None, m])
    sch.reorder(b, k, ty, tx, ym, xm, i)
    sch.parallel(sch.fuse(b, k, ty))
    sch.compute_at(cols, tx)
    sch.set_scope(cols, 0, generic.TILE)
    *_, eps, cm, lanes = sch.get_loops(cols)
    sch.unroll(eps)
    sch.unroll(cm)
    sch.vectorize(lanes)
    sch.unroll(ym)
    sch.unroll(xm)
    sch.vectorize(i)


def _inline_others(sch: Any, keep: tuple[str, ...], last: bool = False) -> None:
    """Inline every block but those named `keep` (and, with `last`, the function's last one: the epilogue's end,
    or the output transform itself where there is no epilogue)."""
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    for block in blocks[:-1] if last else blocks:
        if sch.get(block).name_hint not in keep:
            sch.compute_inline(block)
