"""A class activation map drawn over its picture: the map coloured from blue (0) through green and yellow to red
(1), blended half and half with the image, as a PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def jet(m: np.ndarray) -> np.ndarray:
    """H×W in [0, 1] → H×W×3 uint8, the classic jet colour map (piecewise linear)."""
    r = np.clip(1.5 - np.abs(4 * m - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * m - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * m - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay(picture: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return (picture.astype(np.float32) * (1 - alpha) + jet(cam).astype(np.float32) * alpha).astype(np.uint8)


def png(picture: np.ndarray, cam: np.ndarray) -> bytes:
    """The overlay as PNG bytes."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(overlay(picture, cam)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | Path, picture: np.ndarray, cam: np.ndarray) -> None:
    """The overlay, written atomically."""
    from archc.util.atomic import write_bytes
    write_bytes(path, png(picture, cam))
