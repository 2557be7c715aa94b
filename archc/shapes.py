"""Shapes and element types: the one home of the tensor facts every stage shares.

A shape is a tuple of positive ints, batch first (N×C×spatial for the networks archc builds). Element types are
named as numpy names them (`float32`); each knows its ONNX enum and byte size.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

Shape = tuple[int, ...]


def numel(shape: Iterable[int] | None) -> int | None:
    """Number of elements; None for an unknown shape (a scalar's shape `()` has one element)."""
    if shape is None:
        return None
    n = 1
    for d in shape:
        n *= d
    return n


def fmt_dims(values: Iterable[float], sep: str = "×") -> str:
    """(1, 3, 224, 224) → '1×3×224×224'; whole floats print as ints (receptive fields are floats)."""
    return sep.join(str(int(v)) if float(v).is_integer() else f"{v:g}" for v in values)


def parse_shape(text: str) -> Shape:
    """'1x3x224x224' (or with ×, commas) → (1, 3, 224, 224)."""
    from archc.errors import UsageError
    parts = text.replace("×", "x").replace(",", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"cannot read shape '{text}'; write it like 1x3x224x224", code="bad-shape") from None
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"shape '{text}' must have positive dimensions", code="bad-shape")
    return dims


@dataclass(frozen=True)
class DType:
    name: str  # numpy's name: float32
    onnx: int  # TensorProto.DataType
    itemsize: int

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(self.name)


_ALL = [DType("float32", TensorProto.FLOAT, 4), DType("float16", TensorProto.FLOAT16, 2),
        DType("float64", TensorProto.DOUBLE, 8), DType("bfloat16", TensorProto.BFLOAT16, 2),
        DType("int8", TensorProto.INT8, 1), DType("uint8", TensorProto.UINT8, 1), DType("int16", TensorProto.INT16, 2),
        DType("int32", TensorProto.INT32, 4), DType("int64", TensorProto.INT64, 8), DType("bool", TensorProto.BOOL, 1),
        DType("uint16", TensorProto.UINT16, 2), DType("uint32", TensorProto.UINT32, 4),
        DType("uint64", TensorProto.UINT64, 8)]
BY_NAME = {d.name: d for d in _ALL}
BY_ONNX = {d.onnx: d for d in _ALL}
SPEC_DTYPES = ("float32", "float16", "float64")  # what a spec's `input` line may declare
FLOAT_ONNX = frozenset(TensorProto.DataType.Value(n) for n in ("FLOAT", "FLOAT16", "DOUBLE", "BFLOAT16"))
WEIGHT_PRECISIONS = ("float32", "float16", "int8")  # the weight sizes the totals table lists


def dtype(name: str) -> DType:
    return BY_NAME[name]


def onnx_itemsize(onnx_type: int) -> int:
    """Bytes per element of an ONNX element type (4 when unknown or unset, as float32)."""
    d = BY_ONNX.get(onnx_type)
    if d is not None:
        return d.itemsize
    try:
        from onnx import helper
        return int(helper.tensor_dtype_to_np_dtype(onnx_type).itemsize)
    except Exception:
        return 4
