"""The front door for models: a `.arch` spec or an ONNX file, plus one `ModelOptions`, becomes a `Model`.

Every later stage (the analyzer, the compiler back ends, the benchmarks and the CLI) is handed a `Model` and never
compiles specs or parses files itself. As in tvmc's frontend table, the file's suffix picks the frontend:

    .arch   spec → IR (every shape inferred) → ONNX (weights initialised or bound; checked; simplified)
    .onnx   any ONNX file, read as untrusted input (anything else is tried as ONNX too)

Both end the same way: input overrides applied (`--input`, `--batch`), every tensor given a static shape by ONNX
shape inference, and absurd sizes refused. With `weights=False` no weight data is read or made, since shapes are
all the analyzer needs: a spec's weights become shape-only tensors and an ONNX file's external data is not loaded.

A foreign ONNX file is untrusted: unreadable or truncated protobuf, external data that points outside the model's
folder (refused, never read), a file without nodes or inputs and absurd or symbolic shapes all end in one
`ArchcError` sentence.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
from onnx import TensorProto

from archc.errors import ArchcError, UsageError
from archc.options import ModelOptions
from archc.shape_inference import FOLD_ELEMENTS, MAX_DIM, dims_of, infer_static_shapes
from archc.shapes import Shape, numel

if TYPE_CHECKING:
    from archc.diagnostics import Diagnostic
    from archc.emit.weights import BindReport
    from archc.ir import Graph



@dataclass
class Model:
    """A loaded model: the ONNX graph with static shapes, and where it came from."""

    proto: onnx.ModelProto
    name: str  # the spec's network name, or the ONNX file's stem
    source: str  # the path it was read from
    kind: str  # "arch" or "onnx": which frontend read it
    has_weights: bool  # False: weight tensors carry shapes only (the analyzer's form)
    graph: Graph | None = None  # the spec's IR (layers, spans, blocks); None for ONNX files
    warnings: list[Diagnostic] = field(default_factory=list)  # located spec warnings (an empty group, …)
    notices: list[str] = field(default_factory=list)  # what reading the file assumed or could not tell
    binding: BindReport | None = None  # how a spec's weights were bound from a file (None: initialised)

    @property
    def inputs(self) -> list[tuple[str, Shape]]:
        stored = {t.name for t in self.proto.graph.initializer}
        return [(vi.name, _static(vi)) for vi in self.proto.graph.input if vi.name not in stored]

    @property
    def outputs(self) -> list[tuple[str, Shape]]:
        return [(vi.name, _static(vi)) for vi in self.proto.graph.output]

    @property
    def layer_count(self) -> int:
        """Spec layers for a spec (one `conv` may be several ONNX nodes), ONNX nodes otherwise."""
        return len(self.graph.nodes) if self.graph is not None else len(self.proto.graph.node)

    @property
    def params(self) -> int | None:
        """Trainable parameters of a spec; None for an ONNX file, whose weights only the analyzer can tell apart."""
        return self.graph.num_params if self.graph is not None else None

    def warning_lines(self) -> list[str]:
        return [f"{w.span}: {w.message}  [{w.code}]" if w.span else w.message for w in self.warnings] + self.notices


def load(path: str | Path, options: ModelOptions | None = None, *, weights: bool = True) -> Model:
    """Read a spec or an ONNX file into a `Model` whose every tensor has a static shape."""
    options = options or ModelOptions()
    path = Path(path)
    if not path.is_file():
        what = "spec file" if path.suffix == ".arch" else "model file"
        raise ArchcError(f"{what} '{path}' does not exist" if not path.is_dir() else
                         f"'{path}' is a folder; give a .arch spec or an .onnx model", code="no-file")
    return frontend_for(path)(path, options, weights)


def frontend_for(path: Path) -> Callable[[Path, ModelOptions, bool], Model]:
    return FRONTENDS.get(path.suffix.lower(), _from_onnx)


# ---- .arch -----------------------------------------------------------------------------------------------------
def _from_spec(path: Path, options: ModelOptions, weights: bool) -> Model:
    from archc import spec
    from archc.emit import build_model, to_onnx, weights_and_report
    graph = spec.load(path, options)  # applies the input overrides while expanding
    _check_input_names([v.name for v in graph.inputs], options, path)
    if not weights:  # to_onnx checks the model and infers every shape itself; the shape-only form needs it here
        proto = infer_static_shapes(build_model(graph, None), path)[0]
        return Model(proto, graph.name, str(path), "arch", False, graph, list(graph.warnings))
    values, binding = weights_and_report(graph, options)
    return Model(to_onnx(graph, options, values), graph.name, str(path), "arch", True, graph, list(graph.warnings),
                 binding=binding)


# ---- .onnx -----------------------------------------------------------------------------------------------------
def _from_onnx(path: Path, options: ModelOptions, weights: bool) -> Model:
    from archc.util.onnx_skeleton import load_skeleton
    try:  # without weights, the weights' bytes are never read (the analyzer needs shapes only)
        proto = onnx.load(str(path), load_external_data=False) if weights else load_skeleton(path)
    except Exception as err:  # protobuf raises DecodeError, RuntimeWarning, ValueError … on bad bytes
        hint = "" if path.suffix.lower() == ".onnx" else " (archc reads .arch specs and .onnx models)"
        raise ArchcError(f"'{path}' is not a readable ONNX model (truncated or corrupt?){hint}: "
                         f"{type(err).__name__}: {err}", code="bad-onnx") from None
    if not proto.graph.node:
        raise ArchcError(f"'{path}' holds no graph nodes: is it an ONNX model?", code="bad-onnx")
    external = _check_external_data(proto, path)
    if weights and external:  # the small tensors first: shape computations read them
        _read_external_data(proto, path, FOLD_ELEMENTS)
    symbols, notices = _set_input_shapes(proto, path, options)
    proto, more = infer_static_shapes(proto, path, symbols)
    if weights and external:  # the weights after inference, which needs none of them (and copies the model)
        _read_external_data(proto, path)
    return Model(proto, path.stem, str(path), "onnx", weights, notices=notices + more)


def _read_external_data(proto: onnx.ModelProto, path: Path, at_most: int | None = None) -> None:
    """Read the external data of the model's tensors (of at most `at_most` elements) into them."""
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data
    try:
        for t in _tensors(proto):
            if uses_external_data(t) and (at_most is None or (numel(t.dims) or 0) <= at_most):
                load_external_data_for_tensor(t, str(path.resolve().parent))
    except Exception as err:
        raise ArchcError(f"cannot read the external data of '{path}': {err}", code="bad-onnx") from None


def _tensors(proto: onnx.ModelProto) -> Iterator[TensorProto]:
    """The initializers, and the tensors in the nodes' attributes (a `Constant`'s value), of the main graph."""
    yield from proto.graph.initializer
    for node in proto.graph.node:
        for a in node.attribute:
            yield from ([a.t] if a.HasField("t") else [])
            yield from a.tensors


def _check_external_data(proto: onnx.ModelProto, path: Path) -> bool:
    """True if some tensor keeps its data in another file; refuse any that points outside the model's folder."""
    folder = path.resolve().parent
    found = False
    for t in _tensors(proto):
        if t.data_location == TensorProto.EXTERNAL:
            found = True
            location = next((e.value for e in t.external_data if e.key == "location"), "")
            target = (folder / location).resolve()
            if os.path.isabs(location) or folder not in target.parents:
                raise ArchcError(f"'{path}': tensor '{t.name}' keeps its data at '{location}', outside the model's "
                                 "folder; refusing to follow it (move the data next to the model)", code="unsafe-onnx")
    return found


FRONTENDS: dict[str, Callable[[Path, ModelOptions, bool], Model]] = {".arch": _from_spec, ".onnx": _from_onnx}


# ---- static shapes ---------------------------------------------------------------------------------------------
def _static(vi: onnx.ValueInfoProto) -> Shape:
    return tuple(d if isinstance(d, int) else 0 for d in dims_of(vi))


def _check_input_names(names: list[str], options: ModelOptions, path: Path) -> None:
    """An --input override must name an input: a misspelled one would otherwise be ignored in silence."""
    unknown = [n for n in options.inputs if n is not None and n not in names]
    if unknown:
        raise UsageError(f"--input names '{unknown[0]}', which is not an input of '{path}'; its inputs: "
                         + ", ".join(names), code="bad-input")


def _set_input_shapes(proto: onnx.ModelProto, path: Path, options: ModelOptions) -> tuple[dict[str, int], list[str]]:
    """Fix the batch (symbolic → 1, or --batch N) and any --input override; other symbolic sizes need --input.
    Returns the symbolic sizes fixed (name → value, to read the file's own recorded shapes) and notices."""
    initializers = {t.name for t in proto.graph.initializer}
    real_inputs = [i for i in proto.graph.input if i.name not in initializers]
    if not real_inputs:
        raise ArchcError(f"'{path}' has no graph inputs", code="bad-onnx")
    _check_input_names([vi.name for vi in real_inputs], options, path)
    symbols: dict[str, int] = {}
    notices: list[str] = []
    for k, vi in enumerate(real_inputs):
        override = options.inputs.get(vi.name) or (options.inputs.get(None) if k == 0 else None)
        dims = dims_of(vi)
        if not vi.type.tensor_type.HasField("shape"):
            raise ArchcError(f"input '{vi.name}' of '{path}' has no shape; give one with --input {vi.name}=1x3x224x224",
                             code="needs-shape")
        written = list(dims)
        if override is not None:
            if len(override) != len(dims):
                raise ArchcError(f"--input gives {len(override)} dimensions but input '{vi.name}' has {len(dims)}",
                                 code="bad-input")
            dims = list(override)
        elif dims:
            if options.batch is not None:
                dims[0] = options.batch
            elif not isinstance(dims[0], int) or dims[0] == 0:
                dims[0] = 1
                notices.append(f"input '{vi.name}' has a symbolic batch '{written[0] or '?'}': analyzed with batch 1 "
                               "(--batch N for another)")
        for i, d in enumerate(dims):
            if not isinstance(d, int) or d <= 0:
                raise ArchcError(f"input '{vi.name}' of '{path}' has a symbolic size '{d}' on axis {i}; give the "
                                 f"full shape with --input {vi.name}=" + "x".join(
                                     str(x) if isinstance(x, int) and x > 0 else "N" for x in dims), code="needs-shape")
            if d >= MAX_DIM:
                raise ArchcError(f"input '{vi.name}' of '{path}' has an absurd size {d} on axis {i}", code="bad-shape")
            symbol = written[i]
            if isinstance(symbol, str):
                symbols[symbol] = d
        for dim, value in zip(vi.type.tensor_type.shape.dim, dims, strict=True):
            dim.Clear()
            dim.dim_value = value
    return symbols, notices
