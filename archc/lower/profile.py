"""`archc profile PKG`: the time of each compiled kernel, beside the measured end-to-end time.

TVM 0.27 has no VM profiler (removed upstream), so each kernel (a PrimFunc of the library) is timed alone with the
library module's `time_evaluator`, on random arguments of its real shapes. The shapes come from rebuilding the
package's kernels' signatures the way `lower` built them (the package's ONNX, its target, its tuning database): the
same module, so the same kernel names. The kernels' sum is shown beside the whole model's time: the difference is
what runs between kernels (the VM, allocations).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax, tirx
from tvm.support.cc import cross_compiler

from archc import frontends, targets
from archc.analysis import analyze
from archc.deploy.manifest import MANIFEST
from archc.deploy.profile import KernelTime, Profile
from archc.errors import ArchcError
from archc.lower import vector_math, vector_width
from archc.lower.attribution import Kernel, attribute
from archc.lower.build import import_onnx, kept_weights, tvm_target_at
from archc.lower.tune import apply, prepare
from archc.runtime import load_package, loadable, rpc
from archc.shapes import fmt_dims


def profile(folder: str | Path, repeat: int = 20, remote: Any = None, threads: int | None = None) -> Profile:
    """Time every kernel of the package here, or with `remote` (an `archc.runtime.rpc.Remote`) on that device.
    `threads`: the library's threads here (default: TVM_NUM_THREADS, else every CPU), for the whole model and each
    kernel alike (both run in the one library that the package loads)."""
    folder = Path(folder)
    rpc.no_local_threads(threads, remote)
    pkg = load_package(folder, threads)
    manifest = pkg.manifest
    inputs = pkg.random_inputs()
    if remote is None:
        pkg.load()  # one sentence where it cannot run here
        if pkg.emulated:  # qemu runs the whole library, but its kernels cannot be loaded and timed one by one here
            raise ArchcError(f"'{folder}' is an {manifest.target.name} package, which this {os.uname().machine} "
                             "machine runs only under qemu, whose times say nothing of a board; profile it on "
                             "the board: --rpc HOST:PORT --rpc-key KEY (README: remote boards)", code="needs-rpc")
        times = sorted(pkg.time(inputs, repeat=max(3, repeat // 4)))  # also checks the package runs here
    else:
        times = sorted(rpc.run(pkg, inputs, remote, repeat=max(3, repeat // 4))[1])
    t = manifest.target  # as built: its TVM dict holds what was detected then, so nothing is detected again
    target = targets.Target(t.name, t.description, "tvm", str(folder / MANIFEST), t.runner, t.tvm, t.cross_compiler)
    tgt = tvm_target_at(target, manifest.build.precision)  # a bf16 package's kernels are a bf16 build's
    model = frontends.load(folder / "model.onnx")
    half_cost = (manifest.build.layout or {}).get("half_width_cost")  # the plan as built, not measured again
    kept = kept_weights(model, manifest.build.fp32_layers or (), manifest.build.precision)  # --keep-fp32's layers
    mod = prepare(import_onnx(model), tgt, manifest.build.kernels or "tvm", None, manifest.build.precision, half_cost,
                  kept)
    db = manifest.build.database
    if db and Path(db).is_dir():
        mod = apply(mod, tgt, Path(db))[0]
    found = {k.name: k for k in kernels_of(mod, model)}  # with how often main calls each
    if remote is None:
        library = tvm.runtime.load_module(str(loadable(folder / manifest.library)))  # the library pkg loaded
        kernels_module = library.imports[0] if library.imports else library
        dev = pkg.device()
    else:
        kernels_module, dev = _remote_kernels(mod, tgt, target, remote)
    names = [gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)]
    vectors = {} if target.tvm.get("kind") == "cuda" else vector_width.widths(
        folder / manifest.library, names, vector_width.objdump_for(target.cross_compiler))
    rng = np.random.default_rng(0)
    results = []
    for gv, func in mod.functions.items():
        name = gv.name_hint
        if not isinstance(func, tirx.PrimFunc) or (remote is None and not kernels_module.implements_function(name)):
            continue
        shapes = [([int(d) for d in p.shape], str(p.dtype)) for p in func.params]
        args = [tvm.runtime.tensor(rng.standard_normal(s).astype(d) if "float" in d else np.zeros(s, d), dev)
                for s, d in shapes]
        # on a CPU, every argument but the first (the data) is flushed from the caches before each run: inside the
        # model a layer's weights come from memory, and timed warm a big FC layer ran 4.5x past the memory roof
        timer = (kernels_module.time_evaluator(name, dev, number=1, repeat=repeat,
                                               f_preproc="cache_flush_cpu_non_first_arg")
                 if remote is None and dev.dlpack_device_type() == 1 else
                 kernels_module.time_evaluator(name, dev, number=max(1, repeat // 4), repeat=4))
        try:
            seconds = float(timer(*args).mean)
        except (ValueError, TypeError) as err:  # the package's kernel is not the one lowered here (TVM FFI)
            raise ArchcError(f"kernel '{name}' of '{folder}' does not take the arguments this archc lowers its "
                             f"model to (was it built by another archc version?); compile the package again "
                             f"({str(err).splitlines()[0][:120]})", code="old-package") from None
        k = found.get(name)
        results.append(KernelTime(name, seconds, k.calls if k else 1,
                                  [f"{fmt_dims(s) or 'scalar'} {d}" for s, d in shapes],
                                  k.nodes if k else [], k.macs if k else None, vectors.get(name)))
    if not results:
        raise ArchcError(f"no kernel of '{folder}' could be found to time; compile the package again",
                         code="corrupt-package")
    results.sort(key=lambda k: -k.total_seconds)
    return Profile(str(folder), manifest.target.name, results, times[len(times) // 2])


def _remote_kernels(mod: Any, tgt: Any, target: Any, remote: Any) -> tuple[Any, Any]:
    """The package's kernels on the remote device, where each can be timed by name: TVM's RPC cannot time a
    kernel inside an uploaded Relax library (only its top-level functions), so the same scheduled kernels are
    built here once more, as a library of kernels alone, uploaded and loaded there."""
    import tempfile

    kernels = tvm.IRModule({gv: f.with_attr("global_symbol", gv.name_hint) for gv, f in mod.functions.items()
                            if isinstance(f, tvm.tirx.PrimFunc)})
    vector_math.install()
    built = tvm.tirx.build(kernels, target=tgt)
    sess = rpc.session(remote)
    with tempfile.TemporaryDirectory(prefix="archc-profile-") as tmp:
        path = Path(tmp) / "kernels.so"
        built.export_library(str(path), fcompile=cross_compiler(target.cross_compiler) if target.cross_compiler
                             else None)
        sess.upload(str(path))
    dev = sess.cuda(0) if target.tvm.get("kind") == "cuda" else sess.cpu(0)
    return sess.load_module("kernels.so"), dev


def kernels_of(mod: Any, model: Any) -> list[Any]:
    """The module's kernels as `main` first calls them, each with the ONNX nodes it runs and their MACs."""
    calls = _calls(mod)
    by_name = {gv.name_hint: gv for gv in mod.functions}
    kernels = [Kernel(name, [tuple(int(d) for d in p.shape) for p in mod[by_name[name]].params], n)
               for name, n in calls.items() if name in by_name]
    attribute(kernels, analyze(model).layers)
    return kernels


def _calls(mod: Any) -> dict[str, int]:
    """How many times `main` calls each kernel (a kernel can serve several layers of one shape), in the order of
    their first calls."""
    counts: dict[str, int] = {}

    def visit(expr: Any) -> None:
        if isinstance(expr, relax.Call) and len(expr.args) > 0 and isinstance(expr.args[0], relax.GlobalVar):
            counts[expr.args[0].name_hint] = counts.get(expr.args[0].name_hint, 0) + 1

    relax.analysis.post_order_visit(mod["main"], visit)
    return counts

