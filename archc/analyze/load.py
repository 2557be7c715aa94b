"""Read what the analyzer analyzes: an archc spec (compiled in memory, weights left out) or any ONNX file.

A foreign ONNX file is untrusted input. Everything that can go wrong with it ends in one ArchcError sentence:
unreadable or truncated protobuf, external data that points outside the model's folder (never read: the
analyzer needs shapes only, so external data is not loaded at all), a graph with cycles or dangling inputs, and
absurd or unknown shapes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import TensorProto

from archc.errors import ArchcError

MAX_DIM = 1 << 31
MAX_ELEMENTS = 1 << 40


@dataclass(frozen=True)
class LoadOptions:
    batch: int | None = None
    inputs: dict = field(default_factory=dict)  # name (or None for the first) → full shape
    params: dict = field(default_factory=dict)  # spec network parameters
    include_path: tuple[str, ...] = ()


def load(path: str | Path, options: LoadOptions = LoadOptions()) -> tuple[onnx.ModelProto, str]:
    """Returns a model whose every tensor has a static shape, and the model's display name."""
    path = Path(path)
    if not path.is_file():
        raise ArchcError(f"'{path}' does not exist")
    if path.suffix == ".arch":
        model, name = _from_spec(path, options)
    else:
        model, name = _from_onnx(path), path.stem
    _set_input_shapes(model, path, options)
    return _infer_shapes(model, path), name


def _from_spec(path: Path, options: LoadOptions) -> tuple[onnx.ModelProto, str]:
    import archc
    from archc.emit.onnx_model import build_model
    spec = archc.load_spec(path, input=options.inputs or None, batch=options.batch, params=options.params,
                           include_path=options.include_path)
    model = build_model(spec.graph, None)
    for w in spec.graph.warnings:  # carried to the analysis's warnings with their location
        model.metadata_props.add(key="archc.warning", value=f"{w.span}: {w.message}  [{w.code}]")
    return model, spec.name


def _from_onnx(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError, RuntimeWarning, ValueError … on bad bytes
        raise ArchcError(f"'{path}' is not a readable ONNX model (truncated or corrupt?): "
                         f"{type(err).__name__}: {err}") from None
    if not model.graph.node:
        raise ArchcError(f"'{path}' holds no graph nodes: is it an ONNX model?")
    folder = path.resolve().parent
    for t in model.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            location = next((e.value for e in t.external_data if e.key == "location"), "")
            target = (folder / location).resolve()
            if os.path.isabs(location) or folder not in target.parents:
                raise ArchcError(f"'{path}': tensor '{t.name}' keeps its data at '{location}', outside the model's "
                                 "folder; refusing to follow it (move the data next to the model)")
    return model


def _dims(vi) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in vi.type.tensor_type.shape.dim]


def _set_input_shapes(model: onnx.ModelProto, path: Path, options: LoadOptions) -> None:
    """Fix the batch (symbolic → 1, or --batch N) and any --input override; other symbolic sizes need --input."""
    initializers = {t.name for t in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in initializers]
    if not real_inputs:
        raise ArchcError(f"'{path}' has no graph inputs")
    for k, vi in enumerate(real_inputs):
        override = options.inputs.get(vi.name) or (options.inputs.get(None) if k == 0 else None)
        dims = _dims(vi)
        if not vi.type.tensor_type.HasField("shape"):
            raise ArchcError(f"input '{vi.name}' of '{path}' has no shape; give one with --input {vi.name}=1x3x224x224")
        if override is not None and path.suffix != ".arch":
            if len(override) != len(dims):
                raise ArchcError(f"--input gives {len(override)} dimensions but input '{vi.name}' has {len(dims)}")
            dims = list(override)
        elif dims and path.suffix != ".arch":
            if options.batch is not None:
                dims[0] = options.batch
            elif not isinstance(dims[0], int) or dims[0] == 0:
                dims[0] = 1
        for i, d in enumerate(dims):
            if not isinstance(d, int) or d <= 0:
                raise ArchcError(f"input '{vi.name}' of '{path}' has a symbolic size '{d}' on axis {i}; give the "
                                 f"full shape with --input {vi.name}=" + "x".join(
                                     str(x) if isinstance(x, int) and x > 0 else "N" for x in dims))
            if d >= MAX_DIM:
                raise ArchcError(f"input '{vi.name}' of '{path}' has an absurd size {d} on axis {i}")
        shape = vi.type.tensor_type.shape
        for d, value in zip(shape.dim, dims):
            d.Clear()
            d.dim_value = value


def _infer_shapes(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    del model.graph.value_info[:]  # stale shapes from the file must not survive a batch change
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as err:
        raise ArchcError(f"ONNX shape inference failed on '{path}': {err}") from None
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = _dims(vi)
        if any(isinstance(d, int) and d >= MAX_DIM for d in dims):
            raise ArchcError(f"'{path}': tensor '{vi.name}' has an absurd shape {dims}")
        n = 1
        for d in dims:
            n *= d if isinstance(d, int) else 1
        if n > MAX_ELEMENTS:
            raise ArchcError(f"'{path}': tensor '{vi.name}' would hold {n:.3g} elements; the shapes are absurd")
    return inferred
