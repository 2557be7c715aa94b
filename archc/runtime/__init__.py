"""Load and run a deploy package that `archc compile --target …` wrote.

This file needs only numpy and TVM's runtime (it imports nothing else of archc): the package carries a copy of it
as `archc_runtime.py`, so that a device with TVM's Python package runs the library without archc installed:

    from archc_runtime import load_package          # or: from archc.runtime import load_package
    pkg = load_package("resnet18.x86")
    outputs = pkg.run({"image": x})                  # numpy arrays in, numpy arrays out
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"


class PackageError(Exception):
    """One sentence: why the package cannot be loaded or run here, and what to do."""

    exit_code = 1


@dataclass
class Package:
    path: Path
    manifest: dict[str, Any]
    _vm: Any = field(default=None, repr=False)

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return list(self.manifest["inputs"])

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return list(self.manifest["outputs"])

    def _machine(self) -> Any:
        if self._vm is None:
            self._vm = _load_vm(self)
        return self._vm

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs for the given inputs (by name; each must have the manifest's shape and dtype)."""
        import tvm
        vm = self._machine()  # first: it says why the package cannot run here before any tensor is made
        args = []
        for spec in self.inputs:
            if spec["name"] not in inputs:
                raise PackageError(f"the input '{spec['name']}' is missing; the package takes "
                                   + ", ".join(i["name"] for i in self.inputs))
            x = np.ascontiguousarray(inputs[spec["name"]], dtype=spec["dtype"])
            if list(x.shape) != list(spec["shape"]):
                raise PackageError(f"input '{spec['name']}' has shape {'×'.join(map(str, x.shape))} but the package "
                                   f"was built for {'×'.join(map(str, spec['shape']))}; compile it again with "
                                   "--input or --batch")
            args.append(tvm.runtime.tensor(x, self.device()))
        result = vm["main"](*args)
        items = list(result) if isinstance(result, (tuple, list)) or type(result).__name__ == "Array" else [result]
        return [r.numpy() for r in items]

    def time(self, inputs: dict[str, np.ndarray], repeat: int = 10) -> list[float]:
        """Seconds per run of `repeat` runs after one warm-up."""
        self.run(inputs)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            self.run(inputs)
            times.append(time.perf_counter() - start)
        return times

    def device(self) -> Any:
        import tvm
        return tvm.cuda(0) if self.manifest["target"]["tvm"].get("kind") == "cuda" else tvm.cpu(0)


def load_package(path: str | os.PathLike[str]) -> Package:
    """Read a package's manifest and check it can run here (the library is loaded on the first run)."""
    folder = Path(path)
    if not (folder / MANIFEST).is_file():
        raise PackageError(f"'{folder}' is not an archc package (no {MANIFEST}); make one with "
                           "`archc compile MODEL --target NAME -o DIR`")
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        manifest["library"], manifest["inputs"], manifest["outputs"], manifest["target"]["tvm"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise PackageError(f"the manifest of '{folder}' is corrupt ({type(err).__name__}: {err}); compile the "
                           "package again") from None
    if not (folder / manifest["library"]).is_file():
        raise PackageError(f"'{folder}' has no library {manifest['library']}; compile the package again")
    return Package(folder, manifest)


def _has_gpu(tvm: Any) -> bool:
    try:
        return bool(tvm.cuda(0).exist)
    except Exception:  # a TVM built without CUDA's runtime says so by raising
        return False


def _load_vm(pkg: Package) -> Any:
    try:
        import tvm
        from tvm import relax
    except ImportError:
        raise PackageError("running a package needs TVM's Python package: pip install apache-tvm") from None
    built_with = pkg.manifest.get("tvm_version")
    if built_with != tvm.__version__:
        raise PackageError(f"'{pkg.path}' was built with TVM {built_with} but TVM {tvm.__version__} is installed; "
                           "a library only loads in the TVM that built it: compile the package again")
    target = pkg.manifest["target"]
    built_for_arm = "aarch64" in str(target["tvm"].get("mtriple", ""))
    if built_for_arm != (os.uname().machine in ("aarch64", "arm64")):
        raise PackageError(f"'{pkg.path}' is built for {target['name']} ({target['description']}) and cannot run "
                           f"on this {os.uname().machine} machine; copy it to the device")
    if target["tvm"].get("kind") == "cuda" and not _has_gpu(tvm):
        raise PackageError(f"'{pkg.path}' is built for an NVIDIA GPU, and this machine has none (or no CUDA "
                           "driver); run it on a machine with a GPU")
    try:
        lib = tvm.runtime.load_module(str(pkg.path / pkg.manifest["library"]))
        return relax.VirtualMachine(lib, pkg.device())
    except Exception as err:
        raise PackageError(f"the library of '{pkg.path}' does not load ({' '.join(str(err).split())[:200]}); "
                           "compile the package again") from None
