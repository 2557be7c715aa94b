"""A detector's post-processing (numpy only: packages carry it as archc_detect.py for their Python loader; the C++
loader, cpp/main.cc, does the same in C++): YOLO's decoding, Faster R-CNN's proposals and per-class decoding, and
non-maximum suppression.

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


# Faster R-CNN (torchvision's and Detectron's conventions, boxes as x1, y1, x2, y2 in input pixels, no "+1"):
# offsets (dx, dy, dw, dh) move a box's centre by (dx·w, dy·h) and scale its size by (e^dw, e^dh), dw and dh
# first clamped to log(1000 / 16); the RPN's offsets as they are, the heads' divided by (10, 10, 5, 5).
CLAMP = float(np.log(1000.0 / 16))
HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
MIN_SIZE = 1e-3  # a proposal narrower or lower than this (pixels) is dropped; a detection below 1e-2


def anchors(height: int, width: int, sizes: Sequence[float], ratios: Sequence[float], stride: int) -> np.ndarray:
    """The (height·width·k)×4 anchors of a feature map, location by location (row, column) and, at each, ratio by
    ratio and size by size: an anchor of size s and ratio r (height / width) is s/√r wide and s·√r high, its
    corners rounded to whole pixels, centred on (column·stride, row·stride)."""
    r = np.sqrt(np.asarray(ratios, np.float64))
    s = np.asarray(sizes, np.float64)
    ws, hs = ((1 / r)[:, None] * s[None, :]).reshape(-1), (r[:, None] * s[None, :]).reshape(-1)
    base = np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2)
    ys, xs = np.meshgrid(np.arange(height) * stride, np.arange(width) * stride, indexing="ij")
    shifts = np.stack([xs, ys, xs, ys], axis=-1).reshape(-1, 1, 4).astype(np.float64)
    return (shifts + base[None]).reshape(-1, 4)


def decode_boxes(boxes: np.ndarray, deltas: np.ndarray, weights: Sequence[float] = (1, 1, 1, 1)) -> np.ndarray:
    """`deltas` (…×4) applied to `boxes` (…×4), as the module's comment says."""
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    cx, cy = boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h
    dx, dy = deltas[..., 0] / weights[0], deltas[..., 1] / weights[1]
    dw, dh = np.minimum(deltas[..., 2] / weights[2], CLAMP), np.minimum(deltas[..., 3] / weights[3], CLAMP)
    px, py, pw, ph = dx * w + cx, dy * h + cy, np.exp(dw) * w, np.exp(dh) * h
    return np.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], axis=-1)


def _clip(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.stack([np.clip(boxes[..., 0], 0, width), np.clip(boxes[..., 1], 0, height),
                     np.clip(boxes[..., 2], 0, width), np.clip(boxes[..., 3], 0, height)], axis=-1)


def proposals(scores: np.ndarray, deltas: np.ndarray, sizes: Sequence[float], ratios: Sequence[float],
              stride: int, image: tuple[int, int], count: int, pre_nms: int, iou: float
              ) -> tuple[np.ndarray, int]:
    """The RPN's `count` proposals (count×4 float32, best first) for image 0, and how many are real: the rest
    repeat the last real one (a zero box where none is left), so that stage two's input keeps its shape. Each
    anchor's object probability is the softmax of its two logits (scores: k background, then k object channels);
    its box is decoded and clipped to the image; boxes under MIN_SIZE dropped; the `pre_nms` most probable
    (ties: in anchor order) go through greedy suppression above `iou`."""
    height, width = image
    k = len(sizes) * len(ratios)
    _, channels, h, w = scores.shape
    if channels != 2 * k or deltas.shape[1] != 4 * k:
        raise ValueError(f"the RPN's outputs have {channels} and {deltas.shape[1]} channels; {k} anchors need "
                         f"{2 * k} and {4 * k}")
    logits = scores[0].astype(np.float64).reshape(2, k, h, w).transpose(0, 2, 3, 1).reshape(2, -1)
    probability = 1 / (1 + np.exp(logits[0] - logits[1]))
    offsets = deltas[0].astype(np.float64).reshape(k, 4, h, w).transpose(2, 3, 0, 1).reshape(-1, 4)
    boxes = _clip(decode_boxes(anchors(h, w, sizes, ratios, stride), offsets), height, width)
    big = np.flatnonzero((boxes[:, 2] - boxes[:, 0] >= MIN_SIZE) & (boxes[:, 3] - boxes[:, 1] >= MIN_SIZE))
    order = big[np.argsort(-probability[big], kind="stable")][:pre_nms]
    chosen = order[_nms(boxes[order], np.zeros(len(order), np.int64), iou)][:count]
    out = np.zeros((count, 4), np.float64)
    out[:len(chosen)] = boxes[chosen]
    if 0 < len(chosen) < count:
        out[len(chosen):] = boxes[chosen[-1]]
    return out.astype(np.float32), len(chosen)


def rcnn(cls: np.ndarray, box: np.ndarray, rois: np.ndarray, real: int, classes: int, image: tuple[int, int],
         confidence: float, iou: float, max_boxes: int) -> Detections:
    """Stage two's outputs for the first `real` proposals `rois`: each class c of K (the softmax of K + 1 logits,
    background first; the class numbered c - 1 in the result) gives each proposal a box, decoded from its offsets
    4(c - 1) … 4c - 1 with HEAD_WEIGHTS and clipped to the image, and a score, its probability; boxes scoring above
    `confidence` and not under 1e-2 pixels are kept, best first (ties: in proposal, then class order), then
    suppressed class by class above `iou`; the `max_boxes` best stay."""
    height, width = image
    if cls.shape[-1] != classes + 1 or box.shape[-1] != 4 * classes:
        raise ValueError(f"stage two's outputs have {cls.shape[-1]} and {box.shape[-1]} columns; {classes} classes "
                         f"need {classes + 1} and {4 * classes}")
    logits = cls.reshape(-1, classes + 1)[:real].astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (e / e.sum(axis=1, keepdims=True))[:, 1:]
    offsets = box.reshape(-1, classes, 4)[:real].astype(np.float64)
    boxes = _clip(decode_boxes(rois[:real, None, :].astype(np.float64), offsets, HEAD_WEIGHTS), height, width)
    flat_boxes, flat_scores = boxes.reshape(-1, 4), probs.reshape(-1)
    flat_classes = np.tile(np.arange(classes), real)
    big = (flat_boxes[:, 2] - flat_boxes[:, 0] >= 1e-2) & (flat_boxes[:, 3] - flat_boxes[:, 1] >= 1e-2)
    keep = np.flatnonzero((flat_scores > confidence) & big)
    keep = keep[np.argsort(-flat_scores[keep], kind="stable")]
    idx = keep[_nms(flat_boxes[keep], flat_classes[keep], iou)[:max_boxes]]
    return Detections(flat_boxes[idx].astype(np.float32), flat_scores[idx].astype(np.float32),
                      flat_classes[idx].astype(np.int64))


def _nms(boxes: np.ndarray, classes: np.ndarray, iou: float) -> list[int]:
    """Greedy suppression over boxes sorted best first: a box is kept unless a kept box of its class overlaps it
    by more than `iou` (each kept box suppresses the later ones of its class at once: the same choice)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    suppressed = np.zeros(len(boxes), bool)
    kept: list[int] = []
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        kept.append(i)
        ix = np.minimum(boxes[i, 2], boxes[i + 1:, 2]) - np.maximum(boxes[i, 0], boxes[i + 1:, 0])
        iy = np.minimum(boxes[i, 3], boxes[i + 1:, 3]) - np.maximum(boxes[i, 1], boxes[i + 1:, 1])
        inter = np.maximum(ix, 0.0) * np.maximum(iy, 0.0)
        union = area[i + 1:] + area[i] - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            over = (union > 0) & (inter / np.where(union > 0, union, 1) > iou)
        suppressed[i + 1:] |= over & (classes[i + 1:] == classes[i])
    return kept
