"""The terminal summary of a results file: one row per engine, variant and batch size, then the engines that
did not run and why, and the load warning."""
from __future__ import annotations

from typing import Any

HEADER = ("engine", "variant", "batch", "median ms", "p90 ms", "× onnxruntime", "GFLOP/s", "% of peak", "max rel diff",
          "top-1")


def table(results: dict[str, Any]) -> str:
    peak = (results.get("environment") or {}).get("cpu", {}).get("peak_gflops")
    reference = {r["batch"]: r["stats"]["median"] for e in results["engines"] if e["engine"] == "onnxruntime"
                 for r in e["results"] if r.get("stats")}
    rows = []
    for e in results["engines"]:
        for r in e["results"]:
            median, p90 = r["stats"]["median"], r["stats"]["p90"]
            base = reference.get(r["batch"])
            agreement = r.get("agreement") or {}
            gflops = r.get("gflops")
            rows.append((e["engine"], e["variant"] or "", str(r["batch"]), f"{median * 1e3:.3f}", f"{p90 * 1e3:.3f}",
                         f"{median / base:.2f}" if base else "", f"{gflops:.1f}" if gflops else "",
                         f"{100 * gflops / peak:.1f}" if gflops and peak and r.get("threads") else "",  # not remote
                         f"{agreement['max_rel_diff']:.1e}" if agreement.get("max_rel_diff") is not None else "—",
                         f"{agreement['top1']:.0%}" if agreement.get("top1") is not None else "—"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(HEADER)]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(HEADER, widths)))]
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    for e in results["engines"]:
        if e["status"] != "ok":
            label = e["engine"] + (f" ({e['variant']})" if e["variant"] else "")
            lines.append(f"{e['status']}: {label}: {e['note']}")
        elif e["note"]:
            lines.append(f"note: {e['engine']}: {e['note']}")
    load = (results.get("environment") or {}).get("load") or {}
    if load.get("warning"):
        lines.append(f"warning: {load['warning']}")
    if peak:
        lines.append(f"peak: {peak:.1f} GFLOP/s fp32 measured ({results['environment']['cpu']['peak_method']})")
    return "\n".join(lines) + "\n"
