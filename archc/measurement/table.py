"""The terminal summary of a results file: one row per engine, variant and batch size, then the engines that
did not run and why, and the load warning."""
from __future__ import annotations

from typing import Any

from archc.measurement.results import BenchResults, load

HEADER = ("engine", "variant", "batch", "median ms", "p90 ms", "× onnxruntime", "GFLOP/s", "% of peak", "max rel diff",
          "top-1")


def table(results: BenchResults | dict[str, Any]) -> str:
    """The summary of the results (as a dict, the JSON form `archc.api.bench` returns, they are `load`ed first)."""
    if not isinstance(results, BenchResults):
        results = load(results)
    peak = results.peak_gflops
    reference = results.reference
    rows = []
    for e in results.engines:
        for r in e.results:
            if r.stats is None:  # no samples (a version-0 file's engine that did not run)
                continue
            median, p90 = r.stats.median, r.stats.p90
            base = reference.median_at(r.batch) if reference is not None else None
            agreement, gflops = r.agreement, r.gflops
            rows.append((e.engine, e.build, str(r.batch), f"{median * 1e3:.3f}", f"{p90 * 1e3:.3f}",
                         f"{median / base:.2f}" if base else "", f"{gflops:.1f}" if gflops else "",
                         f"{100 * gflops / peak:.1f}" if gflops and peak and r.threads else "",  # not remote
                         f"{agreement.max_rel_diff:.1e}" if agreement.max_rel_diff is not None else "—",
                         f"{agreement.top1:.0%}" if agreement.top1 is not None else "—"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(HEADER)]
    lines = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(HEADER, widths)))]
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    for e in results.engines:
        if e.status != "ok":
            lines.append(f"{e.status}: {e.label}: {e.note}")
        elif e.note:
            lines.append(f"note: {e.label}: {e.note}")
    load_state = results.environment.load
    if load_state is not None and load_state.warning:
        lines.append(f"warning: {load_state.warning}")
    if peak:
        lines.append(f"peak: {peak:.1f} GFLOP/s fp32 measured ({results.environment.cpu.peak_method})")
    return "\n".join(lines) + "\n"
