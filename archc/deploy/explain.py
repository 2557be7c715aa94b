"""What `archc compile` says of a package it built: whose kernels and how they were tuned (one line), and with
`--explain-layout` the layout plan of archc's kernels, as a table."""
from __future__ import annotations

from typing import Any

from archc.deploy.manifest import Manifest, Verification


def kernels_line(m: Manifest) -> str:
    """'kernels: 88 archc kernels (convolution configurations: 49 shipped); 0 from the tuning database, …'."""
    build = m.build
    if not build.cpu_schedules:
        return "kernels: GPU default schedules (dlight); not tuned"
    board = (" (a board's kernels are measured on it: archc tune --rpc HOST:PORT --rpc-key KEY)"
             if build.kernels_naive and m.target.runner != "local" else "")
    own = ""
    if build.kernels == "archc":
        sources = ", ".join(f"{n} {s}" for s, n in sorted((build.conv_configs or {}).items()))
        tables = f"; {build.conv_tables}" if build.conv_tables else ""
        own = f"{build.kernels_archc or 0} archc kernels (convolution configurations: {sources or 'none'}{tables}); "
    if build.precision in ("bf16", "int8"):
        layout = build.layout or {}
        convs = [str(c.get("conv", "")) for c in layout.get("convolutions", [])]
        marker = f" {build.precision} on "  # the plan's line ends "bf16 on AMX", "int8 on VNNI", "int8 on USDOT"…
        units = list(dict.fromkeys(c.rsplit(marker, 1)[1] for c in convs if marker in c))
        dense = layout.get(f"{build.precision}_dense", layout.get("amx_dense", 0))  # older packages: amx_dense
        low = sum(1 for c in convs if marker in c)
        layers = f" and {dense} dense layer{'s' * (dense != 1)}" if dense else ""
        own = (f"{build.precision}: {low} of {len(convs)} convolutions{layers}"
               + f" on {' and '.join(units) or 'AMX'}, the rest fp32; " + own)
    chosen = f"{build.precision_chosen}; " if build.precision_chosen else ""
    return (f"kernels: {chosen}{own}{build.kernels_tuned} from the tuning database, {build.kernels_naive} untuned "
            f"(naive); {build.trials_now} tuning trials in this build{board}")


def layout_table(m: Manifest) -> str:
    """The layout plan the package was built with (`archc compile --explain-layout`)."""
    if not m.build.layout:
        return "layout: no plan (not built with archc's kernels)"
    return table(m.build.layout)


def table(plan: dict[str, Any]) -> str:
    convs = plan.get("convolutions", [])
    rows = [("#", "convolution", "in", "out", "relayout", "folded ops")]
    rows += [(str(i), c["conv"], c["in"], c["out"], "yes" if c["relayout"] else "", str(c["folded"] or ""))
             for i, c in enumerate(convs, 1)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    half = ("; blocks of 8 channels cost about what blocks of 16 cost per MAC, this CPU's 256-bit FMA peak being "
            "its 512-bit one" if plan.get("lanes") == 16 and plan.get("half_width_cost", 2.0) < 2.0 else "")
    lines = [f"layout plan: {len(convs)} convolutions in NCHW[x]c ({plan.get('lanes')} fp32 lanes per vector{half})"]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if plan.get("bf16_residuals"):
        n = plan["bf16_residuals"]
        lines.append(f"bf16 residual stream: {n} residual add{'s' if n > 1 else ''} read{'' if n > 1 else 's'} "
                     "its shortcut in bf16, as the convolutions that share it do (written in bf16 only)")
    transforms = plan.get("transforms", [])
    lines.append(f"layout changes between ops: {len(transforms)}")
    lines += [f"  {t}" for t in transforms]
    return "\n".join(lines)


def verification_line(v: Verification) -> str:
    """How the build was checked against onnxruntime, in one line."""
    if v.status == "skipped":
        return f"not verified: {v.note}"
    where = " (under qemu)" if v.emulated else f" (on {v.device})" if v.device else ""
    agree = ""
    if v.agreement:
        a = v.agreement
        agree = (f"; its top-1 class agrees on {a['top1']} and its top five on {a['top5']} of {a['inputs']} more "
                 f"inputs ('{a['output']}')" + (" (BELOW 99%: check it on your own data)"
                                                if a["top1"] < 0.99 * a["inputs"] else ""))
    if v.status == "passed":
        return (f"verified{where}: every output equals {v.reference}'s within {v.tolerance:.0e} of its range "
                f"(largest difference {v.max_rel_diff:.1e}, '{v.worst_output}'; {v.inputs}){agree}"
                + (f"; but {v.note}" if v.note else ""))
    return f"NOT verified{where}: output '{v.worst_output}' differs by {v.max_rel_diff:.2e} of its range"
