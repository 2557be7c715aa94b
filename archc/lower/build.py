"""ONNX → Relax → a compiled TVM executable for one target."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tvm
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx
from tvm.s_tir import dlight as dl

from archc.deploy.manifest import BuildReport
from archc.errors import ArchcError, UsageError
from archc.frontends import Model
from archc.lower import kernels as own_kernels
from archc.lower import tune, vector_math
from archc.lower.onnx_compat import for_tvm
from archc.lower.tvm_target import check_toolchain, tvm_target, tvm_target_dict
from archc.runtime import last_line
from archc.runtime.rpc import Remote, device_cores
from archc.targets import PRECISIONS, Target


@dataclass
class Lowered:
    executable: Any  # tvm.relax.VMExecutable
    target: Target
    tvm_target: Any  # tvm.target.Target
    report: BuildReport  # how it was built (the manifest's "build")


QUICK_TRIALS = 2  # the default short pass: measurements per kernel the database has no record for
KERNELS = ("archc", "tvm")  # whose kernels a CPU build uses: archc's (lower/kernels) or TVM's with MetaSchedule




def lower(model: Model, target: Target, db: Path | None = None, budget: tune.Budget | None = None,
          show: bool = False, quick: int = QUICK_TRIALS, kernels: str = "archc", precision: str = "fp32",
          fp32_layers: Sequence[str] = ()) -> Lowered:
    """Compile for the target. On CPU targets, `kernels="archc"` puts archc's own kernels in (the blocked-layout
    convolutions, each with its configuration from the database, the shipped table or the rule, and the generic
    schedule for the other ops; a `budget` first searches the configurations of convolutions the database lacks);
    then the tuning database (`db`, default: the target's under the user's cache) is applied to every remaining
    kernel that has a record; a `budget` grows it by that many measurements, and every kernel still without one
    gets `quick` measurements (0: leave it naive). `precision` "bf16": the convolutions AMX can compute run in bf16
    on its tiles; "auto": bf16 where it runs fast, else fp32 (`choose_precision`, which also refuses bf16 where it
    cannot run fast). `fp32_layers`: ONNX node names of layers a bf16 build computes in fp32 (`kept_weights`)."""
    if kernels not in KERNELS:
        raise ArchcError(f"unknown kernels '{kernels}': choose one of {', '.join(KERNELS)}", code="bad-option")
    if not model.has_weights:
        raise ArchcError(f"'{model.source}' was loaded without weights; a library needs them", code="no-weights")
    check_toolchain(target)
    precision, chosen = choose_precision(target, kernels, precision)
    _check_quantized(model, precision)
    kept = kept_weights(model, fp32_layers, precision)
    tgt = tvm_target_at(target, precision)
    start = time.perf_counter()
    mod = import_onnx(model)
    report = BuildReport()
    if target.tvm.get("kind") == "cuda":
        if budget:
            raise ArchcError("tuning GPU kernels is not in this version: compile for cuda without --tune",
                             code="no-gpu-tuning")
        mod = _gpu_schedules(mod, tgt)
    else:
        mod, report = _tuned(mod, tgt, target, db or tune.default_db(target), budget, show, quick, kernels, precision,
                             kept)
    report.precision_chosen = chosen
    report.fp32_layers = list(fp32_layers) or None
    vector_math.install()
    try:
        executable = tvm.compile(mod, target=tgt)
    except Exception as err:  # a TVM bug or an op its legalization cannot lower: one sentence, not its traceback
        raise ArchcError(f"TVM could not compile '{model.name}' for '{target.name}': "
                         f"{last_line(str(err), type(err).__name__)}", code="tvm-compile") from None
    report.compile_seconds = time.perf_counter() - start
    return Lowered(executable, target, tgt, report)


def tune_model(model: Model, target: Target, db: Path | None, budget: tune.Budget, show: bool = False,
               remote: Remote | None = None, kernels: str = "archc", precision: str = "fp32",
               fp32_layers: Sequence[str] = ()) -> tune.TuneSummary:
    """Grow the target's tuning database (CPU targets): with archc's kernels, first a search of every convolution's
    configuration it lacks; then the budget's measurements on the model's other kernels. At `precision` bf16 the
    kernels tuned are those a bf16 build compiles (the AMX convolutions' neighbours differ), so its records
    apply there; with `fp32_layers` (`lower`'s), those of a build that keeps them in fp32."""
    if target.tvm.get("kind") == "cuda":
        raise ArchcError("tuning GPU kernels is not in this version; CPU targets only", code="no-gpu-tuning")
    check_toolchain(target)
    if remote is not None and "num-cores" not in target.tvm:  # a generic board target: ask the board itself
        target = replace(target, tvm={**target.tvm, "num-cores": device_cores(remote)})
    precision = choose_precision(target, kernels, precision)[0]
    _check_quantized(model, precision)
    kept = kept_weights(model, fp32_layers, precision)
    tgt = tvm_target_at(target, precision)
    db = db or tune.default_db(target)
    prepared = tune.prepare(import_onnx(model), tgt, kernels, None, precision, keep_fp32=kept)
    searched = 0
    if kernels == "archc":
        choices = own_kernels.Choices(tgt, own_kernels.lanes(tgt), db)
        if remote is None:  # a board's kernels are searched on the board: not in this version (MetaSchedule is)
            searched = choices.search(list(own_kernels.workloads(prepared).values()), show)
        prepared = own_kernels.apply(prepared, tgt, choices)[0]
    summary = tune.tune(prepared, tgt, target, db, budget, show, remote=remote)
    return replace(summary, searched=searched)


def _tuned(mod: Any, tgt: Any, target: Target, db: Path, budget: tune.Budget | None, show: bool, quick: int,
           kernels: str, precision: str = "fp32", kept: Sequence[Any] = ()) -> tuple[Any, BuildReport]:
    """archc's kernels first (with `budget`, a search of the convolutions' configurations the database lacks);
    then apply the database to the rest, first spending the budget over those kernels, and then giving each kernel
    still without a record `quick` trials of its own (the short pass: a searched schedule, even a brief one, beats
    a naive loop)."""
    plans: list[Any] = []
    prepared = tune.prepare(mod, tgt, kernels, plans, precision, keep_fp32=kept)
    report = BuildReport(kernels=kernels, database=str(db), precision=precision)
    if plans:
        report.layout = plans[0].to_json()
        choices = own_kernels.Choices(tgt, own_kernels.lanes(tgt), db)
        if target.runner == "local" and (budget or quick > 0):  # the short pass: new shapes' likeliest few
            report.convolutions_searched = choices.search(list(own_kernels.workloads(prepared).values()),
                                                          show, quick=not budget)
        written = sum(1 for f in prepared.functions.values() if "tirx.is_scheduled" in (f.attrs or {}))  # amx.py's
        prepared, scheduled = own_kernels.apply(prepared, tgt, choices)
        report.kernels_archc = len(scheduled) + written
        report.conv_configs = dict(Counter(choices.sources.values()))
        report.conv_tables = choices.table_note()
    trials = tune.tune(prepared, tgt, target, db, budget, show).trials if budget else 0
    applied_mod, applied, naive = tune.apply(prepared, tgt, db)
    quick_trials = 0
    if naive and quick > 0 and target.runner == "local":  # a board's kernels are measured on it: archc tune --rpc
        short = tune.Budget(quick * len(naive))
        quick_trials = tune.tune(prepared, tgt, target, db, short, show, only=naive).trials
        applied_mod, applied, naive = tune.apply(prepared, tgt, db)
    report.trials_now = trials + quick_trials
    report.kernels_tuned = applied - (report.kernels_archc or 0)  # archc's own are counted apart
    report.kernels_naive = len(naive)
    return applied_mod, report


def bf16_unavailable(target: Target, kernels: str = "archc") -> tuple[str, str] | None:
    """Why a bf16 build of `target` could not run fast, and what to do instead; None where it can. archc's bf16
    kernels are built for this machine's CPU only, with archc's kernels, on a CPU with AMX-BF16 tiles that Linux
    grants or with AVX512-BF16; or for an aarch64 target whose CPU has the bf16 extension (BFDOT: graviton3)."""
    why = _not_here(target, kernels, "its AMX or AVX512-BF16 units", ("bf16",), ("BFDOT",))
    if why or is_aarch64(target):
        return why
    return None if bf16_units(target) else (
        "it needs a CPU with AMX-BF16 (Intel Xeon from Sapphire Rapids on) or AVX512-BF16 (AMD Zen 4 on, Intel "
        "Cooper Lake), and this one has neither", "build on such a CPU")


def int8_unavailable(target: Target, kernels: str = "archc") -> tuple[str, str] | None:
    """Why an int8 build of `target` could not run fast, and what to do instead; None where it can: archc's int8
    kernels are built, with archc's kernels, for this machine's CPU where it has AVX512-VNNI (VPDPBUSD), or for an
    aarch64 target whose CPU has the i8mm extension (USDOT: graviton3) or dotprod (SDOT: rpi5), cross compiled."""
    why = _not_here(target, kernels, "its AVX512-VNNI unit", ("i8mm", "dotprod"), ("USDOT", "SDOT"))
    if why or is_aarch64(target):
        return why
    return None if has_vnni(target) else (
        "it needs a CPU with AVX512-VNNI (Intel Xeon from Cascade Lake on, AMD Zen 4 on), and this one has none",
        "build on such a CPU")


def is_aarch64(target: Target) -> bool:
    return "aarch64" in str(target.tvm.get("mtriple", ""))


def _not_here(target: Target, kernels: str, unit: str, features: tuple[str, ...],
              steps: tuple[str, ...]) -> tuple[str, str] | None:
    """Why a low-precision build of `target` cannot run fast whatever this machine's CPU has, and what to do
    instead; None where it may: an x86 target other than this machine's (its `unit` is this CPU's), TVM's kernels,
    an aarch64 target (cross compiled) whose CPU has none of the extensions `features`, whose instructions `steps`
    archc's kernels take (the first the one preferred)."""
    from tvm.target import codegen
    aarch64 = is_aarch64(target)
    if not aarch64 and (target.tvm.get("kind") != "llvm" or target.cross_compiler or target.runner != "local"
                        or "mcpu" not in target.detect):
        return (f"it builds for this machine's CPU only ({unit}), and '{target.name}' is not that target",
                "compile for --target native")
    if kernels != "archc":
        return "it runs on archc's kernels, not TVM's", "leave --kernels tvm out"
    if aarch64 and not any(codegen.llvm_cpu_has_features([f], tvm_target(target)) for f in features):
        named = " or ".join(f"the {f} extension ({s})" for f, s in zip(features, steps, strict=True))
        targets = "graviton3" + (" or rpi5" if "dotprod" in features else "")
        one = "it" if len(features) == 1 else "one"
        return (f"on aarch64 it needs {named}, which target '{target.name}' does not declare",
                f"use --target {targets}, or a target whose mcpu has {one} or whose mattr lists "
                f"{' or '.join('+' + f for f in features)}")
    return None


def kept_weights(model: Model, names: Sequence[str], precision: str) -> list[Any]:
    """The weights (as the ONNX file holds them) of the layers named in `names` (ONNX node names), which a bf16
    build computes in fp32: a layer int8 or bf16 hurts most is often the first or the last, and keeping a few in
    fp32 trades a little speed for agreement (benchmarks/precision_sensitivity.py finds them). The plan finds them
    by their values (TVM's importer keeps no names), so a layer whose weights are another kept layer's, value for
    value, is kept too. Refused in one sentence for another precision, and for a name that is no layer with
    constant weights."""
    if not names:
        return []
    if precision != "bf16":
        hint = "archc quantize --keep-fp32 keeps layers out of an int8 model" if precision == "int8" else \
            "it applies to --precision bf16 builds"
        raise UsageError(f"--keep-fp32 keeps layers of a bf16 build in fp32, and this build is {precision}: {hint}",
                         code="bad-option")
    from onnx import numpy_helper

    from archc.emit.quantize import check_kept, weighted_layers
    layers = weighted_layers(model.proto)
    check_kept(names, layers, "layer with weights", layers)
    stored = {t.name: t for t in model.proto.graph.initializer}
    return [numpy_helper.to_array(stored[layers[name].input[1]]) for name in names]


def _check_quantized(model: Model, precision: str) -> None:
    """Refuse an int8 build or tuning of a model that is not quantized (it would compute in fp32 throughout)."""
    if precision == "int8" and not any(n.op_type == "QuantizeLinear" for n in model.proto.graph.node):
        raise ArchcError(f"--precision int8 computes a quantized (QDQ) model's convolutions in int8, and "
                         f"'{model.name}' has no QuantizeLinear: make one with `archc quantize MODEL --calibrate "
                         "DIR`, or leave --precision fp32", code="not-quantized")


def has_vnni(target: Target) -> bool:
    """Whether LLVM's CPU of this machine's target has AVX512-VNNI (archc's int8 step, VPDPBUSD)."""
    from tvm.target import codegen
    return bool(codegen.llvm_cpu_has_features(["avx512vnni"], tvm_target(target)))


def bf16_units(target: Target) -> list[str]:
    """The LLVM features of this machine's bf16 units: AMX's where Linux grants the tile state, AVX512-BF16's
    where LLVM's CPU has it; none, neither."""
    from tvm.target import codegen

    from archc.lower.kernels import amx
    units = ["+amx-tile", "+amx-bf16"] if amx.request_tiles() else []
    if codegen.llvm_cpu_has_features(["avx512bf16"], tvm_target(target)):
        units.append("+avx512bf16")
    return units


def choose_precision(target: Target, kernels: str, precision: str) -> tuple[str, str | None]:
    """The precision to build and, for `auto`, a sentence on why it was chosen: bf16 where it runs fast, else
    fp32. An explicit bf16 or int8 that cannot run fast is refused in one sentence (code no-bf16, no-int8)."""
    if precision not in PRECISIONS:
        raise ArchcError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}",
                         code="bad-option")
    if precision == "fp32":
        return precision, None
    why_not = (int8_unavailable if precision == "int8" else bf16_unavailable)(target, kernels)
    if precision == "auto":
        return ("fp32", f"--precision auto chose fp32: bf16 cannot run fast here, {why_not[0]}") if why_not \
            else ("bf16", f"--precision auto chose bf16: this CPU has {_unit_name(target)}")
    if why_not:
        raise ArchcError(f"--precision {precision} cannot run fast here: {why_not[0]}; {why_not[1]}, or leave "
                         "--precision fp32", code="no-int8" if precision == "int8" else "no-bf16")
    return precision, None


def _unit_name(target: Target) -> str:
    if is_aarch64(target):
        return "the bf16 extension (BFDOT)"
    return "AMX-BF16" if "+amx-bf16" in bf16_units(target) else "AVX512-BF16"


def tvm_target_at(target: Target, precision: str) -> Any:
    """The TVM target of a build at `precision` (`choose_precision`'s): a bf16 build's LLVM CPU is given the bf16
    units this machine has (AMX's say AMX computes it: kernels.steps.bf16_unit); fp32 and int8 builds take the
    target's own (int8's VNNI comes with the CPU LLVM names)."""
    if precision in ("fp32", "int8") or is_aarch64(target):  # an aarch64 CPU's bf16 comes with its mcpu or mattr
        return tvm_target(target)
    spec = tvm_target_dict(target)
    spec["mattr"] = [*spec.get("mattr", []), *bf16_units(target)]
    return tvm.target.Target(spec)


def import_onnx(model: Model) -> Any:
    """The model as a Relax module, its weights constants folded in (packed into the library at build time): the
    one start of building, tuning and profiling, so that all three see the same kernels."""
    try:
        mod = from_onnx(for_tvm(model.proto)[0], keep_params_in_input=False)
    except Exception as err:  # TVM lists every op it cannot import at once; keep its list, drop its traceback
        text = " ".join(str(err).split())
        raise ArchcError(f"TVM cannot import '{model.name}': {text}", code="tvm-import") from None
    return relax.transform.FoldConstant()(mod)


def _gpu_schedules(mod: Any, tgt: Any) -> Any:
    """Legalize, then dlight's default GPU schedules: a GPU kernel must have a thread binding to build at all."""
    mod = relax.get_pipeline("zero")(mod)
    with tgt:
        return dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                       dl.gpu.GeneralReduction(), dl.gpu.Fallback())(mod)
