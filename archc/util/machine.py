"""Facts about this machine that several stages ask for."""
from __future__ import annotations

import os


def cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask, which a container or `taskset` may narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
