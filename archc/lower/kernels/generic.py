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

# The scope of a kernel's register tile (a convolution's or dense layer's accumulators, a Winograd tile). TVM 0.27
# (its LowerTVMBuiltin) keeps a buffer on the stack only where its scope is "global" and it is under 1 KiB; any
# other, "local" included, becomes a TVMBackendAllocWorkspace call per task: a pointer LLVM cannot promote to
# registers, so each tile was zeroed, stored and read back through memory around its reduction. As "global", a tile
# of up to 15 vectors is a stack buffer that LLVM keeps in registers (a larger one still takes the workspace:
# archc's arena, runtime/workspace.c). Zen 4, alone: MobileNet v2's 14×14 96 → 576 layer 120 → 100 µs in fp32,
# 83 → 57 µs in bf16.
TILE = "global"

_DATA_PAR, _REDUCE = 0, 2  # IterVar types
_ROW_CHUNK = 4096  # values of a concatenation's row one task copies (16 KB in, 16 KB out: L1)


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


def vector(extent: int, lanes: int) -> int:
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
    """The outputs one task of a long output row computes (the features of a product with weights that are not
    constants: dense.py schedules those that are, in registers): whole vectors, at least four
    tasks, at most 1,024 values (kept in L1 while the weights stream through); 0 if the row is not such a row
    (two vectors or fewer, or no vector divides it)."""
    vec = vector(extent, lanes)
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
    if not reduce and _relayout(sch, block, spatial, lanes):
        return
    if not reduce:
        last = int(sch.get(spatial[-1]).extent)
        last_vec = vector(last, lanes)
        total = prod(int(sch.get(lp).extent) for lp in spatial)
        row = _after_concat_axis(sch, block, spatial)
        if row and _concat_rows(sch, block, spatial, len(row), lanes):
            return
        row = row[-2:]
        if not last_vec and row and vector(prod(int(sch.get(lp).extent) for lp in row), lanes):
            # a concatenation of blocks too narrow for a vector (ShuffleNet's channels in blocks of 2 or 4): what
            # follows the concatenated axis is contiguous in each source, and its last two axes (a row of blocks,
            # 28 × 2) are vectorized as one loop (a vector that divides the row: a longer run would cross rows and
            # TVM would gather it)
            inner_loop = sch.fuse(*row) if len(row) > 1 else row[0]
            vec = vector(int(sch.get(inner_loop).extent), lanes)
            outer, inner = sch.split(inner_loop, [None, vec])
            sch.vectorize(inner)
            sch.parallel(sch.fuse(*spatial[:len(spatial) - len(row)], outer))
            return
        if len(spatial) > 1 and last_vec and (_selects(sch, block) or total % lanes):
            # a concatenation (or a padding) chooses its source by an outer index: fused with the vector lanes,
            # that choice would be made per lane, and TVM's vectorizer gives up (DenseNet's concat+BN+ReLU and
            # Inception's concatenations ran scalar); so the last axis alone is vectorized
            outer, inner = sch.split(spatial[-1], [None, last_vec])
            sch.vectorize(inner)
            sch.parallel(sch.fuse(*spatial[:-1], outer))
            return
        rows = _contiguous_rows(sch.get(block)) if len(spatial) > 1 and last % lanes else 0
        if rows > 1 and prod(int(sch.get(lp).extent) for lp in spatial[-rows:]) >= lanes:
            # a copy or an elementwise step whose innermost axes are contiguous in every buffer it touches (a slice
            # of channels at 14 × 14, a copy into blocks of one channel): one row, vectorized whole
            row_tasks, row = _row_tasks(sch, sch.fuse(*spatial[-rows:]), lanes)
            tasks = [*spatial[:-rows], row_tasks]
            sch.parallel(sch.fuse(*tasks) if len(tasks) > 1 else row_tasks)
            _vectorize_row(sch, row, lanes)
            return
        if len(spatial) > 1 and last % lanes:
            # rows no vector divides (ViT's 197 tokens; NCHW rows of 28 or 14, whose fused vectors would cross rows
            # and be gathered): the outer loops in parallel, each row a plain loop that LLVM vectorizes itself
            # (fused, the row's index is a division per element and nothing vectorizes)
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
    vec = vector(extent, lanes)
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


def _after_concat_axis(sch: Any, block: Any, loops: list[Any]) -> list[Any]:
    """The loops after the axis a concatenation joins along (its sources differ from its output there alone; its
    block loops over the output's axes in order, as TVM's concatenate does); [] for another block."""
    stmt = sch.get(block)
    if len(stmt.reads) < 2 or not _selects(sch, block):
        return []
    out = [int(d) for d in stmt.writes[0].source.shape]
    shapes = [[int(d) for d in r.source.shape] for r in stmt.reads]
    if len(loops) != len(out) or any(len(s) != len(out) for s in shapes):
        return []
    axes = {i for s in shapes for i, (a, b) in enumerate(zip(s, out, strict=True)) if a != b}
    if len(axes) != 1:
        return []
    return loops[axes.pop() + 1:]


def _concat_rows(sch: Any, block: Any, loops: list[Any], rows: int, lanes: int) -> bool:
    """Schedule a concatenation whose source is chosen per index of its axis (the rows after that axis contiguous in
    each source), and say so (False: its choice depends on more). The rows after the axis are one loop, vectorized
    whole (`_vectorize_row`), in tasks of at most _ROW_CHUNK values; the loops before it, the axis's included, run
    in parallel. Where the source is fixed by the axis's index modulo a small factor (a channel shuffle fused after
    the concatenation: ShuffleNet's output channel 2i + g is channel i of half g), the axis is split by that factor
    and the inner loop unrolled, so that each copy's choice folds to one source. Before, the select per element
    and rows of 7 or 14 kept the kernel scalar or 4 lanes wide (ShuffleNet v2's shuffles: 0.4 ms of its 3.3)."""
    axis = len(loops) - rows - 1
    stmt = sch.get(block)
    conditions = _conditions(stmt)
    row_vars = [iv.var for iv in stmt.iter_vars[axis + 1:]]
    if not conditions or any(v.same_as(r) for c in conditions for v in _free_vars(stmt, c) for r in row_vars):
        return False
    row_tasks, row = _row_tasks(sch, sch.fuse(*loops[axis + 1:]) if rows > 1 else loops[-1], lanes)
    factor = _source_period(stmt, conditions, axis, int(sch.get(loops[axis]).extent))
    if factor:
        outer, inner = sch.split(loops[axis], [None, factor])
        sch.reorder(outer, row_tasks, inner, row)
        sch.parallel(sch.fuse(*loops[:axis], outer, row_tasks))
        sch.unroll(inner)
    else:
        sch.parallel(sch.fuse(*loops[:axis + 1], row_tasks))
    _vectorize_row(sch, row, lanes)
    return True


def _row_tasks(sch: Any, row: Any, lanes: int) -> tuple[Any, Any]:
    """A row split into the tasks it is copied in (a long row, DenseNet's 56 × 56 × 16, in pieces of L1's size;
    a row of one piece, its one task) and the loop within a task."""
    extent = int(sch.get(row).extent)
    chunk = max((c for c in range(lanes, min(extent, _ROW_CHUNK) + 1, lanes) if extent % c == 0), default=extent)
    tasks, inner = sch.split(row, [None, chunk])
    return tasks, inner


def _vectorize_row(sch: Any, row: Any, lanes: int) -> None:
    """Vectorize a row: its whole vectors in one loop, the values after them (49 = 3 × 16 + 1) in a scalar loop
    of their own. A predicated last vector is scalarized by TVM, and LLVM then vectorized the loop around it with
    gathers and scatters (a slice at 7 × 7 ran 4× slower)."""
    extent = int(sch.get(row).extent)
    whole = extent - extent % lanes
    if whole and whole != extent:
        row = sch.loop_partition(row, [whole, None], preserve_unit_iters=False)[0]
    if whole:
        sch.vectorize(sch.split(row, [None, lanes])[1])


def _contiguous_rows(stmt: Any) -> int:
    """How many of the block's innermost variables index the innermost axes of every buffer it reads and writes,
    in order and whole (but the outermost of them), so that a row over them is contiguous in each; 0 if none.
    Axes of one element (NCHW1c's block) are passed over; two others at most, an image's row and column (over a
    third, TVM no longer simplifies the fused index to a contiguous one, and the copy ran scalar as one task)."""
    analyzer = _analyzer(stmt)
    accesses = []
    for a in (*stmt.reads, *stmt.writes):
        shape = [int(d) for d in a.source.shape]
        keep = len(shape)
        while keep and shape[keep - 1] == 1:
            keep -= 1
        accesses.append((list(a.region)[:keep], shape[:keep]))
    depth, matched, inner_extent = 0, 0, 0  # loops counted, buffer axes matched, the last matched axis's extent
    for iv in reversed(list(stmt.iter_vars)):
        if matched == 2:
            return depth
        if int(iv.dom.extent) == 1:
            depth += 1
            continue
        for region, shape in accesses:
            if len(region) <= matched:
                return depth
            r = region[len(region) - 1 - matched]
            if int(r.extent) != 1 or not analyzer.simplify(r.min).same_as(iv.var):
                return depth
            if shape[len(shape) - 1 - matched] < int(iv.dom.extent):
                return depth  # a padding: the buffer is shorter than the axis (its reads guarded by a condition)
            if matched and shape[len(shape) - matched] != inner_extent:
                return depth  # the axis inside is not whole in this buffer: the row would skip
        depth, matched, inner_extent = depth + 1, matched + 1, int(iv.dom.extent)
    return depth


def _conditions(stmt: Any) -> list[Any]:
    """The conditions that choose the block's source: a concatenation of n sources nests n - 1 choices (in the
    else branch of the one before; a padding fused after it, in the then branch)."""
    from tvm import ir
    found, todo = [], [stmt.body.value]
    while todo:
        value = todo.pop()
        if isinstance(value, ir.Call) and value.op.name in ("prim.if_then_else", "tirx.if_then_else"):
            found.append(value.args[0])
            todo += [value.args[1], value.args[2]]
    return found


def _analyzer(stmt: Any, skip: int = -1) -> Any:
    """An analyzer that knows each of the block's variables' range (but the one at index `skip`)."""
    from tvm import sym
    analyzer = sym.Analyzer()
    for j, iv in enumerate(stmt.iter_vars):
        if j != skip:
            analyzer.bind(iv.var, iv.dom)
    return analyzer


def _free_vars(stmt: Any, expr: Any) -> list[Any]:
    """The variables the expression still uses once simplified (a reshape's index arithmetic often cancels)."""
    from tvm import tirx
    return list(tirx.analysis.undefined_vars(_analyzer(stmt).simplify(expr)))


def _source_period(stmt: Any, conditions: list[Any], axis: int, extent: int) -> int:
    """The smallest factor f (2, 3, 4 or 8) of the axis's extent such that, the axis's index known modulo f, every
    condition choosing the block's source is decided; 0 if none is."""
    from tvm import ir, tirx
    var = stmt.iter_vars[axis].var
    def decided(factor: int, residue: int) -> bool:
        analyzer = _analyzer(stmt, skip=axis)
        outer = tirx.Var("outer", var.ty)
        analyzer.bind(outer, ir.Range.from_min_extent(0, extent // factor))
        analyzer.bind(var, outer * factor + residue)
        return all(isinstance(analyzer.simplify(c), tirx.IntImm) for c in conditions)

    return next((f for f in (2, 3, 4, 8) if extent % f == 0 and extent > f
                 and all(decided(f, r) for r in range(f))), 0)


def _relayout(sch: Any, block: Any, loops: list[Any], lanes: int) -> bool:
    """Schedule a copy between NCHW and NCHW[b]c (b > 1) that loops in its source's order, and say so (False:
    not such a block). Fused and vectorized whole, such a copy reads one row and writes b rows a value at a time:
    TVM emits it scalar (ShuffleNet's relayouts around its channel shuffles, 1.7 ms of 8.1 in its profile). Here
    each task copies one (channel block, row); inside it the loop along the row is left to LLVM with the b channels
    of a block unrolled in its body, so that it vectorizes along the row: b unit-stride rows on the NCHW side, one
    interleaved group of b on the blocked side. A block of whole vectors is itself vectorized instead (one
    vector load or store on the blocked side, strided on the other; LLVM's cost model keeps the row loop scalar
    for AVX2's blocks of 8)."""
    stmt = sch.get(block)
    if len(stmt.reads) != 1 or len(stmt.writes) != 1:
        return False
    src = [int(d) for d in stmt.reads[0].source.shape]
    dst = [int(d) for d in stmt.writes[0].source.shape]
    if len(src) == 5 and len(dst) == 4 and src[1] * src[4] == dst[1] and src[2:4] == dst[2:4] and src[4] > 1:
        block_size, blocking = src[4], False
    elif len(src) == 4 and len(dst) == 5 and dst[1] * dst[4] == src[1] and src[2:4] == dst[2:4] and dst[4] > 1:
        block_size, blocking = dst[4], True
    else:
        return False
    names = [iv.var.name for iv in stmt.iter_vars]
    if len(loops) != len(src) or _read_order(stmt) != names:  # not looping in the source's order
        return False
    if blocking:
        n, c, h, w = loops
        cb, ci = sch.split(c, [None, block_size])
        sch.reorder(n, cb, h, w, ci)
    else:
        n, cb, h, w, ci = loops
    sch.parallel(sch.fuse(n, cb, h))
    row_vec = vector(int(sch.get(w).extent) * block_size, lanes)  # a vector of whole blocks along the row
    if block_size % lanes == 0:  # a block of whole vectors: the block is the vector (strided on the NCHW side)
        sch.vectorize(sch.split(ci, [None, lanes])[1])
    elif blocking and row_vec:
        # into blocks: LLVM keeps the interleaved stores of the row loop scalar; a vector of whole blocks along
        # the row is stored in one piece instead (its values gathered from the b rows)
        sch.vectorize(sch.split(sch.fuse(w, ci), [None, row_vec])[1])
    else:
        sch.unroll(ci)
    return True


def _read_order(stmt: Any) -> list[str]:
    """The names of the variables the block's read is indexed by, each index a lone variable ([] otherwise)."""
    out = []
    for r in stmt.reads[0].region:
        if int(r.extent) != 1 or not hasattr(r.min, "name"):
            return []
        out.append(r.min.name)
    return out
