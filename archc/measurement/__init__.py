"""`archc bench`: compiled packages measured against onnxruntime and any other engine installed, side by side.

    results = measure("specs/resnet18.arch", "native", batches=[1, 8], variants=["untuned", "default"])
    write(results, "resnet18.bench.json")          # JSON, "schema": "archc-bench", "schema_version": 1
    results = read("resnet18.bench.json")          # checked, older versions upgraded: BenchResults again

Modules: `environment` (the machine, its measured peak and bandwidth, the load), `engines` (onnxruntime, archc,
OpenVINO, IREE, PyTorch behind one interface), `run` (the measurement: alternating rounds), `stats` (latency
statistics, agreement with onnxruntime), `memory` (each engine's peak memory, in a child process), `tuning` (the
tuning curve from a MetaSchedule database), `results` (the file's typed records, `BenchResults` and its parts:
write, read, upgrade), `table` (the terminal summary).
"""
from __future__ import annotations

from archc.measurement.results import SCHEMA, SCHEMA_VERSION, BenchResults, load, read, write
from archc.measurement.run import measure

__all__ = ["SCHEMA", "SCHEMA_VERSION", "BenchResults", "load", "measure", "read", "write"]
