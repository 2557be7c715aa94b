"""The blocked-layout direct convolution (NCHW[x]c data, OIHW[x]i[y]o weights) as a TE compute, and its schedule.

The design is NeoCPU's (USENIX ATC'19; TVM's former topi/x86/conv2d_avx_common.py): channels are blocked so that
`oc_bn` output channels fill one or more vector registers; a tile of `reg_n` output pixels × `oc_bn` channels is
kept in registers while the reduction over (input channels, kh, kw) broadcasts one input value into an FMA per
tile column. The weights are packed at build time (they are constants), the loop over (n, oc_chunk, oh) runs in
parallel, and the fused epilogue (bias, folded batch norm, ReLU/ReLU6/LeakyReLU, the residual add) is applied to
the tile before it leaves the registers.

The compute is named `BLOCK` so that the schedule pass finds it inside whatever fused kernel FuseTIR made of it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import tvm
from tvm import te, topi

from archc.lower.kernels import bfdot, bfmmla, dpbf16, generic, sdot, steps, usdot, usmmla, vnni
from archc.lower.kernels.blocks import is_depthwise
from archc.ops.window import out_sizes

BLOCK = "archc_conv2d_nchwc"
DW_BLOCK = "archc_dwconv2d_nchwc"  # the depthwise one (groups = channels)
BF16, INT8 = "bf16", "int8"  # Workload.step of the bf16 and int8 kernels
BF16_BLOCK = "archc_conv2d_nchwc_bf16"  # bf16 data and weights, float32 sums: VDPBF16PS steps (dpbf16.py)
INT8_BLOCK = "archc_conv2d_nchwc_int8"  # uint8 data, int8 weights, int32 sums: VPDPBUSD, USDOT or SDOT steps
STEP = "archc_step"  # a stepped block's annotation: the unit whose step it tensorizes into (STEPS)
# a stepped block's unit → (its step's registration, the step's output lanes)
STEPS = {"vnni": (vnni.register, vnni.LANES), "usdot": (usdot.register, usdot.LANES),
         "sdot": (sdot.register, sdot.LANES), "avx512bf16": (dpbf16.register, dpbf16.LANES),
         "bfdot": (bfdot.register, bfdot.LANES), "bfmmla": (bfmmla.register, steps.CHANNELS),
         "usmmla": (usmmla.register, steps.CHANNELS)}
# units whose step computes 2 pixels × 2 channels (a matrix step): the convolution in (…, W/2, oc_bn/2, 2, 2)
PAIRED = ("bfmmla", "usmmla")
WORKLOAD = "archc_workload"  # the block annotation that carries the shape key (Workload.key)
PAD = "archc_conv2d_pad"
PAD_BF16 = "archc_conv2d_pad_bf16"  # the bf16 convolution's input kernel (pad_bf16)
PAD_INT8 = "archc_conv2d_pad_int8"  # the int8 convolution's input padded (pad_int8)
TO_BF16 = "archc_to_bf16"  # an activation rounded to bf16 for the bf16 convolutions that read it (to_bf16)
FROM_BF16 = "archc_from_bf16"  # a residual read back from those bits (from_bf16)
QUANTIZE = "archc_quantize"  # the int8 convolution's input quantized (quantize)
CROP = "archc_conv2d_crop"  # the output's true width, where the row was widened (`widened`)


@dataclass(frozen=True)
class Config:
    """A kernel's free parameters: the register tile (`reg_n` output pixels along a row × `oc_tile` channel
    blocks), whether the reduction keeps kw outside the input-channel block (`kw_outer`) rather than unrolled
    inside it, and whether the zero padding is a bounds check in the loads (`inline_pad`: measured 2.4× faster for
    a depthwise layer, whose few FLOPs per byte make the padded copy cost more than the checks, and 10% on a 7×7
    3×3 layer) or a parallel copy first (14% faster for the 7×7 stem)."""
    reg_n: int
    oc_tile: int = 1
    kw_outer: bool = False
    inline_pad: bool = False  # padding read in place (a bounds check per load) rather than copied first

    def record(self) -> dict[str, Any]:
        """As the tuning database and the shipped tables hold it."""
        return {"reg_n": self.reg_n, "oc_tile": self.oc_tile, "kw_outer": self.kw_outer, "inline_pad": self.inline_pad}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Config:
        return cls(int(record["reg_n"]), int(record.get("oc_tile", 1)), bool(record.get("kw_outer", False)),
                   bool(record.get("inline_pad", False)))


def compute(data: Any, weight: Any, strides: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
            out_dtype: str) -> Any:
    """conv2d in NCHW[ic_bn]c × OIHW[ic_bn]i[oc_bn]o → NCHW[oc_bn]c. Grouped when the weights hold fewer input
    chunks than the data (groups = data chunks / weight chunks, each group a whole number of blocks on both
    sides): output chunk `oc` reads the input chunks of its group, the rest of the kernel unchanged."""
    n, data_chunks, height, width, ic_bn = (int(d) for d in data.shape)
    oc_chunk, ic_chunk, kh, kw, _, oc_bn = (int(d) for d in weight.shape)
    groups = data_chunks // ic_chunk
    per_group = oc_chunk // groups  # output chunks per group
    (sh, sw), (dh, dw) = strides, dilation
    padding, width_out = widened(width, kw, sw, dw, padding)
    data, (out_h, out_w) = _window(data, (kh, kw), strides, padding, dilation)
    icc = te.reduce_axis((0, ic_chunk), name="icc")
    icb = te.reduce_axis((0, ic_bn), name="icb")
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")

    def cell(b: Any, oc: Any, y: Any, x: Any, ob: Any) -> Any:
        chunk = icc if groups == 1 else oc // per_group * ic_chunk + icc
        value = data[b, chunk, y * sh + rh * dh, x * sw + rw * dw, icb].astype(out_dtype)
        return te.sum(value * weight[oc, icc, rh, rw, icb, ob].astype(out_dtype), axis=[icc, rh, rw, icb])

    key = Workload.of((n, data_chunks, height, width, ic_bn), (oc_chunk, ic_chunk, kh, kw, ic_bn, oc_bn), strides,
                      padding, dilation).key
    return _cropped(te.compute((n, oc_chunk, out_h, out_w, oc_bn), cell, name=BLOCK, attrs={WORKLOAD: key}),
                    width_out)


def pad_bf16(data: Any, kernel: Sequence[int], strides: Sequence[int], padding: Sequence[int],
             dilation: Sequence[int], bn: int = 0, even: bool = False) -> Any:
    """The bf16 convolution's input, in a kernel of its own: float32 NCHW[ic_bn]c zero-padded (`widened`'s extra
    columns too) and rounded to bf16 (its bits: dpbf16.bits) in one pass. With `bn`, `data` is NCHW, relaid out to
    NCHW[bn]c in the same pass, the channels past its last zero (an RGB stem's fourth, as `quantize`'s). `even`:
    the output row widened to an even width (a PAIRED step's). `data` may be bf16 bits already (`to_bf16`'s): padded
    as it is."""
    convert = (lambda v: v) if str(data.dtype) == dpbf16.BITS else dpbf16.bits
    return _converted(data, kernel, strides, padding, dilation, PAD_BF16, convert, 0, dpbf16.BITS, bn, even)


def to_bf16(data: Any) -> Any:
    """float32 NCHW[ic_bn]c rounded to bf16 (its bits: dpbf16.bits), elementwise, once for the bf16 convolutions
    that read it: a 1×1 one as it is, a padded one through `pad_bf16`, a Winograd one through its input transform.
    TVM fuses it into the epilogue of the kernel that computes `data` where that is its one consumer."""
    return te.compute(data.shape, lambda *i: dpbf16.bits(data[i]), name=TO_BF16)


def from_bf16(bits: Any) -> Any:
    """`to_bf16`'s bits read back as float32, elementwise: a residual add's operand where its other readers are bf16
    convolutions (the layout plan's bf16 residual stream), which TVM fuses into the kernel of the add."""
    return te.compute(bits.shape, lambda *i: dpbf16.value(bits[i]), name=FROM_BF16)


def quantize(data: Any, scale: float, zero_point: int, bn: int = 0) -> Any:
    """float32 data quantized to uint8 as ONNX's QuantizeLinear (vnni.quantize), the int8 convolution's input:
    NCHW[bn]c as it is (an elementwise kernel, which TVM fuses into the epilogue of the kernel that computes the
    data where that is its one consumer: the activation leaves it as uint8, a quarter of the bytes); or, with
    `bn`, NCHW (NCL: height 1) relaid out to NCHW[bn]c in the same pass, the channels past the last ones the zero
    point (an RGB input's fourth: one kernel where a pad, a relayout and a quantization had taken three)."""
    if not bn:
        return te.compute(data.shape, lambda *i: vnni.quantize(data[i], scale, zero_point), name=QUANTIZE)
    n, channels, *size = (int(d) for d in data.shape)
    height, width = size if len(size) == 2 else (1, size[0])

    def cell(b: Any, c: Any, y: Any, x: Any, i: Any) -> Any:
        channel = c * bn + i
        at = (b, tvm.tirx.min(channel, channels - 1), *((y, x) if len(size) == 2 else (x,)))
        return tvm.tirx.if_then_else(channel < channels, vnni.quantize(data[at], scale, zero_point),
                                     tvm.tirx.const(zero_point, "uint8"))

    return te.compute((n, -(-channels // bn), height, width, bn), cell, name=QUANTIZE)


def pad_int8(data: Any, kernel: Sequence[int], strides: Sequence[int], padding: Sequence[int],
             dilation: Sequence[int], zero_point: int, even: bool = False) -> Any:
    """The int8 convolution's input padded, in a kernel of its own: uint8 NCHW[ic_bn]c (`quantize`'s) padded with
    the zero point (a real 0; `widened`'s extra columns too, an even row's with `even`)."""
    return _converted(data, kernel, strides, padding, dilation, PAD_INT8, lambda v: v, zero_point, "uint8",
                      even=even)


def needs_padding(width: int, kernel: Sequence[int], strides: Sequence[int], padding: Sequence[int],
                  dilation: Sequence[int], even: bool = False) -> bool:
    """Whether a convolution's input must be padded (its padding, or `widened`'s extra columns) before a kernel
    that reads it whole (the bf16 and int8 ones)."""
    return any(widened(width, kernel[1], strides[1], dilation[1], padding, even)[0])


def _converted(data: Any, kernel: Sequence[int], strides: Sequence[int], padding: Sequence[int],
               dilation: Sequence[int], name: str, convert: Any, fill: int, dtype: str, bn: int = 0,
               even: bool = False) -> Any:
    """NCHW[ic_bn]c data converted (`convert` of each value) and padded with `fill` for the convolution; with `bn`,
    NCHW data, relaid out to NCHW[bn]c as well (its channels past the last `fill`)."""
    nchw = bool(bn)
    if nchw:
        n, channels, height, width = (int(d) for d in data.shape)
        chunks = -(-channels // bn)
    else:
        n, chunks, height, width, bn = (int(d) for d in data.shape)
    (top, left, bottom, right), _ = widened(width, kernel[1], strides[1], dilation[1], padding, even)

    def cell(b: Any, c: Any, y: Any, x: Any, i: Any) -> Any:
        if not nchw:
            inside, value = padded_read(data, b, c, y - top, x - left, i)
        else:  # channel c·bn + i, clamped inside as the rows and columns are
            channel = c * bn + i
            inside, value = padded_read(data, b, tvm.tirx.min(channel, channels - 1), y - top, x - left)
            inside = tvm.tirx.all(inside, channel < channels)
        return tvm.tirx.if_then_else(inside, convert(value), tvm.tirx.const(fill, dtype))

    return te.compute((n, chunks, height + top + bottom, width + left + right, bn), cell, name=name)


def padded_read(data: Any, b: Any, c: Any, y: Any, x: Any, *i: Any) -> tuple[Any, Any]:
    """Whether (y, x) lies inside NCHW[bn]c (or, without `i`, NCHW) `data`, and the value there, the indices
    clamped inside it: a read of the padding, which the condition discards, stays in bounds."""
    height, width = int(data.shape[2]), int(data.shape[3])
    inside = tvm.tirx.all(y >= 0, y < height, x >= 0, x < width)
    return inside, data[b, c, tvm.tirx.min(tvm.tirx.max(y, 0), height - 1),
                        tvm.tirx.min(tvm.tirx.max(x, 0), width - 1), *i]


def compute_int8(data: Any, weight: Any, strides: Sequence[int], padding: Sequence[int],
                 dilation: Sequence[int], shape: Sequence[int], unit: str = "vnni") -> Any:
    """conv2d of uint8 NCHW[ic_bn]c data already padded (`pad_int8` of the float32 input of `shape`) × int8
    OIHW[ic_bn/4]i[oc_bn]o[4]i weights (vnni.pack_weights) → int32 NCHW[oc_bn]c: `compute_bf16`'s loop nest with
    the input block's channels taken in fours, its WORKLOAD its shape's with step "int8" (a configuration of its
    own, else its shape's float32 one, as `compute_bf16`'s). `unit`: the step the schedule tensorizes into (STEPS:
    x86's VPDPBUSD, aarch64's USDOT or SDOT, whose products are of q − 128: sdot.py), recorded on the block;
    a PAIRED one (USMMLA) takes OIHW[ic_bn/8]i[oc_bn]o[8]i weights and an even row, as `compute_bf16`'s."""
    return _stepped(data, weight, strides, padding, dilation, shape, INT8_BLOCK,
                    lambda d, w: vnni.product(d, w, unit == "sdot"), {STEP: unit}, step=INT8, paired=unit in PAIRED)


def _stepped(data: Any, weight: Any, strides: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
             shape: Sequence[int], name: str, product: Any, attrs: dict[str, str], step: str,
             paired: bool = False) -> Any:
    """The convolution of padded data × weights whose innermost axis is the step's reduction (a pair of bf16
    channels, a quadruple of int8 ones), `product` of a data and a weight value summed; cropped as `compute`.
    `step`: its workload's (Workload.step). `paired`: computed as (N, O/oc_bn, H, W/2, oc_bn/2, 2 pixels,
    2 channels), a matrix step's accumulators (bfmmla.py; W even), and read back as NCHW[oc_bn]c by the CROP
    block, which the epilogue inlines."""
    n, chunks, height, width, ic_bn = (int(d) for d in data.shape)
    oc_chunk, ic_chunk, kh, kw, steps, oc_bn, width_step = (int(d) for d in weight.shape)
    per_group = oc_chunk // (chunks // ic_chunk)  # output chunks per group (grouped as `compute`)
    (sh, sw), (dh, dw) = strides, dilation
    out_h, out_w = (height - dh * (kh - 1) - 1) // sh + 1, (width - dw * (kw - 1) - 1) // sw + 1
    icc = te.reduce_axis((0, ic_chunk), name="icc")
    icp = te.reduce_axis((0, steps), name="icp")
    j = te.reduce_axis((0, width_step), name="j")
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")

    def cell(b: Any, oc: Any, y: Any, x: Any, ob: Any) -> Any:
        chunk = icc if chunks == ic_chunk else oc // per_group * ic_chunk + icc
        value = data[b, chunk, y * sh + rh * dh, x * sw + rw * dw, icp * width_step + j]
        return te.sum(product(value, weight[oc, icc, rh, rw, icp, ob, j]), axis=[icc, rh, rw, icp, j])

    workload = Workload.of(shape, (oc_chunk, ic_chunk, kh, kw, ic_bn, oc_bn), strides, padding, dilation, step)
    attrs = {WORKLOAD: workload.key, **attrs}
    if not paired:
        return _cropped(te.compute((n, oc_chunk, out_h, out_w, oc_bn), cell, name=name, attrs=attrs),
                        workload.out_size[1])
    assert out_w % 2 == 0 and oc_bn % 2 == 0, (out_w, oc_bn)  # pad_bf16's `even` widened the row
    pairs = te.compute((n, oc_chunk, out_h, out_w // 2, oc_bn // 2, 2, 2),
                       lambda b, oc, y, x, o, px, po: cell(b, oc, y, x * 2 + px, o * 2 + po), name=name, attrs=attrs)
    return te.compute((n, oc_chunk, out_h, workload.out_size[1], oc_bn),
                      lambda b, oc, y, x, o: pairs[b, oc, y, x // 2, o // 2, x % 2, o % 2], name=CROP)


def compute_bf16(data: Any, weight: Any, strides: Sequence[int], padding: Sequence[int],
                 dilation: Sequence[int], shape: Sequence[int], unit: str = "avx512bf16") -> Any:
    """conv2d of bf16 NCHW[ic_bn]c data already padded (`pad_bf16` of the float32 input of `shape`, by `padding`) ×
    OIHW[ic_bn/2]i[oc_bn]o[2]i weights (dpbf16.pack_weights; both as bits) → float32 NCHW[oc_bn]c, the sums in
    float32: `compute`'s loop nest with the input block's channels taken in pairs, the pair innermost (the VDPBF16PS
    step).
    Its WORKLOAD is its shape's with step "bf16" (`bf16:d…`): a configuration searched for the bf16 kernel, or
    where none is, the float32 convolution's of the same shape (search.Choices.config). The two differ: the bf16
    kernel reads half the bytes per product, and on Zen 4 ResNet-50's bf16 layers took 11.0 ms with the float32
    tiles and 8.8 ms with their own. A PAIRED `unit` takes OIHW[ic_bn/4]i[oc_bn]o[4]i weights and an even row."""
    return _stepped(data, weight, strides, padding, dilation, shape, BF16_BLOCK,
                    lambda d, w: dpbf16.value(d) * dpbf16.value(w), {STEP: unit}, step=BF16, paired=unit in PAIRED)


def compute_depthwise(data: Any, weight: Any, strides: Sequence[int], padding: Sequence[int],
                      dilation: Sequence[int], out_dtype: str, fill: int = 0) -> Any:
    """Depthwise conv2d (groups = channels) in NCHW[bn]c × (C/bn, 1, KH, KW, 1, bn) → NCHW[bn]c: each output
    vector is the input vector of its channels times the weight vector, summed over the window. `fill`: the
    zero point of an int8 build's uint8 input, which pads it (a real 0) and is taken off each value read."""
    n, chunks, height, width, bn = (int(d) for d in data.shape)
    _, _, kh, kw, _, _ = (int(d) for d in weight.shape)
    (sh, sw), (dh, dw) = strides, dilation
    padding, width_out = widened(width, kw, sw, dw, padding)
    data, (out_h, out_w) = _window(data, (kh, kw), strides, padding, dilation, fill)
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")

    def cell(b: Any, c: Any, y: Any, x: Any, cb: Any) -> Any:
        value = data[b, c, y * sh + rh * dh, x * sw + rw * dw, cb].astype(out_dtype)
        if fill:  # the zero point taken off before the product: Σ q·w − z·Σw would cancel large sums
            value = value - tvm.tirx.const(fill, out_dtype)
        return te.sum(value * weight[c, 0, rh, rw, 0, cb].astype(out_dtype), axis=[rh, rw])

    key = Workload.of((n, chunks, height, width, bn), (chunks, 1, kh, kw, 1, bn), strides, padding, dilation).key
    return _cropped(te.compute((n, chunks, out_h, out_w, bn), cell, name=DW_BLOCK, attrs={WORKLOAD: key}),
                    width_out)


def widened(width: int, kw: int, sw: int, dw: int, padding: Sequence[int],
            even: bool = False) -> tuple[list[int], int]:
    """The padding (top, left, bottom, right) with columns added on the right so that the output row splits into
    register tiles of 5 to 14 pixels, and the true output width. A row of a prime width (Inception v3's 17, 71 and
    149) had only tiles of one pixel, two accumulators per FMA loop: 55-60 GFLOP/s where its other layers run at
    170-210. The widened row (17 → 18, 71 → 72) computes a few columns of zeros' products that the crop drops.
    `even`: a row of whole pairs of pixels too (a PAIRED step's: 7 → 8)."""
    padding = [int(p) for p in padding]
    out = (width + padding[1] + padding[3] - dw * (kw - 1) - 1) // sw + 1
    wide = out
    while wide > 14 and not any(wide % d == 0 for d in range(5, 15)):
        wide += 1
    wide += wide % 2 if even else 0
    padding[3] += (wide - out) * sw
    return padding, out


def _cropped(conv: Any, width: int) -> Any:
    """The convolution's output cut to `width` columns (the CROP block), where its row was widened."""
    if int(conv.shape[3]) == width:
        return conv
    return te.compute((*conv.shape[:3], width, conv.shape[4]), lambda *i: conv(*i), name=CROP)


def _window(data: Any, kernel: tuple[int, int], strides: Sequence[int], padding: Sequence[int],
            dilation: Sequence[int], fill: int = 0) -> tuple[Any, tuple[int, ...]]:
    """The NCHW[x]c data padded with `fill` (top, left, bottom, right) as the PAD block, where there is padding,
    and the output's (height, width)."""
    size = out_sizes((int(data.shape[2]), int(data.shape[3])), kernel, strides, dilation, padding)
    top, left, bottom, right = padding
    if top or left or bottom or right:
        data = topi.nn.pad(data, [0, 0, top, left, 0], [0, 0, bottom, right, 0], pad_value=fill, name=PAD)
    return data, size


class Workload(NamedTuple):
    """A convolution's shape in the blocked layout, as archc's kernel computes it. Its `key` names it where its
    configurations are searched, cached and shipped (the tuning database's records, tables/*.json) and in the
    kernel's WORKLOAD annotation: "d…_w…_s…_p…_l…", each field's numbers joined by "x", "dw" in front of a
    depthwise one, "bf16:" or "int8:" in front of one computed by the bf16 or int8 kernel (`parse` reads it
    back)."""
    data: tuple[int, ...]  # N, C/ic_bn, H, W, ic_bn
    weight: tuple[int, ...]  # O/oc_bn, I/groups/ic_bn, KH, KW, ic_bn, oc_bn (depthwise: C/bn, 1, KH, KW, 1, bn)
    strides: tuple[int, ...]  # along H, W
    padding: tuple[int, ...]  # top, left, bottom, right
    dilation: tuple[int, ...]  # along H, W
    step: str = ""  # the kernel: "" archc's float32 one, BF16 or INT8 (conv2d.compute_bf16, compute_int8)

    @classmethod
    def of(cls, data: Sequence[Any], weight: Sequence[Any], strides: Sequence[Any], padding: Sequence[Any],
           dilation: Sequence[Any], step: str = "") -> Workload:
        """From any sequences of integers (TVM's, lists)."""
        def ints(xs: Sequence[Any]) -> tuple[int, ...]:
            return tuple(int(x) for x in xs)
        return cls(ints(data), ints(weight), ints(strides), ints(padding), ints(dilation), step)

    @classmethod
    def parse(cls, key: str) -> Workload:
        """A key back into its workload; ValueError for a string that is not one."""
        step, _, shape = key.rpartition(":")
        parts = shape.removeprefix("dw").split("_")
        if [p[:1] for p in parts] != list("dwspl") or step not in ("", BF16, INT8):
            raise ValueError(f"not a convolution workload key: {key!r}")
        data, weight, strides, padding, dilation = (p[1:].split("x") for p in parts)
        workload = cls.of(data, weight, strides, padding, dilation, step)
        if workload.depthwise != shape.startswith("dw"):
            raise ValueError(f"workload key {key!r} says {'' if shape.startswith('dw') else 'not '}depthwise, "
                             "its shape the opposite")
        return workload

    def flat(self, reg_n: int) -> bool:
        """Whether a register tile of `reg_n` pixels runs along the output's H·W pixels (`_flatten`) rather than a
        row: a 1×1, stride-1, unpadded dense layer (its pixels contiguous) whose row that tile does not divide,
        where H·W it does. Elsewhere a tile that does not divide the row splits it with a tail."""
        oh, ow = self.out_size
        return (self.kernel == (1, 1) and self.strides == (1, 1) and not any(self.padding) and not self.depthwise
                and oh > 1 and ow % reg_n != 0 and (oh * ow) % reg_n == 0)

    @property
    def key(self) -> str:
        def dims(xs: tuple[int, ...]) -> str:
            return "x".join(map(str, xs))
        return (f"{self.step}:" if self.step else "") + ("dw" if self.depthwise else "") + (
            f"d{dims(self.data)}_w{dims(self.weight)}_s{dims(self.strides)}_p{dims(self.padding)}"
            f"_l{dims(self.dilation)}")

    @property
    def float32(self) -> Workload:
        """The same shape computed by the float32 kernel (whose configuration a bf16 or int8 one takes where it
        has none of its own)."""
        return self._replace(step="")

    @property
    def ic_bn(self) -> int:
        return self.data[4]

    @property
    def oc_bn(self) -> int:
        """Output channels per block (a vector of them: the register tile's width)."""
        return self.weight[5]

    @property
    def oc_chunks(self) -> int:
        """Output channel blocks."""
        return self.weight[0]

    @property
    def kernel(self) -> tuple[int, int]:
        return self.weight[2], self.weight[3]

    @property
    def channels(self) -> int:
        return self.data[1] * self.data[4]

    @property
    def out_channels(self) -> int:
        return self.weight[0] * self.weight[5]

    @property
    def per_group(self) -> int:
        """Input channels each output channel reads (OIHW weights' second dimension)."""
        return self.weight[1] * self.weight[4]

    @property
    def groups(self) -> int:
        """Groups of the convolution computed (a grouped one holds fewer input channels in its weight than in its
        data; groups merged by the layout plan count as one)."""
        return self.channels // self.per_group

    @property
    def depthwise(self) -> bool:
        """compute_depthwise's (one input and one output channel per group), the block plan's test (blocks.py)."""
        return is_depthwise(self.groups, self.channels, self.out_channels, self.per_group)

    @property
    def out_size(self) -> tuple[int, int]:
        """The output's (height, width)."""
        oh, ow = out_sizes(self.data[2:4], self.kernel, self.strides, self.dilation, self.padding)
        return oh, ow


def parse(key: str) -> Workload:
    """Workload.parse (benchmarks/kernel_table.py imports it from here)."""
    return Workload.parse(key)


def schedule(sch: Any, config: Config) -> None:
    """Schedule the fused kernel holding BLOCK (or DW_BLOCK) in place (a tvm.s_tir.Schedule over it): the loops
    over (n, oc chunks, output rows) in parallel, each task a row of `reg_n`-pixel × `oc_tile`-block register
    tiles, the reduction outside the tile, the epilogue applied to the tile."""
    depthwise = generic.has_block(sch, DW_BLOCK)
    # a step's kernel (bf16, int8) has its input padded by a kernel of its own: no PAD block in it
    stepped = next((b for b in (BF16_BLOCK, INT8_BLOCK) if generic.has_block(sch, b)), None)
    if config.inline_pad and generic.has_block(sch, PAD):
        sch.compute_inline(sch.get_sblock(PAD))
    conv = sch.get_sblock(DW_BLOCK if depthwise else stepped or BLOCK)
    epilogue, broadcast = inline_epilogue(sch, conv)
    if epilogue is None:  # no consumer in this kernel: a write-back block of its own leaves the register tile
        epilogue = sch.cache_write(conv, 0, "global")
    workload = Workload.parse(str(sch.get(conv).annotations[WORKLOAD]))
    unit = str(sch.get(conv).annotations[STEP]) if stepped else ""
    paired = unit in PAIRED  # tiles of pixel pairs × channel pairs (a matrix step's accumulators)
    flat = not paired and workload.flat(config.reg_n)
    if flat:
        _flatten(sch, conv, epilogue, workload.out_size[1])
    sch.set_scope(conv, 0, generic.TILE)
    loops = sch.get_loops(conv)
    spatial = 4 if flat else 7 if paired else 5
    # rows: [oh], or none where the tile runs along the flat pixels; pairs: a matrix step's (pixel, channel)
    n, occ, *rows, ow, ocb = loops[:spatial - 2] if paired else loops[:spatial]
    pairs = loops[spatial - 2:spatial] if paired else []
    pair = []  # the step's reduction (a bf16 pair, an int8 quadruple), innermost
    if depthwise:
        rh, rw = loops[spatial:]
        reduction = [rh, rw]
    elif stepped:
        icc, rh, rw, icb, j = loops[spatial:]
        reduction, pair = ([icc, rh, rw, icb] if config.kw_outer else [icc, rh, icb, rw]), [j]
    else:
        icc, rh, rw, icb = loops[spatial:]
        reduction = [icc, rh, rw, icb] if config.kw_outer else [icc, rh, icb, rw]
    extent = int(sch.get(ow).extent)
    tile = _pairs(extent, config.reg_n) if paired else _dividing(extent, config.reg_n) if stepped and not flat \
        else config.reg_n
    owo, owi = sch.split(ow, [None, tile])
    occo, occi = sch.split(occ, [None, config.oc_tile])
    sch.reorder(n, occo, *rows, owo, *reduction, occi, owi, ocb, *pairs, *pair)
    if not config.kw_outer:
        sch.unroll(rw)
    # a task: a row of tiles; on flat pixels, a tile (each channel tile's pixels split among the threads)
    tasks = sch.fuse(n, occo, owo) if flat else sch.fuse(n, occo, *rows)
    sch.parallel(tasks)
    sch.unroll(occi)
    sch.unroll(owi)
    if not stepped:
        sch.vectorize(ocb)
    if paired:
        sch.unroll(ocb)
    sch.reverse_compute_at(epilogue, tasks if flat else owo)
    sch.vectorize(sch.get_loops(epilogue)[-1])
    init = sch.decompose_reduction(conv, reduction[0])  # after vectorize/unroll: else the init block blocks it
    # the output's channel block (read before tensorize replaces the block)
    block_width = workload.oc_bn if paired else int(sch.get(conv).writes[0].source.shape[-1])
    if stepped:
        init_loops = sch.get_loops(init)
        sch.vectorize(sch.fuse(*init_loops[-2:]) if paired else init_loops[-1])
        register, lanes = STEPS[unit]
        if paired:
            sch.tensorize(pairs[0], register())
        else:
            if lanes < block_width:  # an aarch64 block of 8 channels: two 4-lane steps
                outer, ocb = sch.split(ocb, [None, lanes])
                sch.unroll(outer)
            sch.tensorize(ocb, register())
    if broadcast is not None:
        generic.schedule_block(sch, broadcast, block_width)
    if generic.has_block(sch, PAD):
        pad = sch.get_sblock(PAD)
        loops = sch.get_loops(pad)
        sch.parallel(sch.fuse(*loops[:3]))
        sch.vectorize(loops[-1])


def _dividing(width: int, reg_n: int) -> int:
    """A stepped kernel's tile along a row of `width` (its widened width): `reg_n` pixels where they divide it, else
    the divisor nearest (a tail tile's predicate would keep the step's block from matching its description). A
    configuration is chosen for the true width (UNet's 388), which the row's widening may change (390: 3 for 4)."""
    return min((t for t in range(1, max(reg_n, 14) + 1) if width % t == 0), key=lambda t: (abs(t - reg_n), t))


def _pairs(pairs: int, reg_n: int) -> int:
    """A PAIRED tile's pixel pairs along a row of `pairs` (its widened width / 2): about `reg_n` pixels, as many
    pairs as divide the row (a tail tile's predicate would keep the step's block from matching its description)."""
    return next(t for t in range(max(1, reg_n // 2), 0, -1) if pairs % t == 0)


def _flatten(sch: Any, conv: Any, epilogue: Any, width: int) -> None:
    """Index the convolution's output pixels, its register tile and its epilogue by y·width + x (one row of H·W
    pixels), so that a tile of `reg_n` pixels need not divide the row: MobileNet v2's 14×14 1×1 layers had only
    tiles of 7 pixels × 1 channel block in AVX2's registers, 4 × 3 on the 196 pixels. The result is the same
    convolution (the map is a bijection); it is fast where those pixels are contiguous in memory (a 1×1, stride-1,
    unpadded layer: the only ones the grid offers it to)."""
    from tvm.tirx import IndexMap

    def pixels(n: Any, c: Any, y: Any, x: Any, *rest: Any) -> tuple[Any, ...]:
        return (n, c, y * width + x, *rest)

    sch.transform_layout(conv, ("write", 0), pixels)  # the register tile, indexed as the loops that fill it
    for block in (conv, epilogue):
        sch.transform_block_layout(block, IndexMap.from_func(pixels, ndim=len(sch.get(block).iter_vars)))


INPUTS = (PAD_INT8, PAD_BF16)  # the padded inputs of the int8 and bf16 convolutions, kernels of their own


def schedule_input(sch: Any) -> None:
    """The int8 or bf16 convolution's padded input (`pad_int8`, the quantization TVM fused before it inlined;
    `pad_bf16`): each task a row of the padded image, its pixels' channel block a vector (the RGB input's four
    bytes unrolled). The generic rule made each pixel a task: ResNet-50's 56×56 × 128 channels in int8 took 66 µs,
    a row per task 9."""
    name = next(b for b in INPUTS if generic.has_block(sch, b))
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(block).name_hint != name:
            sch.compute_inline(block)
    n, c, y, _, i = sch.get_loops(sch.get_sblock(name))
    sch.parallel(sch.fuse(n, c, y))
    if int(sch.get(i).extent) >= 16:
        sch.vectorize(i)
    else:
        sch.unroll(i)


def inline_epilogue(sch: Any, conv: Any, crop: str = CROP) -> tuple[Any, Any]:
    """Inline the elementwise blocks after the conv into the last one of the conv's shape, the epilogue computed on
    the register tile, which is returned (None if there is none). They may form a chain (bias, ReLU) or read the
    conv twice (SiLU's x·sigmoid(x)); left as blocks of their own, they would run after the whole convolution, in
    one thread and scalar (EfficientNet-B0's 112×112 conv+SiLU at 16 GFLOP/s, its plain 1×1 convs at 120-130).
    Also returned: the block that broadcasts the result over a larger tensor (None if none): a squeeze-excite
    gate's multiply, which TVM fuses after the gate's 1×1 conv; it gets a loop nest of its own, so that the gate
    is computed once per channel rather than once per pixel."""
    blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
    names = [sch.get(b).name_hint for b in blocks]
    conv_name = sch.get(conv).name_hint
    for block in blocks[:names.index(conv_name)]:
        if conv_name not in [sch.get(c).name_hint for c in sch.get_consumers(block)]:
            # an elementwise step on another input of the epilogue (a QDQ model's quantize/dequantize of the
            # residual), computed where the epilogue reads it
            sch.compute_inline(block)
    after = blocks[names.index(conv_name) + 1:]

    def shape(block: Any) -> list[int]:
        return [int(d) for d in sch.get(block).writes[0].source.shape]

    full = shape(after[0]) if after and sch.get(after[0]).name_hint == crop else shape(conv)  # the output's shape
    same = next((i for i, b in enumerate(after) if shape(b) != full), len(after))
    tail = after[same:]
    for block in after[:same - 1] + tail[:-1]:
        sch.compute_inline(block)
    return (after[same - 1] if same else None), (tail[-1] if tail else None)
