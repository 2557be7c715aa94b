"""`archc compile --precision int8` of a QDQ model (`archc quantize`'s, onnxruntime's quantize_static format): each
quantized convolution whose channels allow it runs in archc's int8 kernel on AVX512-VNNI (archc/lower/kernels/
vnni.py, placed by the layout plan), the rest in fp32, and the build is verified against onnxruntime running the
same QDQ model (its own int8 kernels) to 3e-2 of each output's range, with the classifier's top-1 agreement. Where
int8 cannot run fast it is refused in one sentence: a model that is not quantized, a CPU without AVX512-VNNI (mocked
at the one edge that asks the hardware, `build.has_vnni`, since this check must run on every machine), a cross
target, TVM's kernels."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import GRAVITON3_UNDER_QEMU, NARROW, RPI5_UNDER_QEMU, assert_emulated_like_onnxruntime, raises
from helpers import SMALL_BF16 as SMALL

import archc
from archc.errors import ArchcError
from archc.lower import build

pytestmark = pytest.mark.tvm


def quantize(folder: Path, name: str, spec: str, shape: tuple[int, ...]) -> Path:
    """`spec` in QDQ int8 (`archc quantize`), calibrated on four random inputs of `shape`."""
    (folder / f"{name}.arch").write_text(spec)
    (folder / "calibration").mkdir()
    for i in range(4):
        np.save(folder / "calibration" / f"{i}.npy", np.random.default_rng(i).standard_normal(shape).astype(np.float32))
    archc.quantize(folder / f"{name}.arch", folder / "calibration", folder / f"{name}.int8.onnx", check=0)
    return folder / f"{name}.int8.onnx"


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> Path:
    """The small network (3×3 and strided 1×1 convolutions, a residual add, a grouped one, two dense layers) in
    QDQ int8."""
    return quantize(tmp_path_factory.mktemp("int8"), "small", SMALL, (1, 3, 20, 24))


def test_an_int8_build_runs_its_quantized_convolutions_on_vnni(quantized, tmp_path):
    if not build.has_vnni(archc.targets.get("native")):
        pytest.skip("this CPU has no AVX512-VNNI: run on an Intel Xeon from Cascade Lake on, or an AMD Zen 4 on")
    folder = Path(archc.compile(quantized, target="native", output=tmp_path / "pkg", quick=0,
                                precision="int8").output)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["build"]["precision"] == "int8"
    convs = [c["conv"] for c in manifest["build"]["layout"]["convolutions"]]
    # the RGB stem's 3 channels and a zero fourth make a quadruple; the grouped convolution stays fp32
    assert [c.endswith("int8 on VNNI") for c in convs] == [True, True, True, True, True, False], convs
    assert convs[0].startswith("3×20×24") and manifest["build"]["layout"]["convolutions"][0]["in"] == "NCHW4c"
    check = manifest["verification"]
    assert check["status"] == "passed" and check["tolerance"] == 3e-2 and check["max_rel_diff"] < 3e-2
    assert check["agreement"]["inputs"] == 16 and check["agreement"]["top1"] >= 14
    dump = subprocess.run(["objdump", "-d", str(next(folder.glob("*.so")))], capture_output=True, text=True).stdout
    assert "vpdpbusd" in dump
    # `archc profile` gives each int8 kernel its convolution's MACs (its packed weights 7-D, its input padded)
    from archc.lower.build import import_onnx, tvm_target_at
    from archc.lower.profile import kernels_of
    from archc.lower.tune import prepare
    model = archc.load(quantized)
    tgt = tvm_target_at(archc.targets.get("native"), "int8")
    found = {k.name: k.macs for k in kernels_of(prepare(import_onnx(model), tgt, "archc", precision="int8"), model)
             if "conv2d_int8" in k.name}
    # the two dense layers' int8 kernels (1×1 convolutions of 1×1 pixel) are their Gemm's
    convs = {lay.name: lay.macs for lay in archc.analyze(model).layers if lay.op in ("Conv", "Gemm", "MatMul")}
    assert manifest["build"]["layout"]["int8_dense"] == 2
    assert len(found) >= 6 and all(found.values()), found
    assert {64 * 64, 64 * 10} <= set(found.values())
    assert set(found.values()) <= set(convs.values())


def test_int8_is_refused_where_it_cannot_run_fast(quantized, tmp_path, monkeypatch):
    spec = tmp_path / "small.arch"
    spec.write_text(SMALL)
    if build.has_vnni(archc.targets.get("native")):  # an fp32 model is refused (elsewhere no-int8 comes first)
        with raises("not-quantized", ArchcError, naming=("archc quantize", "QuantizeLinear")):
            archc.compile(spec, target="native", output=tmp_path / "f", quick=0, precision="int8")
        with raises("not-quantized", ArchcError, naming="archc quantize"):  # tuning asks too
            archc.tune(spec, "native", trials=1, db=tmp_path / "db", precision="int8")
    with raises("no-int8", ArchcError, naming="--target native"):
        archc.compile(quantized, target="x86-avx512", output=tmp_path / "a", quick=0, precision="int8")
    # generic aarch64: neither USDOT nor SDOT
    with raises("no-int8", ArchcError, naming=("i8mm", "dotprod", "--target graviton3 or rpi5")):
        archc.compile(quantized, target="arm64", output=tmp_path / "a", quick=0, precision="int8")
    with raises("no-int8", ArchcError, naming="--kernels tvm"):
        archc.compile(quantized, target="native", output=tmp_path / "t", quick=0, precision="int8",
                      kernels="tvm")
    monkeypatch.setattr(build, "has_vnni", lambda target: False)  # no VNNI: the hardware's answer, mocked
    with raises("no-int8", ArchcError, naming=("AVX512-VNNI", "--precision fp32")):
        archc.compile(quantized, target="native", output=tmp_path / "n", quick=0, precision="int8")
    assert not any((tmp_path / n).exists() for n in ("f", "a", "t", "n"))


def test_narrow_int8_layers_take_full_blocks_and_their_padding_stays_blocked(tmp_path):
    """A 24-channel convolution in int8 writes 16-channel blocks (24 padded to 32): the VPDPBUSD step fills 16
    output channels, and the plan's cheaper blocks of 8 (on Zen 4) had sent MobileNet v2's projections to fp32. The
    residual add between QDQ pairs then stays blocked: a quantize/dequantize pair gives the padded zeros back as
    zeros (it had run in NCHW between channel slices). The depthwise layer reads its uint8 input (padded with the
    zero point), the dense layer runs in int8. Verified against onnxruntime on the same QDQ model."""
    if not build.has_vnni(archc.targets.get("native")):
        pytest.skip("this CPU has no AVX512-VNNI: run on an Intel Xeon from Cascade Lake on, or an AMD Zen 4 on")
    model = quantize(tmp_path, "narrow", NARROW, (1, 16, 14, 14))
    folder = Path(archc.compile(model, target="native", output=tmp_path / "pkg", quick=0, precision="int8").output)
    manifest = json.loads((folder / "manifest.json").read_text())
    layout = manifest["build"]["layout"]
    convs = [c["conv"] for c in layout["convolutions"]]
    assert [c.endswith("int8 on VNNI") for c in convs] == [True, True, False, True, True], convs
    assert convs[2].endswith("depthwise on its uint8 input"), convs
    assert [c["out"] for c in layout["convolutions"]] == ["NCHW16c (24 padded to 32)", "NCHW16c", "NCHW16c",
                                                          "NCHW16c (24 padded to 32)", "NCHW16c"]
    assert layout["int8_dense"] == 1
    from archc.deploy.explain import kernels_line
    from archc.deploy.manifest import Manifest
    assert kernels_line(Manifest.from_json(manifest)).startswith(
        "kernels: int8: 4 of 5 convolutions and 1 dense layer on VNNI, the rest fp32; ")
    # back to NCHW for the flatten only, after the pooling
    assert [t for t in layout["transforms"] if "→ NCHW " in t] == ["NCHW16c → NCHW (1×32×1×1) for reshape"], \
        layout["transforms"]
    check = manifest["verification"]
    assert check["status"] == "passed" and check["max_rel_diff"] < 3e-2


def aarch64_int8(quantized: Path, folder: Path, target_file: str) -> Path:
    """The QDQ small network's int8 package for an aarch64 target that runs under qemu (`target_file`'s text)."""
    folder.mkdir()
    (folder / "target.toml").write_text(target_file)
    return Path(archc.compile(quantized, target=str(folder / "target.toml"), output=folder / "pkg", quick=0,
                              precision="int8").output)


@pytest.fixture(scope="module")
def on_graviton3(quantized, tmp_path_factory) -> Path:
    return aarch64_int8(quantized, tmp_path_factory.mktemp("graviton3") / "int8", GRAVITON3_UNDER_QEMU)


def int8_layout(folder: Path, units: list[str]) -> dict:
    """The package's layout plan, after checking that the QDQ convolutions (not the grouped one) and both dense
    layers run in int8, each convolution on its step of `units`, in blocks of 8 output channels."""
    layout = json.loads((folder / "manifest.json").read_text())["build"]["layout"]
    convs = [c["conv"] for c in layout["convolutions"]]
    assert [c.rsplit(" int8 on ", 1)[1] if " int8 on " in c else None for c in convs] == [*units, None], convs
    assert layout["int8_dense"] == 2 and layout["convolutions"][1]["out"] == "NCHW8c"
    return layout


@pytest.mark.cross
def test_an_aarch64_int8_build_runs_on_usmmla_and_usdot_under_qemu(on_graviton3):
    """On an aarch64 target whose CPU has i8mm (graviton3's Neoverse V1; here a copy of it that runs under qemu
    rather than on a board), the QDQ convolutions and dense layers run in int8: the stride-1 ones whose input
    blocks hold whole eights on USMMLA (2 pixels × 2 channels × 8 input channels), the RGB stem (a quadruple), the
    strided ones and the dense layers on USDOT (two 4-lane steps per block of 8); the emulated library equals
    onnxruntime on the same QDQ model to 3e-2 of its range (int8's stated tolerance), with the same top class.
    qemu's speed says nothing of a board's: measure on one with `archc bench --rpc`."""
    int8_layout(on_graviton3, ["USDOT", "USMMLA", "USMMLA", "USDOT", "USDOT"])
    assert_emulated_like_onnxruntime(on_graviton3, ("usmmla", "usdot"))


@pytest.mark.cross
def test_a_dotprod_int8_build_runs_on_sdot_under_qemu(quantized, tmp_path):
    """On an aarch64 CPU with dotprod but not i8mm (rpi5's Cortex-A76, which qemu emulates as that model: an i8mm
    instruction would stop it), the steps are SDOT's, int8 × int8: each uint8 input byte's top bit flipped (q − 128)
    and the epilogue's zero point 128 lower, so the sums are exactly USDOT's. Within int8's 3e-2 of onnxruntime on
    the same QDQ model (a zero point left as it was is off by the whole range: checked by hand)."""
    folder = aarch64_int8(quantized, tmp_path / "rpi5", RPI5_UNDER_QEMU)
    int8_layout(folder, ["SDOT"] * 5)
    dump = subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(next(folder.glob("*.so")))], capture_output=True,
                          text=True).stdout
    assert "\tsdot\t" in dump and "usdot" not in dump
    assert_emulated_like_onnxruntime(folder, "sdot")


@pytest.mark.cross
def test_qemu_runs_a_package_on_its_targets_cpu_model(on_graviton3, tmp_path):
    """The emulator runs a package as its target's CPU (qemu's model of the target's mcpu, where qemu has one), so
    an instruction the board lacks stops it as the board would: graviton3's USMMLA/USDOT library, relabelled as
    built for the Pi 5's Cortex-A76 (no i8mm), fails in one sentence naming the illegal instruction."""
    from archc.runtime import PackageError, load_package
    copy = tmp_path / "relabelled"
    shutil.copytree(on_graviton3, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["target"]["tvm"]["mcpu"] = "cortex-a76"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    pkg = load_package(copy)
    with pytest.raises(PackageError, match="Illegal instruction") as err:
        pkg.run(pkg.random_inputs(seed=0))
    assert err.value.code == "emulation-failed"
