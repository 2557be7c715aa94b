"""`archc analyze MODEL --explain LAYER`: the arithmetic behind each figure of one layer, with its own numbers,
as the lectures work it: output size, parameters, MACs, FLOPs, activation size and the receptive-field step."""
from __future__ import annotations

import math

from archc.analysis.model import Analysis, Layer, ReceptiveField
from archc.errors import ArchcError
from archc.ops.registry import RF, NodeView, onnx_rule
from archc.render.cells import dims, output_size


def _n(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


def _input_field(a: Analysis, layer: Layer) -> ReceptiveField | None:
    for name in layer.inputs:
        prev = a.layer(name)
        if prev is not None:
            return prev.receptive_field
        if any(i["name"] == name for i in a.inputs):
            n = len(a.inputs[0]["shape"]) - 2
            return ReceptiveField((1.0,) * n, (1.0,) * n, (0.0,) * n) if n > 0 else None
    return None


def _axes(layer: Layer) -> list[int]:
    """Axes to explain: one when every spatial axis has the same numbers (the common square case)."""
    x, y = layer.input_shapes[0], layer.output_shape
    n = len(x) - 2 if x else 0
    same = x is not None and y is not None and n > 0 and all(len(set(v)) == 1 for v in (
        x[2:], y[2:], layer.kernel or (1,), layer.stride or (1,), layer.dilation or (1,), layer.pads or (0,)))
    return [0] if same else list(range(n))


def _transposed(layer: Layer) -> bool:
    rule = onnx_rule(layer.op)
    return rule is not None and rule.rf is RF.TRANSPOSED


def _size_lines(layer: Layer) -> list[str]:
    transposed = _transposed(layer)
    x, y = layer.input_shapes[0], layer.output_shape
    if not layer.kernel or not x or not y:
        return [f"output size: {output_size(y)} (the op keeps or reshapes its input {output_size(x)})"]
    n = len(x) - 2
    axis_names = {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}.get(n, [f"axis{i}" for i in range(n)])
    strides, pads = layer.stride or (1,) * n, layer.pads or (0,) * (2 * n)
    lines = []
    for i in _axes(layer):
        w, f, s = x[2 + i], layer.kernel[i], strides[i]
        d = layer.dilation[i] if layer.dilation else 1
        pb, pe = pads[i], pads[n + i]
        label = "every spatial axis" if len(_axes(layer)) == 1 and n > 1 else axis_names[i]
        if transposed:
            lines.append(f"output size ({label}): (W − 1)·S − P_begin − P_end + d·(F − 1) + output_padding + 1 = "
                         f"({w} − 1)·{s} − {pb} − {pe} + {d}·({f} − 1) + … + 1 = {y[2 + i]}")
            continue
        fe = d * (f - 1) + 1
        pad = f"{pb} + {pe}" if pb != pe else f"2·{pb}"
        pdesc = f"P = {pb}" if pb == pe else f"P = {pb} before, {pe} after"
        span = w - fe + pb + pe
        ceil = y[2 + i] == math.ceil(span / s) + 1 and y[2 + i] != span // s + 1
        eff = f"F = {f}" if d == 1 else f"F_eff = d·(F − 1) + 1 = {d}·({f} − 1) + 1 = {fe}"
        rnd = "⌈" if ceil else "⌊"
        close = "⌉" if ceil else "⌋"
        lines.append(f"output size ({label}): {rnd}(W − F + 2P)/S{close} + 1 with W = {w}, {eff}, {pdesc}, S = {s}: "
                     f"{rnd}({w} − {fe} + {pad})/{s}{close} + 1 = {rnd}{span}/{s}{close} + 1 = {y[2 + i]}"
                     + ("  (ceil mode)" if ceil else ""))
    return lines


def _cost_lines(layer: Layer) -> list[str]:
    """The op's own parameter and MAC arithmetic, from its registered rule."""
    rule = onnx_rule(layer.op)
    lines = []
    if rule is not None and rule.explain is not None and layer.output_shape and layer.input_shapes[0]:
        view = NodeView(layer.op, {"group": layer.groups or 1, "kernel_shape": layer.kernel or ()},
                        layer.input_shapes, [layer.output_shape], [], [])
        lines = rule.explain(view, layer.params, layer.nontrainable, layer.macs)
    if not any(lay.startswith("parameters") for lay in lines):
        lines.insert(0, f"parameters: {layer.params:,}" + (" (no weights)" if not layer.params else ""))
    if not any(lay.startswith("MACs") for lay in lines):
        lines.append(f"MACs: {'?' if layer.macs is None else f'{layer.macs:,}'} (only convolutions and dense "
                     "layers have multiply-accumulates)")
    return lines


def _rf_lines(a: Analysis, layer: Layer) -> list[str]:
    transposed = _transposed(layer)
    rf, prev = layer.receptive_field, _input_field(a, layer)
    if rf is None:
        return ["receptive field: none (the tensor has no spatial axes)"]
    if rf.whole:
        return [f"receptive field: the whole input ({dims(rf.size)}): every output sees every input pixel "
                "(global pooling, dense layer or flatten on the way)"]
    if prev is None or not layer.kernel:
        return [f"receptive field: {dims(rf.size)}, jump {dims(rf.stride)}, start {dims(rf.start)} "
                "(unchanged or the widest input's)"]
    lines = []
    for i in _axes(layer):
        k, d = layer.kernel[i], layer.dilation[i] if layer.dilation else 1
        s, p = (layer.stride or (1,) * len(layer.kernel))[i], (layer.pads or (0,) * (2 * len(layer.kernel)))[i]
        r0, j0, s0 = prev.size[i], prev.stride[i], prev.start[i]
        if transposed:
            lines.append(f"receptive field: jump j = j_prev/S = {_n(j0)}/{s} = {_n(rf.stride[i])}; "
                         f"r = r_prev + (F − 1)·d·j = {_n(r0)} + ({k} − 1)·{d}·{_n(rf.stride[i])} = {_n(rf.size[i])}")
            continue
        lines.append(f"receptive field: r = r_prev + (F − 1)·d·j_prev = {_n(r0)} + ({k} − 1)·{d}·{_n(j0)} = "
                     f"{_n(rf.size[i])}; j = j_prev·S = {_n(j0)}·{s} = {_n(rf.stride[i])}; "
                     f"start = start_prev + ((F − 1)·d/2 − P)·j_prev = {_n(s0)} + (({k} − 1)·{d}/2 − {p})·{_n(j0)} = "
                     f"{_n(rf.start[i])}")
    return lines


def _rpn_lines(a: Analysis, layer: Layer) -> list[str]:
    """A region proposal network's output (2k scores or 4k offsets a location, `Totals.anchors`): what one
    location of it is."""
    y = layer.output_shape
    if not a.totals.anchors or not y or len(y) != 4:
        return []
    h, w, k = a.totals.anchors
    if (y[2], y[3]) != (h, w) or y[1] not in (2 * k, 4 * k):
        return []
    rf = layer.receptive_field
    window = (f", sees {dims(rf.size)} input pixels and moves {dims(rf.stride)} pixels a location"
              if rf is not None and not rf.whole else "")
    what = (f"2k = {2 * k}: each anchor's object and background logits (k background channels, then k object)"
            if y[1] == 2 * k else f"4k = {4 * k}: each anchor's box offsets (dx, dy, dw, dh)")
    return [f"RPN location: each of the {h}×{w} locations is one position of the RPN's sliding window{window}; "
            f"it holds k = {k} anchors (boxes of k sizes and shapes centred on it) and {what}; {h}×{w}×{k} = "
            f"{h * w * k:,} anchors in all"]


def explain(a: Analysis, name: str) -> str:
    layer = a.layer(name)
    if layer is None:
        close = [lay.name for lay in a.layers if name in lay.name][:5]
        raise ArchcError(f"no layer named '{name}' in {a.model}" +
                         (f"; did you mean {', '.join(close)}?" if close else "; list them with --by layer"),
                         code="unknown-layer")
    rule = onnx_rule(layer.op)
    y = layer.output_shape
    lines = [f"{layer.name} ({layer.op}{', spec op ' + layer.spec_op if layer.spec_op else ''}"
             f"{', ' + layer.span if layer.span else ''})",
             f"input {' and '.join(output_size(s) for s in layer.input_shapes[:1])}, output {output_size(y)}"]
    lines += _size_lines(layer) + _cost_lines(layer)
    flops = "?" if layer.flops is None else f"{layer.flops:,}"
    lines.append(f"FLOPs: {rule.flops_doc if rule else 'no cost rule for this op'} = {flops}")
    lines.append(f"activation: {output_size(y)} = {layer.activation_elements:,} elements × "
                 f"{layer.activation_bytes // max(1, layer.activation_elements)} bytes = "
                 f"{layer.activation_bytes:,} bytes")
    lines += _rf_lines(a, layer) + _rpn_lines(a, layer)
    return "\n".join(lines)
