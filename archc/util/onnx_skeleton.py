"""Read an ONNX file without its weight data: the graph, and every stored tensor's name, type and shape; and hold a
loaded model's weights aside while it is inferred, rewritten or handed to onnxruntime (`take_weights`).

The analyzer needs shapes, not weights, and a 240 MB ResNet-152 read whole by `onnx.load` (then copied by shape
inference) held about five times the file in memory. This reader walks the protobuf wire format over a memory
map and re-encodes the model with each large initializer's data fields left out, so only the graph's own bytes
are ever copied; the pages holding weights are never touched. Tensors of at most `SMALL` elements keep their
values (shape vectors, pads, scales: what shape inference and the cost rules read).

Wire format: every field is a varint key (field number << 3 | wire type) followed by a varint (type 0), 8 bytes
(type 1), a varint length and that many bytes (type 2), or 4 bytes (type 5). Field numbers are onnx.proto's.
"""
from __future__ import annotations

import hashlib
import mmap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from archc.util.atomic import atomic_file, write_bytes

SMALL = 64  # elements: tensors up to this size keep their data

_MODEL_GRAPH = 7  # ModelProto.graph
_GRAPH_INITIALIZER = 5  # GraphProto.initializer
_TENSOR_DIMS = 1
_TENSOR_DATA = frozenset({4, 5, 6, 7, 9, 10, 11})  # float/int32/string/int64/raw/double/uint64 data


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(buf: memoryview | mmap.mmap, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated or malformed varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview | mmap.mmap, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, field start, value start, value end) of each field in buf[start:end]."""
    pos = start
    while pos < end:
        key, body = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, after = _varint(buf, body, end)
            value_start, value_end = body, after
        elif wire == 1:
            value_start, value_end = body, body + 8
        elif wire == 2:
            length, value_start = _varint(buf, body, end)
            value_end = value_start + length
        elif wire == 5:
            value_start, value_end = body, body + 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if value_end > end:
            raise WireError("a field runs past the end of its message")
        yield number, wire, pos, value_start, value_end
        pos = value_end


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _length_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _numel(buf: memoryview | mmap.mmap, start: int, end: int) -> int:
    n = 1
    for number, wire, _, vs, ve in _fields(buf, start, end):
        if number != _TENSOR_DIMS:
            continue
        if wire == 0:
            n *= _varint(buf, vs, ve)[0]
        else:  # packed
            pos = vs
            while pos < ve:
                d, pos = _varint(buf, pos, ve)
                n *= d
    return n


def _tensor(buf: memoryview | mmap.mmap, start: int, end: int) -> bytes:
    if _numel(buf, start, end) <= SMALL:
        return bytes(buf[start:end])
    return b"".join(bytes(buf[fs:ve]) for number, _, fs, _, ve in _fields(buf, start, end)
                    if number not in _TENSOR_DATA)


def _graph(buf: memoryview | mmap.mmap, start: int, end: int) -> bytes:
    parts = []
    for number, _, fs, vs, ve in _fields(buf, start, end):
        parts.append(_length_field(number, _tensor(buf, vs, ve)) if number == _GRAPH_INITIALIZER
                     else bytes(buf[fs:ve]))
    return b"".join(parts)


def load_skeleton(path: str | Path) -> onnx.ModelProto:
    """The model with large initializers' data left out (dims, type, name and external-data records kept).
    Raises WireError on bytes that are not an ONNX model."""
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            raise WireError("the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            parts = []
            for number, _, fs, vs, ve in _fields(buf, 0, len(buf)):
                parts.append(_length_field(number, _graph(buf, vs, ve)) if number == _MODEL_GRAPH
                             else bytes(buf[fs:ve]))
    try:
        return onnx.ModelProto.FromString(b"".join(parts))
    except Exception as err:  # protobuf's DecodeError and friends, on bytes that scan but do not parse
        raise WireError(f"not an ONNX model ({type(err).__name__}: {err})") from None


# ---- weights held aside in memory ------------------------------------------------------------------------------
HELD = "archc:held"  # the location a held tensor's external-data record names: no file, the data is in memory
_DATA_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "raw_data", "double_data", "uint64_data")


def take_weights(model: onnx.ModelProto, larger_than: int) -> dict[str, np.ndarray]:
    """Take the data of every initializer of more than `larger_than` elements out of `model`, in place, and return
    it as arrays, to `put_weights` back. Each tensor keeps its name, type and dims, marked as external data at HELD:
    ONNX's shape inference and archc's rewrites read no data there, and onnxruntime takes the arrays as external
    initializers. Whatever copies or serializes the model (shape inference, `CopyFrom`, a session made from bytes)
    then copies the graph alone: protobuf refuses a message over 2 GiB (ViT-H/14 holds 2.4 GiB of weights), and
    below that those copies were most of the time."""
    held: dict[str, np.ndarray] = {}
    for t in model.graph.initializer:
        if (t.data_location == onnx.TensorProto.EXTERNAL or t.data_type == onnx.TensorProto.STRING
                or int(np.prod(t.dims, dtype=np.int64)) <= larger_than
                or not any(t.HasField(f) if f == "raw_data" else len(getattr(t, f)) for f in _DATA_FIELDS)):
            continue  # small, still in its file, or read without its data (a skeleton)
        held[t.name] = numpy_helper.to_array(t)
        for f in _DATA_FIELDS:
            t.ClearField(f)
        t.data_location = onnx.TensorProto.EXTERNAL
        t.external_data.add(key="location", value=HELD)
    return held


def put_weights(model: onnx.ModelProto, held: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The held arrays back into `model`'s tensors of their names that are marked HELD (in place; returned)."""
    for t in model.graph.initializer:
        if t.name in held and [(e.key, e.value) for e in t.external_data] == [("location", HELD)]:
            del t.external_data[:]
            t.data_location = onnx.TensorProto.DEFAULT
            t.raw_data = np.ascontiguousarray(held[t.name]).tobytes()
    return model


MAX_WEIGHT_BYTES = 2**31 - 2**26  # one protobuf message stops at 2 GiB; room kept for the graph itself


def _stored_bytes(model: onnx.ModelProto) -> int:
    """The bytes of the initializers' data held in the model (from their dims: nothing is copied)."""
    return sum(int(np.prod(t.dims, dtype=np.int64)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
               for t in model.graph.initializer
               if t.data_location != onnx.TensorProto.EXTERNAL and t.data_type != onnx.TensorProto.STRING)


def write_model(model: onnx.ModelProto, path: Path) -> str:
    """Write `model` to `path` atomically and return the sha256 of what was written. Weights too large for one
    protobuf message go to `<path>.data` beside it (ONNX's external data, one file, in graph order; written first),
    the hash covering the model file and then the data."""
    if _stored_bytes(model) <= MAX_WEIGHT_BYTES:
        data = model.SerializeToString()
        write_bytes(path, data)
        return hashlib.sha256(data).hexdigest()
    held = take_weights(model, 256)  # tensors up to 1 KiB stay in the model file, as onnx's own save does
    try:
        external = path.with_name(path.name + ".data")
        order = [t for t in model.graph.initializer if t.name in held]
        offset = 0
        for t in order:
            del t.external_data[:]
            for key, value in (("location", external.name), ("offset", offset), ("length", held[t.name].nbytes)):
                t.external_data.add(key=key, value=str(value))
            offset += held[t.name].nbytes
        light = model.SerializeToString()
        digest = hashlib.sha256(light)
        with atomic_file(external) as f:
            for t in order:
                chunk = np.ascontiguousarray(held[t.name]).tobytes()
                digest.update(chunk)
                f.write(chunk)
        write_bytes(path, light)
        return digest.hexdigest()
    finally:
        for t in model.graph.initializer:  # marked as held again (whatever failed), for put_weights
            if t.name in held:
                del t.external_data[:]
                t.external_data.add(key="location", value=HELD)
        put_weights(model, held)
