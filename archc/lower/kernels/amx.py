"""Intel AMX from TensorIR: bf16 matrix products on the tile unit (issue 24's first kernel; not yet in a build).

TVM 0.27 has no AMX schedule, and no TIR type for a tile, but LLVM's x86 intrinsics that name their tile registers
by number (`llvm.x86.ldtilecfg`, `tilezero`, `tileloadd64`, `tdpbf16ps`, `tilestored64`, `tilerelease`) take only
pointers, strides and constant register numbers: a TIR kernel calls them with `call_llvm_intrin` and LLVM emits
the instructions (given a target with the AMX features, e.g. `-mcpu=sapphirerapids`).

A tile is 16 rows of 64 bytes. TDPBF16PS C += A·B takes A as 16 rows × 32 bf16 and B as 16 rows of 16 bf16 pairs
(row kk holds k = 2kk and 2kk + 1 of 16 columns: the "VNNI" packing), adding into C, 16 × 16 float32. `gemm`
keeps a 32 × 32 block of C in four tiles (0-3), two tiles of A (4, 5) and two of B (6, 7), and walks K 32 at a
time: four products per 4 tile loads. Each parallel task loads the tile configuration itself (it is per thread).

Linux gives a process the tile registers only when asked: `request_tiles()` makes the arch_prctl call
(ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA) once; without it the first tile instruction kills the process with
SIGILL. Its answer is also the test of whether the CPU (and kernel) have AMX.
"""
from __future__ import annotations

import ctypes
import os
from typing import Any

ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18
SYS_ARCH_PRCTL = 158  # x86-64
TARGET = {"kind": "llvm", "mcpu": "sapphirerapids"}  # the first CPUs with AMX-BF16; LLVM enables the tile ISA
BLOCK = 32  # the C block one task computes, and the K step

_granted: bool | None = None


def request_tiles() -> bool:
    """Ask Linux for the AMX tile state for this process (once); whether it was granted: False where the CPU or
    the kernel has no AMX, or off x86-64 Linux."""
    global _granted
    if _granted is None:
        _granted = False
        if os.uname().machine == "x86_64" and os.uname().sysname == "Linux":
            libc = ctypes.CDLL(None, use_errno=True)
            _granted = libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0
    return _granted


def pack_b(b: Any) -> Any:
    """B (K × N) in the tile unit's layout: K/2 × N × 2, each row holding the pairs of two consecutive k."""
    k, n = b.shape
    return b.reshape(k // 2, 2, n).transpose(0, 2, 1).copy()


def gemm(m: int, n: int, k: int, name: str = "amx_gemm") -> Any:
    """C (m × n float32) = A (m × k bf16) · B (k × n bf16, packed by `pack_b`), each a multiple of 32, on AMX."""
    from tvm.script import tirx as T
    if m % BLOCK or n % BLOCK or k % BLOCK:
        raise ValueError(f"amx.gemm takes multiples of {BLOCK}, not {m}×{n}×{k}")
    nb, steps = n // BLOCK, k // BLOCK

    def call(intrin: str, *args: Any) -> Any:
        return T.evaluate(T.call_llvm_intrin("void", f"llvm.x86.{intrin}", *args))

    @T.prim_func
    def kernel(a: T.Buffer((m, k), "bfloat16"), b: T.Buffer((k // 2, n, 2), "bfloat16"),  # type: ignore[valid-type]
               c: T.Buffer((m, n), "float32")) -> None:  # type: ignore[valid-type]
        T.func_attr({"global_symbol": name, "tir.noalias": True})
        for block in T.parallel(m // BLOCK * nb):
            config = T.alloc_buffer((64,), "uint8")
            for i in range(64):  # palette 1; 8 tiles of 16 rows × 64 bytes
                config[i] = T.uint8(0)
            config[0] = T.uint8(1)
            for t in range(8):
                config[16 + 2 * t] = T.uint8(64)
                config[48 + t] = T.uint8(16)
            call("ldtilecfg", T.address_of(config[0]))
            m0 = block // nb * BLOCK
            n0 = block % nb * BLOCK
            call("tilezero", T.uint8(0))  # register numbers are immediates: no loop over them
            call("tilezero", T.uint8(1))
            call("tilezero", T.uint8(2))
            call("tilezero", T.uint8(3))
            for s in range(steps):
                call("tileloadd64", T.uint8(4), T.address_of(a[m0, s * BLOCK]), T.int64(k * 2))
                call("tileloadd64", T.uint8(5), T.address_of(a[m0 + 16, s * BLOCK]), T.int64(k * 2))
                call("tileloadd64", T.uint8(6), T.address_of(b[s * 16, n0, 0]), T.int64(n * 4))
                call("tileloadd64", T.uint8(7), T.address_of(b[s * 16, n0 + 16, 0]), T.int64(n * 4))
                call("tdpbf16ps", T.uint8(0), T.uint8(4), T.uint8(6))
                call("tdpbf16ps", T.uint8(1), T.uint8(4), T.uint8(7))
                call("tdpbf16ps", T.uint8(2), T.uint8(5), T.uint8(6))
                call("tdpbf16ps", T.uint8(3), T.uint8(5), T.uint8(7))
            call("tilestored64", T.uint8(0), T.address_of(c[m0, n0]), T.int64(n * 4))
            call("tilestored64", T.uint8(1), T.address_of(c[m0, n0 + 16]), T.int64(n * 4))
            call("tilestored64", T.uint8(2), T.address_of(c[m0 + 16, n0]), T.int64(n * 4))
            call("tilestored64", T.uint8(3), T.address_of(c[m0 + 16, n0 + 16]), T.int64(n * 4))
            call("tilerelease")

    return kernel
