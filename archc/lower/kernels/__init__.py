"""archc's own x86/ARM CPU kernels, placed into the Relax module in place of TVM's naive legalizations.

    plan(mod, target)       convolutions to archc's compute in the blocked layout (NCHW[x]c), weights packed and
                            batch norm folded at build time (layout.py)
    apply(mod, target, ch)  after fusion: archc's schedule for every fused kernel that holds its conv compute (its
                            configuration from `Choices`: searched, shipped or by rule), the generic schedule
                            (generic.py) for the other kernels

Fusion is TVM's own (FuseOps/FuseTIR): the conv compute is an ordinary TE compute, so the elementwise ops after it
(the folded batch norm's shift, the activation, the residual add) fuse into its kernel, and the schedule applies
them to the register tile before it is stored.
"""
from __future__ import annotations

from archc.lower.kernels.pipeline import apply, lanes, plan, workloads
from archc.lower.kernels.search import Choices

__all__ = ["Choices", "apply", "lanes", "plan", "workloads"]
