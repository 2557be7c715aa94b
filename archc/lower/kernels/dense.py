"""A dense layer with its weights packed in the order its tasks read them, its outputs kept in registers.

`x @ W` (W: K × N, a constant) runs with each task computing a tile of `c` outputs (`tile`: up to 8 vectors,
accumulated in registers) while the reduction streams W's rows through them. Stored K × N, a task reads c values
of each row and jumps N: one 4 KB page per row, every read a new page. Packed as N/c × K × c, a task's weights are
one contiguous stream (VGG-16's fc6, 411 MB of weights: 12.8 → 9.0 ms, 32 → 46 GB/s; onnxruntime's 9.1 ms). With
the tile in memory instead (a load and a store of each accumulator per weight row), the 1280 → 1000 classifier of
MobileNet v2 and MNASNet, its 5 MB of weights in L3, ran at 20 GB/s per thread.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from tvm import te

from archc.lower.kernels import generic
from archc.lower.kernels.conv2d import inline_epilogue

BLOCK = "dense_packed"
MAX_VECTORS = 8  # accumulators of a tile: registers to spare for the weights' loads and x's broadcast


def tile(n: int, lanes: int) -> int:
    """The outputs one task computes of a row of n: whole vectors, at most MAX_VECTORS of them and at least four
    tasks where n allows; 0 if the row is not a dense layer's long row (two vectors or fewer, or no vector divides
    it: the generic schedule's then)."""
    vec = generic.vector(n, lanes)
    if not vec or n <= 2 * lanes:
        return 0
    vectors = n // vec
    fits = [r for r in range(1, MAX_VECTORS + 1) if vectors % r == 0]
    return vec * max((r for r in fits if vectors // r >= 4), default=fits[0])


def pack(w: np.ndarray, chunk: int) -> np.ndarray:
    """K × N weights as N/chunk × K × chunk."""
    k, n = w.shape
    return np.ascontiguousarray(w.reshape(k, n // chunk, chunk).transpose(1, 0, 2))


def compute(x: Any, packed: Any, out_dtype: str) -> Any:
    """y[m, n] = Σ_k x[m, k] · W[k, n], W read from its packed form."""
    m, k = (int(d) for d in x.shape)
    chunks, _, chunk = (int(d) for d in packed.shape)
    r = te.reduce_axis((0, k), name="k")
    return te.compute((m, chunks * chunk), lambda i, j: te.sum(
        x[i, r].astype(out_dtype) * packed[j // chunk, r, j % chunk].astype(out_dtype), axis=r), name=BLOCK)


def schedule(sch: Any, lanes: int) -> None:
    """Schedule the fused kernel holding BLOCK in place: a task per (row, tile), the tile's accumulators in
    registers over the whole reduction, the epilogue (bias, activation) applied to them before the one store."""
    block = sch.get_sblock(BLOCK)
    epilogue, _ = inline_epilogue(sch, block)
    if epilogue is None:  # no consumer in this kernel: a write-back block of its own leaves the registers
        epilogue = sch.cache_write(block, 0, "global")
    sch.set_scope(block, 0, generic.TILE)
    chunk = int(sch.get(block).reads[1].source.shape[2])
    vec = generic.vector(chunk, lanes)
    i, j, k = sch.get_loops(block)
    jo, ji, jv = sch.split(j, [None, chunk // vec, vec])
    sch.reorder(i, jo, k, ji, jv)
    task = sch.fuse(i, jo)
    sch.parallel(task)
    sch.unroll(ji)
    sch.vectorize(jv)
    sch.reverse_compute_at(epilogue, task)
    _, inner = sch.split(sch.get_loops(epilogue)[-1], [None, vec])
    sch.vectorize(inner)
    sch.decompose_reduction(block, k)
