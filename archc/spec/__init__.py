"""The spec language: `.arch` text → AST → IR graph with every shape inferred."""
from __future__ import annotations

from pathlib import Path

from archc.diagnostics import Collector, SpecError
from archc.ir import Graph
from archc.spec.expand import Options, expand
from archc.spec.resolve import resolve


def load_text(text: str, file: str = "<spec>", options: Options | None = None) -> Graph:
    diags = Collector()
    program = resolve(text, file, diags, (options or Options()).include_path)
    diags.raise_if_errors()
    assert program is not None
    return expand(program, options or Options(), diags)


def load(path: str | Path, options: Options | None = None) -> Graph:
    """Parse, resolve imports and expand a spec file. Raises SpecError with located diagnostics."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    return load_text(text, str(path), options)


__all__ = ["Graph", "Options", "SpecError", "load", "load_text"]
