"""Verification: the library a build wrote computes what onnxruntime computes on the same ONNX.

    check(model, folder)      the package's library and onnxruntime on the same random inputs, every output
                              compared (of its range: the largest magnitude onnxruntime gives) → Verification
    locate(model, ...)        on a mismatch, the first node that diverges: the model compiled again with every
                              intermediate tensor as an output, both run, and the first node in graph order whose
                              inputs agree and whose output does not, named with its op and attributes

The library is run from a copy of the file (a library loaded once in a process keeps its thread count there, so the
package itself stays unloaded); an aarch64 library runs under qemu where archc's set-up is installed; a package this
machine cannot run (a GPU build without a GPU, an aarch64 one without qemu) is recorded as not verified, with why.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from archc.deploy.manifest import MANIFEST, Manifest, Verification
from archc.frontends import Model
from archc.runtime import PackageError, last_line, load_package, random_inputs, rpc
from archc.runtime.rpc import Remote, RemoteError
from archc.shape_inference import FOLD_ELEMENTS
from archc.util.difference import relative_diff, top_agreement
from archc.util.onnx_skeleton import put_weights, take_weights

TOLERANCE = 1e-4  # of each output's range: what reordered float sums leave (the tests' tolerance too)
# by precision: bf16 keeps 8 bits of mantissa (a relative 2^-9 per rounding), its errors growing through the layers
# int8: archc dequantizes each convolution's integer sums in float32 where onnxruntime requantizes them to uint8:
# a value on a rounding step's edge can land one step apart, and the steps add up through the layers
TOLERANCES = {"fp32": TOLERANCE, "bf16": 3e-2, "int8": 3e-2}
SEED = 0


AGREEMENT_INPUTS = 16  # a low-precision build's classifier checked on this many more random inputs


def check(model: Model, folder: Path, tolerance: float = TOLERANCE, remote: Remote | None = None,
          samples: int = 0) -> tuple[Verification, dict[str, np.ndarray]]:
    """The package in `folder` (its library and manifest written) run beside onnxruntime on random inputs, here or
    with `remote` on that device of an RPC tracker; the record for its manifest, and the inputs used (for
    `locate`). `samples`: a classifier's top-1 and top-5 agreement over that many more inputs, run here (a
    low-precision build's, `Verification.agreement`)."""
    manifest = Manifest.read(folder)
    inputs = random_inputs(manifest.inputs, SEED)
    record = Verification("skipped", reference=f"onnxruntime {_ort_version()}", inputs=f"random normal, seed {SEED}",
                          tolerance=tolerance, device=str(remote) if remote else None)
    try:
        reference = _reference(model.proto, inputs, [s.name for s in manifest.outputs])
    except Exception as err:  # onnxruntime cannot run it (an op it lacks, over protobuf's 2 GiB): skipped, and why
        record.note = (f"onnxruntime could not run the model to compare with "
                       f"({last_line(str(err), type(err).__name__, 200)})")
        return record, inputs
    try:
        got, emulated = run_copy(folder, inputs, emulate=False, remote=remote)
    except RemoteError:  # a tracker or device asked for and not there: the user's to fix, not a skipped check
        raise
    except PackageError as err:  # this machine cannot run it: said, not failed
        record.note = str(err)
        return record, inputs
    diffs = {s.name: relative_diff(g, w) for s, g, w in zip(manifest.outputs, got, reference, strict=True)}
    worst = max(diffs, key=lambda k: diffs[k])
    record.max_rel_diff, record.worst_output, record.emulated = diffs[worst], worst, emulated
    record.status = "passed" if diffs[worst] <= tolerance else "failed"
    scores = [i for i, s in enumerate(manifest.outputs) if len(s.shape) == 2 and s.shape[1] >= 5]
    if samples and scores and remote is None and not emulated:
        record.agreement = _agreement(model, folder, manifest, scores[0], samples)
    constant = [s.name for s, w in zip(manifest.outputs, reference, strict=True) if np.ptp(w) == 0]
    if constant:  # zero weights (an untrained head: torchvision's ViT) make every output equal: a weak check
        record.note = (f"onnxruntime's output '{constant[0]}' is the same number everywhere on these inputs (weights "
                       "left at zero?), so the check says little about it; verify with trained weights")
    return record, inputs


def checker(model: Model, rebuild: Callable[[Model, Path], object], tolerance: float = TOLERANCE,
            remote: Remote | None = None, samples: int = 0) -> Callable[[Path], Verification]:
    """The check `write_package` runs on the folder it writes: `check`, and on a mismatch `locate` (with `rebuild`,
    the same build without tuning, into another folder), here or on the `remote` device."""
    def run(folder: Path) -> Verification:
        record, inputs = check(model, folder, tolerance, remote, samples)
        if record.status == "failed":
            record.divergence = locate(model, rebuild, inputs, tolerance, remote)
        return record
    return run


def checker_at(model: Model, rebuild: Callable[[Model, Path], object], precision: str,
               tolerance: float | None = None, remote: Remote | None = None) -> Callable[[Path], Verification]:
    """`checker` for a build at `precision`: its tolerance (TOLERANCES, unless `tolerance` says otherwise) and, below
    fp32, a classifier's top-1/top-5 agreement over AGREEMENT_INPUTS more inputs."""
    allowed = TOLERANCES.get(precision, TOLERANCE) if tolerance is None else tolerance
    return checker(model, rebuild, allowed, remote, AGREEMENT_INPUTS if precision != "fp32" else 0)


def _agreement(model: Model, folder: Path, manifest: Manifest, output: int, samples: int) -> dict[str, Any]:
    """How often the library's classifier scores (output `output`) pick onnxruntime's best class and best five,
    over `samples` random inputs (seeds after the check's own)."""
    top1 = top5 = 0
    name = manifest.outputs[output].name
    session = _session(model.proto)
    with _loaded_copy(folder) as pkg:
        for i in range(samples):
            inputs = random_inputs(manifest.inputs, SEED + 1 + i)
            want = session.run([name], inputs)[0][:1]
            got = pkg.run(inputs)[output][:1]
            one, five = top_agreement(got, want)
            top1, top5 = top1 + one, top5 + five
    return {"output": name, "inputs": samples, "top1": top1, "top5": top5}


def run_copy(folder: Path, inputs: dict[str, np.ndarray], emulate: bool = True, remote: Remote | None = None
             ) -> tuple[list[np.ndarray], bool]:
    """The package's outputs, its library loaded from a copy of the file (or uploaded to `remote`); whether it ran
    under qemu. Without `emulate`, an aarch64 package on x86-64 is not run (a PackageError that says how to check
    it)."""
    if remote is not None:
        return rpc.run(load_package(folder), inputs, remote)[0], False
    with _loaded_copy(folder, emulate) as pkg:
        return pkg.run(inputs), pkg.emulated


@contextmanager
def _loaded_copy(folder: Path, emulate: bool = True) -> Iterator[Any]:
    """The package, its library and manifest copied to a temporary folder and loaded from there (so that the
    folder being written is never mapped)."""
    manifest = Manifest.read(folder)
    with tempfile.TemporaryDirectory(prefix="archc-verify-") as tmp:
        copy = Path(tmp)
        for name in (manifest.library, MANIFEST):
            shutil.copyfile(folder / name, copy / name)
        try:
            pkg = load_package(copy)
            pkg.load()
        except PackageError as err:  # said of the package, not of the copy
            raise PackageError(str(err).replace(f"'{copy}'", "the package"), err.code) from None
        if pkg.emulated and not emulate:
            raise PackageError(f"this {os.uname().machine} machine runs an aarch64 library only under qemu, "
                               "slowly; `archc bench PACKAGE --engines onnxruntime,archc` compares it with "
                               "onnxruntime there, or run it on the device", code="wrong-machine")
        yield pkg


def locate(model: Model, build: Callable[[Model, Path], object], inputs: dict[str, np.ndarray],
           tolerance: float = TOLERANCE, remote: Remote | None = None) -> str:
    """The first diverging node, in one paragraph. `build(model, folder)` compiles a model into a package folder
    the way the failed build was made (its target, kernels and tuning database)."""
    exposed, names = expose_intermediates(model.proto)
    reference = dict(zip(names, _reference(exposed, inputs, names), strict=True))
    with tempfile.TemporaryDirectory(prefix="archc-locate-") as tmp:
        folder = Path(tmp) / "exposed"
        build(replace(model, proto=exposed), folder)
        got = dict(zip(names, run_copy(folder, inputs, remote=remote)[0], strict=True))
    diffs = {name: relative_diff(got[name], reference[name]) for name in names}
    for node in model.proto.graph.node:
        bad = [o for o in node.output if diffs.get(o, 0.0) > tolerance]
        if bad and all(diffs.get(i, 0.0) <= tolerance for i in node.input if i):
            into = max((diffs.get(i, 0.0) for i in node.input if i in diffs), default=0.0)
            return (f"the first node that diverges is '{node.name or node.output[0]}' ({_describe(node)}): its "
                    f"inputs agree with onnxruntime's (within {into:.1e} of their range) and its output "
                    f"'{bad[0]}' differs by {diffs[bad[0]]:.2e} of its range")
    return ("with every intermediate tensor an output, the library agrees with onnxruntime node by node: the "
            "difference comes from how the kernels are fused or scheduled, not from how one op was imported")


def expose_intermediates(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy with every floating-point tensor a node makes (of known shape) among the graph's outputs, and their
    names in graph order (the graph's own outputs included)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    typed = {vi.name: vi for vi in list(out.graph.value_info)}
    present = {o.name for o in out.graph.output}
    names: list[str] = []
    for node in out.graph.node:
        for name in node.output:
            if name in present:
                names.append(name)
                continue
            vi = typed.get(name)
            if vi is None or vi.type.tensor_type.elem_type not in _FLOATS:
                continue
            dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            if not dims or any(d <= 0 for d in dims):
                continue
            out.graph.output.append(helper.make_tensor_value_info(name, vi.type.tensor_type.elem_type, dims))
            present.add(name)
            names.append(name)
    order = {n: i for i, n in enumerate(names)}
    outputs = sorted(out.graph.output, key=lambda o: order.get(o.name, len(order)))
    del out.graph.output[:]
    out.graph.output.extend(outputs)
    return out, [o.name for o in outputs]


_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


def _describe(node: onnx.NodeProto) -> str:
    attrs = []
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if isinstance(value, float):
            attrs.append(f"{a.name}={value:.6g}")
        elif isinstance(value, (int, str)) or (isinstance(value, list) and len(value) <= 8):
            attrs.append(f"{a.name}={value}")
    return node.op_type + (f"; {', '.join(attrs)}" if attrs else "")


def _reference(proto: onnx.ModelProto, inputs: dict[str, np.ndarray], names: Sequence[str]) -> list[np.ndarray]:
    """onnxruntime's outputs; the session is made from the graph alone, the weights handed over as arrays (a model
    over protobuf's 2 GiB cannot be serialized whole; small tensors stay in it: onnxruntime reads those of shape
    computations while loading the graph, before external initializers are bound)."""
    return [np.asarray(y) for y in _session(proto).run(list(names), inputs)]


def _session(proto: onnx.ModelProto) -> Any:
    """onnxruntime's session of the model, made as `_reference` says."""
    import onnxruntime as ort
    held = take_weights(proto, FOLD_ELEMENTS)
    try:
        options = ort.SessionOptions()
        options.add_external_initializers(list(held), [ort.OrtValue.ortvalue_from_numpy(a) for a in held.values()])
        return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    finally:
        put_weights(proto, held)


def _ort_version() -> str:
    import onnxruntime as ort
    return str(ort.__version__)
