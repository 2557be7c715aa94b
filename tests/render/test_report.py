"""`archc report`: real bench results of LeNet-5 (and of a tiny residual net, for the index) rendered into one HTML
file and opened in a real headless browser (Debian's chromium, through the DevTools protocol: `browser.py`), as a
person would: no console error, no request but the file itself, charts and tables there, with scripts and without,
a screenshot that is not blank; names from a model escaped; results files of another schema refused plainly."""
from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import cli_error, raises
from onnx import TensorProto, helper, numpy_helper

from archc.deploy.profile import KernelTime, Profile
from archc.measurement import read as read_results
from archc.render.report import render_report
from archc.render.report.data import arg_bytes, kernel_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import SKIP_REASON, browser, find_chromium, png_colours  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EVIL = "<script>alert(1)</script>"
EVIL2 = "<img src=x onerror=alert(2)>"
TINY = """block basic(width) {
  add {
    main: { conv(width, 3) bn relu; conv(width, 3) bn }
    identity
  }
  relu
}
network tinyres(num_classes = 10) {
  input image: 3x32x32
  stem: conv(16, 3, stride=2) bn relu
  layer1: basic(16) * 2
  gap
  flatten
  fc: dense(num_classes)
}
"""
needs_browser = pytest.mark.skipif(find_chromium() is None, reason=SKIP_REASON)


def bench(spec: Path, work: Path, batches: tuple[int, ...] = (1, 4), rounds: int = 15) -> dict:
    """Real results for a report: `archc bench` of `spec` on this machine (onnxruntime, archc untuned, OpenVINO
    where installed), kept small (no tuning pass, no per-engine memory children) so that a test takes seconds. As
    JSON: the tests make variants of it (another machine, a tuning curve) the way a file would hold them."""
    import archc.api
    return archc.api.bench(spec, "native", batches=list(batches), repeat=rounds, variants=["untuned"],
                           engines=["onnxruntime", "archc", "openvino"], memory=False,
                           output=work / f"{spec.stem}.native.bench.json").to_json()


@pytest.fixture(scope="module")
def lenet(own_tuning_cache, tmp_path_factory) -> dict:
    return bench(ROOT / "specs" / "lenet5.arch", tmp_path_factory.mktemp("lenet5"))


@pytest.fixture(scope="module")
def tiny(own_tuning_cache, tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("tinyres")
    (work / "tinyres.arch").write_text(TINY)
    return bench(work / "tinyres.arch", work, batches=(1,), rounds=10)


@pytest.fixture(scope="module")
def chromium():
    if find_chromium() is None:
        pytest.skip(SKIP_REASON)
    with browser() as b:
        yield b


def write(tmp_path: Path, results: list[dict], name: str = "report.html", **kw) -> Path:
    out = tmp_path / "reports" / name
    render_report(results, out, **kw)
    return out


def assert_quiet(page, path: Path) -> None:
    """Nothing fetched but the file itself, nothing written to the console as an error, no dialog opened."""
    assert page.requests == [path.resolve().as_uri()], page.requests
    assert page.errors == [], page.errors
    assert page.dialogs == []


def assert_self_contained(html: str) -> None:
    """No URL in the page that a browser would fetch: every src/href is a fragment or data:, no CSS url() or
    @import, no <link> but the data: icon; the only http(s) strings are SVG's XML namespace names."""
    for attr in re.findall(r'\b(?:src|href|xlink:href)="([^"]*)"', html):
        assert attr.startswith(("#", "data:")), attr
    assert "@import" not in html and not re.search(r"url\((?!#)", html)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls


# ---- one model, in the browser -------------------------------------------------------------------------------------
@pytest.mark.tvm
@needs_browser
def test_lenet5_report_in_a_browser(lenet, chromium, tmp_path):
    out = write(tmp_path, [lenet])
    html = out.read_text()
    assert_self_contained(html)
    page = chromium.page(out)
    assert_quiet(page, out)
    charts = page.evaluate("Array.from(document.querySelectorAll('svg.chart')).map(s => s.getAttribute('aria-label'))")
    assert {"r1-latency", "r1-throughput", "r1-kernels", "r1-roofline", "r1-graph"} <= set(charts)
    # the charts' text is text (svg.fonttype none), not outlines: kernel names and axis labels are in the DOM
    svg_text = page.evaluate("Array.from(document.querySelectorAll('svg text')).map(t => t.textContent).join('|')")
    assert "arithmetic intensity" in svg_text and lenet["profile"]["kernels"][0]["name"] in svg_text
    kernels = len(lenet["profile"]["kernels"])
    rows = page.evaluate("Array.from(document.querySelectorAll('table')).map(t => t.tBodies[0].rows.length)")
    assert kernels in rows  # the kernel table, complete
    text = page.evaluate("document.body.innerText")
    absent = ["absent"] if any(e["status"] == "absent" for e in lenet["engines"]) else []  # where not installed
    for want in ("lenet5 on native", "Best latency", "archc's latency against onnxruntime's",
                 "Agreement with onnxruntime",
                 "lenet5: blocks", "Peak fp32 (measured)", "onnxruntime", "archc (untuned)", *absent):
        assert want in text, want
    png = page.screenshot(width=1280, height=1600)
    (tmp_path / "screenshot.png").write_bytes(png)
    width, height, colours = png_colours(png)
    assert (width, height) == (1280, 1600) and colours > 50  # not blank: text, charts, tables in many shades


@pytest.mark.tvm
@needs_browser
def test_scripts_off_the_page_is_complete_and_scripts_on_sort(lenet, chromium, tmp_path):
    out = write(tmp_path, [lenet])
    count = "Array.from(document.querySelectorAll('tbody tr')).length"
    on, off = chromium.page(out), chromium.page(out, scripts=False)
    assert_quiet(off, out)
    assert off.evaluate(count) == on.evaluate(count) > 20  # every row is in the HTML itself
    assert off.evaluate("document.querySelectorAll('input.filter').length") == 0
    assert on.evaluate("document.querySelectorAll('input.filter').length") == 1
    # click "Time" of the kernel table twice: ascending, then descending (the slowest first again)
    first = ("(() => { const t = document.querySelector('table.filterable');"
             " const th = Array.from(t.tHead.rows[0].cells).find(c => c.textContent === 'Time'); th.click();"
             " return t.tBodies[0].rows[0].cells[1].textContent; })()")
    fastest = min(lenet["profile"]["kernels"], key=lambda k: k["total_seconds"])["name"]
    slowest = lenet["profile"]["kernels"][0]["name"]
    assert on.evaluate(first) == fastest
    assert on.evaluate(first) == slowest
    assert on.errors == []


# ---- several results: the index ------------------------------------------------------------------------------------
@pytest.mark.tvm
@needs_browser
def test_index_of_several_results(lenet, tiny, chromium, tmp_path):
    out = write(tmp_path, [lenet, tiny], title="two models")
    assert_self_contained(out.read_text())
    page = chromium.page(out)
    assert_quiet(page, out)
    charts = page.evaluate("Array.from(document.querySelectorAll('svg.chart')).map(s => s.getAttribute('aria-label'))")
    assert "index-bubbles" in charts and "r2-graph" in charts and "r2-roofline" in charts
    index = page.evaluate("Array.from(document.querySelectorAll('#index tbody tr')).map(r => r.innerText)")
    assert len(index) == 2 and index[0].startswith("lenet5") and index[1].startswith("tinyres")
    # ids stay unique although every chart is a separate matplotlib SVG
    ids = page.evaluate("Array.from(document.querySelectorAll('[id]')).map(e => e.id)")
    assert len(ids) == len(set(ids))
    # the tiny net's blocks are collapsed in its drawing: one box per block instance
    graph = page.evaluate("Array.from(document.querySelectorAll('svg[aria-label=\"r2-graph\"] text'))"
                          ".map(t => t.textContent).join('|')")
    assert "layer1_1 · basic" in graph and "layer1_2 · basic" in graph and "main" not in graph


# ---- escaping --------------------------------------------------------------------------------------------------------
def evil_onnx(path: Path) -> Path:
    """A foreign ONNX file whose graph and nodes are named like markup: a Conv and a Relu."""
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name=EVIL, pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"], name=EVIL2)],
        EVIL, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.tvm
@needs_browser
@pytest.mark.parametrize("drawing", ["matplotlib", pytest.param("graphviz", marks=pytest.mark.skipif(
    shutil.which("dot") is None, reason="needs Graphviz's dot on PATH (apt-get install graphviz)"))])
def test_names_from_a_model_are_escaped(lenet, chromium, tmp_path, drawing):
    """A model, its nodes and kernels called <script>alert(1)</script>: shown as text, nothing runs (the network
    drawn by either library)."""
    import archc
    analysis = archc.analyze(evil_onnx(tmp_path / "evil.onnx")).to_json()
    analysis["model"] = EVIL
    results = copy.deepcopy(lenet)
    results["model"].update(name=EVIL, source=EVIL2, analysis=analysis)
    results["target"]["description"] = EVIL2
    results["profile"]["kernels"][0].update(name=EVIL, nodes=[EVIL, EVIL2])
    next(e for e in results["engines"] if e["engine"] == "archc")["note"] = EVIL2  # the engines table's notes
    out = write(tmp_path, [results, lenet], graph_engine=drawing)
    html = out.read_text()
    assert "<script>alert" not in html and "<img src=x" not in html
    page = chromium.page(out)
    assert_quiet(page, out)  # no alert dialog, no error, no request for "x"
    assert page.evaluate("document.scripts.length") == 1  # the page's own sorting script only
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    text = page.evaluate("document.body.innerText")
    assert text.count(EVIL) >= 5 and EVIL2 in text  # heading, card, index, kernel table, analysis table, ...
    assert page.evaluate("document.title").startswith("archc benchmarks")
    svg_text = page.evaluate("Array.from(document.querySelectorAll('svg text')).map(t => t.textContent)")
    assert any(EVIL in t for t in svg_text)  # the kernel bar chart's label: matplotlib escaped it
    assert any(EVIL2 in t for t in svg_text)  # the network drawing's node


@pytest.mark.tvm
def test_tuning_curve_chart(lenet, tmp_path):
    """The tuning curve where there is one (the test's results have no tuned variant: here the running best of
    archc's timed runs stands in for it, to draw the chart from measured numbers)."""
    results = copy.deepcopy(lenet)
    runs = next(e for e in results["engines"] if e["engine"] == "archc")["results"][0]["latency_s"]
    results["tuning_curve"] = [{"trials": i + 1, "best_seconds": min(runs[: i + 1])} for i in range(len(runs))]
    html = write(tmp_path, [results]).read_text()
    assert 'aria-label="r1-tuning"' in html and "tuning trials" in html
    assert_self_contained(html)


# ---- reading results -------------------------------------------------------------------------------------------------
def test_results_of_another_schema_are_refused_plainly(tmp_path):
    """A newer schema version, or a file that is not bench results at all: one sentence, exit 1, no report."""
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schema": "archc-bench", "schema_version": 99, "engines": []}))
    with raises("results-too-new", naming=("newer.json", "99")):
        read_results(newer)
    other = tmp_path / "analysis.json"
    other.write_text(json.dumps({"schema_version": 1, "model": "lenet5", "layers": []}))
    with raises("bad-results", naming="analysis.json"):
        read_results(other)
    cli = subprocess.run([sys.executable, "-m", "archc", "report", str(newer), "-o", str(tmp_path / "r.html")],
                         capture_output=True, text=True)
    cli_error(cli, "results-too-new", 1, naming="99")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.tvm
def test_results_of_schema_version_0_are_upgraded_and_rendered(lenet, tmp_path):
    """Version 0 (archc's pre-release benchmark script's JSON, `archc.measurement.results`' doc) is read as version 1:
    here the LeNet-5 measurements written the old way, milliseconds and all."""
    bench_results = pytest.importorskip("archc.measurement.results", reason="archc bench's results module")
    old = {"schema_version": 0, "created": lenet["created"], "command": lenet["command"], "target": "native",
           "environment": {"host": lenet["environment"]["host"], "cpu": lenet["environment"]["cpu"]["model"]},
           "model": {k: lenet["model"][k] for k in ("name", "source", "params", "macs", "flops")},
           "engines": [{"name": " ".join(x for x in (e["engine"], e["variant"]) if x), "version": e["version"],
                        "build_seconds": e["compile_seconds"], "note": e["note"],
                        "results": [{"batch": m["batch"], "threads": m["threads"],
                                     "latency_ms": [x * 1e3 for x in m["latency_s"]],
                                     "max_rel_diff": m["agreement"]["max_rel_diff"]} for m in e["results"]]}
                       for e in lenet["engines"]]}
    path = tmp_path / "v0.json"
    path.write_text(json.dumps(old))
    results = read_results(path)
    assert results == bench_results.read(path) and isinstance(results, bench_results.BenchResults)
    html = write(tmp_path, [results]).read_text()
    assert "lenet5 on native" in html and 'aria-label="r1-latency"' in html and "archc (untuned)" in html
    assert "None" not in re.sub(r"<[^>]+>", "", html)  # fields version 0 lacks are left blank, not "None"


@pytest.mark.tvm
def test_cli_writes_the_report(lenet, tmp_path):
    results = tmp_path / "lenet5.json"
    results.write_text(json.dumps(lenet))
    out = tmp_path / "reports" / "lenet5.html"
    cli = subprocess.run([sys.executable, "-m", "archc", "report", str(results), "-o", str(out), "--title", "LeNet"],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "<title>LeNet</title>" in out.read_text()


# ---- the arithmetic behind the roofline ------------------------------------------------------------------------
def test_arithmetic_intensity_is_compulsory_traffic():
    assert arg_bytes("1×64×56×56 float32") == 64 * 56 * 56 * 4
    assert arg_bytes("scalar int64") == 8 and arg_bytes("3x3 float16") == 18 and arg_bytes("1×2 complex") is None
    profile = Profile("pkg", "native", [
        KernelTime("conv", seconds=1e-3, calls=2, macs=1000, nodes=["a", "b"],
                   args=["1×10 float32", "10×10 float32", "1×10 float32"]),
        KernelTime("pool", seconds=0.0, calls=1, macs=0, nodes=[], args=["1×10 float32"])], end_to_end_seconds=2e-3)
    assert profile.kernels_seconds == 2e-3
    conv, pool = kernel_rows(profile, peak_gflops=1.0, bandwidth_gbs=0.001)
    assert conv["bytes"] == 2 * (40 + 400 + 40) and conv["flops"] == 2000
    assert conv["intensity"] == pytest.approx(2000 / 960) and conv["gflops"] == pytest.approx(2000 / 2e-3 / 1e9)
    assert conv["bound_share"] == f"{100 * conv['gflops'] / (0.001 * conv['intensity']):.0f}%"
    assert pool["intensity"] is None and pool["gflops"] is None


@pytest.mark.tvm
@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot on PATH (apt-get install graphviz)")
def test_network_drawn_by_graphviz_when_present(tiny, tmp_path):
    html = write(tmp_path, [tiny], graph_engine="graphviz").read_text()
    assert "drawn by Graphviz (dot)" in html and 'aria-label="r1-graph"' in html
    assert_self_contained(html)
