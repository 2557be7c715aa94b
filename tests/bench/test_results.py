"""The records of `archc bench`'s results file (`archc.measurement.results`), on real results committed in reports/
(no model is compiled here): the JSON round trip is byte for byte, a version-0 file upgrades into the records, a
field of the wrong type is one sentence naming it, and the readers (the terminal table, the HTML report) read the
records themselves."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from helpers import raises

from archc.measurement import BenchResults, load, read, results, write
from archc.measurement.table import table

ROOT = Path(__file__).resolve().parents[2]
REAL = sorted((ROOT / "reports").rglob("*.json"))  # archc bench -o, as written: tuned, untuned, packages, older
RESNET18 = ROOT / "reports" / "resnet18.json"


def _v0() -> dict:
    from test_bench import VERSION_0
    return copy.deepcopy(VERSION_0)


@pytest.fixture(scope="module")
def resnet18() -> dict:
    return json.loads(RESNET18.read_text(encoding="utf-8"))


def test_real_files_are_there():
    assert RESNET18 in REAL and len(REAL) >= 2


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_json_round_trip_is_byte_identical(path, tmp_path):
    """read → write gives the file archc bench wrote, byte for byte (key order, numbers, optional keys: a tuning
    record of an older archc without `kernels`, no `environment.memory` where memory was not measured)."""
    records = read(path)
    assert isinstance(records, BenchResults)
    again = write(records, tmp_path / "again.json")
    assert again.read_bytes() == path.read_bytes()
    assert read(again) == records
    assert write(json.loads(path.read_text(encoding="utf-8")), tmp_path / "dict.json").read_bytes() == \
        path.read_bytes()  # the JSON form (what archc.api.bench returns) writes the same file


def test_records_and_their_derived_facts(resnet18):
    r = load(resnet18)
    assert r.model.name == "resnet18" and r.target.name == "native" and r.settings and r.settings.threads == 2
    assert [e.label for e in r.engines] == ["onnxruntime", "archc (default)", "openvino", "iree", "torch"]
    assert [e.label for e in r.ok_engines] == ["onnxruntime", "archc (default)"] and r.batches == [1]
    ort, ours = r.reference, r.entry("archc", "default")
    assert ort is not None and ours is not None and ort.engine == "onnxruntime" and r.entry("archc") is None
    m = ours.at_batch(1)
    assert m is not None and m.stats is not None and ours.at_batch(8) is None
    assert ours.median_at(1) == m.median == m.stats.median == resnet18["engines"][1]["results"][0]["stats"]["median"]
    assert ours.tuning is not None and ours.tuning.kernels == "archc" and ours.tuning.kernels_archc == 21
    assert r.peak_gflops == resnet18["environment"]["cpu"]["peak_gflops"]
    assert r.environment.memory is not None and r.environment.memory.baseline_bytes
    assert r.profile is not None and r.profile.variant == "default" and r.profile.batch == 1
    assert r.profile.profile.kernels_seconds == resnet18["profile"]["kernels_seconds"]  # archc profile's record
    assert isinstance(r.model.analysis, dict)  # archc analyze's JSON, kept as it is


def test_version_0_upgrades_into_records(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_v0()))
    r = read(path)
    assert isinstance(r, BenchResults) and r.settings is None and r.profile is None and r.tuning_curve is None
    ort, ours = r.engines
    assert isinstance(ours, results.EngineResult) and isinstance(ours.results[0], results.Measurement)
    assert ours.label == "archc (untuned)" and ours.compile_seconds == 8.5 and ours.tuning is None
    m = ours.results[0]
    assert m.stats is not None and m.stats.median == pytest.approx(1.622) and m.sample_start_s is None
    assert m.agreement == results.Agreement(8.7e-07, None) and ort.results[0].agreement == results.Agreement()
    assert r.environment.cpu.model == "AMD EPYC" and r.environment.load is None and r.environment.memory is None
    assert load(r.to_json()) == r  # the upgraded results read back as version 1, unchanged
    assert results.UPGRADES[0](_v0()) == r.to_json()  # the upgrade writes every field of version 1


@pytest.mark.parametrize(("edit", "field", "problem"), [
    (lambda d: d["engines"][1]["results"][0].update(batch="1"), "engines[1].results[0].batch", "is not an integer"),
    (lambda d: d["engines"][0]["results"][0]["stats"].pop("median"), "engines[0].results[0].stats.median",
     "is missing"),
    (lambda d: d["engines"][1]["results"][0]["latency_s"].append("fast"), "engines[1].results[0].latency_s",
     "is not a list of numbers"),
    (lambda d: d["environment"]["cpu"].update(peak_gflops="431"), "environment.cpu.peak_gflops", "is not a number"),
    (lambda d: d["engines"][2].update(status="maybe"), "engines[2].status", "is 'maybe', not one of ok, absent, error"),
    (lambda d: d["engines"][1]["tuning"].update(trials=None), "engines[1].tuning.trials", "is null"),
    (lambda d: d["profile"]["kernels"][3].update(seconds=[1]), "profile.kernels[3].seconds", "is not a number"),
    (lambda d: d.update(engines={}), "engines", "is not a list"),
    (lambda d: d["engines"].__setitem__(0, "onnxruntime"), "engines[0]", "is not an object"),
    (lambda d: d["environment"]["packages"].update(numpy=2), "environment.packages.numpy",
     "is not a version string or null"),
    (lambda d: d["settings"]["rounds"].update({"1": "398"}), "settings.rounds.1", "is not an integer"),
])
def test_a_malformed_field_is_one_sentence_naming_it(resnet18, tmp_path, edit, field, problem):
    data = copy.deepcopy(resnet18)
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    with raises("bad-results", naming=(str(path), f"field '{field}' {problem}")) as err:
        read(path)
    message = str(err.value)
    assert "\n" not in message and message.count(". ") == 0  # one sentence
    with raises("bad-results", naming=("'results #1'", f"'{field}'")):
        from archc.render.report import render_report_html
        render_report_html([data])  # the report's entry, given the JSON form


def test_a_record_read_alone_names_its_field():
    with raises("bad-results", results.MalformedResults, naming="'results[0].batch' is missing") as err:
        results.Measurement.from_json({"latency_s": [0.1]})
    assert (err.value.field, err.value.problem) == ("results[0].batch", "is missing")


def test_readers_read_the_records(resnet18):
    """The table and the report take the records (a reader that went back to `results["engines"]`, or to a key
    that the records do not have, fails here), and give what they gave for the JSON form."""
    from archc.render.report import render_report_html
    records = load(resnet18)
    text = table(records)
    assert text == table(resnet18)
    ort = records.reference
    assert ort is not None and ort.median_at(1)
    rows = [line.split() for line in text.splitlines()]
    assert ["onnxruntime", "1", f"{ort.median_at(1) * 1e3:.3f}"] == rows[1][:3] and "absent: openvino:" in text
    assert any(row[:3] == ["archc", "default", "1"] for row in rows)
    assert "peak: 431.8 GFLOP/s" in text

    def page(r: object) -> str:
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", "", render_report_html([r], graph_engine="matplotlib"))
    html = page(records)
    assert html == page(resnet18)
    assert "resnet18 on native" in html and "archc (default)" in html and 'aria-label="r1-roofline"' in html
    assert "None" not in re.sub(r"<[^>]+>", "", html)


def test_readers_take_results_without_the_optional_parts(tmp_path):
    """Upgraded version-0 results (no load, no profile, no settings, no tuning, no memory) render and print."""
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_v0()))
    records = read(path)
    assert any(line.split()[:3] == ["archc", "untuned", "1"] for line in table(records).splitlines())
    from archc.render.report import render_report_html
    html = render_report_html([records, read(RESNET18)], graph_engine="matplotlib")
    assert 'id="index"' in html and "resnet18 on native" in html
