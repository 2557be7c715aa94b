"""archc's bf16 builds (AMX or AVX512-BF16) and int8 builds (VNNI) against its fp32 builds, onnxruntime fp32 and
int8, with the accuracy.

    python benchmarks/precision_speed.py [--models resnet18,resnet50,mobilenet_v2,efficientnet_b0,vgg16]
                                         [--rounds 7] [--inputs 50] [--out FILE.md] [--no-openvino] [--hog]
                                         [--keep-fp32 NODE,…]

For each model (a zoo spec, random weights, or a torchvision export as backend_speed.py's `source` makes it:
EfficientNet-B0; batch 1): a package at fp32 and one at bf16 (`archc.compile(…, precision=…)`, the
default short pass), onnxruntime's fp32 session of the same ONNX (its threads stop spinning when a run returns) and,
where it is installed (the bench extra), OpenVINO's CPU plugin with its precision hint at f32 and at bf16 (its
default on AMX CPUs; latency hint, the same threads) and onnxruntime on the model's int8 QDQ form (`archc bench`'s
engine onnxruntime-int8: quantized as `archc quantize` does, min-max ranges from random inputs) and, where the CPU
has AVX512-VNNI, archc's int8 build of that same QDQ model (`precision="int8"`), timed alternately
in one process: 2 warm-up runs each, then
`--rounds` rounds of 5 runs each, the order reversed every other round. Accuracy (archc's and OpenVINO's), against
onnxruntime fp32 on `--inputs` random normal inputs: the largest difference of the output's range, and how often
the top-1 class (and the top-5 set) agree. Random weights make the top classes closer together than a trained
network's, so agreement here is a harder test than on real images. Header: the CPU, its flags, the measured fp32
FMA peak, and what computes bf16 (AMX tiles where the CPU has AMX-BF16, else AVX512-BF16's VDPBF16PS), and quiet
or `--hog` (backend_speed.py's: a busy-loop process on every CPU while the engines are timed). Needs a CPU with
either.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,resnet50,mobilenet_v2,efficientnet_b0,vgg16",
                    help="specs/ names or torchvision names (issue 24's five by default)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--inputs", type=int, default=50)
    ap.add_argument("--out", help="also write the table to this Markdown file")
    ap.add_argument("--no-openvino", action="store_true",
                    help="leave OpenVINO out: its threads share the process, and on a 2-core machine moved archc "
                         "int8's ResNet-50 by up to 20%% between runs")
    ap.add_argument("--openvino-hints", default="f32,bf16",
                    help="OpenVINO's precision hints to time, one compiled model each (`bf16`: its peer of archc's "
                         "bf16 alone, a shorter run)")
    ap.add_argument("--hog", action="store_true", help="busy-loop processes on every CPU while timing")
    ap.add_argument("--keep-fp32", metavar="NODE,NODE", default="",
                    help="also time a bf16 build with these layers in fp32 (archc compile --keep-fp32; one model's "
                         "node names: give one --models), as engine 'archc bf16-kept'")
    args = ap.parse_args()
    import numpy as np
    from backend_speed import hogs, source  # this script's folder

    import archc
    from archc import targets
    from archc.lower.build import bf16_unavailable, bf16_units, int8_unavailable
    from archc.measurement.engines import OnnxRuntimeInt8, onnxruntime_session
    from archc.measurement.environment import cpu_flags, environment, llvm_cpu
    from archc.measurement.stats import alternating
    from archc.runtime import load_package
    from archc.util.peak import fma_peak
    native = targets.get("native")
    why_not = bf16_unavailable(native)
    if why_not:
        sys.exit(f"bf16 builds are refused here: {why_not[0]}")
    unit = "AMX tiles" if "+amx-bf16" in bf16_units(native) else "AVX512-BF16 (VDPBF16PS)"
    lines = [f"## precision_speed on {environment().cpu.model} (LLVM: {llvm_cpu()})", "",
             f"- flags: {', '.join(cpu_flags())}",
             f"- bf16 computed with: {unit}",
             f"- fp32 FMA peak, 2 threads: {fma_peak(2)['gflops']:.0f} GFLOP/s",
             f"- command: `python benchmarks/precision_speed.py --models {args.models} --rounds {args.rounds} "
             f"--inputs {args.inputs}{' --hog' if args.hog else ''}"
             f"{f' --keep-fp32 {args.keep_fp32}' if args.keep_fp32 else ''}"
             f"{' --no-openvino' if args.no_openvino else f' --openvino-hints {args.openvino_hints}'}`",
             f"- machine: {'hog (a busy-loop process on every CPU while timing)' if args.hog else 'quiet'}", "",
             "| model | engine | compile s | median ms | × onnxruntime | max diff (of range) | top-1 agree | "
             "top-5 agree |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    print("\n".join(lines), flush=True)
    work = Path(tempfile.mkdtemp(prefix="archc-precision-"))
    for name in args.models.split(","):
        built, seconds = {}, {}
        model = source(name, work)
        for precision in ("fp32", "bf16"):
            start = time.perf_counter()
            result = archc.compile(model, target="native",
                                   output=work / f"{name}.{precision}", precision=precision)
            seconds[precision] = time.perf_counter() - start
            built[precision] = load_package(result.output)
        if args.keep_fp32:
            start = time.perf_counter()
            result = archc.compile(model, target="native", output=work / f"{name}.bf16-kept", precision="bf16",
                                   keep_fp32=args.keep_fp32.split(","))
            seconds["bf16-kept"] = time.perf_counter() - start
            built["bf16-kept"] = load_package(result.output)
        session = onnxruntime_session(Path(built["fp32"].path) / "model.onnx")
        x = built["fp32"].random_inputs(seed=0)
        # each engine under test as feed → its first output (the scores), timed on x below
        int8 = OnnxRuntimeInt8(Path(built["fp32"].path) / "model.onnx", 0)  # the int8 peer (archc quantize's QDQ)
        int8.prepare()
        if not int8_unavailable(native):  # archc's int8 build of the peer's own QDQ model
            start = time.perf_counter()
            result = archc.compile(int8.quantized, target="native", output=work / f"{name}.int8", precision="int8")
            seconds["int8"] = time.perf_counter() - start
            built["int8"] = load_package(result.output)
        outputs = {**{f"archc {p}": (lambda feed, pkg=pkg: pkg.run(feed)[0]) for p, pkg in built.items()},
                   "onnxruntime int8": lambda feed, e=int8: e.run(feed)[0],
                   **({} if args.no_openvino else _openvino(Path(built["fp32"].path) / "model.onnx",
                                                             args.openvino_hints.split(",")))}
        engines = {"onnxruntime fp32": lambda s=session, x=x: s.run(None, x),
                   **{name: (lambda f=f, x=x: f(x)) for name, f in outputs.items()}}
        with hogs(args.hog):
            times = alternating(engines, args.rounds)
        rng = np.random.default_rng(1)
        spec = built["fp32"].inputs[0]
        agree: dict[str, list[tuple[float, bool, bool]]] = {k: [] for k in outputs}
        for _ in range(args.inputs):
            feed = {spec.name: rng.standard_normal(spec.shape).astype(np.float32)}
            want = session.run(None, feed)[0].reshape(-1)
            top5 = set(np.argsort(want)[-5:])
            for engine, run in outputs.items():
                got = np.asarray(run(feed)).reshape(-1)
                agree[engine].append((float(np.abs(got - want).max() / np.abs(want).max()),
                                      int(got.argmax()) == int(want.argmax()), set(np.argsort(got)[-5:]) == top5))
        reference = statistics.median(times["onnxruntime fp32"])
        for engine, runs in times.items():
            p = engine.split()[-1] if engine.startswith("archc") else None
            median = statistics.median(runs)
            acc = agree.get(engine, [])
            cells = (f"{max(a[0] for a in acc):.1e} | {sum(a[1] for a in acc)}/{len(acc)} | "
                     f"{sum(a[2] for a in acc)}/{len(acc)}") if acc else "— | — | —"
            line = (f"| {name} | {engine} | {seconds[p]:.1f} | " if p else f"| {name} | {engine} | — | ") + \
                f"{median * 1e3:.2f} | {median / reference:.2f} | {cells} |"
            lines.append(line)
            print(line, flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _openvino(path: Path, hints: list[str]) -> dict:
    """OpenVINO's CPU plugin at each precision hint (f32, bf16) on this ONNX file, as feed → first output (none
    where it is not installed)."""
    import os
    try:
        import openvino as ov
    except ImportError:
        return {}
    engines = {}
    for hint in hints:
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": len(os.sched_getaffinity(0))}
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        request = compiled.create_infer_request()
        engines[f"openvino {hint}"] = lambda feed, r=request, out=compiled.outputs[0]: r.infer(feed)[out]
    return engines


if __name__ == "__main__":
    main()
