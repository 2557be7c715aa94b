"""The report's charts: matplotlib figures saved by its SVG backend (no Agg, no pyplot, no GUI) and inlined.

Text stays text (`svg.fonttype = "none"`): no glyph outlines and no font files, only a font-family list that the
browser resolves locally. matplotlib writes text and attributes XML-escaped; labels that come from a model are
also escaped for mathtext (`$` would start a formula). Each chart's element ids are prefixed with its own name, so
that several SVGs inlined in one page never share an id.
"""
from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from archc.measurement.results import TuningPoint

RC: Any = {  # matplotlib's own rc keys (typed there as literals)
    "svg.fonttype": "none",
    "svg.hashsalt": "archc-report",  # ids from a fixed salt: the same input gives the same file
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 72,
}
WIDTH = 9.5  # inches at 72 points each: 684 pt, about 910 CSS pixels
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
_ID_REF = re.compile(r'(\bid="|xlink:href="#|\bhref="#|url\(#)')


def label(text: Any, most: int = 48) -> str:
    """A model-supplied string as matplotlib text: shortened, `$` escaped so mathtext never parses it."""
    s = str(text)
    if len(s) > most:
        s = s[: most - 1] + "…"
    return s.replace("\\", "\\\\").replace("$", r"\$")


@contextmanager
def figure(w: float, h: float) -> Iterator[Any]:
    import matplotlib
    from matplotlib.figure import Figure
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(w, h), layout="constrained")
        yield fig


def to_svg(fig: Any, name: str) -> str:
    """The figure as an `<svg>` element for inlining: no XML declaration, no DOCTYPE, no metadata, ids unique to
    `name`, the title element naming the chart for screen readers."""
    import matplotlib
    buf = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    # rename ids and references inside tags only (text between tags is never touched)
    svg = re.sub(r"<[^>]+>", lambda m: _ID_REF.sub(lambda r: f"{r.group(1)}{name}-", m.group(0)), svg)
    return svg.replace("<svg ", f'<svg class="chart" role="img" aria-label="{name}" ', 1)


def plain_log(ax: Any, *axes: str) -> None:
    """Log axes labelled 0.1, 1, 10, 200 rather than 10⁻¹ … (the minor ticks too, when a decade is short)."""
    from matplotlib.ticker import FuncFormatter, LogLocator
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def colour_map(names: Sequence[str]) -> dict[str, str]:
    return {n: COLOURS[i % len(COLOURS)] for i, n in enumerate(names)}


def _scale(values: Sequence[float]) -> tuple[str, float]:
    top = max(values, default=0.0)
    return ("s", 1.0) if top >= 1 else ("ms", 1e-3) if top >= 1e-3 else ("µs", 1e-6)


def latency(samples: dict[int, list[tuple[str, list[float]]]], colours: dict[str, str], name: str) -> str:
    """Box plots of every timed sample: one panel per batch size, one box per engine."""
    panels = sorted(samples)
    every = [x for rows in samples.values() for _, xs in rows for x in xs if x > 0]
    wide = bool(every) and max(every) / min(every) > 20  # engines far apart: a log axis shows both
    with figure(WIDTH, sum(0.9 + 0.32 * len(samples[b]) for b in panels)) as fig:
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, b in zip(axes, panels):
            rows = samples[b]
            unit, sc = _scale([x for _, xs in rows for x in xs])
            data = [[x / sc for x in xs] for _, xs in rows]
            box = ax.boxplot(data, orientation="horizontal", patch_artist=True, widths=0.6,
                             flierprops={"markersize": 2, "alpha": 0.5}, medianprops={"color": "black"})
            for patch, (eng, _) in zip(box["boxes"], rows):
                patch.set_facecolor(colours[eng])
                patch.set_alpha(0.75)
            ax.set_yticks(range(1, len(rows) + 1), [label(e) for e, _ in rows])
            ax.invert_yaxis()
            if wide:
                ax.set_xscale("log")
                plain_log(ax, "x")
            ax.set_xlabel(f"latency ({unit}{', log scale' if wide else ''}) per run of batch {b}")
            ax.set_title(f"batch {b}", loc="left")
        return to_svg(fig, name)


def throughput(points: dict[str, dict[int, float]], batches: list[int], colours: dict[str, str], name: str) -> str:
    """Grouped bars: items per second, a group per batch size, a bar per engine."""
    engines = list(points)
    with figure(WIDTH, 3.2) as fig:
        ax = fig.subplots()
        width = 0.8 / max(1, len(engines))
        for i, eng in enumerate(engines):
            xs = [j + (i - (len(engines) - 1) / 2) * width for j, b in enumerate(batches) if b in points[eng]]
            ys = [points[eng][b] for b in batches if b in points[eng]]
            bars = ax.bar(xs, ys, width, label=label(eng), color=colours[eng])
            ax.bar_label(bars, [f"{y:,.0f}" if y >= 100 else f"{y:.3g}" for y in ys], fontsize=7, padding=1)
        ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
        ax.set_ylabel("throughput (items/s)")
        fig.legend(fontsize=8, loc="outside upper center", ncols=min(4, len(engines)), frameon=False)
        ax.margins(y=0.12)
        return to_svg(fig, name)


def kernels(rows: list[dict[str, Any]], name: str, most: int = 20) -> str:
    """Horizontal bars: each kernel's total time (all its calls), slowest on top, numbered as in the table."""
    top = rows[:most]
    unit, sc = _scale([r["seconds"] for r in top])
    with figure(WIDTH, 0.8 + 0.22 * len(top)) as fig:
        ax = fig.subplots()
        ys = list(range(len(top)))
        ax.barh(ys, [r["seconds"] / sc for r in top], color=["#1f77b4" if r["flops"] else "#9aa5b1" for r in top])
        ax.set_yticks(ys, [f"#{r['rank']} {label(r['name'], 48)}" for r in top], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"time per inference ({unit}, all calls); grey: no MACs")
        ax.grid(axis="y", visible=False)
        return to_svg(fig, name)


def roofline(rows: list[dict[str, Any]], peak: float | None, bandwidth: float | None, name: str) -> str:
    """Log-log: achieved GFLOP/s of each kernel with MACs against its arithmetic intensity (FLOPs per byte of
    compulsory traffic), under the compute ceiling (measured peak) and the memory ceiling (measured bandwidth ×
    intensity). Marker area follows the kernel's share of the time; numbers are the table's."""
    pts = [r for r in rows if r["gflops"] and r["intensity"]]
    with figure(WIDTH, 4.2) as fig:
        ax = fig.subplots()
        ax.set_xscale("log")
        ax.set_yscale("log")
        xs = [r["intensity"] for r in pts]
        ys = [r["gflops"] for r in pts]
        lo = min(xs + ([peak / bandwidth] if peak and bandwidth else []), default=0.1) / 3
        hi = max(xs + ([peak / bandwidth] if peak and bandwidth else []), default=100.0) * 3
        grid = [lo * (hi / lo) ** (i / 100) for i in range(101)]
        if bandwidth:
            mem = [bandwidth * x for x in grid]
            roof = [min(m, peak) for m in mem] if peak else mem
            ax.plot(grid, roof, color="#444", lw=1.5,
                    label=f"memory ceiling: {bandwidth:.3g} GB/s × intensity")
        if peak:
            ax.axhline(peak, color="#d62728", lw=1.2, ls="--", label=f"compute ceiling: {peak:.3g} GFLOP/s (peak)")
        total = sum(r["seconds"] for r in pts) or 1.0
        ax.scatter(xs, ys, s=[20 + 400 * r["seconds"] / total for r in pts], color="#1f77b4", alpha=0.7,
                   edgecolors="white", linewidths=0.5, zorder=3, label="kernels (area: share of time)")
        for r in pts[:12]:
            ax.annotate(f"#{r['rank']}", (r["intensity"], r["gflops"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.set_xlim(lo, hi)
        top = max(ys + ([peak] if peak else []), default=1.0)
        bottom = min(ys, default=top / 100)
        ax.set_ylim(bottom / 3, top * 3)
        plain_log(ax, "x", "y")
        ax.set_xlabel("arithmetic intensity (FLOPs per byte of compulsory traffic)")
        ax.set_ylabel("achieved GFLOP/s")
        fig.legend(fontsize=8, loc="outside lower center", ncols=3, frameon=False)
        return to_svg(fig, name)


def tuning_curve(points: Sequence[TuningPoint], name: str) -> str:
    """The best latency found against the number of measured tuning trials."""
    pts = sorted(points, key=lambda p: p.trials)
    unit, sc = _scale([p.best_seconds for p in pts])
    with figure(WIDTH, 2.8) as fig:
        ax = fig.subplots()
        ax.step([p.trials for p in pts], [p.best_seconds / sc for p in pts], where="post", marker="o",
                markersize=3, color="#2ca02c")
        ax.set_xlabel("tuning trials")
        ax.set_ylabel(f"best latency ({unit})")
        ax.set_ylim(bottom=0)
        return to_svg(fig, name)


def bubbles(points: list[dict[str, Any]], name: str) -> str:
    """The lectures' comparison chart without accuracy: one bubble per model (and target), MACs across, the best
    latency up (or MACs up, by model, where no latency was measured), bubble area proportional to parameters."""
    timed = [p for p in points if p.get("latency")]
    targets = list(dict.fromkeys(p["target"] for p in points))
    colours = colour_map(targets)
    big = max((p["params"] or 0 for p in points), default=1) or 1
    area: Callable[[dict[str, Any]], float] = lambda p: 60 + 2400 * (p["params"] or 0) / big  # noqa: E731
    with figure(WIDTH, 4.2) as fig:
        ax = fig.subplots()
        if timed:
            unit, sc = _scale([p["latency"] for p in timed])
            for t in targets:
                sel = [p for p in timed if p["target"] == t]
                ax.scatter([p["macs"] / 1e9 for p in sel], [p["latency"] / sc for p in sel], s=[area(p) for p in sel],
                           alpha=0.55, color=colours[t], edgecolors="black", linewidths=0.5,
                           label=label(t) if len(targets) > 1 else None)
                for p in sel:
                    ax.annotate(label(p["model"], 28), (p["macs"] / 1e9, p["latency"] / sc), fontsize=8,
                                ha="center", va="center")
            ax.set_xscale("log")
            ax.set_yscale("log")
            plain_log(ax, "x", "y")
            ax.set_xlabel("GMACs per image")
            ax.set_ylabel(f"best latency ({unit}, smallest batch)")
            untimed = [p for p in points if not p.get("latency")]
            if untimed:
                ax.set_title("not timed: " + ", ".join(label(p["model"], 20) for p in untimed[:6]), fontsize=8,
                             loc="left")
        else:
            xs = list(range(len(points)))
            ax.scatter(xs, [p["macs"] / 1e9 for p in points], s=[area(p) for p in points], alpha=0.55,
                       color=[colours[p["target"]] for p in points], edgecolors="black", linewidths=0.5)
            ax.set_xticks(xs, [label(p["model"], 20) for p in points], rotation=30, ha="right")
            ax.set_yscale("log")
            plain_log(ax, "y")
            ax.set_ylabel("GMACs per image (no latency measured)")
        if len(targets) > 1 and timed:
            ax.legend(fontsize=8, frameon=False, markerscale=0.3)
        ax.margins(0.15)
        return to_svg(fig, name)

