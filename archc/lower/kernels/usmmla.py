"""int8 matrix steps on aarch64 with the i8mm extension (USMMLA: AWS Graviton3 and 4, Neoverse V1/V2/N2, Apple M2
on): the step of archc's blocked convolution for `--precision int8` on such a target, where USDOT (usdot.py) takes
the dense layers and the convolutions whose input blocks or strides do not suit it (steps.matrix_fits).

One USMMLA multiplies a 2×8 matrix of uint8 by the transpose of a 2×8 matrix of int8, adding the 2×2 product to 4
int32 accumulators: 32 multiply-adds, twice USDOT's 16. As BFMMLA's (bfmmla.py), the first matrix is 2 output
pixels × 8 input channels of the uint8 input (two 8-byte loads), the second 2 output channels × the same 8 of the
weights, packed OIHW[ic_bn/8]i[oc_bn]o[8]i (`pack_weights`), and the convolution is computed in (pixel, channel)
pairs, read back by its epilogue (conv2d.PAIRED). The sums are exact, as every int8 step's, and the operands and
the epilogue (zero point, scales) are vnni.py's."""
from __future__ import annotations

from typing import Any

import numpy as np

from archc.lower.kernels import steps, vnni

INTRIN = "archc_mmla_2x2x8_u8i8_usmmla"  # the TensorIntrin: C[2, 2] += A[2, 8] · B[2, 8]ᵀ
WIDTH = 8  # reduction channels per step

_registered = False


def register() -> str:
    """Register the tensor intrinsic (once per process); its name."""
    global _registered
    if not _registered:
        from tvm.script import tirx as T

        def step(A: Any, B: Any, C: Any) -> Any:  # noqa: N803 - the intrinsic's buffers, as TVM names them
            rows = T.Shuffle([A.vload([0, 0], "uint8x8"), A.vload([1, 0], "uint8x8")], list(range(16)))
            return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.usmmla.v4i32.v16i8"),
                                           C.vload([0, 0], "int32x4"), T.reinterpret(rows, dtype="int8x16"),
                                           B.vload([0, 0], "int8x16"), dtype="int32x4")

        steps.register_matrix(INTRIN, WIDTH, ("uint8", "int8", "int32"), vnni.product, step)
        _registered = True
    return INTRIN


def pack_weights(packed: np.ndarray) -> np.ndarray:
    """int8 weights in archc's packing OIHW[ic_bn]i[oc_bn]o as OIHW[ic_bn/8]i[oc_bn]o[8]i."""
    return vnni.pack_weights(packed, WIDTH)
