"""`archc bench`: LeNet-5 measured with onnxruntime and archc (untuned) at two batch sizes, a few rounds; the results
file (fields, statistics, agreement, alternation, absent engines), its round trip and versions, the load warning,
and the command end to end."""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import raises

import archc
from archc import api
from archc.errors import UsageError
from archc.measurement import SCHEMA, engines, read, results, stats, tuning, write
from archc.measurement.environment import load_state

ROOT = Path(__file__).resolve().parents[2]
LENET = ROOT / "specs" / "lenet5.arch"
ROUNDS = 4
BATCHES = [1, 3]


@pytest.fixture(autouse=True, scope="module")
def _own_cache(own_tuning_cache):
    yield


@pytest.fixture(scope="module")
def lenet():
    """One run for the module: every engine asked for (the optional ones absent unless installed); its JSON, the
    schema the README documents, which these tests check field by field."""
    return api.bench(LENET, "native", batches=BATCHES, repeat=ROUNDS, variants=["untuned"]).to_json()


def _entry(res: dict, engine: str, variant: str | None = None) -> dict:
    return next(e for e in res["engines"] if e["engine"] == engine and e["variant"] == variant)


@pytest.mark.tvm
def test_schema_fields(lenet):
    assert lenet["schema"] == SCHEMA == "archc-bench" and lenet["schema_version"] == 1
    assert {"created", "command", "environment", "model", "target", "engines", "profile", "tuning_curve"} <= set(lenet)
    env = lenet["environment"]
    assert {"host", "os", "python", "cpu", "gpu", "load", "packages"} <= set(env)
    cpu = env["cpu"]
    assert {"model", "llvm_cpu", "flags", "physical_cores", "logical_cpus", "peak_gflops", "peak_method",
            "bandwidth_gbs", "bandwidth_method"} <= set(cpu)
    assert cpu["peak_gflops"] > 0 and cpu["bandwidth_gbs"] > 0 and "FMA chains" in cpu["peak_method"]
    assert cpu["logical_cpus"] >= 1 and cpu["physical_cores"] >= 1
    assert env["packages"]["archc"] == archc.__version__ and env["packages"]["onnxruntime"]
    assert {"before", "after", "cores", "loaded", "warning"} <= set(env["load"])
    model = lenet["model"]
    assert model["name"] == "lenet5" and model["params"] == 61706 and model["classifier"] is True
    assert model["flops"] == model["analysis"]["totals"]["flops"] > 0  # at batch 1
    assert lenet["target"]["name"] == "native"
    assert [e["engine"] for e in lenet["engines"]] == list(engines.NAMES)  # every engine asked for, in order
    for e in lenet["engines"]:
        assert {"engine", "variant", "status", "note", "version", "compile_seconds", "tuning", "results"} <= set(e)
        for r in e["results"]:
            assert {"batch", "threads", "latency_s", "stats", "throughput", "peak_memory_bytes", "gflops",
                    "agreement"} <= set(r)
    ours = _entry(lenet, "archc", "untuned")
    assert ours["status"] == "ok" and ours["tuning"]["kernels_tuned"] == 0 and ours["compile_seconds"] > 0
    assert [r["batch"] for r in ours["results"]] == BATCHES
    profile = lenet["profile"]
    assert profile["variant"] == "untuned" and profile["batch"] == 1 and profile["kernels"]
    assert lenet["tuning_curve"] is None  # nothing was tuned


@pytest.mark.tvm
def test_no_figure_passes_its_ceiling(lenet):
    """The peak is the instruction limit (independent FMA chains): no engine's and no kernel's GFLOP/s may pass it
    (10% for the noise of a shared machine). Kernels are profiled with their weights flushed from the caches, as
    they run inside the model: timed warm, a big FC layer once ran at 4.5 times the memory roof."""
    peak = lenet["environment"]["cpu"]["peak_gflops"]
    figures = [r["gflops"] for e in lenet["engines"] for r in e["results"]]
    figures += [k["gflops"] for k in lenet["profile"]["kernels"] if k["gflops"] is not None]
    assert figures and max(figures) <= 1.1 * peak, (max(figures), peak)


@pytest.mark.tvm
def test_outputs_agree_with_onnxruntime(lenet):
    for r in _entry(lenet, "archc", "untuned")["results"]:
        assert r["agreement"]["max_rel_diff"] <= 1e-4
        assert r["agreement"]["top1"] == 1.0
    assert all(r["agreement"] == {"max_rel_diff": None, "top1": None}
               for r in _entry(lenet, "onnxruntime")["results"])  # the reference itself


@pytest.mark.tvm
def test_statistics_are_consistent(lenet):
    peak = lenet["environment"]["cpu"]["peak_gflops"]
    for e in lenet["engines"]:
        for r in e["results"]:
            s, xs = r["stats"], r["latency_s"]
            assert len(xs) == ROUNDS
            assert min(xs) == s["min"] <= s["median"] <= s["p90"] <= s["p99"] <= max(xs)
            assert s["min"] <= s["mean"] <= max(xs) and s["std"] >= 0
            assert r["throughput"] == pytest.approx(r["batch"] / s["median"])
            assert r["gflops"] == pytest.approx(lenet["model"]["flops"] * r["batch"] / s["median"] / 1e9)
            assert 0 < r["gflops"] < 10 * peak
            assert r["peak_memory_bytes"] > lenet["environment"]["memory"]["baseline_bytes"] > 0


@pytest.mark.tvm
def test_engines_alternate_in_rotating_rounds(lenet):
    measured = [e for e in lenet["engines"] if e["status"] == "ok"]
    for k, batch in enumerate(BATCHES):
        runs = sorted((start, e["engine"], e["variant"]) for e in measured
                      for start in e["results"][k]["sample_start_s"])
        labels = [(e["engine"], e["variant"]) for e in measured]
        expected = [label for r in range(ROUNDS)
                    for label in labels[r % len(labels):] + labels[:r % len(labels)]]
        assert [(engine, variant) for _, engine, variant in runs] == expected, batch


def test_absent_engine_is_one_sentence(monkeypatch):
    monkeypatch.setattr(engines, "_importable", lambda module: False)
    for name in ("openvino", "iree", "archc"):
        why = engines.absent(name)
        assert why is not None and "not installed" in why and "pip install" in why
    assert "pip install openvino" in engines.absent("openvino")
    monkeypatch.setattr(engines, "_importable", lambda module: module == "torch")
    assert "onnx2torch" in engines.absent("torch") and "PyTorch is installed" in engines.absent("torch")


@pytest.mark.tvm
def test_absent_engines_are_reported(lenet):
    for e in lenet["engines"]:
        if e["status"] == "absent":
            assert e["results"] == [] and "pip install" in e["note"]
        else:
            assert e["status"] == "ok", e["note"]


@pytest.mark.tvm
def test_json_round_trip(lenet, tmp_path):
    path = write(lenet, tmp_path / "lenet.bench.json")
    assert read(path).to_json() == json.loads(json.dumps(lenet))
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary left


def test_newer_or_foreign_files_are_refused(tmp_path):
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schema": SCHEMA, "schema_version": 2, "engines": []}))
    with raises("results-too-new", naming=(str(newer), "schema_version 2", "up to 1")):
        read(newer)
    foreign = tmp_path / "analysis.json"
    foreign.write_text(json.dumps({"schema_version": 1, "model": "lenet5"}))
    with raises("bad-results", naming=str(foreign)):
        read(foreign)
    with raises("bad-results", naming=str(tmp_path / "missing.json")):
        read(tmp_path / "missing.json")


VERSION_0 = {  # the pre-release layout (results.py): benchmarks/backend_speed.py's measurements as JSON
    "schema_version": 0, "created": "2026-11-20T10:00:00Z", "command": "python benchmarks/backend_speed.py",
    "target": "native", "environment": {"host": "vm", "cpu": "AMD EPYC"},
    "model": {"name": "resnet18", "source": "specs/resnet18.arch", "params": 11689512, "macs": 1814073344,
              "flops": 3638007272},
    "engines": [
        {"name": "onnxruntime", "version": "1.32.0", "build_seconds": 0.0,
         "results": [{"batch": 1, "threads": 2, "latency_ms": [14.0, 14.2, 32.1], "max_rel_diff": None}]},
        {"name": "archc untuned", "version": "0.1.0", "build_seconds": 8.5,
         "results": [{"batch": 1, "threads": 2, "latency_ms": [1622.0, 1600.0, 1682.0], "max_rel_diff": 8.7e-07}]},
    ],
}


def test_version_0_is_upgraded(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(VERSION_0))
    data = read(path)
    assert data.to_json()["schema"] == SCHEMA and data.to_json()["schema_version"] == 1
    ort, ours = data.engines
    assert (ort.engine, ort.variant) == ("onnxruntime", None)
    assert (ours.engine, ours.variant, ours.compile_seconds) == ("archc", "untuned", 8.5)
    r = ours.results[0]
    assert r.latency_s == [1.622, 1.6, 1.682] and r.stats is not None and r.stats.median == pytest.approx(1.622)
    assert r.agreement == results.Agreement(max_rel_diff=8.7e-07, top1=None)
    assert r.gflops == pytest.approx(3638007272 / 1.622 / 1e9)
    assert data.environment.cpu.model == "AMD EPYC" and data.target.name == "native"
    assert results.load(json.loads(json.dumps(data.to_json()))) == data  # the upgraded file reads as version 1


def test_load_warning():
    busy = load_state((2.5, 1.0, 0.5), (3.0, 1.2, 0.6), cores=2)
    assert busy.loaded is True and busy.warning and "2.50" in busy.warning and "2 cores" in busy.warning
    idle = load_state((0.3, 0.2, 0.1), (2.1, 0.5, 0.2), cores=2)  # the run's own load afterwards does not count
    assert idle.loaded is False and idle.warning is None
    assert load_state((4.0, 4.0, 4.0), None, cores=4).loaded is True  # at the core count: busy


def test_agreement_and_summary():
    import numpy as np
    want = [np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6]], np.float32)]
    got = [np.array([[0.1, 0.9], [0.3, 0.7], [0.4, 0.6]], np.float32)]
    a = stats.agreement(got, want, classifier=True)
    assert a.top1 == pytest.approx(2 / 3) and a.max_rel_diff == pytest.approx(0.5 / 0.9)
    assert stats.agreement(got, [want[0][:2]], classifier=True) == results.Agreement(max_rel_diff=None, top1=None)
    s = stats.summary([3.0, 1.0, 2.0])
    assert (s.min, s.median, s.mean) == (1.0, 2.0, 2.0) and s.std == pytest.approx(1.0)


def test_tuning_curve_from_records(tmp_path):
    lines = [[0, [[], [5e-3], {}, []]], [1, [[], [2e-3], {}, []]],  # before the run
             [0, [[], [4e-3], {}, []]], [1, [[], [1e10], {}, []]], [1, [[], [1e-3, 3e-3], {}, []]],
             [0, [[], [1e-3], {}, []]], [1, [[], [9e-3], {}, []]]]
    (tmp_path / tuning.RECORDS).write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert tuning.record_count(tmp_path) == 7
    curve = tuning.curve(tmp_path, start=2)
    assert [p.to_json() for p in curve] == [{"trials": 1, "best_seconds": pytest.approx(6e-3)},
                                            {"trials": 4, "best_seconds": pytest.approx(3e-3)},
                                            {"trials": 5, "best_seconds": pytest.approx(3e-3)}]


@pytest.mark.tvm
def test_usage_errors(tmp_path, monkeypatch):
    with raises("bad-usage", UsageError, naming=("--repeat", "--seconds")):
        api.bench(LENET, "native", repeat=3, seconds=1.0)
    for bad in (0, -1, 1025):  # 0 is not "every CPU"
        with raises("bad-threads", UsageError, naming=("--threads", "1 to 1024", f"not {bad}")):
            api.bench(LENET, "native", threads=bad)
    monkeypatch.setenv("TVM_NUM_THREADS", "abc")  # the default when --threads is not given: never "all" silently
    with raises("bad-threads", UsageError, naming="TVM_NUM_THREADS is 'abc'"):
        api.bench(LENET, "native")
    monkeypatch.delenv("TVM_NUM_THREADS")
    with raises("bad-option", UsageError, naming="'tensorrt'"):
        api.bench(LENET, "native", engines=["tensorrt"])
    with raises("bad-usage", UsageError, naming=("--trials", "tuned", "--variants")):
        api.bench(LENET, "native", trials=10)
    with raises("bad-usage", UsageError, naming="--target"):
        api.bench(LENET)
    with raises("needs-tvm-target", UsageError, naming="'onnx'"):
        api.bench(LENET, "onnx")


@pytest.mark.tvm
def test_a_package_is_measured_as_it_is(tmp_path):
    folder = archc.compile(LENET, target="native", output=tmp_path / "lenet5.native", quick=0, batch=2).output
    with raises("bad-usage", UsageError, naming=(folder, "batch 2")):
        api.bench(folder, batches=[1])
    environment = os.environ.get("TVM_NUM_THREADS")
    res = api.bench(folder, engines=["onnxruntime", "archc"], repeat=2, memory=False, profile=False, threads=1)
    ours = res.entry("archc", "package")
    assert ours is not None and ours.status == "ok" and ours.results[0].batch == 2
    # --threads reached the package's pool as a parameter (its library, loaded in this process, has one thread),
    # and nothing was left in the environment
    lib = ctypes.CDLL(str(Path(folder) / "lenet5.so"), mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    assert lib.archc_pool_threads() == 1 and ours.results[0].threads == 1
    assert os.environ.get("TVM_NUM_THREADS") == environment
    assert ours.results[0].agreement.max_rel_diff <= 1e-4
    assert res.target.name == "native"
    assert res.model.analysis and res.model.flops == res.model.analysis["totals"]["flops"] // 2  # per item


@pytest.mark.tvm
def test_command_end_to_end(tmp_path):
    out = tmp_path / "lenet.json"
    report = tmp_path / "lenet.html"
    has_report = _has_report()
    cmd = [sys.executable, "-m", "archc", "bench", str(LENET), "--target", "native", "--batch", "1,2", "--repeat",
           "3", "--engines", "onnxruntime,archc,iree", "--variants", "untuned", "-o", str(out)]
    if has_report:
        cmd += ["--report", str(report)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env={**os.environ}, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["engine", "variant", "batch"]
    assert any(line.split()[:3] == ["archc", "untuned", "2"] for line in lines)
    assert f"wrote {out}" in done.stderr
    data = read(out)
    assert data.command and data.command.startswith("archc bench ") and "--batch 1,2" in data.command
    assert [e.engine for e in data.engines] == ["onnxruntime", "archc", "iree"]
    if has_report:
        assert report.is_file() and f"wrote {report}" in done.stderr


def _has_report() -> bool:
    import importlib.util
    return importlib.util.find_spec("archc.render.report") is not None


@pytest.mark.tvm
def test_the_tuned_variant_records_its_trials_and_curve(tmp_path):
    """`--variants tuned --trials 2 --kernels tvm` on a one-conv net: archc tune first (2 measured MetaSchedule
    trials into the database), then the build applies them; the tuning curve holds the best kernel time after the
    trials, measured, positive. With archc's kernels (the default) the tuned variant searches the convolution's
    configuration instead, and MetaSchedule has nothing left to tune."""
    spec = tmp_path / "one.arch"
    spec.write_text("network one {\n input x: 3x16x16\n c: conv(8, 3) relu\n}\n")
    own = api.bench(spec, "native", batches=[1], repeat=3, variants=["tuned"], trials=2,
                    engines=["onnxruntime", "archc"], memory=False, db=tmp_path / "own", profile=False
                    ).entry("archc", "tuned")
    assert own is not None and own.status == "ok" and own.tuning and own.tuning.kernels == "archc"
    assert own.tuning.convolutions_searched == 1 and own.tuning.kernels_naive == 0
    res = api.bench(spec, "native", batches=[1], repeat=3, variants=["tuned"], trials=2,
                    engines=["onnxruntime", "archc"], memory=False, db=tmp_path / "db", kernels="tvm", profile=False)
    tuned = res.entry("archc", "tuned")
    assert tuned is not None and tuned.status == "ok" and tuned.tuning, tuned
    assert tuned.tuning.trials == 2 and tuned.tuning.kernels_tuned >= 1
    assert tuned.tuning.kernels_naive == 0 and tuned.tuning.seconds and tuned.tuning.seconds > 0
    curve = res.tuning_curve
    assert curve and curve[-1].trials <= 2 and all(p.best_seconds > 0 for p in curve)
    assert tuned.results[0].agreement.max_rel_diff <= 1e-4


@pytest.mark.tvm
def test_each_precision_is_a_build_of_its_own_measured_beside_its_peer():
    """--precision fp32,auto: one archc package per precision (auto resolved by the build: bf16 on a CPU with
    AMX-BF16 or AVX512-BF16, else fp32, recorded as built), and OpenVINO's bf16 run beside its f32 one (absent,
    with the reason, where OpenVINO or the CPU's bf16 is missing)."""
    from archc.lower.kernels import amx
    from archc.measurement.environment import all_cpu_flags
    res = api.bench(LENET, "native", precisions=["fp32", "auto"], engines=["onnxruntime", "archc", "openvino"],
                    repeat=2, memory=False, profile=False)
    assert res.settings.precisions == ["fp32", "auto"] and "openvino-bf16" in res.settings.engines
    ours = [e for e in res.engines if e.engine == "archc"]
    chosen = "bf16" if amx.request_tiles() or "avx512_bf16" in all_cpu_flags() else "fp32"
    assert [(e.variant, e.precision, e.status) for e in ours] == [("default", "fp32", "ok"), ("default", chosen, "ok")]
    assert all(e.results[0].agreement.max_rel_diff <= (3e-2 if e.precision == "bf16" else 1e-4) for e in ours)
    assert ours[1].label == ("archc (default, bf16)" if chosen == "bf16" else "archc (default)")
    if chosen == "bf16":  # the bf16 build's accuracy over its verification's 16 more inputs, beside its speed
        assert "bf16 build's top-1 class agrees with onnxruntime fp32's on" in ours[1].note
    peer = res.entry("openvino-bf16")
    assert peer is not None and (peer.status == "ok" or "bf16" in (peer.note or "") or "not installed" in peer.note)
    assert results.BenchResults.from_json(res.to_json()).to_json() == res.to_json()
    with raises("bad-option", UsageError, naming="fp16"):
        api.bench(LENET, "native", precisions=["fp16"])


def test_onnxruntime_on_the_int8_model_is_the_int8_peer():
    """`--engines onnxruntime-int8`: onnxruntime on the model's int8 QDQ form (quantized as `archc quantize` does,
    on random calibration inputs), measured beside onnxruntime fp32 and compared with it like any engine."""
    res = api.bench(LENET, "native", engines=["onnxruntime", "onnxruntime-int8"], batches=[1], repeat=2,
                    memory=False, profile=False, threads=1).to_json()
    entry = _entry(res, "onnxruntime-int8")
    assert entry["status"] == "ok" and "int8 QDQ" in entry["note"]
    (result,) = entry["results"]
    assert 0 < result["agreement"]["max_rel_diff"] < 0.2  # int8, not the float32 model again
    assert result["stats"]["median"] > 0
    assert engines.absent("onnxruntime-int8") is None
