"""bf16 matrix products on AMX (archc/lower/kernels/amx.py) against this machine's fp32: issue 24's first figures.

    python benchmarks/amx_gemm.py [--threads N] [--shapes 256x256x1024,1024x1024x1024,...]

For each M×N×K: archc's AMX kernel (bf16 in, float32 out; TVM's runtime timer, the best of 5 repeats of 20 runs)
and numpy's float32 matmul of the same numbers (its BLAS, the median of 20), with the GFLOP/s of each and the
measured fp32 FMA peak (archc.measurement.peak) of the same thread count as the yardstick. The AMX kernel has no
cache blocking yet: large K is bound by reloading A and B tiles.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--shapes", default="256x256x1024,512x512x2048,1024x1024x1024,3136x256x64,196x1024x256")
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import ml_dtypes
    import numpy as np
    import tvm

    from archc.lower.kernels import amx
    from archc.measurement.peak import fma_peak
    if not amx.request_tiles():
        sys.exit("this CPU (or kernel) has no AMX: Linux refused the tile state")
    peak = fma_peak(args.threads)
    print(f"fp32 FMA peak, {args.threads} thread(s): {peak['gflops']:.0f} GFLOP/s ({peak['isa']})")
    print(f"{'M×N×K':>18} {'AMX bf16 µs':>12} {'GFLOP/s':>8} {'× fp32 peak':>12} {'numpy fp32 µs':>14} {'GFLOP/s':>8}")
    dev = tvm.cpu()
    for shape in args.shapes.split(","):
        m, n, k = (int(v) for v in shape.split("x"))
        mp, np_, kp = (-(-v // amx.BLOCK) * amx.BLOCK for v in (m, n, k))  # padded to the block
        lib = tvm.compile(amx.gemm(mp, np_, kp), target=tvm.target.Target(amx.TARGET))
        rng = np.random.default_rng(0)
        a = rng.standard_normal((mp, kp)).astype(ml_dtypes.bfloat16)
        b = rng.standard_normal((kp, np_)).astype(ml_dtypes.bfloat16)
        ta, tb = tvm.runtime.tensor(a, dev), tvm.runtime.tensor(amx.pack_b(b), dev)
        tc = tvm.runtime.tensor(np.zeros((mp, np_), np.float32), dev)
        seconds = min(lib.mod.time_evaluator("amx_gemm", dev, number=20, repeat=5)(ta, tb, tc).results)
        a32, b32 = a.astype(np.float32)[:m, :k], b.astype(np.float32)[:k, :n]
        times = []
        for _ in range(20):
            start = time.perf_counter()
            a32 @ b32
            times.append(time.perf_counter() - start)
        blas = statistics.median(times)
        flops = 2 * m * n * k
        print(f"{shape:>18} {seconds * 1e6:12.1f} {flops / seconds / 1e9:8.0f} "
              f"{flops / seconds / 1e9 / peak['gflops']:11.2f}× {blas * 1e6:14.1f} {flops / blas / 1e9:8.0f}")


if __name__ == "__main__":
    main()
