"""Imports: find, parse and link every file a spec imports, collecting the blocks they define.

`import "lib/resnet.arch"` resolves against the importing file's folder, then the root spec's folder, then the
configured search path (`--include-path`, `ARCHC_PATH`). A resolved file must lie inside one of those folders, so
a spec cannot read arbitrary files; cycles are reported with the whole chain.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from archc.diagnostics import Collector, Span, note
from archc.spec import ast, codes
from archc.spec.parser import parse


@dataclass
class Program:
    root: ast.Module
    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


def search_path(extra: list[str] | tuple[str, ...] = ()) -> list[Path]:
    env = [p for p in os.environ.get("ARCHC_PATH", "").split(os.pathsep) if p]
    return [Path(p).resolve() for p in (*extra, *env)]


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def resolve(text: str, file: str, diags: Collector, include_path: list[str] | tuple[str, ...] = ()) -> Program | None:
    root_dir = Path(file).resolve().parent
    roots = [root_dir, *search_path(include_path)]
    program = Program(ast.Module(file))
    program.sources[file] = text
    done: set[Path] = set()

    def visit(text: str, file: str, stack: list[tuple[Path, Span | None]]) -> ast.Module | None:
        module = parse(text, file, diags)
        if module is None:
            return None
        for block in module.blocks:
            if block.name in program.blocks:
                prev = program.blocks[block.name]
                diags.error(codes.DUPLICATE, f"block '{block.name}' is defined twice", block.span,
                            (note("first defined here", prev.span),))
            else:
                program.blocks[block.name] = block
        here = Path(file).resolve().parent
        for imp in module.imports:
            target = _find(imp, here)
            if target is None:
                continue
            chain = [p for p, _ in stack]
            if target in chain:
                cycle = " → ".join(p.name for p in chain[chain.index(target):] + [target])
                diags.error(codes.IMPORT_CYCLE, f"import cycle: {cycle}", imp.span)
                continue
            if target in done:
                continue
            done.add(target)
            try:
                sub_text = target.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                diags.error(codes.IMPORT, f"cannot read '{imp.path}': {err}", imp.span)
                continue
            shown = os.path.relpath(target) if not os.path.isabs(file) else str(target)
            program.sources[shown] = sub_text
            visit(sub_text, shown, stack + [(target, imp.span)])
        return module

    def _find(imp: ast.Import, here: Path) -> Path | None:
        if not imp.path.endswith(".arch"):
            diags.error(codes.IMPORT, f"can only import .arch files, not '{imp.path}'", imp.span)
            return None
        if os.path.isabs(imp.path):
            diags.error(codes.IMPORT, "imports must be relative paths (to the spec's folder or the search path)",
                        imp.span)
            return None
        for base in [here, *roots]:
            cand = (base / imp.path).resolve()
            if not _inside(cand, roots):
                continue
            if cand.is_file():
                return cand
        outside = all(not _inside((b / imp.path).resolve(), roots) for b in [here, *roots])
        if outside:
            diags.error(codes.IMPORT, f"'{imp.path}' points outside the spec's folder and the search path",
                        imp.span)
        else:
            diags.error(codes.IMPORT, f"cannot find '{imp.path}' next to this file, next to the root spec or on "
                        "the search path (add folders with -I/--include-path or ARCHC_PATH)", imp.span)
        return None

    root_path = Path(file).resolve()
    done.add(root_path)
    module = visit(text, file, [(root_path, None)])
    if module is None:
        return None
    program.root = module
    return program
