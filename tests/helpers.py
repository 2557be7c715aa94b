"""Shared test helper: compile a graph to ONNX and run it in onnxruntime (like TVM's check_correctness)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from archc import spec
from archc.emit import to_onnx, weights_for
from archc.options import ModelOptions


def one_layer(layer: str, shape: str, blocks: str = "") -> spec.Graph:
    """A network `input x: <shape>` followed by `layer`."""
    return spec.load_text(f"{blocks}\nnetwork t {{\n  input x: {shape}\n  {layer}\n}}\n", "<test>")


def run(graph, x: np.ndarray | None = None, weights=None, simplify: bool = False, seed: int = 0):
    """Returns (outputs, weights, input) of the graph run in onnxruntime."""
    weights = weights if weights is not None else weights_for(graph, ModelOptions(seed=seed))
    model = to_onnx(graph, ModelOptions(simplify=simplify), weights=weights)
    if x is None:
        x = np.random.default_rng(1).standard_normal(graph.inputs[0].shape).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {graph.inputs[0].name: x})
    return outs, weights, x


RTOL = 1e-4  # compiled outputs vs onnxruntime's: of the output's range (untuned TVM kernels only reorder float sums)


def onnxruntime_outputs(onnx_path, inputs: dict) -> list:
    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, inputs)


def assert_close(got: list, want: list, rtol: float = RTOL) -> None:
    """Same count, shapes and dtypes; floats within `rtol` of each output's largest magnitude, integers equal."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        g, w = np.asarray(g), np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype
        if np.issubdtype(w.dtype, np.integer):
            assert np.array_equal(g, w)
        else:
            assert float(np.abs(g - w).max()) <= rtol * max(float(np.abs(w).max()), 1e-6)
