"""The deploy package: one folder to copy to the device as it is.

    <name>.so        the compiled library, weights inside
    manifest.json    inputs and outputs (names, shapes, dtypes), the target, TVM and archc versions, the hash of
                     the ONNX it came from, how it was built
    model.onnx       the ONNX it was built from
    README.md        how to run it
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from archc import __version__, runtime
from archc.frontends import Model
from archc.lower.build import Lowered
from archc.lower.tvm_target import tvm_target_dict
from archc.shapes import BY_ONNX
from archc.util.atomic import atomic_dir

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def write_package(model: Model, lowered: Lowered, out: Path) -> dict[str, Any]:
    """Write the package folder atomically (a failed build leaves no half-written folder); return the manifest."""
    import tvm
    onnx_bytes = model.proto.SerializeToString()
    target = lowered.target
    library = f"{model.name}.so"
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "model": model.name,
        "library": library,
        "inputs": [_io(model, name, shape) for name, shape in model.inputs],
        "outputs": [_io(model, name, shape) for name, shape in model.outputs],
        "target": {"name": target.name, "description": target.description, "runner": target.runner,
                   "tvm": tvm_target_dict(target), "cross_compiler": target.cross_compiler},
        "tvm_version": tvm.__version__,
        "archc_version": __version__,
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "source": model.source,
        "build": {"tuned": bool(lowered.tuning.get("kernels_tuned")),
                  "compile_seconds": round(lowered.compile_seconds, 3), **lowered.tuning},
    }
    with atomic_dir(out) as folder:
        fcompile = None
        if target.cross_compiler:
            from tvm.support.cc import cross_compiler
            fcompile = cross_compiler(target.cross_compiler)
        lowered.executable.export_library(str(folder / library), fcompile=fcompile)
        (folder / "model.onnx").write_bytes(onnx_bytes)
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        (folder / "README.md").write_text(_readme(manifest), encoding="utf-8")
        # the loader, standalone (numpy and TVM's runtime only): the package runs where archc is not installed
        shutil.copyfile(Path(runtime.__file__), folder / "archc_runtime.py")
    return manifest


def _io(model: Model, name: str, shape: tuple[int, ...]) -> dict[str, Any]:
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(model.proto.graph.input) +
             list(model.proto.graph.output)}
    dtype = BY_ONNX.get(types.get(name, 1))
    return {"name": name, "shape": list(shape), "dtype": dtype.name if dtype else "float32"}


def _readme(m: dict[str, Any]) -> str:
    ins = ", ".join(f"{i['name']} {'×'.join(map(str, i['shape']))} {i['dtype']}" for i in m["inputs"])
    outs = ", ".join(f"{o['name']} {'×'.join(map(str, o['shape']))} {o['dtype']}" for o in m["outputs"])
    return (f"# {m['model']} for {m['target']['name']}\n\n{m['target']['description']}.\n\n"
            f"Built by archc {m['archc_version']} with Apache TVM {m['tvm_version']}.\n"
            f"Inputs: {ins}. Outputs: {outs}.\n\n"
            "Run it with archc (`archc run .`) or, in Python with only TVM's runtime installed:\n\n"
            "```python\nfrom archc_runtime import load_package   # this folder's copy of archc.runtime\n"
            "pkg = load_package(\".\")\n"
            "outputs = pkg.run({name: array, ...})\n```\n")
