"""Darknet's `.cfg` (pjreddie/darknet, the format YOLO v1-v3 shipped in) → an archc spec.

A cfg is a list of `[section]`s of `key=value` lines: `[net]` gives the input, every other section is one layer,
numbered from 0, and `[route]`/`[shortcut]` name earlier layers by number (negative: counted back from their own).
The importer walks the layers as Darknet's parser does, keeping each one's C×H×W so that it can write what Darknet
computes implicitly (a max pool's one-sided padding, the flatten before a connected layer, a crop's offsets), and
counts what Darknet counts: its BFLOPs (2 × the multiply-adds of convolutional, local and connected layers, the
figure it prints when it loads a cfg) and the floats of the layer's `.weights` (biases, batch-norm scales and
statistics, kernels). The spec names every layer after its kind and Darknet number (`conv12`, `route16`), so a
table from `archc analyze` reads beside Darknet's printout, and a comment carries the section's line.

Every layer Darknet can run but archc cannot is reported at once, each with its line.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from archc.diagnostics import Collector, Span
from archc.errors import ArchcError
from archc.importers.blocks import Line, fold, unfolded
from archc.importers.imported import Imported, identifier
from archc.spec.codes import SYNTAX, UNSUPPORTED

ACTIVATIONS = {"linear": "", "leaky": "leaky(0.1)", "relu": "relu", "logistic": "sigmoid", "tanh": "tanh",
               "swish": "silu"}
HEADS = ("region", "yolo", "detection")  # Darknet's loss/decoding layers: their input is a network output
SKIPPED = ("cost",)  # training-only: no tensor of its own


@dataclass
class Section:
    kind: str
    line: int  # of the `[kind]` header, 1-based
    options: dict[str, tuple[str, int]] = field(default_factory=dict)  # key → (value, line)


def parse(text: str, file: str, diags: Collector) -> list[Section]:
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                diags.error(SYNTAX, "a section header is `[name]`", Span(file, number, 1, number, len(raw) + 1))
                continue
            sections.append(Section(line[1:-1].strip().lower(), number))
        elif "=" in line and sections:
            key, value = (p.strip() for p in line.split("=", 1))
            sections[-1].options[key] = (value, number)
        else:
            what = "an option before the first section" if "=" in line else "a line that is neither `[section]` " \
                "nor `key=value`"
            diags.error(SYNTAX, what, Span(file, number, 1, number, len(raw) + 1))
    if not sections or sections[0].kind not in ("net", "network"):
        diags.error(SYNTAX, "a Darknet cfg starts with its [net] section", Span(file, 1, 1, 1, 1))
    return sections


class _Layers:
    """The walk over the layers: each one's spec line, shape and Darknet figures."""

    def __init__(self, file: str, diags: Collector) -> None:
        self.file, self.diags = file, diags
        self.shapes: list[tuple[int, int, int]] = []  # C, H, W of every Darknet layer's output
        self.labels: list[str] = []  # the spec label whose tensor is that output
        self.lines: list[Line] = []
        self.last = "image"  # the tensor the next spec line continues from
        self.flat = False  # after a connected layer: C×1×1 held as a flat vector
        self.bflops = 0.0
        self.weights = 0
        self.layout: list[tuple[str, tuple[int, ...]]] = []
        self.outputs: list[str] = []

    def stored(self, *tensors: tuple[str, tuple[int, ...]]) -> None:
        """The layer's tensors in the order its .weights file holds them, with archc's names and shapes."""
        self.layout.extend(tensors)
        self.weights += sum(math.prod(shape) for _, shape in tensors)

    def error(self, section: Section, message: str, key: str | None = None) -> None:
        line = section.options[key][1] if key and key in section.options else section.line
        self.diags.error(UNSUPPORTED, message, Span(self.file, line, 1, line, 1))

    def value(self, section: Section, key: str, default: int) -> int:
        text = section.options.get(key, (str(default), 0))[0]
        try:
            return int(float(text)) if re.fullmatch(r"[-+]?\d+(\.0*)?", text) else int(text)
        except ValueError:
            self.error(section, f"{key}={text} is not an integer", key)
            return default

    def ref(self, section: Section, text: str, here: int) -> int | None:
        try:
            index = int(text)
        except ValueError:
            self.error(section, f"layer reference '{text}' is not a number", "layers" if section.kind == "route"
                       else "from")
            return None
        index = here + index if index < 0 else index
        if not 0 <= index < here:
            self.error(section, f"layer reference {text} from layer {here} names no earlier layer",
                       "layers" if section.kind == "route" else "from")
            return None
        return index

    def emit(self, label: str, body: str, shape: tuple[int, int, int], section: Section, source: str | None = None,
             note: str = "") -> None:
        start = "" if source in (None, self.last) else f"@{source} "
        where = f"[{section.kind}] line {section.line}"
        self.lines.append(Line(label, f"{start}{body}", where + (f": {note}" if note else ""), f"{label} {where}",
                               f"{label} {where}", f"[{section.kind}]"))
        self.last = label
        self.labels.append(label)
        self.shapes.append(shape)

    def activation(self, section: Section) -> str:
        name = section.options.get("activation", ("linear", 0))[0]
        if name not in ACTIVATIONS:
            self.error(section, f"activation '{name}' has no archc op (archc has "
                       f"{', '.join(sorted(ACTIVATIONS))})", "activation")
            return ""
        return ACTIVATIONS[name]

    def shortcut(self, s: Section, label: str, other: tuple[int, int, int], inp: tuple[int, int, int]) -> str:
        """Darknet's shortcut (`shortcut_cpu`) as a merge: it adds the earlier layer's output into the first
        min(C) channels, that output sampled every `stride` pixels where it is larger (ResNet-50's projections:
        64 channels at 64×64 into 256 at 64×64, 256 at 64×64 into 512 at 32×32); the other channels pass."""
        (c1, h1, w1), (c2, h2, w2) = other, inp
        stride = max(1, w1 // w2)
        if h2 > h1 or w2 > w1 or h1 // h2 != stride or w1 % w2 or h1 % h2:
            self.error(s, f"shortcut from a {h1}×{w1} layer to a {h2}×{w2} one: archc imports a shortcut from a "
                       "layer as large or a whole number of times larger", "from")
            return "identity"
        ref = " ".join(x for x in (f"@{label}", f"maxpool(1, stride={stride})" if stride > 1 else "",
                                   f"slice(0, {c2})" if c1 > c2 else "") if x)
        if c1 >= c2:
            return f"add {{ identity; {ref} }}"
        return f"concat {{ add {{ slice(0, {c1}); {ref} }}; slice({c1}, {c2}) }}"

    def add(self, i: int, s: Section, inp: tuple[int, int, int]) -> None:
        c, h, w = inp
        source = self.labels[i - 1] if i else "image"
        if s.kind in ("convolutional", "conv", "local"):
            n, size, stride = self.value(s, "filters", 1), self.value(s, "size", 1), self.value(s, "stride", 1)
            groups = self.value(s, "groups", 1) if s.kind != "local" else 1
            if s.kind == "local":  # `pad` is the padding flag: size/2 where set (local_layer.c)
                pad = size // 2 if self.value(s, "pad", 0) else 0
            else:  # `pad=1` pads size/2; `padding` gives it in pixels
                pad = size // 2 if self.value(s, "pad", 0) else self.value(s, "padding", 0)
            if self.value(s, "dilation", 1) != 1 or groups < 1 or c % groups or n % groups:
                self.error(s, "a dilated convolution, or groups that do not divide the channels, is not imported")
                groups = 1
            oh, ow = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
            bn = self.value(s, "batch_normalize", 0) == 1
            args = [str(n), str(size)] + ([f"stride={stride}"] if stride != 1 else []) + \
                ([] if size % 2 and pad == size // 2 else [f"pad={pad}"]) + \
                ([f"groups={groups}"] if groups != 1 else []) + (["bias=false"] if bn else [])
            op = "local" if s.kind == "local" else "conv"
            body = " ".join(x for x in (f"{op}({', '.join(args)})", "bn" if bn else "", self.activation(s)) if x)
            macs = n * (c // groups) * size * size * oh * ow
            self.bflops += 2 * macs / 1e9
            label = f"{op}{i}"
            if s.kind == "local":
                self.stored((f"{label}.bias", (n, oh, ow)), (f"{label}.weight", (oh * ow, n, c, size, size)))
            elif bn:  # Darknet's biases are the batch norm's shift
                self.stored(*((f"{label}/bn.{t}", (n,)) for t in ("bias", "weight", "running_mean", "running_var")),
                            (f"{label}.weight", (n, c // groups, size, size)))
            else:
                self.stored((f"{label}.bias", (n,)), (f"{label}.weight", (n, c // groups, size, size)))
            self.emit(label, body, (n, oh, ow), s, source)
        elif s.kind in ("maxpool", "max"):
            stride = self.value(s, "stride", 1)
            size = self.value(s, "size", stride)
            padding = self.value(s, "padding", size - 1)
            oh, ow = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
            # Darknet starts the window padding/2 before the input and reads -inf outside it: the rest of the
            # padding falls after, as far as the last window reaches
            top = padding // 2
            bottom, right = ((oh - 1) * stride + size - h - top), ((ow - 1) * stride + size - w - top)
            pads = (top, top, max(0, bottom), max(0, right))
            args = [str(size)] + ([f"stride={stride}"] if stride != size else []) + \
                ([f"pad=({', '.join(map(str, pads))})"] if any(pads) else [])
            self.emit(f"maxpool{i}", f"maxpool({', '.join(args)})", (c, oh, ow), s, source)
        elif s.kind in ("avgpool", "avg"):
            self.emit(f"avgpool{i}", "gap", (c, 1, 1), s, source)
        elif s.kind in ("connected", "conn"):
            n = self.value(s, "output", 1)
            self.bflops += 2 * c * h * w * n / 1e9
            self.stored((f"fc{i}.bias", (n,)), (f"fc{i}.weight", (n, c * h * w)))
            if self.value(s, "batch_normalize", 0) == 1:
                self.error(s, "a connected layer with batch_normalize is not imported", "batch_normalize")
            if not self.flat:  # a line of its own, so that the label names the dense layer (its weights fc12.*)
                start = "" if source == self.last else f"@{source} "
                self.lines.append(Line(None, f"{start}flatten"))
                self.last = source = "flatten"
            self.flat = True
            self.emit(f"fc{i}", " ".join(x for x in (f"dense({n})", self.activation(s)) if x), (n, 1, 1), s,
                      source)
        elif s.kind == "dropout":
            p = float(s.options.get("probability", ("0.5", 0))[0])
            self.emit(f"dropout{i}", f"dropout({p:g})", inp, s, source)
        elif s.kind in ("softmax", "soft"):
            if self.value(s, "groups", 1) != 1:
                self.error(s, "a softmax over groups is not imported", "groups")
            self.emit(f"softmax{i}", "softmax", inp, s, source)
        elif s.kind == "route":
            refs = [self.ref(s, t.strip(), i) for t in s.options.get("layers", ("", 0))[0].split(",") if t.strip()]
            if not refs or None in refs:
                self.error(s, "a route needs `layers=` of earlier layers", "layers")
                self.emit(f"route{i}", "identity", inp, s, source)
                return
            if "groups" in s.options:
                self.error(s, "a route with groups (a channel slice) is not imported", "groups")
            shapes = [self.shapes[r] for r in refs if r is not None]
            if len({sh[1:] for sh in shapes}) > 1:
                self.error(s, f"route joins layers of different sizes ({', '.join(f'{a[1]}×{a[2]}' for a in shapes)})",
                           "layers")
            shape = (sum(sh[0] for sh in shapes), *shapes[0][1:])
            names = [self.labels[r] for r in refs if r is not None]
            note = f"layers {', '.join(str(r) for r in refs)}"
            if len(names) == 1:  # the next layer continues from that one: no node of its own
                self.labels.append(names[0])
                self.shapes.append(shape)
                self.lines.append(Line(None, text=f"  # route{i}: {names[0]}, read by reference".ljust(59) +
                                       f" # [route] line {s.line}: {note}"))
                return
            self.emit(f"route{i}", f"concat {{ {'; '.join('@' + n for n in names)} }}", shape, s, source, note)
        elif s.kind == "shortcut":
            ref = self.ref(s, s.options.get("from", ("", 0))[0], i)
            if ref is None:
                return self.emit(f"shortcut{i}", "identity", inp, s, source)
            body = " ".join(x for x in (self.shortcut(s, self.labels[ref], self.shapes[ref], inp),
                                         self.activation(s)) if x)
            self.emit(f"shortcut{i}", body, inp, s, source, f"from {ref}")
        elif s.kind == "upsample":
            stride = self.value(s, "stride", 2)
            if stride < 1:
                self.error(s, "an upsample with a negative stride (a down-sampling) is not imported", "stride")
                stride = 1
            self.emit(f"upsample{i}", f"upsample({stride})", (c, h * stride, w * stride), s, source)
        elif s.kind == "reorg":
            stride = self.value(s, "stride", 1)
            for key in ("reverse", "flatten", "extra"):
                if self.value(s, key, 0):
                    self.error(s, f"a reorg with {key}=1 is not imported", key)
            self.emit(f"reorg{i}", f"reorg({stride})", (c * stride * stride, h // stride, w // stride), s, source)
        elif s.kind == "crop":
            ch, cw = self.value(s, "crop_height", 1), self.value(s, "crop_width", 1)
            dh, dw = (h - ch) // 2, (w - cw) // 2  # at inference Darknet cuts out the centre
            body = f"slice({dh}, {dh + ch}, axis=2) slice({dw}, {dw + cw}, axis=3)"
            self.emit(f"crop{i}", body, (c, ch, cw), s, source,
                      "the centre; Darknet's crop also maps pixels from [0, 1] to [-1, 1] (2x - 1): feed inputs "
                      "scaled so")
        elif s.kind in HEADS:
            self.labels.append(self.labels[-1] if self.labels else "image")
            self.shapes.append(inp)
            self.outputs.append(self.labels[-1])
            keys = ("classes", "num", "coords", "side", "mask", "anchors")
            note = ", ".join(f"{k}={s.options[k][0]}" for k in keys if k in s.options)
            self.lines.append(Line(None, text=f"  # {s.kind}{i}: the raw output of {self.labels[-1]} ({note}); its "
                                   f"decoding is post-processing  # line {s.line}"))
        elif s.kind in SKIPPED:
            self.labels.append(self.labels[-1] if self.labels else "image")
            self.shapes.append(inp)
        else:
            self.error(s, f"Darknet's [{s.kind}] layer has no archc equivalent")
            self.labels.append(self.labels[-1] if self.labels else "image")
            self.shapes.append(inp)


def convert(text: str, file: str, flat: bool = False) -> Imported:
    """The spec for a cfg's text; SpecError (every problem, each with its line) where it has layers archc lacks.
    Units the cfg repeats become blocks (importers/blocks.py) unless `flat`."""
    diags = Collector()
    sections = parse(text, file, diags)
    diags.raise_if_errors()
    net = sections[0]
    layers = _Layers(file, diags)
    shape = (layers.value(net, "channels", 3), layers.value(net, "height", 224), layers.value(net, "width", 224))
    for i, s in enumerate(sections[1:]):
        layers.add(i, s, layers.shapes[i - 1] if i else shape)
    diags.raise_if_errors()
    outputs = layers.outputs or [layers.labels[-1]]
    folded = unfolded(layers.lines) if flat else fold(layers.lines, "image", outputs)
    name = identifier(Path(file).stem, "darknet", "n")
    head = [f"# Imported from {Path(file).name} (Darknet cfg) by `archc import`: one layer per line, named after its",
            "# kind and Darknet's layer number; each comment gives the cfg line it came from.",
            f"# Darknet's figures: {layers.bflops:.3f} BFLOPs (2 × multiply-adds of its convolutional, local and "
            "connected", f"# layers), {layers.weights:,} floats in its .weights file."]
    if folded.blocks:
        head += ["# Units the cfg repeats are blocks, each defined once below and called once per unit (or run of",
                 "# equal units, `* N`); a call's comment names its unit's first and last layers.", ""]
    head += folded.blocks + [f"network {name} {{", f"  input image: {'x'.join(map(str, shape))}"]
    returned = [folded.refs.get(o, o) for o in outputs]
    tail = ([f"  output {', '.join(dict.fromkeys(returned))}"] if len(set(returned)) > 1 or returned[-1] !=
            folded.refs.get(layers.last, layers.last) else []) + ["}", ""]
    lines = [_line(line) for line in folded.lines]
    return Imported("Darknet", "\n".join(head + lines + tail), layers.bflops, layers.weights,
                    list(dict.fromkeys(folded.rename(o) for o in outputs)),
                    [(folded.rename(n), shape) for n, shape in layers.layout], renames=folded.renames)


def _line(line: Line) -> str:
    if line.text is not None:
        return line.text
    if line.label is None:
        return f"  {line.body}"
    return f"  {line.label}: {line.body}".ljust(58) + f" # {line.comment}"


def read_weights(path: Path, imported: Imported) -> dict[str, np.ndarray]:
    """A Darknet .weights file as archc's tensors (name → array), in the layout of the cfg it was imported from.
    The header is three int32 (major, minor, revision) and the images seen (int64 from version 0.2, int32
    before); then the float32s of each layer in order (parser.c's load_weights). A connected layer's matrix is
    stored transposed where major or minor is over 1000."""
    data = path.read_bytes()
    if len(data) < 16:
        raise ArchcError(f"'{path}' is too short for a Darknet .weights file (no header)", code="bad-weights")
    major, minor, _ = (int(v) for v in np.frombuffer(data[:12], "<i4"))
    start = 20 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 16
    floats = np.frombuffer(data[start:start + (len(data) - start) // 4 * 4], "<f4")
    if floats.size != imported.weights:
        raise ArchcError(f"'{path}' holds {floats.size:,} weights after its header, the cfg's layers "
                         f"{imported.weights:,}: is it this cfg's .weights file?", code="weights-mismatch")
    transpose = major > 1000 or minor > 1000
    out, at = {}, 0
    for name, shape in imported.layout:
        size = math.prod(shape)
        array = floats[at:at + size]
        if transpose and len(shape) == 2 and name.endswith(".weight"):  # a connected layer's matrix
            array = array.reshape(shape[::-1]).T
        out[name] = np.ascontiguousarray(array.reshape(shape))
        at += size
    return out
