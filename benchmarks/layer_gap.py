"""Where a package loses time to onnxruntime, kernel by kernel, inside the running model.

    python benchmarks/layer_gap.py PACKAGE [--rows 25] [--threads N]

Each kernel of the package is timed in the pipeline (the Relax VM's instrument, median of 30 runs after 10, summed
over its calls), each ONNX node of the package's model.onnx by onnxruntime's profiler (median of 40 runs, same
thread count). A kernel's row sets its time beside the time of the onnxruntime nodes it runs (`archc profile`'s
attribution: onnxruntime names a fused node after its last node's output, `…_output_0_nchwc` in a PyTorch export,
`…_nchwc` in archc's ONNX), listed by the time archc loses; the onnxruntime nodes no kernel runs (where the two
fuse differently) are summed on a line of their own. Needs TVM: run it where the package runs. On ResNet-50 (a
2-thread Intel Xeon): archc 32.7-35.0 ms in kernels against onnxruntime's 28.9-29.7 ms in nodes, the 1×1
convolutions of layer3 and layer4 1.3-1.5× onnxruntime's; on a torchvision MNASNet 1.0 export (AMD Zen 4): 4.85
against 4.62 ms, its 112×112 stem 1.27-1.38×.

Read its figures as relative: the instrument's Python callback around every kernel inflates both sides (kernels
summed to 8.2 ms of a 4.7 ms MobileNet v2 run), and some kernels far more than others: the 144-channel 56×56
depthwise layer read 269 µs here, 75 µs called directly after the expansion that feeds it (Zen 4).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def _node(name: str) -> str:
    """The ONNX node an onnxruntime profile entry names (its fused nodes are named after their output)."""
    return name.removesuffix("_nchwc").removesuffix("_output_0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("package")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("TVM_NUM_THREADS", "2")))
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import onnxruntime as ort
    import tvm
    from tvm import relax

    pkg = args.package
    manifest = json.load(open(f"{pkg}/manifest.json"))
    profile = json.loads(subprocess.run([sys.executable, "-m", "archc", "profile", pkg, "--format", "json",
                                         "--repeat", "4"], capture_output=True, text=True, check=True).stdout)
    nodes = {k["name"]: k["nodes"] for k in profile["kernels"]}
    vm = relax.VirtualMachine(tvm.runtime.load_module(f"{pkg}/{manifest['library']}"), tvm.cpu())
    x = np.random.default_rng(0).random(manifest["inputs"][0]["shape"], dtype=np.float32)
    xt = tvm.runtime.tensor(x, tvm.cpu())
    samples: dict[str, list[float]] = collections.defaultdict(list)
    current: dict[str, float] = collections.defaultdict(float)
    start = [0.0]

    def instrument(func, name, before, ret, *rest):  # noqa: ANN001, ANN002, ANN202 (TVM's callback)
        if before:
            start[0] = time.perf_counter()
        else:
            current[name] += time.perf_counter() - start[0]
        return 0
    for _ in range(10):
        vm["main"](xt)
    vm.set_instrument(instrument)
    for _ in range(30):
        current.clear()
        vm["main"](xt)
        for name, seconds in current.items():
            samples[name].append(seconds)
    archc = {name: float(np.median(values)) for name, values in samples.items()}
    options = ort.SessionOptions()
    options.enable_profiling, options.intra_op_num_threads = True, args.threads
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    sess = ort.InferenceSession(f"{pkg}/model.onnx", options, providers=["CPUExecutionProvider"])
    for _ in range(40):
        sess.run(None, {sess.get_inputs()[0].name: x})
    events = json.load(open(sess.end_profiling()))
    times: dict[str, list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[e["name"][:-len("_kernel_time")]].append(e["dur"] * 1e-6)
    per_node = {_node(name): float(np.median(values)) for name, values in times.items()}
    onnxruntime = {k: sum(per_node.get(n, 0.0) for n in (nodes.get(k) or [])) for k in archc}
    run_by_archc = {n for k in archc for n in (nodes.get(k) or [])}
    print(f"archc {sum(archc.values()) * 1e3:.2f} ms in kernels, onnxruntime {sum(per_node.values()) * 1e3:.2f} "
          f"ms in nodes ({args.threads} threads); onnxruntime nodes no kernel runs: "
          f"{sum(t for n, t in per_node.items() if n not in run_by_archc) * 1e6:.0f} µs")
    rows = sorted(((archc[k] - onnxruntime.get(k, 0.0), k) for k in archc), reverse=True)[:args.rows]
    for lost, k in rows:
        theirs = onnxruntime.get(k, 0.0)
        ratio = f"{archc[k] / theirs:5.2f}×" if theirs else "     "
        first = (nodes.get(k) or [""])[0]
        print(f"{lost * 1e6:+9.0f} µs  {archc[k] * 1e6:8.0f} vs {theirs * 1e6:8.0f} µs  {ratio}  {k}  {first}")


if __name__ == "__main__":
    main()
