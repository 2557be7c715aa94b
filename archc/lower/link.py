"""Linking archc's CPU runtime (archc/runtime/pool.c, its thread pool; workspace.c, its kernels' scratch buffers)
into every library archc exports.

A library that TVM exports reaches its thread pool through two weak function pointers the library defines,
`__TVMBackendParallelLaunch` and `__TVMBackendParallelBarrier`, which libtvm_runtime's module loader fills after
dlopen with its own pool. `fcompile` (for `export_library(path, fcompile=...)`) renames them, in each object TVM
hands it, to `__archc_parallel_launch` / `__archc_parallel_barrier` with objcopy, and links pool.c into the same
library, where they are defined (hidden) and point at archc's pool: the loader does not know those names and cannot
overwrite them, so every way of loading the library (archc's Python loader, the C++ loader run_model,
`tvm.runtime.load_module`) runs its parallel loops on archc's pool, without LD_PRELOAD. Two archc libraries in one
process each have their own pool (pool.c's symbols are hidden; see its header for why, and for what the pool does).
The kernels' `__TVMBackendAllocWorkspace` / `__TVMBackendFreeWorkspace` are renamed the same way, to workspace.c's
per-thread arena (its header says why: TVM's pool cost MobileNet v2 9.5% of its run).

CUDA targets get the same treatment: their host code is an x86-64 object like a CPU library's (GPU kernels never
call the pool; a host-side parallel loop would).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tvm.support import cc as tvm_cc

from archc.errors import ArchcError
from archc.targets import Target

POOL_SOURCE = Path(__file__).resolve().parents[1] / "runtime" / "pool.c"
WORKSPACE_SOURCE = POOL_SOURCE.with_name("workspace.c")
TILES_SOURCE = POOL_SOURCE.with_name("tiles.c")  # a bf16 build's request for the AMX tile state
RENAMES = {"__TVMBackendParallelLaunch": "__archc_parallel_launch",
           "__TVMBackendParallelBarrier": "__archc_parallel_barrier",
           "__TVMBackendAllocWorkspace": "__archc_alloc_workspace",
           "__TVMBackendFreeWorkspace": "__archc_free_workspace"}
POOL_FLAGS = ["-O2", "-fPIC", "-fvisibility=hidden", "-pthread"]
PARALLEL_RUNTIME = "archc"  # the manifest's build.parallel_runtime for a library linked with the pool
_COMPILER = re.compile(r"(?:g\+\+|gcc|c\+\+|cc|clang\+\+|clang)(?:-[0-9.]+)?$")
_OBJECTS: dict[tuple[str, str], bytes] = {}  # (compiler, source hash) → its .o: each compiled once per process


def uses_pool(target: Target) -> bool:
    """Whether the target's libraries get archc's pool: every TVM target whose host code is an LLVM CPU object."""
    return target.tvm.get("kind") in ("llvm", "cuda")


def fcompile(compiler: str | None = None, tiles: bool = False) -> Callable[..., Any]:
    """An `fcompile` for `export_library` that links archc's pool into the library: `compiler` is a cross compiler
    (`aarch64-linux-gnu-gcc`), or None for this machine's (TVM's choice: $CXX, else g++, gcc, …). `tiles`: also
    runtime/tiles.c, which asks Linux for the AMX tile state when the library loads (a bf16 build's)."""

    def _fcompile(output: str, objects: list[str] | str, options: list[str] | None = None, **kwargs: Any) -> Any:
        cc = kwargs.pop("cc", None) or compiler or tvm_cc.get_cc()
        if not cc:
            raise ArchcError("linking a library needs a C compiler (g++ or gcc), and none was found: "
                             "apt-get install g++", code="no-compiler")
        objcopy = objcopy_for(cc)
        with tempfile.TemporaryDirectory(prefix="archc-link-") as work:
            inputs = [objects] if isinstance(objects, str) else list(objects)
            linked = [_renamed(objcopy, obj, Path(work) / f"{n}-{Path(obj).name}") if obj.endswith(".o") else obj
                      for n, obj in enumerate(inputs)]
            linked += [_object(cc, source, Path(work)) for source in (POOL_SOURCE, WORKSPACE_SOURCE)]
            if tiles:
                linked.append(_object(cc, TILES_SOURCE, Path(work)))
            return tvm_cc.create_shared(output, linked, options=[*(options or []), "-pthread"], cc=cc, **kwargs)

    _fcompile.output_format = "so"  # type: ignore[attr-defined]  # what export_library reads off an fcompile
    _fcompile.get_target_triple = tvm_cc.get_target_by_dump_machine(  # type: ignore[attr-defined]
        compiler or tvm_cc.get_cc())
    return _fcompile


def objcopy_for(compiler: str) -> str:
    """The objcopy that matches a compiler: `aarch64-linux-gnu-objcopy` for `aarch64-linux-gnu-gcc`, from the same
    folder when the compiler is a path; else one sentence saying which package brings it."""
    folder, name = os.path.split(compiler)
    match = _COMPILER.search(name)
    prefix = name[:match.start()] if match else ""
    candidates = ([os.path.join(folder, prefix + "objcopy")] if folder else []) + [prefix + "objcopy"]
    if not prefix:
        candidates.append("llvm-objcopy")
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    package = f"binutils-{prefix.rstrip('-')}" if prefix else "binutils"
    raise ArchcError(f"linking archc's parallel runtime into a library needs {prefix}objcopy, which is not "
                     f"installed (Debian/Ubuntu: apt-get install {package})", code="no-objcopy")


def _run(cmd: list[str], failure: str) -> None:
    """Run a tool; if it fails, one sentence: `failure` and the tool's own words."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        why = " ".join((proc.stderr or proc.stdout).split())[:300] or f"exit status {proc.returncode}"
        raise ArchcError(f"{failure} ({why})", code="link-failed")


def _renamed(objcopy: str, obj: str, out: Path) -> str:
    _run([objcopy, *(f"--redefine-sym={old}={new}" for old, new in RENAMES.items()), obj, str(out)],
         f"{Path(objcopy).name} could not rewrite the kernels' object {Path(obj).name}")
    return str(out)


def _object(cc: str, source_path: Path, work: Path) -> str:
    """A runtime file (pool.c, workspace.c, tiles.c) compiled with the library's compiler (as C++ by g++, as C by
    gcc: each is valid as both)."""
    if not source_path.is_file():
        raise ArchcError(f"archc's runtime file {source_path} is missing from this installation; reinstall archc",
                         code="broken-install")
    source = source_path.read_bytes()
    key = (cc, hashlib.sha256(source).hexdigest())
    out = work / f"archc_{source_path.stem}.o"
    if key not in _OBJECTS:
        _run([cc, "-c", *POOL_FLAGS, "-o", str(out), str(source_path)],
             f"{cc} could not compile archc's runtime file {source_path}")
        _OBJECTS[key] = out.read_bytes()
    else:
        out.write_bytes(_OBJECTS[key])
    return str(out)
