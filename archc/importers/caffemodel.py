"""Caffe's trained weights, a `.caffemodel`, as archc's tensors for the spec its prototxt was imported into.

A `.caffemodel` is a binary protobuf `NetParameter` (BVLC caffe's src/caffe/proto/caffe.proto): its layers in
field 100 (`LayerParameter`: name 1, type 2, blobs 7, inner_product_param 117), or in files written before 2015 in
field 2 (`V1LayerParameter`: name 4, type 5 as an enum, blobs 6, inner_product_param 17, and in the oldest files a
`V0LayerParameter` in its field 1: name 1, blobs 50). A blob (`BlobProto`) holds its shape (7: `BlobShape`, dim 1,
packed int64) or the legacy 4-D num, channels, height, width (1-4), and its values as packed floats (5) or doubles
(8). Convolution's blob 0 is its kernel, output × input/group × height × width (as ONNX's), InnerProduct's is output
× input (input × output with `transpose: true`), blob 1 the bias; the legacy 4-D shapes put ones before those
(an inner product's 1×1×out×in, a bias 1×1×1×n).

The file is read with a wire-format reader of its own rather than protobuf's Python classes (built from
descriptors): the values of a blob are one packed field of up to hundreds of megabytes (AlexNet's fc6: 37.7 M
floats), which is read here as a NumPy view of the file's bytes, where a protobuf message gives them as a container
of Python floats (seconds and gigabytes for AlexNet); and the few fields needed (names, blobs, shapes, one flag)
are less code to read than to declare. The tests write their files with protobuf's own encoder (messages built
from descriptors), so the two are checked against each other.

Layers are matched by name, as Caffe's `Net::CopyTrainedLayersFrom` does: every learned layer of the prototxt must
be in the file, with as many blobs and each of the shape the prototxt gives it; layers of the file that the
prototxt lacks (a training net's loss heads, GoogLeNet's auxiliary classifiers) are skipped, as Caffe skips them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from archc.errors import ArchcError
from archc.importers.imported import Imported
from archc.shapes import fmt_dims

V1_TYPES = {1: "Accuracy", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout", 14: "InnerProduct", 15: "LRN",
            17: "Pooling", 18: "ReLU", 20: "Softmax", 21: "SoftmaxWithLoss", 39: "Deconvolution"}  # LayerType


class _Malformed(Exception):
    """The bytes are not a protobuf message of the expected shape (caught and said in one sentence)."""


@dataclass
class Layer:
    """One layer of a .caffemodel: its name, type and blobs (each a float32 array in the shape the file gives)."""
    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)
    legacy: list[bool] = field(default_factory=list)  # per blob: its shape is the legacy 4-D num × c × h × w
    transpose: bool = False  # InnerProduct's `transpose: true`: the weight stored input × output


def _varint(buf: memoryview, at: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= end or shift > 63:
            raise _Malformed("a number runs past the end of its message")
        byte = buf[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(buf: memoryview, start: int, end: int) -> list[tuple[int, int, int | tuple[int, int]]]:
    """A message's fields in order: (number, wire type, value); a length-delimited value as its (start, end)."""
    out: list[tuple[int, int, int | tuple[int, int]]] = []
    at = start
    while at < end:
        key, at = _varint(buf, at, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("a field numbered 0")
        if wire == 0:
            value, at = _varint(buf, at, end)
            out.append((number, wire, value))
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if at + size > end:
                raise _Malformed("a fixed-width field runs past the end of its message")
            out.append((number, wire, at))
            at += size
        elif wire == 2:
            size, at = _varint(buf, at, end)
            if at + size > end:
                raise _Malformed(f"field {number} claims {size:,} bytes where {end - at:,} are left")
            out.append((number, wire, (at, at + size)))
            at += size
        else:
            raise _Malformed(f"field {number} has wire type {wire}, which Caffe's messages do not use")
    return out


def _span(value: int | tuple[int, int], what: str) -> tuple[int, int]:
    if not isinstance(value, tuple):
        raise _Malformed(f"{what} is not a message or string")
    return value


def _text(buf: memoryview, value: int | tuple[int, int], what: str) -> str:
    start, end = _span(value, what)
    try:
        return bytes(buf[start:end]).decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed(f"{what} is not UTF-8 text") from None


def _ints(buf: memoryview, wire: int, value: int | tuple[int, int]) -> list[int]:
    """A repeated integer field's entry: one varint, or a packed run of them."""
    if wire == 0:
        assert isinstance(value, int)
        return [value]
    start, end = _span(value, "a dimension")
    out = []
    while start < end:
        v, start = _varint(buf, start, end)
        out.append(v - (1 << 64) if v >= 1 << 63 else v)
    return out


def _values(buf: memoryview, wire: int, value: int | tuple[int, int], dtype: str) -> np.ndarray:
    """A repeated float or double field's entry: packed (one run of bytes) or one fixed-width value."""
    size = np.dtype(dtype).itemsize
    if wire == 2:
        start, end = _span(value, "a blob's values")
        if (end - start) % size:
            raise _Malformed(f"a blob's values are {end - start:,} bytes, not a whole number of {size}-byte numbers")
        return np.frombuffer(buf, dtype, (end - start) // size, start)
    if wire != (5 if size == 4 else 1):
        raise _Malformed("a blob's values have the wrong wire type")
    assert isinstance(value, int)
    return np.frombuffer(buf, dtype, 1, value)


def _blob(buf: memoryview, start: int, end: int, where: str) -> tuple[np.ndarray, bool]:
    """A BlobProto: its values as float32 in its shape, and whether that shape is the legacy 4-D one."""
    shape: list[int] | None = None
    legacy = [0, 0, 0, 0]
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    for number, wire, value in _fields(buf, start, end):
        if number == 7:
            s, e = _span(value, "a blob's shape")
            shape = [d for n, w, v in _fields(buf, s, e) if n == 1 for d in _ints(buf, w, v)]
        elif number == 5:
            floats.append(_values(buf, wire, value, "<f4"))
        elif number == 8:
            doubles.append(_values(buf, wire, value, "<f8"))
        elif 1 <= number <= 4 and wire == 0:
            assert isinstance(value, int)
            legacy[number - 1] = value
    data = np.concatenate(floats) if len(floats) > 1 else floats[0] if floats else \
        np.concatenate(doubles).astype(np.float32) if doubles else np.zeros(0, np.float32)
    is_legacy = shape is None
    dims = shape if shape is not None else legacy if any(legacy) else [0]
    if any(d < 0 for d in dims) or math.prod(dims) != data.size:
        raise _Malformed(f"{where} has shape {'×'.join(map(str, dims))} but holds {data.size:,} values")
    return data.reshape(dims), is_legacy


def _layer(buf: memoryview, start: int, end: int, v1: bool, index: int) -> Layer:
    name_field, type_field, blobs_field, ip_field = (4, 5, 6, 17) if v1 else (1, 2, 7, 117)
    name, kind, blob_spans, transpose = "", "", [], False
    for number, _, value in _fields(buf, start, end):
        if number == name_field:
            name = _text(buf, value, f"the name of layer {index}")
        elif number == type_field:
            kind = V1_TYPES.get(value, f"V1 type {value}") if v1 and isinstance(value, int) else \
                _text(buf, value, f"the type of layer {index}")
        elif number == blobs_field:
            blob_spans.append(_span(value, "a blob"))
        elif number == ip_field:
            s, e = _span(value, "inner_product_param")
            transpose = any(n == 6 and v == 1 for n, w, v in _fields(buf, s, e))
        elif v1 and number == 1:  # a V0LayerParameter inside: the oldest files (2013)
            s, e = _span(value, "a V0 layer")
            for n, _, v in _fields(buf, s, e):
                if n == 1:
                    name = name or _text(buf, v, f"the name of layer {index}")
                elif n == 2:
                    kind = kind or _text(buf, v, f"the type of layer {index}")
                elif n == 50:
                    blob_spans.append(_span(v, "a blob"))
    layer = Layer(name, kind, transpose=transpose)
    for i, (s, e) in enumerate(blob_spans):
        array, legacy = _blob(buf, s, e, f"blob {i} of layer '{name}'")
        layer.blobs.append(array)
        layer.legacy.append(legacy)
    return layer


def _looks_like_text(data: bytes) -> bool:
    try:
        head = data[:4096].decode("utf-8")
    except UnicodeDecodeError:  # a cut in the middle of a character at 4096 is text too
        head = data[:4096].decode("utf-8", "ignore")
        if len(head.encode("utf-8")) < min(len(data), 4096) - 3:
            return False
    return bool(head) and all(ch.isprintable() or ch in "\t\r\n" for ch in head)


def read_layers(data: bytes, path: str) -> list[Layer]:
    """The layers of a .caffemodel's bytes, in the file's order (field 100 `layer`, or the V1 field 2 `layers`)."""
    buf = memoryview(data)
    try:
        layers = [_layer(buf, *_span(value, "a layer"), number == 2, i) for i, (number, _, value) in
                  enumerate(f for f in _fields(buf, 0, len(buf)) if f[0] in (2, 100))]
    except _Malformed as err:
        if _looks_like_text(data):
            raise ArchcError(f"'{path}' is text, not a Caffe .caffemodel (a binary NetParameter): give the trained "
                             "weights, not a prototxt", code="bad-weights") from None
        raise ArchcError(f"'{path}' is not a Caffe .caffemodel (a binary NetParameter): {err}",
                         code="bad-weights") from None
    if not layers:
        raise ArchcError(f"'{path}' is not a Caffe .caffemodel: it holds no layers", code="bad-weights")
    return layers


def _shown(shape: tuple[int, ...]) -> str:
    return fmt_dims(shape) or "scalar"


def read_caffemodel(path: Path, imported: Imported) -> dict[str, np.ndarray]:
    """A .caffemodel as archc's tensors (name → float32 array) for the spec imported from its prototxt
    (`imported.blobs`: each Caffe layer's tensors). ArchcError `bad-weights` for a file that is no caffemodel,
    `weights-mismatch` for a learned layer of the prototxt that the file lacks or holds in other shapes."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ArchcError(f"cannot read weights file '{path}': {err.strerror or err}", code="bad-weights") from None
    # a name given twice: the last one counts, as in Caffe's CopyTrainedLayersFrom
    found = {layer.name: layer for layer in read_layers(data, str(path)) if layer.blobs}
    out: dict[str, np.ndarray] = {}
    for name, tensors in imported.blobs.items():
        layer = found.get(name)
        if layer is None:
            if not tensors:
                continue
            learned = list(found)
            some = ", ".join(f"'{n}'" for n in learned[:4]) + (", …" if len(learned) > 4 else "")
            raise ArchcError(f"'{path}' has no weights for layer '{name}' of the prototxt (the file's learned "
                             f"layers: {some or 'none'}): is it this network's .caffemodel?", code="weights-mismatch")
        if len(layer.blobs) != len(tensors):
            want = "no learned parameters" if not tensors else "a weight and a bias" if len(tensors) == 2 else \
                "a weight and no bias (bias_term: false)"
            raise ArchcError(f"layer '{name}' of '{path}' ({layer.type or 'untyped'}) holds {len(layer.blobs)} "
                             f"blob{'s' if len(layer.blobs) != 1 else ''}, but the prototxt's layer of that name has "
                             f"{want}", code="weights-mismatch")
        for i, (blob, legacy, (archc_name, shape)) in enumerate(zip(layer.blobs, layer.legacy, tensors, strict=True)):
            transposed = layer.transpose and archc_name.endswith(".weight") and len(shape) == 2
            stored = shape[::-1] if transposed else shape
            got = tuple(int(d) for d in blob.shape)
            # a legacy 4-D shape puts ones before the tensor's own: an inner product's 1×1×out×in, a bias 1×1×1×n
            fits = got == stored or (legacy and len(got) == 4 and len(stored) < 4 and
                                     got == (1,) * (4 - len(stored)) + stored)
            if not fits:
                role = "weight" if i == 0 else "bias"
                raise ArchcError(f"blob {i} ({role}) of layer '{name}' in '{path}' is {_shown(got)}, but the "
                                 f"prototxt's layer needs {_shown(stored)}" +
                                 (" (legacy 4-D shape)" if legacy and len(stored) < 4 else "") +
                                 ": is it this network's .caffemodel?", code="weights-mismatch")
            array = blob.reshape(stored)
            out[archc_name] = np.ascontiguousarray(array.T if transposed else array, dtype=np.float32)
    return out
