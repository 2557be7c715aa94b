"""The tuning curve of a MetaSchedule run, read from its database: records are appended to
`database_tuning_record.json` in the order they are measured, one JSON line each,
`[workload index, [trace, [run seconds…], target, argument info]]`.

The curve is the **kernel sum**: after each trial of the run, the sum over the kernels the run tuned of the best
mean time recorded so far for each (records from before the run included, each kernel counted once, not by how
often the model calls it), from the first trial after which every kernel has a time. Only the points where the
sum drops are kept, and the last: a step function.
"""
from __future__ import annotations

import json
from pathlib import Path

from archc.measurement.results import TuningPoint

RECORDS = "database_tuning_record.json"
FAILED = 1e9  # MetaSchedule records a failed run as 1e10 seconds


def record_count(db: Path) -> int:
    path = db / RECORDS
    if not path.is_file():
        return 0
    with path.open(encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def _records(db: Path) -> list[tuple[int, float | None]]:
    """(workload, mean seconds or None for a failed trial) per record, in the file's order."""
    path = db / RECORDS
    if not path.is_file():
        return []
    out: list[tuple[int, float | None]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            workload, record = json.loads(line)
            secs = [float(s) for s in (record[1] or [])]
        except (ValueError, TypeError, IndexError):
            continue
        ok = [s for s in secs if s < FAILED]
        out.append((int(workload), sum(ok) / len(ok) if ok else None))
    return out


def curve(db: Path, start: int) -> list[TuningPoint]:
    """The kernel-sum curve of the records after the first `start` (those of one tuning run)."""
    records = _records(db)
    before, run = records[:start], records[start:]
    kernels = {w for w, _ in run}
    best: dict[int, float] = {}
    for w, s in before:
        if w in kernels and s is not None:
            best[w] = min(s, best.get(w, s))
    points: list[TuningPoint] = []
    for trial, (w, s) in enumerate(run, 1):
        if s is not None:
            best[w] = min(s, best.get(w, s))
        if len(best) == len(kernels):
            total = sum(best.values())
            if not points or total < points[-1].best_seconds or trial == len(run):
                points.append(TuningPoint(trials=trial, best_seconds=total))
    return points
