"""scikit-learn's handwritten digits (they ship inside the package): images and moving-digit clips.

`digits`: the 1797 8x8 digits (values 0..16) resized to 32x32 (bilinear), scaled to [0, 1] and
replicated to 3 channels; 10 classes. `truth` (H, W) is the ink mask (resized pixel > 0.25): a
weak ground truth, since where the ink is absent matters too (a 0 and an 8 differ in the middle).

`digits_video`: each digit scaled to 16x16 and moving in a random direction at 1-2 px per frame
across a 32x32 canvas (8 frames) over a dark textured background with per-pixel noise, drawn
in a random palette colour; the class is the digit. `truth` (T, H, W) is the ink in each frame.

Both split the source digits the same way: a stratified 80/20 train/test split drawn from the
seed, so a digit is never in both splits. `n_train` / `n_test` keep the first n digits of a split.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor

from data.base import ArrayDataset, cached, check_split, split_rng
from data.draw import PALETTE, paste, textured_background, to_uint8
from shapley.game import check_patch_grid

CLASSES = [str(d) for d in range(10)]
INK_THRESHOLD = 0.25


def source_digits(split: str, seed: int, limit: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The split's 8x8 digits in [0, 1] (n, 8, 8), labels (n,) and source indices (n,).

    `limit` keeps the first `limit` digits of the split (for quick runs).
    """
    check_split(split)
    digits = load_digits()
    labels = digits.target
    train, test = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels,
                                   random_state=seed)
    index = np.sort(train if split == "train" else test)[:limit]
    return (digits.images[index] / 16).astype(np.float32), labels[index], index


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of grey images: (n, h, w) -> (n, size, size) float32 in [0, 1]."""
    out = F.interpolate(torch.from_numpy(images)[:, None], size=(size, size), mode="bilinear",
                        align_corners=False)[:, 0]
    return out.clamp(0, 1).numpy()


def build_digits(split: str = "train", seed: int = 0, *, n_train: int | None = None,
                 n_test: int | None = None, image_size: int = 32,
                 patch_size: int = 8) -> ArrayDataset:
    """The digits as (3, image_size, image_size) images with ink masks (n_*: at most that many)."""
    check_patch_grid(image_size, image_size, patch_size)
    images, labels, _ = source_digits(split, seed, n_train if split == "train" else n_test)
    big = resize(images, image_size)                                       # (n, S, S)
    tensors = {"x": to_uint8(np.repeat(big[:, None], 3, axis=1)),
               "y": torch.from_numpy(labels.astype(np.int64)),
               "truth": torch.from_numpy(big > INK_THRESHOLD)}
    g = image_size // patch_size
    return ArrayDataset(tensors, name="digits", classes=CLASSES, kind="image", split=split,
                        seed=seed, patch_size=patch_size, grid=(g, g))


def generate_clips(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                   frames: int = 8, image_size: int = 32, digit_size: int = 16,
                   speed: tuple[float, float] = (1.0, 2.0)) -> dict[str, Tensor]:
    """One moving-digit clip per source digit (n, 8, 8), with per-frame ink masks."""
    room = image_size - digit_size
    if (frames - 1) * speed[1] > room:
        raise ValueError(f"a {digit_size} px digit moving {speed[1]} px per frame for {frames} "
                         f"frames leaves a {image_size} px frame; lower speed or digit_size")
    n = len(images)
    sprite = resize(images, digit_size)                                    # (n, d, d) ink alpha
    angle = rng.uniform(0, 2 * np.pi, n)
    step = np.stack([np.sin(angle), np.cos(angle)], 1) * rng.uniform(*speed, (n, 1))  # (n, 2)
    path = (frames - 1) * step
    start = rng.uniform(np.maximum(0, -path), room - np.maximum(0, path))  # path stays in 0..room
    ink = PALETTE[rng.integers(0, len(PALETTE), n)][:, :, None, None]      # (n, 3, 1, 1)

    background = textured_background(rng, n, image_size, image_size, level=(0.12, 0.3))
    x = np.empty((n, 3, frames, image_size, image_size), dtype=np.float32)
    truth = np.empty((n, frames, image_size, image_size), dtype=bool)
    for t in range(frames):
        corner = np.clip(np.round(start + t * step), 0, room).astype(np.int64)
        alpha = paste(sprite, corner[:, 0], corner[:, 1], image_size, image_size)[:, None]
        x[:, :, t] = background * (1 - alpha) + ink * alpha                # (n, 3, H, W)
        truth[:, t] = alpha[:, 0] > INK_THRESHOLD
    x += 0.04 * rng.standard_normal(x.shape, dtype=np.float32)            # per-pixel noise
    return {"x": to_uint8(x), "y": torch.from_numpy(labels.astype(np.int64)),
            "truth": torch.from_numpy(truth)}


def build_digits_video(split: str = "train", seed: int = 0, *, n_train: int | None = None,
                       n_test: int | None = None, frames: int = 8, image_size: int = 32,
                       digit_size: int = 16, speed: tuple[float, float] = (1.0, 2.0)
                       ) -> ArrayDataset:
    """Moving-digit clips (3, T, H, W) of the split's digits (generated once, then cached)."""
    limit = n_train if split == "train" else n_test
    images, labels, _ = source_digits(split, seed, limit)
    options = {"limit": limit, "frames": frames, "image_size": image_size, "digit_size": digit_size,
               "speed": list(speed)}
    tensors = cached("digits_video", split, seed, options, lambda: generate_clips(
        images, labels, split_rng("digits_video", split, seed), frames, image_size, digit_size,
        tuple(speed)))
    return ArrayDataset(tensors, name="digits_video", classes=CLASSES, kind="video", split=split,
                        seed=seed)
