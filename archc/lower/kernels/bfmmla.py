"""bf16 matrix steps on aarch64 with the bf16 extension (BFMMLA: AWS Graviton3 and 4, Neoverse V1/V2/N2, Apple M2
on): the step of archc's blocked convolution for `--precision bf16` on such a target, where BFDOT (bfdot.py) takes
the Winograd products and the dense layers.

One BFMMLA multiplies a 2×4 matrix of bf16 by the transpose of another, adding the 2×2 product to 4 float32
accumulators (one NEON register): 16 multiply-adds, twice BFDOT's 8. Arm's own bf16 GEMMs (Arm Compute Library,
KleidiAI) take it on Neoverse V1/V2. Here the first matrix is 2 output pixels × 4 input channels of the bf16
NCHW[ic_bn]c input (two 8-byte loads, the pixels `stride` apart), the second 2 output channels × the same 4 input
channels of the weights, packed OIHW[ic_bn/4]i[oc_bn]o[4]i (`pack_weights`: 16 contiguous bytes), and the
accumulators hold (pixel, channel) pairs: conv2d computes the convolution as (…, W/2, oc_bn/2, 2, 2) and its
epilogue reads that back as NCHW[oc_bn]c (conv2d.PAIRED). The row is computed in pairs of pixels, widened by one
column where its width is odd. As BFDOT, it does not round each product, and bf16's tolerance covers it.
"""
from __future__ import annotations

from typing import Any

from archc.lower.kernels import dpbf16, generic

INTRIN = "archc_mmla_2x2x4_bf16_bfmmla"  # the TensorIntrin: C[2, 2] += A[2, 4] · B[2, 4]ᵀ
PIXELS = CHANNELS = 2  # a step's accumulators: output pixels × output channels
WIDTH = 4  # reduction channels per step

_IR = """
define linkonce_odr <4 x float> @archc_bfmmla(<4 x float> %acc, <2 x i32> %a0, <2 x i32> %a1, <4 x i32> %b)
    alwaysinline {
  %a = shufflevector <2 x i32> %a0, <2 x i32> %a1, <4 x i32> <i32 0, i32 1, i32 2, i32 3>
  %av = bitcast <4 x i32> %a to <8 x bfloat>
  %bv = bitcast <4 x i32> %b to <8 x bfloat>
  %r = call <4 x float> @llvm.aarch64.neon.bfmmla(<4 x float> %acc, <8 x bfloat> %av, <8 x bfloat> %bv)
  ret <4 x float> %r
}
declare <4 x float> @llvm.aarch64.neon.bfmmla(<4 x float>, <8 x bfloat>, <8 x bfloat>)
"""

_registered = False


def register() -> str:
    """Register the tensor intrinsic (once per process); its name. A's rows (two pixels' channels) lie a stride
    apart in the input; B's rows (two output channels' weights) and C's 2×2 accumulators are contiguous."""
    global _registered
    if _registered:
        return INTRIN
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        stride = T.int32()
        A = T.match_buffer(a, (PIXELS, WIDTH), dpbf16.BITS, offset_factor=1, strides=[stride, 1])
        B = T.match_buffer(b, (CHANNELS, WIDTH), dpbf16.BITS, offset_factor=1)
        C = T.match_buffer(c, (PIXELS, CHANNELS), "float32", offset_factor=1, scope=generic.TILE)
        with T.sblock("root"):
            T.reads(C[0:PIXELS, 0:CHANNELS], A[0:PIXELS, 0:WIDTH], B[0:CHANNELS, 0:WIDTH])
            T.writes(C[0:PIXELS, 0:CHANNELS])
            for i, j, k in T.grid(PIXELS, CHANNELS, WIDTH):
                with T.sblock("update"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    C[vi, vj] = C[vi, vj] + dpbf16.value(A[vi, vk]) * dpbf16.value(B[vj, vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        stride = T.int32()
        A = T.match_buffer(a, (PIXELS, WIDTH), dpbf16.BITS, offset_factor=1, strides=[stride, 1])
        B = T.match_buffer(b, (CHANNELS, WIDTH), dpbf16.BITS, offset_factor=1)
        C = T.match_buffer(c, (PIXELS, CHANNELS), "float32", offset_factor=1, scope=generic.TILE)
        with T.sblock("root"):
            T.reads(C[0:PIXELS, 0:CHANNELS], A[0:PIXELS, 0:WIDTH], B[0:CHANNELS, 0:WIDTH])
            T.writes(C[0:PIXELS, 0:CHANNELS])
            flat = T.decl_buffer((4,), "float32", data=C.data, elem_offset=C.elem_offset, scope=generic.TILE)
            with T.attr(T.int32(0), "pragma_import_llvm", _IR):
                flat[T.ramp(T.int32(0), 1, 4)] = T.call_pure_extern(
                    "float32x4", "archc_bfmmla", C.vload([0, 0], "float32x4"),
                    T.reinterpret("int32x2", A.vload([0, 0], "uint16x4")),
                    T.reinterpret("int32x2", A.vload([1, 0], "uint16x4")),
                    T.reinterpret("int32x4", B.vload([0, 0], "uint16x8")))

    TensorIntrin.register(INTRIN, desc, impl, override=True)
    _registered = True
    return INTRIN


def fits(ic_bn: int, stride: int) -> bool:
    """Whether the step computes a convolution of input blocks of `ic_bn` channels and `stride` along the rows:
    blocks of whole fours, and the two pixels of a step adjacent in the input (stride 1: a step's input is then
    a 2×4 block of it; a strided convolution's pixels lie a column apart, which TVM's tensorize cannot match),
    else BFDOT computes it."""
    return ic_bn % WIDTH == 0 and stride == 1


def pack_weights(packed: Any) -> Any:
    """archc's fp32 packing OIHW[ic_bn]i[oc_bn]o as bf16 bits OIHW[ic_bn/4]i[oc_bn]o[4]i."""
    return dpbf16.pack_weights(packed, WIDTH)
