"""archc: an ONNX graph compiler and CNN architecture analyzer.

Python API (mirrors the CLI):

    spec = archc.load_spec("specs/resnet50.arch", input="1x3x320x320")
    model = spec.to_onnx()                # onnx.ModelProto, checked and simplified
    spec.save("resnet50.onnx")
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__version__ = "0.1.0"


def parse_shape(text: str) -> tuple[int, ...]:
    """'1x3x224x224' (or with ×, commas) → (1, 3, 224, 224)."""
    from archc.errors import UsageError
    parts = text.replace("×", "x").replace(",", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"cannot read shape '{text}'; write it like 1x3x224x224") from None
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"shape '{text}' must have positive dimensions")
    return dims


@dataclass
class Spec:
    """A loaded spec: its IR graph (every layer, shape and weight) and how to turn it into ONNX."""

    path: Path
    graph: Any  # archc.ir.Graph

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def num_params(self) -> int:
        return self.graph.num_params

    def to_onnx(self, *, simplify: bool = True, weights: str | None = None, seed: int = 0):
        from archc.emit import EmitOptions, to_onnx
        return to_onnx(self.graph, EmitOptions(simplify=simplify, seed=seed, weights=weights))

    def save(self, out: str | Path, **kwargs) -> Path:
        from archc.util.atomic import write_bytes
        model = self.to_onnx(**kwargs)
        write_bytes(out, model.SerializeToString())
        return Path(out)


def load_spec(path: str | Path, *, input: str | tuple[int, ...] | Mapping[str, Any] | None = None,
              batch: int | None = None, params: Mapping[str, Any] | None = None,
              include_path: tuple[str, ...] = (), network: str | None = None) -> Spec:
    """Parse a `.arch` file and infer every shape. Raises `archc.SpecError` (located diagnostics) on bad input."""
    from archc import spec as spec_mod
    from archc.errors import ArchcError
    inputs: dict[str | None, tuple[int, ...]] = {}
    if isinstance(input, str):
        inputs[None] = parse_shape(input)
    elif isinstance(input, tuple):
        inputs[None] = input
    elif input:
        inputs = {k: parse_shape(v) if isinstance(v, str) else tuple(v) for k, v in input.items()}
    path = Path(path)
    if not path.is_file():
        raise ArchcError(f"spec file '{path}' does not exist")
    def language_value(v):  # the language's sequences are tuples
        return tuple(language_value(x) for x in v) if isinstance(v, (list, tuple)) else v
    params = {k: language_value(v) for k, v in (params or {}).items()}
    options = spec_mod.Options(inputs=inputs, batch=batch, params=params,
                               include_path=tuple(include_path), network=network)
    return Spec(path, spec_mod.load(path, options))


from archc.diagnostics import SpecError  # noqa: E402
from archc.errors import ArchcError  # noqa: E402

__all__ = ["ArchcError", "Spec", "SpecError", "load_spec", "parse_shape", "__version__"]
