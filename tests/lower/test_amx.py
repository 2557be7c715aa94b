"""archc's first AMX kernels (issue 24): bf16 matrix products and convolutions on Intel's tile unit, written in
TensorIR with LLVM's x86 AMX intrinsics (archc/lower/kernels/amx.py). Where the CPU has AMX-BF16 each must equal
the float32 (or float64) computation on the same bf16 numbers to 1e-5 of its largest value (float32 accumulation,
in another order); elsewhere Linux refuses the tile state and the kernel tests are skipped with that reason."""
from __future__ import annotations

import numpy as np
import pytest

from archc.lower.kernels import amx

pytestmark = pytest.mark.tvm


def _cpu_has_amx_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in f)
    except OSError:
        return False


def test_the_tile_state_is_granted_exactly_where_the_cpu_has_amx():
    assert amx.request_tiles() is _cpu_has_amx_bf16()
    assert amx.request_tiles() is amx.request_tiles()  # asked once, remembered


@pytest.mark.skipif(not amx.request_tiles(), reason="this CPU (or kernel) has no AMX-BF16: run on an Intel Xeon "
                    "from Sapphire Rapids on")
@pytest.mark.parametrize("m,n,k", [(32, 32, 32), (64, 96, 128), (128, 64, 1024)])
def test_bf16_products_on_the_tile_unit_equal_float32s(m, n, k):
    import ml_dtypes
    import tvm
    lib = tvm.compile(amx.gemm(m, n, k), target=tvm.target.Target(amx.TARGET))
    rng = np.random.default_rng(m + n + k)
    a = rng.standard_normal((m, k)).astype(ml_dtypes.bfloat16)
    b = rng.standard_normal((k, n)).astype(ml_dtypes.bfloat16)
    dev = tvm.cpu()
    c = tvm.runtime.tensor(np.full((m, n), np.nan, np.float32), dev)  # every element must be written
    lib["amx_gemm"](tvm.runtime.tensor(a, dev), tvm.runtime.tensor(amx.pack_b(b), dev), c)
    want = a.astype(np.float32) @ b.astype(np.float32)
    assert np.abs(c.numpy() - want).max() <= 1e-5 * np.abs(want).max()


def test_shapes_off_the_block_are_refused():
    with pytest.raises(ValueError, match="multiples of 32"):
        amx.gemm(48, 32, 32)
    with pytest.raises(ValueError, match="multiples of 32"):
        amx.conv2d(3, 64, 230, 230, 7, 7, 2, 112, 112)  # an RGB stem: its 3 channels stay in float32


def _conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """The convolution in float64, tap by tap, then bias and ReLU."""
    c, h, wd = x.shape
    o, _, r, s = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - r) // stride + 1, (wd + 2 * pad - s) // stride + 1
    y = np.zeros((o, oh, ow))
    for ky in range(r):
        for kx in range(s):
            y += np.einsum("oc,chw->ohw", w[:, :, ky, kx].astype(np.float64),
                           xp[:, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride])
    return np.maximum(y + b[:, None, None], 0)


@pytest.mark.skipif(not amx.request_tiles(), reason="this CPU (or kernel) has no AMX-BF16: run on an Intel Xeon "
                    "from Sapphire Rapids on")
@pytest.mark.parametrize("c,o,h,w,k,stride,pad", [
    (32, 32, 8, 8, 1, 1, 0), (64, 32, 9, 7, 3, 1, 1), (32, 64, 10, 9, 3, 2, 1), (64, 64, 8, 8, 1, 2, 0),
    (64, 96, 14, 14, 3, 1, 1)])
def test_bf16_convolutions_on_the_tile_unit(c, o, h, w, k, stride, pad):
    """1×1 and 3×3, strides 1 and 2, odd sizes (the virtual columns past the output are dropped), bias and ReLU:
    equal to the float64 convolution of the same bf16 numbers to 1e-5 of its largest value."""
    import ml_dtypes
    import tvm
    rng = np.random.default_rng(c + o + h + k)
    x = rng.standard_normal((c, h, w)).astype(ml_dtypes.bfloat16)
    weights = (rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(ml_dtypes.bfloat16)
    bias = rng.standard_normal(o).astype(np.float32)
    want = _conv_reference(x.astype(np.float32), weights.astype(np.float32), bias, stride, pad)
    oh, ow = want.shape[1:]
    length = amx.conv_input_length(oh, w + 2 * pad, k, k, stride)
    lib = tvm.compile(amx.conv2d(c, o, h + 2 * pad, w + 2 * pad, k, k, stride, oh, ow),
                      target=tvm.target.Target(amx.TARGET))
    dev = tvm.cpu()
    y = tvm.runtime.tensor(np.full((o // 16, oh, ow, 16), np.nan, np.float32), dev)
    lib["amx_conv2d"](tvm.runtime.tensor(amx.pack_conv_input(x, (pad, pad), length), dev),
                      tvm.runtime.tensor(amx.pack_conv_weights(weights), dev),
                      tvm.runtime.tensor(bias.reshape(o // 16, 16), dev), y)
    got = y.numpy().transpose(0, 3, 1, 2).reshape(o, oh, ow)
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
