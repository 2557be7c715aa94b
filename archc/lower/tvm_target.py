"""An archc `Target` (targets/*.toml) → the `tvm.target.Target` to compile for, detecting what `detect` asks."""
from __future__ import annotations

import shutil
from typing import Any

import tvm
from tvm.target import codegen

from archc.errors import ArchcError
from archc.targets import Target
from archc.util.machine import cpus


def tvm_target_dict(target: Target) -> dict[str, Any]:
    """The target's TVM dict with detected fields filled in (this machine's CPU for `native`)."""
    spec = dict(target.tvm)
    if "mcpu" in target.detect:
        spec["mcpu"] = codegen.llvm_get_system_cpu()  # what LLVM sees here, never a hard-coded name
    if "num-cores" in target.detect:
        spec["num-cores"] = cpus()
    return spec


def tvm_target(target: Target) -> Any:
    spec = tvm_target_dict(target)
    try:
        return tvm.target.Target(spec)
    except Exception as err:
        raise ArchcError(f"target '{target.name}' ({target.source}) is not a valid TVM target: {err}",
                         code="bad-target") from None


def check_toolchain(target: Target) -> None:
    """What building for the target needs on this machine, each missing piece one sentence that says what to do."""
    if target.cross_compiler and shutil.which(target.cross_compiler) is None:
        raise ArchcError(f"compiling for '{target.name}' needs the cross compiler {target.cross_compiler}, which is "
                         "not installed (Debian/Ubuntu: apt-get install gcc-aarch64-linux-gnu)",
                         code="no-cross-compiler")
    if target.tvm.get("kind") == "cuda" and shutil.which("nvcc") is None:
        raise ArchcError(f"compiling for '{target.name}' needs CUDA's nvcc, which is not on PATH: "
                         "pip install -e '.[cuda]' (the nvidia-cuda-nvcc wheel) or install the CUDA toolkit",
                         code="no-nvcc")
