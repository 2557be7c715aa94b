"""Receptive fields by the standard forward recurrence (Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019), per spatial axis, relative to the network input:

    window op (kernel k, stride s, dilation d, leading padding p):
        size'  = size + (k − 1)·d·jump
        jump'  = jump · s
        start' = start + ((k − 1)·d/2 − p)·jump
    transposed convolution: the same on the s-times finer output grid, jump' = jump / s
    merge (add, concat, mul): the widest input field; inputs whose jump or start differ are "not aligned"
    global pooling, dense layers, flatten: the whole input

`start` is the centre of the first output unit's field in input pixel coordinates (pixel centres at 0, 1, …).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from archc.analysis.graph import NetGraph, Node
from archc.analysis.model import ReceptiveField
from archc.ops.registry import RF


def _merge(states: list[ReceptiveField], node: Node, warnings: list[str]) -> ReceptiveField:
    if len(states) == 1:
        return states[0]
    if any(s.whole for s in states):
        widest = next(s for s in states if s.whole)
        return ReceptiveField(widest.size, widest.stride, widest.start, True)
    base = states[0]
    for other in states[1:]:
        if other.stride != base.stride:
            warnings.append(f"{node.name} (jumps {_fmt(base.stride)} vs {_fmt(other.stride)})")
            break
        if other.start != base.start:
            warnings.append(f"{node.name} (starts {_fmt(base.start)} vs {_fmt(other.start)})")
            break
    widest = max(states, key=lambda s: s.size)
    return ReceptiveField(tuple(max(s.size[i] for s in states) for i in range(len(base.size))), widest.stride,
                          widest.start, False)


def main_inputs(node: Node, fields: dict[str, ReceptiveField]) -> list[ReceptiveField]:
    """The fields of a merge's inputs that have the output's full shape (not broadcast side inputs)."""
    out = node.view.out_shapes[0] if node.view.out_shapes else None
    return [fields[i] for i, shape, stored in zip(node.proto.input, node.view.in_shapes,
                                                   node.view.initializer_inputs)
            if i and not stored and i in fields and out is not None and shape == out]


def _fmt(values: Iterable[float]) -> str:
    return "×".join(f"{v:g}" for v in values)


def _whole(x: ReceptiveField, input_sizes: Sequence[int] | None) -> ReceptiveField:
    return ReceptiveField(tuple(float(s) for s in input_sizes) if input_sizes else x.size, x.stride, x.start, True)


def compute(g: NetGraph, warnings: list[str], main_path: bool = False) -> dict[str, ReceptiveField]:
    """Receptive field of every tensor with spatial axes (a tensor absent from the result has none). Merges whose
    paths are not aligned are reported in one warning.

    `main_path`: at a merge, follow only the inputs of the output's full shape, leaving out broadcast side inputs
    (a squeeze-excitation or attention gate of N×C×1×1 that scales N×C×H×W): strictly every unit then sees the
    whole input, through the gate's global pooling, but the field papers draw is the main path's."""
    misaligned: list[str] = []
    fields = _compute(g, misaligned, main_path)
    if main_path:
        return fields
    if misaligned:
        shown = "; ".join(misaligned[:3]) + (f"; and {len(misaligned) - 3} more" if len(misaligned) > 3 else "")
        warnings.append(f"paths are not aligned at {len(misaligned)} merge{'s' if len(misaligned) > 1 else ''} "
                        f"({shown}): each takes the widest path's field")
    return fields


def _compute(g: NetGraph, warnings: list[str], main_path: bool) -> dict[str, ReceptiveField]:
    fields: dict[str, ReceptiveField] = {}
    input_sizes = None
    for name in g.inputs:
        shape = g.tensors[name].shape
        if shape and len(shape) >= 3:
            n = len(shape) - 2
            fields[name] = ReceptiveField((1.0,) * n, (1.0,) * n, (0.0,) * n)
            input_sizes = input_sizes or shape[2:]
    for node in g.nodes:
        if node.shape_only:
            continue
        ins = [fields[i] for i, stored in zip(node.proto.input, node.view.initializer_inputs)
               if i and not stored and i in fields]
        if not ins:
            continue
        if main_path and len(ins) > 1:
            ins = main_inputs(node, fields) or ins
        x = ins[0]
        n = len(x.size)
        kind = node.rule.rf if node.rule else None
        out_shape = node.view.out_shapes[0] if node.view.out_shapes else None
        in_shape = node.view.in_shapes[0]
        if x.whole and kind not in (RF.IDENTITY,):
            result = x
        elif kind is RF.WINDOW:
            k, s, d, p = node.view.window()
            result = ReceptiveField(tuple(x.size[i] + (k[i] - 1) * d[i] * x.stride[i] for i in range(n)),
                                    tuple(x.stride[i] * s[i] for i in range(n)),
                                    tuple(x.start[i] + ((k[i] - 1) * d[i] / 2 - p[i]) * x.stride[i] for i in range(n)))
        elif kind is RF.TRANSPOSED:
            k, s, d, p = node.view.window()
            jump = tuple(x.stride[i] / s[i] for i in range(n))
            result = ReceptiveField(tuple(x.size[i] + (k[i] - 1) * d[i] * jump[i] for i in range(n)), jump,
                                    tuple(x.start[i] + (p[i] - (k[i] - 1) * d[i] / 2) * jump[i] for i in range(n)))
        elif kind is RF.IDENTITY:
            result = _merge(ins, node, warnings)
        elif kind is RF.RESIZE and in_shape and out_shape and len(out_shape) == n + 2:
            scale = [out_shape[2 + i] / in_shape[2 + i] for i in range(n)]
            linear = node.view.attrs.get("mode", "nearest") != "nearest"
            half = node.view.attrs.get("coordinate_transformation_mode", "half_pixel") in (
                "half_pixel", "pytorch_half_pixel")
            result = ReceptiveField(
                tuple(x.size[i] + (x.stride[i] if linear else 0) for i in range(n)),
                tuple(x.stride[i] / scale[i] for i in range(n)),
                tuple(x.start[i] + ((0.5 / scale[i] - 0.5) * x.stride[i] if half else 0) for i in range(n)))
        elif kind is RF.PAD:
            pads = node.view.const_inputs[1] if len(node.view.const_inputs) > 1 else node.view.attrs.get("pads")
            if pads is None:
                result = x
            else:
                pads = [int(p) for p in pads]
                rank = len(pads) // 2
                result = ReceptiveField(x.size, x.stride,
                                        tuple(x.start[i] - pads[rank - n + i] * x.stride[i] for i in range(n)))
        elif kind is RF.SLICE:
            starts, axes = (node.view.const_inputs + [None] * 4)[1], (node.view.const_inputs + [None] * 4)[3]
            start = list(x.start)
            if starts is not None and in_shape:
                axes = list(axes) if axes is not None else list(range(len(starts)))
                for b, a in zip(starts, axes):
                    a = int(a) % len(in_shape)
                    if a >= 2:
                        start[a - 2] += int(max(0, b if b >= 0 else in_shape[a] + b)) * x.stride[a - 2]
            result = ReceptiveField(x.size, x.stride, tuple(start))
        elif kind is RF.RESHAPE:
            keeps = out_shape is not None and in_shape is not None and len(out_shape) >= n and \
                tuple(out_shape[-n:]) == tuple(in_shape[-n:])
            result = x if keeps else _whole(x, input_sizes)
        elif kind is RF.GLOBAL:
            result = _whole(x, input_sizes)
        else:  # no rule: keep the field if the op keeps the spatial size, else it is unknown from here on
            if out_shape and in_shape and tuple(out_shape[2:]) == tuple(in_shape[2:]):
                result = _merge(ins, node, warnings)
            else:
                continue
        for out in node.proto.output:
            if out:
                fields[out] = result
    return fields
