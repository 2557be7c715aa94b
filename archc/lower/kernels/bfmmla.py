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

from archc.lower.kernels import dpbf16, steps

INTRIN = "archc_mmla_2x2x4_bf16_bfmmla"  # the TensorIntrin: C[2, 2] += A[2, 4] · B[2, 4]ᵀ
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
    """Register the tensor intrinsic (once per process); its name."""
    global _registered
    if not _registered:
        from tvm.script import tirx as T

        def step(A: Any, B: Any, C: Any) -> Any:  # noqa: N803 - the intrinsic's buffers, as TVM names them
            return T.call_pure_extern("float32x4", "archc_bfmmla", C.vload([0, 0], "float32x4"),
                                      T.reinterpret("int32x2", A.vload([0, 0], "uint16x4")),
                                      T.reinterpret("int32x2", A.vload([1, 0], "uint16x4")),
                                      T.reinterpret("int32x4", B.vload([0, 0], "uint16x8")))

        steps.register_matrix(INTRIN, WIDTH, (dpbf16.BITS, dpbf16.BITS, "float32"),
                              lambda a, b: dpbf16.value(a) * dpbf16.value(b), step, _IR)
        _registered = True
    return INTRIN


def pack_weights(packed: Any) -> Any:
    """archc's fp32 packing OIHW[ic_bn]i[oc_bn]o as bf16 bits OIHW[ic_bn/4]i[oc_bn]o[4]i."""
    return dpbf16.pack_weights(packed, WIDTH)
