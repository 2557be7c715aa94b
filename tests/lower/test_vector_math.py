"""archc's float32 `exp`, `tanh`, `erf` and `log` lowering (archc/lower/vector_math.py): vector instructions, no
libm call per element, and within 2 ulp of the correctly rounded value (e^x wherever it is a normal float32);
sigmoid, which TVM lowers through exp, keeps its accuracy."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tvm

N = 1 << 16


@pytest.fixture(scope="module", params=["avx512", "avx2"])
def kernels(request):
    """One vectorised elementwise kernel per function, built as archc builds (vector_math installed), for the
    AVX-512 and the AVX2 target (16- and 8-lane vectors); each runs where this CPU has the instructions."""
    import tvm
    from tvm import s_tir, te, tirx

    from archc.lower import vector_math
    from archc.lower.tvm_target import tvm_target
    from archc.targets import get
    from archc.util.peak import detect_isa
    isa = detect_isa()
    if isa not in ("avx512", "avx2"):
        pytest.skip("not an x86 CPU with AVX2: these x86 kernels cannot run here")
    if request.param == "avx512" and isa != "avx512":
        pytest.skip("this CPU has no AVX-512: its 16-lane kernels cannot run here (the AVX2 ones are tested)")
    vector_math.install()
    tgt = tvm_target(get({"avx512": "x86-avx512", "avx2": "x86"}[request.param]))

    def build(fn, dtype="float32"):
        a = te.placeholder((N,), dtype, name="A")
        b = te.compute((N,), lambda i: fn(a[i]), name="B")
        sch = s_tir.Schedule(te.create_prim_func([a, b]))
        (i,) = sch.get_loops(sch.get_sblock("B"))
        sch.vectorize(sch.split(i, [None, 16])[1])
        return tvm.tirx.build(sch.mod["main"].with_attr("global_symbol", "k"), target=tgt)
    return {"exp": build(tirx.exp), "sigmoid": build(tirx.sigmoid), "tanh": build(tirx.tanh),
            "erf": build(tirx.erf), "log": build(tirx.log), "exp64": build(tirx.exp, "float64"),
            "tanh64": build(tirx.tanh, "float64"), "erf64": build(tirx.erf, "float64")}


def run(lib, x):
    import tvm
    out = tvm.runtime.tensor(np.empty_like(x))
    lib["k"](tvm.runtime.tensor(x), out)
    return out.numpy()


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in float32 units in the last place (both finite and of one sign here)."""
    return np.abs(got.view(np.int32).astype(np.int64) - want.astype(np.float32).view(np.int32).astype(np.int64))


def sweep() -> np.ndarray:
    """Every float32 exponent's worth of inputs across e^x's domain, and random ones."""
    rng = np.random.default_rng(0)
    magnitudes = np.ldexp(1.0 + rng.random(N // 2 - 8), rng.integers(-30, 7, N // 2 - 8))
    x = np.concatenate([magnitudes, -magnitudes, rng.uniform(-110, 100, 16)]).astype(np.float32)
    return np.clip(x, -110, 100)


def test_exp_is_vector_code_without_a_libm_call(kernels):
    asm = kernels["exp"].inspect_source("asm") if hasattr(kernels["exp"], "inspect_source") else \
        kernels["exp"].get_source("asm")
    assert "expf" not in asm  # the stock lowering calls expf once per element
    assert "vfmadd" in asm or "fmla" in asm  # the polynomial, in vector fused multiply-adds


def test_exp_within_2_ulp_of_the_rounded_value_and_the_edges(kernels):
    x = sweep()
    got = run(kernels["exp"], x)
    want = np.exp(x.astype(np.float64))
    normal = (x > -87.33) & (x < 88.72)
    assert ulps(got[normal], want[normal]).max() <= 2
    assert np.all((got[x < -87.34] >= 0) & (got[x < -87.34] <= np.finfo(np.float32).tiny))  # subnormal: 0
    assert np.all(np.isinf(got[x > 88.73]))
    edges = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 88.72, -87.33], np.float32)
    got = run(kernels["exp"], np.resize(edges, N))[:len(edges)]
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == 0 and got[3] == 1 and got[4] == 1
    assert ulps(got[5:], np.exp(edges[5:].astype(np.float64))).max() <= 2


def test_sigmoid_keeps_its_accuracy_and_tanh_is_within_2_ulp(kernels):
    x = sweep()
    x64 = x.astype(np.float64)
    sig = run(kernels["sigmoid"], x)
    want = 1 / (1 + np.exp(-x64))
    assert np.abs(sig - want).max() <= 1.2e-7 and ulps(sig[x > -80], want[x > -80]).max() <= 2
    # archc's own sigmoid (vector_math.sigmoid_f32): saturated without selects, NaN kept
    ends = np.zeros(N, np.float32)
    ends[:8] = [np.nan, np.inf, -np.inf, 100.0, -100.0, 0.0, 88.8, -88.8]
    ends = run(kernels["sigmoid"], ends)
    assert np.isnan(ends[0]) and ends[1] == 1 and ends[3] == 1 and ends[5] == 0.5 and ends[6] == 1
    assert 0 <= ends[2] <= 3e-39 and 0 <= ends[4] <= 3e-39 and 0 <= ends[7] <= 3e-39
    tiny = np.float32(3e-9)  # TVM's own (1 - e^-2x)/(1 + e^-2x) gave 0 here
    edges = np.array([np.nan, np.inf, -np.inf, 0.0, tiny, -tiny, 0.6249, 0.6251], np.float32)
    tanh = run(kernels["tanh"], np.concatenate([x[:-len(edges)], edges]))
    want = np.tanh(np.concatenate([x64[:-len(edges)], edges.astype(np.float64)]))
    finite = np.isfinite(want) & (want != 0)
    assert ulps(np.abs(tanh[finite]), np.abs(want[finite])).max() <= 2
    assert np.all(np.sign(tanh[finite]) == np.sign(want[finite]))
    assert np.isnan(tanh[-8]) and tanh[-7] == 1 and tanh[-6] == -1 and tanh[-5] == 0 and tanh[-4] == tiny


def test_erf_is_vector_code_within_1e_6_relatively(kernels):
    import math
    asm = kernels["erf"].inspect_source("asm") if hasattr(kernels["erf"], "inspect_source") else \
        kernels["erf"].get_source("asm")
    assert "erff" not in asm
    x = np.concatenate([sweep()[: N - 4], np.array([np.nan, np.inf, -np.inf, 0.0], np.float32)])
    got = run(kernels["erf"], x)
    want = np.vectorize(math.erf)(x[:-4].astype(np.float64))
    assert (np.abs(got[:-4] - want) / np.maximum(np.abs(want), 1e-38)).max() <= 1e-6
    assert np.isnan(got[-4]) and got[-3] == 1 and got[-2] == -1 and got[-1] == 0


def test_float64_is_llvms_as_before(kernels):
    x = np.linspace(-700, 700, N)
    assert np.allclose(run(kernels["exp64"], x), np.exp(x), rtol=1e-15, atol=0)
    assert np.allclose(run(kernels["tanh64"], x / 100), np.tanh(x / 100), rtol=1e-12, atol=1e-15)  # TVM's form
    import math
    assert np.allclose(run(kernels["erf64"], x / 100), np.vectorize(math.erf)(x / 100), rtol=1e-15, atol=0)


def test_log_is_vector_code_within_2_ulp_over_every_positive_float(kernels):
    """Every float32 exponent from the smallest subnormal to the largest normal, and the edges: ln 0 = -inf (of -0
    too), ln of a negative number NaN, ln inf = inf, NaN kept; no libm `logf` call (softplus, and so Mish)."""
    asm = kernels["log"].inspect_source("asm") if hasattr(kernels["log"], "inspect_source") else \
        kernels["log"].get_source("asm")
    assert "logf" not in asm and ("vfmadd" in asm or "fmla" in asm)
    rng = np.random.default_rng(1)
    x = np.ldexp(1.0 + rng.random(N - 16), rng.integers(-149, 128, N - 16)).astype(np.float32)
    edges = np.array([0.0, -0.0, -1.0, np.inf, np.nan, 1.0, 1e-45, 1.0000001, 0.9999999, 0.70710677, 0.7071068,
                      np.finfo(np.float32).tiny, np.finfo(np.float32).max, 2.0, 0.5, -np.inf], np.float32)
    got = run(kernels["log"], np.concatenate([x, edges]))
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.log(np.concatenate([x, edges]).astype(np.float64))
    finite = np.isfinite(want) & (want != 0)
    assert ulps(np.abs(got[finite]), np.abs(want[finite])).max() <= 2
    assert np.all(np.sign(got[finite]) == np.sign(want[finite]))
    tail = got[-16:]
    assert tail[0] == -np.inf and tail[1] == -np.inf and np.isnan(tail[2]) and tail[3] == np.inf
    assert np.isnan(tail[4]) and tail[5] == 0 and np.isnan(tail[15])


def test_a_mish_network_has_no_libm_call(tmp_path):
    """Mish (x·tanh(softplus(x)), softplus = ln(1 + e^x)) after a convolution, as ONNX's Softplus, Tanh and Mul:
    the library calls none of libm's expf, logf or tanhf, and equals onnxruntime."""
    import shutil
    import subprocess
    from pathlib import Path

    from helpers import compile_verified
    from onnx import TensorProto, helper, numpy_helper
    if shutil.which("objdump") is None:
        pytest.skip("needs objdump to read the library's calls: apt-get install binutils")
    w = numpy_helper.from_array(np.random.default_rng(2).standard_normal((16, 8, 3, 3)).astype("f4") * 0.3, "w")
    node = helper.make_node
    graph = helper.make_graph([node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node("Softplus", ["c"], ["s"]),
                               node("Tanh", ["s"], ["t"]), node("Mul", ["c", "t"], ["y"])], "mish",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 12, 12])], [w])
    _, result = compile_verified(graph, tmp_path, "native")
    library = next(Path(result.output).glob("*.so"))
    calls = subprocess.run(["objdump", "-d", str(library)], capture_output=True, text=True).stdout
    assert not [f for f in ("expf", "logf", "tanhf", "log1pf") if f"<{f}@plt>" in calls]
