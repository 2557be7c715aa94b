"""int8 dot products on aarch64 with the i8mm extension (USDOT: AWS Graviton3 and 4, Neoverse V1/V2/N2, Apple M2
on): the step archc's blocked convolution tensorizes into for `--precision int8` on such a target, as VPDPBUSD
(vnni.py) on x86.

One USDOT adds to 4 int32 accumulators (one 128-bit NEON register) the products of 4 quadruples of int8 weights
(one per output channel) with one quadruple of uint8 input values broadcast to all four: four input channels of
the reduction per instruction. The operands are vnni.py's: uint8 activations (one scale and zero point per tensor),
int8 weights symmetric per output channel, packed OIHW[ic_bn/4]i[oc_bn]o[4]i (`vnni.pack_weights`), so that a step
reads 16 contiguous bytes. Plain SDOT (dotprod) multiplies int8 by int8 and would need the activations shifted by
128; USDOT takes the uint8 as they are. An output block of 8 channels (two registers, archc's aarch64 block) is
two steps.
"""
from __future__ import annotations

from archc.lower.kernels import vnni

LANES = 4  # output channels per step (int32 accumulators in one NEON register)
QUAD = 4  # reduction channels per step
INTRIN = "archc_dot_4x4_u8i8_usdot"  # the TensorIntrin: C[4] += A[4] · B[4, 4]

_registered = False


def register() -> str:
    """Register the tensor intrinsic (once per process); its name."""
    global _registered
    if not _registered:
        vnni.register_step(INTRIN, LANES, "llvm.aarch64.neon.usdot.v4i32.v16i8")
        _registered = True
    return INTRIN
