"""The spec language: `.arch` text → AST → IR graph with every shape inferred."""
from __future__ import annotations

from pathlib import Path

from archc.diagnostics import Collector, Span, SpecError
from archc.ir import Graph
from archc.options import ModelOptions
from archc.spec import codes
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
    return load_text(read_source(path), str(path), options)


def read_source(path: Path) -> str:
    """A spec's text; a file that is not UTF-8 is a located error (which byte, where), not a crash."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        diags = Collector()
        diags.error(codes.SYNTAX, f"the file is not UTF-8 text: byte 0x{data[err.start]:02x} cannot start a "
                    "character here; save the spec as UTF-8", Span(str(path), line, col, line, col + 1))
        raise SpecError(diags.diagnostics) from None


__all__ = ["Graph", "ModelOptions", "SpecError", "load", "load_text", "signature"]
