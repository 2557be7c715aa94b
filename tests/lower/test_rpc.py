"""Remote devices through TVM's RPC tracker, on loopback: a tracker, a server for this machine and (with qemu and
the arm64 root of scripts/install-test-deps.sh) an emulated aarch64 board; `archc run|profile|tune --rpc` through
them. Outputs must equal onnxruntime's to 1e-4 of the output's range, as in test_backend.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, cli_error, onnxruntime_outputs, raises

import archc
from archc.errors import UsageError
from archc.runtime import load_package
from archc.runtime.rpc import Remote, RemoteError, RemoteUsageError, check

pytestmark = pytest.mark.tvm
SPECS = Path(__file__).resolve().parents[2] / "specs"
ONE_CONV = "network one {\n input x: 3x16x16\n c: conv(8, 3) relu\n}\n"



# what the README's "Remote boards" tells a user to run: the tests run these, on the tracker's port
README_TRACKER = "python -m tvm.exec.rpc_tracker --host 127.0.0.1 --port 9190"
README_SERVER = "archc rpc-server --tracker 127.0.0.1:9190 --key rpi4"


@pytest.fixture(scope="module")
def tracker():
    """README_TRACKER's tracker (the class its module runs), in this process, on the first free port from 9190."""
    from tvm.rpc.tracker import Tracker
    t = Tracker(host="127.0.0.1", port=9190, port_end=9990, silent=True)
    yield t
    t.terminate()


def _serve(tracker, key: str, emulate: bool):
    """Start README_SERVER for `key` (with `--emulate --port 9290` the stand-in board) and wait until the tracker
    lists it."""
    remote = Remote("127.0.0.1", tracker.port, key)
    args = README_SERVER.replace("9190", str(tracker.port)).replace("rpi4", key).split()[1:]
    if emulate:
        args += ["--emulate", "--port", "9290"]
    proc = subprocess.Popen([sys.executable, "-m", "archc", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # its session workers die with it
    deadline = time.monotonic() + 120
    while True:
        try:
            check(remote)
            return proc, remote
        except RemoteError:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"the RPC server for '{key}' did not register (exit {proc.poll()})")
            time.sleep(0.5)


def test_the_readme_documents_the_commands_the_tests_run():
    """The README's set-up is the one tested: the tracker and the server on loopback, nothing on 0.0.0.0 but the
    warning's example."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert README_TRACKER in readme and README_SERVER in readme
    assert "ssh -N -L 9190:127.0.0.1:9190 -R 9090:127.0.0.1:9090" in readme
    assert "--host 0.0.0.0" not in readme


@pytest.fixture(scope="module")
def native(tracker):
    proc, remote = _serve(tracker, "native", emulate=False)
    yield remote
    os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def board(tracker):
    from archc.runtime import qemu
    if qemu.missing():
        pytest.skip(f"needs qemu and the arm64 root ({qemu.missing()}): run scripts/install-test-deps.sh")
    proc, remote = _serve(tracker, "arm64-qemu", emulate=True)
    yield remote
    os.killpg(proc.pid, signal.SIGKILL)


def assert_matches_onnxruntime(folder: Path, got: list[np.ndarray], x: dict) -> None:
    assert_close(got, onnxruntime_outputs(folder / "model.onnx", x))


def records_with_times(db: Path) -> list[float]:
    """The measured seconds of each record (a failed measurement is stored as 1e10 s)."""
    lines = (db / "database_tuning_record.json").read_text().splitlines()
    return [json.loads(line)[1][1][0] for line in lines if line.strip()]


def test_run_and_profile_through_a_native_server(native, tmp_path):
    from archc.lower.profile import profile
    folder = Path(archc.compile(SPECS / "lenet5.arch", target="native", output=tmp_path / "pkg", quick=0).output)
    np.save(tmp_path / "x.npy", np.random.default_rng(4).standard_normal((1, 1, 32, 32)).astype(np.float32))
    out = subprocess.run([sys.executable, "-m", "archc", "run", str(folder), "--input", str(tmp_path / "x.npy"),
                          "-o", str(tmp_path / "y.npy"), "--repeat", "3", "--rpc", f"127.0.0.1:{native.port}",
                          "--rpc-key", "native"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "on 127.0.0.1:" in out.stdout and "(key native)" in out.stdout
    assert_matches_onnxruntime(folder, [np.load(tmp_path / "y.npy")], {"image": np.load(tmp_path / "x.npy")})
    p = profile(folder, repeat=4, remote=native)
    assert len(p.kernels) == 11 and all(k.seconds > 0 for k in p.kernels) and p.end_to_end_seconds > 0
    assert sum(k.macs or 0 for k in p.kernels) == 416_520  # LeNet-5's MACs, every node found


def test_tune_through_a_native_server(native, tmp_path):
    spec = tmp_path / "one.arch"
    spec.write_text(ONE_CONV)
    summary = archc.tune(spec, "native", trials=2, db=tmp_path / "db", rpc=native, kernels="tvm")
    assert (summary.trials, summary.failed) == (2, 0)
    assert all(0 < t < 1 for t in records_with_times(tmp_path / "db"))  # measured, not failed


@pytest.mark.cross
def test_an_emulated_arm64_board_runs_tunes_and_profiles(board, tmp_path):
    """The stand-in for a Raspberry Pi: the arm64 package runs there and equals onnxruntime; two trials tuned on
    it are measured there (the board's core count asked of it) and the next build applies them."""
    spec = tmp_path / "one.arch"
    spec.write_text(ONE_CONV)
    summary = archc.tune(spec, "arm64", trials=2, db=tmp_path / "db", rpc=board, kernels="tvm")
    assert (summary.trials, summary.failed) == (2, 0)
    assert all(0 < t < 1 for t in records_with_times(tmp_path / "db"))
    result = archc.compile(spec, target="arm64", output=tmp_path / "pkg", db=tmp_path / "db", kernels="tvm",
                           rpc=board)
    folder = Path(result.output)
    # verified on the board itself (here an aarch64 build is not run: qemu would take minutes)
    checked = result.verification
    assert checked is not None and checked.status == "passed" and checked.device == str(board), checked
    build = json.loads((folder / "manifest.json").read_text())["build"]
    assert build["kernels_tuned"] == 1 and build["kernels_naive"] == 0 and build["trials_now"] == 0
    from archc.runtime import rpc
    x = {"x": np.random.default_rng(5).standard_normal((1, 3, 16, 16)).astype(np.float32)}
    outputs, times = rpc.run(load_package(folder), x, board, repeat=3)
    assert len(times) == 3 and all(t > 0 for t in times)
    assert_matches_onnxruntime(folder, outputs, x)


# ---- errors: one sentence each ----------------------------------------------------------------------------------
def test_no_tracker_no_device_and_a_board_without_rpc(tracker, tmp_path):
    # and how to start one, on loopback
    with raises("no-tracker", RemoteError, naming=("127.0.0.1:1", "rpc_tracker --host 127.0.0.1 --port 1")):
        check(Remote("127.0.0.1", 1, "x"))
    with raises("no-device", RemoteError, naming=("'rpi4-nowhere'", "archc rpc-server")):
        check(Remote("127.0.0.1", tracker.port, "rpi4-nowhere"))
    with raises("bad-rpc", RemoteUsageError, naming=("HOST:PORT", "'localhost'")):
        Remote.parse("localhost", "k")
    spec = tmp_path / "one.arch"
    spec.write_text(ONE_CONV)
    with raises("needs-rpc", UsageError, naming=("'arm64'", "--rpc")):
        archc.tune(spec, "arm64", trials=2, db=tmp_path / "db", kernels="tvm")
    out = subprocess.run([sys.executable, "-m", "archc", "run", str(tmp_path), "--rpc", "127.0.0.1:1"],
                         capture_output=True, text=True)
    cli_error(out, "bad-rpc", 2, naming="--rpc-key")


@pytest.mark.cross
def test_bench_an_arm64_package_on_the_emulated_board(board, tmp_path):
    """`archc bench PACKAGE --rpc`: archc's library timed on the board (onnxruntime stays here, and says so), its
    outputs checked against onnxruntime's, its kernels profiled there."""
    from archc.api import bench
    folder = Path(archc.compile(SPECS / "lenet5.arch", target="arm64", output=tmp_path / "pkg", quick=0).output)
    results = bench(folder, engines=["archc", "onnxruntime"], repeat=3, rpc=board, memory=False,
                    output=tmp_path / "r.json")
    by_engine = {e.engine: e for e in results.engines}
    assert by_engine["archc"].status == by_engine["onnxruntime"].status == "ok"
    archc_run = by_engine["archc"].results[0]
    assert archc_run.agreement.max_rel_diff <= 1e-4 and len(archc_run.latency_s) >= 3
    assert results.settings and results.settings.rpc and results.profile and results.profile.profile.kernels
    assert json.loads((tmp_path / "r.json").read_text())["schema_version"] == 1
