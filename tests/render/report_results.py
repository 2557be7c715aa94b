"""Real bench results for the report tests, in the `archc-bench` schema (version 1), measured here and now.

`results` makes them with `archc bench` (`archc.api.bench`: onnxruntime, archc untuned, OpenVINO if installed)
where it exists; else `measure` does the same steps by hand, on a small scale: compile the model for `native`
(no tuning) at each batch size, run onnxruntime and the package alternately on one random input, keep every timed
sample, compare the outputs, profile the package's kernels, and describe the machine (peak fp32 and memory
bandwidth measured with numpy). No number is typed in.
"""
from __future__ import annotations

import datetime
import functools
import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _stats(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs)
    return {"min": float(a.min()), "median": float(np.median(a)), "mean": float(a.mean()),
            "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)), "std": float(a.std())}


def _cpu() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", []
    try:
        info = Path("/proc/cpuinfo").read_text()
        for line in info.splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni",
                                     "avx512_bf16", "amx_tile", "amx_bf16") if f in have]
                break
    except OSError:
        pass
    # peak: the best of a few fp32 matrix products (numpy's BLAS on the cores used), 2·n³ FLOPs each
    n = 512
    a = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    best = min(_timed(lambda: a @ a) for _ in range(9))  # the first warms the BLAS threads up
    # bandwidth: the best of a few copies of a 32 MiB array (read + write)
    big = np.ones(8 << 20, dtype=np.float32)
    out = np.empty_like(big)
    copy = min(_timed(lambda: np.copyto(out, big)) for _ in range(5))
    cores = os.cpu_count() or 1
    return {"model": model, "llvm_cpu": None, "flags": flags, "physical_cores": cores, "logical_cpus": cores,
            "peak_gflops": 2 * n**3 / best / 1e9,
            "peak_method": f"best of 9 numpy float32 {n}×{n} matrix products (2n³ FLOPs each)",
            "bandwidth_gbs": 2 * big.nbytes / copy / 1e9,
            "bandwidth_method": "best of 5 numpy copies of a 32 MiB float32 array (bytes read + written)"}


def _timed(f: Any) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def environment() -> dict[str, Any]:
    before = list(os.getloadavg())
    cpu = _cpu()
    cores = os.cpu_count() or 1
    after = list(os.getloadavg())
    loaded = after[0] > cores
    return {"host": platform.node(), "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "cpu": cpu, "gpu": None,
            "load": {"before": before, "after": after, "cores": cores, "loaded": loaded,
                     "warning": f"load average {after[0]:.2f} over {cores} cores while measuring: the timings "
                                "are noisier and slower than on a quiet machine" if loaded else None},
            "packages": {name: _version(name) for name in ("archc", "onnxruntime", "apache-tvm", "numpy", "onnx",
                                                            "openvino")}}


def results(spec: Path, work: Path, batches: tuple[int, ...] = (1, 4), rounds: int = 15) -> dict[str, Any]:
    """Bench `spec` on the native target: with `archc bench` where it exists (untuned packages: no tuning pass,
    so that a test takes seconds; peak memory not measured, for the same reason), else by hand (`measure`)."""
    import importlib.util

    import archc.api
    if hasattr(archc.api, "bench") and importlib.util.find_spec("archc.bench.run") is not None:
        return archc.api.bench(spec, "native", batches=list(batches), repeat=rounds, variants=["untuned"],
                               engines=["onnxruntime", "archc", "openvino"], memory=False,
                               output=work / f"{spec.stem}.native.bench.json")
    return measure(spec, work, batches, rounds)


def measure(spec: Path, work: Path, batches: tuple[int, ...] = (1, 4), rounds: int = 15) -> dict[str, Any]:
    """Bench `spec` on the native target against onnxruntime, as `archc bench` would, on a small scale."""
    import onnxruntime as ort

    import archc
    from archc.lower.profile import profile
    from archc.runtime import load_package
    analysis = archc.analyze(spec)
    ort_engine: dict[str, Any] = {"engine": "onnxruntime", "variant": None, "status": "ok", "note": None,
                                  "version": ort.__version__, "compile_seconds": 0.0, "tuning": None, "results": []}
    tvm_engine: dict[str, Any] = {"engine": "archc", "variant": "untuned", "status": "ok", "note": None,
                                  "version": archc.__version__, "compile_seconds": 0.0,
                                  "tuning": {"trials": 0, "kernels_tuned": 0, "kernels_naive": 0, "database": ""},
                                  "results": []}
    threads = os.cpu_count() or 1
    first_package = None
    for batch in batches:
        onnx_path = work / f"{spec.stem}-b{batch}.onnx"
        archc.compile(spec, "onnx", onnx_path, batch=batch)
        start = time.perf_counter()
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        ort_engine["compile_seconds"] += time.perf_counter() - start
        folder = work / f"{spec.stem}-b{batch}.native"
        start = time.perf_counter()
        archc.compile(spec, "native", folder, batch=batch, quick=0)
        tvm_engine["compile_seconds"] += time.perf_counter() - start
        first_package = first_package or folder
        pkg = load_package(folder)
        inputs = {i["name"]: np.random.default_rng(batch).standard_normal(i["shape"]).astype(i["dtype"])
                  for i in pkg.inputs}
        want = sess.run(None, inputs)[0]
        got = pkg.run(inputs)[0]
        samples: dict[str, list[float]] = {"ort": [], "tvm": []}
        for _ in range(rounds):  # alternating, so that drift hits both alike
            samples["ort"].append(_timed(functools.partial(sess.run, None, inputs)))
            samples["tvm"].append(_timed(functools.partial(pkg.run, inputs)))
        diff = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-30))
        top1 = float(np.mean(np.argmax(got.reshape(batch, -1), 1) == np.argmax(want.reshape(batch, -1), 1)))
        for key, engine in (("ort", ort_engine), ("tvm", tvm_engine)):
            st = _stats(samples[key])
            engine["results"].append({
                "batch": batch, "threads": threads, "latency_s": samples[key], "stats": st,
                "throughput": batch / st["median"], "peak_memory_bytes": None,
                "gflops": analysis.totals.flops * batch / st["median"] / 1e9,
                "agreement": {"max_rel_diff": 0.0 if key == "ort" else diff, "top1": 1.0 if key == "ort" else top1}})
    assert first_package is not None
    prof = profile(first_package, repeat=8).to_json()
    return {
        "schema": "archc-bench", "schema_version": 1,
        "created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": f"(tests) measure {spec.name} --target native --batch {','.join(map(str, batches))}",
        "environment": environment(),
        "model": {"name": analysis.model, "source": str(spec), "params": analysis.totals.trainable_params,
                  "macs": analysis.totals.macs, "flops": analysis.totals.flops, "classifier": True,
                  "analysis": analysis.to_json()},
        "target": {"name": "native", "description": "this machine's CPU"},
        "engines": [ort_engine, tvm_engine,
                    {"engine": "openvino", "variant": None, "status": "absent",
                     "note": "not installed (pip install openvino)" if not _version("openvino") else
                     "not run by the tests' measuring helper", "version": _version("openvino"),
                     "compile_seconds": None, "tuning": None, "results": []}],
        "profile": prof,
        "tuning_curve": None,
    }
