"""int8 dot products on AVX512-VNNI (VPDPBUSD): the step archc's blocked convolution tensorizes into for
`--precision int8` (Intel since Cascade Lake, AMD Zen 4 and 5).

One VPDPBUSD adds to 16 int32 accumulators the products of 16 quadruples of int8 weights (one per output channel)
with one quadruple of uint8 input values broadcast to all 16: four input channels of the reduction per instruction,
64 multiply-adds, four times an fp32 FMA's. The sums are exact (a product fits 16 bits, four of them and the
accumulator int32), so the kernel's integer result is onnxruntime's own.

The weights are packed with each output channel's four input channels adjacent (OIHW[ic_bn/4]i[16]o[4]i,
`pack_weights`), so a step is one 64-byte load; the input's quadruple is four adjacent channels of the uint8
NCHW[ic_bn]c block, one 4-byte broadcast. TVM 0.27 ships the step as a tensor intrinsic (`dot_16x4_vnni`), which
the schedule tensorizes into.

Quantization follows the ONNX QDQ format: x = (q - zero_point) · scale, a uint8 activation with one scale and zero
point (per tensor), int8 weights symmetric per output channel (zero point 0). The zero point's share of the sums,
zero_point · Σ weights of the channel, is a constant subtracted in the epilogue (`zero_point_sums`), and the
padding is the zero point (a real 0), so the subtraction is exact at the borders too.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from archc.lower.kernels import steps

LANES = 16  # output channels per step (int32 accumulators in one zmm register)
QUAD = 4  # reduction channels per step
INTRIN = "archc_dot_16x4_u8i8"  # the TensorIntrin: C[16] += A[4] · B[16, 4]

_registered = False


def register() -> str:
    """Register the tensor intrinsic (once per process); its name. TVM's own `dot_16x4_vnni` is the same step, but
    it passes the bytes as <16 x i32>, which the LLVM of TVM 0.27's wheel (22) refuses: its VPDPBUSD takes
    <64 x i8>. It also keeps the accumulators in global memory; the convolution's tile is a local (register)
    buffer."""
    global _registered
    if not _registered:
        register_step(INTRIN, LANES, "llvm.x86.avx512.vpdpbusd.512")
        _registered = True
    return INTRIN


def register_step(name: str, lanes: int, intrinsic: str, flip: bool = False) -> None:
    """Register a uint8 × int8 step as tensor intrinsic `name`: `lanes` int32 accumulators += the products of one
    quadruple of uint8 input channels (broadcast to every lane) with each lane's quadruple of int8 weights, as one
    call of the LLVM `intrinsic` (accumulators, the input bytes, the int8 bytes): VPDPBUSD here, USDOT on aarch64
    (usdot.py). With `flip`, each input byte's top bit is flipped first (q − 128 as int8: sdot.py's SDOT, int8 ×
    int8); the description's product is then that of q − 128."""
    from tvm.script import tirx as T

    def step(A: Any, B: Any, C: Any) -> Any:  # noqa: N803 - the intrinsic's buffers, as TVM names them
        quad = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")  # four input channels, broadcast
        if flip:  # a Python condition: the step is built with the flip or without it
            quad = T.bitwise_xor(quad, T.int32(-0x7F7F7F80))  # 0x80808080
        return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(intrinsic), C.vload([0], f"int32x{lanes}"),
                                       T.reinterpret(T.broadcast(quad, lanes), dtype=f"int8x{lanes * QUAD}"),
                                       B.vload([0, 0], f"int8x{lanes * QUAD}"), dtype=f"int32x{lanes}")

    steps.register(name, lanes, QUAD, ("uint8", "int8", "int32"), lambda a, b: product(a, b, flip), step)


def product(data: Any, weight: Any, flip: bool = False) -> Any:
    """A uint8 input value × an int8 weight as the step computes it, in int32: the input as it is, or with `flip`
    as q − 128 (SDOT's)."""
    value = data.astype("int32")
    return (value - 128 if flip else value) * weight.astype("int32")


def fits(ic_bn: int, oc_bn: int, groups: int, depthwise: bool, block: int = LANES) -> bool:
    """Whether the int8 convolution computes this one: input blocks of whole quadruples, output blocks of `block`
    channels (the target's: 16, one zmm register, for VPDPBUSD; 8, two steps, for aarch64's USDOT), one group."""
    return groups == 1 and not depthwise and ic_bn % QUAD == 0 and oc_bn == block


def pack_weights(packed: np.ndarray, width: int = QUAD) -> np.ndarray:
    """int8 weights in archc's packing OIHW[ic_bn]i[oc_bn]o (conv2d's) as OIHW[ic_bn/4]i[oc_bn]o[4]i: each
    output channel's four input channels adjacent, so that one step reads 64 contiguous bytes (`width` 8: its
    eight, USMMLA's)."""
    occ, icc, kh, kw, ic_bn, oc_bn = packed.shape
    quads = packed.reshape(occ, icc, kh, kw, ic_bn // width, width, oc_bn).transpose(0, 1, 2, 3, 4, 6, 5)
    return np.ascontiguousarray(quads).astype(np.int8)


def quantize(x: Any, scale: float, zero_point: int) -> Any:
    """ONNX QuantizeLinear of a float32 value to uint8: round half to even, then saturate."""
    import tvm
    q = tvm.tirx.round(x / tvm.tirx.const(scale, "float32")) + tvm.tirx.const(float(zero_point), "float32")
    return tvm.tirx.max(tvm.tirx.min(q, tvm.tirx.const(255.0, "float32")),
                        tvm.tirx.const(0.0, "float32")).astype("uint8")


def zero_point_sums(weights: np.ndarray, zero_point: int) -> np.ndarray:
    """zero_point · Σ of each output channel's int8 weights (OIHW), as int32: what the uint8 input's offset adds to
    the channel's sum."""
    return (zero_point * weights.astype(np.int64).reshape(weights.shape[0], -1).sum(1)).astype(np.int32)
