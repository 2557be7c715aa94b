"""Class activation maps (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016; deck
004): for a network ending in global average pooling and a fully connected layer, the map of class j on an input
is CAM_j = Σ_k w_jk · f_k, the last feature maps f_k weighted by the FC weights that connect their averages to class
j; normalised to [0, 1] and upsampled (bilinear) to the input's size.

A network whose GAP follows a 1×1 convolution to the classes (Darknet-19, SqueezeNet, NIN) is the same thing with
the weights applied first: the map of class j is that convolution's channel j.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from archc.errors import ArchcError

PASS_THROUGH = {"Flatten", "Reshape", "Squeeze", "Identity", "Dropout", "Softmax", "LogSoftmax", "Sigmoid"}


@dataclass
class Cam:
    """A class activation map and what it was computed for."""
    class_index: int
    score: float  # the network's output for that class
    features: str  # the tensor of the last feature maps (N×K×h×w)
    cam: np.ndarray  # h×w, as computed (before normalising)
    upsampled: np.ndarray  # H×W of the input, normalised to [0, 1]
    picture: np.ndarray | None = None  # H×W×3 uint8 to draw it on (the image given; `archc.cam` sets it)

    @property
    def peak(self) -> tuple[int, int]:
        """(row, column) of the map's maximum, in input pixels."""
        row, col = np.unravel_index(int(np.argmax(self.upsampled)), self.upsampled.shape)
        return int(row), int(col)

    @property
    def summary(self) -> str:
        """One line: the class and its score, the maps it came from, where it peaks."""
        row, col = self.peak
        return (f"class {self.class_index} (score {self.score:.4g}), from the {'×'.join(map(str, self.cam.shape))} "
                f"maps of '{self.features}'; peak at x={col}, y={row}")


@dataclass
class _Tail:
    features: str  # what the weights apply to: GAP's input, or the 1×1 conv's input
    weights: np.ndarray  # classes × K
    output: str  # the network output the class is read from


def tail(model: onnx.ModelProto) -> _Tail:
    """Find GAP → (flatten) → FC (or 1×1 conv → GAP) walking back from the first output; ArchcError (no-cam) if
    the network does not end so."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    output = model.graph.output[0].name
    node = producer.get(output)
    while node is not None and node.op_type in PASS_THROUGH | {"Add"}:
        if node.op_type == "Add":  # the FC's bias, written apart (MatMul + Add)
            nxt = [producer.get(i) for i in node.input if i not in inits]
            node = nxt[0] if len(nxt) == 1 else None
        else:
            node = producer.get(node.input[0])
    why = "it must end in global average pooling and a fully connected layer (or a 1×1 convolution then the pooling)"
    if node is None:
        raise ArchcError(f"no class activation map for this network: {why}", code="no-cam")
    if node.op_type in ("Gemm", "MatMul") and len(node.input) >= 2 and node.input[1] in inits:
        w = numpy_helper.to_array(inits[node.input[1]])
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        weights = w if (node.op_type == "Gemm" and trans_b) else w.T  # → classes × K
        src = producer.get(node.input[0])
        while src is not None and src.op_type in PASS_THROUGH:
            src = producer.get(src.input[0])
        if src is not None and _is_gap(src, inits):
            return _Tail(src.input[0], weights, output)
    if _is_gap(node, inits):  # 1×1 conv → GAP: the conv's channels are the class maps
        conv = producer.get(node.input[0])
        while conv is not None and conv.op_type in ("Relu", "LeakyRelu", "Identity"):
            conv = producer.get(conv.input[0])
        if conv is not None and conv.op_type == "Conv" and conv.input[1] in inits:
            w = numpy_helper.to_array(inits[conv.input[1]])
            groups = next((a.i for a in conv.attribute if a.name == "group"), 1)
            if w.shape[2:] == (1, 1) and groups == 1:
                return _Tail(conv.input[0], w[:, :, 0, 0], output)
    raise ArchcError(f"no class activation map for this network ({node.op_type} '{node.name}' before its output): "
                     f"{why}", code="no-cam")


def _is_gap(node: onnx.NodeProto, inits: dict[str, Any]) -> bool:
    if node.op_type == "GlobalAveragePool":
        return True
    if node.op_type == "ReduceMean":  # over H and W: the axes attribute (opset < 18) or input
        axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
        if axes is None and len(node.input) > 1 and node.input[1] in inits:
            axes = numpy_helper.to_array(inits[node.input[1]]).tolist()
        return sorted(int(a) % 4 for a in axes or []) == [2, 3]
    return False


def _bilinear(m: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (PyTorch's align_corners=False, ONNX Resize's default)."""
    h, w = m.shape

    def grid(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(x).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, x - lo
    (r0, r1, fr), (c0, c1, fc) = grid(height, h), grid(width, w)
    top = m[r0][:, c0] * (1 - fc) + m[r0][:, c1] * fc
    bottom = m[r1][:, c0] * (1 - fc) + m[r1][:, c1] * fc
    return top * (1 - fr)[:, None] + bottom * fr[:, None]


def class_activation_map(model: onnx.ModelProto, found: _Tail, x: np.ndarray, class_index: int | None = None
                         ) -> Cam:
    """The CAM of `class_index` (default: the network's top class) for input `x` (1×C×H×W), from the tail that
    `tail(model)` found."""
    import onnxruntime as ort
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    if found.features not in {o.name for o in probe.graph.output}:
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(found.features))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    scores, features = sess.run([found.output, found.features], {name: x})
    scores = scores.reshape(-1)
    classes = found.weights.shape[0]
    if class_index is None:
        class_index = int(np.argmax(scores))
    if not 0 <= class_index < classes:
        raise ArchcError(f"class {class_index} is not one of the network's {classes} classes (0 to {classes - 1})",
                         code="bad-option")
    if features.ndim != 4 or features.shape[1] != found.weights.shape[1]:
        raise ArchcError(f"no class activation map: the feature maps are {features.shape}, the weights "
                         f"{found.weights.shape}", code="no-cam")
    cam = np.tensordot(found.weights[class_index].astype(np.float64), features[0].astype(np.float64), axes=1)
    span = float(cam.max() - cam.min())
    normalised = (cam - cam.min()) / span if span > 0 else np.zeros_like(cam)
    up = np.clip(_bilinear(normalised, x.shape[2], x.shape[3]), 0, 1)
    return Cam(class_index, float(scores[class_index]), found.features, cam, up)
