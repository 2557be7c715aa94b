"""Which ONNX nodes each compiled kernel runs, and so its MACs: the link from `archc profile` to the analyzer.

TVM's ONNX importer keeps no node names, so kernels are matched to nodes by what they compute. A fused kernel is
named after its primitive ops (`fused_conv2d1_subtract1_…_relu1`); its first op is its anchor, which an ONNX node
of a matching type produced (conv2d ← Conv). Among those, the node with the kernel's shapes is taken (for a
convolution: data, weight and output; else first input and output), the earliest first, once per call (TVM keeps
one kernel for layers of equal shape, and the importer emits nodes in file order). The elementwise nodes that the
fusion pulled in after it (batch norm, ReLU, a residual add, a gate x·σ(x): SiLU, hardswish) join it as far as the
kernel's name lists their ops (after a squeeze-excite gate's 1×1 convolution, the multiply of the feature map by
the gate too: that kernel writes the feature map's shape); among nodes of equal shapes, one whose elementwise tail
is exactly the kernel's is taken first. Shapes are compared as the node has them: archc's blocked layout pads
channels to a multiple of its block (24 → 32), so a blocked kernel's channel count may exceed the node's by less
than one block. A kernel whose shapes no node of its kind has gets no node (its MACs unknown) rather than a wrong
one. A product of many rows that archc runs as a 1×1 convolution (kernels/matmul.py) is its MatMul's, its MACs the
node's (not the padded rows').

A 3×3 convolution that archc computes as Winograd tiles (kernels/winograd.py) runs in three kernels: the input
transform, the products and the output transform with the epilogue. Each names its Conv (the output transform its
epilogue's nodes too); the products' MACs are the multiplies they do (α² per tile, channel pair), the transforms'
none: a layer's MACs in such a kernel are fewer than the analyzer's direct count, which is the point.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import prod

from archc.analysis.model import Layer

# TVM's primitive op (as in fused kernel names) → the ONNX op types that import to it
ANCHORS: dict[str, tuple[str, ...]] = {
    "conv1d": ("Conv",), "conv2d": ("Conv",), "conv3d": ("Conv",), "conv2d_nchwc": ("Conv", "MatMul", "Gemm"),
    "conv2d_bf16_nchwc": ("Conv", "MatMul", "Gemm"), "conv2d_int8_nchwc": ("Conv", "MatMul", "Gemm"),
    "dwconv2d_nchwc": ("Conv",),
    "conv1d_transpose": ("ConvTranspose",), "conv2d_transpose": ("ConvTranspose",),
    "conv3d_transpose": ("ConvTranspose",),
    "matmul": ("Gemm", "MatMul"), "dense": ("Gemm", "MatMul"), "bmm": ("MatMul",),
    "max_pool1d": ("MaxPool",), "max_pool2d": ("MaxPool",), "max_pool3d": ("MaxPool",),
    "avg_pool1d": ("AveragePool",), "avg_pool2d": ("AveragePool",), "avg_pool3d": ("AveragePool",),
    "adaptive_avg_pool2d": ("GlobalAveragePool",), "mean": ("GlobalAveragePool", "ReduceMean"),
    "max": ("GlobalMaxPool", "ReduceMax"),
    "concatenate": ("Concat",), "resize2d": ("Resize", "Upsample"), "image_resize2d": ("Resize", "Upsample"),
    "reshape": ("Reshape", "Flatten"), "softmax": ("Softmax",), "log_softmax": ("LogSoftmax",),
    "permute_dims": ("Transpose",), "transpose": ("Transpose",), "split": ("Split",), "pad": ("Pad",),
    "add": ("Add", "Sum"), "subtract": ("Sub",), "multiply": ("Mul", "HardSigmoid", "HardSwish"),
    "divide": ("Div",),
    "relu": ("Relu",), "clip": ("Clip", "HardSigmoid", "HardSwish"), "sigmoid": ("Sigmoid",), "tanh": ("Tanh",),
    "leakyrelu": ("LeakyRelu",), "leaky_relu": ("LeakyRelu",),
    "winograd_input": ("Conv",), "winograd_products": ("Conv",), "winograd_output": ("Conv",),
}
_WINOGRAD = ("winograd_input", "winograd_products", "winograd_output")  # one convolution's three kernels
_CONVS = ("conv1d", "conv2d", "conv3d", "conv2d_nchwc", "conv2d_bf16_nchwc", "conv2d_int8_nchwc", "dwconv2d_nchwc")
_PLUMBING = ("strided_slice", "layout_transform")  # emitted by archc's layout plan, not from an ONNX node
_OWN = ("conv2d_nchwc", "conv2d_bf16_nchwc", "conv2d_int8_nchwc", "dwconv2d_nchwc")  # archc's: blocked, BN folded
# their data comes padded (height and width) by a kernel before them (conv2d.pad_bf16, pad_int8), their weights
# with the step's channels innermost: OIHW[ic_bn/2]i[oc_bn]o[2]i (bf16), OIHW[ic_bn/4]i[oc_bn]o[4]i (int8)
_PADDED = ("conv2d_bf16_nchwc", "conv2d_int8_nchwc")


@dataclass
class Kernel:
    """A compiled kernel as the profiler sees it: name, parameter shapes (inputs first, output last), calls."""
    name: str
    shapes: list[tuple[int, ...]]
    calls: int
    nodes: list[str] = field(default_factory=list)  # ONNX node names it runs, over all its calls
    macs: int | None = None  # over all its calls; None: no node found


def ops_of(kernel_name: str) -> list[str]:
    """The primitive ops a kernel name lists, in order: fused_conv2d1_add2_relu1 → conv2d, add, relu."""
    words = kernel_name.removeprefix("fused_").split("_")
    words = [w for n, w in enumerate(words) if w != "tir" or n + 1 == len(words)]  # tir_sigmoid: TVM's own sigmoid
    ops, i = [], 0
    while i < len(words):  # longest known op first: max_pool2d, conv2d_transpose, adaptive_avg_pool2d
        for j in range(len(words), i, -1):
            op = "_".join(words[i:j]).rstrip("0123456789")
            if op in ANCHORS or op in _PLUMBING or j == i + 1:
                ops.append(op)
                i = j
                break
    return ops


def attribute(kernels: Sequence[Kernel], layers: Sequence[Layer]) -> None:
    """Fill each kernel's `nodes` and `macs` from the analyzer's layers (kernels in the order main calls them)."""
    taken: set[str] = set()
    split: dict[str, Counter[str]] = {}  # a node whose ops TVM put in several kernels (HardSigmoid) → ops left
    after: dict[str, list[Layer]] = {}  # a node → every node that reads it
    stages: dict[str, set[str]] = {}  # a Winograd kernel's stage → the convolutions its kernels took
    for lay in layers:
        for name in dict.fromkeys(lay.inputs):
            after.setdefault(name, []).append(lay)
    for k in kernels:
        ops = ops_of(k.name)
        sliced = bool(ops) and ops[0] in _PLUMBING
        # the layout plan's own ops before the node's (a padded tensor's slice), and a QDQ model's quantize and
        # dequantize of another input of the epilogue (a residual's), fused in before the int8 convolution
        while ops and ops[0] in (*_PLUMBING, "quantize", "dequantize"):
            ops = ops[1:]
        if not ops or ops[0] not in ANCHORS:
            continue
        if ops[0] in _WINOGRAD:
            _winograd(k, ops, layers, after, stages.setdefault(ops[0], set()), taken)
            continue
        table = _FOLDED if ops[0] in _OWN else _EPILOGUE
        shapes = _unblocked(k.shapes, ops[0])
        if sliced and shapes and len(shapes[0][0]) > 1:  # its input still has the padded channels it slices off
            shapes[0] = (shapes[0][0], (1, _ANY_BLOCK, *shapes[0][1][2:]))
        candidates = [lay for lay in layers if lay.op in ANCHORS[ops[0]]
                      and (lay.name not in taken or split.get(lay.name, Counter())[ops[0]])]
        pool = [lay for lay in candidates if _same_shapes(lay, shapes, ops[0] in _CONVS)]
        # equal shapes, different epilogues (ResNet's conv+BN+ReLU and conv+BN+add+ReLU): the one that fits first;
        # a node a kernel before began (the clip of a HardSigmoid whose multiply and add ran apart) before a new one
        pool.sort(key=lambda lay: _preference(lay, ops, after, table, split))
        for lay in pool[:k.calls]:
            own = _own(lay, ops, table, split)
            if left := own - Counter(ops):  # this kernel runs part of the node: the rest is in another
                split[lay.name] = left
            else:
                split.pop(lay.name, None)
            fused = [lay, *_epilogue(lay, after, Counter(ops) - own, table)]
            taken.update(n.name for n in fused)
            k.nodes.extend(n.name for n in fused)
            k.macs = (k.macs or 0) + sum(n.macs or 0 for n in fused)


def _winograd(k: Kernel, ops: list[str], layers: Sequence[Layer], after: dict[str, list[Layer]],
              stage_taken: set[str], taken: set[str]) -> None:
    """A Winograd stage kernel's convolutions (one per call), the output transform's epilogue with them."""
    pool = [lay for lay in layers if lay.name not in stage_taken and _winograd_fits(lay, k.shapes, ops[0])]
    output = ops[0] == "winograd_output"
    if output:
        pool.sort(key=lambda lay: _preference(lay, ops, after, _FOLDED, {}))
    v, u = k.shapes[0], k.shapes[1]
    for lay in pool[:k.calls]:
        fused = [lay, *(_epilogue(lay, after, Counter(ops[1:]), _FOLDED) if output else ())]
        stage_taken.add(lay.name)
        taken.update(n.name for n in fused)
        k.nodes.extend(n.name for n in fused)
        # the products: a 1×1 convolution of α² groups over the tiles (v: 1, α²·C/bn, 1, tiles, bn)
        k.macs = (k.macs or 0) + (v[3] * prod(u) if ops[0] == "winograd_products" else 0)


def _winograd_fits(lay: Layer, shapes: Sequence[Shape], stage: str) -> bool:
    """Whether a Winograd stage kernel of these shapes runs this Conv: its tiles are those of the Conv's output, and
    the data (input transform), the weights (products: α²·O × I) or the output (output transform) are the Conv's,
    channels padded to whole blocks."""
    if lay.op != "Conv" or lay.kernel != (3, 3) or lay.output_shape is None or not lay.input_shapes \
            or lay.input_shapes[0] is None or len(lay.output_shape) != 4:
        return False
    n, out, oh, ow = lay.output_shape
    tiled = shapes[0] if stage != "winograd_input" else shapes[-1]  # (1, α²·C/bn, 1, tiles, bn)
    if len(tiled) != 5 or shapes[0][0] != 1:
        return False
    channels = lay.input_shapes[0][1]
    # α² groups of the input's (output transform: the output's) channel blocks
    alpha2 = tiled[1] // -(-(out if stage == "winograd_output" else channels) // tiled[4])
    m = round(alpha2 ** 0.5) - 2
    if m < 2 or tiled[3] != n * -(-oh // m) * -(-ow // m):
        return False
    if stage == "winograd_input":
        return _fits(lay.input_shapes[0], *_unblocked(shapes[:1], "conv2d_nchwc")[0])
    if stage == "winograd_products":
        u = shapes[1]  # OIHW[ic_bn]i[oc_bn]o, or bf16's OIHW[ic_bn/2]i[oc_bn]o[2]i
        if len(u) not in (6, 7):
            return False
        weight = lay.input_shapes[1] if len(lay.input_shapes) > 1 else None
        per_group = weight[1] if weight is not None and len(weight) == 4 else channels
        ic_bn = u[4] * (u[6] if len(u) == 7 else 1)
        reads = u[1] * ic_bn  # input channels per group as computed: a grouped conv's
        merged = (lay.groups or 1) > 1 and reads % per_group == 0  # groups merged into whole blocks
        return _fits((out,), (u[0] * u[5] // alpha2,), (u[5],)) and (merged or _fits((per_group,), (reads,), (ic_bn,)))
    return _fits(lay.output_shape, *_unblocked(shapes[-1:], "conv2d_nchwc")[0])


# ONNX elementwise op → the primitive ops its import becomes (batch norm decomposed for inference)
_EPILOGUE: dict[str, tuple[str, ...]] = {
    "BatchNormalization": ("subtract", "divide", "multiply", "add"), "Relu": ("relu",), "Clip": ("clip",),
    "Add": ("add",), "Sub": ("subtract",), "Mul": ("multiply",), "Div": ("divide",), "Sigmoid": ("sigmoid",),
    "LeakyRelu": ("leakyrelu",), "Tanh": ("tanh",), "Identity": (), "Dropout": (),
    "HardSigmoid": ("multiply", "add", "clip"), "HardSwish": ("multiply", "add", "clip", "multiply"),
    "QuantizeLinear": ("quantize",), "DequantizeLinear": ("dequantize",),
}
# in archc's kernels the batch norm is folded: its scale into the weights, its shift into an add (or nothing)
_FOLDED = {**_EPILOGUE, "BatchNormalization": ()}


def _preference(lay: Layer, ops: list[str], after: dict[str, list[Layer]], table: dict[str, tuple[str, ...]],
                split: dict[str, Counter[str]]) -> tuple[bool, ...]:
    """Which of the nodes of a kernel's shapes it runs, best first (False sorts first): a node a kernel before
    began (the clip of a HardSigmoid whose multiply and add ran apart); then one whose elementwise tail is exactly
    the kernel's (ResNet's conv+BN+ReLU and conv+BN+add+ReLU have equal shapes); then one whose ops, as far as the
    kernel's cover them, leave none of its ops unexplained; then one whose own ops the kernel's all include (a
    lone multiply is a Mul, not the start of a HardSigmoid)."""
    own = _own(lay, ops, table, split)
    rest = Counter(ops) - own
    return (lay.name not in split, _expansion(_epilogue(lay, after, table=table), table) != rest,
            _expansion(_epilogue(lay, after, rest, table), table) != rest, bool(own - Counter(ops)))


def _own(anchor: Layer, ops: list[str], table: dict[str, tuple[str, ...]],
         split: dict[str, Counter[str]]) -> Counter[str]:
    """The anchor node's own ops (one op; a HardSwish, several; of a node begun in another kernel, those left): the
    kernel's ops less these are its fused tail's."""
    return split.get(anchor.name) or Counter((_imported(anchor, table) if anchor.op in table else ()) or (ops[0],))


Shape = tuple[int, ...]


def _unblocked(shapes: Sequence[Shape], anchor: str) -> list[tuple[Shape, Shape]]:
    """A kernel's argument shapes in NCHW/OIHW (a blocked NCHW[x]c tensor, 5-D where the op is 2-D, or OIHW[x]i[y]o
    weights, back to the ONNX node's, channels still padded to the block), each with its block per axis (1: not
    blocked, the size is the node's)."""
    if anchor.endswith(("3d", "1d")):
        return [(s, (1,) * len(s)) for s in shapes]
    out: list[tuple[Shape, Shape]] = []
    for i, shape in enumerate(shapes):
        if len(shape) == 5:
            n, chunks, h, w, block = shape
            spatial = _ANY_BLOCK if anchor in _PADDED and i == 0 else 1
            out.append(((n, chunks * block, h, w), (1, block, spatial, spatial)))
        elif len(shape) == 6 and anchor in _OWN:
            oc, ic, kh, kw, ib, ob = shape
            out.append(((oc * ob, ic * ib, kh, kw), (ob, ib, 1, 1)))
        elif len(shape) == 7 and anchor in _PADDED:
            oc, ic, kh, kw, steps, ob, step = shape
            out.append(((oc * ob, ic * steps * step, kh, kw), (ob, steps * step, 1, 1)))
        else:
            out.append((shape, (1,) * len(shape)))
    return out


def _epilogue(lay: Layer, after: dict[str, list[Layer]], budget: Counter[str] | None = None,
              table: dict[str, tuple[str, ...]] = _EPILOGUE) -> list[Layer]:
    """The chain of elementwise nodes after `lay` (each the only one reading the last as its first input), as far
    as the kernel's remaining ops (`budget`) cover them."""
    chain: list[Layer] = []
    left = Counter(budget) if budget is not None else None
    cur = lay
    while step := _next(cur, after):
        need = _expansion(step, table)
        if left is not None:
            if any(left[op] < n for op, n in need.items()):
                break
            left -= need
        chain.extend(step)
        cur = step[-1]
    return chain


def _next(cur: Layer, after: dict[str, list[Layer]]) -> list[Layer]:
    """The elementwise step after `cur` that a fusion takes with it: its only reader, or a gate, x·f(x) (SiLU:
    Sigmoid and the Mul of x by it; hardswish written out), whose two readers are f and the product; nothing if
    another node reads it too."""
    readers = after.get(cur.name, [])
    if any(r.op not in _EPILOGUE for r in readers):  # read by a convolution too (a residual's shortcut): kept apart
        return []
    if len(readers) == 1:
        return readers
    if len(readers) == 2:
        for f, product in (readers, readers[::-1]):
            if f.inputs == [cur.name] and product.op == "Mul" and set(product.inputs) == {cur.name, f.name}:
                return [f, product]
    return []


def _expansion(chain: list[Layer], table: dict[str, tuple[str, ...]] = _EPILOGUE) -> Counter[str]:
    return sum((Counter(_imported(n, table)) for n in chain), Counter())


def _imported(lay: Layer, table: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The primitive ops an elementwise node imports to. A Clip whose bounds are inputs (opset 11 on: ReLU6 as
    PyTorch exports it) becomes a `maximum` by its lower bound and a `minimum` by its upper one, not `clip`."""
    if lay.op == "Clip" and len(lay.input_shapes) > 1:
        return tuple(op for op, bound in zip(("maximum", "minimum"), lay.input_shapes[1:3], strict=False)
                     if bound is not None)
    return table[lay.op]


def _same_shapes(lay: Layer, kernel_shapes: list[tuple[Shape, Shape]], conv: bool) -> bool:
    if not kernel_shapes or lay.output_shape is None or not lay.input_shapes:
        return False
    if conv and lay.op in ("MatMul", "Gemm"):
        return _rows_as_pixels(lay, kernel_shapes)
    shapes = [tuple(s) if s is not None else None for s in lay.input_shapes]
    out, (result, blocks) = tuple(lay.output_shape), kernel_shapes[-1]
    # a convolution on 1×1 pixels may write a larger tensor: a squeeze-excite gate's, its multiply fused after it
    gate = conv and len(out) > 2 and set(out[2:]) == {1} and _fits(out[:2], result[:2], blocks[:2])
    if not (_fits(out, result, blocks) or gate) or not _fits(shapes[0], *kernel_shapes[0]):
        return False
    return not conv or (len(shapes) > 1 and len(kernel_shapes) > 2 and _fits(shapes[1], *kernel_shapes[1]))


def _rows_as_pixels(lay: Layer, kernel_shapes: list[tuple[Shape, Shape]]) -> bool:
    """A product of rows [.., K] by constant K × N weights that archc runs as a 1×1 convolution (kernels/matmul.py):
    its rows the pixels of a 1 × K × H × W image (padded to whole rows of W), its weights N × K × 1 × 1."""
    x, out = lay.input_shapes[0], lay.output_shape
    if x is None or out is None or len(x) < 2 or len(kernel_shapes) < 3 or len(kernel_shapes[0][0]) != 4:
        return False
    (data, data_blocks), (weight, weight_blocks), (result, result_blocks) = (
        kernel_shapes[0], kernel_shapes[1], kernel_shapes[-1])
    rows, width = prod(x[:-1]), data[3]
    return (data[0] == 1 and data[2] == -(-rows // width) and weight[2:] == (1, 1) and result[2:] == data[2:]
            and _fits((1, x[-1]), data[:2], data_blocks[:2]) and _fits((out[-1],), result[1:2], result_blocks[1:2])
            and _fits((out[-1], x[-1]), weight[:2], weight_blocks[:2]))


_ANY_BLOCK = 0  # padded to a block not known here (a sliced input): by less than the widest block, 16 lanes


def _fits(node: Shape | None, kernel: Shape, blocks: Shape) -> bool:
    """The node's shape is the kernel's, but for blocked axes, padded up to a multiple of their block."""
    if node is None or len(node) != len(kernel):
        return False
    return all(a == b or (block > 1 and b % block == 0 and a < b < a + block)
               or (block == _ANY_BLOCK and a < b < a + 16)  # padded by less than a block (or a few pixels)
               for a, b, block in zip(node, kernel, blocks, strict=True))
