"""A network's input from a file: a picture (resized, scaled, normalised) or an .npy tensor, with the picture to draw
on; what `archc cam` reads its image with and `archc quantize` its calibration inputs."""
from __future__ import annotations

import numpy as np

from archc.errors import ArchcError


def read_input(path: str, shape: tuple[int, ...], mean: list[float] | None = None,
               std: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The network input (1×C×H×W float32) and the picture to draw on (H×W×3 uint8) from an image file (resized to
    the input, pixels scaled to [0, 1], then (x − mean) / std per channel where given) or an .npy tensor (taken as
    it is; the picture is its first channels, min-max scaled)."""
    from pathlib import Path

    from PIL import Image, UnidentifiedImageError
    _, c, h, w = shape
    file = Path(path)
    if not file.is_file():
        raise ArchcError(f"input '{path}' does not exist", code="no-file")
    if file.suffix.lower() == ".npy":
        x = np.load(file, allow_pickle=False).astype(np.float32)
        x = x[None] if x.ndim == 3 else x
        if x.shape != (1, c, h, w):
            raise ArchcError(f"'{path}' holds a {'×'.join(map(str, x.shape))} array; the network takes 1×{c}×{h}×{w}",
                             code="bad-input")
        pic = x[0, :3] if c >= 3 else np.repeat(x[0, :1], 3, axis=0)
        pic = (pic - pic.min()) / max(float(pic.max() - pic.min()), 1e-12)
        return x, (pic.transpose(1, 2, 0) * 255).astype(np.uint8)
    try:
        with Image.open(file) as img:
            rgb = np.asarray(img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR))
    except (UnidentifiedImageError, OSError) as err:
        raise ArchcError(f"'{path}' is neither an image Pillow reads nor an .npy array ({err})",
                         code="bad-input") from None
    if c not in (1, 3):
        raise ArchcError(f"the network takes {c} channels: give its input as an .npy array of 1×{c}×{h}×{w}",
                         code="bad-input")
    x = (rgb.astype(np.float32) / 255).transpose(2, 0, 1)
    x = x.mean(axis=0, keepdims=True) if c == 1 else x
    for values, what in ((mean, "--mean"), (std, "--std")):
        if values is not None and len(values) not in (1, c):
            raise ArchcError(f"{what} gives {len(values)} values for {c} channels", code="bad-option")
    if mean is not None:
        x = x - np.asarray(mean, np.float32).reshape(-1, 1, 1)
    if std is not None:
        x = x / np.asarray(std, np.float32).reshape(-1, 1, 1)
    return x[None].astype(np.float32), rgb


def read_sample(path: str, shape: tuple[int, ...], mean: list[float] | None = None,
                std: list[float] | None = None) -> np.ndarray:
    """One item of a network's input (shape[1:], with a batch axis of 1) from an .npy tensor of any rank, or from a
    picture where the input is N×C×H×W (as `read_input` reads it)."""
    from pathlib import Path
    if len(shape) == 4:
        return read_input(path, (1, *shape[1:]), mean, std)[0]
    file = Path(path)
    item = "×".join(map(str, shape[1:]))
    if file.suffix.lower() != ".npy":
        raise ArchcError(f"the network takes a {item} tensor, not a picture: give '{path}' as an .npy array",
                         code="bad-input")
    if not file.is_file():
        raise ArchcError(f"input '{path}' does not exist", code="no-file")
    x = np.load(file, allow_pickle=False).astype(np.float32)
    x = x[None] if x.ndim == len(shape) - 1 else x
    if x.shape != (1, *shape[1:]):
        raise ArchcError(f"'{path}' holds a {'×'.join(map(str, x.shape))} array; the network takes 1×{item}",
                         code="bad-input")
    return x
