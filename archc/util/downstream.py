"""What an ONNX tensor feeds: the one walk that cuts a two-stage detector (lower/split.py) and finds its
per-proposal layers (analysis)."""
from __future__ import annotations

from collections.abc import Iterable

import onnx


def downstream(nodes: Iterable[onnx.NodeProto], start: str) -> tuple[list[onnx.NodeProto], set[str]]:
    """The nodes (given in topological order, as ONNX keeps them) that read `start` or a tensor made from it, and
    every such tensor, `start` included."""
    reached, tensors = [], {start}
    for node in nodes:
        if any(name in tensors for name in node.input):
            reached.append(node)
            tensors.update(node.output)
    return reached, tensors
