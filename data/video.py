"""Synthetic motion clips: the class is the direction in which one object moves.

A clip (3, T, H, W) (default 8 frames of 32x32) shows one small shape (random shape and colour
from the patch-game palette) moving `right`, `left`, `down` or `up` at 2-3 px per frame, placed so
that it stays fully in frame. Everything else is a distractor that never matters: 1-3 static
shapes of the same palette, a global lighting flicker (a brightness factor per frame), a muted
textured background and per-pixel noise drawn afresh in every frame. The moving object is drawn
last, so it is never hidden. Classes are balanced.

With `local_flicker=(lo, hi)`, each clip also shows lo..hi local distractors that change without
moving: a square of the object's size in a fixed place whose brightness is drawn afresh in every
frame (a flickering lamp or screen, the "extraneous movement, i.e. lighting changes" that pairwise
video explanations were reported to highlight). Their pixels come as the item `flicker` (T, H, W)
bool, so pair terms can be scored against object-distractor pairs. Without the option no extra
random number is drawn, so the default clips stay what they were.

Items: `x` (3, T, H, W) float32, `y` int64, `truth` (T, H, W) bool, the moving object's pixels
in each frame (`data.base.cell_truth` turns it into tubelet ground truth at any grid), and with
local flicker `flicker` (T, H, W) bool.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from data.base import ArrayDataset, cached, check_split, split_rng
from data.draw import PALETTE, SHAPES, paste, shape_masks, textured_background, to_uint8

CLASSES = ["right", "left", "down", "up"]
DIRECTIONS = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)])     # (row, column) step of each class


def generate(n: int, rng: np.random.Generator, frames: int = 8, image_size: int = 32,
             object_size: int = 6, speed: tuple[int, int] = (2, 3),
             n_distractors: tuple[int, int] = (1, 3),
             local_flicker: tuple[int, int] | None = None) -> dict[str, Tensor]:
    """`n` motion clips with labels and per-frame masks of the moving object (x stored as uint8);
    with `local_flicker` also the masks of the flickering squares."""
    room = image_size - object_size                      # the top-left corner ranges over 0..room
    travel = (frames - 1) * speed[1]
    if travel > room:
        raise ValueError(f"an object of {object_size} px moving {speed[1]} px per frame for "
                         f"{frames} frames leaves a {image_size} px frame; lower speed or frames, "
                         "or raise image_size")
    lo, hi = n_distractors
    stamps = shape_masks(object_size)                                      # (4, s, s)
    y = rng.permutation(np.arange(n) % len(CLASSES))                       # balanced classes
    step = DIRECTIONS[y] * rng.integers(speed[0], speed[1] + 1, (n, 1))   # (n, 2) px per frame
    # start so that the whole path (start + t * step, t < T) stays inside 0..room on both axes
    path = (frames - 1) * step
    start = rng.integers(np.maximum(0, -path), room - np.maximum(0, path) + 1)   # (n, 2)
    mover = stamps[rng.integers(0, len(SHAPES), n)]                        # (n, s, s)
    mover_rgb = PALETTE[rng.integers(0, len(PALETTE), n)]                  # (n, 3)

    x = textured_background(rng, n, image_size, image_size)[:, :, None]   # (n, 3, 1, H, W) static
    x = np.repeat(x, frames, axis=2)                                       # (n, 3, T, H, W)
    count = rng.integers(lo, hi + 1, n)                                    # static distractors
    for k in range(hi):
        present = k < count
        corner = rng.integers(0, room + 1, (n, 2))
        mask = paste(stamps[rng.integers(0, len(SHAPES), n)] & present[:, None, None],
                     corner[:, 0], corner[:, 1], image_size, image_size)  # (n, H, W)
        i, r, c = np.nonzero(mask)
        x[i, :, :, r, c] = PALETTE[rng.integers(0, len(PALETTE), n)][i, :, None]
    flicker = None
    if local_flicker is not None:
        flicker = np.zeros((n, frames, image_size, image_size), dtype=bool)   # (n, T, H, W)
        f_lo, f_hi = local_flicker
        f_count = rng.integers(f_lo, f_hi + 1, n)
        square = np.ones((n, object_size, object_size), dtype=bool)
        for k in range(f_hi):
            present = k < f_count
            corner = rng.integers(0, room + 1, (n, 2))
            mask = paste(square & present[:, None, None], corner[:, 0], corner[:, 1],
                         image_size, image_size)                          # (n, H, W)
            rgb = PALETTE[rng.integers(0, len(PALETTE), n)]                # (n, 3)
            level = rng.uniform(0.1, 1.0, (n, frames)).astype(np.float32)  # brightness per frame
            i, r, c = np.nonzero(mask)
            x[i, :, :, r, c] = rgb[i, :, None] * level[i, None, :]
            flicker |= mask[:, None]
    truth = np.zeros((n, frames, image_size, image_size), dtype=bool)      # (n, T, H, W)
    for t in range(frames):
        corner = start + t * step
        truth[:, t] = paste(mover, corner[:, 0], corner[:, 1], image_size, image_size)
        i, r, c = np.nonzero(truth[:, t])
        x[i, :, t, r, c] = mover_rgb[i]
    x *= rng.uniform(0.85, 1.15, (n, 1, frames, 1, 1)).astype(np.float32)   # lighting flicker
    x += 0.03 * rng.standard_normal(x.shape, dtype=np.float32)            # per-pixel noise
    out = {"x": to_uint8(x), "y": torch.from_numpy(y.astype(np.int64)),
           "truth": torch.from_numpy(truth)}
    if flicker is not None:
        out["flicker"] = torch.from_numpy(flicker & ~truth)   # the mover is drawn on top
    return out


def build(split: str = "train", seed: int = 0, *, n_train: int = 2000, n_test: int = 500,
          frames: int = 8, image_size: int = 32, object_size: int = 6,
          speed: tuple[int, int] = (2, 3), n_distractors: tuple[int, int] = (1, 3),
          local_flicker: tuple[int, int] | None = None) -> ArrayDataset:
    """The motion-clip split for `seed` (generated once, then loaded from the cache)."""
    check_split(split)
    n = n_train if split == "train" else n_test
    options = {"n": n, "frames": frames, "image_size": image_size, "object_size": object_size,
               "speed": list(speed), "n_distractors": list(n_distractors)}
    if local_flicker is not None:        # only then, so the default clips keep their cache key
        options["local_flicker"] = list(local_flicker)
    tensors = cached("video", split, seed, options, lambda: generate(
        n, split_rng("video", split, seed), frames, image_size, object_size, tuple(speed),
        tuple(n_distractors), None if local_flicker is None else tuple(local_flicker)))
    return ArrayDataset(tensors, name="video", classes=CLASSES, kind="video", split=split,
                        seed=seed)
