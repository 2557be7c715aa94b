"""Where a package loses time to onnxruntime, layer by layer, inside the running model.

    python benchmarks/layer_gap.py PACKAGE [--rows 25] [--threads N]

Each kernel of the package is timed in the pipeline (the Relax VM's instrument, median of 30 runs after 10), each
ONNX node of the package's model.onnx by onnxruntime's profiler (median of 40 runs, same thread count); both are
grouped by the layer they belong to (ResNet-style names `layer3_4/…` fold into `layer3_x/…`, onnxruntime's fused
`…_nchwc` nodes under their last node's name) and listed by the time archc loses. Where the two fuse differently
the names differ: ResNet's conv3 + add + ReLU is `layer3_x/relu` in archc and `layer3_x/main/conv3/bn` (plus the
add) in onnxruntime, so such rows show one side only. Needs TVM: run it where the package runs. On ResNet-50 here
(2 threads): archc 32.7-35.0 ms in kernels against onnxruntime's 28.9-29.7 ms in nodes, the 1×1 convolutions of
layer3 and layer4 1.3-1.5× onnxruntime's.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np


def _key(name: str) -> str:
    return re.sub(r"layer(\d)_\d+", r"layer\1_x", name.removesuffix("_nchwc"))


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
    archc = collections.defaultdict(float)
    for name, values in samples.items():
        archc[_key((nodes.get(name) or [name])[-1])] += float(np.median(values))
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
    onnxruntime = collections.defaultdict(float)
    for name, values in times.items():
        onnxruntime[_key(name)] += float(np.median(values))
    print(f"archc {sum(archc.values()) * 1e3:.2f} ms in kernels, onnxruntime {sum(onnxruntime.values()) * 1e3:.2f} "
          f"ms in nodes ({args.threads} threads)")
    rows = sorted(((archc[k] - onnxruntime.get(k, 0.0), k) for k in archc), reverse=True)[:args.rows]
    for lost, k in rows:
        theirs = onnxruntime.get(k, 0.0)
        ratio = f"{archc[k] / theirs:5.2f}×" if theirs else "     "
        print(f"{lost * 1e6:+9.0f} µs  {archc[k] * 1e6:8.0f} vs {theirs * 1e6:8.0f} µs  {ratio}  {k}")


if __name__ == "__main__":
    main()
