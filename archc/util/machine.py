"""Facts about this machine that several stages ask for."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask, which a container or `taskset` may narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per logical CPU (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    blocks = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip()] = value.strip()
        blocks.append(entry)
    return blocks


def cpu_model(info: list[dict[str, str]] | None = None) -> str:
    """The CPU's name as /proc/cpuinfo gives it (x86 `model name`, Arm's fields), else the platform's."""
    for entry in cpuinfo() if info is None else info:
        for key in ("model name", "Model", "Hardware", "cpu model"):
            if entry.get(key):
                return entry[key]
    return platform.processor() or platform.machine()


def archc_cache() -> Path:
    """archc's folder in the user's cache (`$XDG_CACHE_HOME/archc`, else `~/.cache/archc`), made private (0700, as
    the XDG base directory spec asks of a folder it creates): what is kept there shapes the code compiled later."""
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "archc"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # an existing folder keeps its mode
    return folder


def all_cpu_flags(info: list[dict[str, str]] | None = None) -> set[str]:
    """Every flag /proc/cpuinfo lists for this CPU (x86 `flags`, Arm `Features`)."""
    info = cpuinfo() if info is None else info
    have: set[str] = set()
    for entry in info[:1]:
        have |= set((entry.get("flags") or entry.get("Features") or "").split())
    return have
