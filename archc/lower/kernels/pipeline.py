"""Where archc's kernels enter the Relax module: the layout plan (before legalization) and the schedule pass
(after fusion)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tvm
from tvm import relax, s_tir, tirx
from tvm.target import codegen

from archc.lower.kernels import bmm, conv2d, dense, generic, winograd
from archc.lower.kernels.channels_last import channels_first
from archc.lower.kernels.layout import blocked_conv_layout
from archc.lower.kernels.matmul import matmul_as_conv
from archc.lower.kernels.search import Choices
from archc.lower.kernels.steps import bf16_unit, int8_unit
from archc.util.peak import half_width_fma_is_full


def lanes(tgt: Any) -> int:
    """fp32 lanes of the target's widest vector register: 16 with AVX-512, 8 with AVX2 (and, as two NEON
    registers, on aarch64)."""
    if str(tgt.kind) == "llvm" and "aarch64" not in str(tgt.attrs.get("mtriple", "")):
        return 16 if codegen.llvm_cpu_has_features(["avx512f"], tgt) else 8
    return 8


def half_width_cost(tgt: Any) -> float:
    """What a block of 8 channels costs per MAC against a full block of 16 on an AVX-512 target, for the layout
    plan's choice between 8-channel blocks and zero-padding to 16 (blocks.py): 2 where the CPU's 512-bit FMA is
    twice its 256-bit one (half of each vector idle), 1.1 where the two peaks are equal (AMD Zen 4 runs a 512-bit
    FMA as two 256-bit halves, so padding is mostly waste; the 0.1 is the loads and broadcasts a narrow block issues
    twice per lane, which the FMA peak does not see). Measured on this machine when the target is its CPU
    (`--target native`); 2 for any other target (nothing to measure it on) and for AVX2. On Zen 4, alternating
    with onnxruntime: MNASNet's 72- and 120-channel layers in blocks of 8 instead of padded to 80 and 128, 1.06-1.12×
    → 1.02-1.07× at 1 thread; at 1.0 rather than 1.1, RegNetY-400MF and ShuffleNet v2 lost 2-3% (their 104-,
    116- and 232-channel groups), at 1.1 they kept their time."""
    if lanes(tgt) != 16 or str(tgt.attrs.get("mcpu", "")) != codegen.llvm_get_system_cpu():
        return 2.0
    return 1.1 if half_width_fma_is_full() else 2.0  # never in between: noise cannot change the plan


def plan(mod: Any, tgt: Any, precision: str = "fp32", half_cost: float | None = None,
         keep_fp32: Sequence[Any] = ()) -> tuple[Any, Any]:
    """The module with its convolutions, and its matrix products of many rows (matmul.py), in archc's blocked
    layout (layout.py); the plan, for explaining it. `precision` "bf16": the convolutions computed in bf16 (on AMX
    tiles or with AVX512-BF16 steps: `bf16_unit`). `half_cost`: the plan's half_width_cost as a package recorded
    it (a profile lowers the model again and must get the kernels the package has), else measured here.
    `keep_fp32`: the weights of the layers a bf16 build keeps in fp32 (layout.blocked_conv_layout)."""
    mod = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(), relax.transform.FoldConstant(),
                                    relax.transform.CanonicalizeBindings(),
                                    relax.transform.DeadCodeElimination()])(mod)
    mod = bmm.batched_products(matmul_as_conv(channels_first(mod)), lanes(tgt))
    mod, made = blocked_conv_layout(mod, lanes(tgt), precision, bf16_unit(tgt),  # the units count at their own
                                    half_width_cost(tgt) if half_cost is None else half_cost, int8_unit(tgt),
                                    keep_fp32)
    if precision == "int8":  # the quantize/dequantize pairs only int8 kernels read, gone
        mod = relax.transform.DeadCodeElimination()(mod)
    return mod, made


def workloads(mod: Any) -> dict[str, str]:
    """kernel name → the workload key of the convolution it holds, for every kernel with archc's conv compute
    (float32, depthwise, bf16, int8)."""
    found = {}
    blocks = (conv2d.BLOCK, conv2d.DW_BLOCK, conv2d.BF16_BLOCK, conv2d.INT8_BLOCK)
    for gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc) and "tirx.is_scheduled" not in (func.attrs or {}):  # not amx.py's
            sch = s_tir.Schedule(func)
            for name in blocks:
                if generic.has_block(sch, name):
                    found[gv.name_hint] = str(sch.get(sch.get_sblock(name)).annotations[conv2d.WORKLOAD])
    return found


def apply(mod: Any, tgt: Any, choices: Choices) -> tuple[Any, list[str]]:
    """Schedule every fused kernel that holds archc's conv compute with its chosen configuration, and every other
    kernel with the generic rule where it fits; each is marked scheduled (MetaSchedule leaves it alone). Returns
    the module and the names of the kernels scheduled."""
    convs = workloads(mod)
    done: list[str] = []
    for gv, func in list(mod.functions.items()):
        if not isinstance(func, tirx.PrimFunc) or "tirx.is_scheduled" in (func.attrs or {}):
            continue
        sch = s_tir.Schedule(func)
        try:
            if gv.name_hint in convs:
                conv2d.schedule(sch, choices.config(convs[gv.name_hint]))
            elif generic.has_block(sch, winograd.INPUT):
                winograd.schedule_input(sch)
            elif generic.has_block(sch, winograd.OUTPUT):
                winograd.schedule_output(sch)
            elif generic.has_block(sch, bmm.BLOCK):
                bmm.schedule(sch, choices.lanes)
            elif any(generic.has_block(sch, b) for b in (dense.BLOCK, *conv2d.INPUTS)):
                try:
                    if generic.has_block(sch, dense.BLOCK):
                        dense.schedule(sch, choices.lanes)
                    else:
                        conv2d.schedule_input(sch)
                except Exception:  # noqa: BLE001 - an epilogue it cannot take (a second output): the generic rule
                    sch = s_tir.Schedule(func)
                    generic.schedule(sch, choices.lanes)
            else:
                generic.schedule(sch, choices.lanes)
        except Exception:  # noqa: BLE001 - a kernel the rule does not fit: MetaSchedule's, or TVM's default
            if gv.name_hint in convs:
                raise
            continue
        func = sch.mod["main"] if gv.name_hint in convs else _well_formed(sch.mod["main"])
        mod[gv] = func.with_attr("tirx.is_scheduled", True)
        done.append(gv.name_hint)
    return mod, done


def _well_formed(func: Any) -> Any:
    """A kernel the generic rules scheduled, each variable defined once. A loop partition (generic's rows of
    49 = 3 × 16 + 1) leaves its two blocks sharing their unit axes' variables (TVM's s_tir.renew_defs keeps them
    shared), which a later Schedule of the kernel (a profile, a tuning pass) refuses as ill-formed; printed and
    parsed again, the kernel gets its own variables."""
    if tirx.analysis.verify_well_formed(func, False):
        return func
    return tvm.script.from_source(func.script())
