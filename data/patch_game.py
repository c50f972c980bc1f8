"""Patch-game images: small coloured shapes on a grid of patches, labelled by rules over objects.

An image of `image_size` px is a grid of `patch_size` px patches (defaults 32 and 8: 4x4 = 16
patches; `patch_game64` is 64 and 8: 64 patches). Objects are small shapes (circle, square,
triangle, cross; `patch_size - 2` px) each drawn entirely inside one patch, at a random offset,
at most one object per patch, over a muted textured background with per-image brightness
jitter and per-pixel noise. The class rules:

    0 red_circle   a red circle is present                              (one object decides)
    1 blue_square  a blue square is present                             (one object decides)
    2 pair         a green triangle AND a yellow cross are present      (two objects: an AND)
    3 half_pair    exactly one of the green triangle / yellow cross     (half a pair is not class 2)

Each image holds exactly its class's key object(s) and distractors: any other (shape, colour)
combination, e.g. a magenta triangle, a white cross, a blue circle, a red square. No rule reads
them, so they never change the label. An image holds 3-4 objects in all (`n_objects`), drawn
independently of the class, so 1-3 distractors: counting objects says nothing about the class, and
a model has no reason to look at distractors. Classes are balanced.

`patch_parity` is the same generator with another rule: three key objects (a red circle, a blue
square and a green triangle) are each present or absent, and the class is the parity of how many
are present (PARITY_CLASSES: an even number, 0 or 2, or an odd one, 1 or 3), each of the 8
presence patterns equally likely, with 3-5 objects in all (distractors fill up the rest). The
label depends on all three at once: the class logit of a model that sums terms of one or two
patches cannot follow it, which makes it the smallest task a pairwise additive model cannot
solve. There `relevant` marks the key objects present, and `pairs` every pair of them (the parity
of three has interactions of every order: x1 + x2 + x3 - 2 (x1x2 + x1x3 + x2x3) + 4 x1x2x3).

Items: `x` (3, H, W) float32, `y` int64, and the ground truth
    relevant   (N,) bool     patches holding the key object(s)
    pairs      (N, N) bool   symmetric, zero diagonal: the triangle/cross patch pair of class 2
    truth      (H, W) bool   pixels of the key object(s)
    distractor (N,) bool     patches holding distractors (a faithful explanation ignores them)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from data.base import ArrayDataset, cached, check_split, split_rng
from data.draw import (
    COLOUR_NAMES,
    PALETTE,
    SHAPES,
    paste,
    shape_masks,
    textured_background,
    to_uint8,
)
from shapley.game import check_patch_grid

CLASSES = ["red_circle", "blue_square", "pair", "half_pair"]
PARITY_CLASSES = ["even", "odd"]
PARITY_KEYS = ("red_circle", "blue_square", "triangle")
# (shape, colour) of each key object: the only combinations any rule reads
KEYS = {"red_circle": ("circle", "red"), "blue_square": ("square", "blue"),
        "triangle": ("triangle", "green"), "cross": ("cross", "yellow")}
DISTRACTORS = [(s, c) for s in SHAPES for c in COLOUR_NAMES if (s, c) not in KEYS.values()]
KEY_IDS = {k: (SHAPES.index(s), COLOUR_NAMES.index(c)) for k, (s, c) in KEYS.items()}
DISTRACTOR_IDS = np.array([(SHAPES.index(s), COLOUR_NAMES.index(c)) for s, c in DISTRACTORS])


def check_sizes(image_size: int, patch_size: int) -> None:
    """Raise a ValueError unless patches tile the image and hold shapes that can be told apart."""
    check_patch_grid(image_size, image_size, patch_size)
    if patch_size < 5:
        raise ValueError(f"patch size {patch_size} leaves objects of {patch_size - 2} px, too small "
                         "to tell shapes apart; use patch_size >= 5")


def check_objects(n_objects: tuple[int, int], n_patches: int, keys: int) -> None:
    """Raise a ValueError unless `n_objects` fits the grid with every key object and a distractor."""
    lo, hi = n_objects
    if not keys <= lo <= hi or n_patches < hi + 1:
        raise ValueError(f"cannot place {lo}-{hi} objects on {n_patches} patches; n_objects needs "
                         f"{keys} <= min <= max < {n_patches} (key objects and at least one "
                         "distractor)")


def generate(n: int, rng: np.random.Generator, image_size: int = 32, patch_size: int = 8,
             n_objects: tuple[int, int] = (3, 4)) -> dict[str, Tensor]:
    """`n` patch-game images with their labels and ground truth (x stored as uint8)."""
    check_sizes(image_size, patch_size)
    lo, hi = n_objects
    g = image_size // patch_size
    check_objects(n_objects, g * g, 3)
    slots = hi + 1                                        # object slots per image, some empty
    y = rng.permutation(np.arange(n) % len(CLASSES))      # balanced classes

    # slot 0: the key object of every class (class 3 keeps one half of the pair at random);
    # slot 1: the cross of a pair; slots 2..: distractors, as many as the total object count leaves
    lone = np.where(rng.random(n) < 0.5, "triangle", "cross")
    first = np.select([y == 0, y == 1, y == 2], ["red_circle", "blue_square", "triangle"], lone)
    ids = np.zeros((n, slots, 2), dtype=np.int64)                       # (n, K, [shape, colour])
    ids[:, 0] = [KEY_IDS[k] for k in first]
    ids[:, 1] = KEY_IDS["cross"]
    ids[:, 2:] = DISTRACTOR_IDS[rng.integers(0, len(DISTRACTORS), (n, slots - 2))]
    key = np.zeros((n, slots), dtype=bool)
    key[:, 0], key[:, 1] = True, y == 2
    present = key.copy()
    n_distractors = rng.integers(lo, hi + 1, (n, 1)) - key.sum(1, keepdims=True)   # (n, 1)
    present[:, 2:] = np.arange(slots - 2) < n_distractors
    out, patch = render(rng, ids, key, present, image_size, patch_size)
    pairs = np.zeros((n, g * g, g * g), dtype=bool)
    i = np.flatnonzero(y == 2)
    pairs[i, patch[i, 0], patch[i, 1]] = pairs[i, patch[i, 1], patch[i, 0]] = True
    return {**out, "y": torch.from_numpy(y.astype(np.int64)), "pairs": torch.from_numpy(pairs)}


def render(rng: np.random.Generator, ids: np.ndarray, key: np.ndarray, present: np.ndarray,
           image_size: int, patch_size: int) -> tuple[dict[str, Tensor], np.ndarray]:
    """Draw the chosen objects, one per patch, and their ground truth.

    `ids` (n, K, [shape, colour]) names each image's K object slots, `key` (n, K) the slots a rule
    reads and `present` (n, K) the slots drawn. Each slot gets a distinct random patch (returned,
    (n, K)) and a random offset inside it. Returns x (uint8), truth, relevant and distractor."""
    n, slots = present.shape
    g = image_size // patch_size
    n_patches = g * g
    size = patch_size - 2
    shape, colour = ids[..., 0], ids[..., 1]
    patch = np.argsort(rng.random((n, n_patches)), axis=1)[:, :slots]   # (n, K) distinct patches
    offset = rng.integers(0, patch_size - size + 1, (n, slots, 2))      # (n, K, 2) inside the patch
    top = patch // g * patch_size + offset[..., 0]
    left = patch % g * patch_size + offset[..., 1]

    x = textured_background(rng, n, image_size, image_size)             # (n, 3, H, W)
    truth = np.zeros((n, image_size, image_size), dtype=bool)           # (n, H, W)
    stamps = shape_masks(size)                                          # (4, s, s)
    for k in range(slots):
        mask = paste(stamps[shape[:, k]] & present[:, k, None, None], top[:, k], left[:, k],
                     image_size, image_size)                            # (n, H, W)
        rgb = PALETTE[colour[:, k]] + rng.normal(0, 0.03, (n, 3))      # (n, 3) small colour jitter
        i, r, c = np.nonzero(mask)
        x[i, :, r, c] = rgb[i]
        truth |= mask & key[:, k, None, None]
    x *= rng.uniform(0.85, 1.15, (n, 1, 1, 1)).astype(np.float32)       # brightness jitter
    x += 0.03 * rng.standard_normal(x.shape, dtype=np.float32)          # per-pixel noise

    rows = np.arange(n)[:, None]
    relevant = np.zeros((n, n_patches), dtype=bool)
    relevant[rows, patch] = key & present                               # patches are distinct per row
    distractor = np.zeros((n, n_patches), dtype=bool)
    distractor[rows, patch] = present & ~key
    return {"x": to_uint8(x), "relevant": torch.from_numpy(relevant),
            "truth": torch.from_numpy(truth), "distractor": torch.from_numpy(distractor)}, patch


def generate_parity(n: int, rng: np.random.Generator, image_size: int = 32, patch_size: int = 8,
                    n_objects: tuple[int, int] = (3, 5)) -> dict[str, Tensor]:
    """`n` parity images (classes PARITY_CLASSES, balanced) with their ground truth."""
    check_sizes(image_size, patch_size)
    lo, hi = n_objects
    g = image_size // patch_size
    check_objects(n_objects, g * g, len(PARITY_KEYS))
    slots = len(PARITY_KEYS) + hi                  # the three keys, then as many distractors
    y = rng.permutation(np.arange(n) % 2)          # balanced: 0 even, 1 odd
    # the 4 presence patterns of each parity, equally likely
    patterns = np.array([[int(b) for b in f"{m:03b}"] for m in range(8)], dtype=bool)   # (8, 3)
    by_parity = [patterns[patterns.sum(1) % 2 == p] for p in (0, 1)]                    # 2 x (4, 3)
    pick = rng.integers(0, 4, n)
    keys = np.where((y == 1)[:, None], by_parity[1][pick], by_parity[0][pick])          # (n, 3)
    ids = np.zeros((n, slots, 2), dtype=np.int64)
    ids[:, :3] = [KEY_IDS[k] for k in PARITY_KEYS]
    ids[:, 3:] = DISTRACTOR_IDS[rng.integers(0, len(DISTRACTORS), (n, slots - 3))]
    key = np.zeros((n, slots), dtype=bool)
    key[:, :3] = True
    present = np.zeros((n, slots), dtype=bool)
    present[:, :3] = keys
    n_distractors = rng.integers(lo, hi + 1, (n, 1)) - keys.sum(1, keepdims=True)      # (n, 1)
    present[:, 3:] = np.arange(slots - 3) < n_distractors
    out, patch = render(rng, ids, key, present, image_size, patch_size)
    shown = np.where(keys, patch[:, :3], -1)                            # (n, 3) key patches or -1
    pairs = np.zeros((n, g * g, g * g), dtype=bool)
    for p, q in ((0, 1), (0, 2), (1, 2)):
        i = np.flatnonzero((shown[:, p] >= 0) & (shown[:, q] >= 0))
        pairs[i, shown[i, p], shown[i, q]] = pairs[i, shown[i, q], shown[i, p]] = True
    return {**out, "y": torch.from_numpy(y.astype(np.int64)), "pairs": torch.from_numpy(pairs)}


def build(split: str = "train", seed: int = 0, *, n_train: int = 5000, n_test: int = 1000,
          image_size: int = 32, patch_size: int = 8,
          n_objects: tuple[int, int] = (3, 4)) -> ArrayDataset:
    """The patch-game split for `seed` (generated once, then loaded from the cache)."""
    check_split(split)
    check_sizes(image_size, patch_size)
    n = n_train if split == "train" else n_test
    options = {"n": n, "image_size": image_size, "patch_size": patch_size,
               "n_objects": list(n_objects)}
    tensors = cached("patch_game", split, seed, options, lambda: generate(
        n, split_rng("patch_game", split, seed), image_size, patch_size, tuple(n_objects)))
    g = image_size // patch_size
    return ArrayDataset(tensors, name="patch_game", classes=CLASSES, kind="image", split=split,
                        seed=seed, patch_size=patch_size, grid=(g, g))


def build_parity(split: str = "train", seed: int = 0, *, n_train: int = 5000, n_test: int = 1000,
                 image_size: int = 32, patch_size: int = 8,
                 n_objects: tuple[int, int] = (3, 5)) -> ArrayDataset:
    """The parity split for `seed` (generated once, then loaded from the cache)."""
    check_split(split)
    check_sizes(image_size, patch_size)
    n = n_train if split == "train" else n_test
    options = {"n": n, "image_size": image_size, "patch_size": patch_size,
               "n_objects": list(n_objects)}
    tensors = cached("patch_parity", split, seed, options, lambda: generate_parity(
        n, split_rng("patch_parity", split, seed), image_size, patch_size, tuple(n_objects)))
    g = image_size // patch_size
    return ArrayDataset(tensors, name="patch_parity", classes=PARITY_CLASSES, kind="image",
                        split=split, seed=seed, patch_size=patch_size, grid=(g, g))
