"""Summary statistics of latency samples, and how far an engine's outputs are from onnxruntime's."""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from archc.measurement.results import Agreement, Stats
from archc.util.difference import relative_diff


def summary(samples: list[float]) -> Stats:
    """min, median, mean, p90, p99 (linear interpolation between samples) and std (n−1; 0 for one sample)."""
    x = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = (float(v) for v in np.percentile(x, [50, 90, 99]))
    return Stats(min=float(x.min()), median=p50, mean=float(x.mean()), p90=p90, p99=p99,
                 std=float(x.std(ddof=1)) if x.size > 1 else 0.0)


def alternating(engines: dict[str, Callable[[], object]], rounds: int, runs: int = 5) -> dict[str, list[float]]:
    """Seconds of each engine's runs, taken in turns: each run twice first (warm-up), then `rounds` rounds of
    `runs` runs each, the order reversed every other round, so that the machine's drift hits all alike (the
    benchmark scripts' comparisons; `archc bench` has its own rounds, with its outputs and profiles)."""
    for run in engines.values():
        run()
        run()
    times: dict[str, list[float]] = {k: [] for k in engines}
    for r in range(rounds):
        for name in (list(engines) if r % 2 == 0 else list(engines)[::-1]):
            for _ in range(runs):
                start = time.perf_counter()
                engines[name]()
                times[name].append(time.perf_counter() - start)
    return times


def is_classifier(shapes: list[tuple[int, ...]]) -> bool:
    """A classifier's scores: a 2-D output [N, classes] with at least two classes."""
    return any(len(s) == 2 and s[1] >= 2 for s in shapes)


def agreement(got: list[np.ndarray], want: list[np.ndarray], classifier: bool) -> Agreement:
    """`max_rel_diff`: the largest |got − want| over every output, each relative to that output's range in
    onnxruntime (its largest magnitude); `top1`: for a classifier, the fraction of batch items whose arg-max
    class agrees over its 2-D score outputs (None otherwise). Outputs that differ in count or shape: both None
    (the engine computed something else)."""
    if len(got) != len(want) or any(np.shape(g) != np.shape(w) for g, w in zip(got, want)):
        return Agreement(max_rel_diff=None, top1=None)
    worst = max((relative_diff(g, w) for g, w in zip(got, want)), default=0.0)
    top1 = None
    if classifier:
        agree = total = 0
        for g, w in zip(got, want):
            if np.ndim(w) == 2 and np.shape(w)[1] >= 2:
                agree += int((np.argmax(g, axis=1) == np.argmax(w, axis=1)).sum())
                total += np.shape(w)[0]
        top1 = agree / total if total else None
    return Agreement(max_rel_diff=worst, top1=top1)
