"""`archc report`: bench results (`archc bench`'s JSON, schema_version 1) rendered into one self-contained HTML
file with Jinja.

One file holds everything: an index across the results when there are several (models × targets × engines, and
the comparison chart), then one section per result: the summary card, latency and throughput per engine and
batch, the per-kernel profile (table, bar chart, roofline), the tuning curve, the analyzer's block table (the
`analyze --format html` rendering itself), the network drawn with its blocks collapsed, and the environment.

Self-contained: charts are inline SVG from matplotlib's SVG backend (`charts`), the drawing inline SVG from
Graphviz or matplotlib (`graph`), CSS inline, no font files, no URL anywhere that the browser would fetch; a
Content-Security-Policy forbids every fetch and lets only the page's own sorting script (by its hash) run.
Everything a model names is escaped (Jinja autoescape; SVG text by the library). The page is complete without
scripts: the script only sorts tables when a header is clicked.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from archc.measurement.results import BenchResults
from archc.render.report import charts, data
from archc.render.report.data import as_results

TEMPLATE = "report.html.j2"
SCRIPT = "sort.js"


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    # autoescape=True unconditionally: every name a model supplies is escaped; charts come in as Markup
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    return env


def _resource(name: str) -> str:
    return resources.files("archc.render.report").joinpath("templates", name).read_text(encoding="utf-8")


def _version() -> str:
    try:
        return metadata.version("archc")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return ""


_TABLE_STYLE = re.compile(r"<style>(.*?)</style>", re.S)
_TABLE_MAIN = re.compile(r"<main>\n?(.*?)</main>", re.S)


def _analysis_tables(analysis: dict[str, Any]) -> tuple[str, str]:
    """The analyzer's block table and totals exactly as `archc analyze --format html` renders them
    (`render_result`): its page's <main> content and its style sheet, to be placed inside this page."""
    from archc.analysis import Analysis
    from archc.render import render_result
    page = render_result(Analysis.from_json(analysis), "html")
    main, style = _TABLE_MAIN.search(page), _TABLE_STYLE.search(page)
    if main is None or style is None:  # the table page changed shape: say so rather than show half of it
        raise RuntimeError("archc.render's HTML page has no <main> or <style>: update archc.render.report")
    return main.group(1), style.group(1)


def _samples(r: BenchResults) -> dict[int, list[tuple[str, list[float]]]]:
    out: dict[int, list[tuple[str, list[float]]]] = {}
    for e in r.ok_engines:
        for m in e.results:
            xs = [float(x) for x in m.latency_s]
            if xs:
                out.setdefault(m.batch, []).append((e.label, xs))
    return out


def _model_page(r: BenchResults, i: int, graph_engine: str | None) -> dict[str, Any]:
    peak, bandwidth = r.environment.cpu.peak_gflops, r.environment.cpu.bandwidth_gbs
    prefix = f"r{i}"
    colours = charts.colour_map([e.label for e in r.engines])
    figures: dict[str, Any] = {}
    samples = _samples(r)
    if samples:
        figures["latency"] = Markup(charts.latency(samples, colours, f"{prefix}-latency"))
        points: dict[str, dict[int, float]] = {}
        for e in r.ok_engines:
            for m in e.results:
                if m.throughput:
                    points.setdefault(e.label, {})[m.batch] = float(m.throughput)
        if points:
            figures["throughput"] = Markup(charts.throughput(points, r.batches, colours, f"{prefix}-throughput"))
    profile = r.profile.profile if r.profile else None
    kernels = data.kernel_rows(profile, peak, bandwidth) if profile else []
    if kernels:
        figures["kernels"] = Markup(charts.kernels(kernels, f"{prefix}-kernels"))
        if any(k["gflops"] and k["intensity"] for k in kernels):
            figures["roofline"] = Markup(charts.roofline(kernels, peak, bandwidth, f"{prefix}-roofline"))
    if r.tuning_curve:
        figures["tuning"] = Markup(charts.tuning_curve(r.tuning_curve, f"{prefix}-tuning"))
    analysis = r.model.analysis
    tables, table_style, graph_how = "", "", ""
    if analysis:
        tables, table_style = _analysis_tables(analysis)
        from archc.render.report import graph
        svg, graph_how = graph.draw(analysis, f"{prefix}-graph", graph_engine)
        if svg:
            figures["graph"] = Markup(svg)
    env, load = r.environment, r.environment.load
    return {
        "anchor": prefix, "card": data.summary(r), "model": r.model, "target": r.target,
        "created": r.created or "", "command": r.command or "", "figures": figures,
        "latency_rows": data.latency_rows(r), "engine_rows": data.engine_rows(r),
        "kernels": kernels, "profile": profile, "peak": peak, "bandwidth": bandwidth,
        "end_to_end": data.seconds(profile.end_to_end_seconds) if profile else "",
        "kernels_sum": data.seconds(profile.kernels_seconds) if profile else "",
        "analysis_tables": Markup(tables), "table_style": table_style, "graph_how": graph_how,
        "environment": data.environment_rows(env), "packages": data.package_rows(env),
        "load_warning": "" if load is None else load.warning or ("the machine was loaded while measuring"
                                                                 if load.loaded else ""),
    }


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def render_report_html(results: Sequence[BenchResults | dict[str, Any]], title: str | None = None,
                       graph_engine: str | None = None) -> str:
    """The report page as a string (see `render_report`)."""
    if not results:
        raise ValueError("a report needs at least one results file")
    records = [as_results(r, f"results #{n}") for n, r in enumerate(results, 1)]
    pages = [_model_page(r, i, graph_engine) for i, r in enumerate(records, 1)]
    models = list(dict.fromkeys(r.model.name or "" for r in records))
    targets = list(dict.fromkeys(r.target.name or "" for r in records))
    if title is None:
        title = (f"{models[0]} on {targets[0]}: archc benchmark" if len(results) == 1
                 else f"archc benchmarks: {_count(len(models), 'model')}, {_count(len(targets), 'target')}")
    index = data.index(records) if len(records) > 1 else None
    bubble = ""
    if index is not None:
        pts = []
        for row in index["rows"]:
            best = [c["value"] for c in row["cells"] if c["value"]]
            pts.append({"model": row["model"], "target": row["target"], "params": row["params"] or 0,
                        "macs": row["macs"] or 0, "latency": min(best) if best else None})
        if any(p["macs"] for p in pts):
            bubble = Markup(charts.bubbles(pts, "index-bubbles"))
    script = _resource(SCRIPT)
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    styles = list(dict.fromkeys(p["table_style"] for p in pages if p["table_style"]))
    return _env().from_string(_resource(TEMPLATE)).render(
        title=title, pages=pages, index=index, bubble=bubble, script=Markup(script), script_hash=digest,
        table_styles=[Markup(s) for s in styles], version=_version(),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def render_report(results: Sequence[BenchResults | dict[str, Any]], out: Path | str, title: str | None = None,
                  graph_engine: str | None = None) -> None:
    """Render bench results (records, or their JSON as `archc.api.bench` returns it) into one self-contained HTML
    file at `out`, written atomically. `graph_engine`: "graphviz" or "matplotlib" for the network drawing (default:
    Graphviz when `dot` is on PATH)."""
    from archc.util.atomic import write_text
    write_text(out, render_report_html(results, title, graph_engine))


__all__ = ["render_report", "render_report_html"]
