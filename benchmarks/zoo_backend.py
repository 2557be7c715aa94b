"""The whole zoo through the TVM back end: compile each spec for a target, run it, compare with onnxruntime.

    python benchmarks/zoo_backend.py --all [--target native] [--short-pass] [--runs 2]
    python benchmarks/zoo_backend.py --models resnet18,vgg16

Per model: compile time, kernels from the tuning database / left naive, archc's and onnxruntime's median time
(measured alternately, batch 1, all cores), and the largest difference of the outputs from onnxruntime's relative
to their range (the tests' bound is 1e-4). Without --short-pass the kernels are untuned (--no-tune: naive loops, so
the times say little about speed; benchmarks/backend_speed.py measures that); a model that fails to build or to
match is listed with its error and the script exits non-zero.
"""
from __future__ import annotations

import argparse
import json
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

BOUND = 1e-4


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--all", action="store_true", help="every spec in specs/")
    group.add_argument("--models", help="comma-separated spec names")
    ap.add_argument("--target", default="native")
    ap.add_argument("--short-pass", action="store_true", help="the default build (a short tuning pass per kernel "
                    "without a record) instead of --no-tune")
    ap.add_argument("--runs", type=int, default=2, help="timed runs of each engine, alternating")
    ap.add_argument("--db", type=Path, help="tuning database (default: a fresh one)")
    ap.add_argument("--skip", default="", help="comma-separated spec names to leave out (listed as skipped)")
    args = ap.parse_args()
    names = sorted(p.stem for p in (ROOT / "specs").glob("*.arch")) if args.all else args.models.split(",")
    skipped = [n for n in args.skip.split(",") if n]
    work = Path(tempfile.mkdtemp(prefix="archc-zoo-"))
    print(f"target {args.target}, {'default short pass' if args.short_pass else 'untuned (--no-tune)'}, "
          f"{args.runs} timed runs each\n")
    print("| model | params | GMACs | compile s | kernels tuned / naive | archc ms | onnxruntime ms | max rel. diff "
          "| |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    failed = 0
    for name in names:
        if name in skipped:
            print(f"| {name} | | | | | | | | skipped (--skip) |", flush=True)
            continue
        try:
            row = _one(name, args, work)
        except Exception as err:  # report and go on: the table is the point
            failed += 1
            print(f"| {name} | | | | | | | | FAIL: {' '.join(str(err).split())[:160]} |", flush=True)
            continue
        failed += row["diff"] > BOUND
        print(f"| {name} | {row['params']:,} | {row['macs'] / 1e9:.3f} | {row['compile']:.1f} | "
              f"{row['tuned']} / {row['naive']} | {row['archc'] * 1e3:,.1f} | {row['ort'] * 1e3:,.2f} | "
              f"{row['diff']:.1e} | {'ok' if row['diff'] <= BOUND else 'MISMATCH'} |", flush=True)
    print(f"\n{len(names) - failed - len(skipped)} of {len(names)} models compiled and matched onnxruntime within "
          f"{BOUND:g}" + (f"; {len(skipped)} skipped" if skipped else ""))
    return 1 if failed else 0


def _one(name: str, args: argparse.Namespace, work: Path) -> dict:
    model = archc.load(ROOT / "specs" / f"{name}.arch")
    start = time.perf_counter()
    out = Path(archc.compile(model, target=args.target, output=work / name, db=args.db or work / "db",
                             quick=None if args.short_pass else 0).output)
    compile_s = time.perf_counter() - start
    build = json.loads((out / "manifest.json").read_text())["build"]
    pkg = load_package(out)
    x = pkg.random_inputs()
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    want, got = sess.run(None, x), pkg.run(x)
    diff = max(float(np.abs(g - w).max() / max(float(np.abs(w).max()), 1e-12)) for g, w in zip(got, want,
                                                                                                strict=True))
    times: dict[str, list[float]] = {"archc": [], "ort": []}
    for _ in range(args.runs):
        for label, run in (("archc", lambda: pkg.run(x)), ("ort", lambda: sess.run(None, x))):
            t = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - t)
    analysis = archc.analyze(model)
    return {"params": analysis.totals.params, "macs": analysis.totals.macs or 0, "compile": compile_s,
            "tuned": build.get("kernels_tuned", 0), "naive": build.get("kernels_naive", 0), "diff": diff,
            "archc": statistics.median(times["archc"]), "ort": statistics.median(times["ort"])}


if __name__ == "__main__":
    sys.exit(main())
