"""Caffe's `.prototxt` (BVLC AlexNet and GoogLeNet, SqueezeNet: the format the 2012-2016 papers shipped in) → an
archc spec.

A prototxt is protobuf's text format: `layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
convolution_param { num_output: 96 kernel_size: 11 stride: 4 } }`. Layers are joined by blob names (`bottom`,
`top`); an in-place layer (ReLU, Dropout: top = bottom) is written on its producer's line, so that
`conv1: conv(96, 11, stride=4, pad=0) relu` reads as the paper's table does. Each line's comment names the Caffe
layers and their lines. Caffe rounds pooled sizes up (and drops a last window that would start in the padding):
such a pool is written with `ceil=true`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.diagnostics import Collector, Span
from archc.importers.blocks import Line, fold, unfolded
from archc.importers.imported import Imported, identifier
from archc.spec.codes import SYNTAX, UNSUPPORTED

TOKEN = re.compile(r'\s*(?:#[^\n]*|("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|([{}:;,\[\]<>])|([^\s{}:;,"\'#\[\]<>]+))')


@dataclass
class Message:
    """A text-format message: its fields in order, each (key, value, line); a value is a str or a Message."""
    fields: list[tuple[str, Any, int]] = field(default_factory=list)
    line: int = 0

    def all(self, key: str) -> list[Any]:
        return [v for k, v, _ in self.fields if k == key]

    def get(self, key: str, default: Any = None) -> Any:
        found = self.all(key)
        return found[-1] if found else default

    def line_of(self, key: str) -> int:
        return next((line for k, _, line in self.fields if k == key), self.line)


def parse(text: str, file: str, diags: Collector) -> Message:
    """Protobuf's text format, without its schema: every scalar kept as text."""
    import bisect
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]
    tokens: list[tuple[str, str, int]] = []  # (kind, text, line)
    pos = 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip():
                line = bisect.bisect_left(newlines, pos) + 1
                diags.error(SYNTAX, f"unexpected character {text[pos]!r}", Span(file, line, 1, line, 1))
            break
        if m.lastindex:
            kind = ("str", "punct", "word")[m.lastindex - 1]
            value = m.group(m.lastindex)
            tokens.append((kind, value[1:-1] if kind == "str" else value,
                           bisect.bisect_left(newlines, m.start(m.lastindex)) + 1))
        pos = m.end()
    root, i = Message(line=1), 0
    stack: list[Message] = []
    current = root
    while i < len(tokens):
        kind, value, at = tokens[i]
        if kind == "punct" and value in ";,":
            i += 1
            continue
        if kind == "punct" and value == "}":
            if not stack:
                diags.error(SYNTAX, "a `}` without its `{`", Span(file, at, 1, at, 1))
                return root
            current = stack.pop()
            i += 1
            continue
        if kind != "word":
            diags.error(SYNTAX, f"expected a field name, found {value!r}", Span(file, at, 1, at, 1))
            return root
        i += 1
        if i < len(tokens) and tokens[i][1] == ":":
            i += 1
        if i < len(tokens) and tokens[i][1] == "{":
            child = Message(line=at)
            current.fields.append((value, child, at))
            stack.append(current)
            current = child
            i += 1
        elif i < len(tokens) and tokens[i][0] in ("str", "word"):
            current.fields.append((value, tokens[i][1], at))
            i += 1
        else:
            diags.error(SYNTAX, f"field '{value}' has no value", Span(file, at, 1, at, 1))
            return root
    if stack:
        diags.error(SYNTAX, "a `{` is not closed by the end of the file", Span(file, current.line, 1, current.line, 1))
    return root


def _int(msg: Message, key: str, default: int) -> int:
    return int(msg.get(key, default))


def _pair(p: Message, key: str, default: int) -> tuple[int, int]:
    """A size given once (`kernel_size: 3`, repeated per axis) or per axis (`kernel_h`, `kernel_w`)."""
    both = p.all(key)
    h = int(p.get(f"{key.split('_')[0]}_h", both[0] if both else default))
    w = int(p.get(f"{key.split('_')[0]}_w", both[-1] if both else default))
    return h, w


def _pooled(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe's pooled size: rounded up, less a last window that would start in the padding."""
    out = math.ceil((size + 2 * pad - kernel) / stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class _Net:
    def __init__(self, file: str, diags: Collector) -> None:
        self.file, self.diags = file, diags
        self.blobs: dict[str, tuple[str, tuple[int, ...]]] = {}  # blob → (spec label, C×H×W or (N,))
        self.lines: list[list[str]] = []  # [label, body, comment]
        self.labels: set[str] = set()
        self.last = ""
        self.macs = 0
        self.params = 0
        # each Caffe layer → the archc tensors its blobs become, in Caffe's blob order ([] for a layer that learns
        # nothing): what `--weights FILE.caffemodel` binds (caffemodel.py)
        self.learned: dict[str, list[tuple[str, tuple[int, ...]]]] = {}

    def error(self, layer: Message, message: str, key: str | None = None) -> None:
        line = layer.line_of(key) if key else layer.line
        self.diags.error(UNSUPPORTED, message, Span(self.file, line, 1, line, 1))

    def label(self, name: str) -> str:
        base = identifier(name, "layer", "l")
        label, n = base, 2
        while label in self.labels:
            label, n = f"{base}_{n}", n + 1
        self.labels.add(label)
        return label

    def write(self, layer: Message, body: str, shape: tuple[int, ...], inputs: list[str]) -> None:
        name, top = str(layer.get("name", "")), str(layer.get("top", ""))
        source = self.blobs[inputs[0]][0] if inputs else self.last
        comment = f"{name} (line {layer.line})"
        if len(inputs) == 1 and top == inputs[0] and source == self.last and self.lines:  # in place: same line
            self.lines[-1][1] += f" {body}"
            self.lines[-1][2] += f", {comment}"
        else:
            label = self.label(name or top)
            start = "" if len(inputs) != 1 or source == self.last else f"@{source} "
            self.lines.append([label, start + body, comment])
            self.last = label
        self.blobs[top] = (self.last, shape)

    def learn(self, layer: Message, op: str, before: int, tensors: list[tuple[str, tuple[int, ...]]]) -> None:
        """The archc names of a layer's blobs (`tensors`: suffix and shape): the line's label where `write` began
        a line for it (the label names a line's first layer), else `label/op` on its producer's line."""
        path = self.last if len(self.lines) > before else f"{self.last}/{op}"
        self.learned[str(layer.get("name", ""))] = [(f"{path}.{suffix}", shape) for suffix, shape in tensors]

    def add(self, layer: Message) -> None:
        kind = str(layer.get("type", ""))
        self.learned[str(layer.get("name", ""))] = []
        bottoms = [str(b) for b in layer.all("bottom")]
        missing = [b for b in bottoms if b not in self.blobs]
        if missing:
            self.error(layer, f"layer '{layer.get('name')}' reads blob '{missing[0]}', which no earlier layer writes",
                       "bottom")
            return
        shape = self.blobs[bottoms[0]][1] if bottoms else ()
        if kind == "Convolution":
            p = layer.get("convolution_param", Message())
            n, group, bias = _int(p, "num_output", 0), _int(p, "group", 1), str(p.get("bias_term", "true")) == "true"
            (kh, kw), (sh, sw), (ph, pw) = _pair(p, "kernel_size", 1), _pair(p, "stride", 1), _pair(p, "pad", 0)
            if _int(p, "dilation", 1) != 1 or kh != kw or sh != sw:
                self.error(layer, "a dilated or non-square convolution is not imported", "convolution_param")
            c, h, w = shape
            oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            args = [str(n), str(kh)] + ([f"stride={sh}"] if sh != 1 else []) + \
                [f"pad={ph}" if ph == pw else f"pad=({ph}, {pw})"] + ([f"groups={group}"] if group != 1 else []) + \
                ([] if bias else ["bias=false"])
            self.macs += n * (c // group) * kh * kw * oh * ow
            self.params += n * (c // group) * kh * kw + (n if bias else 0)
            before = len(self.lines)
            self.write(layer, f"conv({', '.join(args)})", (n, oh, ow), bottoms)
            self.learn(layer, "conv", before,
                       [("weight", (n, c // group, kh, kw))] + ([("bias", (n,))] if bias else []))
        elif kind == "ReLU":
            slope = float(layer.get("relu_param", Message()).get("negative_slope", 0))
            self.write(layer, f"leaky({slope:g})" if slope else "relu", shape, bottoms)
        elif kind == "LRN":
            p = layer.get("lrn_param", Message())
            if str(p.get("norm_region", "ACROSS_CHANNELS")) != "ACROSS_CHANNELS":
                self.error(layer, "an LRN within a channel is not imported", "lrn_param")
            args = [str(_int(p, "local_size", 5)), f"alpha={float(p.get('alpha', 1)):g}",
                    f"beta={float(p.get('beta', 0.75)):g}", f"bias={float(p.get('k', 1)):g}"]
            self.write(layer, f"lrn({', '.join(args)})", shape, bottoms)
        elif kind == "Pooling":
            p = layer.get("pooling_param", Message())
            pool = str(p.get("pool", "MAX"))
            if pool not in ("MAX", "AVE"):
                self.error(layer, f"a {pool} pooling is not imported", "pooling_param")
            c, h, w = shape
            if str(p.get("global_pooling", "false")) == "true":
                self.write(layer, "gmp" if pool == "MAX" else "gap", (c, 1, 1), bottoms)
                return
            (k, _), (s, _), (pad, _) = _pair(p, "kernel_size", 1), _pair(p, "stride", 1), _pair(p, "pad", 0)
            oh, ow = _pooled(h, k, s, pad), _pooled(w, k, s, pad)
            args = [str(k)] + ([f"stride={s}"] if s != k else []) + ([f"pad={pad}"] if pad else []) + \
                (["ceil=true"] if (oh, ow) != ((h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1) else [])
            op = "maxpool" if pool == "MAX" else "avgpool"
            self.write(layer, f"{op}({', '.join(args)})", (c, oh, ow), bottoms)
        elif kind == "Concat":
            axis = _int(layer.get("concat_param", Message()), "axis", 1)
            shapes = [self.blobs[b][1] for b in bottoms]
            if axis != 1 or len({s[1:] for s in shapes}) > 1:
                self.error(layer, "a concatenation along another axis than the channels, or of different sizes",
                           "bottom")
                return
            body = f"concat {{ {'; '.join('@' + self.blobs[b][0] for b in bottoms)} }}"
            self.write(layer, body, (sum(s[0] for s in shapes), *shapes[0][1:]), bottoms)
        elif kind == "InnerProduct":
            p = layer.get("inner_product_param", Message())
            n, bias = _int(p, "num_output", 0), str(p.get("bias_term", "true")) == "true"
            flat = math.prod(shape)
            self.macs += n * flat
            self.params += n * flat + (n if bias else 0)
            if len(shape) > 1:  # a line of its own: the label names the dense layer
                source = self.blobs[bottoms[0]][0]
                self.lines.append(["", ("" if source == self.last else f"@{source} ") + "flatten", ""])
                self.last = "flatten"
                self.blobs[bottoms[0]] = ("flatten", shape)
            before = len(self.lines)
            self.write(layer, f"dense({n}{'' if bias else ', bias=false'})", (n,), bottoms)
            self.learn(layer, "dense", before, [("weight", (n, flat))] + ([("bias", (n,))] if bias else []))
        elif kind == "Dropout":
            ratio = float(layer.get("dropout_param", Message()).get("dropout_ratio", 0.5))
            self.write(layer, f"dropout({ratio:g})", shape, bottoms)
        elif kind == "Softmax":
            self.write(layer, "softmax", shape, bottoms)
        else:
            self.error(layer, f"Caffe's {kind or 'untyped'} layer has no archc equivalent", "type")


def _input(root: Message, file: str, diags: Collector) -> tuple[str, tuple[int, ...], Message | None]:
    """The network's input: an Input layer, or the old `input:` with `input_shape`/`input_dim`."""
    for layer in root.all("layer"):
        if str(layer.get("type")) == "Input":
            shape = layer.get("input_param", Message()).get("shape", Message())
            return str(layer.get("top", "data")), tuple(int(d) for d in shape.all("dim")), layer
    if root.get("input") is not None:
        dims = root.get("input_shape", Message()).all("dim") or root.all("input_dim")
        return str(root.get("input")), tuple(int(d) for d in dims), None
    diags.error(SYNTAX, "no input: an Input layer or an `input:` with its shape", Span(file, 1, 1, 1, 1))
    return "data", (), None


def convert(text: str, file: str, flat: bool = False) -> Imported:
    """The spec for a prototxt's text; modules it repeats become blocks (importers/blocks.py) unless `flat`."""
    diags = Collector()
    root = parse(text, file, diags)
    diags.raise_if_errors()
    if root.all("layers"):
        diags.error(UNSUPPORTED, "V1 `layers { … }` (Caffe before 2015): upgrade the file with Caffe's "
                    "upgrade_net_proto_text", Span(file, root.line_of("layers"), 1, root.line_of("layers"), 1))
    blob, dims, input_layer = _input(root, file, diags)
    diags.raise_if_errors()
    if len(dims) != 4:
        diags.error(UNSUPPORTED, f"the input's shape {'×'.join(map(str, dims))} is not N×C×H×W",
                    Span(file, input_layer.line if input_layer else 1, 1, 1, 1))
        diags.raise_if_errors()
    net = _Net(file, diags)
    net.blobs[blob] = ("image", dims[1:])
    net.last = "image"
    for layer in root.all("layer"):
        if layer is not input_layer:
            if any(str(p.get("phase", "")) == "TRAIN" for p in layer.all("include")):
                continue  # a training-only layer (loss, accuracy)
            net.add(layer)
    diags.raise_if_errors()
    name = identifier(str(root.get("name", Path(file).stem)), "caffe", "n")
    found = [Line(label or None, text, c, c.split(", ")[0], c.split(", ")[-1],
                  ", ".join(re.sub(r" \(line \d+\)$", "", w) for w in c.split(", ")) if c else "")
             for label, text, c in net.lines]
    folded = unfolded(found) if flat else fold(found, "image", [net.last])
    lines = [(f"  {line.label}: {line.body}" if line.label else f"  {line.body}", line.comment)
             for line in folded.lines]
    width = max(len(line) for line, _ in lines)
    body = [(line.ljust(min(width, 70)) + f"  # {c}" if c else line) for line, c in lines]
    head = [f"# Imported from {Path(file).name} (Caffe prototxt) by `archc import`: a line per layer, in-place",
            "# layers (ReLU, Dropout) on their producer's line; each comment names the Caffe layers and lines.",
            f"# Caffe's figures: {net.params:,} learned parameters, {net.macs:,} multiply-adds "
            "(convolutions and inner products).",
            f"# The prototxt's batch is {dims[0]}; archc's is 1 unless --batch says otherwise."]
    if folded.blocks:
        head += ["# Modules the prototxt repeats are blocks, each defined once below and called once per module; a",
                 "# call's comment names the module's first and last Caffe layers.", ""]
    head += folded.blocks + [f"network {name} {{", f"  input image: {'x'.join(map(str, dims[1:]))}"]
    learned = {layer: [(folded.rename(t), shape) for t, shape in tensors] for layer, tensors in net.learned.items()}
    return Imported("Caffe", "\n".join(head + body + ["}", ""]), 2 * net.macs / 1e9, net.params,
                    [folded.rename(net.last)], [t for tensors in learned.values() for t in tensors], learned,
                    folded.renames)
