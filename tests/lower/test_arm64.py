"""The `arm64` target: cross compiled with aarch64-linux-gnu-gcc, run on this x86-64 machine under qemu.

scripts/install-test-deps.sh installs the cross compiler, qemu-user-static and the arm64 Python root (Debian's
arm64 python3.11 with the aarch64 wheels of this machine's TVM and numpy); tests/conftest.py skips these tests,
saying so, where one is missing. Each package runs in an emulated Python (archc/runtime/qemu.py): a few seconds of
start-up per run, so the packages are compiled once for the module, at 64×64 for the two ImageNet models.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, cli_error, onnxruntime_outputs, raises

import archc
from archc.runtime import PackageError, load_package

pytestmark = [pytest.mark.tvm, pytest.mark.cross]
ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
MODELS = {"lenet5": None, "resnet18": "1x3x64x64", "mobilenet_v2": "1x3x64x64"}  # spec → input override


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """Each model compiled once for arm64, untuned (arm64 cannot be tuned on this machine)."""
    folder = tmp_path_factory.mktemp("arm64")
    out = {}
    for name, shape in MODELS.items():
        options = {"input": shape} if shape else {}
        out[name] = Path(archc.compile(SPECS / f"{name}.arch", target="arm64", output=folder / name, quick=0,
                                       **options).output)
    return out


def random_inputs(pkg) -> dict[str, np.ndarray]:
    return pkg.random_inputs(seed=1)


def test_the_library_is_aarch64(packages):
    m = json.loads((packages["lenet5"] / "manifest.json").read_text())
    assert m["target"]["name"] == "arm64" and m["target"]["tvm"]["mtriple"] == "aarch64-linux-gnu"
    head = (packages["lenet5"] / m["library"]).read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64


@pytest.mark.parametrize("name", list(MODELS))
def test_runs_under_qemu_and_matches_onnxruntime(packages, name):
    pkg = load_package(packages[name])
    x = random_inputs(pkg)
    got = pkg.run(x)
    assert pkg.emulated
    assert_close(got, onnxruntime_outputs(packages[name] / "model.onnx", x))


def test_time_is_measured_inside_the_emulated_process(packages, monkeypatch, capfd):
    """Also: load_package(threads=3) reaches the emulated runtime (--threads 3, over TVM_NUM_THREADS): its pool's
    ARCHC_POOL_STATS line, passed on to this stderr, says 3 threads, 2 workers started."""
    import time
    monkeypatch.setenv("ARCHC_POOL_STATS", "1")
    monkeypatch.setenv("TVM_NUM_THREADS", "1")
    pkg = load_package(packages["lenet5"], threads=3)
    start = time.perf_counter()
    times = pkg.time(random_inputs(pkg), repeat=3)
    wall = time.perf_counter() - start
    assert len(times) == 3 and all(t > 0 for t in times)
    assert sum(times) < wall / 2  # the emulated Python's start-up (seconds) is not in the times (milliseconds)
    (stats,) = [line for line in capfd.readouterr().err.splitlines() if line.startswith("archc pool: ")]
    assert stats.endswith(", 3 threads, 2 workers started")


def test_cli_run(packages, tmp_path):
    folder = packages["lenet5"]
    x = np.random.default_rng(2).standard_normal((1, 1, 32, 32)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    out = subprocess.run([sys.executable, "-m", "archc", "run", str(folder), "--input", str(tmp_path / "x.npy"),
                          "-o", str(tmp_path / "y.npy"), "--repeat", "2"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("prob: 1×10 float32, top-5 ") and "over 2 runs (arm64)" in out.stdout
    assert_close([np.load(tmp_path / "y.npy")], onnxruntime_outputs(folder / "model.onnx", {"image": x}))


def test_profile_here_says_to_profile_on_the_board(packages):
    """qemu runs an arm64 library whole, but its kernels cannot be loaded one by one on x86-64 (TVM's internal
    error before): `archc profile` says to use --rpc, in one line, before timing anything."""
    out = subprocess.run([sys.executable, "-m", "archc", "profile", str(packages["lenet5"])], capture_output=True,
                         text=True)
    cli_error(out, "needs-rpc", 1, naming=("arm64 package", "qemu", "--rpc HOST:PORT --rpc-key KEY"))


def test_without_the_arm64_root_or_qemu_it_says_to_run_the_install_script(packages, tmp_path, monkeypatch):
    x = {"image": np.zeros((1, 1, 32, 32), np.float32)}
    monkeypatch.setenv("ARCHC_ARM64_ROOT", str(tmp_path))  # an empty folder
    with raises("no-qemu", PackageError, naming=("x86_64", "arm64 Python root", "scripts/install-test-deps.sh")) as err:
        load_package(packages["lenet5"]).run(x)
    assert "\n" not in str(err.value)
    out = subprocess.run([sys.executable, "-m", "archc", "run", str(packages["lenet5"])], capture_output=True,
                         text=True)
    cli_error(out, "no-qemu", 1, naming=("arm64 Python root", "install-test-deps.sh"))
    monkeypatch.delenv("ARCHC_ARM64_ROOT")
    monkeypatch.setenv("PATH", str(tmp_path))  # no qemu
    with raises("no-qemu", PackageError, naming=("qemu-aarch64-static", "scripts/install-test-deps.sh")):
        load_package(packages["lenet5"]).time(x)


def test_a_failure_under_qemu_is_one_sentence(packages, tmp_path):
    """The emulated runtime's own refusal comes back as it is; a crash as its last line."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in packages["lenet5"].iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    library = json.loads((broken / "manifest.json").read_text())["library"]
    (broken / library).write_bytes(b"not a library")
    with raises("corrupt-package", PackageError, naming="broken'") as err:  # its code, read back from the emulated line
        load_package(broken).run({"image": np.zeros((1, 1, 32, 32), np.float32)})
    assert "error:" not in str(err.value) and "[" not in str(err.value)  # the sentence alone
