"""The deploy package: one folder to copy to the device as it is.

    <name>.so        the compiled library, weights inside
    manifest.json    inputs and outputs (names, shapes, dtypes), the target, TVM and archc versions, the hash of
                     the ONNX it came from, how it was built
    model.onnx       the ONNX it was built from
    README.md        how to run it
    archc_runtime.py the Python loader (numpy and TVM's runtime only), and archc_manifest.py, the manifest's records
    cpp/             the C++ loader without Python: main.cc and a Makefile that builds ./run_model
    include/         the TVM FFI headers main.cc includes (from this machine's tvm_ffi wheel)
    lib/             TVM's runtime libraries for the package's target (this machine's wheels, or the aarch64 ones
                     under $ARCHC_ARM64_ROOT/site for an aarch64 package); absent, and said so in the manifest and
                     README, where none for the target are found here
    heads/           a two-stage detector's second stage (compile --detect faster_rcnn): a package of its own,
                     without cpp/, include/ and lib/ (the outer run_model runs both stages)
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tvm
import tvm_ffi
from tvm.support.cc import cross_compiler

from archc import runtime
from archc.deploy.manifest import (
    MANIFEST,
    CppLoader,
    Detection,
    Manifest,
    TargetInfo,
    TensorSpec,
    Verification,
    triple,
)
from archc.deploy.readme import readme
from archc.frontends import Model
from archc.lower import link
from archc.lower.build import Lowered, is_aarch64
from archc.lower.tvm_target import tvm_target_dict
from archc.shapes import BY_ONNX
from archc.targets import Target
from archc.util.atomic import atomic_dir
from archc.util.onnx_skeleton import write_model
from archc.version import __version__

CPP = Path(__file__).with_name("cpp")  # main.cc and its Makefile, copied into every package
_ELF_MACHINES = {62: "x86_64", 183: "aarch64"}


@dataclass
class Stage:
    """A second stage built beside the package's library (Faster R-CNN's heads): written, checked and described as
    a package of its own in the subfolder `folder`, without the C++ loader's files (the outer package's run_model
    runs both stages)."""
    model: Model
    lowered: Lowered
    folder: str
    check: Callable[[Path], Verification] | None = None


def write_package(model: Model, lowered: Lowered, out: Path,
                  check: Callable[[Path], Verification] | None = None, detection: Detection | None = None,
                  second: Stage | None = None) -> Manifest:
    """Write the package folder atomically (a failed build leaves no half-written folder); return the manifest.
    `check`: the verification of the written library (`lower.verify`), recorded in the manifest before the folder
    takes its name. `second`: a second stage, written into its subfolder first (`Stage`)."""
    with atomic_dir(out) as folder:
        if second is not None:
            note = "stage two of the package in the folder above, whose run_model runs both stages"
            (folder / second.folder).mkdir()
            _fill(second.model, second.lowered, folder / second.folder, second.check, None, cpp=note)
        return _fill(model, lowered, folder, check, detection)


def _fill(model: Model, lowered: Lowered, folder: Path, check: Callable[[Path], Verification] | None,
          detection: Detection | None, cpp: str | None = None) -> Manifest:
    """A package's files written into `folder`; `cpp`: why the C++ loader's files are left out, if they are."""
    target = lowered.target
    library = f"{model.name}.so"
    libs, libs_from, missing = _runtime_libs(target) if cpp is None else ([], None, cpp)
    headers, include_from = _headers() if cpp is None else ([], "")
    if not headers and cpp is None:
        missing = (missing + "; " if missing else "") + f"TVM's FFI headers were not found ({include_from})"
    manifest = Manifest(
        model=model.name, library=library,
        inputs=[_io(model, name, shape) for name, shape in model.inputs],
        outputs=[_io(model, name, shape) for name, shape in model.outputs],
        target=TargetInfo(target.name, target.description, target.runner, tvm_target_dict(target),
                          target.cross_compiler),
        tvm_version=tvm.__version__, archc_version=__version__,
        onnx_sha256="", source=model.source,
        # the library's parallel loops run on archc's pool where it is linked in below (link.py)
        build=replace(lowered.report, parallel_runtime=link.PARALLEL_RUNTIME if link.uses_pool(target) else "tvm"),
        cpp_loader=CppLoader(build=_make_command(target), runtime_libs=tuple(f"lib/{p.name}" for p in libs),
                             libs_from=libs_from, missing=missing), detection=detection)
    fcompile = None
    if link.uses_pool(target):  # the library's parallel loops run on archc's pool (link.py, runtime/pool.c)
        # the AMX tile request is x86's (Linux's arch_prctl); an aarch64 bf16 build's BFDOT needs none
        fcompile = link.fcompile(target.cross_compiler, tiles=lowered.report.precision == "bf16"
                                 and not is_aarch64(target))
    elif target.cross_compiler:
        fcompile = cross_compiler(target.cross_compiler)
    lowered.executable.export_library(str(folder / library), fcompile=fcompile)
    manifest.onnx_sha256 = write_model(model.proto, folder / "model.onnx")  # over 2 GiB: + model.onnx.data
    (folder / MANIFEST).write_text(manifest.dumps(), encoding="utf-8")
    if check is not None:
        manifest.verification = check(folder)
        (folder / MANIFEST).write_text(manifest.dumps(), encoding="utf-8")
    (folder / "README.md").write_text(readme(manifest), encoding="utf-8")
    if detection is not None:  # what the C++ loader decodes (the Python one reads the manifest)
        (folder / "detection.txt").write_text(detection.to_text(), encoding="utf-8")
    # the loader, standalone (numpy and TVM's runtime only): the package runs where archc is not installed
    for name, source in runtime.CARRIED.items():  # archc_runtime.py and the manifest records it reads
        shutil.copyfile(source, folder / name)
    if cpp is not None:
        return manifest
    # the loader without Python: its source, the headers it includes, the runtime libraries it links
    (folder / "cpp").mkdir()
    for name in ("main.cc", "Makefile"):
        shutil.copyfile(CPP / name, folder / "cpp" / name)
    for rel in headers:
        (folder / "include" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(include_from) / rel, folder / "include" / rel)
    if libs:
        (folder / "lib").mkdir()
        for lib in libs:
            shutil.copy(lib, folder / "lib" / lib.name)  # keeps the mode (shared libraries are executable)
    return manifest


def _arch(spec: dict[str, Any]) -> str:
    """The CPU the package's code runs on: its triple's, else this machine's."""
    machine = triple(spec).split("-")[0] or os.uname().machine
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine)


def _elf_machine(path: Path) -> str | None:
    with path.open("rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(head[18:20], "little")
    return _ELF_MACHINES.get(machine, str(machine))


def _runtime_libs(target: Target) -> tuple[list[Path], str | None, str | None]:
    """TVM's runtime libraries for the target's CPU (and GPU), where they came from, and why there are none.

    libtvm_ffi.so and libtvm_runtime.so are linked; libtvm_runtime_extra.so (sort and top-k, which CPU kernels call)
    and, for CUDA, libtvm_runtime_cuda.so register functions when run_model loads them."""
    arch, here = _arch(dict(target.tvm)), _arch({})
    versions = f"apache-tvm {tvm.__version__} and apache-tvm-ffi {tvm_ffi.__version__}"
    if arch == here:
        tvm_lib, ffi_lib = Path(tvm.__file__).parent / "lib", Path(tvm_ffi.__file__).parent / "lib"
        origin = f"this machine's {versions} wheels"
    elif arch == "aarch64":
        from archc.runtime.qemu import ROOT_VARIABLE, arm64_root
        site = arm64_root() / "site"  # where scripts/install-test-deps.sh unpacks the aarch64 wheels
        tvm_lib, ffi_lib = site / "tvm" / "lib", site / "tvm_ffi" / "lib"
        origin = f"the aarch64 {versions} wheels unpacked at {site}"
        if not tvm_lib.is_dir() or not ffi_lib.is_dir():
            return [], None, (f"TVM's aarch64 runtime libraries are not at {site} (set {ROOT_VARIABLE}, or unpack the "
                              f"aarch64 wheels of {versions} into its site/ folder)")
        for dist, want in (("apache_tvm", tvm.__version__), ("apache_tvm_ffi", tvm_ffi.__version__)):
            found = [p.name[len(dist) + 1:-len(".dist-info")] for p in site.glob(f"{dist}-*.dist-info")]
            if found and want not in found:
                return [], None, (f"the aarch64 wheels at {site} are {dist.replace('_', '-')} {found[0]}, not the "
                                  f"{want} that built the library (it loads only in that TVM)")
    else:
        return [], None, f"archc has no TVM runtime libraries for {arch} (only this machine's and aarch64's)"
    names = ["libtvm_ffi.so", "libtvm_runtime.so", "libtvm_runtime_extra.so"]
    if target.tvm.get("kind") == "cuda":
        names.append("libtvm_runtime_cuda.so")
    libs = [(ffi_lib if name == "libtvm_ffi.so" else tvm_lib) / name for name in names]
    optional = {"libtvm_runtime_extra.so"}
    absent = [p for p in libs if not p.is_file() and p.name not in optional]
    if absent:
        return [], None, f"{absent[0]} is missing (from {origin})"
    libs = [p for p in libs if p.is_file()]
    wrong = [(p, m) for p in libs if (m := _elf_machine(p)) != arch]
    if wrong:
        return [], None, f"{wrong[0][0]} is built for {wrong[0][1] or 'no known CPU'}, not for the target's {arch}"
    return libs, origin, None


_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def _headers() -> tuple[list[str], str]:
    """The headers main.cc includes, directly or not, from this machine's tvm_ffi include folder (paths relative
    to it), and that folder: a subset of it (~0.6 MB of 1.4 MB; the headers are the same for every CPU)."""
    root = Path(tvm_ffi.__file__).parent / "include"
    todo = _INCLUDE.findall((CPP / "main.cc").read_text(encoding="utf-8"))
    found: set[str] = set()
    while todo:
        rel = todo.pop()
        if rel in found or not (root / rel).is_file():
            continue  # a system header
        found.add(rel)
        todo += _INCLUDE.findall((root / rel).read_text(encoding="utf-8", errors="replace"))
    return sorted(found), str(root)


def _make_command(target: Target) -> str:
    """How to build run_model: with the C++ compiler of the target's cross compiler where it has one."""
    cc = target.cross_compiler
    if not cc:
        return "make -C cpp"
    cxx = cc[:-3] + "g++" if cc.endswith("gcc") else cc + "++" if cc.endswith("clang") else cc
    return f"make -C cpp CXX={cxx}"


def _io(model: Model, name: str, shape: tuple[int, ...]) -> TensorSpec:
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(model.proto.graph.input) +
             list(model.proto.graph.output)}
    dtype = BY_ONNX.get(types.get(name, 1))
    return TensorSpec(name, tuple(shape), dtype.name if dtype else "float32")
