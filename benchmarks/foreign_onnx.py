"""Coverage of foreign ONNX: torchvision's classification models, exported as users export them, compiled for a
target, verified against onnxruntime, and timed beside it.

    python benchmarks/foreign_onnx.py [NAME ...] [--all] [--target native] [--rounds 5] [--keep DIR]
                                      [--out FILE.md]

Each model (default: the list below, 30 networks of every family torchvision has; --all: every classification
model) is exported with random weights by PyTorch's TorchScript exporter (opset 17, a symbolic batch, 224×224,
299×299 for Inception v3) and compiled with `archc.compile(path, target, quick=0)`: archc's kernels with the shipped
tables, no tuning, and archc's own verification (random inputs, 1e-4 of each output's range). The verified package
is then timed against onnxruntime (its default threads) in one process, alternately, `--rounds` blocks of 3 runs
each after a warm-up. One row per model: exported, compiled (seconds, or the error's code and sentence), verified
(largest difference), archc's and onnxruntime's median milliseconds, and their ratio. The table is printed and
written atomically to --out (default benchmarks/results/foreign_onnx.md). Each model runs in a fresh process, so
one that runs out of memory (ViT-L exports hold several copies of its 1.2 GB of weights) ends as its own row, with
the signal, and the memory of one model is not carried into the next.

Needs torch and torchvision (the test extra). A model that fails to export is listed as such: that is PyTorch's.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "zoo"))

DEFAULT = ["alexnet", "vgg11_bn", "squeezenet1_1", "googlenet", "inception_v3", "resnet18", "resnet50",
           "resnext50_32x4d", "wide_resnet50_2", "densenet121", "mobilenet_v2", "mobilenet_v3_small",
           "mobilenet_v3_large", "mnasnet0_5", "mnasnet1_0", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
           "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_v2_s",
           "regnet_x_400mf", "regnet_y_400mf", "regnet_y_800mf", "convnext_tiny", "vit_b_16", "swin_t",
           "maxvit_t", "resnet34"]


def export(name: str, folder: Path) -> tuple[Path, int]:
    import torch
    from torchvision_ref import torchvision_models
    models = torchvision_models()
    size = 299 if name == "inception_v3" else 224
    kwargs = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    path = folder / f"{name}.onnx"
    if not path.exists():
        torch.manual_seed(0)
        model = getattr(models, name)(weights=None, **kwargs).eval()
        with torch.no_grad():  # torchvision zero-initialises some heads (ViT's): all-zero logits verify nothing
            for p in model.parameters():
                if p.dim() > 1 and not p.any():
                    p.normal_(0, 0.02)
        torch.onnx.export(model, torch.randn(1, 3, size, size), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "N"}})
    return path, size


def time_both(folder: str, path: Path, rounds: int) -> tuple[float, float]:
    """Median seconds of archc's package and of onnxruntime on the same random input, alternating blocks."""
    from archc.measurement.engines import onnxruntime_session
    from archc.runtime import load_package
    pkg = load_package(folder)
    x = pkg.random_inputs(seed=0)
    session = onnxruntime_session(str(path))
    runs: dict[str, list[float]] = {"archc": [], "onnxruntime": []}
    engines = {"archc": lambda: pkg.run(x), "onnxruntime": lambda: session.run(None, x)}
    for f in engines.values():
        f()
    for r in range(rounds):
        for name in (list(engines) if r % 2 == 0 else list(engines)[::-1]):
            for _ in range(3):
                start = time.perf_counter()
                engines[name]()
                runs[name].append(time.perf_counter() - start)
    return statistics.median(runs["archc"]), statistics.median(runs["onnxruntime"])


def row(name: str, work: Path, target: str, rounds: int) -> str:
    import archc
    from archc.errors import ArchcError
    try:
        path, size = export(name, work)
    except Exception as err:  # PyTorch's exporter, not archc
        return f"| {name} | no: {type(err).__name__}: {str(err)[:80]} | | | | | |"
    start = time.perf_counter()
    try:
        result = archc.compile(path, target, work / f"{name}.{target}", quick=0, input=f"1x3x{size}x{size}")
    except ArchcError as err:
        verified = getattr(err, "verification", None)
        said = f"[{err.code}] {' '.join(str(err).split())[:160]}"
        if verified is None:
            return f"| {name} | yes | no: {said} | | | | |"
        return f"| {name} | yes | {time.perf_counter() - start:.0f} s | **no**: {verified.max_rel_diff:.1e} | | | |"
    seconds = time.perf_counter() - start
    v = result.verification
    checked = f"{v.max_rel_diff:.1e}" if v and v.status == "passed" else (v.note or v.status if v else "not asked")
    ours, theirs = time_both(result.output, path, rounds)
    return (f"| {name} | yes | {seconds:.0f} s | {checked} | {ours * 1e3:.2f} | {theirs * 1e3:.2f} | "
            f"{ours / theirs:.2f} |")


def isolated(name: str, work: Path, args: argparse.Namespace) -> str:
    """`row` in a fresh Python process: its last line of output is the row; a crash is a row too."""
    command = [sys.executable, __file__, name, "--one", "--target", args.target, "--rounds", str(args.rounds),
               "--keep", str(work)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    rows = [line for line in done.stdout.splitlines() if line.startswith(f"| {name} |")]
    if rows and done.returncode == 0:
        return rows[-1]
    how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
    return f"| {name} | {'yes' if (work / f'{name}.onnx').exists() else '?'} | no: {how} | | | | |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--all", action="store_true", help="every torchvision classification model")
    parser.add_argument("--target", default="native")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="keep the ONNX files and packages here")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "foreign_onnx.md")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child process: one row, printed
    args = parser.parse_args()
    if args.one:
        print(row(args.names[0], args.keep, args.target, args.rounds), flush=True)
        return
    if args.all:
        from torchvision_ref import torchvision_models
        models = torchvision_models()
        names = sorted(models.list_models(module=models))
    else:
        names = args.names or DEFAULT
    import onnxruntime
    import torch

    import archc
    lines = [f"# Foreign ONNX coverage ({time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} CPUs, "
             f"load {os.getloadavg()[0]:.1f})", "",
             f"archc {archc.__version__}, onnxruntime {onnxruntime.__version__}, torch {torch.__version__}; target "
             f"{args.target}, archc's kernels with the shipped tables, no tuning; batch 1, fp32; medians of "
             f"{args.rounds} alternating blocks of 3 runs.", "",
             "| model | exported | compiled | verified (max diff) | archc ms | onnxruntime ms | × onnxruntime |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: |"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory(prefix="archc-foreign-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in names:
            lines.append(isolated(name, work, args))
            print(lines[-1], flush=True)
    from archc.util.atomic import write_text
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
