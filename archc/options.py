"""`ModelOptions`: how to read a model, one frozen value for every stage (Black's `Mode`).

The spec expander reads the input and parameter overrides, the import search path and the network name; the
ONNX emitter reads the weights, seed and simplification switch; the ONNX front end reads the input overrides. The
CLI builds one from its flags and the Python API from keyword arguments (`archc.load(path, batch=8)`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from archc.shapes import Shape, parse_shape


@dataclass(frozen=True)
class ModelOptions:
    inputs: Mapping[str | None, Shape] = field(default_factory=dict)  # name (None: the first input) → full shape
    batch: int | None = None  # the batch alone (the full shape wins)
    params: Mapping[str, Any] = field(default_factory=dict)  # network parameters (specs only)
    include_path: tuple[str, ...] = ()  # folders searched by `import` (specs only)
    network: str | None = None  # which network of a file with several (specs only)
    weights: str | None = None  # a file of trained weights to bind (specs only)
    weights_map: str | None = None  # renames for `weights`: `source name = archc name` lines (specs only)
    seed: int = 0  # seed of the deterministic initialisation (specs only)
    simplify: bool = True  # run onnx-simplifier on a compiled spec

    def with_(self, **changes: Any) -> ModelOptions:
        return replace(self, **changes)

    @classmethod
    def make(cls, options: ModelOptions | None = None, **changes: Any) -> ModelOptions:
        """Options from keyword arguments as users write them: `input="1x3x320x320"` (or a tuple, or a mapping
        name → shape) for `inputs`, lists for tuples in `params`."""
        known = {f.name for f in fields(cls)}
        if "input" in changes:
            changes["inputs"] = _inputs(changes.pop("input"))
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown option {sorted(unknown)[0]!r}; options: {', '.join(sorted(known))}")
        if "params" in changes:
            changes["params"] = {k: _language_value(v) for k, v in (changes["params"] or {}).items()}
        if "include_path" in changes:
            changes["include_path"] = tuple(str(p) for p in changes["include_path"])
        for key in ("weights", "weights_map"):  # a Path as well as a string
            if changes.get(key) is not None:
                changes[key] = str(changes[key])
        return replace(options or cls(), **changes)


def _inputs(value: Any) -> dict[str | None, Shape]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {None: parse_shape(value)}
    if isinstance(value, tuple):
        return {None: value}
    return {k: parse_shape(v) if isinstance(v, str) else tuple(v) for k, v in value.items()}


def _language_value(v: Any) -> Any:
    """The spec language's sequences are tuples."""
    return tuple(_language_value(x) for x in v) if isinstance(v, (list, tuple)) else v
