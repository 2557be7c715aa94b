"""The spec language: `.arch` text → AST → IR graph with every shape inferred."""
from __future__ import annotations

from pathlib import Path

from archc.diagnostics import Collector, SpecError
from archc.ir import Graph
from archc.options import ModelOptions
from archc.spec.bind import signature
from archc.spec.expand import expand
from archc.spec.resolve import resolve


def load_text(text: str, file: str = "<spec>", options: ModelOptions | None = None) -> Graph:
    options = options or ModelOptions()
    diags = Collector()
    program = resolve(text, file, diags, options.include_path)
    diags.raise_if_errors()
    assert program is not None
    return expand(program, options, diags)


def load(path: str | Path, options: ModelOptions | None = None) -> Graph:
    """Parse, resolve imports and expand a spec file. Raises SpecError with located diagnostics."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    return load_text(text, str(path), options)


__all__ = ["Graph", "ModelOptions", "SpecError", "load", "load_text", "signature"]
