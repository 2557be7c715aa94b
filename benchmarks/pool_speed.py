"""archc's parallel runtime (archc/runtime/pool.c) against TVM's stock thread pool, on hand-written parallel kernels.

    python benchmarks/pool_speed.py [--threads N] [--rounds 10] [--calls 100] [--no-hog]

The same kernels (1×1 convolutions as parallel matrix products, from ~10 µs to ~5 ms, and a memory-bound ReLU) are
built once and exported twice: the stock way (their parallel loops run on libtvm_runtime's pool) and with archc's
link.fcompile (archc's pool, linked into the library). Both libraries are loaded in one process and timed
alternately, round after round (TVM's time_evaluator, one call per measurement), first on a quiet machine and then
beside a CPU hog: os.cpu_count() processes that spin. Both pools get the same thread count, TVM_NUM_THREADS
(default: the CPUs this process may use; TVM's stock default on x86 would be half of them). Printed: median and
p90 per kernel, in µs, and stock ÷ archc (above 1: archc is faster).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (name, (rows, inputs, outputs)): a 1×1 convolution of an H×W×C_in map as an (H·W × C_in) · (C_in × C_out) product
CONVS = [("1×1 conv 14×14, 64→64", (196, 64, 64)),
         ("1×1 conv 14×14, 128→256", (196, 128, 256)),
         ("1×1 conv 28×28, 128→128", (784, 128, 128)),
         ("1×1 conv 56×56, 256→512", (3136, 256, 512))]
RELU = ("ReLU of 256K floats", 1 << 18)
SETTLE = 0.3  # seconds between one library's turn and the other's: TVM's idle workers spin ~0.12 CPU-s after a launch


def kernels():
    """The IRModule of the benchmark's kernels, each with its outer loop parallel; and their arguments' shapes."""
    import tvm
    from tvm import s_tir, te

    def conv1x1(rows, cin, cout, symbol):
        a = te.placeholder((rows, cin), name="A")
        w = te.placeholder((cin, cout), name="W")
        k = te.reduce_axis((0, cin), name="k")
        c = te.compute((rows, cout), lambda m, n: te.sum(a[m, k] * w[k, n], axis=k), name="C")
        sch = s_tir.Schedule(te.create_prim_func([a, w, c]))
        block = sch.get_sblock("C")
        m, n, kk = sch.get_loops(block)
        sch.reorder(m, kk, n)  # the output row's channels innermost: LLVM vectorizes them
        sch.parallel(m)
        sch.decompose_reduction(block, kk)
        return sch.mod["main"].with_attr("global_symbol", symbol)

    def relu(size, symbol):
        a = te.placeholder((size,), name="A")
        b = te.compute((size,), lambda i: te.max(a[i], 0.0), name="B")
        sch = s_tir.Schedule(te.create_prim_func([a, b]))
        (i,) = sch.get_loops(sch.get_sblock("B"))
        outer, inner = sch.split(i, [None, 1024])
        sch.parallel(outer)
        sch.vectorize(inner)
        return sch.mod["main"].with_attr("global_symbol", symbol)

    funcs, shapes = {}, {}
    for n, (label, (rows, cin, cout)) in enumerate(CONVS):
        funcs[f"k{n}"] = conv1x1(rows, cin, cout, f"k{n}")
        shapes[f"k{n}"] = (label, [(rows, cin), (cin, cout), (rows, cout)])
    funcs["relu"] = relu(RELU[1], "relu")
    shapes["relu"] = (RELU[0], [(RELU[1],), (RELU[1],)])
    return tvm.IRModule(funcs), shapes


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--calls", type=int, default=100, help="timed calls per kernel, library and round")
    ap.add_argument("--no-hog", action="store_true", help="only the quiet machine")
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # before TVM's pool or archc's reads it

    import numpy as np
    import tvm
    from tvm.target import codegen

    from archc.lower import link
    mod, shapes = kernels()
    lib = tvm.tirx.build(mod, target=tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()}))
    work = Path(tempfile.mkdtemp(prefix="archc-pool-bench-"))
    lib.export_library(str(work / "stock.so"))
    lib.export_library(str(work / "archc.so"), fcompile=link.fcompile())
    libs = {"stock": tvm.runtime.load_module(str(work / "stock.so")),
            "archc": tvm.runtime.load_module(str(work / "archc.so"))}
    rng = np.random.default_rng(0)
    arguments = {name: [tvm.runtime.tensor(rng.standard_normal(s).astype("float32")) for s in shape]
                 for name, (_, shape) in shapes.items()}
    conditions = ["quiet"] if args.no_hog else ["quiet", "hog"]
    times: dict[tuple[str, str, str], list[float]] = {}
    loads = []
    for condition in conditions:
        loads.append(f"{condition}: load average {Path('/proc/loadavg').read_text().split()[0]} before")
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)
                ] if condition == "hog" else []
        try:
            for r in range(args.rounds):
                for engine in (("stock", "archc") if r % 2 == 0 else ("archc", "stock")):
                    time.sleep(SETTLE)
                    for name in shapes:
                        f, given = libs[engine][name], arguments[name]
                        f(*given)  # a warm-up call
                        got = times.setdefault((condition, name, engine), [])
                        for _ in range(args.calls):  # back to back, as a model's kernels run
                            start = time.perf_counter()
                            f(*given)
                            got.append(time.perf_counter() - start)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    print(f"TVM_NUM_THREADS={args.threads} on {os.cpu_count()} CPUs; {args.rounds} rounds × {args.calls} calls; "
          f"hog: {os.cpu_count()} spinning processes; " + "; ".join(loads))
    print("| kernel | machine | stock median µs | stock p90 µs | archc median µs | archc p90 µs | "
          "stock ÷ archc median | stock ÷ archc p90 |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for condition in conditions:
        for name, (label, _) in shapes.items():
            s, a = times[(condition, name, "stock")], times[(condition, name, "archc")]
            sm, sp, am, ap90 = (percentile(s, 0.5) * 1e6, percentile(s, 0.9) * 1e6, percentile(a, 0.5) * 1e6,
                                percentile(a, 0.9) * 1e6)
            print(f"| {label} | {condition} | {sm:,.1f} | {sp:,.1f} | {am:,.1f} | {ap90:,.1f} | {sm / am:.2f} | "
                  f"{sp / ap90:.2f} |")


if __name__ == "__main__":
    main()
