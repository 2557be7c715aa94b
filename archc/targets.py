"""Named compile targets as data: one TOML file per target in `targets/` (installed as the package data
`archc.target_defs`), read here and nowhere else. A user adds a target by dropping a file into a folder on
`ARCHC_TARGETS` (or passing its path), without touching code. A file says:

    description = "portable x86-64 with AVX2 and FMA"    # one line for `archc targets`
    backend = "tvm"                                      # onnx | tvm: which back end builds it
    runner = "local"                                     # local | qemu | rpc: where its libraries run (tvm)
    cross_compiler = "aarch64-linux-gnu-gcc"             # optional: the C compiler that links its libraries
    detect = ["mcpu", "num-cores"]                       # optional: filled in from this machine when compiling
    precision = "auto"                                   # optional: the default --precision (fp32 | bf16 | auto)
    [tvm]                                                # the TVM target as a dict (JSON-style, TVM 0.27)
    kind = "llvm"
    mtriple = "x86_64-linux-gnu"
    mcpu = "haswell"

The `onnx` back end writes an ONNX file; the `tvm` one a deploy package through Apache TVM (`archc/lower/`), which
needs the `tvm` extra installed.
"""
from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from archc.errors import ArchcError, UsageError

BACKENDS = ("onnx", "tvm")
RUNNERS = ("local", "qemu", "rpc")
DETECTABLE = ("mcpu", "num-cores")
PRECISIONS = ("fp32", "bf16", "int8", "auto")  # a library's arithmetic (archc.lower.build.choose_precision)
_KEYS = {"description", "backend", "runner", "cross_compiler", "detect", "precision", "tvm"}


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    backend: str
    source: str  # the file it was read from
    runner: str = "local"
    tvm: Mapping[str, Any] = field(default_factory=dict)
    cross_compiler: str | None = None
    detect: tuple[str, ...] = ()
    precision: str = "fp32"  # the default --precision of compile, tune and bench


def parse(name: str, text: str, source: str) -> Target:
    """One target file → a `Target`; anything malformed is one sentence naming the file and the key."""
    def bad(message: str) -> ArchcError:
        return ArchcError(f"target file '{source}': {message}", code="bad-target")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise bad(f"not valid TOML ({err})") from None
    unknown = set(data) - _KEYS
    if unknown:
        raise bad(f"unknown key '{sorted(unknown)[0]}'; keys: {', '.join(sorted(_KEYS))}")
    description, backend = data.get("description"), data.get("backend")
    if not isinstance(description, str) or not description.strip():
        raise bad("needs a one-line `description`")
    if backend not in BACKENDS:
        raise bad(f"`backend` must be one of {', '.join(BACKENDS)}, got {backend!r}")
    runner = data.get("runner", "local")
    if runner not in RUNNERS:
        raise bad(f"`runner` must be one of {', '.join(RUNNERS)}, got {runner!r}")
    tvm = data.get("tvm", {})
    if backend == "tvm" and (not isinstance(tvm, dict) or not isinstance(tvm.get("kind"), str)):
        raise bad("a tvm target needs a [tvm] table with at least `kind` (llvm, cuda, …)")
    if backend != "tvm" and tvm:
        raise bad(f"a [tvm] table makes no sense for the {backend} back end")
    detect = data.get("detect", [])
    if not isinstance(detect, list) or any(d not in DETECTABLE for d in detect):
        raise bad(f"`detect` lists what is read from this machine: some of {', '.join(DETECTABLE)}")
    cross = data.get("cross_compiler")
    if cross is not None and (not isinstance(cross, str) or not cross):
        raise bad("`cross_compiler` must be a program name, e.g. aarch64-linux-gnu-gcc")
    precision = data.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise bad(f"`precision` must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if backend != "tvm" and precision != "fp32":
        raise bad(f"`precision` chooses a library's kernels; the {backend} back end has none")
    return Target(name, description.strip(), backend, source, runner, tvm, cross, tuple(detect), precision)


def _files() -> dict[str, tuple[str, str]]:
    """name → (text, source) of every target file: the shipped ones, then folders on ARCHC_TARGETS (later wins)."""
    found: dict[str, tuple[str, str]] = {}
    shipped = resources.files("archc.target_defs")
    for entry in sorted(shipped.iterdir(), key=lambda e: e.name.removesuffix(".toml")):
        if entry.name.endswith(".toml"):
            found[entry.name[:-5]] = (entry.read_text(encoding="utf-8"), f"targets/{entry.name}")
    for folder in filter(None, os.environ.get("ARCHC_TARGETS", "").split(os.pathsep)):
        for path in sorted(Path(folder).glob("*.toml")):
            found[path.stem] = (_read(path), str(path))
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ArchcError(f"cannot read target file '{path}': {err}", code="bad-target") from None


def all_targets() -> list[Target]:
    return [parse(name, text, source) for name, (text, source) in _files().items()]


def get(name_or_path: str) -> Target:
    """A target by name, or by the path of a `.toml` file; an unknown name lists the closest known ones."""
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        if not path.is_file():
            raise UsageError(f"target file '{path}' does not exist", code="no-file")
        return parse(path.stem, _read(path), str(path))
    files = _files()
    if name_or_path not in files:
        close = difflib.get_close_matches(name_or_path, list(files), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise UsageError(f"unknown target '{name_or_path}'; {hint}known targets: {', '.join(sorted(files))} "
                         "(`archc targets` describes them)", code="unknown-target")
    text, source = files[name_or_path]
    return parse(name_or_path, text, source)
