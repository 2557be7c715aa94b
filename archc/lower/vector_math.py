"""Elementwise math at vector width on CPUs: `exp`, `sigmoid` (SiLU/Swish), `tanh`, `erf` (GELU) and `log`
(softplus, Mish) as TensorIR arithmetic.

TVM lowers `exp` on an LLVM target to LLVM's `llvm.exp` intrinsic, which LLVM has no vector form of without a
vector math library: in a vectorised loop it becomes one scalar `expf` call per element (EfficientNet-B0: the SiLU
after every convolution, 88% of its kernels' time). `install()` replaces that lowering, for float32, by range
reduction and a polynomial (Cephes' `expf`: x = n·ln2 + r, |r| ≤ ln2/2, e^r by a degree-6 polynomial, 2^n by
building the float's exponent bits), all plain arithmetic that vectorises wherever the loop does. sigmoid is
1 / (1 + e^-x) on the same polynomial without exp's saturation selects (`sigmoid_f32`), tanh gets Cephes' `tanhf`
on the same exp, and erf a rational function (LLVM called libm's `erff` per element).

Accuracy (tests/lower/test_vector_math.py, against numpy's float64 exp over every float32 exponent): within 2 ulp
for x in [-87.3, 88.7]; below, where e^x is subnormal, 0 (as with flush-to-zero); above, +inf; NaN stays NaN.
tanh within 2 ulp everywhere; erf within 4e-7 relatively (1e-6 is the bound the tests hold); log within 2 ulp
over every positive float32, subnormals included.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tvm
from tvm import tirx

_LOG2E = 1.44269504088896341
_LN2_HI = 0.693359375  # ln 2 split in two, so that n·ln2 is exact in float32 for the n that occur
_LN2_LO = -2.12194440e-4
_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
_HIGHEST = 88.72283935546875  # log(FLT_MAX): above, e^x is +inf
_LOWEST = -87.33654022216797  # log(FLT_MIN): below, e^x is subnormal, taken as 0

_installed = False


def _lanes(value: Any) -> tuple[str, int, Callable[..., Any]]:
    """(dtype, lanes, a constant of those lanes: Select does not broadcast) of a TIR expression."""
    dtype = str(value.ty.dtype)  # TVM 0.27: an expression's type is `.ty` (a TensorLoad has no .dtype)
    lanes = tvm.DataType(dtype).lanes

    def c(v: float, kind: str = "float32") -> Any:
        k = tirx.const(v, kind)
        return tirx.Broadcast(k, lanes) if lanes > 1 else k
    return dtype, lanes, c


def _is_nan(x: Any, lanes: int, c: Callable[..., Any]) -> Any:
    """x is NaN, from its bits: TVM's LLVM code may assume no NaN in float compares (x != x is then false)."""
    bits = tirx.reinterpret(f"int32x{lanes}" if lanes > 1 else "int32", x)
    return tirx.bitwise_and(bits, c(0x7FFFFFFF, "int32")) > c(0x7F800000, "int32")


def exp_f32(value: Any) -> Any:
    """e^x for a float32 (or float32 vector) TIR expression, as arithmetic only (x and the reduced r bound once)."""
    dtype, lanes, c = _lanes(value)
    x = tirx.Var("exp_x", dtype)
    y = _exp_clamped(x, c, lanes)
    y = tirx.Select(x > c(_HIGHEST), c(float("inf")), y)
    y = tirx.Select(x < c(_LOWEST), c(0.0), y)
    y = tirx.Select(_is_nan(x, lanes, c), x, y)  # NaN in, NaN out (the clamp would have replaced it)
    return tirx.Let(x, value, y)


def sigmoid_f32(value: Any) -> Any:
    """1 / (1 + e^-x) for a float32 TIR expression (SiLU's, Swish's), on `exp_f32`'s polynomial without its
    saturation selects: e^-x clamped to [e^-87.3, e^88.7] gives 1 and 2.9e-39 where it would give 1 and 0 (both
    within 3e-39 of the sigmoid); NaN stays NaN."""
    dtype, lanes, c = _lanes(value)
    x = tirx.Var("sigmoid_x", dtype)
    y = c(1.0) / (c(1.0) + _exp_clamped(c(0.0) - x, c, lanes))
    return tirx.Let(x, value, tirx.Select(_is_nan(x, lanes, c), x, y))


def _exp_clamped(x: Any, c: Callable[..., Any], lanes: int) -> Any:
    """e^x with x clamped to [_LOWEST, _HIGHEST] first (a NaN x gives a number: the callers select it back)."""
    dtype = str(x.ty.dtype)
    vec = f"x{lanes}" if lanes > 1 else ""
    clamped = tirx.max(tirx.min(x, c(_HIGHEST)), c(_LOWEST))
    n = tirx.floor(clamped * c(_LOG2E) + c(0.5))
    r = tirx.Var("exp_r", dtype)
    p = c(_P[0])
    for coefficient in _P[1:]:
        p = p * r + c(coefficient)
    er = p * r * r + r + c(1.0)
    # 2^n as two powers of two built from their exponent bits, each normal: n runs from -126 to 128 after the clamp,
    # and a single 2^n would be 0 at -127 or inf at 128
    ni = tirx.Cast(f"int32{vec}", n)
    half = tirx.shift_right(ni, c(1, "int32"))

    def power(k: Any) -> Any:
        return tirx.reinterpret(f"float32{vec}", tirx.shift_left(k + c(127, "int32"), c(23, "int32")))
    return tirx.Let(r, clamped - n * c(_LN2_HI) - n * c(_LN2_LO), er * power(half) * power(ni - half))


_TANH = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1)


def tanh_f32(value: Any) -> Any:
    """tanh x (Cephes' `tanhf`): x + x³·P(x²) for |x| < 0.625, where 1 - 2/(e^2|x| + 1) would cancel (TVM's own
    form, (1 - e^-2x)/(1 + e^-2x), returns 0 for |x| < 3e-8 and is 3e-6 off relatively near 0); that, with the
    sign of x, above."""
    dtype, lanes, c = _lanes(value)
    x = tirx.Var("tanh_x", dtype)
    z = x * x
    p = c(_TANH[0])
    for coefficient in _TANH[1:]:
        p = p * z + c(coefficient)
    small = p * z * x + x
    a = tirx.abs(x)
    large = c(1.0) - c(2.0) / (exp_f32(a + a) + c(1.0))
    y = tirx.Select(a < c(0.625), small, tirx.Select(x < c(0.0), c(0.0) - large, large))
    return tirx.Let(x, value, tirx.Select(_is_nan(x, lanes, c), x, y))


# erf(x) = x·P(x²)/Q(x²) on [-4, 4] (Eigen's float erf, which TVM's topi.fast_erf also uses), ±1 beyond
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)


def erf_f32(value: Any) -> Any:
    """erf x as a rational function (within 4e-7 of erf, relatively: 6 ulp where erf rounds to 1 near x = 3.3;
    LLVM would call libm's erff per element: GELU's erf form in ConvNeXt, ViT and Swin)."""
    dtype, lanes, c = _lanes(value)
    x = tirx.Var("erf_x", dtype)
    clamped = tirx.max(tirx.min(x, c(4.0)), c(-4.0))
    z = tirx.Var("erf_z", dtype)
    p = c(_ERF_P[0])
    for coefficient in _ERF_P[1:]:
        p = p * z + c(coefficient)
    q = c(_ERF_Q[0])
    for coefficient in _ERF_Q[1:]:
        q = q * z + c(coefficient)
    y = tirx.Select(_is_nan(x, lanes, c), x, clamped * p / q)
    return tirx.Let(x, value, tirx.Let(z, clamped * clamped, y))


# log(1 + f) = f - f²/2 + f³·P(f) for f in [√½ - 1, √2 - 1] (Cephes' logf)
_LOG = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
        2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)
_MIN_NORMAL = 1.1754943508222875e-38
_MAX = 3.4028234663852886e38


def log_f32(value: Any) -> Any:
    """ln x (Cephes' `logf`): x = m·2^e with m in [√½, √2) from its bits (a subnormal x scaled by 2^23 first),
    ln m = ln(1 + f) by a polynomial, plus e·ln 2 in two parts; ln 0 = -inf, ln of a negative number NaN, ln inf
    inf (LLVM called libm's logf per element: softplus and so Mish, log-softmax)."""
    dtype, lanes, c = _lanes(value)
    vec = f"x{lanes}" if lanes > 1 else ""
    x = tirx.Var("log_x", dtype)
    subnormal = x < c(_MIN_NORMAL)
    bits = tirx.Var("log_bits", f"int32{vec}")
    exponent = tirx.bitwise_and(tirx.shift_right(bits, c(23, "int32")), c(0xFF, "int32")) - c(126, "int32")
    m = tirx.reinterpret(f"float32{vec}", tirx.bitwise_or(tirx.bitwise_and(bits, c(0x007FFFFF, "int32")),
                                                          c(0x3F000000, "int32")))  # in [0.5, 1)
    below = m < c(0.70710678118654752440)
    e = tirx.Var("log_e", dtype)
    f = tirx.Var("log_f", dtype)
    z = f * f
    p = c(_LOG[0])
    for coefficient in _LOG[1:]:
        p = p * f + c(coefficient)
    y = f * z * p + e * c(_LN2_LO) - c(0.5) * z
    result = f + y + e * c(_LN2_HI)
    result = tirx.Select(x > c(_MAX), c(float("inf")), result)
    result = tirx.Select(x == c(0.0), c(float("-inf")), result)
    result = tirx.Select(x < c(0.0), c(float("nan")), result)
    result = tirx.Select(_is_nan(x, lanes, c), x, result)
    scaled = tirx.Select(subnormal, x * c(8388608.0), x)
    e_value = tirx.Cast(f"float32{vec}", exponent) - tirx.Select(subnormal, c(23.0), c(0.0)) \
        - tirx.Select(below, c(1.0), c(0.0))
    f_value = tirx.Select(below, m + m, m) - c(1.0)
    return tirx.Let(x, value, tirx.Let(bits, tirx.reinterpret(f"int32{vec}", scaled),
                                       tirx.Let(e, e_value, tirx.Let(f, f_value, result))))


def _float32(op: Any) -> bool:
    dtype = tvm.DataType(str(op.args[0].ty.dtype))
    return bool(dtype.type_code == tvm.DataTypeCode.FLOAT and dtype.bits == 32)


def _lower_exp(op: Any) -> Any:
    x = op.args[0]
    return exp_f32(x) if _float32(op) else tirx.call_llvm_pure_intrin(str(x.ty.dtype), "llvm.exp", x)


def _lower_tanh(op: Any) -> Any:
    if _float32(op):
        return tanh_f32(op.args[0])
    x = op.args[0]  # float64, float16: TVM's own form, which this registration replaces
    dtype = str(x.ty.dtype)
    e = tirx.exp(tirx.const(-2.0, dtype) * tirx.abs(x))
    t = (tirx.const(1.0, dtype) - e) / (tirx.const(1.0, dtype) + e)
    return tirx.Select(x < tirx.const(0.0, dtype), tirx.const(0.0, dtype) - t, t)


def _lower_sigmoid(op: Any) -> Any:
    # float64, float16: the call unchanged, which TVM's LowerIntrin takes as "no rule here" (its own legalization)
    return sigmoid_f32(op.args[0]) if _float32(op) else op


def _lower_log(op: Any) -> Any:
    x = op.args[0]
    return log_f32(x) if _float32(op) else tirx.call_llvm_pure_intrin(str(x.ty.dtype), "llvm.log", x)


def _lower_erf(op: Any) -> Any:
    x = op.args[0]
    return erf_f32(x) if _float32(op) else tirx.call_pure_extern(str(x.ty.dtype), "erf", x)  # libm's, as before


def install() -> None:
    """Lower float32 `exp`, `tanh`, `erf`, `log` and `sigmoid` to the functions above in every LLVM build of this
    process (x86 and aarch64); idempotent."""
    global _installed
    if not _installed:
        tirx.op.register_intrin_lowering("tirx.exp", "llvm", f=_lower_exp, level=99)
        tirx.op.register_intrin_lowering("tirx.tanh", "llvm", f=_lower_tanh, level=99)
        tirx.op.register_intrin_lowering("tirx.erf", "llvm", f=_lower_erf, level=99)
        tirx.op.register_intrin_lowering("tirx.log", "llvm", f=_lower_log, level=99)
        tirx.op.register_intrin_lowering("tirx.sigmoid", "llvm", f=_lower_sigmoid, level=99)
        _installed = True
