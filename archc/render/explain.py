"""`archc analyze MODEL --explain LAYER`: the arithmetic behind each figure of one layer, with its own numbers,
as the lectures work it: output size, parameters, MACs, FLOPs, activation size and the receptive-field step."""
from __future__ import annotations

import math

from archc.analyze.model import Analysis, Layer, ReceptiveField
from archc.errors import ArchcError
from archc.ops.registry import onnx_rule
from archc.render.views import dims, output_size


def _n(v) -> str:
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
    x = layer.input_shapes[0]
    n = len(x) - 2 if x else 0
    same = n > 0 and all(len(set(v)) == 1 for v in (
        x[2:], layer.output_shape[2:], layer.kernel or (1,), layer.stride or (1,), layer.dilation or (1,),
        layer.pads or (0,)))
    return [0] if same else list(range(n))


def _size_lines(layer: Layer) -> list[str]:
    x, y = layer.input_shapes[0], layer.output_shape
    if not layer.kernel or not x or not y:
        return [f"output size: {output_size(y)} (the op keeps or reshapes its input {output_size(x)})"]
    n = len(x) - 2
    axis_names = {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}.get(n, [f"axis{i}" for i in range(n)])
    lines = []
    for i in _axes(layer):
        w, f, s = x[2 + i], layer.kernel[i], layer.stride[i]
        d = layer.dilation[i] if layer.dilation else 1
        pb, pe = layer.pads[i], layer.pads[n + i]
        label = "every spatial axis" if len(_axes(layer)) == 1 and n > 1 else axis_names[i]
        if layer.op == "ConvTranspose":
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


def _params_lines(layer: Layer) -> list[str]:
    x, y = layer.input_shapes[0], layer.output_shape
    w = layer.input_shapes[1] if len(layer.input_shapes) > 1 else None
    has_bias = len(layer.input_shapes) > 2 and layer.input_shapes[2] is not None
    if layer.op in ("Conv", "ConvTranspose") and w:
        g = layer.groups or 1
        cin, cout = x[1], y[1]
        k = "·".join(str(v) for v in layer.kernel)
        bias = f" + C_out" if has_bias else ""
        return [f"parameters: F·F·C_in/groups·C_out{bias} = {k}·{cin}/{g}·{cout}" + (f" + {cout}" if has_bias else "")
                + f" = {layer.params:,}"]
    if layer.op == "Gemm" and w:
        return [f"parameters: inputs·outputs + outputs = {x[1]}·{y[1]}" + (f" + {y[1]}" if has_bias else "")
                + f" = {layer.params:,}"]
    if layer.op == "BatchNormalization":
        c = y[1]
        return [f"parameters: γ and β per channel = 2·{c} = {layer.params:,} trainable, plus running mean and "
                f"variance 2·{c} = {layer.nontrainable:,} non-trainable"]
    return [f"parameters: {layer.params:,}" + (" (no weights)" if not layer.params else "")]


def _macs_lines(layer: Layer) -> list[str]:
    x, y = layer.input_shapes[0], layer.output_shape
    if layer.op == "Conv" and layer.macs is not None:
        out = "·".join(str(v) for v in y[2:])
        k = "·".join(str(v) for v in layer.kernel)
        g = layer.groups or 1
        batch = f"{y[0]}·" if y[0] > 1 else ""
        return [f"MACs: N·H_out·W_out·C_out · F·F·C_in/groups = {batch}{out}·{y[1]} · {k}·{x[1]}/{g} = {layer.macs:,}"]
    if layer.op == "ConvTranspose" and layer.macs is not None:
        return [f"MACs: every input element is scattered to F·F·C_out/groups outputs: "
                f"{'·'.join(str(v) for v in x)} · {'·'.join(str(v) for v in layer.kernel)}·{y[1]}/{layer.groups or 1}"
                f" = {layer.macs:,}"]
    if layer.op in ("Gemm", "MatMul") and layer.macs is not None:
        return [f"MACs: batch·outputs·inputs = {y[0]}·{y[-1]}·{x[-1]} = {layer.macs:,}"]
    return [f"MACs: {'?' if layer.macs is None else f'{layer.macs:,}'} (only convolutions and dense layers have "
            "multiply-accumulates)"]


def _rf_lines(a: Analysis, layer: Layer) -> list[str]:
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
        k, d, s, p = layer.kernel[i], layer.dilation[i] if layer.dilation else 1, layer.stride[i], layer.pads[i]
        r0, j0, s0 = prev.size[i], prev.stride[i], prev.start[i]
        if layer.op == "ConvTranspose":
            lines.append(f"receptive field: jump j = j_prev/S = {_n(j0)}/{s} = {_n(rf.stride[i])}; "
                         f"r = r_prev + (F − 1)·d·j = {_n(r0)} + ({k} − 1)·{d}·{_n(rf.stride[i])} = {_n(rf.size[i])}")
            continue
        lines.append(f"receptive field: r = r_prev + (F − 1)·d·j_prev = {_n(r0)} + ({k} − 1)·{d}·{_n(j0)} = "
                     f"{_n(rf.size[i])}; j = j_prev·S = {_n(j0)}·{s} = {_n(rf.stride[i])}; "
                     f"start = start_prev + ((F − 1)·d/2 − P)·j_prev = {_n(s0)} + (({k} − 1)·{d}/2 − {p})·{_n(j0)} = "
                     f"{_n(rf.start[i])}")
    return lines


def explain(a: Analysis, name: str) -> str:
    layer = a.layer(name)
    if layer is None:
        close = [l.name for l in a.layers if name in l.name][:5]
        raise ArchcError(f"no layer named '{name}' in {a.model}" +
                         (f"; did you mean {', '.join(close)}?" if close else "; list them with --by layer"))
    rule = onnx_rule(layer.op)
    y = layer.output_shape
    lines = [f"{layer.name} ({layer.op}{', spec op ' + layer.spec_op if layer.spec_op else ''}"
             f"{', ' + layer.span if layer.span else ''})",
             f"input {' and '.join(output_size(s) for s in layer.input_shapes[:1])}, output {output_size(y)}"]
    lines += _size_lines(layer) + _params_lines(layer) + _macs_lines(layer)
    flops = "?" if layer.flops is None else f"{layer.flops:,}"
    lines.append(f"FLOPs: {rule.flops_doc if rule else 'no cost rule for this op'} = {flops}")
    lines.append(f"activation: {output_size(y)} = {layer.activation_elements:,} elements × "
                 f"{layer.activation_bytes // max(1, layer.activation_elements)} bytes = {layer.activation_bytes:,} bytes")
    lines += _rf_lines(a, layer)
    return "\n".join(lines)
