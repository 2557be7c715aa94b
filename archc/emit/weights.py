"""Weights: deterministic initialisation, or binding trained tensors from .npz, .safetensors or .onnx by layer path.

Tensor names are `<layer path>.<suffix>` with PyTorch's suffixes (`conv1.weight`, `bn1.running_var`). A weights
file may also spell paths with dots instead of slashes (a PyTorch state_dict: `layer1.0.conv1.weight`).
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path

import numpy as np

from archc import ops
from archc.errors import ArchcError
from archc.ir import Graph, Node
from archc.ops.registry import Init
from archc.shapes import dtype, fmt_dims


def _follows_relu(graph: Graph, node: Node, consumers: dict[int, list[Node]]) -> bool:
    """True if the kernel feeds a ReLU-family activation, looking through batch norm and dropout."""
    frontier = [node]
    for _ in range(4):
        nxt = []
        for n in frontier:
            for c in consumers.get(id(n.output), []):
                op = ops.lookup(c.op)
                assert op is not None, c.op  # the IR holds registered ops only
                if op.gain == "relu":
                    return True
                if op.transparent_for_init:
                    nxt.append(c)
        frontier = nxt
    return False


def init_weights(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """He-normal for kernels followed by a ReLU-family activation, Xavier-uniform otherwise; biases 0; BN identity.

    Each tensor draws from its own generator seeded by (seed, crc32(name)), so a tensor's values depend only on its
    name and shape, not on what else the network contains.
    """
    consumers = graph.consumers()
    out: dict[str, np.ndarray] = {}
    for name, node, w in graph.weight_items():
        np_type = dtype(node.output.dtype).numpy
        if w.init is Init.FAN:
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            if _follows_relu(graph, node, consumers):
                arr = rng.normal(0.0, math.sqrt(2.0 / w.fan_in), w.shape)
            else:
                limit = math.sqrt(6.0 / (w.fan_in + w.fan_out))
                arr = rng.uniform(-limit, limit, w.shape)
        elif w.init is Init.ZEROS:
            arr = np.zeros(w.shape)
        elif w.init is Init.ONES:
            arr = np.ones(w.shape)
        else:
            arr = np.full(w.shape, w.value)
        out[name] = arr.astype(np_type)
    return out


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Load a weights file into name → array. Raises ArchcError with one sentence on failure."""
    path = Path(path)
    if not path.is_file():
        raise ArchcError(f"weights file '{path}' does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        if suffix == ".safetensors":
            from safetensors.numpy import load_file
            return dict(load_file(str(path)))
        if suffix == ".onnx":
            import onnx
            from onnx import numpy_helper
            model = onnx.load(str(path), load_external_data=False)
            return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
                    if t.data_location != onnx.TensorProto.EXTERNAL}
    except ArchcError:
        raise
    except Exception as err:  # corrupt archives raise a zoo of exception types
        raise ArchcError(f"cannot read weights from '{path}': {err}") from None
    raise ArchcError(f"weights file '{path}' has an unknown format; use .npz, .safetensors or .onnx")


def bind_weights(graph: Graph, source: Mapping[str, np.ndarray],
                 ignore: AbstractSet[str] = frozenset()) -> dict[str, np.ndarray]:
    """Match every weight of the graph to a tensor of `source`; the first missing, extra or mis-shaped one is an
    error. `ignore` names tensors of the source that are not weights (an ONNX file's constants)."""
    wanted = {name: (node, w) for name, node, w in graph.weight_items()}
    by_dots = {k.replace("/", "."): k for k in wanted}
    out: dict[str, np.ndarray] = {}
    for key, arr in source.items():
        if key in ignore or key.endswith("num_batches_tracked"):
            continue
        name = key if key in wanted else by_dots.get(key)
        if name is None:
            raise ArchcError(f"weights file has a tensor '{key}' that matches no layer of '{graph.name}' "
                             f"(names are <layer path>.<weight|bias|running_mean|running_var>)")
        node, w = wanted[name]
        if tuple(arr.shape) != tuple(w.shape):
            raise ArchcError(f"tensor '{key}' has shape {fmt_dims(arr.shape) or 'scalar'} but layer '{node.name}' "
                             f"({node.op}) needs {fmt_dims(w.shape)}")
        out[name] = np.asarray(arr).astype(dtype(node.output.dtype).numpy)
    for name in wanted:
        if name not in out:
            raise ArchcError(f"weights file has no tensor '{name}' (shape {fmt_dims(wanted[name][1].shape)})")
    return out

