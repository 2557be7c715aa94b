"""Shared test helpers: compile a graph to ONNX and run it in onnxruntime (like TVM's check_correctness); expect
an archc error by its code (`raises`, `cli_error`); a package without a library (`fake_package`)."""
from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from archc import errors, runtime, spec
from archc.emit import to_onnx, weights_for
from archc.options import ModelOptions


def _declared(code: str, cls: type[Exception]) -> None:
    home = runtime.CODES if issubclass(cls, runtime.PackageError) else errors.CODES
    assert code in home, f"'{code}' is no code of {cls.__name__} (archc/errors.py, archc/runtime/__init__.py)"


@contextmanager
def raises(code: str, cls: type[Exception] = errors.ArchcError, naming: str | Iterable[str] = ()
           ) -> Iterator[pytest.ExceptionInfo]:
    """Expect an error of exactly the class `cls` whose `code` is `code`, and whose sentence names each of `naming`
    (the file, the option, the value given: what the sentence must say, never how it says it)."""
    _declared(code, cls)
    with pytest.raises(cls) as info:
        yield info
    err = info.value
    assert type(err) is cls, f"{type(err).__name__}, not {cls.__name__}: {err}"
    assert err.code == code, f"[{err.code}], not [{code}]: {err}"  # type: ignore[attr-defined]
    for fragment in [naming] if isinstance(naming, str) else naming:
        assert fragment in str(err), f"the sentence does not name {fragment!r}: {err}"


def cli_error(proc: subprocess.CompletedProcess, code: str, status: int = 1, naming: str | Iterable[str] = ()
              ) -> str:
    """Assert that an `archc` run failed with exit status `status` and, as its last line on stderr, one
    `archc: error: <sentence>  [<code>]` whose sentence names each of `naming` (no traceback); the sentence."""
    assert code in errors.CODES | runtime.CODES, f"'{code}' is no code of archc's errors"
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.rstrip("\n").splitlines()[-1] if proc.stderr.strip() else ""
    assert last.startswith("archc: error: ") and last.endswith(f"  [{code}]"), proc.stderr
    sentence = last[len("archc: error: "):-len(f"  [{code}]")]
    for fragment in [naming] if isinstance(naming, str) else naming:
        assert fragment in sentence, f"the sentence does not name {fragment!r}: {sentence}"
    return sentence


def one_layer(layer: str, shape: str, blocks: str = "") -> spec.Graph:
    """A network `input x: <shape>` followed by `layer`."""
    return spec.load_text(f"{blocks}\nnetwork t {{\n  input x: {shape}\n  {layer}\n}}\n", "<test>")


def run(graph, x: np.ndarray | None = None, weights=None, simplify: bool = False, seed: int = 0):
    """Returns (outputs, weights, input) of the graph run in onnxruntime."""
    weights = weights if weights is not None else weights_for(graph, ModelOptions(seed=seed))
    model = to_onnx(graph, ModelOptions(simplify=simplify), weights=weights)
    if x is None:
        x = np.random.default_rng(1).standard_normal(graph.inputs[0].shape).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {graph.inputs[0].name: x})
    return outs, weights, x


RTOL = 1e-4  # compiled outputs vs onnxruntime's: of the output's range (untuned TVM kernels only reorder float sums)


def compile_verified(graph, folder: Path, target: str):
    """Save an ONNX graph (onnx.helper's, opset 17) in `folder`, compile it for `target` with no tuning (its own
    database there), and check archc's verification against onnxruntime passed (1e-4 of each output's range):
    the model's path and the compile's result."""
    import onnx
    from onnx import helper

    import archc
    path = folder / f"{graph.name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = archc.compile(path, target=target, output=folder / f"{graph.name}.pkg", quick=0, db=folder / "db")
    assert result.verification.status == "passed" and result.verification.max_rel_diff <= 1e-4
    return path, result


def onnxruntime_outputs(onnx_path, inputs: dict) -> list:
    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, inputs)


def assert_close(got: list, want: list, rtol: float = RTOL) -> None:
    """Same count, shapes and dtypes; floats within `rtol` of each output's largest magnitude, integers equal."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype
        if np.issubdtype(w.dtype, np.integer):
            assert np.array_equal(g, w)
        else:
            assert float(np.abs(g - w).max()) <= rtol * max(float(np.abs(w).max()), 1e-6)


# a manifest as archc writes it (LeNet-5 for this machine): for the tests of its records and of the loader
MANIFEST = {
    "manifest_version": 1, "model": "lenet5", "library": "lenet5.so",
    "inputs": [{"name": "image", "shape": [1, 1, 32, 32], "dtype": "float32"}],
    "outputs": [{"name": "prob", "shape": [1, 10], "dtype": "float32"}],
    "target": {"name": "native", "description": "this machine's CPU", "runner": "local",
               "tvm": {"kind": "llvm", "mcpu": "znver5", "num-cores": 2}, "cross_compiler": None},
    "tvm_version": "0.27.0.post1", "archc_version": "0.1.0", "onnx_sha256": "ab" * 32, "source": "specs/lenet5.arch",
    "build": {"tuned": False, "compile_seconds": 1.234, "parallel_runtime": "archc", "database": "/db",
              "trials_now": 0, "kernels_tuned": 0, "kernels_naive": 0, "kernels": "archc", "kernels_archc": 3,
              "conv_configs": {"shipped": 3}, "layout": {"lanes": 16, "convolutions": [], "transforms": []}},
    "cpp_loader": {"source": "cpp/main.cc", "build": "make -C cpp", "program": "run_model",
                   "runtime_libs": ["lib/libtvm_ffi.so"], "libs_from": "wheels", "missing": None},
}


def fake_package(folder: Path, manifest: dict = MANIFEST) -> Path:
    """A package folder of `manifest` and an empty library (MANIFEST's file name, wherever `manifest` points):
    enough for load_package, which loads the library at the first run only."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / MANIFEST["library"]).write_bytes(b"")
    return folder


# a small network for the bf16 builds (tests/lower/test_bf16.py, test_dpbf16.py): which layers go bf16 depends on
# their channels and groups
SMALL_BF16 = """network small {
  input image: 3x20x24
  stem: conv(32, 3, pad=1) relu          # 3 channels: fp32 on AMX, a zero 4th on AVX512-BF16
  a: conv(64, 3, pad=1) bn relu          # bf16 from here on
  b: conv(64, 1) bn relu
  c: conv(64, 3, stride=2, pad=1) bn
  d: @b conv(64, 1, stride=2) bn
  e: add { @c; @d } relu
  g: conv(64, 3, pad=1, groups=2) relu   # grouped: fp32
  f: gap flatten dense(64) relu          # 64 → 64: bf16
  h: dense(10)                           # 10 outputs: bf16, padded to 16 and cut
}
"""


# MobileNet v2's 24-channel projections, which the bf16 and int8 kernels compute in blocks of 16 (24 padded to 32)
NARROW = """network narrow {
  input image: 16x14x14
  a: conv(24, 1) bn            # MobileNet v2's projection to 24 channels
  b: conv(96, 1) bn relu6
  w: conv(96, 3, pad=1, groups=96) bn relu6   # depthwise: fp32 arithmetic on its uint8 input
  c: conv(24, 1) bn
  d: add { @a; @c }            # its residual add, between QDQ pairs
  e: conv(32, 3, pad=1) relu
  f: gap flatten dense(10)     # an int8 dense layer
}
"""


# graviton3's CPU (Neoverse V1: i8mm, bf16) as a target that runs under qemu on this machine rather than on a board
GRAVITON3_UNDER_QEMU = """description = "graviton3's CPU (Neoverse V1: i8mm, bf16) run under qemu"
backend = "tvm"
runner = "qemu"
cross_compiler = "aarch64-linux-gnu-gcc"

[tvm]
kind = "llvm"
mtriple = "aarch64-linux-gnu"
mcpu = "neoverse-v1"
mattr = ["+neon"]
"""

# rpi5's CPU (Cortex-A76: dotprod, neither i8mm nor bf16) under qemu, which emulates that CPU model (qemu.cpu)
RPI5_UNDER_QEMU = GRAVITON3_UNDER_QEMU.replace("graviton3's CPU (Neoverse V1: i8mm, bf16)", "rpi5's CPU (Cortex-A76)") \
    .replace("neoverse-v1", "cortex-a76")


def assert_emulated_like_onnxruntime(folder, instruction: str | tuple[str, ...], tolerance: float = 3e-2) -> None:
    """An aarch64 package of one output: `instruction` (each of them) in its library's disassembly; run under qemu
    on two random inputs, within `tolerance` of the range of onnxruntime's output on the package's ONNX, the same
    top class."""
    from archc.runtime import load_package
    library = str(next(Path(folder).glob("*.so")))
    dump = subprocess.run(["aarch64-linux-gnu-objdump", "-d", library], capture_output=True, text=True).stdout
    for name in (instruction,) if isinstance(instruction, str) else instruction:
        assert name in dump, name
    pkg = load_package(folder)
    for seed in (0, 1):
        x = pkg.random_inputs(seed=seed)
        got, want = pkg.run(x), onnxruntime_outputs(Path(folder) / "model.onnx", x)
        assert pkg.emulated and len(got) == len(want) == 1
        assert np.abs(np.asarray(got[0]) - want[0]).max() <= tolerance * np.ptp(want[0])
        assert np.asarray(got[0]).argmax() == want[0].argmax()


def native_isa() -> str:
    """This CPU's x86 vector ISA for archc's tables (avx512 or avx2), "" where neither can run here."""
    from archc.util.peak import detect_isa
    isa = detect_isa()
    return isa if isa in ("avx512", "avx2") else ""


def skip_unless_runs(isa: str) -> None:
    """Skip a test of `isa` code (avx512, avx2) on a CPU that cannot run it, saying where it runs."""
    if isa == "avx512" and native_isa() != "avx512" or not native_isa():
        pytest.skip(f"this CPU cannot run {isa} code: run on an x86 CPU with {isa.upper()} (the other width runs here)")


def cover(entries: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """The smallest (workload, configuration) of each kind the generated code can differ by: every configuration
    once, and every shape of workload (kernel size, strides, dilated or not, depthwise, grouped, padded, and
    whether the output width leaves a partial register tile) with every loop structure (the configuration but its
    tile width reg_n, which changes only an unroll count) once. With ARCHC_FULL_TABLES=1, every entry (after
    regenerating a table: 4x longer)."""
    import os

    from archc.lower.kernels.conv2d import Workload
    if os.environ.get("ARCHC_FULL_TABLES") == "1":
        return entries
    chosen: dict[tuple, tuple[int, str, dict]] = {}
    for key, cfg in entries:
        w = Workload.parse(key)
        oh, ow = w.out_size
        shape = (w.kernel, w.strides, w.dilation != (1, 1), w.depthwise, w.groups > 1 and not w.depthwise,
                 any(w.padding), ow % cfg.get("reg_n", 1) != 0)
        loops = tuple(sorted((k, v) for k, v in cfg.items() if k != "reg_n"))
        size = oh * ow * w.out_channels * w.per_group * w.kernel[0] * w.kernel[1]
        for kind in (("configuration", *sorted(cfg.items())), ("shape", loops, *shape)):
            if kind not in chosen or (size, key) < chosen[kind][:2]:
                chosen[kind] = (size, key, cfg)
    unique = {(key, json.dumps(cfg, sort_keys=True)): (size, key, cfg) for size, key, cfg in chosen.values()}
    return [(key, cfg) for _, key, cfg in sorted(unique.values(), key=lambda c: c[:2])]
