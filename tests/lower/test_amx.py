"""archc's first AMX kernel (issue 24): a bf16 matrix product on Intel's tile unit, written in TensorIR with LLVM's
x86 AMX intrinsics (archc/lower/kernels/amx.py). Where the CPU has AMX-BF16 the product must equal the float32
product of the same bf16 numbers to 1e-5 of its largest value (float32 accumulation, in another order); elsewhere
Linux refuses the tile state and the kernel test is skipped with that reason."""
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
