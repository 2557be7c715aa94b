"""The TVM back end: compile for a CPU target, run the package, match onnxruntime; the package and its errors.

Outputs must equal onnxruntime's on the same ONNX and input to a relative 1e-4 of the output's range (untuned TVM
kernels reorder the float sums, nothing more)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import assert_close, cli_error, onnxruntime_outputs, raises
from onnx import TensorProto, helper, numpy_helper

import archc
from archc.errors import UsageError
from archc.runtime import PackageError, load_package

pytestmark = pytest.mark.tvm
ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"

SMALL_NET = """network small(num_classes = 10) {
  input image: 3x32x32
  stem: conv(16, 3, stride=2) bn relu
  res: add {
    main: { conv(16, 3) bn relu; conv(16, 3) bn }
    identity
  }
  relu
  mixed: concat { conv(8, 1); dwconv(3) relu; maxpool(3, stride=1, pad=1) }
  up: upsample(2)
  gap
  flatten
  fc: dense(num_classes)
}
"""


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """Compiled once for the module: LeNet-5 and a small net with BN, a residual, concat, depthwise, upsample."""
    folder = tmp_path_factory.mktemp("pkg")
    spec = folder / "small.arch"
    spec.write_text(SMALL_NET)
    return {name: Path(archc.compile(src, target="native", output=folder / name, quick=0).output)
            for name, src in (("lenet5", SPECS / "lenet5.arch"), ("small", spec))}


@pytest.mark.parametrize("name", ["lenet5", "small"])
def test_package_matches_onnxruntime(packages, name):
    pkg = load_package(packages[name])
    x = pkg.random_inputs(seed=1)
    assert_close(pkg.run(x), onnxruntime_outputs(packages[name] / "model.onnx", x))


def test_runs_in_a_row_each_get_their_own_inputs_outputs(packages):
    """A package keeps its input tensors between runs (made once, copied into): each run still computes on its
    own inputs, leaves the caller's arrays as they were, and hands back outputs that a later run does not touch."""
    pkg = load_package(packages["small"])
    first, second = pkg.random_inputs(seed=1), pkg.random_inputs(seed=2)
    kept = {k: v.copy() for k, v in first.items()}
    out1 = pkg.run(first)
    snapshot = [o.copy() for o in out1]
    out2 = pkg.run({k: v.astype(np.float64) for k, v in second.items()})  # converted, then copied in
    assert_close(out2, onnxruntime_outputs(packages["small"] / "model.onnx", second))
    assert all(np.array_equal(a, b) for a, b in zip(out1, snapshot, strict=True))
    assert all(np.array_equal(first[k], kept[k]) for k in first)
    assert_close(pkg.run(first), snapshot)


def test_a_package_compiled_again_into_its_folder_loads_its_new_library(tmp_path):
    """dlopen hands back the library already loaded from a path of the same name, even after the file there was
    replaced: a package compiled again (other weights) into the same folder, then loaded in the same process, must
    run its new library (runtime.loadable), not the first one."""
    spec = tmp_path / "small.arch"
    spec.write_text(SMALL_NET)
    x = {"image": np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    outputs = []
    for seed in (0, 1):
        shutil.rmtree(tmp_path / "pkg", ignore_errors=True)
        folder = Path(archc.compile(spec, target="native", output=tmp_path / "pkg", quick=0, seed=seed).output)
        outputs.append(load_package(folder).run(x)[0])
        assert_close([outputs[-1]], onnxruntime_outputs(folder / "model.onnx", x))
    assert not np.allclose(outputs[0], outputs[1])


def test_package_contents_and_manifest(packages):
    folder = packages["lenet5"]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "archc_detect.py", "archc_manifest.py",
                                                        "archc_runtime.py", "cpp",
                                                        "include", "lenet5.so", "lib", "manifest.json", "model.onnx"]
    m = json.loads((folder / "manifest.json").read_text())
    assert m["inputs"] == [{"name": "image", "shape": [1, 1, 32, 32], "dtype": "float32"}]
    assert m["outputs"][0]["shape"] == [1, 10] and m["target"]["name"] == "native"
    import tvm
    assert m["tvm_version"] == tvm.__version__ and m["build"]["tuned"] is False
    assert m["target"]["tvm"]["mcpu"] == tvm.target.codegen.llvm_get_system_cpu()  # detected, not hard-coded
    import hashlib
    assert m["onnx_sha256"] == hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()


def test_package_runs_without_archc(packages):
    """The package's own loader needs numpy and TVM's runtime only."""
    folder = packages["lenet5"]
    code = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); from archc_runtime import load_package; "
            "p = load_package(sys.argv[1]); y = p.run({'image': np.zeros((1, 1, 32, 32), 'float32')})[0]; "
            "assert 'archc' not in sys.modules; print(y.shape)")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 10)"


def test_foreign_onnx_with_resize_concat_depthwise(tmp_path):
    def init(name, shape):
        return numpy_helper.from_array(np.random.default_rng(len(name)).standard_normal(shape).astype("float32"), name)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
             helper.make_node("Resize", ["c2", "", "scales"], ["up"], mode="nearest"),
             helper.make_node("Resize", ["r1", "", "scales"], ["up2"], mode="linear"),
             helper.make_node("Concat", ["up", "up2"], ["y"], axis=1)]
    inits = [init("w1", (8, 3, 3, 3)), init("b1", (8,)), init("w2", (8, 1, 3, 3)),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    g = helper.make_graph(nodes, "foreign", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    pkg = load_package(archc.compile(path, target="native", output=tmp_path / "pkg", quick=0).output)
    x = {"x": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype("float32")}
    assert_close(pkg.run(x), onnxruntime_outputs(path, x))


def test_cli_compile_default_folder_and_run(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "archc", *map(str, args)], capture_output=True, text=True,
                              cwd=tmp_path)
    out = run("compile", SPECS / "lenet5.arch", "--target", "x86", "--no-tune")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "lenet5.x86" / "manifest.json").is_file()
    np.save(tmp_path / "x.npy", np.ones((1, 1, 32, 32), np.float32))
    out = run("run", "lenet5.x86", "--input", "x.npy", "-o", "y.npy", "--repeat", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("prob: 1×10 float32, top-5 ") and "time: median" in out.stdout
    want = onnxruntime_outputs(tmp_path / "lenet5.x86" / "model.onnx", {"image": np.ones((1, 1, 32, 32), np.float32)})
    assert_close([np.load(tmp_path / "y.npy")], want)


def test_cli_run_threads(packages, tmp_path):
    """`archc run --threads 3`: the library's pool on 3 threads (2 workers), whatever TVM_NUM_THREADS says."""
    env = {**os.environ, "ARCHC_POOL_STATS": "1", "TVM_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "archc", "run", str(packages["lenet5"]), "--threads", "3",
                          "--repeat", "2"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("prob: 1×10 float32, top-5 ")
    (stats,) = [line for line in out.stderr.splitlines() if line.startswith("archc pool: ")]
    assert stats.endswith(", 3 threads, 2 workers started")


# ---- errors: one sentence each, nothing half-written -------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -1, "abc", 1025])
def test_a_bad_thread_count_is_one_sentence(packages, monkeypatch, value):
    """threads= and TVM_NUM_THREADS take a count from 1 to 1024; anything else is one sentence that names it, never
    "every CPU" silently."""
    folder = packages["lenet5"]
    with raises("bad-threads", PackageError, naming=("threads", "1 to 1024", f"not {value!r}")):
        load_package(folder, threads=value)
    monkeypatch.setenv("TVM_NUM_THREADS", str(value))
    with raises("bad-threads", PackageError, naming=(f"TVM_NUM_THREADS is '{value}'", "1 to 1024")):
        load_package(folder)
    assert load_package(folder, threads=1).threads == 1  # given, the variable is not read


def test_cli_bad_thread_count_is_one_sentence(packages):
    """`--threads 0|abc` of run and profile: a usage error (exit 2); a bad TVM_NUM_THREADS: exit 1; no traceback."""
    def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "archc", *args], capture_output=True, text=True,
                              env={**os.environ, **env})
    for verb, value in (("run", "0"), ("profile", "abc")):
        out = cli(verb, str(packages["lenet5"]), "--threads", value)
        assert out.returncode == 2 and "Error: Invalid value for '--threads': " in out.stderr, out.stderr
        assert value in out.stderr.splitlines()[-1]
        assert "Traceback" not in out.stderr
    out = cli("run", str(packages["lenet5"]), TVM_NUM_THREADS="-1")
    cli_error(out, "bad-threads", 1, naming="TVM_NUM_THREADS is '-1'")
    assert out.stderr.count("\n") == 1


def test_threads_with_rpc_is_refused(packages):
    out = subprocess.run([sys.executable, "-m", "archc", "run", str(packages["lenet5"]), "--threads", "2", "--rpc",
                          "127.0.0.1:9", "--rpc-key", "pi"], capture_output=True, text=True)
    cli_error(out, "bad-usage", 2, naming=("--rpc", "TVM_NUM_THREADS=N"))  # and where threads are set instead
    assert out.stderr.count("\n") == 1


def test_wrong_input_shape_and_missing_input(packages):
    pkg = load_package(packages["lenet5"])
    with raises("bad-input", PackageError, naming=("'image'", "1×1×28×28", "1×1×32×32")):
        pkg.run({"image": np.zeros((1, 1, 28, 28), np.float32)})
    with raises("bad-input", PackageError, naming=("'image'", "missing")):
        pkg.run({})


def test_package_from_another_tvm_or_corrupt(packages, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(packages["lenet5"], copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["tvm_version"] = "0.19.0"
    (copy / "manifest.json").write_text(json.dumps(m))
    import tvm
    with raises("tvm-version", PackageError, naming=("TVM 0.19.0", f"TVM {tvm.__version__}")):  # both versions
        load_package(copy).run({"image": np.zeros((1, 1, 32, 32), np.float32)})
    (copy / "manifest.json").write_text("{not json")
    with raises("corrupt-package", PackageError, naming=f"'{copy}'"):
        load_package(copy)
    with raises("not-a-package", PackageError, naming=f"'{tmp_path}'"):
        load_package(tmp_path)


def test_an_op_tvm_cannot_import_leaves_no_package(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("MySwish", ["c"], ["y"], domain="com.example")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
                          initializer=[numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")])
    path = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]),
              str(path))
    with raises("tvm-import", naming=("'custom'", "MySwish")):
        archc.compile(path, target="native", output=tmp_path / "pkg", quick=0)
    assert not (tmp_path / "pkg").exists() and not any(p.name.startswith(".pkg") for p in tmp_path.iterdir())


def test_cross_target_needs_its_compiler(tmp_path):
    """A target whose cross compiler is not on PATH (a name no machine has, so the error shows everywhere)."""
    board = tmp_path / "board.toml"
    board.write_text('description = "an aarch64 board"\nbackend = "tvm"\ncross_compiler = "no-such-aarch64-gcc"\n'
                     '[tvm]\nkind = "llvm"\nmtriple = "aarch64-linux-gnu"\n')
    with raises("no-cross-compiler", naming="no-such-aarch64-gcc"):
        archc.compile(SPECS / "lenet5.arch", target=str(board), output=tmp_path / "arm", quick=0)
    assert not (tmp_path / "arm").exists()


def test_cuda_builds_without_a_gpu_and_says_it_cannot_run(tmp_path):
    if not shutil.which("nvcc"):
        pytest.skip("needs CUDA's nvcc to build for cuda: pip install -e '.[cuda]'")
    folder = Path(archc.compile(SPECS / "lenet5.arch", target="cuda", output=tmp_path / "gpu", quick=0).output)
    assert (folder / "lenet5.so").is_file()
    pkg = load_package(folder)
    import tvm
    try:
        has_gpu = tvm.cuda(0).exist
    except Exception:
        has_gpu = False
    if has_gpu:
        x = {"image": np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype("float32")}
        assert_close(pkg.run(x), onnxruntime_outputs(folder / "model.onnx", x))
    else:
        with raises("no-gpu", PackageError, naming=f"'{folder}'"):
            pkg.run({"image": np.zeros((1, 1, 32, 32), np.float32)})


def test_a_package_needs_a_folder(tmp_path):
    with raises("bad-output", UsageError, naming=("'native'", "x.onnx")):
        archc.compile(SPECS / "lenet5.arch", target="native", output=tmp_path / "x.onnx", quick=0)


# ---- tuning -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A net of several kernel kinds (a convolution with its ReLU, a max pool, a dense layer with its bias), its
    spec, database and tuning summary after a few MetaSchedule trials (one tuning, shared: each costs 15-30 s)."""
    folder = tmp_path_factory.mktemp("tuned")
    spec = folder / "three.arch"
    spec.write_text("network three {\n input x: 3x16x16\n c: conv(8, 3) relu\n p: maxpool(2)\n flatten\n"
                    " fc: dense(4)\n}\n")
    return spec, folder / "db", archc.tune(spec, "native", trials=6, db=folder / "db", kernels="tvm")


def test_tuning_database_is_reused_and_every_kernel_finds_its_record(tuned, tmp_path):
    """A few MetaSchedule trials on the net of `tuned` (one trial or more per kernel): the next compile runs no
    trials and applies a record to every kernel (a database applied to differently fused kernels would miss in
    silence), and the tuned library still equals onnxruntime."""
    spec, db, summary = tuned
    # the budget's remainder is spread, not dropped: 6 trials over 4 kernels measure more than one each (a kernel
    # whose few schedules are all measured may stop short of its share)
    assert summary.tasks == 4 and 4 < summary.trials <= 6 and summary.records >= summary.tasks
    assert summary.conv_records == 0  # TVM's kernels: no convolution configurations searched
    folder = Path(archc.compile(spec, target="native", output=tmp_path / "pkg", db=db, kernels="tvm").output)
    build = json.loads((folder / "manifest.json").read_text())["build"]
    assert (build["kernels_tuned"], build["kernels_naive"], build["trials_now"]) == (summary.tasks, 0, 0)
    assert build["tuned"] is True and build["database"] == str(db)
    pkg = load_package(folder)
    x = pkg.random_inputs(seed=2)
    assert_close(pkg.run(x), onnxruntime_outputs(folder / "model.onnx", x))


def test_two_tunings_in_one_process_leave_logging_as_it_was(tmp_path, caplog):
    """Issue 20: MetaSchedule's stock task set-up reconfigures the whole process's logging (`dictConfig`: every
    handler closed, a console and a file handler per task added); under pytest's log capture a second tuning run in
    the same process then failed inside TVM. Two runs here, under that capture: both tune, and neither adds,
    removes or closes a handler of any logger that was there before it."""
    import logging
    spec = tmp_path / "one.arch"
    spec.write_text("network one {\n input x: 3x16x16\n c: conv(8, 3) relu\n}\n")

    def handlers() -> dict[str, list[logging.Handler]]:
        loggers = {name: lg for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
        return {name: list(lg.handlers) for name, lg in {"": logging.getLogger(), **loggers}.items() if lg.handlers}

    before = handlers()
    assert caplog.handler in before[""]
    first = archc.tune(spec, "native", trials=1, db=tmp_path / "a", kernels="tvm")
    after = handlers()  # the first run imports TVM's modules: loggers it makes at import (RPC's) may be new
    assert first.trials == 1 and first.records == 1
    assert {name: after.get(name) for name in before} == before  # none added, removed or closed, pytest's kept
    assert "tvm.s_tir.meta_schedule" not in after  # MetaSchedule's logger got no console or file handler
    second = archc.tune(spec, "native", trials=1, db=tmp_path / "b", kernels="tvm")
    assert second.trials == 1 and second.records == 1 and handlers() == after
    for run in ("a", "b"):
        assert not (tmp_path / run / "logs").exists()  # no per-task log files left open in the database


def test_cpu_tuning_registers_only_the_cpu_tensor_intrinsics():
    """A TuneContext imports every target's tensor intrinsics (12-25 s a process); archc's CPU tuning registers
    x86's and Arm's only, and the others still import and register when asked for by name (dlight asks for CUDA's;
    Hexagon's here, which parse in 1 s where CUDA's take 14)."""
    code = ("import sys\nfrom archc.lower.tune import _cpu_tensor_intrinsics\n_cpu_tensor_intrinsics()\n"
            "from tvm.s_tir import TensorIntrin\nTensorIntrin.get('dot_16x4_vnni')\n"
            "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('tvm.s_tir.tensor_intrin.')))\n"
            "from tvm.s_tir.tensor_intrin.hexagon import VRMPY_u8i8i32_INTRIN\n"
            "print(TensorIntrin.get(VRMPY_u8i8i32_INTRIN) is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded, other = out.stdout.split("\n")[:2]
    assert "cuda" not in loaded and "hexagon" not in loaded and "x86" in loaded and "arm_cpu" in loaded
    assert other == "True"


def test_without_a_database_every_kernel_is_untuned_and_said(tmp_path):
    folder = Path(archc.compile(SPECS / "lenet5.arch", target="native", output=tmp_path / "pkg",
                                db=tmp_path / "empty", quick=0, kernels="tvm").output)
    build = json.loads((folder / "manifest.json").read_text())["build"]
    assert (build["kernels_tuned"], build["kernels_naive"]) == (0, 9) and build["tuned"] is False


def test_default_build_gives_kernels_without_a_record_a_short_pass(tmp_path):
    """No naive code by default: a kernel the database lacks gets a short tuning pass of its own (here one trial;
    two by default), and only the kernels without a record are tuned."""
    spec = tmp_path / "one.arch"
    spec.write_text("network one {\n input x: 3x16x16\n c: conv(8, 3) relu\n}\n")
    db = tmp_path / "db"
    folder = Path(archc.compile(spec, target="native", output=tmp_path / "a", db=db, quick=1, kernels="tvm").output)
    build = json.loads((folder / "manifest.json").read_text())["build"]
    assert build["kernels_naive"] == 0 and build["kernels_tuned"] >= 1
    assert build["trials_now"] == build["kernels_tuned"]  # one each, for the kernels that had none
    again = json.loads((Path(archc.compile(spec, target="native", output=tmp_path / "b", db=db, kernels="tvm").output)
                        / "manifest.json").read_text())["build"]
    assert again["trials_now"] == 0 and again["kernels_naive"] == 0  # reused: nothing left to tune
    x = {"x": np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype("float32")}
    assert_close(load_package(folder).run(x), onnxruntime_outputs(folder / "model.onnx", x))


def test_tune_refuses_what_it_cannot_tune(tmp_path):
    with raises("needs-tvm-target", UsageError, naming="'onnx'"):
        archc.tune(SPECS / "lenet5.arch", "onnx", trials=4)
    with raises("no-gpu-tuning"):
        archc.tune(SPECS / "lenet5.arch", "cuda", trials=4, db=tmp_path)


# ---- profile ----------------------------------------------------------------------------------------------------
def test_profile_times_every_kernel_with_its_shapes(packages):
    from archc.lower.profile import profile
    p = profile(packages["lenet5"], repeat=4)
    names = [k.name for k in p.kernels]
    # 9 ops, and with archc's kernels (C1, C3, C5 in NCHW[x]c) the layout changes around them
    assert len(names) == len(set(names)) == 11 and all(k.seconds > 0 for k in p.kernels)
    assert sum(1 for n in names if "conv2d_nchwc" in n) == 3 and sum(1 for n in names if "layout_transform" in n) == 2
    first_conv = next(k for k in p.kernels if "c1" in k.nodes)
    # C1: the image as NCHW[1]c, its 6 filters 5×5 zero-padded to a block of 8 (16 on AVX-512 would cost more)
    assert first_conv.args == ["1×1×32×32×1 float32", "1×1×5×5×1×8 float32", "1×1×28×28×8 float32"]
    assert p.kernels == sorted(p.kernels, key=lambda k: -k.total_seconds) and p.end_to_end_seconds > 0
    # the ONNX nodes each kernel runs, found by op and shapes, and their MACs by the analyzer (C1: 28·28·6·25)
    assert first_conv.nodes == ["c1", "c1/tanh"] and first_conv.macs == 117_600
    assert first_conv.gflops == pytest.approx(2 * 117_600 / first_conv.seconds / 1e9)
    assert sorted(n for k in p.kernels for n in k.nodes) == sorted(lay.name for lay in archc.analyze(
        packages["lenet5"] / "model.onnx").layers)  # every node in exactly one kernel
    assert sum(k.macs or 0 for k in p.kernels) == 416_520
    out = subprocess.run([sys.executable, "-m", "archc", "profile", str(packages["lenet5"]), "--format", "json",
                          "--repeat", "4", "--threads", "1"], capture_output=True, text=True,
                         env={**os.environ, "ARCHC_POOL_STATS": "1"})
    data = json.loads(out.stdout)
    assert out.returncode == 0 and len(data["kernels"]) == 11 and data["kernels_seconds"] > 0
    assert {"nodes", "macs", "gflops"} <= set(data["kernels"][0])
    # --threads 1: the model and each kernel alone ran on one thread (every parallel loop inline)
    (stats,) = [line for line in out.stderr.splitlines() if line.startswith("archc pool: ")]
    assert re.search(r"\((\d+) inline\).*, 1 threads, 0 workers started", stats), stats


def test_an_interrupted_tuning_run_keeps_its_records(tmp_path):
    """Records are written as they are measured: a run killed midway leaves every finished one, and the next
    build applies them (here a 1-conv net tuned by the clock for 30 minutes, 8 trials per kernel a round, killed
    once its first record is on disk: with a trial count the first round would measure that count over the kernels
    first)."""
    import os
    import signal
    import time
    spec = tmp_path / "one.arch"
    spec.write_text("network one {\n input x: 3x16x16\n c: conv(8, 3) relu\n}\n")
    db = tmp_path / "db"
    proc = subprocess.Popen([sys.executable, "-m", "archc", "tune", str(spec), "--target", "native", "--minutes",
                             "30", "--db", str(db), "--kernels", "tvm"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})  # a killed run's candidates stay here
    records = db / "database_tuning_record.json"
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if records.is_file() and records.read_text().strip():
                break
            time.sleep(0.25)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the tuner and its builder/runner workers
        proc.wait()
    kept = [line for line in records.read_text().splitlines() if line.strip()]
    assert kept, "no record was written before the run was killed"
    build = json.loads((Path(archc.compile(spec, target="native", output=tmp_path / "pkg", db=db, quick=0,
                                           kernels="tvm").output) / "manifest.json").read_text())["build"]
    assert build["kernels_tuned"] >= 1 and build["trials_now"] == 0


def test_a_tuning_database_from_another_tvm_is_refused(tuned, tmp_path):
    """The records of another TVM would not match this one's kernels (or not parse): one sentence, not a silent
    untuned build or a crash in MetaSchedule's reader."""
    db = tmp_path / "db"
    shutil.copytree(tuned[1], db)  # a copy of a real database, stamped by the tuning that wrote it
    stamp = json.loads((db / "archc-database.json").read_text())
    import tvm
    assert stamp["tvm_version"] == tvm.__version__ and stamp["target"] == "native"
    stamp["tvm_version"] = "0.18.0"
    (db / "archc-database.json").write_text(json.dumps(stamp))
    for call in (lambda: archc.compile(SPECS / "lenet5.arch", target="native", output=tmp_path / "pkg", db=db),
                 lambda: archc.tune(SPECS / "lenet5.arch", "native", trials=1, db=db)):
        with raises("database-other-tvm", naming=(str(db), "TVM 0.18.0", f"TVM {tvm.__version__}")):
            call()
    assert not (tmp_path / "pkg").exists()
    (db / "archc-database.json").unlink()
    (db / "database_tuning_record.json").write_text("[not a record\n")
    with raises("bad-database", naming=str(db)):
        archc.compile(SPECS / "lenet5.arch", target="native", output=tmp_path / "pkg", db=db, quick=0)


def test_a_time_budget_stops_tuning_after_the_batch_in_flight(tmp_path, monkeypatch):
    """`--minutes` alone: trials without a count, stopped by the clock once the batch in flight is measured (here
    3 s: the first batch of 8 trials spends it), its records kept, and no candidate library left in the temporary
    folder."""
    import tempfile
    import time
    spec = tmp_path / "one.arch"
    spec.write_text("network one {\n input x: 3x16x16\n c: conv(8, 3) relu\n}\n")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # here, and in MetaSchedule's builder processes
    monkeypatch.setattr(tempfile, "tempdir", None)
    start = time.monotonic()
    summary = archc.tune(spec, "native", db=tmp_path / "db", minutes=0.05, kernels="tvm")
    assert 1 <= summary.trials <= 16 and summary.records == summary.trials
    assert not list((tmp_path / "tmp").iterdir())
    assert time.monotonic() - start < 300  # stopped: without the clock it would run a million trials
    with raises("bad-option", UsageError, naming=("--trials", "--minutes")):
        archc.tune(spec, "native", db=tmp_path / "db")
    out = subprocess.run([sys.executable, "-m", "archc", "tune", str(spec), "--target", "native", "--minutes", "0"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--minutes" in out.stderr  # click's own refusal of the value


def test_profile_of_a_package_another_archc_lowered_says_so(tmp_path):
    """A package whose kernels take other arguments than this archc lowers its model to (built by another version;
    here: another model's ONNX put in its folder) gets one sentence that says to compile it again."""
    from archc.lower.profile import profile
    for name, width in (("a", 8), ("b", 16)):
        (tmp_path / f"{name}.arch").write_text(f"network {name} {{\n input x: 3x16x16\n c: conv({width}, 3) relu\n}}\n")
        archc.compile(tmp_path / f"{name}.arch", target="native", output=tmp_path / name, quick=0, db=tmp_path / "db")
    shutil.copy(tmp_path / "b" / "model.onnx", tmp_path / "a" / "model.onnx")
    with raises("old-package", naming=str(tmp_path / "a")):
        profile(tmp_path / "a", repeat=4)


def test_the_back_end_without_tvm_says_what_to_install(packages, tmp_path):
    """Without TVM (mocked at that edge: `sys.modules["tvm"] = None` makes its import fail, in a fresh process),
    every verb of the TVM-bound back end (compile for a TVM target, tune, profile) says in one sentence that it needs
    TVM and how to install it, exit 1; compiling to ONNX still works."""
    from archc.errors import INSTALL_TVM
    spec = Path(__file__).parents[2] / "specs" / "lenet5.arch"
    block = ("import sys; sys.modules['tvm'] = None; from archc.cli import run; sys.argv = ['archc'] + sys.argv[1:]; "
             "run()")
    for verb in (["compile", str(spec), "--target", "native", "-o", str(tmp_path / "p")],
                 ["tune", str(spec), "--target", "native", "--trials", "1"],
                 ["profile", str(packages["lenet5"])]):
        out = subprocess.run([sys.executable, "-c", block, *verb], capture_output=True, text=True)
        cli_error(out, "no-tvm", 1, naming=INSTALL_TVM)
        assert out.stderr.count("\n") == 1, verb
    out = subprocess.run([sys.executable, "-c", block, "compile", str(spec), "-o", str(tmp_path / "l.onnx")],
                         capture_output=True, text=True)
    assert out.returncode == 0 and (tmp_path / "l.onnx").is_file(), out.stderr
