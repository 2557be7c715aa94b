"""A loaded model + a TVM target → a deploy package: the back end, through Apache TVM (Relax).

    lower(model, target, out) = ONNX → relax.frontend.onnx.from_onnx (weights as constants, packed at build time)
                                → tvm.compile for the target → export_library (cross compiler where the target
                                has one) → package folder (library, manifest, ONNX, README), written atomically

CPU targets get archc's own kernels (`lower/kernels`: a blocked-layout plan, convolutions and dense layers with
configurations from the tuning database, the shipped tables or a rule, a generic schedule for every other op) on
archc's parallel runtime (`link.py`, `runtime/pool.c`), and MetaSchedule (`tune.py`) for any kernel left; GPU
kernels get dlight's default schedules. This stage is TVM-bound: its modules import TVM at their top, and importing
it without TVM raises the one sentence that says how to install it (`errors.TvmMissing`). Only this stage and
`archc.runtime` import TVM; `archc analyze`, `archc report` and `--target onnx` never load it, and the package's
TVM-free facts (manifest, README, profile records, layout explanation) live in `archc.deploy`.
"""
from __future__ import annotations

from archc.errors import TvmMissing

try:
    import tvm  # noqa: F401  (the guard: every module below imports it at its top)
except ImportError:
    raise TvmMissing() from None

from archc.lower.build import QUICK_TRIALS, Lowered, lower, tune_model
from archc.lower.package import write_package

__all__ = ["QUICK_TRIALS", "Lowered", "lower", "tune_model", "write_package"]
