"""Load and run a deploy package that `archc compile --target …` wrote.

This file needs only numpy and TVM's runtime (it imports nothing else of archc): the package carries a copy of it
as `archc_runtime.py`, so that a device with TVM's Python package runs the library without archc installed:

    from archc_runtime import load_package          # or: from archc.runtime import load_package
    pkg = load_package("resnet18.x86")               # threads=N: the library's threads (default below)
    outputs = pkg.run({"image": x})                  # numpy arrays in, numpy arrays out

or from a shell: `python archc_runtime.py PKG [--inputs in.npz] [--output out.npz] [--repeat N] [--threads N]`
(`main` below).

Threads: the library's parallel loops run on archc's pool (archc/runtime/pool.c, linked into it), with `threads`
threads, the caller included: load_package's `threads=` (the pool's exported setter, called through ctypes before
the first run), else TVM_NUM_THREADS, else every CPU of the process. Either must be a count from 1 to MAX_THREADS:
anything else (0, -1, abc) is one sentence that names it, never a silent "all".

A package built for aarch64 runs on an x86-64 machine too, under qemu (the sibling module `qemu`, which runs this
file as a script in an emulated arm64 Python), once `scripts/install-test-deps.sh` of archc has installed qemu and
the arm64 Python; the copy in a package, `archc_runtime.py`, has no sibling, and says to copy the package to the
device instead.
"""
from __future__ import annotations

import ctypes
import json
import numbers
import os
import re
import stat
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np

if __package__ == "archc.runtime":  # inside archc: the manifest's records (standard library only), the decoding
    from archc.deploy import detect as _detect
    from archc.deploy import manifest as _records
    from archc.deploy.manifest import MANIFEST, Manifest, ManifestError, TensorSpec
else:  # this file as a package's archc_runtime.py (or run by qemu), without archc: the copies beside it
    import archc_detect as _detect  # type: ignore[import-not-found, no-redef]
    import archc_manifest as _records  # type: ignore[import-not-found, no-redef]
    from archc_manifest import MANIFEST, Manifest, ManifestError, TensorSpec  # type: ignore[no-redef]

# what a package (and an emulated run) carries so that this loader runs without archc: name there → file here
CARRIED = {"archc_runtime.py": Path(__file__), "archc_manifest.py": Path(_records.__file__),
           "archc_detect.py": Path(_detect.__file__)}
INSTALL_QEMU = "scripts/install-test-deps.sh"  # archc's script that installs qemu and the arm64 Python root
PACKAGE_ERROR_EXIT = 3  # `main`'s exit status for a PackageError (its `error_line` is the last line on stderr)
THREADS_VARIABLE = "TVM_NUM_THREADS"  # the pool's default thread count, as TVM's own pool reads it
MAX_THREADS = 1024  # pool.c's MAX_THREADS


Code = Literal[  # what went wrong, as PackageError.code (and `archc run`'s `[code]`): the runtime's codes' one home
    "error",  # a PackageError raised without a code of its own (a bug: tests/test_errors.py finds them)
    "not-a-package",  # the folder has no manifest.json: it is no archc package
    "corrupt-package",  # the manifest is invalid or unreadable, or the library missing, cut short, not a library
    #                     or not taking the inputs the manifest lists: compile (or copy) it again
    "bad-library",  # the package's library does not load here
    "old-package",  # the package was built by another archc version (no archc thread pool in its library)
    "tvm-version",  # the package was built by another TVM version than the one that would load it
    "no-tvm",  # TVM's Python package is not installed
    "wrong-machine",  # the package is built for another CPU architecture and cannot run (or be emulated) here
    "no-qemu",  # an aarch64 package on x86-64 where qemu or the arm64 Python root is missing or does not start
    "emulation-failed",  # running the package under qemu failed
    "no-gpu",  # a CUDA package on a machine without an NVIDIA GPU (or its driver)
    "bad-input",  # inputs that cannot be read or do not fit the package (a name missing, another shape)
    "not-a-detector",  # boxes asked of a package compiled without --detect
    "bad-threads",  # a thread count that is no number from 1 to MAX_THREADS (threads=, --threads, TVM_NUM_THREADS)
    "threads-already-set",  # threads asked for a library that already runs on other threads in this process
    "bad-rpc",  # --rpc is not HOST:PORT, or --rpc-key is missing (RemoteUsageError)
    "bad-usage",  # options that do not go together (threads for a device behind --rpc)
    "no-tracker",  # no RPC tracker answers at the address
    "no-device",  # no device is registered with the tracker under the key
    "remote-load",  # the remote device could not load the library
]
CODES: frozenset[str] = frozenset(get_args(Code))


class PackageError(Exception):
    """One sentence (`str(err)`): why the package cannot be loaded or run here, and what to do; `code` names the
    kind of failure: `PackageError(message, code="no-gpu")`."""

    exit_code = 1
    code: Code = "error"

    def __init__(self, message: str, code: Code | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


def error_line(prog: str, err: PackageError) -> str:
    """How a program reports an error on stderr: `PROG: error: <sentence>  [<code>]` (archc's CLI, `main`)."""
    return f"{prog}: error: {err}  [{err.code}]"


def parse_error_line(line: str, default: Code) -> PackageError:
    """The PackageError that `error_line` printed (how qemu.py reads the emulated `main`'s last line); a line of
    another form is its own sentence, of the code `default`."""
    match = re.fullmatch(r"(?:\S+: error: )?(.*)  \[([a-z0-9-]+)\]", line.strip())
    if match is None or match.group(2) not in CODES:
        return PackageError(line.strip(), default)
    sentence, code = match.groups()
    return PackageError(sentence, cast(Code, code))


@dataclass
class Package:
    path: Path
    manifest: Manifest
    _vm: Any = field(default=None, repr=False)
    _emulator: Any = field(default=None, repr=False)  # a qemu.Emulator when an aarch64 package runs on x86-64
    threads: int | None = None  # load_package's threads=; None: TVM_NUM_THREADS, else every CPU
    _second: Any = field(default=None, repr=False)  # a two-stage detector's stage two (its package), once loaded
    _tensors: Any = field(default=None, repr=False)  # the inputs' tensors on the device, kept for the next run

    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self.manifest.inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        return list(self.manifest.outputs)

    def random_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Random inputs of the package's shapes and dtypes (`random_inputs`)."""
        return random_inputs(self.inputs, seed)

    def read_inputs(self, source: str | os.PathLike[str]) -> dict[str, np.ndarray]:
        """Inputs from a file: a .npy array (a package of one input) or an .npz with one array per input name;
        "random" for `random_inputs()`. Shapes and dtypes are checked when the package runs."""
        if str(source) == "random":
            return self.random_inputs()
        try:
            with open(source, "rb") as f:
                magic = f.read(6)
        except OSError as err:
            raise PackageError(f"cannot read the inputs '{source}': {err.strerror or err}", code="bad-input") from None
        if magic != b"\x93NUMPY" and magic[:4] != b"PK\x03\x04":
            raise PackageError(f"'{source}' is neither a .npy nor an .npz file: save the inputs with numpy.save or "
                               "numpy.savez", code="bad-input")
        try:
            data = np.load(source, allow_pickle=False)
            if isinstance(data, np.lib.npyio.NpzFile):
                arrays = {k: data[k] for k in data.files}  # read now: an array of objects is refused here
                data.close()
        except ValueError as err:
            if "pickle" in str(err):  # numpy's own message would suggest unpickling, which runs code: never
                raise PackageError(f"'{source}' holds Python objects (pickled data), which archc never loads: save "
                                   "numeric arrays", code="bad-input") from None
            raise PackageError(f"cannot read the inputs '{source}': {err}", code="bad-input") from None
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise PackageError(f"cannot read the inputs '{source}': {err}", code="bad-input") from None
        if isinstance(data, np.ndarray):
            if len(self.inputs) != 1:
                raise PackageError(f"the package takes {len(self.inputs)} inputs: give an .npz with "
                                   + ", ".join(s.name for s in self.inputs), code="bad-input")
            return {self.inputs[0].name: data}
        return arrays

    @property
    def emulated(self) -> bool:
        """Whether the package runs under qemu here (known after the first run, or `load()`)."""
        return self._emulator is not None

    def load(self) -> Any:
        """Load the library here (or, for an aarch64 package on x86-64, find qemu to run it): one sentence when it
        cannot run here. The first run does it anyway; earlier, it tells where the package will run."""
        if self._vm is None and self._emulator is None:
            self._emulator = _emulation(self)
            if self._emulator is None:
                self._vm = _load_vm(self)
        return self._vm

    def checked(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The inputs in the manifest's order, each of its shape and dtype (else one sentence)."""
        arrays = {}
        for spec in self.inputs:
            if spec.name not in inputs:
                raise PackageError(f"the input '{spec.name}' is missing; the package takes "
                                   + ", ".join(i.name for i in self.inputs), code="bad-input")
            x = np.ascontiguousarray(inputs[spec.name], dtype=spec.dtype)
            if x.shape != spec.shape:
                raise PackageError(f"input '{spec.name}' has shape {'×'.join(map(str, x.shape))} but the package "
                                   f"was built for {spec.dims}; compile it again with "
                                   "--input or --batch", code="bad-input")
            arrays[spec.name] = x
        return arrays

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs for the given inputs (by name; each must have the manifest's shape and dtype)."""
        vm = self.load()  # first: it says why the package cannot run here before any tensor is made
        arrays = self.checked(inputs)
        if self._emulator is not None:
            return list(self._emulator.run(self.path, arrays, threads=self.threads)[0])
        try:
            result = vm["main"](*self._on_device(arrays))
        except Exception as err:  # the manifest's inputs are not what the library takes: it was edited or mixed up
            raise PackageError(f"the library of '{self.path}' does not take the inputs its manifest lists "
                               f"({last_line(str(err), type(err).__name__, 200)}); the package is corrupt: compile "
                               "it again", code="corrupt-package") from None
        items = list(result) if isinstance(result, (tuple, list)) or type(result).__name__ == "Array" else [result]
        return [r.numpy() for r in items]

    def _on_device(self, arrays: dict[str, np.ndarray]) -> list[Any]:
        """The inputs copied into tensors made on the first run and kept, not made for each run (600 KB fresh from
        the allocator, its pages faulted in anew: MobileNet v2 at 2 threads took 5.14 ms against 5.22, alternating in
        one process). The library runs one call at a time, as the Relax VM does; an output is a copy, never one of
        these."""
        import tvm
        if self._tensors is None:
            self._tensors = [tvm.runtime.empty(x.shape, str(x.dtype), self.device()) for x in arrays.values()]
        for tensor, x in zip(self._tensors, arrays.values(), strict=True):
            tensor.copyfrom(x)
        return self._tensors

    def detect(self, inputs: dict[str, np.ndarray], confidence: float | None = None, iou: float | None = None
               ) -> Any:
        """A detector package's boxes, scores and classes (archc_detect.Detections) for image 0 of the inputs: the
        library's outputs decoded as its manifest says (`archc compile --detect`); `confidence` and `iou` override
        the manifest's thresholds."""
        return self.decode(self.run(inputs), confidence, iou)

    def decode(self, outputs: list[np.ndarray], confidence: float | None = None, iou: float | None = None) -> Any:
        """`detect` on outputs already computed."""
        det = self.manifest.detection
        if det is None:
            raise PackageError(f"'{self.path}' is not a detector package: compile it with --detect to get boxes",
                               code="not-a-detector")
        shape = self.inputs[0].shape
        confidence = det.confidence if confidence is None else confidence
        iou = det.iou if iou is None else iou
        if det.proposals is not None:
            return self._second_stage(outputs, det, (shape[2], shape[3]), confidence, iou)
        return _detect.yolo(det.kind, outputs, det.heads, det.classes, (shape[2], shape[3]), confidence, iou,
                            det.max_boxes)

    def _second_stage(self, outputs: list[np.ndarray], det: Any, image: tuple[int, int], confidence: float,
                      iou: float) -> Any:
        """Faster R-CNN: the proposals chosen from stage one's `outputs`, stage two (the package in the subfolder
        the manifest names) run on them, its outputs decoded class by class (archc_detect.proposals, rcnn)."""
        p = det.proposals
        if self._second is None:
            self._second = load_package(self.path / p.heads, self.threads)
        heads = self._second
        rois, real = _detect.proposals(outputs[p.scores], outputs[p.deltas], p.sizes, p.ratios, p.stride, image,
                                       p.rois[-2], p.pre_nms, p.iou)
        feeds = {spec.name: outputs[i] for spec, i in zip(heads.inputs[:-1], p.passes, strict=True)}
        feeds[heads.inputs[-1].name] = rois.reshape(p.rois)
        second = heads.run(feeds)
        return _detect.rcnn(second[p.cls], second[p.box], rois, real, det.classes, image, confidence, iou,
                            det.max_boxes)

    def time(self, inputs: dict[str, np.ndarray], repeat: int = 10) -> list[float]:
        """Seconds per run of `repeat` runs after one warm-up (under qemu: measured inside the emulated process,
        without its start-up)."""
        self.load()
        if self._emulator is not None:
            return list(self._emulator.run(self.path, self.checked(inputs), repeat,
                                           threads=self.threads)[1])
        return _measure(self, inputs, repeat)[1]

    def device(self) -> Any:
        import tvm
        return tvm.cuda(0) if self.manifest.target.is_cuda else tvm.cpu(0)


def random_inputs(specs: list[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """The inputs archc runs a model on when none are given (archc run, profile, bench, the loader's script):
    standard normal numbers for floating-point inputs, zeros for others; the same for the same seed."""
    rng = np.random.default_rng(seed)
    return {s.name: rng.standard_normal(s.shape).astype(s.dtype) if np.dtype(s.dtype).kind == "f"
            else np.zeros(s.shape, s.dtype) for s in specs}


def last_line(text: str, default: str, limit: int | None = None) -> str:
    """The last non-blank line of a many-line message (TVM's and subprocesses' errors end with what went wrong),
    stripped and cut to `limit` characters; `default` when there is none."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else default


def timed(run: Callable[[], Any], repeat: int) -> tuple[Any, list[float]]:
    """What a first (warm-up) call of `run` returns, then the seconds of each of `repeat` more calls."""
    result = run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return result, times


def _measure(pkg: Package, inputs: dict[str, np.ndarray], repeat: int) -> tuple[list[np.ndarray], list[float]]:
    return timed(lambda: pkg.run(inputs), repeat)


def check_threads(value: Any, name: str = "threads") -> int:
    """`value` as a thread count from 1 to MAX_THREADS; else one sentence that names `name` (the option or
    variable it came from) and the value."""
    if isinstance(value, str):  # digits only, as the pool and run_model read it (int() would take "1_0", " 3 ")
        number = int(value) if re.fullmatch(r"[+-]?[0-9]+", value) else 0
    else:
        number = int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else 0
    if not 1 <= number <= MAX_THREADS:
        raise PackageError(f"{name} must be a number of threads from 1 to {MAX_THREADS}, not {value!r}",
                           code="bad-threads")
    return number


def environment_threads() -> int | None:
    """TVM_NUM_THREADS as a thread count, None when it is unset or empty; one sentence when it is set to anything
    else than a count from 1 to MAX_THREADS (the pool would say so on stderr and use every CPU)."""
    text = os.environ.get(THREADS_VARIABLE, "")
    if not text:
        return None
    try:
        return check_threads(text, THREADS_VARIABLE)
    except PackageError:
        raise PackageError(f"the environment variable {THREADS_VARIABLE} is {text!r}: set it to a number of "
                           f"threads from 1 to {MAX_THREADS}, or unset it to use every CPU",
                           code="bad-threads") from None


def load_package(path: str | os.PathLike[str], threads: int | None = None) -> Package:
    """Read a package's manifest and check it can run here (the library is loaded on the first run). `threads`:
    the threads of the library's parallel loops, the caller included (default: TVM_NUM_THREADS, else every CPU);
    set on the library's pool before its first run."""
    if threads is not None:
        threads = check_threads(threads)
    else:
        environment_threads()
    folder = Path(path)
    if not (folder / MANIFEST).is_file():
        raise PackageError(f"'{folder}' is not an archc package (no {MANIFEST}); make one with "
                           "`archc compile MODEL --target NAME -o DIR`", code="not-a-package")
    try:
        manifest = Manifest.read(folder)
    except ManifestError as err:
        raise PackageError(f"the manifest of '{folder}' is corrupt ({err}); compile the package again",
                           code="corrupt-package") from None
    except OSError as err:
        raise PackageError(f"the manifest of '{folder}' cannot be read ({err.strerror or err})",
                           code="corrupt-package") from None
    if not (folder / manifest.library).is_file():
        raise PackageError(f"'{folder}' has no library {manifest.library}; compile the package again",
                           code="corrupt-package")
    warn_if_others_could_change(folder, manifest.library)
    return Package(folder, manifest, threads=threads)


_WARNED: set[Path] = set()  # the packages warned of in this process: each once, however often it is loaded


def warn_if_others_could_change(folder: Path, library: str) -> None:
    """Say once on stderr when someone else could have put or changed a package's code: its library is native code
    that runs as this user, and a well-formed manifest says nothing of who wrote it."""
    place = folder.resolve()
    why = None if place in _WARNED else others_could_change(place, library)
    if why is None:
        return
    _WARNED.add(place)
    print(f"archc: warning: the package '{folder}' is native code that runs as you, and {why}: run it only if you "
          "trust whoever could have written it", file=sys.stderr, flush=True)


def others_could_change(folder: Path, library: str) -> str | None:
    """Why another user could have written the package in `folder` (a resolved path), or None: the folder or its
    library belongs to another user or is writable by anyone, or the folder lies in one that is writable by anyone
    without the sticky bit (anyone may replace the whole package there; in a sticky folder such as /tmp, not)."""
    for path, what in ((folder, "its folder"), (folder / library, f"its library {library}")):
        st = path.stat()
        if st.st_uid != os.getuid():
            return f"{what} belongs to another user (uid {st.st_uid})"
        if st.st_mode & stat.S_IWOTH:
            return f"anyone may write to {what}"
    parent = folder.parent.stat().st_mode
    if parent & stat.S_IWOTH and not parent & stat.S_ISVTX:
        return f"it lies in '{folder.parent}', which anyone may write to"
    return None


def _has_gpu(tvm: Any) -> bool:
    try:
        return bool(tvm.cuda(0).exist)
    except Exception:  # a TVM built without CUDA's runtime says so by raising
        return False


def _emulation(pkg: Package) -> Any:
    """None when the package runs natively here (or fails to, which `_load_vm` says); a qemu.Emulator when it is
    an aarch64 package on an x86-64 machine that has qemu and the arm64 Python root; else a PackageError."""
    host = os.uname().machine
    if not pkg.manifest.target.is_arm or host in ("aarch64", "arm64"):
        return None
    target = pkg.manifest.target
    cannot = (f"'{pkg.path}' is built for {target.name} ({target.description}) and cannot run on this "
              f"{host} machine")
    if host not in ("x86_64", "AMD64"):
        raise PackageError(f"{cannot}; copy it to the device", code="wrong-machine")
    try:
        from . import qemu
    except ImportError:  # the copy in a package (archc_runtime.py) has no sibling module
        raise PackageError(f"{cannot} without archc's qemu set-up; copy it to the device, or run it with archc "
                           f"(`archc run`) after {INSTALL_QEMU}", code="wrong-machine") from None
    why = qemu.missing()
    if why:
        raise PackageError(f"{cannot} because {why}; run {INSTALL_QEMU} to emulate it with qemu, or copy it to the "
                           "device", code="no-qemu")
    emulator = qemu.emulator()
    built_with = pkg.manifest.tvm_version
    if emulator.tvm_version and built_with != emulator.tvm_version:
        raise PackageError(f"'{pkg.path}' was built with TVM {built_with} but the arm64 Python in '{emulator.root}' "
                           f"has TVM {emulator.tvm_version}; a library only loads in the TVM that built it: compile "
                           f"the package again, or run {INSTALL_QEMU} with TVM {built_with} installed",
                           code="tvm-version")
    return emulator


def _load_vm(pkg: Package) -> Any:
    try:
        import tvm
        from tvm.runtime.vm import VirtualMachine  # relax.VirtualMachine, without importing the compiler
    except ImportError:
        raise PackageError("running a package needs TVM's Python package: pip install apache-tvm",
                           code="no-tvm") from None
    built_with = pkg.manifest.tvm_version
    if built_with != tvm.__version__:
        raise PackageError(f"'{pkg.path}' was built with TVM {built_with} but TVM {tvm.__version__} is installed; "
                           "a library only loads in the TVM that built it: compile the package again",
                           code="tvm-version")
    target = pkg.manifest.target
    if target.is_arm != (os.uname().machine in ("aarch64", "arm64")):
        raise PackageError(f"'{pkg.path}' is built for {target.name} ({target.description}) and cannot run "
                           f"on this {os.uname().machine} machine; copy it to the device", code="wrong-machine")
    if target.is_cuda and not _has_gpu(tvm):
        raise PackageError(f"'{pkg.path}' is built for an NVIDIA GPU, and this machine has none (or no CUDA "
                           "driver); run it on a machine with a GPU", code="no-gpu")
    _load_runtime_extra()
    library = pkg.path / pkg.manifest.library
    _check_library(pkg, library)
    library = loadable(library)
    try:
        lib = tvm.runtime.load_module(str(library))
        vm = VirtualMachine(lib, pkg.device())
    except Exception as err:
        raise PackageError(f"the library of '{pkg.path}' does not load ({' '.join(str(err).split())[:200]}); "
                           "compile the package again", code="bad-library") from None
    if pkg.threads is not None:
        _set_threads(pkg, library, pkg.threads)
    return vm


_LOADED: dict[str, dict[tuple[int, int, int], Path]] = {}  # a library's path → each file loaded from it → by what name


def loadable(library: Path) -> Path:
    """The name to dlopen a library by. dlopen hands back the copy this process already loaded from a path of the
    same name even when the file there was replaced since (a package compiled again into the same folder, then
    loaded again): the old code would run. A file other than the first one loaded from a path is loaded by a name
    of its own (a hard link or a copy, in a folder removed when the process ends), so that its own code runs."""
    import atexit
    import shutil
    import tempfile
    st = library.stat()
    loaded = _LOADED.setdefault(str(library.resolve()), {})
    identity = (st.st_dev, st.st_ino, st.st_mtime_ns)
    if identity not in loaded:
        if loaded:
            folder = Path(tempfile.mkdtemp(prefix="archc-reloaded-"))
            atexit.register(shutil.rmtree, folder, True)
            try:  # a hard link, or a copy: TVM resolves a symbolic link back to the name already loaded
                os.link(library, folder / library.name)
            except OSError:
                shutil.copyfile(library, folder / library.name)
            loaded[identity] = folder / library.name
        else:
            loaded[identity] = library
    return loaded[identity]


def _check_library(pkg: Package, library: Path) -> None:
    """What dlopen would crash on rather than refuse: a file that is not ELF, or a 64-bit library cut short (its
    section headers are its last bytes; mapping past the end kills the process with SIGBUS). As run_model checks."""
    try:
        size = library.stat().st_size
        with library.open("rb") as f:
            head = f.read(64)
    except OSError as err:
        raise PackageError(f"the library of '{pkg.path}' cannot be read ({err.strerror or err})",
                           code="bad-library") from None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise PackageError(f"the library of '{pkg.path}' ({library.name}) is not a shared library; compile the "
                           "package again", code="corrupt-package")
    if len(head) == 64 and head[4] == 2:  # ELF64, little endian on every CPU archc builds for
        end = int.from_bytes(head[40:48], "little") + int.from_bytes(head[58:60], "little") * int.from_bytes(
            head[60:62], "little")
        if end > size:
            raise PackageError(f"the library of '{pkg.path}' is truncated ({size} bytes, its headers end at {end}); "
                               "copy the package again", code="corrupt-package")


def _set_threads(pkg: Package, library: Path, threads: int) -> None:
    """Fix the thread count of the library's pool (pool.c's archc_pool_set_threads) in the copy that TVM loaded:
    dlopen of the same file, RTLD_NOLOAD, returns that copy's handle."""
    try:
        lib = ctypes.CDLL(str(library), mode=os.RTLD_NOLOAD | os.RTLD_NOW)
        setter = lib.archc_pool_set_threads
    except (OSError, AttributeError):
        raise PackageError(f"the library of '{pkg.path}' has no archc thread pool to set threads on (built by "
                           "another archc version); compile the package again, or leave threads out",
                           code="old-package") from None
    setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
    if setter(threads) != 0:
        lib.archc_pool_threads.restype = ctypes.c_int
        raise PackageError(f"the library of '{pkg.path}' already runs on {lib.archc_pool_threads()} threads in this "
                           f"process, not {threads}: a library's threads are set before its first run; load the "
                           "package in a new process (or a copy of its folder)", code="threads-already-set")


def _load_runtime_extra() -> None:
    """With TVM_USE_RUNTIME_LIB=1 (how qemu runs packages: loading TVM's compiler library takes seconds there),
    `import tvm` loads only libtvm_runtime.so, not libtvm_runtime_extra.so, whose functions (sort, top-k) kernels
    may call: load it as `import tvm` otherwise does."""
    try:
        from tvm.base import _LOADED_LIBS, _RUNTIME_ONLY
        from tvm_ffi.libinfo import load_lib_ctypes
        if _RUNTIME_ONLY and "tvm_runtime_extra" not in _LOADED_LIBS:
            runtime_dir = Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent
            _LOADED_LIBS["tvm_runtime_extra"] = load_lib_ctypes(package="tvm", target_name="tvm_runtime_extra",
                                                                extra_lib_paths=[runtime_dir], mode="RTLD_LOCAL")
    except Exception:  # another TVM's internals, or no such library: the kernels that need it will say so
        pass


def _write_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> None:
    """np.savez by name, for any names (np.savez's own keywords, `file`, would clash)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(a), allow_pickle=False)


TIMES = "archc-times: "  # `main` prints the measured seconds on a line that starts so, as JSON


def main(argv: list[str] | None = None) -> int:
    """`python archc_runtime.py PKG [--inputs in.npz] [--output out.npz] [--repeat N] [--threads N]`: run a
    package on the inputs (by name; random numbers without --inputs), print the outputs' shapes and, with --repeat,
    the seconds of N runs after a warm-up; --output saves the outputs by name; --threads sets the library's threads
    (default: TVM_NUM_THREADS, else every CPU). Under qemu, archc's runtime drives this."""
    import argparse
    parser = argparse.ArgumentParser(prog="archc_runtime.py", description=main.__doc__)
    parser.add_argument("package")
    parser.add_argument("--inputs", help=".npz with one array per input name (default: random numbers)")
    parser.add_argument("--output", help="save the outputs here, as .npz by output name")
    parser.add_argument("--repeat", type=int, default=0, help="timed runs after a warm-up")
    parser.add_argument("--threads", help="threads of the library, the caller included (default: TVM_NUM_THREADS, "
                        "else every CPU)")
    args = parser.parse_args(argv)
    try:
        threads = None if args.threads is None else check_threads(args.threads, "--threads")
    except PackageError as err:
        parser.error(f"{err}  [{err.code}]")  # a usage error: exit status 2, as argparse's own
    try:
        pkg = load_package(args.package, threads)
        inputs = pkg.read_inputs(args.inputs or "random")
        outputs, times = _measure(pkg, inputs, max(args.repeat, 0))
    except PackageError as err:
        print(error_line(parser.prog, err), file=sys.stderr)
        return PACKAGE_ERROR_EXIT
    if args.output:
        _write_npz(args.output, {s.name: y for s, y in zip(pkg.outputs, outputs, strict=True)})
    for spec, y in zip(pkg.outputs, outputs, strict=True):
        print(f"{spec.name}: {'×'.join(map(str, y.shape))} {y.dtype}")
    if times:
        print(f"time: median {sorted(times)[len(times) // 2] * 1e3:.3f} ms, min {min(times) * 1e3:.3f} ms over "
              f"{len(times)} runs ({os.uname().machine})")
        print(TIMES + json.dumps(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
