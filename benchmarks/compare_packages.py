"""Packages of one model (built by different archc versions, say) and onnxruntime, timed alternately in one process.

    python benchmarks/compare_packages.py MODEL.onnx PACKAGE [PACKAGE ...] [--rounds 7]

Each engine runs 2 warm-up runs, then `--rounds` blocks of 5 timed runs, the order reversed every other round, on
the same random input (the first package's, seed 0). Prints each engine's median and its ratio to onnxruntime's
(default threads, its spin-wait stopped when a run returns). How the before/after pairs of issue 22 were measured:
build the package with the old tree (`PYTHONPATH=OLD python -m archc compile MODEL.onnx --target native -o a`) and
the new one (`-o b`), then `python benchmarks/compare_packages.py MODEL.onnx a b`.
"""
from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

from archc.measurement.engines import onnxruntime_session
from archc.measurement.stats import alternating
from archc.runtime import load_package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the ONNX file the packages were built from")
    parser.add_argument("packages", nargs="+")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    loaded = [load_package(p) for p in args.packages]
    x = loaded[0].random_inputs(seed=0)
    session = onnxruntime_session(args.model)
    engines: dict[str, Callable[[], object]] = {p: (lambda q=q: q.run(x)) for p, q in zip(args.packages, loaded)}
    engines["onnxruntime"] = lambda: session.run(None, x)
    runs = alternating(engines, args.rounds)
    reference = statistics.median(runs["onnxruntime"])
    for name, times in runs.items():
        median = statistics.median(times)
        print(f"{name:40s} {median * 1e3:9.2f} ms  {median / reference:5.2f}× onnxruntime")


if __name__ == "__main__":
    main()
