"""The engines a benchmark compares, behind one small interface: `prepare()` once, then `run(inputs)` as often as
needed → the outputs as numpy arrays in the model's output order.

onnxruntime is always there (archc depends on it; it is the reference the others are checked against); `archc`
runs a compiled package (here, under qemu for an aarch64 package on x86, or on a board of an RPC tracker);
OpenVINO, IREE and PyTorch are optional: used when importable, and otherwise reported as absent with the pip
command that installs them (`absent`). Optional modules are imported by name (importlib), as archc does not
depend on them.

Every engine is told how many threads to use, and can describe itself as a plain dict (`spec`) from which a child
process rebuilds it (`make`) to measure its peak memory alone (archc.measurement.memory).
"""
from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from archc.runtime import last_line

NAMES = ("onnxruntime", "onnxruntime-int8", "archc", "openvino", "openvino-bf16", "iree", "torch")
INSTALL = {
    "onnxruntime": "pip install onnxruntime",
    "archc": "pip install -e '.[tvm]' (Apache TVM)",
    "openvino": "pip install openvino",
    "iree": "pip install iree-base-compiler iree-base-runtime",
    "torch": "pip install torch onnx2torch",
}


# an engine that is another run of one installed engine
_RUN_OF = {"openvino-bf16": "openvino", "onnxruntime-int8": "onnxruntime"}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing, or a broken one
        return False


def absent(name: str) -> str | None:
    """None when the engine can be used here; else one sentence: what is missing and how to install it."""
    if name == "torch" and _importable("torch") and not _importable("onnx2torch"):
        return ("PyTorch is installed, but no ONNX→PyTorch importer is, so it cannot run the ONNX the others run: "
                "pip install onnx2torch")
    installed = _RUN_OF.get(name, name)  # what must be installed
    modules = {"onnxruntime": ["onnxruntime"], "archc": ["tvm"], "openvino": ["openvino"],
               "iree": ["iree.compiler", "iree.runtime"], "torch": ["torch", "onnx2torch"]}[installed]
    missing = [m for m in modules if not _importable(m)]
    if not missing:
        if name == "openvino-bf16" and "BF16" not in OpenVino.capabilities():
            return ("OpenVINO computes bf16 on CPUs with AVX512-BF16 or AMX only, and reports none on this one "
                    "(its f32 run is the engine openvino)")
        return None
    what = {"archc": "Apache TVM", "iree": "IREE", "torch": "PyTorch with onnx2torch", "openvino": "OpenVINO",
            "onnxruntime": "onnxruntime"}[installed]
    return f"{what} is not installed ({', '.join(missing)} missing): {INSTALL[installed]}"


def version_of(distribution: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


class Engine:
    """One engine on one model at one batch size. `alternates` is False for an engine measured on another machine
    (an RPC board) or under an emulator: it shares nothing with the others here, and is measured in one call
    (`timed`) instead of taking turns with them."""

    name = ""
    distribution = ""  # the pip distribution whose version is reported
    NOTE: str | None = None  # how it runs, where a reader of the results needs telling (the results' note)

    def __init__(self, path: str | Path, threads: int) -> None:
        self.path = Path(path)
        self.threads = threads

    @property
    def alternates(self) -> bool:
        return True

    def version(self) -> str | None:
        return version_of(self.distribution)

    def prepare(self) -> None:
        raise NotImplementedError

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def timed(self, inputs: dict[str, np.ndarray], n: int) -> tuple[list[np.ndarray], list[float]]:
        """Outputs of one run and the seconds of `n` more (for engines that do not alternate)."""
        from archc.runtime import timed
        return timed(lambda: self.run(inputs), n)

    def spec(self) -> dict[str, Any] | None:
        """How a child process rebuilds this engine (`make`); None: its memory cannot be measured here."""
        return {"engine": self.name, "path": str(self.path), "threads": self.threads}


def onnxruntime_session(path: Path | str, threads: int = 0) -> Any:
    """onnxruntime's CPU session as engines are compared with it: its threads spin-wait between the parallel
    sections of a run (its default, what its latency needs) but stop when the run returns. Left spinning, they
    hold the cores for tens of ms after a run: MobileNet v2 in archc's package, alternating with onnxruntime in
    one process on 2 cores, ran 3.7 ms instead of 2.1 (LeNet-5: 16 ms instead of 0.12). Spinning off altogether
    slowed onnxruntime itself 1.4× (2.9 ms); stopping at the end of a run cost it 0-2% (MobileNet v2 1.95 vs
    1.98 ms, ResNet-18 8.19 vs 8.24 ms, each alone in its process)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntime(Engine):
    name = distribution = "onnxruntime"
    NOTE = ("its threads spin-wait inside a run but stop when it returns (session.force_spinning_stop=1): "
            "spinning on, they would hold the cores while the next engine runs")

    def prepare(self) -> None:
        self.session = onnxruntime_session(self.path, self.threads)

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(y) for y in self.session.run(None, inputs)]


class OnnxRuntimeInt8(OnnxRuntime):
    """onnxruntime on the model's int8 QDQ form, quantized here as `archc quantize` does (per-channel int8 weights,
    uint8 activations, onnxruntime's own quantizer) with min-max ranges from CALIBRATION random inputs: the peer of
    an int8 build, at onnxruntime's int8 kernels' speed (VNNI where the CPU has it). Random inputs set ranges no
    real input has, so its difference from onnxruntime fp32 is no accuracy figure: `archc quantize --calibrate`
    with real inputs gives that."""
    name = "onnxruntime-int8"
    NOTE = "the model quantized to int8 QDQ on random calibration inputs; " + OnnxRuntime.NOTE
    CALIBRATION = 8

    @classmethod
    def qdq(cls, model: Any) -> Any:
        """The ONNX model's int8 QDQ form, as this engine runs it (min-max ranges of CALIBRATION random inputs)."""
        from archc.emit.quantize import quantize, random_inputs
        stored = {t.name for t in model.graph.initializer}
        (data,) = [i for i in model.graph.input if i.name not in stored]
        shape = [d.dim_value for d in data.type.tensor_type.shape.dim]
        return quantize(model, random_inputs(shape, cls.CALIBRATION), "minmax")

    def prepare(self) -> None:
        import onnx
        self.quantized = self.path.with_name(self.path.stem + ".int8.onnx")  # archc's int8 build can take it too
        onnx.save_model(self.qdq(onnx.load(str(self.path))), str(self.quantized))
        self.session = onnxruntime_session(self.quantized, self.threads)


class Archc(Engine):
    """A package compiled by archc (`path` is its folder); with `remote`, run on that RPC device."""

    name = "archc"
    distribution = "apache-tvm"

    def __init__(self, path: str | Path, threads: int, remote: Any = None) -> None:
        super().__init__(path, threads)
        self.remote = remote

    @property
    def alternates(self) -> bool:
        return self.remote is None and not self.package.emulated

    def version(self) -> str | None:
        from archc.version import __version__
        return __version__

    def prepare(self) -> None:
        from archc.runtime import load_package
        # its library's pool gets the threads (an RPC device runs on its server's)
        self.package = load_package(self.path, None if self.remote is not None else self.threads)
        if self.remote is None:
            self.package.load()  # loads it here, or starts qemu for an aarch64 package; else one sentence

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.remote is not None:
            from archc.runtime import rpc
            return rpc.run(self.package, inputs, self.remote, 0)[0]
        return self.package.run(inputs)

    def timed(self, inputs: dict[str, np.ndarray], n: int) -> tuple[list[np.ndarray], list[float]]:
        if self.remote is not None:  # timed on the device by TVM's time_evaluator: the network is not in it
            from archc.runtime import rpc
            return rpc.run(self.package, inputs, self.remote, n)
        if self.package.emulated:  # timed inside the emulated process, without its start-up
            return self.package.run(inputs), self.package.time(inputs, n)
        return super().timed(inputs, n)

    def spec(self) -> dict[str, Any] | None:
        if self.remote is not None or self.package.emulated:
            return None
        return super().spec()


class OpenVino(Engine):
    """OpenVINO's CPU plugin at f32, asked for explicitly: on CPUs with bf16 or AMX units its default is bf16, which
    is the engine openvino-bf16 (the peer of archc's --precision bf16)."""
    name = distribution = "openvino"
    hint = "f32"

    @staticmethod
    def capabilities() -> list[str]:
        """The CPU plugin's OPTIMIZATION_CAPABILITIES on this machine ("FP32", "BF16", "INT8", …)."""
        ov = importlib.import_module("openvino")
        return [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]

    def prepare(self) -> None:
        ov = importlib.import_module("openvino")
        config = {"INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": self.hint,
                  "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = ov.Core().compile_model(str(self.path), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer(inputs)
        return [np.array(result[out]) for out in self.compiled.outputs]  # copies: the request reuses its buffers


class OpenVinoBf16(OpenVino):
    name = "openvino-bf16"
    hint = "bf16"


class Iree(Engine):
    """IREE: the ONNX imported to MLIR (iree-import-onnx), compiled for this CPU (llvm-cpu, host), run by the
    local-task driver. `path` is the ONNX file; the compiled module (.vmfb) is written beside it."""

    name = "iree"
    distribution = "iree-base-runtime"

    def prepare(self) -> None:
        vmfb = self.path.with_suffix(".vmfb")
        if self.path.suffix == ".onnx":
            mlir = self.path.with_suffix(".mlir")
            out = subprocess.run([sys.executable, "-m", "iree.compiler.tools.import_onnx", str(self.path), "-o",
                                  str(mlir), "--opset-version", "17"], capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError("iree-import-onnx failed: " + last_line(out.stderr, "no message", 300))
            compiler = importlib.import_module("iree.compiler")
            compiler.compile_file(str(mlir), target_backends=["llvm-cpu"], output_file=str(vmfb),
                                  extra_args=["--iree-llvmcpu-target-cpu=host"])
            self.path = vmfb
        onnx_path = self.path.with_suffix(".onnx")  # beside the module: its graph names the function and inputs
        self.function = _graph_name(onnx_path)
        self.inputs = _input_names(onnx_path)
        runtime = importlib.import_module("iree.runtime")
        try:
            runtime.flags.parse_flags(f"--task_topology_max_group_count={self.threads}")
        except Exception:  # an IREE without the flag: its default, one worker per core
            pass
        self.module = runtime.load_vm_flatbuffer(self.path.read_bytes(), driver="local-task")

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self.module[self.function](*(inputs[name] for name in self.inputs))
        items = list(result) if isinstance(result, (tuple, list)) else [result]
        return [np.asarray(y.to_host() if hasattr(y, "to_host") else y) for y in items]


class Torch(Engine):
    """PyTorch running the same ONNX, converted by onnx2torch (eager mode, inference_mode)."""

    name = "torch"
    distribution = "torch"

    def prepare(self) -> None:
        self.torch = importlib.import_module("torch")
        convert = importlib.import_module("onnx2torch").convert
        self.torch.set_num_threads(self.threads)
        self.module = convert(str(self.path)).eval()
        self.inputs = _input_names(self.path)

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self.torch.inference_mode():
            result = self.module(*(self.torch.from_numpy(inputs[name]) for name in self.inputs))
        items = list(result) if isinstance(result, (tuple, list)) else [result]
        return [y.numpy() for y in items]


CLASSES: dict[str, type[Engine]] = {"onnxruntime": OnnxRuntime, "onnxruntime-int8": OnnxRuntimeInt8, "archc": Archc,
                                    "openvino": OpenVino,
                                    "openvino-bf16": OpenVinoBf16, "iree": Iree, "torch": Torch}


def make(spec: dict[str, Any]) -> Engine:
    """The engine a `spec()` describes (in a child process)."""
    return CLASSES[spec["engine"]](spec["path"], int(spec["threads"]))


def _input_names(onnx_path: Path) -> list[str]:
    import onnx
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]


def _graph_name(onnx_path: Path) -> str:
    """iree-import-onnx names the module's function after the ONNX graph."""
    import onnx
    return onnx.load(str(onnx_path), load_external_data=False).graph.name or "main_graph"

