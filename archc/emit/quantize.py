"""Post-training static quantization: a float32 ONNX model → its int8 QDQ form, calibrated on the user's inputs,
with its accuracy against the float32 model measured on onnxruntime.

    quantize(model, calibration inputs, method) = onnxruntime's pre-processing (batch norms folded, shapes
        inferred) → onnxruntime's `quantize_static` (QDQ format: per-channel symmetric int8 weights, uint8
        activations whose ranges the calibration method sets) → the QDQ model
    accuracy(fp32, int8, inputs) = max relative difference of the first output, top-1 / top-5 agreement

The QDQ model is what onnxruntime's own tooling writes, so it runs on onnxruntime's int8 kernels (VNNI where the CPU
has it) and on any engine that reads QDQ. onnxruntime's quantizer is used rather than archc's own: it is the field's
reference implementation of the format, and its calibrators (min-max, percentile, entropy) are the ones the
papers compare.
"""
from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from archc.errors import ArchcError, UsageError
from archc.util.difference import relative_diff, top_agreement

CALIBRATORS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}  # onnxruntime's CalibrationMethod
METHODS = tuple(CALIBRATORS)
IMAGES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".webp", ".tif", ".tiff"}
PERCENTILE = 99.999  # of the activations' absolute values: clips the rare outliers min-max would stretch the range to
AGREEMENT_FLOOR = 0.99  # top-1 agreement below this is said beside the figures (issue 24's rule)


@dataclass
class Agreement:
    """How the int8 model's first output compares with the float32 model's over `inputs` inputs: the largest
    difference, of the float32 output's largest magnitude (`relative_diff`), and (for a classifier's N×K scores,
    K ≥ 5) how many inputs keep the best class and the set of the best five."""
    inputs: int
    max_rel_diff: float
    top1: int | None
    top5: int | None

    def line(self, what: str) -> str:
        text = f"{what}: max rel. diff {self.max_rel_diff:.1e} over {self.inputs} inputs"
        if self.top1 is not None:
            text += f", top-1 agrees on {self.top1}, top-5 on {self.top5}"
            if self.top1 < AGREEMENT_FLOOR * self.inputs:
                text += (f" (below {AGREEMENT_FLOOR:.0%}: calibrate on more, or more typical, inputs, or keep the "
                         "most sensitive layers in fp32 with --keep-fp32)")
        return text


@dataclass
class Quantized:
    """What `archc quantize` made: the QDQ model (and where it was written), how it was calibrated, and its
    agreement with the float32 model on the calibration inputs and on random ones."""
    proto: onnx.ModelProto
    output: Path | None
    method: str
    calibration: int  # calibration inputs read
    quantized_nodes: int  # QuantizeLinear nodes: the activations carried in int8
    on_calibration: Agreement
    on_random: Agreement
    kept: tuple[str, ...] = ()  # nodes left in float32 (--keep-fp32)

    @property
    def summary(self) -> str:
        kept = f", {len(self.kept)} node{'s' * (len(self.kept) != 1)} kept in fp32" if self.kept else ""
        return (f"int8 QDQ, {self.quantized_nodes} activations quantized{kept}, calibrated by {self.method} on "
                f"{self.calibration} inputs\n  {self.on_calibration.line('calibration inputs')}\n  "
                f"{self.on_random.line('random inputs')}")


def calibration_inputs(folder: str | Path, shape: Sequence[int], mean: list[float] | None = None,
                       std: list[float] | None = None, limit: int = 100) -> list[np.ndarray]:
    """The model's inputs from the image or .npy files of `folder` (sorted by name, at most `limit`), each file one
    item read as `archc cam` reads one (an image resized to the input, its [0, 1] pixels normalised by `mean` and
    `std`; an .npy array of the input's shape less its batch), stacked into batches of the model's batch size."""
    from archc.util.inputs import read_sample
    where = Path(folder)
    if not where.is_dir():
        raise ArchcError(f"calibration folder '{folder}' does not exist", code="no-file")
    files = sorted(p for p in where.iterdir() if p.is_file() and p.suffix.lower() in IMAGES | {".npy"})[:limit]
    batch = int(shape[0])
    if not files:
        raise ArchcError(f"'{folder}' holds no images or .npy files to calibrate on; put a few dozen typical inputs "
                         "there", code="bad-input")
    if len(files) < batch:
        raise ArchcError(f"'{folder}' holds {len(files)} images or .npy files to calibrate on, fewer than a batch of "
                         f"{batch}; put a few dozen typical inputs there", code="bad-input")
    items = [read_sample(str(p), tuple(shape), mean, std) for p in files]
    return [np.concatenate(items[i:i + batch]) for i in range(0, len(items) - batch + 1, batch)]


def quantize(proto: onnx.ModelProto, inputs: list[np.ndarray], method: str = "percentile",
             keep: Sequence[str] = ()) -> onnx.ModelProto:
    """The QDQ int8 form of the float32 model `proto` (one input), its activation ranges from `inputs`; the nodes
    named in `keep` left in float32 (onnxruntime's nodes_to_exclude: their weights stay float32; an input that a
    quantized node before them wrote still passes its QDQ pair)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    if method not in METHODS:
        raise UsageError(f"unknown calibration method '{method}'; use one of {', '.join(METHODS)}", code="bad-option")
    stored = {t.name for t in proto.graph.initializer}
    names = [vi.name for vi in proto.graph.input if vi.name not in stored]
    check_kept(keep, {n.name for n in proto.graph.node}, "node of the model", weighted_layers(proto))
    if len(names) != 1:
        raise UsageError(f"calibration feeds one input, and the model takes {len(names)}: {', '.join(names)}",
                         code="bad-input")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.left, None)
            return None if x is None else {names[0]: x}

    with tempfile.TemporaryDirectory(prefix="archc-quantize-") as work, _quiet():
        fp32, folded, int8 = (str(Path(work) / f) for f in ("fp32.onnx", "folded.onnx", "int8.onnx"))
        onnx.save_model(proto, fp32, save_as_external_data=proto.ByteSize() > 1_900_000_000)
        quant_pre_process(fp32, folded, skip_symbolic_shape=True)  # batch norms folded into their convolutions
        try:
            quantize_static(folded, int8, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, CALIBRATORS[method]),
                            nodes_to_exclude=list(keep),
                            extra_options={"WeightSymmetric": True, "CalibPercentile": PERCENTILE})
        except ValueError as err:
            if "bins" not in str(err) or method == "minmax":
                raise
            # onnxruntime's histogram calibrators fail on an activation whose values span almost nothing (numpy:
            # "Too many bins for data range"; MobileNet v3's hardsigmoid gates on random inputs)
            raise ArchcError(f"calibration by {method} failed: an activation's values span too narrow a range for "
                             "onnxruntime's 2,048-bin histogram; use --method minmax, or calibrate on more varied "
                             "inputs", code="bad-calibration") from None
        return onnx.load_model(int8)


def weighted_layers(proto: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """The model's layers with weights stored in it (a convolution's, a dense layer's), by node name, in order."""
    stored = {t.name for t in proto.graph.initializer}
    return {n.name: n for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")
            and len(n.input) > 1 and n.input[1] in stored}


def check_kept(keep: Sequence[str], known: Collection[str], what: str, layers: Collection[str]) -> None:
    """Refuse, in one sentence listing the model's `layers`, --keep-fp32 names that are not in `known` (`what`
    they should name: any node for `archc quantize`, a layer with weights for a bf16 build)."""
    unknown = [k for k in keep if k not in known]
    if unknown:
        listed = list(layers)
        raise UsageError(f"--keep-fp32 names no {what}: {', '.join(repr(k) for k in unknown)}; its layers with "
                         f"weights are {', '.join(listed[:6])}{' …' if len(listed) > 6 else ''}", code="bad-option")


def agreement(fp32: onnx.ModelProto, int8: onnx.ModelProto, *input_sets: list[np.ndarray]) -> list[Agreement]:
    """The int8 model's first output against the float32 model's, both on onnxruntime (one session each), over each
    set of inputs (batches of the model's batch size); the difference is `relative_diff`, as everywhere in archc."""
    import onnxruntime as ort
    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (fp32, int8)]
    name = sessions[0].get_inputs()[0].name
    found = []
    for inputs in input_sets:
        worst, top1, top5, items = 0.0, 0, 0, 0
        classifier = True
        for x in inputs:
            want, got = (s.run(None, {name: x})[0] for s in sessions)
            worst = max(worst, relative_diff(got, want))
            classifier = classifier and want.ndim == 2 and want.shape[1] >= 5
            if classifier:
                one, five = top_agreement(got, want)
                top1, top5 = top1 + one, top5 + five
            items += len(x)
        found.append(Agreement(items, worst, top1 if classifier else None, top5 if classifier else None))
    return found


def random_inputs(shape: Sequence[int], count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` random items (standard normal) in batches of the input's batch size."""
    batches = -(-count // int(shape[0]))
    return [np.random.default_rng(seed + i).standard_normal(tuple(shape)).astype(np.float32) for i in range(batches)]


@contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer warns through the root logger (a line per 1-D weight it skips, a hint to pre-process
    that archc has done) and prints its calibrator's progress on stdout, which `archc quantize` keeps for its own
    result: both silenced while it runs, the user's logging as it was after."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def count_quantized(proto: onnx.ModelProto) -> int:
    return sum(1 for n in proto.graph.node if n.op_type == "QuantizeLinear")
