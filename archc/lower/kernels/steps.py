"""The steps archc's blocked convolution tensorizes into: dot products (dpbf16.py's VDPBF16PS, bfdot.py's BFDOT,
vnni.py's VPDPBUSD, usdot.py's USDOT, sdot.py's SDOT), C[lanes] += Σ_k A[k] · B[lanes, k] over a few reduction
channels, and matrix steps (bfmmla.py's BFMMLA, usmmla.py's USMMLA), C[2, 2] += A[2, k] · B[2, k]ᵀ; their
accumulators a register tile (generic.TILE). A helper for each kind registers a step as a TVM tensor intrinsic:
its description (the loop nest the schedule's block must match) and its implementation (one instruction), which
differ only in their types, their product and their instruction. Which steps a target's kernels take:
`bf16_unit`, `int8_unit`."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from archc.lower.kernels.generic import TILE


def bf16_unit(tgt: Any) -> str:
    """What computes a bf16 build's convolutions for this target: "amx" where the build gave it AMX-BF16 (Linux
    granted the tiles: lower.build.tvm_target_at), "bfmmla" on aarch64 (the target declares the bf16 extension:
    BFMMLA steps for the direct convolutions, BFDOT for the rest), else "avx512bf16" (VDPBF16PS steps in archc's
    blocked kernel)."""
    if _aarch64(tgt):
        return "bfmmla"
    return "amx" if "+amx-bf16" in [str(a) for a in tgt.attrs.get("mattr", [])] else "avx512bf16"


def _aarch64(tgt: Any) -> bool:
    return "aarch64" in str(tgt.attrs.get("mtriple", ""))


def int8_unit(tgt: Any) -> str:
    """What computes an int8 build's convolutions for this target: on aarch64 "usdot" where the target declares
    the i8mm extension, else "sdot" (dotprod: build.int8_unavailable refuses a target with neither); on x86
    "vnni" (AVX512-VNNI)."""
    if not _aarch64(tgt):
        return "vnni"
    from tvm.target import codegen
    return "usdot" if codegen.llvm_cpu_has_features(["i8mm"], tgt) else "sdot"


def register(name: str, lanes: int, width: int, types: tuple[str, str, str], product: Callable[[Any, Any], Any],
             step: Callable[[Any, Any, Any], Any], llvm_ir: str | None = None) -> None:
    """Register tensor intrinsic `name`: C[lanes] (types[2], local) += Σ over `width` of product(A[k], B[i, k])
    (A: types[0], B: types[1]), implemented as C[0:lanes] = step(A, B, C); `llvm_ir`, a module of LLVM IR the step
    calls, linked into the kernel (pragma_import_llvm)."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    def buffers(a: Any, b: Any, c: Any) -> tuple[Any, Any, Any]:
        return (T.match_buffer(a, (width,), types[0], offset_factor=1),
                T.match_buffer(b, (lanes, width), types[1], offset_factor=1),
                T.match_buffer(c, (lanes,), types[2], offset_factor=1, scope=TILE))

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A, B, C = buffers(a, b, c)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:width], B[0:lanes, 0:width])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, width):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + product(A[vk], B[vi, vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A, B, C = buffers(a, b, c)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:width], B[0:lanes, 0:width])
            T.writes(C[0:lanes])
            if llvm_ir is None:  # a Python condition: the parser keeps one branch
                C[T.ramp(T.int32(0), 1, lanes)] = step(A, B, C)
            else:
                with T.attr(T.int32(0), "pragma_import_llvm", llvm_ir):
                    C[T.ramp(T.int32(0), 1, lanes)] = step(A, B, C)

    TensorIntrin.register(name, desc, impl, override=True)


PIXELS = CHANNELS = 2  # a matrix step's accumulators: output pixels × output channels


def matrix_fits(ic_bn: int, stride: int, width: int) -> bool:
    """Whether a matrix step of `width` reduction channels (BFMMLA's 4, USMMLA's 8) computes a convolution of input
    blocks of `ic_bn` channels and `stride` along the rows: blocks of whole steps, and a step's two pixels
    adjacent in the input (stride 1: a step's input is then a 2 × `width` block of it; a strided convolution's
    pixels lie a column apart, which TVM's tensorize cannot match), else a dot-product step computes it."""
    return ic_bn % width == 0 and stride == 1


def register_matrix(name: str, width: int, types: tuple[str, str, str], product: Callable[[Any, Any], Any],
                    step: Callable[[Any, Any, Any], Any], llvm_ir: str | None = None) -> None:
    """Register tensor intrinsic `name`, a matrix step (bfmmla.py's BFMMLA, usmmla.py's USMMLA): C[2, 2]
    (types[2], a register tile) += Σ over `width` of product(A[i, k], B[j, k]): A (types[0]) two output pixels'
    input channels, its rows a stride apart in the input; B (types[1]) two output channels' weights, contiguous.
    Implemented as C's four values = step(A, B, C); `llvm_ir` as `register`'s."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    def buffers(a: Any, b: Any, c: Any) -> tuple[Any, Any, Any]:
        return (T.match_buffer(a, (PIXELS, width), types[0], offset_factor=1, strides=[T.int32(), 1]),
                T.match_buffer(b, (CHANNELS, width), types[1], offset_factor=1),
                T.match_buffer(c, (PIXELS, CHANNELS), types[2], offset_factor=1, scope=TILE))

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A, B, C = buffers(a, b, c)
        with T.sblock("root"):
            T.reads(C[0:PIXELS, 0:CHANNELS], A[0:PIXELS, 0:width], B[0:CHANNELS, 0:width])
            T.writes(C[0:PIXELS, 0:CHANNELS])
            for i, j, k in T.grid(PIXELS, CHANNELS, width):
                with T.sblock("update"):
                    vi, vj, vk = T.axis.remap("SSR", [i, j, k])
                    C[vi, vj] = C[vi, vj] + product(A[vi, vk], B[vj, vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A, B, C = buffers(a, b, c)
        with T.sblock("root"):
            T.reads(C[0:PIXELS, 0:CHANNELS], A[0:PIXELS, 0:width], B[0:CHANNELS, 0:width])
            T.writes(C[0:PIXELS, 0:CHANNELS])
            flat = T.decl_buffer((PIXELS * CHANNELS,), types[2], data=C.data, elem_offset=C.elem_offset, scope=TILE)
            if llvm_ir is None:  # a Python condition: the parser keeps one branch
                flat[T.ramp(T.int32(0), 1, PIXELS * CHANNELS)] = step(A, B, C)
            else:
                with T.attr(T.int32(0), "pragma_import_llvm", llvm_ir):
                    flat[T.ramp(T.int32(0), 1, PIXELS * CHANNELS)] = step(A, B, C)

    TensorIntrin.register(name, desc, impl, override=True)
