"""Source-located diagnostics: spans, collected errors, and mypy-style rendering.

A `Span` is made once, when the parse tree becomes the AST (`spec/to_ast.py`); every later stage carries it so
that an error found while inferring shapes can still point at the line the user wrote.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Span:
    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    code: str
    message: str
    span: Span | None
    notes: tuple[Diagnostic, ...] = ()


class SpecError(Exception):
    """Raised when a stage ends with errors; carries every diagnostic found so far."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.message for d in diagnostics))


@dataclass
class Collector:
    """Checks append here and keep going, so one run reports every problem it can."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, span: Span | None, notes: tuple[Diagnostic, ...] = ()) -> None:
        self.diagnostics.append(Diagnostic(Severity.ERROR, code, message, span, notes))

    def warning(self, code: str, message: str, span: Span | None) -> None:
        self.diagnostics.append(Diagnostic(Severity.WARNING, code, message, span))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity is Severity.ERROR]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise SpecError(self.diagnostics)


def note(message: str, span: Span | None) -> Diagnostic:
    return Diagnostic(Severity.NOTE, "", message, span)


def _source_line(span: Span, sources: dict[str, str]) -> str | None:
    text = sources.get(span.file)
    if text is None:
        try:
            text = Path(span.file).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        sources[span.file] = text
    lines = text.splitlines()
    return lines[span.line - 1] if 0 < span.line <= len(lines) else None


def render(diag: Diagnostic, sources: dict[str, str] | None = None) -> str:
    """`file:line:col: error: message [code]`, the source line, and `^~~~` under the span."""
    sources = {} if sources is None else sources
    where = f"{diag.span}: " if diag.span else ""
    code = f"  [{diag.code}]" if diag.code else ""
    out = [f"{where}{diag.severity.value}: {diag.message}{code}"]
    if diag.span:
        line = _source_line(diag.span, sources)
        if line is not None:
            start = diag.span.col - 1
            if diag.span.end_line == diag.span.line:
                width = diag.span.end_col - diag.span.col
            else:  # a span over several lines (a merge and its branches): mark its first word
                word = re.match(r"[\w@/]*", line[start:])
                width = len(word.group()) if word else 1
            out.append(f"    {line}")
            out.append("    " + " " * start + "^" + "~" * max(0, width - 1))
    for n in diag.notes:
        out.append(render(n, sources))
    return "\n".join(out)
