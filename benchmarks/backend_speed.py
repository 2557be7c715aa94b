"""archc's compiled libraries against onnxruntime, measured alternately in one process (batch 1, fp32).

    python benchmarks/backend_speed.py [--models resnet18,mobilenet_v2] [--target native] [--trials N]
                                       [--rounds 20] [--db DIR]

For each model: onnxruntime (all cores), archc untuned (--no-tune), archc after the default short pass, and, with
--trials N, archc after N more MetaSchedule trials. The engines run in turns, round after round, so that the
machine's load hits all alike; printed are the medians and p90 in ms, the ratio to onnxruntime, and the largest
difference of the outputs from onnxruntime's relative to their range.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import archc  # noqa: E402
from archc.runtime import load_package  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenet_v2,resnet50,googlenet")
    ap.add_argument("--target", default="native")
    ap.add_argument("--trials", type=int, default=0, help="more MetaSchedule trials for a tuned build (0: none)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--db", type=Path, help="tuning database (default: a fresh one, so that the short pass runs)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="archc-bench-"))
    db = args.db or work / "db"
    print("| model | engine | build s | median ms | p90 ms | × onnxruntime | max rel. diff |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.models.split(","):
        model = archc.load(ROOT / "specs" / f"{name}.arch")
        (work / f"{name}.onnx").write_bytes(model.proto.SerializeToString())
        x = {i: np.random.default_rng(0).standard_normal(s).astype(np.float32) for i, s in model.inputs}
        engines: dict[str, object] = {}
        builds: dict[str, float] = {}
        sess = ort.InferenceSession(str(work / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        engines["onnxruntime"] = lambda s=sess, x=x: s.run(None, x)
        builds["onnxruntime"] = 0.0
        variants = [("archc untuned", {"quick": 0}), ("archc short pass", {})]
        if args.trials:
            variants.append((f"archc +{args.trials} trials", {"trials": args.trials}))
        for label, kw in variants:
            start = time.perf_counter()
            out = archc.compile(model, target=args.target, output=work / f"{name}.{label.replace(' ', '_')}", db=db,
                                **kw).output
            builds[label] = time.perf_counter() - start
            pkg = load_package(out)
            engines[label] = lambda p=pkg, x=x: p.run(x)
        reference = engines["onnxruntime"]()  # type: ignore[operator]
        times: dict[str, list[float]] = {k: [] for k in engines}
        diffs = {k: _diff(f(), reference) for k, f in engines.items()}  # type: ignore[operator]
        for _ in range(args.rounds):
            for label, run in engines.items():
                start = time.perf_counter()
                run()  # type: ignore[operator]
                times[label].append(time.perf_counter() - start)
        base = statistics.median(times["onnxruntime"])
        for label, ts in times.items():
            ts.sort()
            med, p90 = statistics.median(ts), ts[int(0.9 * (len(ts) - 1))]
            print(f"| {name} | {label} | {builds[label]:.1f} | {med * 1e3:.2f} | {p90 * 1e3:.2f} | {med / base:.2f} | "
                  f"{diffs[label]:.1e} |", flush=True)


def _diff(got: list, want: list) -> float:
    return max(float(np.abs(np.asarray(g) - w).max() / max(float(np.abs(w).max()), 1e-12))
               for g, w in zip(got, want, strict=True))


if __name__ == "__main__":
    main()
