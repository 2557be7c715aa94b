"""Intel AMX from TensorIR: bf16 matrix products and convolutions on the tile unit (issue 24's first kernels; not
yet in a build).

TVM 0.27 has no AMX schedule, and no TIR type for a tile, but LLVM's x86 intrinsics that name their tile registers
by number (`llvm.x86.ldtilecfg`, `tilezero`, `tileloadd64`, `tdpbf16ps`, `tilestored64`, `tilerelease`) take only
pointers, strides and constant register numbers: a TIR kernel calls them with `call_llvm_intrin` and LLVM emits
the instructions (given a target with the AMX features, e.g. `-mcpu=sapphirerapids`).

A tile is 16 rows of 64 bytes. TDPBF16PS C += A·B takes A as 16 rows × 32 bf16 and B as 16 rows of 16 bf16 pairs
(row kk holds k = 2kk and 2kk + 1 of 16 columns: the "VNNI" packing), adding into C, 16 × 16 float32. `gemm`
keeps a 32 × 32 block of C in four tiles (0-3), two tiles of A (4, 5) and two of B (6, 7), and walks K 32 at a
time: four products per 4 tile loads. Each parallel task loads the tile configuration itself (it is per thread).

`conv2d` is the same product with the convolution's taps as more steps of K. The input is padded, its channels in
blocks of 32 (C/32 × Hp·Wp × 32: a pixel's 32 channels are one 64-byte tile row) and its pixels flattened, so that
the input of output pixel (oh, ow) at tap (r, s) is pixel stride·q + r·Wp + s, where q = oh·Wp + ow runs over a
"virtual" grid as wide as the padded input: 16 consecutive q are 16 tile rows `stride` pixels apart, one tile load,
whatever the tap. The Wp - OW virtual columns past the output's width are computed and dropped (2 of 16 for a 3×3
convolution at 14×14; half the work at stride 2, where a space-to-depth input would save it); the output is
float32 in blocks of 16 channels (O/16 × OH × OW × 16), bias and ReLU applied on the way out.

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


def _macros() -> tuple[Any, Any, Any]:
    """TVMScript pieces both kernels share: `call` (an AMX intrinsic by name), `start(config)` (the tile
    configuration, loaded, and the four C tiles zeroed) and `products()` (tiles 0-3 += A tiles 4, 5 · B tiles 6, 7).
    Tile numbers are immediates: written out, never a loop variable."""
    from tvm.script import tirx as T

    def call(intrin: str, *args: Any) -> Any:
        return T.evaluate(T.call_llvm_intrin("void", f"llvm.x86.{intrin}", *args))

    @T.macro
    def start(config: Any) -> None:
        for i in range(64):  # palette 1; 8 tiles of 16 rows × 64 bytes
            config[i] = T.uint8(0)
        config[0] = T.uint8(1)
        for t in range(8):
            config[16 + 2 * t] = T.uint8(64)
            config[48 + t] = T.uint8(16)
        call("ldtilecfg", T.address_of(config[0]))
        call("tilezero", T.uint8(0))
        call("tilezero", T.uint8(1))
        call("tilezero", T.uint8(2))
        call("tilezero", T.uint8(3))

    @T.macro
    def products() -> None:
        call("tdpbf16ps", T.uint8(0), T.uint8(4), T.uint8(6))
        call("tdpbf16ps", T.uint8(1), T.uint8(4), T.uint8(7))
        call("tdpbf16ps", T.uint8(2), T.uint8(5), T.uint8(6))
        call("tdpbf16ps", T.uint8(3), T.uint8(5), T.uint8(7))

    return call, start, products


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

    call, start, products = _macros()

    @T.prim_func
    def kernel(a: T.Buffer((m, k), "bfloat16"), b: T.Buffer((k // 2, n, 2), "bfloat16"),  # type: ignore[valid-type]
               c: T.Buffer((m, n), "float32")) -> None:  # type: ignore[valid-type]
        T.func_attr({"global_symbol": name, "tir.noalias": True})
        for block in T.parallel(m // BLOCK * nb):
            config = T.alloc_buffer((64,), "uint8")
            start(config)
            m0 = block // nb * BLOCK
            n0 = block % nb * BLOCK
            for s in range(steps):
                call("tileloadd64", T.uint8(4), T.address_of(a[m0, s * BLOCK]), T.int64(k * 2))
                call("tileloadd64", T.uint8(5), T.address_of(a[m0 + 16, s * BLOCK]), T.int64(k * 2))
                call("tileloadd64", T.uint8(6), T.address_of(b[s * 16, n0, 0]), T.int64(n * 4))
                call("tileloadd64", T.uint8(7), T.address_of(b[s * 16, n0 + 16, 0]), T.int64(n * 4))
                products()
            call("tilestored64", T.uint8(0), T.address_of(c[m0, n0]), T.int64(n * 4))
            call("tilestored64", T.uint8(1), T.address_of(c[m0, n0 + 16]), T.int64(n * 4))
            call("tilestored64", T.uint8(2), T.address_of(c[m0 + 16, n0]), T.int64(n * 4))
            call("tilestored64", T.uint8(3), T.address_of(c[m0 + 16, n0 + 16]), T.int64(n * 4))
            call("tilerelease")

    return kernel


def conv_input_length(oh: int, wp: int, r: int, s: int, stride: int) -> int:
    """Pixels `conv2d` reads of its flattened input: the padded image, then zeros up to the last block's reach."""
    q = -(-oh * wp // BLOCK) * BLOCK
    return stride * (q - 1) + (r - 1) * wp + s


def pack_conv_input(x: Any, pads: tuple[int, int], length: int) -> Any:
    """C × H × W (bf16) as `conv2d` reads it: C/32 × length × 32, zero-padded by `pads` (rows, columns)."""
    import numpy as np
    c, h, w = x.shape
    wp = w + 2 * pads[1]
    padded = np.zeros((c, h + 2 * pads[0], wp), x.dtype)
    padded[:, pads[0]:pads[0] + h, pads[1]:pads[1] + w] = x
    flat = np.zeros((c // BLOCK, length, BLOCK), x.dtype)
    pixels = padded.reshape(c // BLOCK, BLOCK, -1).transpose(0, 2, 1)
    flat[:, :min(length, pixels.shape[1])] = pixels[:, :length]
    return flat


def pack_conv_weights(w: Any) -> Any:
    """O × C × R × S weights (bf16) as `conv2d` reads them: O/16 × C/32 × R × S × 16 channel pairs × 16 × 2."""
    o, c, r, s = w.shape
    return w.reshape(o // 16, 16, c // BLOCK, 16, 2, r, s).transpose(0, 2, 5, 6, 3, 1, 4).copy()


def conv2d(c: int, o: int, hp: int, wp: int, r: int, s: int, stride: int, oh: int, ow: int, relu: bool = True,
           name: str = "amx_conv2d") -> Any:
    """y (o/16 × oh × ow × 16 float32) = bias + the convolution of the padded input (`pack_conv_input`: hp × wp
    pixels, c channels) by the weights (`pack_conv_weights`: o × c × r × s), ReLU after when `relu`; c and o
    multiples of 32 (see the module's docstring)."""
    from tvm.script import tirx as T
    if c % BLOCK or o % BLOCK:
        raise ValueError(f"amx.conv2d takes channels in multiples of {BLOCK}, not {c} → {o}")
    v = wp
    blocks = -(-oh * v // BLOCK)
    length = conv_input_length(oh, wp, r, s, stride)
    row = stride * BLOCK * 2  # bytes between the input pixels of consecutive outputs
    zero = T.float32(0) if relu else T.float32(-3.4e38)

    call, start, products = _macros()

    @T.prim_func
    def kernel(x: T.Buffer((c // BLOCK, length, BLOCK), "bfloat16"),  # type: ignore[valid-type]
               w: T.Buffer((o // 16, c // BLOCK, r, s, 16, 16, 2), "bfloat16"),  # type: ignore[valid-type]
               bias: T.Buffer((o // 16, 16), "float32"),  # type: ignore[valid-type]
               y: T.Buffer((o // 16, oh, ow, 16), "float32")) -> None:  # type: ignore[valid-type]
        T.func_attr({"global_symbol": name, "tir.noalias": True})
        for block in T.parallel(o // BLOCK * blocks):
            config = T.alloc_buffer((64,), "uint8")
            acc = T.alloc_buffer((4, 16, 16), "float32")
            start(config)
            o0 = block // blocks * 2  # two blocks of 16 output channels
            q0 = block % blocks * BLOCK  # two tiles of 16 virtual positions
            for ci, ky, kx in T.grid(c // BLOCK, r, s):
                call("tileloadd64", T.uint8(4), T.address_of(x[ci, stride * q0 + ky * wp + kx, 0]), T.int64(row))
                call("tileloadd64", T.uint8(5), T.address_of(x[ci, stride * (q0 + 16) + ky * wp + kx, 0]),
                     T.int64(row))
                call("tileloadd64", T.uint8(6), T.address_of(w[o0, ci, ky, kx, 0, 0, 0]), T.int64(64))
                call("tileloadd64", T.uint8(7), T.address_of(w[o0 + 1, ci, ky, kx, 0, 0, 0]), T.int64(64))
                products()
            call("tilestored64", T.uint8(0), T.address_of(acc[0, 0, 0]), T.int64(64))
            call("tilestored64", T.uint8(1), T.address_of(acc[1, 0, 0]), T.int64(64))
            call("tilestored64", T.uint8(2), T.address_of(acc[2, 0, 0]), T.int64(64))
            call("tilestored64", T.uint8(3), T.address_of(acc[3, 0, 0]), T.int64(64))
            call("tilerelease")
            for t, p in T.grid(4, 16):  # tiles 0, 1: positions q0…q0+15; 2, 3: the next 16; even: channels o0
                q = q0 + t // 2 * 16 + p
                if q // v < oh and q % v < ow:
                    for j in T.vectorized(16):
                        y[o0 + t % 2, q // v, q % v, j] = T.max(acc[t, p, j] + bias[o0 + t % 2, j], zero)

    return kernel


def pack_input_te(x: Any, pads: tuple[int, int], wp: int, length: int, step: int = 1) -> Any:
    """`pack_conv_input` as a TE compute on a blocked activation (1 × C/bn × H × W × bn float32): the kernel before
    each AMX convolution, which the activation before it fuses into. `step`: every step-th row and column only (a
    1×1 convolution of stride `step` then runs at stride 1 on what it keeps)."""
    import tvm
    from tvm import te
    _, blocks, h, w, bn = (int(d) for d in x.shape)
    if blocks * bn % BLOCK:
        raise ValueError(f"amx: {blocks * bn} channels are no multiple of {BLOCK}")

    def value(c: Any, pixel: Any, j: Any) -> Any:
        channel = c * BLOCK + j
        row, col = pixel // wp * step - pads[0], pixel % wp * step - pads[1]
        inside = tvm.tirx.all(row >= 0, row < h, col >= 0, col < w)
        return te.if_then_else(inside, x[0, channel // bn, row, col, channel % bn].astype("bfloat16"),
                               tvm.tirx.const(0, "bfloat16"))
    return te.compute((blocks * bn // BLOCK, length, BLOCK), value, name="amx_pack")


def fits(channels: int, out_channels: int, groups: int, strides: list[int], padding: list[int],
         dilation: list[int], one_d: bool) -> bool:
    """Whether `conv2d` computes this convolution: channels in and out in whole blocks of 32, one group, the same
    stride both ways, symmetric padding, no dilation, 2-D (the rest stays in float32 on archc's own kernels)."""
    return (not channels % BLOCK and not out_channels % BLOCK and groups == 1 and all(d == 1 for d in dilation)
            and not one_d and strides[0] == strides[-1] and padding[0] == padding[2] and padding[1] == padding[3])


def pack_columns_te(x: Any) -> Any:
    """A dense layer's input (M × K float32, M ≤ 32) as `gemm`'s B (`pack_b` of xᵀ, zero columns up to 32)."""
    import tvm
    from tvm import te
    m, k = (int(d) for d in x.shape)
    return te.compute((k // 2, BLOCK, 2), lambda kk, j, p: te.if_then_else(
        j < m, x[tvm.tirx.min(j, m - 1), 2 * kk + p].astype("bfloat16"), tvm.tirx.const(0, "bfloat16")),
        name="amx_pack_columns")
