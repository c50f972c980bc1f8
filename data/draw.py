"""Drawing for the generated datasets: shape stamps, a colour palette, textured backgrounds."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SHAPES = ("circle", "square", "triangle", "cross")

# Saturated object colours; backgrounds stay muted (near grey) so every one of these stands out.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.10, 0.10),
    "blue": (0.10, 0.25, 0.95),
    "green": (0.10, 0.80, 0.15),
    "yellow": (0.95, 0.90, 0.10),
    "magenta": (0.90, 0.12, 0.90),
    "cyan": (0.10, 0.85, 0.92),
    "white": (0.97, 0.97, 0.97),
    "orange": (1.00, 0.55, 0.05),
}
COLOUR_NAMES = tuple(COLOURS)
PALETTE = np.array([COLOURS[c] for c in COLOUR_NAMES], dtype=np.float32)   # (8, 3)


def shape_masks(size: int) -> np.ndarray:
    """Boolean stamps of every shape in SHAPES order: (4, size, size)."""
    if size < 3:
        raise ValueError(f"object size {size} is too small to tell shapes apart; use 3 px or more")
    c = (np.arange(size) + 0.5) / size * 2 - 1                 # pixel centres in [-1, 1]
    v, u = np.meshgrid(c, c, indexing="ij")                    # v: down the rows, u: across
    circle = u**2 + v**2 <= 0.8                                # below 1 so the corners stay empty
    square = np.ones((size, size), dtype=bool)
    triangle = np.abs(u) <= (v + 1) / 2 + 0.1                  # apex up, base on the bottom row
    cross = (np.abs(u) <= 0.34) | (np.abs(v) <= 0.34)
    return np.stack([circle, square, triangle, cross])


def paste(sprites: np.ndarray, top: np.ndarray, left: np.ndarray, height: int,
          width: int) -> np.ndarray:
    """Place one sprite per row on an empty canvas: sprites (n, h, w) -> (n, H, W).

    Loops over the sprite's few pixels rather than the canvas, so it is cheap for any n. Every
    sprite must lie fully inside the canvas.
    """
    n, h, w = sprites.shape
    if n and (top.min() < 0 or left.min() < 0 or top.max() + h > height or left.max() + w > width):
        raise ValueError(f"a {h}x{w} sprite falls outside the {height}x{width} canvas; "
                         "keep top <= height - h and left <= width - w")
    canvas = np.zeros((n, height, width), dtype=sprites.dtype)
    rows = np.arange(n)
    for dy in range(h):
        for dx in range(w):
            canvas[rows, top + dy, left + dx] = sprites[:, dy, dx]
    return canvas


def textured_background(rng: np.random.Generator, n: int, height: int, width: int,
                        level: tuple[float, float] = (0.3, 0.55)) -> np.ndarray:
    """Muted, smooth random fields, two octaves of upsampled noise: (n, 3, H, W) float32."""
    grey = rng.uniform(*level, (n, 1, 1, 1))                          # overall level
    tint = rng.normal(0, 0.04, (n, 3, 1, 1))                          # a slight colour cast
    field = torch.zeros(n, 3, 1, 1)
    for cell, amplitude in ((8, 0.10), (4, 0.05)):                    # blobs of ~8 px, then ~4 px
        size = (height // cell + 1, width // cell + 1)
        noise = torch.from_numpy(rng.normal(0, amplitude, (n, 3, *size)).astype(np.float32))
        # mixing the channels towards their mean keeps the texture low in saturation
        noise = 0.7 * noise.mean(1, keepdim=True) + 0.3 * noise
        field = noise + F.interpolate(field, size=size, mode="bilinear", align_corners=False)
    image = F.interpolate(field, size=(height, width), mode="bilinear", align_corners=False)
    image += torch.from_numpy((grey + tint).astype(np.float32))
    return image.numpy()


def to_uint8(x: np.ndarray) -> torch.Tensor:
    """Images in [0, 1] (values outside are clipped) as 8-bit tensors, 4x smaller to cache."""
    return torch.from_numpy(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8))
