"""`archc compile --precision bf16`: the convolutions whose channels come in 32s run on the CPU's AMX tiles in bf16
(archc/lower/kernels/amx.py, placed by the layout plan), the rest in fp32, and the build is verified against
onnxruntime's fp32 outputs to bf16's tolerance (3e-2 of each output's range; the small network here differs by
~1e-3). Where bf16 cannot run fast it is refused in one sentence: a CPU with neither AMX-BF16 nor AVX512-BF16
(mocked below at the one edge that asks the hardware, `build.bf16_units`, since this check must run on every
machine), a cross target, TVM's kernels. (tests/lower/test_dpbf16.py: the AVX512-BF16 path.)"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import GRAVITON3_UNDER_QEMU, assert_emulated_like_onnxruntime, cli_error, onnxruntime_outputs, raises
from helpers import SMALL_BF16 as SMALL

import archc
from archc.errors import ArchcError, UsageError
from archc.lower import build
from archc.lower.kernels import amx
from archc.measurement.environment import all_cpu_flags

pytestmark = pytest.mark.tvm
needs_amx = pytest.mark.skipif(not amx.request_tiles(), reason="this CPU (or kernel) has no AMX-BF16: run on an "
                               "Intel Xeon from Sapphire Rapids on")

needs_bf16 = pytest.mark.skipif(build.bf16_unavailable(archc.targets.get("native")) is not None,
                                reason="this CPU has neither AMX-BF16 nor AVX512-BF16: run on an Intel Xeon from "
                                       "Sapphire Rapids or Cooper Lake on, or an AMD Zen 4 on")


@needs_amx
def test_a_bf16_build_runs_its_convolutions_on_amx_and_equals_fp32_to_bf16s_tolerance(tmp_path):
    spec = tmp_path / "small.arch"
    spec.write_text(SMALL)
    folder = Path(archc.compile(spec, target="native", output=tmp_path / "pkg", quick=0, precision="bf16").output)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["build"]["precision"] == "bf16"
    convs = [c["conv"] for c in manifest["build"]["layout"]["convolutions"]]
    assert [c.endswith("bf16 on AMX") for c in convs] == [False, True, True, True, True, False]
    assert manifest["build"]["layout"]["bf16_dense"] == 1
    check = manifest["verification"]
    assert check["status"] == "passed" and check["tolerance"] == 3e-2 and 1e-6 < check["max_rel_diff"] < 1e-2
    agreement = check["agreement"]  # the classifier's best class against fp32's, on 16 more random inputs
    assert agreement["output"] == "h" and agreement["inputs"] == 16 and agreement["top1"] >= 15
    dump = subprocess.run(["objdump", "-d", str(folder / "small.so")], capture_output=True, text=True).stdout
    assert dump.count("tdpbf16ps") >= 5 * 4  # four AMX convolutions and a dense layer, four products a step each
    from archc.runtime import load_package
    x = {"image": np.random.default_rng(3).standard_normal((1, 3, 20, 24)).astype(np.float32)}
    (want,) = onnxruntime_outputs(folder / "model.onnx", x)
    (got,) = load_package(folder).run(x)
    assert np.abs(got - want).max() <= 3e-2 * np.abs(want).max()
    # a fresh process loading the library with TVM alone: the library itself asks Linux for the tile state
    code = ("import sys, numpy as np, tvm; from tvm.runtime.vm import VirtualMachine; "
            f"vm = VirtualMachine(tvm.runtime.load_module('{folder / 'small.so'}'), tvm.cpu()); "
            "print(vm['main'](tvm.runtime.tensor(np.ones((1, 3, 20, 24), np.float32))).numpy().shape)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and "(1, 10)" in run.stdout, run.stderr[-500:]


def test_bf16_is_refused_where_it_cannot_run_fast(tmp_path, monkeypatch):
    spec = tmp_path / "small.arch"
    spec.write_text(SMALL)
    with raises("no-bf16", ArchcError, naming="--target native"):
        archc.compile(spec, target="x86-avx512", output=tmp_path / "a", quick=0, precision="bf16")
    with raises("no-bf16", ArchcError, naming=("the bf16 extension", "--target graviton3")):  # generic aarch64
        archc.compile(spec, target="arm64", output=tmp_path / "a", quick=0, precision="bf16")
    with raises("bad-usage", UsageError, naming="--target native"):  # an ONNX file has no kernels to choose
        archc.compile(spec, output=tmp_path / "o.onnx", precision="bf16")
    with raises("no-bf16", ArchcError, naming="--kernels tvm"):
        archc.compile(spec, target="native", output=tmp_path / "t", quick=0, precision="bf16", kernels="tvm")
    monkeypatch.setattr(build, "bf16_units", lambda target: [])  # no bf16 unit: the hardware's answer, mocked
    with raises("no-bf16", ArchcError, naming=("AMX-BF16", "AVX512-BF16")):
        archc.compile(spec, target="native", output=tmp_path / "n", quick=0, precision="bf16")
    assert not any((tmp_path / n).exists() for n in ("a", "t", "n", "o.onnx"))
    run = subprocess.run([sys.executable, "-m", "archc", "compile", str(spec), "--target", "native", "--precision",
                          "fp16"], capture_output=True, text=True)
    assert run.returncode == 2 and "fp16" in run.stderr and "Traceback" not in run.stderr


def test_auto_chooses_bf16_where_it_runs_fast_and_says_why_not_elsewhere(monkeypatch):
    from archc import targets
    from archc.lower.build import choose_precision
    native, arm64 = targets.get("native"), targets.get("arm64")
    precision, why = choose_precision(native, "archc", "auto")
    unit = "AMX-BF16" if amx.request_tiles() else "AVX512-BF16" if "avx512_bf16" in all_cpu_flags() else None
    assert (precision, why) == (("bf16", f"--precision auto chose bf16: this CPU has {unit}") if unit else
                                ("fp32", why))
    assert unit or "AVX512-BF16" in why
    assert choose_precision(arm64, "archc", "auto") == ("fp32", "--precision auto chose fp32: bf16 cannot run fast "
                                                        "here, on aarch64 it needs the bf16 extension (BFDOT), "
                                                        "which target 'arm64' does not declare")
    assert choose_precision(targets.get("graviton3"), "archc", "auto") == (
        "bf16", "--precision auto chose bf16: this CPU has the bf16 extension (BFDOT)")
    assert choose_precision(targets.get("x86-avx512"), "archc", "auto")[1].endswith(
        "and 'x86-avx512' is not that target")
    assert choose_precision(native, "tvm", "auto")[0] == "fp32"
    assert choose_precision(native, "archc", "fp32") == ("fp32", None)
    monkeypatch.setattr(build, "bf16_units", lambda target: [])  # no bf16 unit: the hardware's answer, mocked
    assert choose_precision(native, "archc", "auto")[0] == "fp32"
    with raises("no-bf16", ArchcError, naming=("AMX-BF16", "--precision fp32")):
        choose_precision(native, "archc", "bf16")
    with raises("bad-option", ArchcError, naming="fp16"):
        choose_precision(native, "archc", "fp16")


def test_a_target_file_sets_the_default_precision(tmp_path, monkeypatch):
    from archc import targets
    native = (Path(__file__).resolve().parents[2] / "targets" / "native.toml").read_text()
    (tmp_path / "amx.toml").write_text(native.replace("[tvm]", 'precision = "bf16"\n\n[tvm]'))
    assert targets.get(str(tmp_path / "amx.toml")).precision == "bf16"
    assert targets.get("native").precision == "fp32"
    for bad, text in (("fp16", native.replace("[tvm]", 'precision = "fp16"\n\n[tvm]')),
                      ("onnx", 'description = "x"\nbackend = "onnx"\nprecision = "bf16"\n')):
        (tmp_path / f"{bad}.toml").write_text(text)
        with raises("bad-target", ArchcError, naming=(f"{bad}.toml", "precision")):
            targets.get(str(tmp_path / f"{bad}.toml"))
    spec = tmp_path / "small.arch"
    spec.write_text(SMALL)
    monkeypatch.setattr(build, "bf16_units", lambda target: [])  # the target's bf16 asked for, refused as if given
    with raises("no-bf16", ArchcError, naming="AMX-BF16"):
        archc.compile(spec, target=str(tmp_path / "amx.toml"), output=tmp_path / "pkg", quick=0)
    with raises("no-bf16", ArchcError, naming="AMX-BF16"):  # tune reads it too: a bf16 build's kernels differ
        archc.tune(spec, str(tmp_path / "amx.toml"), trials=1, db=tmp_path / "db")
    assert not (tmp_path / "pkg").exists() and not (tmp_path / "db").exists()


def test_auto_records_its_choice_in_the_manifest_and_says_it(tmp_path):
    spec = tmp_path / "small.arch"
    spec.write_text(SMALL)
    run = subprocess.run([sys.executable, "-m", "archc", "compile", str(spec), "--target", "native", "--precision",
                          "auto", "--no-tune", "-o", str(tmp_path / "pkg")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-800:]
    build = json.loads((tmp_path / "pkg" / "manifest.json").read_text())["build"]
    chosen = "bf16" if amx.request_tiles() or "avx512_bf16" in all_cpu_flags() else "fp32"
    assert build.get("precision", "fp32") == chosen
    assert build["precision_chosen"].startswith(f"--precision auto chose {chosen}: ")
    assert f"kernels: {build['precision_chosen']}; " in run.stderr


@needs_bf16
def test_keep_fp32_computes_the_named_layers_in_fp32(tmp_path):
    """--keep-fp32 b,h: the 1×1 layer b and the last dense layer h computed in fp32 (found by their weights, since
    TVM's importer keeps no node names), the rest in bf16 as before; recorded in the manifest, said by
    --explain-layout, verified; `archc profile` lowers the package again with them. A name the model lacks, or a
    build that is not bf16, is one sentence."""
    spec = tmp_path / "small.arch"
    spec.write_text(SMALL)

    def compile_(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "archc", "compile", str(spec), "--target", "native",
                               "--no-tune", *args], capture_output=True, text=True)
    run = compile_("--precision", "bf16", "--keep-fp32", "b,h", "-o", str(tmp_path / "pkg"), "--explain-layout")
    assert run.returncode == 0, run.stderr[-800:]
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    layout = manifest["build"]["layout"]
    convs = [c["conv"] for c in layout["convolutions"]]
    assert [" bf16 on " in c for c in convs] == [True, True, False, True, True, False], convs
    assert convs[2].endswith("1×1/1 fp32 (kept)") and "fp32 (kept)" in run.stdout + run.stderr
    assert layout["bf16_dense"] == 1 and manifest["build"]["fp32_layers"] == ["b", "h"]
    assert manifest["verification"]["status"] == "passed"
    profiled = subprocess.run([sys.executable, "-m", "archc", "profile", str(tmp_path / "pkg"), "--repeat", "4"],
                              capture_output=True, text=True)
    assert profiled.returncode == 0 and "fused_conv2d_nchwc" in profiled.stdout, profiled.stderr[-800:]
    cli_error(compile_("--precision", "bf16", "--keep-fp32", "zz", "-o", str(tmp_path / "bad")), "bad-option", 2,
              ("'zz'", "stem, a, b"))
    cli_error(compile_("--precision", "fp32", "--keep-fp32", "b", "-o", str(tmp_path / "bad")), "bad-option", 2,
              "--precision bf16")
    assert not (tmp_path / "bad").exists()


@needs_bf16
def test_tune_and_bench_take_keep_fp32(tmp_path):
    """`archc tune --precision bf16 --keep-fp32 b` searches the configurations of the kernels such a build compiles:
    b's fp32 convolution, not its bf16 one; `archc bench --keep-fp32 b` builds its bf16 package so (said in the
    entry's note, recorded in the settings and the command line), verified to bf16's tolerance. Refused in one
    sentence: a name the model lacks, a bench with no bf16 build, a package (built with its own)."""
    from archc.lower.kernels.search import RECORDS
    spec = tmp_path / "small.arch"
    spec.write_text(SMALL)
    run = subprocess.run([sys.executable, "-m", "archc", "tune", str(spec), "--target", "native", "--precision",
                          "bf16", "--keep-fp32", "b", "--trials", "1", "--db", str(tmp_path / "db")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-800:]
    (keys,) = [set(v) for v in json.loads((tmp_path / "db" / RECORDS).read_text()).values() if isinstance(v, dict)]
    b = "d1x4x20x24x16_w4x4x1x1x16x16_s1x1_p0x0x0x0_l1x1"  # 64 → 64 channels, 1×1, on 20×24 in blocks of 16
    assert b in keys and f"bf16:{b}" not in keys, sorted(keys)
    assert "bf16:d1x4x20x24x16_w4x4x1x1x16x16_s2x2_p0x0x0x0_l1x1" in keys  # d, its strided twin: bf16 still
    res = archc.bench(spec, "native", precisions=["bf16"], keep_fp32=["b"], engines=["onnxruntime", "archc"],
                      repeat=2, memory=False, profile=False)
    (ours,) = [e for e in res.engines if e.engine == "archc"]
    assert ours.status == "ok" and ours.precision == "bf16", ours
    assert "computes b in fp32 (--keep-fp32)" in (ours.note or "") and res.settings.keep_fp32 == ["b"]
    assert "--keep-fp32 b" in (res.command or "") and ours.results[0].agreement.max_rel_diff <= 3e-2
    with raises("bad-option", UsageError, naming=("'zz'", "stem, a, b")):
        archc.tune(spec, "native", trials=1, db=tmp_path / "db2", precision="bf16", keep_fp32=["zz"])
    with raises("bad-option", UsageError, naming=("'zz'", "stem, a, b")):
        archc.bench(spec, "native", precisions=["bf16"], keep_fp32=["zz"], engines=["onnxruntime", "archc"],
                    repeat=1, memory=False, profile=False)
    with raises("bad-option", UsageError, naming="--precision bf16"):
        archc.bench(spec, "native", precisions=["fp32"], keep_fp32=["b"], repeat=1)
    folder = archc.compile(spec, target="native", output=tmp_path / "pkg", quick=0).output
    with raises("bad-usage", UsageError, naming=("--keep-fp32", "spec or ONNX file")):
        archc.bench(folder, keep_fp32=["b"], repeat=1)
    assert not (tmp_path / "db2").exists()


@pytest.mark.cross
def test_an_aarch64_bf16_build_runs_on_bfmmla_and_bfdot_under_qemu(tmp_path):
    """On an aarch64 target whose CPU has the bf16 extension (graviton3's Neoverse V1; here a copy of it that runs
    under qemu), the convolutions run in bf16: the stride-1 direct ones on BFMMLA steps (2 pixels × 2 channels ×
    4 input channels; the RGB stem's channels and a zero one make a four), the Winograd products and the strided
    ones on BFDOT (blocks of 8 output channels, two 4-lane steps), and both dense layers on BFDOT too (10 outputs
    as 16, cut); the emulated library equals onnxruntime fp32 to bf16's tolerance (3e-2 of the range) with the
    same top class. The library links no AMX tile request (x86's arch_prctl, which the aarch64 compiler refused).
    qemu's speed says nothing of a board's."""
    spec, target = tmp_path / "small.arch", tmp_path / "graviton3-qemu.toml"
    spec.write_text(SMALL)
    target.write_text(GRAVITON3_UNDER_QEMU)
    folder = Path(archc.compile(spec, target=str(target), output=tmp_path / "pkg", quick=0, precision="bf16").output)
    layout = json.loads((folder / "manifest.json").read_text())["build"]["layout"]
    convs = [c["conv"] for c in layout["convolutions"]]
    assert [c.rsplit(" bf16 on ", 1)[-1] if " bf16 on " in c else None for c in convs] == [
        "BFMMLA", "BFDOT", "BFMMLA", "BFDOT", "BFDOT", None], convs
    assert "Winograd" in convs[1] and layout["convolutions"][0]["in"] == "NCHW4c" and layout["bf16_dense"] == 2
    assert_emulated_like_onnxruntime(folder, ("bfmmla", "bfdot"))
