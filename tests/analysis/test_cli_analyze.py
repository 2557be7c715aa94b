"""`archc analyze` from the command line: every format, comparisons, diffs, explain, errors."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli_error

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"


def archc(*args):
    return subprocess.run([sys.executable, "-m", "archc", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_block_table_is_the_papers_googlenet_table():
    out = archc("analyze", SPECS / "googlenet.arch")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(line for line in lines if line.startswith("Name"))
    for col in ("Patch/Stride", "Output", "Depth", "#1×1", "#3×3 reduce", "#3×3", "#5×5 reduce", "#5×5",
                "pool proj", "Params", "MACs"):
        assert col in header
    row = next(line for line in lines if line.startswith("inception_3a ")).split()
    assert row[1:10] == ["inception", "28×28×256", "2", "64", "96", "128", "16", "32", "32"]
    assert next(line for line in lines if line.startswith("conv1 ")).split()[2:4] == ["7×7/2", "112×112×64"]
    assert any(line.startswith("Total") and "22" in line.split() for line in lines)


def test_stage_rows():
    out = archc("analyze", SPECS / "resnet50.arch", "--stages")
    rows = {" ".join(line.split()[:2]): line for line in out.stdout.splitlines() if line.startswith("layer")}
    assert set(rows) == {"layer1 ×3", "layer2 ×4", "layer3 ×6", "layer4 ×3"}
    assert "7×7×2048" in rows["layer4 ×3"] and "14,964,736" in rows["layer4 ×3"]


def test_json_contract():
    out = archc("analyze", SPECS / "resnet18.arch", "--format", "json")
    d = json.loads(out.stdout)
    assert d["schema_version"] == 1 and d["model"] == "resnet18"
    assert d["inputs"] == [{"name": "image", "shape": [1, 3, 224, 224]}]
    for key in ("params", "trainable_params", "macs", "flops", "activation_elements", "activation_bytes",
                "peak_memory_bytes", "weight_bytes", "depth"):
        assert isinstance(d["totals"][key], int), key
    layer = d["layers"][0]
    for key in ("name", "op", "block", "kernel", "stride", "output_shape", "params", "macs", "flops",
                "activation_bytes", "receptive_field"):
        assert key in layer, key
    assert layer["output_shape"] == [1, 64, 112, 112] and layer["kernel"] == [7, 7]
    assert layer["receptive_field"] == {"size": [7.0, 7.0], "stride": [2.0, 2.0], "start": [0.0, 0.0], "whole": False}
    assert d["totals"]["trainable_params"] == 11_689_512


@pytest.mark.parametrize("fmt, marker", [("md", "| Name |"), ("latex", "\\toprule"), ("html", "<table"),
                                         ("csv", "Name,Type")])
def test_formats(fmt, marker, tmp_path):
    out_file = tmp_path / f"out.{fmt}"
    out = archc("analyze", SPECS / "lenet5.arch", "--format", fmt, "-o", out_file)
    assert out.returncode == 0, out.stderr
    text = out_file.read_text()
    assert marker in text
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(text.split("\n\n")[0])))
        c1 = next(r for r in rows if r[0] == "c1")
        assert c1[rows[0].index("Params")] == "156"  # 5·5·1·6 + 6, raw number in CSV


def test_layer_table_and_comparison_sorted():
    out = archc("analyze", SPECS / "alexnet.arch", "--by", "layer")
    assert "RF" in out.stdout and "whole (224×224)" in out.stdout
    out = archc("analyze", SPECS / "alexnet.arch", SPECS / "vgg16.arch", SPECS / "googlenet.arch",
                SPECS / "resnet50.arch", "--sort", "params")
    models = [line.split()[0] for line in out.stdout.splitlines()[3:7]]
    assert models == ["vgg16", "alexnet", "resnet50", "googlenet"]


def test_diff_shows_what_a_change_costs(tmp_path):
    a = tmp_path / "a.arch"
    b = tmp_path / "b.arch"
    a.write_text("network a {\n input x: 3x32x32\n c1: conv(16, 3)\n c2: conv(32, 3)\n flatten\n fc: dense(10)\n}\n")
    b.write_text("network b {\n input x: 3x32x32\n c1: conv(16, 3)\n c2: conv(32, 3, groups=4)\n flatten\n"
                 " fc: dense(10)\n}\n")
    out = archc("analyze", "--diff", a, b)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("c2 "))
    assert "4,640" in row and "1,184" in row and "-3,456" in row  # 3·3·16·32+32 → 3·3·4·32+32
    assert "c1 " not in out.stdout.split("Layer")[1]
    rows = json.loads(archc("analyze", "--diff", a, b, "--format", "json").stdout)["changes"]
    assert rows[0]["name"] == "c2" and rows[0]["params_d"] == -3456


def test_explain_shows_the_arithmetic():
    out = archc("analyze", SPECS / "alexnet.arch", "--explain", "conv1")
    assert "⌊(224 − 11 + 2·2)/4⌋ + 1 = ⌊217/4⌋ + 1 = 55" in out.stdout
    assert "11·11·3/1·64 + 64 = 23,296" in out.stdout
    assert "r = r_prev + (F − 1)·d·j_prev = 1 + (11 − 1)·1·1 = 11" in out.stdout
    out = archc("analyze", SPECS / "googlenet.arch", "--explain", "pool1")
    assert "(ceil mode)" in out.stdout and "⌈" in out.stdout
    out = archc("analyze", SPECS / "alexnet.arch", "--explain", "conv9")
    cli_error(out, "unknown-layer", 1, naming="'conv9'")


@pytest.mark.parametrize("args, status, code, naming", [
    (["analyze", "nope.onnx"], 1, "no-file", "'nope.onnx'"),
    (["analyze", "--diff", "specs/lenet5.arch"], 2, "bad-usage", "--diff"),
    # options that silently did nothing
    (["analyze", "specs/lenet5.arch", "--sort", "params"], 2, "bad-usage", "--sort"),
    (["analyze", "--diff", "specs/lenet5.arch", "specs/lenet5.arch", "--stages"], 2, "bad-usage", "--stages"),
    (["analyze", "--diff", "specs/lenet5.arch", "specs/lenet5.arch", "--by", "layer"], 2, "bad-usage", "--by"),
    (["analyze", "specs/lenet5.arch", "--input", "foo=1x1x32x32"], 2, "bad-input", "'foo'"),
])
def test_errors(args, status, code, naming):
    cli_error(archc(*args), code, status, naming)


def test_a_bad_option_value_is_clicks_usage_error():
    out = archc("analyze", "specs/lenet5.arch", "--format", "yaml")
    assert out.returncode == 2 and "Invalid value for '--format'" in out.stderr and "Traceback" not in out.stderr


def test_bad_onnx_is_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07\x12garbage")
    out = archc("analyze", bad)
    cli_error(out, "bad-onnx", 1, naming=str(bad))
    assert out.stderr.count("\n") == 1


def test_main_path_field_and_depth_are_shown(tmp_path):
    spec = tmp_path / "se.arch"
    spec.write_text("network se {\n input x: 3x32x32\n stem: conv(16, 3) relu\n se: mul {\n  identity\n"
                    "  gate: { gap; conv(4, 1) relu; conv(16, 1) sigmoid }\n }\n head: conv(16, 3)\n}\n")
    out = archc("analyze", spec, "--by", "layer", "--wide")
    head = next(line for line in out.stdout.splitlines() if line.startswith("head "))
    assert "whole; main 5×5" in head
    assert "2 (4 on the longest path" in archc("analyze", spec).stdout


def test_fold_bn_flag():
    out = archc("analyze", SPECS / "resnet18.arch", "--fold-bn", "--format", "json")
    assert json.loads(out.stdout)["totals"]["trainable_params"] == 11_689_512 - 4_800
    assert "20 batch norms folded" in out.stderr
