"""int8 dot products on aarch64 CPUs with dotprod but not i8mm (SDOT: the Raspberry Pi 5's Cortex-A76, AWS
Graviton2's Neoverse N1, Cortex-A55/A78): the step archc's blocked convolution tensorizes into for `--precision
int8` on such a target, where a CPU with i8mm takes USDOT (usdot.py).

SDOT multiplies int8 by int8, and the activations are uint8 (a QDQ model's: one scale and zero point per tensor).
The step flips each broadcast input byte's top bit, which makes q − 128 of it as int8, one EOR per input quadruple
(shared by the block's steps), so the int32 sums are Σ (q − 128)·w: the convolution's of a zero point 128 lower.
The epilogue subtracts that zero point's share of the sums (`vnni.zero_point_sums` of `zero_point(z)`), and the
padding, the zero point z, is z − 128 in the step too, so the result is exact as USDOT's. The weights are
vnni.py's, packed OIHW[ic_bn/4]i[oc_bn]o[4]i; an output block of 8 channels is two steps."""
from __future__ import annotations

from archc.lower.kernels import vnni

LANES = 4  # output channels per step (int32 accumulators in one NEON register)
INTRIN = "archc_dot_4x4_u8i8_sdot"  # the TensorIntrin: C[4] += A[4] · B[4, 4], A's bytes taken as q − 128
SHIFT = 128  # what flipping a uint8's top bit subtracts

_registered = False


def register() -> str:
    """Register the tensor intrinsic (once per process); its name."""
    global _registered
    if not _registered:
        vnni.register_step(INTRIN, LANES, "llvm.aarch64.neon.sdot.v4i32.v16i8", flip=True)
        _registered = True
    return INTRIN


def zero_point(zero: int, unit: str) -> int:
    """The zero point of the uint8 input as `unit`'s step sees it: SHIFT lower on SDOT, as it is elsewhere."""
    return zero - SHIFT if unit == "sdot" else zero
