"""What `--precision int8` reads of a QDQ model (ONNX's QuantizeLinear/DequantizeLinear pairs, as onnxruntime's
quantize_static and `archc quantize` write them) in its Relax form: the int8 weights of each convolution and the
quantization of its input.

The importer gives a quantized convolution as conv2d(dequantize(quantize(x, s, z)), dequantize(Wq, ws, 0)),
and archc folds the constants as it imports (build.import_onnx), so the weight arrives as float32 Wq · ws:
`integers` gives it its integers back. The input's scale and zero point are read from the quantize the dequantize
undoes (`quantized_input`); archc quantizes the float32 x itself (conv2d.quantize), in its blocked layout, where
TVM fuses the quantization into the epilogue of the kernel that computes x.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from tvm import relax

from archc.lower.kernels.optable import is_const, is_op_call


def integers(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The int8 integers and per-output-channel scales a float32 weight was dequantized from, where it was: every
    value of a channel a whole multiple of one scale, the largest 127 (or 63, a reduced range) of them, as
    symmetric max-abs quantization makes them; None otherwise. The integers are exact; the scale is the channel's
    to within a float32 rounding (127 · s rounded, divided again)."""
    channels = weight.reshape(weight.shape[0], -1).astype(np.float64)
    largest = np.abs(channels).max(1)
    for top in (127, 63):
        scale = np.where(largest > 0, largest / top, 1.0)
        ratio = channels / scale[:, None]
        q = np.round(ratio)
        if np.all(np.abs(ratio - q) < 1e-3):
            return q.astype(np.int8).reshape(weight.shape), scale.astype(np.float32)
    return None


def quantized_input(v: Any, value_of: dict[Any, Any]) -> tuple[Any, float, int] | None:
    """(x, scale, zero point) where `v` is dequantize(quantize(x, s, z), s, z) to uint8 with one scale and zero
    point, as a QDQ model feeds a quantized convolution; None otherwise."""
    dq: Any = value_of.get(v)
    if not (is_op_call(dq) and dq.op.name == "relax.dequantize" and isinstance(dq.args[0], relax.Var)):
        return None
    q: Any = value_of.get(dq.args[0])
    if not (is_op_call(q) and q.op.name == "relax.quantize" and str(q.attrs.out_dtype) == "uint8"):
        return None
    args = (*q.args[1:], *dq.args[1:])
    if not all(is_const(a) and a.value.numpy().size == 1 for a in args):
        return None
    scale, zero, dq_scale, dq_zero = (a.value.numpy().reshape(()) for a in args)
    if scale != dq_scale or zero != dq_zero:
        return None
    return q.args[0], float(scale), int(zero)
