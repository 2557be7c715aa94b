"""How far an output is from a reference: one measure for the verifier (`archc compile`), `archc bench`'s agreement
and the benchmarks, so that a figure means the same wherever it is printed."""
from __future__ import annotations

import numpy as np


def relative_diff(got: np.ndarray, want: np.ndarray) -> float:
    """The largest |got − want|, of the reference's largest magnitude (at least 1e-12: an all-zero reference
    allows no difference). inf for another shape; outputs that are not floating point must be equal (0 or inf);
    NaN where the reference has NaN is agreement."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return float("inf")
    if want.size == 0:
        return 0.0
    if want.dtype.kind not in "fc":
        return 0.0 if np.array_equal(got, want) else float("inf")
    diff = float(np.max(np.abs(got.astype(np.float64) - want)))
    if not np.isfinite(diff):
        return 0.0 if np.array_equal(np.isnan(got), np.isnan(want)) and np.allclose(
            got, want, equal_nan=True) else float("inf")
    return diff / max(float(np.max(np.abs(want))), 1e-12)


def top_agreement(got: np.ndarray, want: np.ndarray) -> tuple[int, int]:
    """Of the rows of N×K classifier scores, how many keep the reference's best class, and how many its set of the
    best five."""
    top1 = int((np.argmax(got, axis=1) == np.argmax(want, axis=1)).sum())
    top5 = sum(int(set(np.argsort(g)[-5:]) == set(np.argsort(w)[-5:])) for g, w in zip(got, want, strict=True))
    return top1, top5
