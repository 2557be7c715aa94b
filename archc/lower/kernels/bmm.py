"""Products of two activations (attention's Q·Kᵀ and softmax(·)·V): a batched matrix product on a register tile.

TVM's kernel for `relax.matmul` of two computed tensors is one scalar multiply-add per output and k, in parallel
over the outputs: ViT-B/16's Q·Kᵀ (12 heads of 197 × 64 × 197) ran at 9 GFLOP/s, 23% of the model's time. Here,
as in the convolution's kernel, a tile of `ROWS` rows × one vector of columns stays in registers while the
reduction broadcasts one value of A into an FMA per row:

    C[.., i, j] = Σ_k A[.., i, k] · B[.., k, j]      tiles over (batch, row blocks) in parallel, columns inside

The rows and columns are zero-padded to whole tiles in copies of A and B (a few KB each: the tile's loads need no
bounds checks), the product computed on the padded shape and cropped by its epilogue.
"""
from __future__ import annotations

from typing import Any

from tvm import te, tirx

from archc.lower.kernels.blocks import padded
from archc.lower.kernels.conv2d import inline_epilogue
from archc.lower.kernels.generic import TILE, has_block, schedule_block
from archc.lower.kernels.matmul import rewrite_calls
from archc.lower.kernels.optable import is_const, is_op_call, shape_of

BLOCK = "archc_bmm"
_PAD_A, _PAD_B, _CROP = "archc_bmm_pad_a", "archc_bmm_pad_b", "archc_bmm_crop"
ROWS = {16: 12, 8: 8}  # rows per tile by vector lanes: 12 accumulators of 32 zmm registers, 8 of 16 ymm


def batched_products(mod: Any, lanes: int) -> Any:
    """The module with each matmul of two non-constant float32 tensors of equal batch dimensions in `main` made
    archc's compute; `mod` itself where there is none."""
    def rewrite(bb: Any, call: Any) -> Any:
        return bb.emit_te(compute, *call.args, lanes, primfunc_name_hint="bmm") if _fits(call) else None
    return rewrite_calls(mod, rewrite)


def _fits(call: Any) -> bool:
    if not is_op_call(call) or call.op.name != "relax.matmul" or len(call.args) != 2:
        return False
    a, b = call.args
    sa, sb = shape_of(a), shape_of(b)
    return (not is_const(a) and not is_const(b) and len(sa) == len(sb) >= 3 and sa[:-2] == sb[:-2]
            and sa[-1] == sb[-2] and str(a.ty.dtype) == str(b.ty.dtype) == str(call.ty.dtype) == "float32")


def compute(a: Any, b: Any, lanes: int) -> Any:
    *batch, m, k = (int(d) for d in a.shape)
    n = int(b.shape[-1])
    rows, cols = padded(m, ROWS.get(lanes, 8)), padded(n, lanes)
    if rows != m:
        a = te.compute((*batch, rows, k), lambda *i: tirx.if_then_else(i[-2] < m, a(*i), tirx.const(0, "float32")),
                       name=_PAD_A)
    if cols != n:
        b = te.compute((*batch, k, cols), lambda *i: tirx.if_then_else(i[-1] < n, b(*i), tirx.const(0, "float32")),
                       name=_PAD_B)
    r = te.reduce_axis((0, k), name="k")
    c = te.compute((*batch, rows, cols), lambda *i: te.sum(a(*i[:-1], r) * b(*i[:-2], r, i[-1]), axis=r),
                   name=BLOCK)
    if (rows, cols) == (m, n):
        return c
    return te.compute((*batch, m, n), lambda *i: c(*i), name=_CROP)


def schedule(sch: Any, lanes: int) -> None:
    """Schedule the fused kernel holding BLOCK in place: the paddings copied in parallel, the product over
    (batch, row tiles) in parallel, each task its tile of rows across every column vector, the epilogue (the crop,
    an elementwise tail) applied to the tile in registers."""
    for name in (_PAD_A, _PAD_B):
        if has_block(sch, name):  # else that input needed no padding
            schedule_block(sch, sch.get_sblock(name), lanes)
    mm = sch.get_sblock(BLOCK)
    epilogue, broadcast = inline_epilogue(sch, mm, _CROP)
    if broadcast is not None:
        raise ValueError("a broadcasting epilogue after a batched product")  # the caller leaves it to TVM
    if epilogue is None:
        epilogue = sch.cache_write(mm, 0, "global")
    sch.set_scope(mm, 0, TILE)
    *batch, i, j, k = sch.get_loops(mm)
    io, ii = sch.split(i, [None, ROWS.get(lanes, 8)])
    jo, ji = sch.split(j, [None, lanes])
    sch.reorder(*batch, io, jo, k, ii, ji)
    sch.parallel(sch.fuse(*batch, io))
    sch.unroll(ii)
    sch.vectorize(ji)
    sch.reverse_compute_at(epilogue, jo)
    sch.vectorize(sch.get_loops(epilogue)[-1])
    sch.decompose_reduction(mm, k)
