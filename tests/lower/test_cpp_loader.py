"""The package's C++ loader (cpp/main.cc, built by the package's own Makefile): it runs the library without Python
and without LD_LIBRARY_PATH, from any folder and from a moved package; its outputs equal onnxruntime's on the
package's model.onnx to a relative 1e-4 of each output's range (integer outputs exactly); every error is one line
and a non-zero exit. An aarch64 package's loader is cross built and run under qemu (marker `cross`)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import assert_close, onnxruntime_outputs
from onnx import TensorProto, helper, numpy_helper

import archc

pytestmark = pytest.mark.tvm
ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
CROSS_CXX = "aarch64-linux-gnu-g++"
SYSROOT = Path("/usr/aarch64-linux-gnu")  # the aarch64 libc and libstdc++ of Debian's cross g++



def multi_net(path: Path) -> Path:
    """Two inputs, four outputs (one int64): conv, relu, a broadcast mul, maxpool, depthwise conv, concat, global
    pool, gemm, softmax and top-k (whose CPU kernel is in lib/libtvm_runtime_extra.so)."""
    def init(name, shape):
        return numpy_helper.from_array(np.random.default_rng(len(name)).standard_normal(shape).astype("float32"), name)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Mul", ["r1", "scale"], ["m1"]),
             helper.make_node("MaxPool", ["m1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
             helper.make_node("Concat", ["p1", "c2"], ["features"], axis=1),
             helper.make_node("GlobalAveragePool", ["features"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["prob"], axis=1),
             helper.make_node("TopK", ["prob", "k"], ["top_values", "top_indices"])]
    inits = [init("w1", (8, 3, 3, 3)), init("b1", (8,)), init("w2", (8, 1, 3, 3)), init("w3", (10, 16)),
             init("b3", (10,)), numpy_helper.from_array(np.array([3], np.int64), "k")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("features", "prob", "top_values")]
    g = helper.make_graph(nodes, "multi", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16]),
                                           helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1, 8, 1, 1])],
                          outputs + [helper.make_tensor_value_info("top_indices", TensorProto.INT64, None)],
                          initializer=inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """Compiled once for the module: LeNet-5 and the two-input, four-output net."""
    folder = tmp_path_factory.mktemp("pkg")
    sources = {"lenet5": SPECS / "lenet5.arch", "multi": multi_net(folder / "multi.onnx")}
    return {name: Path(archc.compile(src, target="native", output=folder / name, quick=0).output)
            for name, src in sources.items()}


def make(folder: Path, *args: str) -> None:
    out = subprocess.run(["make", "-C", str(folder / "cpp"), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def loaders(packages):
    """run_model built in each package by its Makefile with this machine's compiler."""
    if not shutil.which("g++") or not shutil.which("make"):
        pytest.skip("building the C++ loader needs g++ and make (Debian/Ubuntu: apt-get install g++ make)")
    for folder in packages.values():
        make(folder)
    return packages


def inputs_for(folder: Path, seed: int = 1) -> dict[str, np.ndarray]:
    manifest = json.loads((folder / "manifest.json").read_text())
    rng = np.random.default_rng(seed)
    return {i["name"]: rng.standard_normal(i["shape"]).astype(i["dtype"]) for i in manifest["inputs"]}


def save_inputs(x: dict[str, np.ndarray], where: Path) -> list[Path]:
    where.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, array in x.items():
        np.save(where / f"{name}.npy", array)
        paths.append(where / f"{name}.npy")
    return paths


def run_model(program: Path | str, *args, cwd: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The loader with LD_LIBRARY_PATH unset (its rpath must find lib/), from `cwd`."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")}
    return subprocess.run([*prefix, str(program), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def assert_matches_onnxruntime(folder: Path, x: dict[str, np.ndarray], out_dir: Path) -> None:
    want = onnxruntime_outputs(folder / "model.onnx", x)
    got = sorted(out_dir.glob("out*.npy"))
    assert [p.name for p in got] == [f"out{i}.npy" for i in range(len(want))]
    assert_close([np.load(p) for p in got], want)


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run_model: error: "), out.stderr
    return lines[0]


# ---- the package --------------------------------------------------------------------------------------------------
def test_package_holds_the_loader_its_headers_and_the_runtime(packages):
    folder = packages["lenet5"]
    assert sorted(p.name for p in (folder / "cpp").iterdir()) == ["Makefile", "main.cc"]
    assert sorted(p.name for p in (folder / "lib").iterdir()) == ["libtvm_ffi.so", "libtvm_runtime.so",
                                                                  "libtvm_runtime_extra.so"]
    assert (folder / "include" / "tvm" / "ffi" / "extra" / "module.h").is_file()
    assert (folder / "include" / "dlpack" / "dlpack.h").is_file()
    assert not list((folder / "include").rglob("*python*"))  # only what main.cc includes
    cpp = json.loads((folder / "manifest.json").read_text())["cpp_loader"]
    assert cpp["build"] == "make -C cpp" and cpp["missing"] is None
    assert cpp["runtime_libs"] == ["lib/libtvm_ffi.so", "lib/libtvm_runtime.so", "lib/libtvm_runtime_extra.so"]
    readme = (folder / "README.md").read_text()
    assert "make -C cpp\n./run_model lenet5.so image.npy -o out/" in readme and "out0.npy is prob" in readme


# ---- running it ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lenet5", "multi"])
def test_loader_matches_onnxruntime_without_python_paths(loaders, name, tmp_path):
    folder = loaders[name]
    x = inputs_for(folder)
    files = save_inputs(x, tmp_path / "in")
    out = run_model(folder / "run_model", folder / f"{name}.so", *files, "-o", tmp_path / "out", "--repeat", "3",
                    cwd=tmp_path)  # another folder than the package's
    assert out.returncode == 0, out.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    lines = out.stdout.splitlines()
    for i, spec in enumerate(manifest["outputs"]):
        dims = "×".join(map(str, spec["shape"]))
        assert f"output {i}: {dims} {spec['dtype']} ({tmp_path / 'out'}/out{i}.npy)" in lines
    assert lines[-1].startswith("time: ") and "median of 3 runs on cpu" in lines[-1]
    assert_matches_onnxruntime(folder, x, tmp_path / "out")


def test_a_moved_package_still_runs(loaders, tmp_path):
    """The rpath is $ORIGIN/lib, not where it was built: a copy elsewhere runs, with a relative model path."""
    moved = tmp_path / "elsewhere" / "lenet5"
    shutil.copytree(loaders["lenet5"], moved)
    x = inputs_for(moved, seed=4)
    save_inputs(x, moved)
    out = run_model("./run_model", "lenet5.so", "image.npy", "-o", "out", cwd=moved)
    assert out.returncode == 0, out.stderr
    assert "time: " in out.stdout and "(one run on cpu" in out.stdout
    assert_matches_onnxruntime(moved, x, moved / "out")


# ---- errors: one line each, non-zero exit, nothing written ---------------------------------------------------------
def test_loader_errors(loaders, tmp_path):
    folder = loaders["lenet5"]
    program, library = folder / "run_model", folder / "lenet5.so"
    np.save(tmp_path / "small.npy", np.zeros((1, 1, 28, 28), np.float32))
    np.save(tmp_path / "double.npy", np.zeros((1, 1, 32, 32), np.float64))
    np.save(tmp_path / "good.npy", np.zeros((1, 1, 32, 32), np.float32))
    (tmp_path / "junk.npy").write_bytes(b"not an array")

    def error(*args) -> str:
        out = run_model(program, *args, "-o", tmp_path / "out", cwd=tmp_path)
        assert out.returncode == 1 and not (tmp_path / "out").exists(), out.stderr
        return one_line_error(out)

    assert error(library, "missing.npy").endswith("cannot read input 'missing.npy': No such file or directory")
    assert error(library, "small.npy").endswith(
        "input 1 ('small.npy') is 1×1×28×28 float32, but the model's input 'image' is 1×1×32×32 float32")
    assert error(library, "double.npy").endswith(
        "input 1 ('double.npy') is 1×1×32×32 float64, but the model's input 'image' is 1×1×32×32 float32")
    assert error(library, "good.npy", "good.npy").endswith("the model takes 1 input (image), 2 .npy files were given")
    assert "is not a .npy file" in error(library, "junk.npy")
    # the .npy header's variants: a Fortran-order array is refused, not read as C order (a bare True was once
    # read as "rue"), a big-endian one too; a version-2 header reads as version 1
    image = np.arange(32 * 32, dtype=np.float32).reshape(1, 1, 32, 32)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(image))
    assert error(library, "fortran.npy").endswith("'fortran.npy' is in Fortran order; save it in C order "
                                                  "(numpy.ascontiguousarray)")
    np.save(tmp_path / "big.npy", image.astype(">f4"))
    assert "'big.npy' is big endian" in error(library, "big.npy")
    with open(tmp_path / "v2.npy", "wb") as f:
        np.lib.format.write_array(f, image, version=(2, 0))
    out = run_model(program, library, "v2.npy", "-o", tmp_path / "v2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert error(tmp_path / "none.so", "good.npy").endswith("cannot read the model '" + str(tmp_path / "none.so")
                                                            + "': No such file or directory")
    assert "is not a shared library" in error(folder / "model.onnx", "good.npy")
    (tmp_path / "cut.so").write_bytes(library.read_bytes()[:4096])  # dlopen would crash with SIGBUS
    assert error(tmp_path / "cut.so", "good.npy").endswith(f"the model '{tmp_path / 'cut.so'}' is truncated (4096 "
                                                           "bytes); copy it again")
    (tmp_path / "other.so").write_bytes(library.read_bytes()[:64] + bytes(len(library.read_bytes()) - 64))
    assert f"the model '{tmp_path / 'other.so'}' does not load (" in error(tmp_path / "other.so", "good.npy")
    usage = run_model(program, library, "good.npy", "--repeat", "0", cwd=tmp_path)
    assert usage.returncode == 2 and "--repeat takes a count of runs from 1" in one_line_error(usage)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "2x", "1025"])
def test_a_bad_thread_count_is_one_line(loaders, tmp_path, monkeypatch, value):
    """--threads N and TVM_NUM_THREADS take a count from 1 to 1024: anything else is one line that names the option
    (bad usage, 2) or the variable (1), never "every CPU" silently; --threads wins over the variable."""
    folder = loaders["lenet5"]
    np.save(tmp_path / "good.npy", np.zeros((1, 1, 32, 32), np.float32))
    usage = run_model(folder / "run_model", folder / "lenet5.so", "good.npy", "--threads", value, cwd=tmp_path)
    assert usage.returncode == 2
    assert one_line_error(usage).endswith(f"--threads takes a number of threads from 1 to 1024, not '{value}'")
    monkeypatch.setenv("TVM_NUM_THREADS", value)
    bad = run_model(folder / "run_model", folder / "lenet5.so", "good.npy", cwd=tmp_path)
    assert bad.returncode == 1 and one_line_error(bad).endswith(
        f"the environment variable TVM_NUM_THREADS is '{value}': set it to a number of threads from 1 to 1024, or "
        "unset it to use every CPU (or give --threads N)")
    given = run_model(folder / "run_model", folder / "lenet5.so", "good.npy", "--threads", "1", cwd=tmp_path)
    assert given.returncode == 0, given.stderr


def test_top_k_needs_the_extra_runtime_library(loaders, tmp_path):
    """libtvm_runtime_extra.so holds the sort/top-k kernels that CPU code calls: the loader loads it from lib/."""
    copy = tmp_path / "multi"
    shutil.copytree(loaders["multi"], copy)
    (copy / "lib" / "libtvm_runtime_extra.so").unlink()
    files = save_inputs(inputs_for(copy), tmp_path / "in")
    out = run_model(copy / "run_model", copy / "multi.so", *files, cwd=tmp_path)
    assert "Cannot find function tvm.contrib.sort.topk" in one_line_error(out)


def test_without_runtime_libraries_the_package_says_so(packages, tmp_path, monkeypatch):
    """An aarch64 package where the aarch64 wheels are not unpacked: no lib/, said in the manifest and README (the
    compile does not fail), and the Makefile says why it cannot build."""
    from archc import targets
    from archc.deploy.manifest import Manifest
    from archc.deploy.readme import readme as package_readme
    from archc.lower.package import _runtime_libs
    monkeypatch.setenv("ARCHC_ARM64_ROOT", str(tmp_path / "no-root"))
    libs, origin, missing = _runtime_libs(targets.get("arm64"))
    assert libs == [] and origin is None
    assert missing and f"not at {tmp_path / 'no-root' / 'site'}" in missing
    manifest = json.loads((packages["lenet5"] / "manifest.json").read_text())
    manifest["cpp_loader"].update(runtime_libs=[], libs_from=None, missing=missing)
    manifest["target"]["tvm"]["mtriple"] = "aarch64-linux-gnu"
    readme = package_readme(Manifest.from_json(manifest))
    assert f"**run_model cannot be built from this package as it is**: {missing}. Before building, copy" in readme
    assert "qemu-aarch64-static -L /usr/aarch64-linux-gnu ./run_model lenet5.so image.npy -o out/" in readme
    if shutil.which("make"):
        bare = tmp_path / "bare"
        shutil.copytree(packages["lenet5"], bare, ignore=shutil.ignore_patterns("lib", "run_model"))
        out = subprocess.run(["make", "-C", str(bare / "cpp")], capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "has no libtvm_runtime.so" in out.stderr


# ---- aarch64: cross built, run under qemu -------------------------------------------------------------------------
@pytest.mark.cross
def test_aarch64_loader_under_qemu(tmp_path):
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if not shutil.which(CROSS_CXX) or not qemu:
        pytest.skip(f"needs {CROSS_CXX} and qemu-aarch64-static (apt-get install g++-aarch64-linux-gnu "
                    "qemu-user-static; or scripts/install-test-deps.sh)")
    if not (SYSROOT / "lib" / "libstdc++.so.6").is_file():
        pytest.skip(f"needs the aarch64 libstdc++ in {SYSROOT}/lib (apt-get install g++-aarch64-linux-gnu)")
    sources = {"lenet5": SPECS / "lenet5.arch", "multi": multi_net(tmp_path / "multi.onnx")}  # multi: top-k
    for name, src in sources.items():
        folder = Path(archc.compile(src, target="arm64", output=tmp_path / name, quick=0).output)
        cpp = json.loads((folder / "manifest.json").read_text())["cpp_loader"]
        if not cpp["runtime_libs"]:
            pytest.skip(f"needs TVM's aarch64 runtime libraries: {cpp['missing']} (scripts/install-test-deps.sh)")
        assert cpp["build"] == f"make -C cpp CXX={CROSS_CXX}"
        make(folder, f"CXX={CROSS_CXX}")
        assert (folder / "run_model").read_bytes()[18:20] == (183).to_bytes(2, "little")  # an aarch64 program
        x = inputs_for(folder, seed=3)
        files = save_inputs(x, tmp_path / f"{name}-in")
        out = run_model(folder / "run_model", folder / f"{name}.so", *files, "-o", tmp_path / f"{name}-out",
                        cwd=tmp_path, prefix=(qemu, "-L", str(SYSROOT)))
        assert out.returncode == 0, out.stderr
        assert_matches_onnxruntime(folder, x, tmp_path / f"{name}-out")
