"""Twelve torchvision models exported to ONNX by PyTorch, analyzed by archc: MACs against torchvision's published
figure, time and peak memory of `archc analyze` (and of onnx-tool on the same file, when it is installed).

    python benchmarks/torchvision_exports.py [--keep DIR] [--rounds N] [NAME ...]

archc and onnx-tool run alternately, N rounds each (fresh processes); the medians are printed.

Needs the test extra (torch, torchvision). Exports use a symbolic batch, as users export; segmentation models keep
their auxiliary head, as torchvision's published figures count it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "zoo"))

NAMES = ["resnet18", "resnet50", "resnet152", "mobilenet_v2", "googlenet", "densenet121", "shufflenet_v2_x1_0",
         "efficientnet_b0", "convnext_tiny", "vit_b_16", "deeplabv3_mobilenet_v3_large", "fcn_resnet50"]
SEGMENTATION = {"deeplabv3_mobilenet_v3_large", "fcn_resnet50"}

ONNX_TOOL = """
import sys, numpy, onnx_tool
m = onnx_tool.Model(sys.argv[1])
m.graph.shape_infer({sys.argv[2]: numpy.zeros(tuple(map(int, sys.argv[3].split("x"))), "float32")})
m.graph.profile()
"""


def export(name: str, folder: Path) -> tuple[Path, float, int]:
    import torch
    from torchvision_ref import torchvision_models
    models = torchvision_models()
    path = folder / f"{name}.onnx"
    if name in SEGMENTATION:
        model = getattr(models.segmentation, name)(weights=None, weights_backbone=None, aux_loss=True)
        weights, size = models.get_model_weights(name), 520
    else:
        kwargs = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
        model, weights, size = getattr(models, name)(weights=None, **kwargs), models.get_model_weights(name), 224
    published = list(weights)[0].meta["_ops"]
    if not path.exists():
        torch.onnx.export(model.eval(), torch.zeros(1, 3, size, size), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "N"}})
    return path, published, size


def timed(cmd: list[str]) -> tuple[float, float, bool]:
    """(seconds, peak MiB, ok) of a fresh process, from GNU time."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True)
    seconds, kib = out.stderr.strip().splitlines()[-1].split()
    return float(seconds), int(kib) / 1024, out.returncode == 0


def median(runs: list[tuple[float, float, bool]]) -> tuple[float, float, bool]:
    return (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), all(r[2] for r in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=NAMES)
    parser.add_argument("--keep", type=Path, help="folder for the exported files (kept between runs)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each tool (median shown)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import onnx_tool  # noqa: F401
        have_onnx_tool = True
    except ImportError:
        have_onnx_tool = False
    print("| model | file | GMACs (archc) | GMACs (torchvision) | unknown | archc time / peak "
          "| onnx-tool time / peak |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for name in args.names:
        path, published, size = export(name, folder)
        result = folder / f"{name}.json"
        ours, theirs = [], []
        for _ in range(args.rounds):  # alternately, so that the machine's load hits both alike
            ours.append(timed([sys.executable, "-m", "archc", "analyze", str(path), "--format", "json", "-o",
                               str(result)]))
            if have_onnx_tool:
                theirs.append(timed([sys.executable, "-c", ONNX_TOOL, str(path), "x", f"1x3x{size}x{size}"]))
        seconds, peak, ok = median(ours)
        totals = json.loads(result.read_text())["totals"] if ok else {}
        other = "not installed"
        if have_onnx_tool:
            s, p, ok2 = median(theirs)
            other = f"{s:.2f} s / {p:.0f} MiB" if ok2 else "failed"
        macs = f"{totals['macs'] / 1e9:.3f}" if ok else "error"
        print(f"| {name} | {path.stat().st_size / 2**20:.0f} MiB | {macs} | {published:.3f} | "
              f"{totals.get('unknown_ops') or '—'} | {seconds:.2f} s / {peak:.0f} MiB | {other} |", flush=True)


if __name__ == "__main__":
    main()
