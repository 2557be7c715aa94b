"""archc's CPU parallel runtime (archc/runtime/pool.c), linked into every library by archc/lower/link.py.

The pool on its own (no TVM): a C stress program with real concurrency, and ctypes calls for its contract (exactly
num_task tasks, each once; threads × 4 by default; a failing task makes the launch fail; nested and concurrent
launches run inline; the barrier refuses). Through TVM: hand-written parallel kernels exported with link.fcompile
read archc's pointers, not TVM's, and compute the right thing at 1, 2, 3 and 7 threads, with more tasks than
iterations and fewer; a worker's error reaches the caller; two libraries keep two pools. A model package whose
kernels have parallel loops matches onnxruntime beside a CPU hog, through archc's loader and through run_model.
Threads as a parameter: the pool's setter (before its workers start, not after), a bad TVM_NUM_THREADS said on
stderr and never taken for "all", and a package run at 1, 2 and 3 threads by load_package and run_model, each
starting that many threads (the pool's own count, and the archc-pool threads of /proc/self/task).
"""
from __future__ import annotations

import collections
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_close, onnxruntime_outputs, raises

from archc.lower import link

pytestmark = pytest.mark.tvm
ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
POOL = ROOT / "archc" / "runtime" / "pool.c"
SIZES = (3, 1000, 100003)  # a kernel `scale_N` per size: fewer iterations than tasks, and many more


class Env(ctypes.Structure):
    _fields_ = [("sync_handle", ctypes.c_void_p), ("num_task", ctypes.c_int32)]


LAMBDA = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.POINTER(Env), ctypes.c_void_p)


def pool_api(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.archc_pool_launch.argtypes = [LAMBDA, ctypes.c_void_p, ctypes.c_int]
    lib.archc_pool_set_threads.argtypes = [ctypes.c_int]
    lib.archc_pool_barrier.argtypes = [ctypes.c_int, ctypes.POINTER(Env)]
    lib.archc_pool_launches.restype = ctypes.c_uint64
    lib.archc_pool_inline_launches.restype = ctypes.c_uint64
    return lib


# ---- the pool alone ---------------------------------------------------------------------------------------------
STRESS = r"""
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct { void* sync_handle; int32_t num_task; } Env;
typedef int (*Lambda)(int, Env*, void*);
int archc_pool_launch(Lambda, void*, int);
typedef struct { int n, fail_at, nested, wrong_n, inner_failed; int hits[512]; } Job;
static int task(int i, Env* env, void* p) {
  Job* job = (Job*)p;
  volatile int k;
  if (env->num_task != job->n) __atomic_add_fetch(&job->wrong_n, 1, __ATOMIC_SEQ_CST);
  __atomic_add_fetch(&job->hits[i], 1, __ATOMIC_SEQ_CST);
  if (job->nested) {  /* a launch inside a task: inline, one task */
    Job inner;
    memset(&inner, 0, sizeof inner);
    inner.n = 1;
    inner.fail_at = -1;
    if (archc_pool_launch(task, &inner, 0) != 0 || inner.hits[0] != 1 || inner.wrong_n)
      __atomic_add_fetch(&job->inner_failed, 1, __ATOMIC_SEQ_CST);
  }
  for (k = 0; k < (i * 37) % 500; ++k) {}
  if ((i + job->n) % 5 == 0) sched_yield();
  return i == job->fail_at;
}
int main(int argc, char** argv) {
  int launches = argc > 2 ? atoi(argv[1]) : 0, default_tasks = argc > 2 ? atoi(argv[2]) : 1, r, i;
  static Job job;
  for (r = 0; r < launches; ++r) {
    int ask = r % 7 == 0 ? 0 : 1 + r % 37, rc;
    memset(&job, 0, sizeof job);
    job.n = ask ? ask : default_tasks;
    job.fail_at = r % 11 == 0 ? r % job.n : -1;
    job.nested = r % 13 == 0 && job.n > 1;  /* a one-task launch runs inline, outside the pool: a nested one may
                                               use the pool */
    rc = archc_pool_launch(task, &job, ask);
    if (rc != (job.fail_at >= 0 ? -1 : 0) || job.wrong_n || job.inner_failed) {
      printf("launch %d: rc %d, %d tasks saw another num_task, nested failed %d\n", r, rc, job.wrong_n,
             job.inner_failed);
      return 1;
    }
    for (i = 0; i < job.n; ++i)
      if (job.hits[i] != 1) { printf("launch %d: task %d of %d ran %d times\n", r, i, job.n, job.hits[i]); return 1; }
  }
  printf("ok\n");
  return 0;
}
"""


@pytest.fixture(scope="module")
def stress(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stress")
    (folder / "stress.c").write_text(STRESS)
    out = subprocess.run(["gcc", "-O2", "-pthread", "-Wall", "-Wextra", "-Werror", "-o", str(folder / "stress"),
                          str(folder / "stress.c"), str(POOL)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return folder / "stress"


@pytest.mark.parametrize("threads,per_thread,spin_us", [(4, 4, 0), (3, 2, 10), (2, 4, 100)])
def test_stress_every_task_exactly_once(stress, threads, per_thread, spin_us):
    """Thousands of launches of 1 to 37 tasks (or the default), some failing, some nesting a launch, the workers
    sleeping between launches (spin 0) or spinning: every task runs exactly once with its launch's num_task."""
    env = {**os.environ, "TVM_NUM_THREADS": str(threads), "ARCHC_TASKS_PER_THREAD": str(per_thread),
           "ARCHC_POOL_SPIN_US": str(spin_us), "ARCHC_POOL_STATS": "1"}
    out = subprocess.run([str(stress), "20000", str(threads * per_thread)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stdout + out.stderr
    (stats,) = out.stderr.splitlines()  # ARCHC_POOL_STATS: the launches (nested ones too), the tasks, who ran them
    found = re.fullmatch(r"archc pool: (\d+) launches \((\d+) inline\), (\d+) tasks \((\d+) by workers\), "
                         r"(\d+) threads, (\d+) workers started", stats)
    assert found, stats
    launches, _, tasks, by_workers, got_threads, workers = map(int, found.groups())
    assert launches > 20000 and tasks > 20000 and by_workers > 0  # the workers did take tasks
    assert (got_threads, workers) == (threads, threads - 1)


@pytest.fixture(scope="module", params=["gcc", "g++"])
def pool(request, tmp_path_factory):
    """pool.c alone as a shared library, compiled as C (gcc) and as C++ (g++, as TVM links), warnings as errors;
    its thread count fixed at 4 (read once, at the first launch)."""
    out = tmp_path_factory.mktemp("pool") / f"libpool-{request.param}.so"
    cmd = [request.param, "-shared", *link.POOL_FLAGS, "-Wall", "-Wextra", "-Werror", "-o", str(out), str(POOL)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lib = pool_api(ctypes.CDLL(str(out)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TVM_NUM_THREADS", "4")
        assert lib.archc_pool_threads() == 4
    return lib


class Recorder:
    """A ctypes task that records which tasks ran, with which num_task, on which threads."""

    def __init__(self, fail_at: int = -1):
        self.lock = threading.Lock()
        self.hits: collections.Counter = collections.Counter()
        self.threads: set[int] = set()
        self.fail_at = fail_at
        self.fn = LAMBDA(self)

    def __call__(self, task_id, penv, _cdata):
        with self.lock:
            self.hits[(task_id, penv.contents.num_task)] += 1
            self.threads.add(threading.get_ident())
        return 1 if task_id == self.fail_at else 0


@pytest.mark.parametrize("num_task", [1, 2, 5, 64])
def test_exactly_num_task_tasks_each_once(pool, num_task):
    rec = Recorder()
    assert pool.archc_pool_launch(rec.fn, None, num_task) == 0
    assert rec.hits == {(i, num_task): 1 for i in range(num_task)}


def test_default_is_four_tasks_per_thread_and_workers_start(pool):
    rec = Recorder()
    assert pool.archc_pool_launch(rec.fn, None, 0) == 0
    assert rec.hits == {(i, 16): 1 for i in range(16)}
    assert pool.archc_pool_workers() == 3


def test_a_failing_task_fails_the_launch_after_all_ran(pool):
    rec = Recorder(fail_at=3)
    assert pool.archc_pool_launch(rec.fn, None, 8) == -1
    assert rec.hits == {(i, 8): 1 for i in range(8)}
    assert pool.archc_pool_launch(Recorder().fn, None, 8) == 0  # the next launch starts clean


def test_nested_launch_runs_inline(pool):
    inner = Recorder()
    results = []

    def outer(task_id, penv, _):
        results.append((pool.archc_pool_launch(inner.fn, None, 0), threading.get_ident()))
        return 0
    fn = LAMBDA(outer)
    before = pool.archc_pool_inline_launches()
    assert pool.archc_pool_launch(fn, None, 4) == 0
    assert [r for r, _ in results] == [0] * 4 and inner.hits == {(0, 1): 4}  # one task each, num_task 1
    assert pool.archc_pool_inline_launches() - before == 4


def test_concurrent_launches_from_two_threads(pool):
    """A second thread's launch while one runs is run inline on that thread: both complete, nothing lost."""
    errors = []

    def launcher():
        for n in range(1, 40):
            rec = Recorder()
            # the pool's n tasks, or, inline, one task that covers the whole loop
            if pool.archc_pool_launch(rec.fn, None, n) != 0 or rec.hits not in ({(i, n): 1 for i in range(n)},
                                                                                {(0, 1): 1}):
                errors.append(n)
    threads = [threading.Thread(target=launcher) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_threads_are_set_before_the_workers_start_and_fixed_after(tmp_path, monkeypatch, capfd):
    """archc_pool_set_threads: -1 outside 1 to 1024; any count while no worker has started (a one-thread pool runs
    inline and starts none), and it wins over TVM_NUM_THREADS, bad or not, without a word; once workers run, the
    same count is accepted and another refused (-2)."""
    out = tmp_path / "libpool.so"
    done = subprocess.run(["gcc", "-shared", *link.POOL_FLAGS, "-o", str(out), str(POOL)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("TVM_NUM_THREADS", "abc")
    lib = pool_api(ctypes.CDLL(str(out)))
    assert [lib.archc_pool_set_threads(n) for n in (0, -1, 1025)] == [-1, -1, -1]
    assert lib.archc_pool_set_threads(1) == 0
    assert lib.archc_pool_launch(Recorder().fn, None, 4) == 0
    assert (lib.archc_pool_threads(), lib.archc_pool_workers(), lib.archc_pool_inline_launches()) == (1, 0, 1)
    assert lib.archc_pool_set_threads(3) == 0  # no worker yet: still free
    rec = Recorder()
    assert lib.archc_pool_launch(rec.fn, None, 0) == 0
    assert rec.hits == {(i, 12): 1 for i in range(12)} and lib.archc_pool_workers() == 2
    assert (lib.archc_pool_set_threads(3), lib.archc_pool_set_threads(2)) == (0, -2)
    assert lib.archc_pool_threads() == 3
    assert capfd.readouterr().err == ""  # TVM_NUM_THREADS=abc was never read


@pytest.mark.parametrize("value", ["0", "-1", "abc", "5000"])
def test_a_bad_thread_variable_is_said_and_every_cpu_used(stress, value):
    """TVM_NUM_THREADS that is no count from 1 to 1024 is not "all" silently: one line on stderr, then every CPU."""
    cpus = len(os.sched_getaffinity(0))
    env = {**os.environ, "TVM_NUM_THREADS": value, "ARCHC_POOL_STATS": "1"}
    out = subprocess.run([str(stress), "20", "8"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stdout + out.stderr
    warning, stats = out.stderr.splitlines()
    assert warning == (f"archc pool: TVM_NUM_THREADS='{value}' is not a number of threads from 1 to 1024; using "
                       f"every CPU ({cpus})")
    assert f", {cpus} threads, {cpus - 1} workers started" in stats


def test_barrier_refuses_once_on_stderr(pool, capfd):
    def barrier(task_id, penv, _):
        return pool.archc_pool_barrier(task_id, penv)
    fn = LAMBDA(barrier)
    assert pool.archc_pool_launch(fn, None, 2) == -1
    assert pool.archc_pool_launch(fn, None, 2) == -1
    err = capfd.readouterr().err
    assert err.count("archc pool: TVMBackendParallelBarrier is not supported") == 1


# ---- kernels that TVM compiled --------------------------------------------------------------------------------
def kernels_module():
    """`scale_N` (B = 2A + 1 over N, one parallel loop), `twice` (two parallel loops: two launches a call) and
    `checked` (an assert inside the parallel loop)."""
    import tvm
    from tvm import s_tir, te

    def parallel(f, name):
        sch = s_tir.Schedule(f)
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            sch.parallel(sch.get_loops(block)[0])
        return sch.mod["main"].with_attr("global_symbol", name)

    def scale(n):
        a = te.placeholder((n,), name="A")
        b = te.compute((n,), lambda i: a[i] * 2.0 + 1.0, name="B")
        return parallel(te.create_prim_func([a, b]), f"scale_{n}")

    funcs = {f"scale_{n}": scale(n) for n in SIZES}
    a = te.placeholder((4096,), name="A")
    c = te.compute((4096,), lambda i: a[i] + 1.0, name="C")
    d = te.compute((4096,), lambda i: c[4095 - i] * 3.0, name="D")
    funcs["twice"] = parallel(te.create_prim_func([a, d]), "twice")

    from tvm.script import tirx as T

    @T.prim_func
    def checked(A: T.Buffer((1000,), "float32"), B: T.Buffer((1000,), "float32")):
        T.func_attr({"global_symbol": "checked", "tirx.noalias": True})
        for i in T.parallel(1000):
            assert A[i] >= T.float32(0), "archc test: a negative input"
            B[i] = A[i]
    funcs["checked"] = checked
    return tvm.IRModule(funcs)


CHECK = r"""
import ctypes, sys
import numpy as np, tvm
path, threads, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")]
m = tvm.runtime.load_module(path)
pool = ctypes.CDLL(path)
pool.archc_pool_launches.restype = ctypes.c_uint64
rng = np.random.default_rng(0)
calls = 0
for n in sizes:
    a = rng.standard_normal(n).astype("float32")
    b = tvm.runtime.tensor(np.zeros(n, "float32"))
    for _ in range(10):
        m[f"scale_{n}"](tvm.runtime.tensor(a), b)
        calls += 1
        assert np.array_equal(b.numpy(), a * np.float32(2) + np.float32(1)), n
a = rng.standard_normal(4096).astype("float32")
d = tvm.runtime.tensor(np.zeros(4096, "float32"))
for _ in range(10):
    m["twice"](tvm.runtime.tensor(a), d)
    calls += 2
    assert np.array_equal(d.numpy(), (a[::-1] + np.float32(1)) * np.float32(3))
assert pool.archc_pool_threads() == threads, pool.archc_pool_threads()
assert pool.archc_pool_launches() == calls, (pool.archc_pool_launches(), calls)
print("ok", calls)
"""


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """The kernels exported with archc's pool, and the same module exported the stock way."""
    import tvm
    folder = tmp_path_factory.mktemp("kernels")
    lib = tvm.tirx.build(kernels_module(), target="llvm")
    lib.export_library(str(folder / "kernels.so"), fcompile=link.fcompile())
    lib.export_library(str(folder / "stock.so"))
    (folder / "check.py").write_text(CHECK)
    return folder


def symbols(path: Path, dynamic: bool = False) -> dict[str, str]:
    out = subprocess.run(["nm", *(["-D"] if dynamic else []), str(path)], capture_output=True, text=True, check=True)
    return {p[-1]: p[-2] for p in (line.split() for line in out.stdout.splitlines()) if len(p) >= 2}


def test_the_library_reads_archc_pointers_not_tvms(kernels):
    stock, ours, exported = symbols(kernels / "stock.so"), symbols(kernels / "kernels.so"), \
        symbols(kernels / "kernels.so", dynamic=True)
    assert "__TVMBackendParallelLaunch" in stock  # what TVM's loader would fill
    assert "__TVMBackendParallelLaunch" not in ours and "__TVMBackendParallelBarrier" not in ours
    assert ours["__archc_parallel_launch"] == "d"  # defined, local: each library binds to its own pool
    assert "__archc_parallel_launch" not in exported and exported["archc_pool_launches"] == "T"


@pytest.mark.parametrize("threads,per_thread", [(1, 4), (2, 4), (3, 1), (7, 4)])
def test_kernels_compute_right_at_any_thread_count(kernels, threads, per_thread):
    """1 thread (inline), 2 (8 tasks: more than scale_3's iterations), 3 with one task each (fewer tasks than
    iterations, by far), 7 on this machine's fewer cores (28 tasks)."""
    env = {**os.environ, "TVM_NUM_THREADS": str(threads), "ARCHC_TASKS_PER_THREAD": str(per_thread),
           "TVM_USE_RUNTIME_LIB": "1"}
    out = subprocess.run([sys.executable, str(kernels / "check.py"), str(kernels / "kernels.so"), str(threads),
                          ",".join(map(str, SIZES))], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stdout + out.stderr


@pytest.fixture(scope="module")
def loaded(kernels):
    import tvm
    return tvm.runtime.load_module(str(kernels / "kernels.so")), pool_api(ctypes.CDLL(str(kernels / "kernels.so")))


def test_kernel_launched_from_inside_a_task_runs_inline(loaded):
    """A TVM kernel called from a task of its own library's pool: its launch is nested, so it runs inline."""
    import tvm
    module, lib = loaded
    a = np.arange(1000, dtype="float32")
    outs = [tvm.runtime.tensor(np.zeros(1000, "float32")) for _ in range(3)]

    def task(task_id, penv, _):
        module["scale_1000"](tvm.runtime.tensor(a), outs[task_id])
        return 0
    fn = LAMBDA(task)
    before = lib.archc_pool_inline_launches()
    assert lib.archc_pool_launch(fn, None, 3) == 0
    assert lib.archc_pool_inline_launches() - before == 3
    for out in outs:
        assert np.array_equal(out.numpy(), a * 2 + 1)


def test_a_failing_task_reports_its_error(loaded):
    """An assert inside the parallel loop fails whichever thread ran that task: the caller raises its message."""
    import tvm
    module, _ = loaded
    b = tvm.runtime.tensor(np.zeros(1000, "float32"))
    for bad in (0, 499, 999):
        a = np.ones(1000, "float32")
        a[bad] = -1
        for _ in range(5):
            with pytest.raises(Exception, match="archc test: a negative input"):
                module["checked"](tvm.runtime.tensor(a), b)
    module["checked"](tvm.runtime.tensor(np.ones(1000, "float32")), b)  # and the next call is clean


def test_two_libraries_each_have_their_own_pool(kernels, loaded, tmp_path):
    import tvm
    module, lib = loaded
    shutil.copyfile(kernels / "kernels.so", tmp_path / "other.so")  # another file: dlopen loads it again
    other = tvm.runtime.load_module(str(tmp_path / "other.so"))
    other_lib = pool_api(ctypes.CDLL(str(tmp_path / "other.so")))
    a = tvm.runtime.tensor(np.arange(1000, dtype="float32"))
    b = tvm.runtime.tensor(np.zeros(1000, "float32"))
    mine, theirs = lib.archc_pool_launches(), other_lib.archc_pool_launches()
    for _ in range(5):
        module["scale_1000"](a, b)
        other["scale_1000"](a, b)
        other["scale_1000"](a, b)
    assert (lib.archc_pool_launches() - mine, other_lib.archc_pool_launches() - theirs) == (5, 10)
    assert np.array_equal(b.numpy(), np.arange(1000, dtype="float32") * 2 + 1)


def test_objcopy_for_the_compiler():
    assert Path(link.objcopy_for("g++")).name in ("objcopy", "llvm-objcopy")
    if shutil.which("aarch64-linux-gnu-objcopy"):
        assert link.objcopy_for("aarch64-linux-gnu-gcc").endswith("aarch64-linux-gnu-objcopy")
        assert link.objcopy_for("/usr/bin/aarch64-linux-gnu-g++") == "/usr/bin/aarch64-linux-gnu-objcopy"
    with raises("no-objcopy", naming=("sparc64-linux-gnu-objcopy", "binutils-sparc64-linux-gnu")):  # and its package
        link.objcopy_for("sparc64-linux-gnu-gcc")


@pytest.mark.cross
def test_aarch64_kernels_on_the_pool_under_qemu(tmp_path):
    """Cross compiled and linked with aarch64-linux-gnu-gcc (pool.c's aarch64 pause), run in the emulated Python."""
    import tvm

    from archc.runtime import qemu
    lib = tvm.tirx.build(kernels_module(), target={"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                                                   "mattr": ["+neon"]})
    lib.export_library(str(tmp_path / "kernels.so"), fcompile=link.fcompile("aarch64-linux-gnu-gcc"))
    assert "__TVMBackendParallelLaunch" not in symbols(tmp_path / "kernels.so")
    (tmp_path / "check.py").write_text(CHECK)
    emulator = qemu.emulator()
    out = subprocess.run(emulator.command(tmp_path / "check.py", str(tmp_path / "kernels.so"), "3", "3,1000"),
                         env={**emulator.environment(), "TVM_NUM_THREADS": "3"}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stdout + out.stderr


# ---- a model package ------------------------------------------------------------------------------------------
def parallelize(mod):
    """Each block's leading spatial loops fused into one parallel loop: what a tuned schedule does first, without
    the minutes of tuning (archc's untuned kernels are single-threaded)."""
    from tvm import s_tir, tirx
    out = mod
    for gv, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        sch = s_tir.Schedule(func)
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            loops = sch.get_loops(block)
            kinds = [iv.iter_type for iv in sch.get(block).iter_vars]
            spatial = next((i for i, kind in enumerate(kinds) if kind != 0), len(kinds))
            if len(loops) != len(kinds) or spatial == 0:
                continue
            fused = sch.fuse(*loops[:spatial]) if spatial > 1 else loops[0]
            if int(sch.get(fused).extent) > 1:
                sch.parallel(fused)
        out[gv] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
    return out


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """LeNet-5 with parallel kernels, through archc's own packaging (write_package)."""
    import tvm

    import archc
    from archc import targets
    from archc.deploy.manifest import BuildReport
    from archc.lower.build import Lowered, import_onnx
    from archc.lower.package import write_package
    from archc.lower.tune import prepare
    from archc.lower.tvm_target import tvm_target
    model = archc.load(SPECS / "lenet5.arch")
    target = targets.get("native")
    tgt = tvm_target(target)
    executable = tvm.compile(parallelize(prepare(import_onnx(model), tgt)), target=tgt)
    folder = tmp_path_factory.mktemp("pkg") / "lenet5"
    write_package(model, Lowered(executable, target, tgt, BuildReport()), folder)
    return folder


def test_package_library_runs_on_archc_pool(package):
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["build"]["parallel_runtime"] == "archc"
    assert "__TVMBackendParallelLaunch" not in symbols(package / "lenet5.so")
    assert "__archc_parallel_launch" in symbols(package / "lenet5.so")


def test_model_matches_onnxruntime_beside_a_cpu_hog(package):
    from archc.runtime import load_package
    pkg = load_package(package)
    rng = np.random.default_rng(2)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        for _ in range(20):
            x = {"image": rng.standard_normal((1, 1, 32, 32)).astype("float32")}
            assert_close(pkg.run(x), onnxruntime_outputs(package / "model.onnx", x))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    lib = pool_api(ctypes.CDLL(str(package / "lenet5.so")))  # the library the package loaded
    assert lib.archc_pool_launches() >= 20 * 5  # every call ran several parallel kernels through the pool


def test_cpp_loader_runs_on_archc_pool(package, tmp_path):
    if not shutil.which("g++") or not shutil.which("make"):
        pytest.skip("building the C++ loader needs g++ and make (Debian/Ubuntu: apt-get install g++ make)")
    made = subprocess.run(["make", "-C", str(package / "cpp")], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    x = np.random.default_rng(3).standard_normal((1, 1, 32, 32)).astype("float32")
    np.save(tmp_path / "image.npy", x)
    env = {**{k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")},
           "ARCHC_POOL_STATS": "1", "TVM_NUM_THREADS": "3"}
    out = subprocess.run([str(package / "run_model"), str(package / "lenet5.so"), str(tmp_path / "image.npy"),
                          "-o", str(tmp_path / "out"), "--repeat", "3"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert_close([np.load(tmp_path / "out" / "out0.npy")], onnxruntime_outputs(package / "model.onnx", {"image": x}))
    stats = [line for line in out.stderr.splitlines() if line.startswith("archc pool: ")]
    assert len(stats) == 1 and ", 3 threads, 2 workers started" in stats[0]
    assert int(stats[0].split()[2]) >= 4 * 5  # four runs (a warm-up and three), several parallel kernels each


def pool_threads_started() -> int:
    """Threads of this process named archc-pool (every library's pool names its workers so)."""
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            names.append(Path(f"/proc/self/task/{task}/comm").read_text().strip())
        except OSError:  # a thread that just ended
            pass
    return names.count("archc-pool")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_package_runs_on_the_threads_it_is_given(package, tmp_path, threads):
    """load_package(threads=N): outputs equal onnxruntime's, the library's pool has N threads and started N - 1
    workers (counted in /proc/self/task too); from then that library's count is fixed in this process. A copy of
    the package is another library with a fresh pool (the fixture's library already ran here)."""
    from archc.runtime import PackageError, load_package
    copy = tmp_path / "lenet5"
    copy.mkdir()
    for name in ("manifest.json", "lenet5.so", "model.onnx"):
        shutil.copyfile(package / name, copy / name)
    before = pool_threads_started()
    pkg = load_package(copy, threads=threads)
    x = {"image": np.random.default_rng(threads).standard_normal((1, 1, 32, 32)).astype("float32")}
    for _ in range(3):
        assert_close(pkg.run(x), onnxruntime_outputs(package / "model.onnx", x))
    lib = pool_api(ctypes.CDLL(str(copy / "lenet5.so")))  # the library the package loaded
    assert (lib.archc_pool_threads(), lib.archc_pool_workers()) == (threads, threads - 1)
    assert lib.archc_pool_launches() >= 3 * 5
    assert pool_threads_started() - before == threads - 1
    assert load_package(copy, threads=threads).run(x)  # the same count again: fine
    if threads > 1:
        with raises("threads-already-set", PackageError, naming=(f"on {threads} threads", "not 1")):
            load_package(copy, threads=1).run(x)


@pytest.fixture(scope="module")
def run_model_program(package):
    if not shutil.which("g++") or not shutil.which("make"):
        pytest.skip("building the C++ loader needs g++ and make (Debian/Ubuntu: apt-get install g++ make)")
    made = subprocess.run(["make", "-C", str(package / "cpp")], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    return package / "run_model"


@pytest.mark.parametrize("threads", [1, 3])
def test_cpp_loader_runs_on_the_threads_it_is_given(package, run_model_program, tmp_path, threads):
    """run_model --threads N: over TVM_NUM_THREADS (2 here), the pool's N threads, N - 1 workers started."""
    x = np.random.default_rng(5).standard_normal((1, 1, 32, 32)).astype("float32")
    np.save(tmp_path / "image.npy", x)
    env = {**{k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD")},
           "ARCHC_POOL_STATS": "1", "TVM_NUM_THREADS": "2"}
    out = subprocess.run([str(run_model_program), str(package / "lenet5.so"), str(tmp_path / "image.npy"), "-o",
                          str(tmp_path / "out"), "--threads", str(threads), "--repeat", "2"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert_close([np.load(tmp_path / "out" / "out0.npy")], onnxruntime_outputs(package / "model.onnx", {"image": x}))
    (stats,) = [line for line in out.stderr.splitlines() if line.startswith("archc pool: ")]
    assert f", {threads} threads, {threads - 1} workers started" in stats
