"""What a report shows, computed from bench results (the `archc-bench` JSON, schema_version 1): engine labels,
the summary card, the latency table, the kernels with their arithmetic intensity, the index across results.
Plain dicts and numbers; the charts (`charts`) and the template draw them."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from archc.errors import ArchcError
from archc.measurement.results import SCHEMA, SCHEMA_VERSION  # the results schema: declared there, once
from archc.shapes import BY_NAME

_ARG = re.compile(r"^\s*(?P<shape>[0-9×x]+|scalar)\s+(?P<dtype>\w+)\s*$")


def read_results(path: str | Path) -> dict[str, Any]:
    """One bench results file, read by `archc.measurement.results.read`: this schema version, or an older one it knows
    how to upgrade; anything else is refused there with one sentence."""
    from archc.measurement.results import read
    return read(path)


def check_results(data: Any, where: str = "the results") -> None:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ArchcError(f"'{where}' is not archc bench results (schema {found!r}, expected {SCHEMA!r}); write it "
                         "with `archc bench`")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ArchcError(f"'{where}' holds bench results of schema version {version}; this archc reads version "
                         f"{SCHEMA_VERSION}: run `archc bench` again with this version")


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
def engine_label(e: dict[str, Any]) -> str:
    return f"{e['engine']} ({e['variant']})" if e.get("variant") else str(e["engine"])


def ok_engines(r: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in r.get("engines", []) if e.get("status") == "ok" and e.get("results")]


def batches(r: dict[str, Any]) -> list[int]:
    return sorted({int(m["batch"]) for e in ok_engines(r) for m in e["results"]})


def median(m: dict[str, Any]) -> float | None:
    stats = m.get("stats") or {}
    v = stats.get("median")
    if v is None and m.get("latency_s"):
        xs = sorted(m["latency_s"])
        v = xs[len(xs) // 2]
    return float(v) if v is not None else None


def at_batch(e: dict[str, Any], batch: int) -> dict[str, Any] | None:
    return next((m for m in e.get("results", []) if int(m["batch"]) == batch), None)


def latency_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per engine and batch: the statistics, throughput, GFLOP/s (and % of the measured peak), memory,
    agreement with onnxruntime."""
    peak = ((r.get("environment") or {}).get("cpu") or {}).get("peak_gflops")
    rows = []
    for e in ok_engines(r):
        for m in sorted(e["results"], key=lambda m: m["batch"]):
            st = m.get("stats") or {}
            agree = m.get("agreement") or {}
            g = m.get("gflops")
            rows.append({
                "engine": engine_label(e), "batch": m["batch"], "threads": m.get("threads", ""),
                "min": seconds(st.get("min")), "median": seconds(median(m)), "p90": seconds(st.get("p90")),
                "p99": seconds(st.get("p99")), "std": seconds(st.get("std")),
                "median_s": median(m) or 0.0,
                "throughput": number(m.get("throughput")), "gflops": number(g),
                "peak_share": f"{100 * g / peak:.1f}%" if g and peak else "",
                "memory": _bytes(m.get("peak_memory_bytes")),
                "rel_diff": "" if agree.get("max_rel_diff") is None else f"{agree['max_rel_diff']:.2e}",
                "top1": "" if agree.get("top1") is None else f"{100 * agree['top1']:.0f}%",
                "samples": len(m.get("latency_s") or []),
            })
    return rows


def _bytes(n: int | None) -> str:
    from archc.render.table import human_bytes
    return "" if n is None else human_bytes(n)


def engine_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Every engine asked for, present or not: status, version, build and tuning, the note (why absent)."""
    rows = []
    for e in r.get("engines", []):
        t = e.get("tuning") or {}
        own = f"{t['kernels_archc']} archc kernels, " if t.get("kernels") == "archc" and t.get("kernels_archc") else ""
        tuning = (f"{own}{t.get('kernels_tuned', 0)} from the tuning database, {t.get('kernels_naive', 0)} naive; "
                  f"{t.get('trials', 0)} trials") if t else ""
        rows.append({"engine": engine_label(e), "status": e.get("status") or "", "version": e.get("version") or "",
                     "compile": seconds(e.get("compile_seconds")), "tuning": tuning, "note": e.get("note") or ""})
    return rows


def versus(mine: float, theirs: float) -> str:
    """A latency against another's, in words that cannot be misread: "1.19× slower", "1.25× faster", "equal"."""
    if round(mine / theirs, 2) == 1.0:
        return "equal (1.00×)"
    return f"{mine / theirs:.2f}× slower" if mine > theirs else f"{theirs / mine:.2f}× faster"


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """The card: model, target, params, MACs, best latency (at the smallest batch measured), the best archc's
    latency against onnxruntime's there (`versus`), and archc's agreement with onnxruntime (worst over batches and
    variants)."""
    from archc.render.table import si
    model = r.get("model") or {}
    card: dict[str, Any] = {"model": model.get("name") or "", "target": (r.get("target") or {}).get("name") or "",
                            "params": f"{model['params']:,}" if model.get("params") is not None else "",
                            "macs": si(model["macs"]) if model.get("macs") is not None else "",
                            "flops": si(model["flops"]) if model.get("flops") is not None else "",
                            "best": "", "best_engine": "", "batch": None, "speedup": "", "speedup_vs": "",
                            "agreement": "", "top1": ""}
    bs = batches(r)
    if not bs:
        return card
    b = bs[0]
    card["batch"] = b
    timed = [(median(m), e) for e in ok_engines(r) if (m := at_batch(e, b)) is not None and median(m)]
    if timed:
        best_s, best_e = min(timed, key=lambda t: t[0] or math.inf)
        card["best"], card["best_engine"] = seconds(best_s), engine_label(best_e)
        ort = [s for s, e in timed if e["engine"] == "onnxruntime"]
        archc = [(s, e) for s, e in timed if e["engine"] == "archc"]
        if ort and archc and ort[0]:
            s, e = min(archc, key=lambda t: t[0] or math.inf)
            card["speedup"] = versus(s, ort[0]) if s else ""
            card["speedup_vs"] = engine_label(e)
    diffs, top1 = [], []
    for e in ok_engines(r):
        if e["engine"] == "onnxruntime":
            continue
        for m in e["results"]:
            agree = m.get("agreement") or {}
            if agree.get("max_rel_diff") is not None:
                diffs.append(float(agree["max_rel_diff"]))
            if agree.get("top1") is not None:
                top1.append(float(agree["top1"]))
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


def kernel_rows(profile: dict[str, Any], peak_gflops: float | None, bandwidth_gbs: float | None
                ) -> list[dict[str, Any]]:
    """The profile's kernels, slowest first, numbered, each with its FLOPs (2 × MACs), the bytes it must move
    (compulsory traffic: every argument, inputs and outputs, read or written once per call), its arithmetic
    intensity (FLOPs / bytes), achieved GFLOP/s and the share of its roofline bound min(peak, bandwidth × I)."""
    total = float(profile.get("kernels_seconds") or 0.0) or sum(
        float(k.get("total_seconds") or k["seconds"] * k.get("calls", 1)) for k in profile.get("kernels", []))
    rows = []
    for i, k in enumerate(profile.get("kernels", []), 1):
        calls = int(k.get("calls") or 1)
        t = float(k.get("total_seconds") or k["seconds"] * calls)
        sizes = [arg_bytes(a) for a in k.get("args", [])]
        moved = sum(s for s in sizes if s is not None) * calls if sizes and None not in sizes else None
        flops = 2 * int(k["macs"]) if k.get("macs") else None
        gflops = flops / t / 1e9 if flops and t > 0 else None
        intensity = flops / moved if flops and moved else None
        bound = None
        if intensity is not None and peak_gflops and bandwidth_gbs:
            bound = min(peak_gflops, bandwidth_gbs * intensity)
        nodes = list(k.get("nodes") or [])
        rows.append({"rank": i, "name": k["name"], "calls": calls, "seconds": t, "time": seconds(t),
                     "share": f"{100 * t / total:.1f}%" if total else "", "macs": k.get("macs"),
                     "macs_text": f"{k['macs']:,}" if k.get("macs") else "", "flops": flops,
                     "gflops": gflops, "gflops_text": number(gflops), "bytes": moved,
                     "bytes_text": _bytes(moved), "intensity": intensity, "intensity_text": number(intensity),
                     "bound_share": f"{100 * gflops / bound:.0f}%" if gflops and bound else "",
                     "nodes": ", ".join(nodes[:4]) + (f" … (+{len(nodes) - 4})" if len(nodes) > 4 else ""),
                     "args": ", ".join(k.get("args", []))})
    return rows


# ---- environment -------------------------------------------------------------------------------------------------
def environment_rows(env: dict[str, Any]) -> list[tuple[str, str]]:
    cpu = env.get("cpu") or {}
    load = env.get("load") or {}
    gpu = env.get("gpu")
    rows = [("Host", env.get("host") or ""), ("OS", env.get("os") or ""), ("Python", env.get("python") or ""),
            ("CPU", " ".join(x for x in (cpu.get("model") or "", f"(LLVM: {cpu['llvm_cpu']})"
                                          if cpu.get("llvm_cpu") else "") if x)),
            ("Cores", f"{cpu.get('physical_cores') or '?'} physical, {cpu.get('logical_cpus') or '?'} logical"
             if cpu.get("physical_cores") or cpu.get("logical_cpus") else ""),
            ("SIMD / matrix flags", " ".join(cpu.get("flags") or [])),
            ("Peak fp32 (measured)", f"{number(cpu.get('peak_gflops'))} GFLOP/s" if cpu.get("peak_gflops") else
             "not measured"),
            ("Peak: how", cpu.get("peak_method") or ""),
            ("Memory bandwidth (measured)", f"{number(cpu.get('bandwidth_gbs'))} GB/s" if cpu.get("bandwidth_gbs")
             else "not measured"),
            ("Bandwidth: how", cpu.get("bandwidth_method") or ""),
            ("GPU", "none" if not gpu else f"{gpu.get('name') or '?'} (driver {gpu.get('driver') or '?'})")]
    if load:
        def avg(v: Any) -> str:
            return " / ".join(f"{x:.2f}" for x in v) if isinstance(v, list) else ""
        rows.append(("Load average (1, 5, 15 min)",
                     f"before {avg(load.get('before'))}; after {avg(load.get('after'))}; {load.get('cores') or '?'} "
                     "cores"))
    return [(k, v) for k, v in rows if v]


def package_rows(env: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), "absent" if v is None else str(v)) for k, v in sorted((env.get("packages") or {}).items())]


# ---- the index -------------------------------------------------------------------------------------------------
def index(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Models × targets × engines: each result's median latency per engine at its smallest batch."""
    engines: list[str] = []
    for r in results:
        for e in r.get("engines", []):
            if engine_label(e) not in engines:
                engines.append(engine_label(e))
    rows = []
    for i, r in enumerate(results):
        bs = batches(r)
        cells = {}
        for e in r.get("engines", []):
            m = at_batch(e, bs[0]) if bs and e.get("status") == "ok" else None
            cells[engine_label(e)] = {"text": seconds(median(m)) if m else e.get("status", ""),
                                      "value": median(m) if m else None}
        model = r.get("model") or {}
        card = summary(r)
        rows.append({"anchor": f"r{i + 1}", "model": model.get("name") or "",
                     "target": (r.get("target") or {}).get("name") or "", "batch": bs[0] if bs else "",
                     "params": model.get("params"), "params_text": card["params"], "macs": model.get("macs"),
                     "macs_text": card["macs"],
                     "cells": [cells.get(name, {"text": "", "value": None}) for name in engines],
                     "speedup": card["speedup"], "created": r.get("created", "")})
    return {"engines": engines, "rows": rows}
