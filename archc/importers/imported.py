"""What an importer returns."""
from __future__ import annotations

import re
from dataclasses import dataclass, field


def identifier(text: str, fallback: str, prefix: str) -> str:
    """`text` as a spec name: every other character than a letter, digit or _ made _, `prefix` before a leading
    digit, `fallback` where nothing is left."""
    name = re.sub(r"\W", "_", text).strip("_") or fallback
    return name if name[0].isalpha() else prefix + name


@dataclass
class Imported:
    """The spec's text, and the source framework's own figures for the network."""
    framework: str  # "Darknet", "Caffe"
    text: str
    bflops: float  # billions of FLOPs as the source counts them: 2 × multiply-adds of its convolutional, local
    # and connected (inner product) layers, what Darknet prints as "BFLOPs"
    weights: int  # learned parameters: the floats of Darknet's .weights file after its header; Caffe's blobs
    outputs: list[str]
    layout: list[tuple[str, tuple[int, ...]]]  # the .weights file's tensors in order: archc's name, shape
    # Caffe: each layer's name → the archc tensors (name, shape) its blobs become, in the blobs' order ([] for a
    # layer without learned parameters), for binding a .caffemodel (importers/caffemodel.py)
    blobs: dict[str, list[tuple[str, tuple[int, ...]]]] = field(default_factory=dict)
    # `archc import` without --flat: each layer of a unit folded into a block call → its path there (conv6 →
    # layers6_9/conv1); importers.blocks.rename maps a parameter's name through it (layout and blobs have it done)
    renames: dict[str, str] = field(default_factory=dict)
