"""archc's AMX kernels (archc/lower/kernels/amx.py, bf16) against this machine's fp32: issue 24's first figures.

    python benchmarks/amx_kernels.py [--threads N] [--shapes 256x256x1024,...] [--convs resnet50|none]

Matrix products, for each M×N×K: archc's AMX kernel (bf16 in, float32 out; TVM's runtime timer, the best of 5
repeats of 20 runs) and numpy's float32 matmul of the same numbers (its BLAS, the median of 20). Convolutions
(ResNet-50's distinct ones but the RGB stem, batch 1): archc's AMX kernel (bias and ReLU included) and onnxruntime's
float32 Conv + Relu of the same shape (one-node model, its default threads, spinning stopped after a run, the
median of 50 after 10), alternating. The measured fp32 FMA peak (archc.util.peak) of the same thread count
is the yardstick. The kernels have no cache blocking yet.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--shapes", default="256x256x1024,512x512x2048,1024x1024x1024,3136x256x64,196x1024x256")
    ap.add_argument("--convs", choices=("resnet50", "none"), default="resnet50")
    args = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import ml_dtypes
    import numpy as np
    import tvm

    from archc.lower.kernels import amx
    from archc.util.peak import fma_peak
    if not amx.request_tiles():
        sys.exit("this CPU (or kernel) has no AMX: Linux refused the tile state")
    peak = fma_peak(args.threads)
    print(f"fp32 FMA peak, {args.threads} thread(s): {peak['gflops']:.0f} GFLOP/s ({peak['isa']})")
    print(f"{'M×N×K':>18} {'AMX bf16 µs':>12} {'GFLOP/s':>8} {'× fp32 peak':>12} {'numpy fp32 µs':>14} {'GFLOP/s':>8}")
    dev = tvm.cpu()
    for shape in args.shapes.split(","):
        m, n, k = (int(v) for v in shape.split("x"))
        mp, np_, kp = (-(-v // amx.BLOCK) * amx.BLOCK for v in (m, n, k))  # padded to the block
        lib = tvm.compile(amx.gemm(mp, np_, kp), target=tvm.target.Target(amx.TARGET))
        rng = np.random.default_rng(0)
        a = rng.standard_normal((mp, kp)).astype(ml_dtypes.bfloat16)
        b = rng.standard_normal((kp, np_)).astype(ml_dtypes.bfloat16)
        ta, tb = tvm.runtime.tensor(a, dev), tvm.runtime.tensor(amx.pack_b(b), dev)
        tc = tvm.runtime.tensor(np.zeros((mp, np_), np.float32), dev)
        seconds = min(lib.mod.time_evaluator("amx_gemm", dev, number=20, repeat=5)(ta, tb, tc).results)
        a32, b32 = a.astype(np.float32)[:m, :k], b.astype(np.float32)[:k, :n]
        times = []
        for _ in range(20):
            start = time.perf_counter()
            a32 @ b32
            times.append(time.perf_counter() - start)
        blas = statistics.median(times)
        flops = 2 * m * n * k
        print(f"{shape:>18} {seconds * 1e6:12.1f} {flops / seconds / 1e9:8.0f} "
              f"{flops / seconds / 1e9 / peak['gflops']:11.2f}× {blas * 1e6:14.1f} {flops / blas / 1e9:8.0f}")
    if args.convs == "resnet50":
        convs(peak["gflops"])


# ResNet-50's convolutions (input channels, output channels, size, kernel, stride), the RGB stem left out
RESNET50 = [(64, 64, 56, 1, 1), (64, 64, 56, 3, 1), (64, 256, 56, 1, 1), (256, 64, 56, 1, 1),
            (256, 128, 56, 1, 1), (128, 128, 56, 3, 2), (128, 512, 28, 1, 1), (256, 512, 56, 1, 2),
            (512, 128, 28, 1, 1), (128, 128, 28, 3, 1), (512, 256, 28, 1, 1), (256, 256, 28, 3, 2),
            (256, 1024, 14, 1, 1), (512, 1024, 28, 1, 2), (1024, 256, 14, 1, 1), (256, 256, 14, 3, 1),
            (1024, 512, 14, 1, 1), (512, 512, 14, 3, 2), (512, 2048, 7, 1, 1), (1024, 2048, 14, 1, 2),
            (2048, 512, 7, 1, 1), (512, 512, 7, 3, 1)]


def convs(peak: float) -> None:
    import tempfile

    import ml_dtypes
    import numpy as np
    import onnx
    import tvm
    from onnx import helper

    from archc.lower.kernels import amx
    from archc.measurement.engines import onnxruntime_session
    tmp = tempfile.mkdtemp(prefix="archc-amx-")
    print(f"\n{'ResNet-50 conv':>26} {'AMX bf16 µs':>12} {'GFLOP/s':>8} {'× fp32 peak':>12} "
          f"{'onnxruntime fp32 µs':>20} {'× onnxruntime':>14}")
    dev = tvm.cpu()
    total_amx = total_ort = 0.0
    for c, o, size, k, stride in RESNET50:
        pad = k // 2
        out = (size + 2 * pad - k) // stride + 1
        rng = np.random.default_rng(0)
        x = rng.standard_normal((c, size, size)).astype(np.float32)
        w = (rng.standard_normal((o, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
        b = rng.standard_normal(o).astype(np.float32)
        lib = tvm.compile(amx.conv2d(c, o, size + 2 * pad, size + 2 * pad, k, k, stride, out, out),
                          target=tvm.target.Target(amx.TARGET))
        length = amx.conv_input_length(out, size + 2 * pad, k, k, stride)
        args = [tvm.runtime.tensor(a, dev) for a in (
            amx.pack_conv_input(x.astype(ml_dtypes.bfloat16), (pad, pad), length),
            amx.pack_conv_weights(w.astype(ml_dtypes.bfloat16)), b.reshape(o // 16, 16),
            np.zeros((o // 16, out, out, 16), np.float32))]
        graph = helper.make_graph(
            [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k], pads=[pad] * 4,
                              strides=[stride] * 2), helper.make_node("Relu", ["c"], ["y"])], "conv",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, c, size, size])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, o, out, out])],
            [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(b, "b")])
        path = Path(tmp) / f"conv{len(list(Path(tmp).iterdir()))}.onnx"
        onnx.save(helper.make_model(graph), path)
        session = onnxruntime_session(path)  # its threads stop spinning when a run returns
        feed = {"x": x[None]}
        amx_times, ort_times = [], []
        timer = lib.mod.time_evaluator("amx_conv2d", dev, number=10, repeat=1)
        for _ in range(10):
            session.run(None, feed)
        for _ in range(5):  # alternating: 5 rounds of 10 runs each
            amx_times.append(timer(*args).mean)
            for _ in range(10):
                start = time.perf_counter()
                session.run(None, feed)
                ort_times.append(time.perf_counter() - start)
        t_amx, t_ort = statistics.median(amx_times), statistics.median(ort_times)
        total_amx, total_ort = total_amx + t_amx, total_ort + t_ort
        flops = 2 * c * o * k * k * out * out
        print(f"{f'{c}→{o} {size}×{size} {k}×{k}/{stride}':>26} {t_amx * 1e6:12.1f} {flops / t_amx / 1e9:8.0f} "
              f"{flops / t_amx / 1e9 / peak:11.2f}× {t_ort * 1e6:20.1f} {t_amx / t_ort:13.2f}×")
    print(f"{'all, once each':>26} {total_amx * 1e6:12.1f} {'':>8} {'':>12} {total_ort * 1e6:20.1f} "
          f"{total_amx / total_ort:13.2f}×")


if __name__ == "__main__":
    main()
