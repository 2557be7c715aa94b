"""A detector's post-processing (numpy only: packages carry it as archc_detect.py for their Python loader; the C++
loader, cpp/main.cc, does the same in C++): YOLO's decoding and non-maximum suppression.

Each head output is N×A·(5 + C)×H×W: for each grid cell (row y, column x) and anchor a, the channels a·(5 + C) …
hold tx, ty, tw, th, the objectness logit and C class logits. As Darknet's region (YOLOv2) and yolo (YOLOv3)
layers decode them: centre ((x + σ(tx)) / W, (y + σ(ty)) / H) and size (anchor_w·e^tw, anchor_h·e^th) of the image,
the anchors in grid cells (YOLOv2: divided by W and H) or input pixels (YOLOv3: divided by the input's width and
height); objectness σ(to); class probabilities softmax(logits) (YOLOv2) or σ(logits) each (YOLOv3); a box's score
is its objectness times its best class's probability. Boxes scoring above the confidence are kept, in input pixels
(x1, y1, x2, y2), highest score first (ties in the order head, anchor, row, column); then, class by class, a box
whose IoU with a better one of its class exceeds the threshold is dropped; the best `max_boxes` stay. Arithmetic
in float64, so that both loaders agree to rounding.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np


class Detections(NamedTuple):
    boxes: np.ndarray  # K×4 float32: x1, y1, x2, y2 in input pixels
    scores: np.ndarray  # K float32, descending
    classes: np.ndarray  # K int64


def yolo(kind: str, outputs: Sequence[np.ndarray], heads: Sequence[tuple[int, Any]], classes: int,
         image: tuple[int, int], confidence: float, iou: float, max_boxes: int) -> Detections:
    """Decode image 0 of the head outputs (`heads`: output index, anchor w, h pairs) for an input of `image` =
    (height, width) pixels; `kind` "yolov2" or "yolov3"."""
    height, width = image
    all_boxes, all_scores, all_classes = [], [], []
    for index, anchors in heads:
        raw = outputs[index]
        pairs = np.asarray(anchors, np.float64).reshape(-1, 2)
        a = len(pairs)
        _, channels, h, w = raw.shape
        if channels != a * (5 + classes):
            raise ValueError(f"output {index} has {channels} channels; {a} anchors × (5 + {classes}) classes need "
                             f"{a * (5 + classes)}")
        t = raw[0].astype(np.float64).reshape(a, 5 + classes, h, w)
        ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        cx = (xs + 1 / (1 + np.exp(-t[:, 0]))) / w
        cy = (ys + 1 / (1 + np.exp(-t[:, 1]))) / h
        unit_w, unit_h = (w, h) if kind == "yolov2" else (width, height)  # grid cells, or input pixels
        bw = pairs[:, 0, None, None] * np.exp(t[:, 2]) / unit_w
        bh = pairs[:, 1, None, None] * np.exp(t[:, 3]) / unit_h
        objectness = 1 / (1 + np.exp(-t[:, 4]))
        logits = t[:, 5:]
        if kind == "yolov2":
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
        else:
            probs = 1 / (1 + np.exp(-logits))
        best = probs.argmax(axis=1)
        scores = objectness * np.take_along_axis(probs, best[:, None], axis=1)[:, 0]
        boxes = np.stack([(cx - bw / 2) * width, (cy - bh / 2) * height, (cx + bw / 2) * width,
                          (cy + bh / 2) * height], axis=-1)
        all_boxes.append(boxes.reshape(-1, 4))
        all_scores.append(scores.reshape(-1))
        all_classes.append(best.reshape(-1))
    flat_boxes, flat_scores, flat_classes = (np.concatenate(x) for x in (all_boxes, all_scores, all_classes))
    keep = np.flatnonzero(flat_scores > confidence)
    keep = keep[np.argsort(-flat_scores[keep], kind="stable")]
    chosen = _nms(flat_boxes[keep], flat_classes[keep], iou)[:max_boxes]
    idx = keep[chosen]
    return Detections(flat_boxes[idx].astype(np.float32), flat_scores[idx].astype(np.float32),
                      flat_classes[idx].astype(np.int64))


def _nms(boxes: np.ndarray, classes: np.ndarray, iou: float) -> list[int]:
    """Greedy suppression over boxes sorted best first: a box is kept unless a kept box of its class overlaps it
    by more than `iou`."""
    kept: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in range(len(boxes)):
        suppressed = False
        for j in kept:
            if classes[j] != classes[i]:
                continue
            ix = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            iy = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            inter = max(ix, 0.0) * max(iy, 0.0)
            union = area[i] + area[j] - inter
            if union > 0 and inter / union > iou:
                suppressed = True
                break
        if not suppressed:
            kept.append(i)
    return kept
