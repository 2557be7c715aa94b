"""archc's own x86/ARM CPU kernels, placed into the Relax module in place of TVM's naive legalizations.

    plan(mod, target)       channels-last islands back to NCHW (channels_last.py), matrix products of many rows
                            as 1×1 convolutions (matmul.py, bmm.py), then convolutions to archc's compute in the
                            blocked layout (NCHW[x]c), weights packed and batch norm folded at build time
                            (layout.py, blocks.py for each tensor's block)
    apply(mod, target, ch)  after fusion: archc's schedule for every fused kernel that holds its conv compute (its
                            configuration from `Choices`: searched, shipped, short search or predicted from the
                            tables, predict.py), the generic schedule (generic.py) for the other kernels

Fusion is TVM's own (FuseOps/FuseTIR): the conv compute is an ordinary TE compute, so the elementwise ops after it
(the folded batch norm's shift, the activation, the residual add) fuse into its kernel, and the schedule applies
them to the register tile before it is stored.
"""
from __future__ import annotations

from archc.lower.kernels.pipeline import apply, lanes, plan, workloads
from archc.lower.kernels.search import Choices

__all__ = ["Choices", "apply", "lanes", "plan", "workloads"]
