"""bf16 dot products on AVX512-BF16 (VDPBF16PS): the step archc's blocked convolution tensorizes into where a CPU
has no AMX (AMD Zen 4 and 5; Intel Cooper Lake; every AMX CPU has it too).

One VDPBF16PS adds to 16 float32 accumulators the products of 16 pairs of bf16 weights (one pair per output
channel) with one pair of bf16 input values broadcast to all 16: two input channels of the reduction per
instruction, twice an FMA's, with float32 accumulation. The weights are packed with each output channel's pair
adjacent (OIHW[ic_bn/2]i[oc_bn]o[2]i, `pack_weights`), so a step is one 64-byte load; the input's pair is two
adjacent channels of the NCHW[ic_bn]c block, one 4-byte broadcast.

The bf16 numbers are carried as their bits, uint16 (`value` reads one as float32: the bits shifted into the top of
a float32), not as TVM's bfloat16: TVM 0.27's bf16 legalization rewrites bfloat16 vectors to float32 before LLVM
sees them (and a kernel's intermediate bfloat16 buffer to float32 storage), while LLVM's intrinsic takes
`<32 x bfloat>`. The step is a small LLVM IR function (`_IR`) that bitcasts the two vectors of bits to bfloat and
calls the intrinsic; the kernel imports it (`pragma_import_llvm` links it into the kernel's LLVM module) and LLVM
inlines it: a broadcast and one `vdpbf16ps` per step, the accumulators in registers (the vectors are TVM's own
loads, with its alias information: passed as bare pointers, LLVM kept storing the accumulators after each step).
"""
from __future__ import annotations

from typing import Any

from archc.lower.kernels import steps

INTRIN = "archc_dot_16x2_bf16"  # the TensorIntrin: C[16] += A[2] · B[16, 2]
LANES = 16  # output channels per step (float32 accumulators in one zmm register)
PAIR = 2  # reduction channels per step
BITS = "uint16"  # how bf16 numbers are stored (module doc)

_IR = """
define linkonce_odr <16 x float> @archc_dpbf16(<16 x float> %acc, <16 x i32> %a, <16 x i32> %b) alwaysinline {
  %av = bitcast <16 x i32> %a to <32 x bfloat>
  %bv = bitcast <16 x i32> %b to <32 x bfloat>
  %r = call <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float> %acc, <32 x bfloat> %av, <32 x bfloat> %bv)
  ret <16 x float> %r
}
declare <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float>, <32 x bfloat>, <32 x bfloat>)
"""

_registered = False


def value(bits: Any) -> Any:
    """A bf16 number's bits (uint16) as the float32 it is (the compute's and the intrinsic's description's)."""
    import tvm
    return tvm.tirx.reinterpret("float32", tvm.tirx.shift_left(bits.astype("uint32"), tvm.tirx.const(16, "uint32")))


def bits(x: Any) -> Any:
    """A float32 rounded to bf16 (to nearest, ties to even), as its bits (uint16). NaN is no concern here: a
    network's activations and weights are finite."""
    import tvm
    u = tvm.tirx.reinterpret("uint32", x)
    one = tvm.tirx.const(1, "uint32")
    rounded = u + tvm.tirx.const(0x7FFF, "uint32") + ((u >> tvm.tirx.const(16, "uint32")) & one)
    return (rounded >> tvm.tirx.const(16, "uint32")).astype(BITS)


def register() -> str:
    """Register the tensor intrinsic (once per process); its name."""
    global _registered
    if not _registered:
        register_step(INTRIN, LANES, "archc_dpbf16", _IR)
        _registered = True
    return INTRIN


def register_step(name: str, lanes: int, function: str, llvm_ir: str) -> None:
    """Register a bf16 step as tensor intrinsic `name`: `lanes` float32 accumulators += the products of one pair of
    bf16 input channels (broadcast to every lane) with each lane's pair of bf16 weights, as a call of `function`
    (accumulators, the input pairs, the weight pairs, as int32 vectors of bits), defined in `llvm_ir`: VDPBF16PS
    here, BFDOT on aarch64 (bfdot.py)."""
    from tvm.script import tirx as T

    def step(A: Any, B: Any, C: Any) -> Any:  # noqa: N803 - the intrinsic's buffers, as TVM names them
        return T.call_pure_extern(f"float32x{lanes}", function, C.vload([0], f"float32x{lanes}"),
                                  T.broadcast(T.reinterpret("int32", A.vload([0], "uint16x2")), lanes),
                                  T.reinterpret(f"int32x{lanes}", B.vload([0, 0], f"uint16x{lanes * PAIR}")))

    steps.register(name, lanes, PAIR, (BITS, BITS, "float32"), lambda a, b: value(a) * value(b), step, llvm_ir)


def fits(ic_bn: int, oc_bn: int, groups: int, depthwise: bool, block: int = LANES) -> bool:
    """Whether the bf16 convolution computes this one: input blocks of whole pairs, output blocks of `block`
    channels (the target's: 16, one zmm register, for VDPBF16PS; 8, two steps, for aarch64's BFDOT), one group."""
    return groups == 1 and not depthwise and ic_bn % PAIR == 0 and oc_bn == block


def pack_weights(packed: Any, width: int = PAIR) -> Any:
    """archc's fp32 packing OIHW[ic_bn]i[oc_bn]o (conv2d's) as bf16 bits OIHW[ic_bn/2]i[oc_bn]o[2]i: each output
    channel's pair of input channels adjacent, so that one step reads 64 contiguous bytes (`width` 4: its four,
    BFMMLA's)."""
    import ml_dtypes
    import numpy as np
    occ, icc, kh, kw, ic_bn, oc_bn = packed.shape
    pairs = packed.reshape(occ, icc, kh, kw, ic_bn // width, width, oc_bn).transpose(0, 1, 2, 3, 4, 6, 5)
    return np.ascontiguousarray(pairs).astype(ml_dtypes.bfloat16).view(np.uint16)
