"""This machine's fp32 FMA peak, measured: a tiny C kernel of independent vector FMAs, compiled at run time.

The CPU's name and CPUID say what the silicon could do, not what a VM's share of it does (and CPUID lies in VMs);
so the peak that kernels are held against is measured: `fma_peak(threads)` compiles a loop of `acc = acc * a + b`
over 12–16 independent accumulators of the widest vectors the CPU has (AVX-512, AVX2, else 128-bit), with the
system C compiler (`$CC`, `cc` or `gcc`, `-O2 -march=native -ffp-contract=fast`, so that each line is one fused
multiply-add; objdump confirms it where it is installed), runs it for ~0.2 s on each of `threads` pthreads started
together, and takes the best of 3 runs. Needs no TVM and no numpy: the kernel is loaded with ctypes.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from archc.errors import ArchcError
from archc.util.atomic import write_text
from archc.util.machine import all_cpu_flags, archc_cache, cpu_model, cpuinfo

SECONDS = 0.2  # each thread's run
RUNS = 3  # best of

# isa → (vector bytes, accumulators): enough independent chains to hide the FMA latency (4–5 cycles × 2 ports),
# few enough to stay in registers with the two constants (16 vector registers without AVX-512, 32 with it or NEON)
ISAS = {"avx512": (64, 16), "avx2": (32, 12), "avx-fma": (32, 12), "neon": (16, 16), "sse": (16, 12),
        "scalar128": (16, 12)}
FMA_MNEMONICS = ("vfmadd", "vfnmadd", "fmla", "fmadd")

_SOURCE = r"""
#include <pthread.h>
#include <time.h>

typedef float vf __attribute__((vector_size(@BYTES@)));

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

typedef struct { double seconds, start, end; long iters; float sink; int *go; } job_t;

/* @N@ independent chains of acc = acc * a + b (one FMA each with -ffp-contract=fast); converges to b / (1 - a) */
static long __attribute__((noinline)) chunk(long iters, vf *state, float scale, float shift) {
    vf a, b;
    for (int i = 0; i < (int)(sizeof(vf) / sizeof(float)); i++) { a[i] = scale; b[i] = shift; }
@LOAD@
    for (long i = 0; i < iters; i++) {
@BODY@
    }
@STORE@
    return iters;
}

static void *worker(void *arg) {
    job_t *job = (job_t *)arg;
    vf state[@N@];
    for (int j = 0; j < @N@; j++)
        for (int i = 0; i < (int)(sizeof(vf) / sizeof(float)); i++) state[j][i] = 1.0f + 0.01f * j + 0.001f * i;
    while (!__atomic_load_n(job->go, __ATOMIC_ACQUIRE)) { }  /* all threads start together */
    double start = now(), end = start;
    long iters = 0;
    while (end - start < job->seconds) {
        iters += chunk(20000, state, 0.999f, 0.001f);
        end = now();
    }
    float sink = 0;
    for (int j = 0; j < @N@; j++)
        for (int i = 0; i < (int)(sizeof(vf) / sizeof(float)); i++) sink += state[j][i];
    job->start = start; job->end = end; job->iters = iters; job->sink = sink;
    return 0;
}

/* GFLOP/s of `threads` threads started together: all their FMAs (2 FLOPs a lane) over the span from the first
   start to the last end; each thread's own rate goes to per_thread[]. Returns -1 if a thread cannot start. */
double archc_fma_peak(int threads, double seconds, double *per_thread) {
    pthread_t ids[256];
    job_t jobs[256];
    int go = 0, started = 0;
    if (threads < 1 || threads > 256) return -1;
    for (int t = 0; t < threads; t++) {
        jobs[t].seconds = seconds; jobs[t].go = &go;
        if (pthread_create(&ids[t], 0, worker, &jobs[t]) != 0) break;
        started++;
    }
    __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    for (int t = 0; t < started; t++) pthread_join(ids[t], 0);
    if (started < threads) return -1;
    double first = jobs[0].start, last = jobs[0].end, flops = 0, flop_per_iter = 2.0 * @N@ * (sizeof(vf) / 4);
    for (int t = 0; t < threads; t++) {
        if (jobs[t].start < first) first = jobs[t].start;
        if (jobs[t].end > last) last = jobs[t].end;
        flops += jobs[t].iters * flop_per_iter;
        per_thread[t] = jobs[t].iters * flop_per_iter / (jobs[t].end - jobs[t].start) / 1e9;
    }
    return flops / (last - first) / 1e9;
}
"""


def fma_peak(threads: int = 1, isa: str | None = None, seconds: float = SECONDS) -> dict[str, Any]:
    """The fp32 FMA peak of `threads` threads in GFLOP/s, measured (best of 3 runs of `seconds`): `gflops` (all
    threads together), `per_core` (that divided by the threads), `per_thread` (each thread's own rate in that
    run), `isa`, `threads`, `method` (one sentence). `isa`: vectors of that ISA (ISAS) rather than the widest the
    CPU has, which must be able to run them."""
    if threads < 1 or threads > 256:
        raise ArchcError(f"measuring the FMA peak takes 1 to 256 threads, not {threads}", code="bad-threads")
    isa = isa or detect_isa()
    lib = _library(isa)
    per_thread = (ctypes.c_double * threads)()
    best, best_threads = 0.0, [0.0] * threads
    for _ in range(RUNS):
        got = lib.archc_fma_peak(threads, seconds, per_thread)
        if got < 0:
            raise ArchcError(f"the FMA peak kernel could not start {threads} threads", code="measure-failed")
        if got > best:
            best, best_threads = got, list(per_thread)
    width, accumulators = ISAS[isa]
    return {"gflops": best, "per_core": best / threads, "per_thread": best_threads, "isa": isa, "threads": threads,
            "method": (f"{accumulators} independent {width * 8}-bit fp32 FMA chains per thread ({isa}, C compiled "
                       f"with -O2 -march=native) on {threads} pthread(s) started together for {seconds} s, 2 FLOPs "
                       f"a lane, the best of {RUNS} runs")}


@cache
def half_width_fma_is_full() -> bool:
    """Whether this AVX-512 CPU's 256-bit fp32 FMA peak matches its 512-bit one (within 1.5×: AMD Zen 4 runs a
    512-bit FMA as two 256-bit halves, 116 against 110 GFLOP/s; Intel's two 512-bit units give 2×), one thread,
    best of 3 runs of 0.05 s each. Kept in the user's cache (`$XDG_CACHE_HOME/archc/machine/`, keyed by the CPU's
    model and flags): every native build asks, and measuring costs two C compiles and 0.3 s."""
    info = cpuinfo()
    model = cpu_model(info)
    key = hashlib.sha256(f"{model} {' '.join(sorted(all_cpu_flags(info)))}".encode()).hexdigest()[:16]
    try:
        path: Path | None = archc_cache() / "machine" / f"{key}.json"
    except OSError:  # a home that cannot be written: measured in each process
        path = None
    try:
        if path is not None:
            return bool(json.loads(path.read_text(encoding="utf-8"))["half_width_fma_is_full"])
    except (OSError, ValueError, KeyError, TypeError):  # not measured yet, or a record it cannot read
        pass
    wide, half = (fma_peak(1, isa, seconds=0.05)["gflops"] for isa in ("avx512", "avx2"))
    full = wide < 1.5 * half
    try:
        if path is not None:
            write_text(path, json.dumps({"cpu": model, "half_width_fma_is_full": full, "gflops_512": round(wide, 1),
                                         "gflops_256": round(half, 1)}) + "\n")
    except OSError:  # a read-only cache: measured again next time
        pass
    return full


def detect_isa(flags: set[str] | None = None, machine: str | None = None) -> str:
    """The widest fp32 FMA vectors this CPU has, from /proc/cpuinfo's flags (x86) or the architecture (aarch64)."""
    machine = machine or platform.machine()
    if flags is None:
        flags = all_cpu_flags()
    if machine.lower() in ("aarch64", "arm64"):
        return "neon"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags and "fma" in flags:
        return "avx2"
    if "fma" in flags and "avx" in flags:
        return "avx-fma"
    if "sse2" in flags:
        return "sse"
    return "scalar128"  # a 128-bit GCC vector, whatever the compiler makes of it


def compiler() -> str:
    """The system C compiler: $CC, else cc, else gcc."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    raise ArchcError("measuring the FMA peak needs a C compiler (cc or gcc), and none is installed: "
                     "install gcc (apt-get install gcc)", code="no-compiler")


def source(isa: str) -> str:
    """The C kernel for `isa` (its vector width and number of accumulators)."""
    width, n = ISAS[isa]
    return (_SOURCE.replace("@BYTES@", str(width)).replace("@N@", str(n))
            .replace("@LOAD@", "\n".join(f"    vf c{j} = state[{j}];" for j in range(n)))
            .replace("@BODY@", "\n".join(f"        c{j} = c{j} * a + b;" for j in range(n)))
            .replace("@STORE@", "\n".join(f"    state[{j}] = c{j};" for j in range(n))))


@cache
def _library(isa: str) -> Any:
    """The kernel compiled for `isa` into a temporary folder and loaded (once per process)."""
    cc = compiler()
    text = source(isa)
    folder = Path(tempfile.mkdtemp(prefix="archc-peak-"))
    c_file = folder / "peak.c"
    so_file = folder / f"peak-{hashlib.sha256(text.encode()).hexdigest()[:12]}.so"
    c_file.write_text(text, encoding="utf-8")
    flags = ["-O2", "-march=native", "-ffp-contract=fast", "-fPIC", "-shared", "-pthread"]
    try:
        out = subprocess.run([cc, *flags, "-o", str(so_file), str(c_file)], capture_output=True, text=True,
                             timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        raise ArchcError(f"the C compiler '{cc}' could not build the FMA peak kernel ({err})",
                         code="measure-failed") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no message"])[-1]
        raise ArchcError(f"the C compiler '{cc}' could not build the FMA peak kernel: {last}", code="measure-failed")
    if isa not in ("sse", "scalar128") and fma_instructions(so_file) == 0:
        raise ArchcError(f"the C compiler '{cc}' emitted no FMA instruction for the {isa} peak kernel, so it "
                         "would not measure the FMA peak; use a GCC or Clang that supports -march=native",
                         code="measure-failed")
    lib = ctypes.CDLL(str(so_file))
    lib.archc_fma_peak.restype = ctypes.c_double
    lib.archc_fma_peak.argtypes = [ctypes.c_int, ctypes.c_double, ctypes.POINTER(ctypes.c_double)]
    shutil.rmtree(folder, ignore_errors=True)  # the loaded library stays mapped
    return lib


def fma_instructions(library: str | Path) -> int | None:
    """How many fused multiply-add instructions objdump finds in the library (None without objdump)."""
    if shutil.which("objdump") is None:
        return None
    try:
        out = subprocess.run(["objdump", "-d", str(library)], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return sum(1 for line in out.stdout.splitlines() if any(m in line for m in FMA_MNEMONICS))
