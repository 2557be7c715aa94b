"""How well a convolution shape that no table holds is configured: the rule, the tables' prediction, and the
first compile's short search, against the configuration the whole-grid search chose, each timed alone.

    python benchmarks/unseen_shapes.py [--sample 40] [--seed 0] [--out FILE]

Leave-one-out over this CPU's own shipped table (archc/lower/kernels/tables/<isa>/<cpu>.json): a sample of its
workloads is taken out of every table in turn, as if the shape were new, and for each one the script times the
table's configuration (the whole grid's winner), the rule's (`grid.rule`, what a compile did before
predict.py), the prediction's first (`predict.ranked`, a compile without its short pass: `--no-tune`) and the
fastest of its first `QUICK_CANDIDATES` (the short search of a default compile, with its seconds). Prints one row
per workload and the geometric means of each time over the table's.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from archc import targets
    from archc.lower import kernels
    from archc.lower.kernels import predict
    from archc.lower.kernels.conv2d import Config
    from archc.lower.kernels.search import QUICK_CANDIDATES, isa, measure, rule, tables_for
    from archc.lower.tvm_target import tvm_target
    from archc.measurement.environment import llvm_cpu
    from archc.util.atomic import write_text

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=40, help="workloads taken out of the tables, one at a time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the markdown to this file (atomically)")
    args = ap.parse_args()
    tgt = tvm_target(targets.get("native"))
    lanes = kernels.lanes(tgt)
    paths = tables_for(isa(lanes, tgt), llvm_cpu())
    if not paths or paths[0].stem != llvm_cpu():
        raise SystemExit(f"no shipped table for this CPU ({llvm_cpu()}): python benchmarks/kernel_table.py first")
    tables = [json.loads(p.read_text()) for p in paths]
    keys = random.Random(args.seed).sample(sorted(tables[0]), min(args.sample, len(tables[0])))
    rows, ratios = [], {"rule": [], "predicted": [], "short search": []}
    for i, key in enumerate(keys, 1):
        others = [{k: v for k, v in t.items() if k != key} for t in tables]
        likely = predict.ranked(key, lanes, others)[:QUICK_CANDIDATES]
        start = time.perf_counter()
        tried = {c: measure(key, c, tgt) for c in likely}
        short = time.perf_counter() - start
        shipped = measure(key, Config.from_record(tables[0][key]), tgt)
        times = {"rule": measure(key, rule(key, lanes), tgt), "predicted": tried[likely[0]],
                 "short search": min(tried.values())}
        for name, t in times.items():
            ratios[name].append(t / shipped)
        rows.append(f"| `{key}` | {shipped * 1e6:.0f} | " + " | ".join(f"{t / shipped:.2f}" for t in times.values())
                    + f" | {short:.1f} |")
        print(f"[{i}/{len(keys)}] {rows[-1]}", file=sys.stderr, flush=True)
    geo = {name: math.exp(sum(map(math.log, r)) / len(r)) for name, r in ratios.items()}
    worst = {name: max(r) for name, r in ratios.items()}
    text = "\n".join([
        f"# Unseen convolution shapes on {llvm_cpu()} ({isa(lanes, tgt)}): leave-one-out over its table", "",
        f"{len(keys)} workloads (seed {args.seed}), each left out of {', '.join(p.stem for p in paths)}; times "
        "relative to the table's configuration (the whole grid's winner), each kernel timed alone.", "",
        "| | rule | predicted | short search |", "| --- | ---: | ---: | ---: |",
        "| geometric mean | " + " | ".join(f"{geo[n]:.3f}" for n in ratios) + " |",
        "| worst | " + " | ".join(f"{worst[n]:.2f}" for n in ratios) + " |", "",
        "| workload | table µs | rule | predicted | short search | short search s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |", *rows])
    print(text)
    if args.out:
        write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()
