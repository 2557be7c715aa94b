"""The results file of `archc bench`: one JSON object, `"schema": "archc-bench"`, `"schema_version": 1` (README,
"Benchmarks: archc bench", documents every field). `write` saves it atomically; `read` checks what it is, brings
an older version it knows up to date (`UPGRADES`), and refuses anything else with one sentence.

Version 0 is the layout of archc's pre-release benchmark script (benchmarks/backend_speed.py's measurements saved
as JSON): no `schema` key; engines named with their variant in one string ("archc untuned"); latencies in
milliseconds (`latency_ms`) without statistics; the agreement as one number (`max_rel_diff`); no environment
beyond the host and CPU model.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archc.errors import ArchcError

SCHEMA = "archc-bench"
SCHEMA_VERSION = 1


def write(results: dict[str, Any], path: str | Path) -> Path:
    """Save the results as JSON, atomically (a failed write leaves the old file, or none)."""
    from archc.util.atomic import write_text
    path = Path(path)
    write_text(path, json.dumps(results, indent=1, allow_nan=False) + "\n")
    return path


def read(path: str | Path) -> dict[str, Any]:
    """A results file of this or an older known schema version, as schema_version 1; else one sentence."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ArchcError(f"cannot read benchmark results from '{path}': {err}") from None
    return load(data, str(path))


def load(data: Any, where: str = "the results") -> dict[str, Any]:
    """`read` for data already parsed."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ArchcError(f"{where} is not an archc bench results file (no schema_version); `archc bench -o` "
                         "writes one")
    schema = data.get("schema", SCHEMA if data["schema_version"] == 0 else None)
    if schema != SCHEMA:
        raise ArchcError(f"{where} is not an archc bench results file (its schema is {schema!r}, not '{SCHEMA}')")
    version = data["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ArchcError(f"{where} has an invalid schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise ArchcError(f"{where} is an archc bench results file of schema_version {version}, and this archc "
                         f"reads versions up to {SCHEMA_VERSION}: upgrade archc to read it")
    while version < SCHEMA_VERSION:
        data = UPGRADES[version](data)
        version = data["schema_version"]
    missing = [k for k in ("environment", "model", "target", "engines") if k not in data]
    if missing:
        raise ArchcError(f"{where} is an archc bench results file without '{missing[0]}'; it is cut short or was "
                         "edited: run archc bench again")
    return data


def _upgrade_0(old: dict[str, Any]) -> dict[str, Any]:
    """Version 0 (the pre-release layout, see the module doc) → version 1."""
    from archc.measurement.stats import summary
    model = dict(old.get("model") or {})
    flops = model.get("flops")
    engines = []
    for e in old.get("engines", []):
        engine, _, variant = str(e.get("name", "")).partition(" ")
        results = []
        for r in e.get("results", []):
            latencies = [float(ms) / 1e3 for ms in r.get("latency_ms", [])]
            stats = summary(latencies) if latencies else None
            batch = int(r.get("batch", 1))
            median = stats["median"] if stats else None
            results.append({
                "batch": batch, "threads": r.get("threads"), "latency_s": latencies, "stats": stats,
                "throughput": batch / median if median else None, "peak_memory_bytes": None,
                "gflops": flops * batch / median / 1e9 if flops and median else None,
                "agreement": {"max_rel_diff": r.get("max_rel_diff"), "top1": None}})
        engines.append({"engine": engine, "variant": variant or None, "status": "ok" if results else "absent",
                        "note": e.get("note"), "version": e.get("version"), "compile_seconds": e.get("build_seconds"),
                        "tuning": None, "results": results})
    env = old.get("environment") or {}
    return {
        "schema": SCHEMA, "schema_version": 1, "created": old.get("created"), "command": old.get("command"),
        "environment": {"host": env.get("host"), "os": None, "python": None,
                        "cpu": {"model": env.get("cpu"), "llvm_cpu": None, "flags": [], "physical_cores": None,
                                "logical_cpus": None, "peak_gflops": None, "peak_method": None,
                                "bandwidth_gbs": None, "bandwidth_method": None},
                        "gpu": None, "load": None, "packages": {}},
        "model": {"name": model.get("name"), "source": model.get("source"), "params": model.get("params"),
                  "macs": model.get("macs"), "flops": flops, "classifier": None, "analysis": None},
        "target": {"name": old.get("target"), "description": None},
        "engines": engines, "profile": None, "tuning_curve": None,
    }


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _upgrade_0}
