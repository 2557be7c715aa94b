"""Benchmark: how long `archc analyze` takes, and how much memory, as networks grow.

    python tests/benchmarks/bench_analyze.py

Prints, for the ResNet-152 zoo spec and generated N-layer chains: wall time of a fresh `archc analyze` process
(what a user waits for, imports included), in-process analysis time (median of 3), time per layer (flat when the
cost is linear in the number of nodes) and the process's peak resident memory. Goals on the 2-core machines:
ResNet-152 under 1.5 s, a 2,000-layer network under 5 s. Not a test: timings belong here, not in the suite.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import resource, statistics, sys, time
from archc import analyze
from archc.render import render
from archc.render.views import layer_table, totals_table
times = []
for _ in range(3):
    t = time.perf_counter()
    a = analyze(sys.argv[1])
    render([layer_table(a), totals_table(a)], "table")
    times.append(time.perf_counter() - t)
print(len(a.layers), statistics.median(times), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def chain(n_layers: int) -> str:
    """Residual units of five nodes (conv, relu, conv, add, relu) after a stem: about n_layers ONNX nodes."""
    body = ["  stem: conv(32, 3) relu"]
    blocks = "block unit(c) {\n  add {\n    m: { a: conv(c, 3) relu; b: conv(c, 3) }\n    identity\n  }\n  relu\n}\n"
    body.append(f"  stage: unit(32) * {max(1, (n_layers - 6) // 5)}")
    body.append("  gap\n  flatten\n  fc: dense(10)")
    return blocks + "network chain {\n  input x: 3x64x64\n" + "\n".join(body) + "\n}\n"


def measure(path: Path) -> tuple[int, float, float, float]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "archc", "analyze", str(path), "--by", "layer"], capture_output=True,
                         text=True, cwd=ROOT)
    cold = time.perf_counter() - t
    assert out.returncode == 0, out.stderr
    res = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, cwd=ROOT)
    layers, warm, rss = res.stdout.split()
    return int(layers), cold, float(warm), float(rss)


def main() -> None:
    rows = [("resnet152 (zoo spec)", *measure(ROOT / "specs" / "resnet152.arch"))]
    with tempfile.TemporaryDirectory() as tmp:
        for n in (500, 1000, 2000, 4000):
            p = Path(tmp) / f"chain{n}.arch"
            p.write_text(chain(n))
            rows.append((f"generated chain ~{n}", *measure(p)))
    print(f"{'model':24s} {'layers':>7s} {'CLI wall s':>11s} {'analysis s':>11s} {'µs/layer':>9s} "
          f"{'peak RSS MiB':>13s}")
    for name, layers, cold, warm, rss in rows:
        print(f"{name:24s} {layers:7d} {cold:11.2f} {warm:11.3f} {1e6 * warm / layers:9.0f} {rss:13.0f}")
    goals = {"resnet152 (zoo spec)": 1.5, "generated chain ~2000": 5.0}
    for name, _layers, cold, _warm, _rss in rows:
        if name in goals:
            print(f"goal {name}: CLI {cold:.2f} s ≤ {goals[name]} s: {'met' if cold <= goals[name] else 'MISSED'}")


if __name__ == "__main__":
    main()
