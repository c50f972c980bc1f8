"""The dataset container, the cache for generated data, seeds, and player-level ground truth.

Every dataset yields dicts of tensors: `x` float32 in [0, 1] (images (3, H, W), clips
(3, T, H, W)), `y` an int64 scalar, plus whatever ground truth the dataset has. Generated data is
cached under `<cache>/data/` (`LEARNEDSHAP_CACHE`, default `<repo>/.cache`) in files named by
dataset, split, seed and a hash of the options and GENERATOR_VERSION: bump the version whenever a
generator changes its output, so that stale files are never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from shapley.game import check_patch_grid
from tools.code_key import outside_key
from tools.files import save_torch

GENERATOR_VERSION = 1
ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "test")


class ArrayDataset(Dataset):
    """Rows of a dict of equal-length tensors, plus the metadata explainers and models read.

    `x` may be stored as uint8 (as cached); rows always serve it as float32 in [0, 1].
    """

    def __init__(self, tensors: dict[str, Tensor], *, name: str, classes: list[str], kind: str,
                 split: str = "train", seed: int = 0, patch_size: int | None = None,
                 grid: tuple[int, ...] | None = None):
        if "x" not in tensors or "y" not in tensors:
            raise ValueError(f"a dataset needs 'x' and 'y' tensors, got {sorted(tensors)}")
        lengths = {k: len(v) for k, v in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"tensors of one dataset need equal lengths, got {lengths}")
        if kind not in ("image", "video"):
            raise ValueError(f"kind must be 'image' or 'video', got {kind!r}")
        self.tensors = tensors
        self.name, self.split, self.seed = name, split, seed
        self.classes, self.kind = list(classes), kind
        self.patch_size, self.grid = patch_size, grid      # players: grid (gh, gw) of patches

    def __len__(self) -> int:
        return len(self.tensors["y"])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        row = {k: v[index] for k, v in self.tensors.items()}
        if row["x"].dtype == torch.uint8:
            row["x"] = row["x"].float() / 255
        return row

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape[1:])}" for k, v in self.tensors.items())
        return (f"{type(self).__name__}({self.name!r}, split={self.split!r}, n={len(self)}, "
                f"classes={self.classes}, {shapes})")


def check_split(split: str, valid: tuple[str, ...] = SPLITS) -> None:
    """Raise a ValueError naming the valid splits when `split` is not one of them."""
    if split not in valid:
        raise ValueError(f"unknown split {split!r}; choose one of {list(valid)}")


def split_rng(name: str, split: str, seed: int) -> np.random.Generator:
    """The generator for one split: train and test draw from unrelated streams of one seed."""
    check_split(split, ("train", "test", "val"))
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(seed), zlib.crc32(split.encode()), zlib.crc32(name.encode())])


# --- cache --------------------------------------------------------------------------------------

@outside_key
def cache_root() -> Path:
    """Where cached data and models live: LEARNEDSHAP_CACHE, or `<repo>/.cache`."""
    return Path(os.environ.get("LEARNEDSHAP_CACHE", ROOT / ".cache"))


@outside_key
def cache_path(name: str, split: str, seed: int, options: dict) -> Path:
    """The cache file of one generated split: `<cache>/data/<name>-<split>-seed<seed>-<hash>.pt`."""
    key = json.dumps({"options": options, "version": GENERATOR_VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return cache_root() / "data" / f"{name}-{split}-seed{seed}-{digest}.pt"


def load_tensors(path: Path) -> dict[str, Tensor]:
    """A cached dict of equal-length tensors; raises ValueError when the file holds anything else."""
    tensors = torch.load(path, map_location="cpu", weights_only=True)
    if not (isinstance(tensors, dict) and tensors
            and all(isinstance(v, Tensor) for v in tensors.values())
            and len({len(v) for v in tensors.values()}) == 1):
        raise ValueError("not a dict of equal-length tensors")
    return tensors


def cached(name: str, split: str, seed: int, options: dict,
           generate: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """Load a generated split from the cache, or generate and cache it.

    A cache file that cannot be read is regenerated with a warning, never an error.
    """
    path = cache_path(name, split, seed, options)
    if path.exists():
        try:
            return load_tensors(path)
        except Exception as err:  # any unreadable file: truncated, foreign, from another version
            warnings.warn(f"cache file {path} is unreadable ({type(err).__name__}: {err}); "
                          "regenerating it", RuntimeWarning, stacklevel=2)
    tensors = generate()
    save_torch(path, tensors)
    return tensors


# --- player-level ground truth ----------------------------------------------------------------

def patch_truth(truth: Tensor, patch_size: int) -> Tensor:
    """Patches holding any true pixel, numbered row by row: (..., H, W) bool -> (..., N) bool."""
    *lead, h, w = truth.shape
    check_patch_grid(h, w, patch_size, what="mask")
    gh, gw = h // patch_size, w // patch_size
    cells = truth.reshape(*lead, gh, patch_size, gw, patch_size)
    return cells.any(-1).any(-2).reshape(*lead, gh * gw)


def cell_truth(truth: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """Tubelets the object occupies, numbered time-major: (..., T, H, W) -> (..., gt*gh*gw) bool.

    A cell (t, h, w) is numbered (t * gh + h) * gw + w, the order of a time-major tubelet grid.
    """
    *lead, t, h, w = truth.shape
    gt, gh, gw = grid
    if t % gt or h % gh or w % gw:
        raise ValueError(f"a {t}x{h}x{w} mask cannot be cut into a {gt}x{gh}x{gw} tubelet grid; "
                         "each grid size must divide the clip's size")
    cells = truth.reshape(*lead, gt, t // gt, gh, h // gh, gw, w // gw)
    return cells.any(-1).any(-2).any(-3).reshape(*lead, gt * gh * gw)
