"""Which layers a low-precision build's difference from fp32 comes from: each layer with weights kept in fp32 in
turn, the rest at the precision, and the agreement with onnxruntime fp32 over random inputs.

    python benchmarks/precision_sensitivity.py [--model mobilenet_v2] [--precision int8|bf16] [--inputs 200]
                                               [--calibration 8] [--greedy 10] [--out FILE.md]

int8: `archc quantize`'s QDQ model (min-max ranges from `--calibration` random inputs, as precision_speed.py's
peer) with `keep_fp32=[layer]` (its --keep-fp32), run on onnxruntime. bf16: emulated on onnxruntime, as archc's
AVX512-BF16/BFDOT kernels round: batch norms folded into the convolutions, the dense convolutions' and dense
layers' weights rounded to bf16 (nearest even) and their inputs passed through a cast to bfloat16 and back (the
depthwise and grouped ones stay fp32, as archc keeps them); the emulation's top-1 agreement is printed beside the
layers' so that it can be compared with the build's (precision_speed.py). For each layer: top-1 agreement and the
mean difference (of the output's largest magnitude) with that layer in fp32; then `--greedy` layers kept in fp32
together, the most helpful first. On a network with random weights a difference spread evenly over the layers
says that keeping a few in fp32 cannot buy agreement; on a trained one the first and last layers often stand out.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenet_v2", help="a specs/ name, an .onnx file or a torchvision name")
    ap.add_argument("--precision", choices=["int8", "bf16"], default="int8")
    ap.add_argument("--inputs", type=int, default=200)
    ap.add_argument("--calibration", type=int, default=8, help="int8: random calibration inputs (min-max)")
    ap.add_argument("--greedy", type=int, default=10)
    ap.add_argument("--out", help="also write the table to this Markdown file")
    args = ap.parse_args()
    import onnxruntime as ort
    from backend_speed import source  # this script's folder

    import archc
    from archc.emit.quantize import quantize, random_inputs
    from archc.util.difference import relative_diff
    ort.set_default_logger_severity(3)
    model = archc.load(source(args.model, Path(tempfile.mkdtemp(prefix="archc-sensitivity-"))), batch=1)
    proto = model.proto
    name, shape = model.inputs[0][0], model.inputs[0][1]
    layers = [n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")
              and (args.precision == "int8" or _dense(n))]
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal(shape).astype(np.float32) for _ in range(args.inputs)]
    want = _outputs(proto, name, xs)
    calibration = random_inputs(shape, args.calibration)

    folded = _folded(proto) if args.precision == "bf16" else proto

    def build(kept: list[str]):
        if args.precision == "int8":
            return quantize(proto, calibration, "minmax", kept)
        return _bf16(folded, [layer for layer in layers if layer not in kept])

    def score(kept: list[str]) -> tuple[int, float]:
        got = _outputs(build(kept), name, xs)
        return (int((got.argmax(1) == want.argmax(1)).sum()),
                float(np.mean([relative_diff(g, w) for g, w in zip(got, want, strict=True)])))

    lines = [f"## precision_sensitivity: {args.model} at {args.precision}, {args.inputs} random inputs", "",
             f"- command: `python benchmarks/precision_sensitivity.py --model {args.model} --precision "
             f"{args.precision} --inputs {args.inputs} --calibration {args.calibration} --greedy {args.greedy}`", ""]
    top1, diff = score([])
    lines += [f"- every layer at {args.precision}: top-1 {top1}/{args.inputs}, mean difference {diff:.2e}", "",
              "| layer kept in fp32 | top-1 agree | mean difference |", "| --- | ---: | ---: |"]
    print("\n".join(lines), flush=True)
    found = []
    for layer in layers:
        found.append((*score([layer]), layer))
    found.sort(key=lambda f: f[1])
    rows = [f"| {layer} | {agree} | {d:.2e} |" for agree, d, layer in found]
    kept: list[str] = []
    rows += ["", f"| the {args.greedy} best kept together | top-1 agree | mean difference |", "| --- | ---: | ---: |"]
    for _, _, layer in found[:args.greedy]:
        kept.append(layer)
        agree, d = score(kept)
        rows.append(f"| {len(kept)}: + {layer} | {agree} | {d:.2e} |")
    print("\n".join(rows), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines + rows) + "\n", encoding="utf-8")


def _dense(node) -> bool:
    """A convolution of one group or a dense layer: what archc's bf16 kernels compute in bf16."""
    return node.op_type != "Conv" or next((a.i for a in node.attribute if a.name == "group"), 1) == 1


def _outputs(proto, name: str, xs: list[np.ndarray]) -> np.ndarray:
    import onnxruntime as ort
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.stack([session.run(None, {name: x})[0].reshape(-1) for x in xs])


def _folded(proto):
    """`proto` with its batch norms folded into the convolutions (onnxruntime's pre-processing, as archc's
    quantizer does), once for every emulated build."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process
    with tempfile.TemporaryDirectory() as work:
        onnx.save(proto, f"{work}/in.onnx")
        quant_pre_process(f"{work}/in.onnx", f"{work}/folded.onnx", skip_symbolic_shape=True)
        return onnx.load(f"{work}/folded.onnx")


def _bf16(folded, layers: list[str]):
    """A copy of the `folded` model with the named layers emulating bf16 (module doc)."""
    import onnx
    from onnx import helper, numpy_helper
    model = onnx.ModelProto()
    model.CopyFrom(folded)
    stored = {t.name: t for t in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.name in layers and node.input[1] in stored:
            weight = stored[node.input[1]]
            weight.CopyFrom(numpy_helper.from_array(_rounded(numpy_helper.to_array(weight)), weight.name))
            bits, back = f"{node.name}/bf16", f"{node.name}/bf16/float"
            nodes += [helper.make_node("Cast", [node.input[0]], [bits], to=onnx.TensorProto.BFLOAT16),
                      helper.make_node("Cast", [bits], [back], to=onnx.TensorProto.FLOAT)]
            node.input[0] = back
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _rounded(a: np.ndarray) -> np.ndarray:
    import ml_dtypes
    return a.astype(ml_dtypes.bfloat16).astype(np.float32)


if __name__ == "__main__":
    main()
