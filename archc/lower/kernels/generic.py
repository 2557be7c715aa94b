"""A schedule for every other kernel of a CNN (pools, global pooling, dense, layout transforms, concat, softmax,
elementwise): parallel over the outer output loops, vectorized along the innermost one, reductions kept inside.

These kernels are memory-bound and simple; what makes them slow untuned is that TVM leaves them single-threaded
and scalar. One rule covers them: intermediate injective blocks (padding) are inlined, each remaining block gets
its spatial loops fused and run in parallel and its innermost output loop vectorized (split to the vector width
when longer, moved inside the reduction loops when the block reduces: the blocked channel of a pool, the output
features of a dense layer).
"""
from __future__ import annotations

from math import prod
from typing import Any

_DATA_PAR, _REDUCE = 0, 2  # IterVar types


def schedule(sch: Any, lanes: int) -> None:
    """Schedule every block of the function in `sch`; raises where one cannot be (the caller keeps the rest)."""
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    kept = []
    for block in blocks[:-1]:  # inline what can be (padding, injective steps); the output block stays
        if _costly(sch, block) and len(sch.get_consumers(block)) > 1:
            kept.append(block)  # softmax's exp, read by its sum and its division: computed once, not twice
            continue
        try:
            sch.compute_inline(block)
        except Exception:  # noqa: BLE001 - a block that reduces or is read twice stays a block of its own
            kept.append(block)
    for block in [*kept, blocks[-1]]:
        schedule_block(sch, block, lanes)


def _vector(extent: int, lanes: int) -> int:
    """The widest vector (the target's, 8 or 4 lanes) that divides an output row; 0 if none does."""
    return next((v for v in (lanes, 8, 4) if extent % v == 0), 0)


def has_block(sch: Any, name: str) -> bool:
    """Whether the function in `sch` has a block of this name."""
    try:
        sch.get_sblock(name)
    except Exception:  # noqa: BLE001 - TVM raises its own error type for a missing block
        return False
    return True


def _costly(sch: Any, block: Any) -> bool:
    """Whether the block's value calls a transcendental function (worth computing once and storing)."""
    text = str(sch.get(block).body)
    return any(f"T.{f}(" in text for f in ("exp", "tanh", "erf", "sigmoid", "log"))


def _selects(sch: Any, block: Any) -> bool:
    """Whether the block's value is chosen by a condition (if_then_else, select): a concatenation, a padding."""
    text = str(sch.get(block).body)
    return "if_then_else" in text or "T.Select" in text


def dense_chunk(extent: int, lanes: int) -> int:
    """The outputs one task of a long output row computes (a dense layer's features): whole vectors, at least four
    tasks, at most 1,024 values (kept in L1 while the weights stream through); 0 if the row is not such a row
    (two vectors or fewer, or no vector divides it)."""
    vec = _vector(extent, lanes)
    if not vec or extent <= 2 * lanes:
        return 0
    return max(c for c in range(vec, min(extent // 4 if extent >= 4 * vec else extent, 1024) + 1, vec)
               if extent % c == 0)


def schedule_block(sch: Any, block: Any, lanes: int) -> None:
    """One block: its spatial loops in parallel, its innermost output loop vectorized (above)."""
    loops = sch.get_loops(block)
    kinds = [int(iv.iter_type) for iv in sch.get(block).iter_vars]
    if len(kinds) != len(loops) or any(k not in (_DATA_PAR, _REDUCE) for k in kinds):
        raise ValueError("not a plain loop nest")
    spatial = [lp for lp, k in zip(loops, kinds, strict=True) if k == _DATA_PAR]
    reduce = [lp for lp, k in zip(loops, kinds, strict=True) if k == _REDUCE]
    if not spatial:
        return
    if not reduce:
        last_vec = _vector(int(sch.get(spatial[-1]).extent), lanes)
        total = prod(int(sch.get(lp).extent) for lp in spatial)
        if len(spatial) > 1 and last_vec and (_selects(sch, block) or total % lanes):
            # a concatenation (or a padding) chooses its source by an outer index: fused with the vector lanes,
            # that choice would be made per lane, and TVM's vectorizer gives up (DenseNet's concat+BN+ReLU and
            # Inception's concatenations ran scalar); so the last axis alone is vectorized
            outer, inner = sch.split(spatial[-1], [None, last_vec])
            sch.vectorize(inner)
            sch.parallel(sch.fuse(*spatial[:-1], outer))
            return
        if len(spatial) > 1 and total % lanes and not last_vec:
            # rows of an odd length (ViT's 197 tokens): the outer loops in parallel, each row a plain loop that
            # LLVM vectorizes itself (fused, the row's index is a division per element and nothing vectorizes)
            sch.parallel(sch.fuse(*spatial[:-1]))
            return
        fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
        extent = int(sch.get(fused).extent)
        if extent % lanes == 0 and extent >= lanes * 2:
            outer, inner = sch.split(fused, [None, lanes])
            sch.vectorize(inner)
            sch.parallel(outer)
        else:
            sch.parallel(fused)
        return
    last = spatial[-1]
    extent = int(sch.get(last).extent)
    inner = None
    vec = _vector(extent, lanes)
    chunk = dense_chunk(extent, lanes)
    if chunk:
        # a long output row (a dense layer's features): each task takes a chunk of it, up to 1,024 values kept
        # in L1, and the reduction streams the weights' rows through it (contiguous reads, not one column at a time)
        outer_last, mid, inner = sch.split(last, [None, chunk // vec, vec])
        spatial = [*spatial[:-1], outer_last]
        sch.reorder(*spatial, *reduce, mid, inner)
    elif extent in (4, 8, 16, 32) and extent <= lanes * 2:
        inner = last
        spatial = spatial[:-1]
        sch.reorder(*spatial, *reduce, inner)
    if spatial:
        sch.parallel(sch.fuse(*spatial) if len(spatial) > 1 else spatial[0])
    if inner is not None:
        sch.vectorize(inner)
        sch.decompose_reduction(block, reduce[0])
