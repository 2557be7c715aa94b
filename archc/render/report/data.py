"""What a report shows, computed from bench results (the records of `archc.measurement.results`, `BenchResults`):
the summary card, the latency and engine tables, the kernels with their arithmetic intensity, the index across
results, the environment. Plain dicts and numbers, which the charts (`charts`) and the template draw."""
from __future__ import annotations

import math
import re
from typing import Any

from archc.deploy.profile import Profile
from archc.measurement.results import (  # the results schema: declared there, once
    BenchResults,
    Environment,
    load,
)
from archc.shapes import BY_NAME

_ARG = re.compile(r"^\s*(?P<shape>[0-9×x]+|scalar)\s+(?P<dtype>\w+)\s*$")


def as_results(data: BenchResults | dict[str, Any], where: str = "the results") -> BenchResults:
    """The records of results given either way: as records, or as their JSON (checked, and upgraded from an older
    version, by `archc.measurement.results.load`)."""
    return data if isinstance(data, BenchResults) else load(data, f"'{where}'")


# ---- formatting --------------------------------------------------------------------------------------------------
def seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return ""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(s) >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def time_unit(values: list[float]) -> tuple[str, float]:
    """The unit (and its scale) that shows `values` (seconds) best: µs, ms or s."""
    top = max(values, default=0.0)
    return ("s", 1.0) if top >= 1 else ("ms", 1e-3) if top >= 1e-3 else ("µs", 1e-6)


def number(v: float | None, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if abs(v) >= 10 ** digits:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


# ---- engines -------------------------------------------------------------------------------------------------------
def latency_rows(r: BenchResults) -> list[dict[str, Any]]:
    """One row per engine and batch: the statistics, throughput, GFLOP/s (and % of the measured peak), memory,
    agreement with onnxruntime."""
    peak = r.peak_gflops
    rows = []
    for e in r.ok_engines:
        for m in sorted(e.results, key=lambda m: m.batch):
            st, agree, g = m.stats, m.agreement, m.gflops
            rows.append({
                "engine": e.label, "batch": m.batch, "threads": "" if m.threads is None else m.threads,
                "min": seconds(st.min if st else None), "median": seconds(m.median),
                "p90": seconds(st.p90 if st else None), "p99": seconds(st.p99 if st else None),
                "std": seconds(st.std if st else None), "median_s": m.median or 0.0,
                "throughput": number(m.throughput), "gflops": number(g),
                "peak_share": f"{100 * g / peak:.1f}%" if g and peak else "",
                "memory": _bytes(m.peak_memory_bytes),
                "rel_diff": "" if agree.max_rel_diff is None else f"{agree.max_rel_diff:.2e}",
                "top1": "" if agree.top1 is None else f"{100 * agree.top1:.0f}%",
                "samples": len(m.latency_s),
            })
    return rows


def _bytes(n: int | None) -> str:
    from archc.render.table import human_bytes
    return "" if n is None else human_bytes(n)


def engine_rows(r: BenchResults) -> list[dict[str, Any]]:
    """Every engine asked for, present or not: status, version, build and tuning, the note (why absent)."""
    rows = []
    for e in r.engines:
        t = e.tuning
        tuning = ""
        if t is not None:
            own = f"{t.kernels_archc} archc kernels, " if t.kernels == "archc" and t.kernels_archc else ""
            tuning = f"{own}{t.kernels_tuned} from the tuning database, {t.kernels_naive} naive; {t.trials} trials"
        rows.append({"engine": e.label, "status": e.status, "version": e.version or "",
                     "compile": seconds(e.compile_seconds), "tuning": tuning, "note": e.note or ""})
    return rows


def versus(mine: float, theirs: float) -> str:
    """A latency against another's, in words that cannot be misread: "1.19× slower", "1.25× faster", "equal"."""
    if round(mine / theirs, 2) == 1.0:
        return "equal (1.00×)"
    return f"{mine / theirs:.2f}× slower" if mine > theirs else f"{theirs / mine:.2f}× faster"


def summary(r: BenchResults) -> dict[str, Any]:
    """The card: model, target, params, MACs, best latency (at the smallest batch measured), the best archc's
    latency against onnxruntime's there (`versus`), and archc's agreement with onnxruntime (worst over batches and
    variants)."""
    from archc.render.table import si
    model = r.model
    card: dict[str, Any] = {"model": model.name or "", "target": r.target.name or "",
                            "params": f"{model.params:,}" if model.params is not None else "",
                            "macs": si(model.macs) if model.macs is not None else "",
                            "flops": si(model.flops) if model.flops is not None else "",
                            "best": "", "best_engine": "", "batch": None, "speedup": "", "speedup_vs": "",
                            "agreement": "", "top1": ""}
    bs = r.batches
    if not bs:
        return card
    b = bs[0]
    card["batch"] = b
    timed = [(s, e) for e in r.ok_engines if (s := e.median_at(b))]
    if timed:
        best_s, best_e = min(timed, key=lambda t: t[0])
        card["best"], card["best_engine"] = seconds(best_s), best_e.label
        ort = [s for s, e in timed if e.engine == "onnxruntime"]
        archc = [(s, e) for s, e in timed if e.engine == "archc"]
        if ort and archc:
            s, e = min(archc, key=lambda t: t[0])
            card["speedup"], card["speedup_vs"] = versus(s, ort[0]), e.label
    others = [m.agreement for e in r.ok_engines if e.engine != "onnxruntime" for m in e.results]
    diffs = [float(a.max_rel_diff) for a in others if a.max_rel_diff is not None]
    top1 = [float(a.top1) for a in others if a.top1 is not None]
    if diffs:
        card["agreement"] = f"max rel. diff {max(diffs):.1e}"
    if top1:
        card["top1"] = f"top-1 {100 * min(top1):.0f}%"
    return card


# ---- kernels and the roofline ----------------------------------------------------------------------------------
def arg_bytes(arg: str) -> int | None:
    """Bytes of one kernel argument written as the profile writes it, "1×64×56×56 float32" (None: unreadable)."""
    m = _ARG.match(arg)
    if not m or m["dtype"] not in BY_NAME:
        return None
    shape = m["shape"]
    n = 1 if shape == "scalar" else math.prod(int(d) for d in re.split("[×x]", shape) if d)
    return n * BY_NAME[m["dtype"]].itemsize


def kernel_rows(profile: Profile, peak_gflops: float | None, bandwidth_gbs: float | None) -> list[dict[str, Any]]:
    """The profile's kernels, slowest first, numbered, each with its FLOPs (2 × MACs), the bytes it must move
    (compulsory traffic: every argument, inputs and outputs, read or written once per call), its arithmetic
    intensity (FLOPs / bytes), achieved GFLOP/s and the share of its roofline bound min(peak, bandwidth × I)."""
    total = float(profile.kernels_seconds)
    rows = []
    for i, k in enumerate(profile.kernels, 1):
        calls = k.calls or 1
        t = float(k.total_seconds)
        sizes = [arg_bytes(a) for a in k.args]
        moved = sum(s for s in sizes if s is not None) * calls if sizes and None not in sizes else None
        flops = 2 * int(k.macs) if k.macs else None
        gflops = flops / t / 1e9 if flops and t > 0 else None
        intensity = flops / moved if flops and moved else None
        bound = None
        if intensity is not None and peak_gflops and bandwidth_gbs:
            bound = min(peak_gflops, bandwidth_gbs * intensity)
        nodes = list(k.nodes)
        rows.append({"rank": i, "name": k.name, "calls": calls, "seconds": t, "time": seconds(t),
                     "share": f"{100 * t / total:.1f}%" if total else "", "macs": k.macs,
                     "macs_text": f"{k.macs:,}" if k.macs else "", "flops": flops,
                     "gflops": gflops, "gflops_text": number(gflops), "bytes": moved,
                     "bytes_text": _bytes(moved), "intensity": intensity, "intensity_text": number(intensity),
                     "bound_share": f"{100 * gflops / bound:.0f}%" if gflops and bound else "",
                     "nodes": ", ".join(nodes[:4]) + (f" … (+{len(nodes) - 4})" if len(nodes) > 4 else ""),
                     "args": ", ".join(k.args)})
    return rows


# ---- environment -------------------------------------------------------------------------------------------------
def environment_rows(env: Environment) -> list[tuple[str, str]]:
    cpu, load, gpu = env.cpu, env.load, env.gpu
    rows = [("Host", env.host or ""), ("OS", env.os or ""), ("Python", env.python or ""),
            ("CPU", " ".join(x for x in (cpu.model or "", f"(LLVM: {cpu.llvm_cpu})" if cpu.llvm_cpu else "") if x)),
            ("Cores", f"{cpu.physical_cores or '?'} physical, {cpu.logical_cpus or '?'} logical"
             if cpu.physical_cores or cpu.logical_cpus else ""),
            ("SIMD / matrix flags", " ".join(cpu.flags)),
            ("Peak fp32 (measured)", f"{number(cpu.peak_gflops)} GFLOP/s" if cpu.peak_gflops else "not measured"),
            ("Peak: how", cpu.peak_method or ""),
            ("Memory bandwidth (measured)", f"{number(cpu.bandwidth_gbs)} GB/s" if cpu.bandwidth_gbs
             else "not measured"),
            ("Bandwidth: how", cpu.bandwidth_method or ""),
            ("GPU", "none" if not gpu else f"{gpu.name or '?'} (driver {gpu.driver or '?'})")]
    if load is not None:
        def avg(v: list[float] | None) -> str:
            return " / ".join(f"{x:.2f}" for x in v) if v is not None else ""
        rows.append(("Load average (1, 5, 15 min)",
                     f"before {avg(load.before)}; after {avg(load.after)}; {load.cores or '?'} cores"))
    return [(k, v) for k, v in rows if v]


def package_rows(env: Environment) -> list[tuple[str, str]]:
    return [(str(k), "absent" if v is None else str(v)) for k, v in sorted(env.packages.items())]


# ---- the index -------------------------------------------------------------------------------------------------
def index(results: list[BenchResults]) -> dict[str, Any]:
    """Models × targets × engines: each result's median latency per engine at its smallest batch."""
    engines: list[str] = list(dict.fromkeys(e.label for r in results for e in r.engines))
    rows = []
    for i, r in enumerate(results):
        bs = r.batches
        cells = {}
        for e in r.engines:
            m = e.at_batch(bs[0]) if bs and e.status == "ok" else None
            cells[e.label] = {"text": seconds(m.median) if m else e.status, "value": m.median if m else None}
        card = summary(r)
        rows.append({"anchor": f"r{i + 1}", "model": r.model.name or "", "target": r.target.name or "",
                     "batch": bs[0] if bs else "", "params": r.model.params, "params_text": card["params"],
                     "macs": r.model.macs, "macs_text": card["macs"],
                     "cells": [cells.get(name, {"text": "", "value": None}) for name in engines],
                     "speedup": card["speedup"], "created": r.created or ""})
    return {"engines": engines, "rows": rows}
