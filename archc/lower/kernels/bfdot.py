"""bf16 dot products on aarch64 with the bf16 extension (BFDOT: AWS Graviton3 and 4, Neoverse V1/V2/N2, Apple M2
on): the step archc's blocked convolution tensorizes into for `--precision bf16` on such a target, as VDPBF16PS
(dpbf16.py) on x86.

One BFDOT adds to 4 float32 accumulators (one 128-bit NEON register) the products of 4 pairs of bf16 weights (one
pair per output channel) with one pair of bf16 input values broadcast to all four, with float32 accumulation: the
operands are dpbf16.py's (bf16 carried as its bits, uint16; weights packed OIHW[ic_bn/2]i[oc_bn]o[2]i by
`dpbf16.pack_weights`), and so is the way in: a small LLVM IR function bitcasts the bits to bfloat and calls the
intrinsic, and LLVM inlines it. An output block of 8 channels (two registers, archc's aarch64 block) is two steps.
Arm's BFDOT does not round each product (and flushes denormals), so its sums differ from fp32 ones by a little more
than VDPBF16PS's; bf16's tolerance covers both.
"""
from __future__ import annotations

from archc.lower.kernels import dpbf16

INTRIN = "archc_dot_4x2_bf16_bfdot"  # the TensorIntrin: C[4] += A[2] · B[4, 2]
LANES = 4  # output channels per step (float32 accumulators in one NEON register)

_IR = """
define linkonce_odr <4 x float> @archc_bfdot(<4 x float> %acc, <4 x i32> %a, <4 x i32> %b) alwaysinline {
  %av = bitcast <4 x i32> %a to <8 x bfloat>
  %bv = bitcast <4 x i32> %b to <8 x bfloat>
  %r = call <4 x float> @llvm.aarch64.neon.bfdot.v4f32.v8bf16(<4 x float> %acc, <8 x bfloat> %av, <8 x bfloat> %bv)
  ret <4 x float> %r
}
declare <4 x float> @llvm.aarch64.neon.bfdot.v4f32.v8bf16(<4 x float>, <8 x bfloat>, <8 x bfloat>)
"""

_registered = False


def register() -> str:
    """Register the tensor intrinsic (once per process); its name."""
    global _registered
    if not _registered:
        dpbf16.register_step(INTRIN, LANES, "archc_bfdot", _IR)
        _registered = True
    return INTRIN
