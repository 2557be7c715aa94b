"""The Python API mirrors the verbs and returns results that save to JSON and load back."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from helpers import raises

import archc
from archc.analysis import Analysis
from archc.analysis.compare import Comparison, Diff, compare, diff
from archc.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


@pytest.fixture(scope="module")
def lenet() -> Analysis:
    return archc.analyze(SPECS / "lenet5.arch")


def test_compile_and_its_result(tmp_path):
    r = archc.compile(SPECS / "lenet5.arch", output=tmp_path)
    assert r.output == str(tmp_path / "lenet5.onnx") and r.params == 61_706 and r.target == "onnx"
    assert r.inputs == [("image", (1, 1, 32, 32))]
    assert archc.CompileResult.from_json(json.loads(json.dumps(r.to_json()))) == r
    onnx.checker.check_model(onnx.load(r.output), full_check=True)


def test_compile_an_onnx_file_fixes_its_shapes(tmp_path):
    first = archc.compile(SPECS / "lenet5.arch", output=tmp_path / "a.onnx")
    again = archc.compile(first.output, output=tmp_path / "b.onnx", batch=8)
    assert again.inputs == [("image", (8, 1, 32, 32))] and again.params is None
    with raises("bad-output", UsageError, naming=first.output):
        archc.compile(first.output, output=first.output)


def test_compile_refuses_a_model_loaded_without_weights(tmp_path):
    with raises("no-weights", naming="lenet5.arch"):
        archc.compile(archc.load(SPECS / "lenet5.arch", shapes_only=True), output=tmp_path / "x.onnx")


def test_analysis_round_trips_through_json(lenet):
    back = Analysis.from_json(json.loads(json.dumps(lenet.to_json())))
    assert back == lenet
    assert isinstance(back.layers[0].output_shape, tuple) and isinstance(back.totals.depth, int)


def test_resnet_analysis_round_trips(tmp_path):
    a = archc.analyze(SPECS / "resnet18.arch")  # blocks with args, receptive fields with floats
    assert Analysis.from_json(json.loads(json.dumps(a.to_json(), default=list))) == a


def test_comparison_and_diff_round_trip(lenet):
    other = archc.analyze(SPECS / "lenet5.arch", params={"num_classes": 20})
    c = compare([lenet, other], sort="params")
    assert [r.model for r in c.rows] == ["lenet5", "lenet5"] and c.rows[0].params > c.rows[1].params
    assert Comparison.from_json(json.loads(json.dumps(c.to_json()))) == c
    d = diff(lenet, other)
    assert [(ch.name, ch.change) for ch in d.changes] == [("out", "changed"), ("prob", "changed")]  # and its softmax
    assert d.changes[0].params_d == 10 * 84 + 10  # the 84→10 classifier becomes 84→20
    assert d.changes[0].output_a == (1, 10) and d.changes[0].output_b == (1, 20)
    assert Diff.from_json(json.loads(json.dumps(d.to_json()))) == d


def test_old_or_foreign_json_is_refused(tmp_path):
    with raises("bad-analysis", naming=("version 1", "version 0")):  # the version read and the one found
        Analysis.from_json({"schema_version": 0})
    bad = tmp_path / "r.json"
    bad.write_text("{not json")
    with raises("bad-analysis", naming=str(bad)):
        archc.read_result(bad)


def test_cli_renders_a_saved_analysis(tmp_path):
    saved = tmp_path / "lenet.json"

    def run(*args):
        return subprocess.run([sys.executable, "-m", "archc", *map(str, args)], capture_output=True, text=True,
                              cwd=ROOT)
    assert run("analyze", SPECS / "lenet5.arch", "--format", "json", "-o", saved).returncode == 0
    again = run("analyze", saved, "--format", "md")
    direct = run("analyze", SPECS / "lenet5.arch", "--format", "md")
    assert again.returncode == 0 and again.stdout == direct.stdout
