"""A loaded model + a TVM target → a deploy package: the back end, through Apache TVM (Relax).

    lower(model, target, out) = ONNX → relax.frontend.onnx.from_onnx (weights as constants, packed at build time)
                                → tvm.compile for the target → export_library (cross compiler where the target
                                has one) → package folder (library, manifest, ONNX, README), written atomically

Only `archc.lower` and `archc.runtime` import tvm, and only when called: `archc analyze` and `--target onnx` never
load it. This version builds without tuning: the CPU kernels are TVM's default (naive, single-threaded) schedules,
correct but slow; GPU kernels get dlight's default schedules.
"""
from __future__ import annotations

from archc.lower.build import QUICK_TRIALS, Lowered, lower, tune_model
from archc.lower.package import write_package

__all__ = ["QUICK_TRIALS", "Lowered", "lower", "tune_model", "write_package"]
