"""Sliding-window arithmetic shared by convolution and pooling: padding modes and output sizes.

Padding modes (per spatial axis, with effective kernel e = dilation·(kernel−1)):
- `valid`: no padding.
- `same`: output = ceil(input / stride). When e is even the padding is e/2 on both sides (PyTorch's `padding=k//2`,
  which gives the same output size and keeps torchvision weights interchangeable); when e is odd the total
  padding of TensorFlow's SAME is split with the extra pixel at the end (ONNX SAME_UPPER, see `same_pads`).
- `causal`: e pixels at the start, none at the end (WaveNet/TCN: output t sees inputs ≤ t).
- an integer p: p on every side; a tuple of n: symmetric per axis; a tuple of 2n: ONNX order (begins…, ends…).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from archc.ops.errors import OpError
from archc.shapes import Shape


def same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool = True) -> tuple[int, int]:
    """(begin, end) padding of one axis for ONNX's auto_pad SAME_UPPER (upper) or SAME_LOWER: output =
    ceil(size / stride), the total padding that needs split in two, the odd pixel at the end (upper) or the start."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


def resolve_pads(pad: Any, in_sizes: Shape, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                 name: str = "pad") -> tuple[int, ...]:
    """A spec `pad` argument (a mode, an int or a tuple) as ONNX pads: begins…, ends…."""
    n = len(in_sizes)
    if isinstance(pad, str):
        begins, ends = [], []
        for i in range(n):
            eff = dilation[i] * (kernel[i] - 1)
            if pad == "valid":
                b = e = 0
            elif pad == "causal":
                b, e = eff, 0
            elif pad == "same":
                if eff % 2 == 0:  # symmetric, as PyTorch's padding=k//2
                    b = e = eff // 2
                else:
                    b, e = same_pads(in_sizes[i], kernel[i], stride[i], dilation[i])
            else:
                raise OpError(f"unknown padding {pad!r}; use same, valid, causal, an integer or a tuple", attr=name)
            begins.append(b)
            ends.append(e)
        return tuple(begins + ends)
    if isinstance(pad, int):
        pads = (pad,) * (2 * n)
    else:
        pad = tuple(pad)
        if len(pad) == n:
            pads = pad + pad
        elif len(pad) == 2 * n:
            pads = pad
        else:
            raise OpError(f"{name} has {len(pad)} values; give 1, {n} (one per axis) or {2 * n} (begins, ends)",
                          attr=name)
    if any(not isinstance(p, int) or p < 0 for p in pads):
        raise OpError(f"{name} must be non-negative integers, got {pad}", attr=name)
    return tuple(pads)


def out_sizes(in_sizes: Shape, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
              pads: Sequence[int], ceil: bool = False) -> tuple[int, ...]:
    """floor((W + P_begin + P_end − d·(F−1) − 1) / S) + 1 per axis; with ceil mode, PyTorch's rule that the last
    window must start inside the input or its leading padding."""
    n = len(in_sizes)
    out = []
    for i in range(n):
        span = in_sizes[i] + pads[i] + pads[n + i] - dilation[i] * (kernel[i] - 1) - 1
        if span < 0:
            window = dilation[i] * (kernel[i] - 1) + 1
            raise OpError(
                f"output would be empty: the {window}-wide window does not fit in size {in_sizes[i]} with padding "
                f"{pads[i]}+{pads[n + i]} on spatial axis {i}", code="empty-output")
        o = (math.ceil(span / stride[i]) if ceil else span // stride[i]) + 1
        if ceil and (o - 1) * stride[i] >= in_sizes[i] + pads[i]:
            o -= 1
        out.append(o)
    return tuple(out)
