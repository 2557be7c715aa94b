"""The machine a benchmark ran on: CPU (model, LLVM's name for it, the SIMD and matrix flags that matter, cores),
its **measured** fp32 peak and memory bandwidth, the GPU if any, the load before and after, and the versions of
every package involved (archc's git revision too), so that results from several machines can be compared later.

The peak and the bandwidth are measured, never looked up from the CPU's name (`measure`): the peak is the FMA
instruction limit of the threads the benchmark uses (`archc.util.peak`), the bandwidth an array copy in a
fresh child process whose thread pools are limited to them.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from archc.measurement.results import Cpu, Environment, Gpu, Load
from archc.util.machine import all_cpu_flags, cpu_model, cpuinfo, cpus

# the CPU flags that decide how fast fp32/bf16/int8 kernels can be (x86, then Arm), in this order when present
FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
         "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8",
         "neon", "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme")
PACKAGES = ("onnxruntime", "apache-tvm", "apache-tvm-ffi", "numpy", "onnx", "openvino", "iree-base-compiler",
            "iree-base-runtime", "torch", "onnx2torch")
COPY_BYTES = 256 * 2**20  # the array copied to measure bandwidth: far beyond any last-level cache
BANDWIDTH_METHOD = ("a 256 MiB float32 array copied by {threads} thread(s) (numpy copyto, one slice each) in a "
                    "fresh process; the best of 5, counting bytes read plus bytes written")


@dataclass(frozen=True)
class Measured:
    """The fp32 peak (GFLOP/s, and how it was measured) and memory bandwidth (GB/s) of some threads."""
    peak_gflops: float
    peak_method: str
    bandwidth_gbs: float


_measured: dict[int, Measured] = {}  # threads → measured peak and bandwidth: once per process


def environment(threads: int | None = None) -> Environment:
    """Everything about this machine but the load (see `load_state`) and the memory baseline, which the benchmark
    adds, with the peak and bandwidth measured for `threads` threads (default: every CPU this process may use)."""
    threads = threads or cpus()
    info = cpuinfo()
    measured = measure(threads)
    return Environment(
        host=socket.gethostname(), os=f"{platform.system()} {platform.release()}", python=platform.python_version(),
        cpu=Cpu(model=cpu_model(info), llvm_cpu=llvm_cpu(), flags=cpu_flags(info),
                physical_cores=physical_cores(info), logical_cpus=cpus(),
                peak_gflops=round(measured.peak_gflops, 2), peak_method=measured.peak_method,
                bandwidth_gbs=round(measured.bandwidth_gbs, 2),
                bandwidth_method=BANDWIDTH_METHOD.format(threads=threads)),
        gpu=gpu(), packages=packages())


def load_state(before: tuple[float, ...] | list[float], after: tuple[float, ...] | list[float] | None,
               cores: int) -> Load:
    """The load record: the 1-, 5- and 15-minute load averages before and after the run, and whether the machine
    was busy. Busy means the 1-minute load before the run (when only other work made it) reached the core count:
    the benchmark's own threads raise the load after, so that figure is recorded but does not decide."""
    loaded = before[0] >= cores
    warning = None
    if loaded:
        warning = (f"the machine was busy: its load average was {before[0]:.2f} over the last minute before the run, "
                   f"on {cores} core{'s' if cores != 1 else ''}; other work competed with the measurements, so they "
                   "are slower and noisier than on an idle machine")
    return Load(before=[round(x, 2) for x in before], after=[round(x, 2) for x in after] if after else None,
                cores=cores, loaded=loaded, warning=warning)


def loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:  # not available on this platform
        return (0.0, 0.0, 0.0)


def measure(threads: int) -> Measured:
    """The fp32 peak (GFLOP/s) and memory bandwidth (GB/s) of `threads` threads, measured once per process.

    The peak is the instruction limit, the one ceiling every figure is held against (`archc.util.peak.fma_peak`:
    independent FMA chains of the widest vectors): no kernel can pass it, while a matrix multiply's rate (numpy's
    sgemm reached 400 of 488 GFLOP/s on a 2-core Xeon) is a kernel's own, which a better kernel beats. The
    bandwidth is an array copy in a child whose thread pools are limited to `threads`."""
    if threads not in _measured:
        from archc.util.peak import fma_peak
        peak = fma_peak(threads)
        env = {**os.environ, **{k: str(threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                            "MKL_NUM_THREADS", "BLIS_NUM_THREADS")}}
        out = subprocess.run([sys.executable, "-c", _PROBE, str(threads), str(COPY_BYTES)], env=env,
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            from archc.errors import ArchcError
            from archc.runtime import last_line
            raise ArchcError("measuring this machine's memory bandwidth failed "
                             f"({last_line(out.stderr, 'no message')})", code="measure-failed")
        bandwidth = json.loads(out.stdout.strip().splitlines()[-1])["bandwidth_gbs"]
        _measured[threads] = Measured(peak["gflops"], peak["method"], bandwidth)
    return _measured[threads]


_PROBE = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
threads, nbytes = int(sys.argv[1]), int(sys.argv[2])
src = np.ones(nbytes // 4, np.float32)
dst = np.zeros_like(src)
edges = np.linspace(0, src.size, threads + 1).astype(int)
parts = list(zip(edges[:-1], edges[1:]))
best = float("inf")
with ThreadPoolExecutor(threads) as pool:
    for _ in range(5):
        t = time.perf_counter()
        list(pool.map(lambda p: np.copyto(dst[p[0]:p[1]], src[p[0]:p[1]]), parts))
        best = min(best, time.perf_counter() - t)
print(json.dumps({"bandwidth_gbs": 2 * src.nbytes / best / 1e9}))
"""


def cpu_flags(info: list[dict[str, str]] | None = None) -> list[str]:
    """The flags of FLAGS this CPU has, in FLAGS' order."""
    have = all_cpu_flags(info)
    return [f for f in FLAGS if f in have]


def physical_cores(info: list[dict[str, str]] | None = None) -> int:
    """Distinct (package, core) pairs among the CPUs this process may use; the logical count where /proc/cpuinfo
    does not say (Arm, or no /proc)."""
    info = cpuinfo() if info is None else info
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cores = set()
    for entry in info:
        if "core id" not in entry or "processor" not in entry:
            return cpus()
        if allowed is None or int(entry["processor"]) in allowed:
            cores.add((entry.get("physical id", "0"), entry["core id"]))
    return len(cores) or cpus()


def llvm_cpu() -> str | None:
    """LLVM's name for this CPU (what `--target native` compiles for), None without TVM."""
    try:
        from archc import targets
        from archc.lower.tvm_target import tvm_target_dict
        return str(tvm_target_dict(targets.get("native"))["mcpu"])
    except Exception:  # no TVM, or a TVM without LLVM
        return None


def gpu() -> Gpu | None:
    """The first NVIDIA GPU (name, driver, how many there are), None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not lines:
        return None
    name, _, driver = lines[0].rpartition(",")
    return Gpu(name=name.strip(), driver=driver.strip(), count=len(lines))


def packages() -> dict[str, str | None]:
    """Installed versions (None: not installed), archc's own and its git revision where it runs from a checkout."""
    from archc.version import __version__
    found: dict[str, str | None] = {"archc": __version__, "archc_git": git_revision()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_revision() -> str | None:
    """The short commit archc runs from, `-dirty` when tracked files differ from it; None outside a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=7", "HEAD"], capture_output=True,
                             text=True, timeout=30)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
