"""Every dataset behind one factory: generated images and clips, sklearn digits, folders on disk.

    get_dataset("patch_game", "train", seed=0)             # the main benchmark, 16 patches
    get_loader("video", "test", batch_size=32, seed=0)     # batches of dicts: x (B, 3, T, H, W), y, truth

Every item is a dict of tensors: `x` float32 in [0, 1] (images (3, H, W), clips (3, T, H, W)),
`y` int64, plus the dataset's ground truth. Each generated dataset is fully determined by its
seed; train and test come from different derived seeds, so they never share samples. Generated
splits are cached (see `data.base`). Datasets carry `name`, `classes`, `kind` ("image"/"video"),
and for images `patch_size` and the players' `grid` (gh, gw).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset

from data import digits, folders, patch_game, video
from data.base import ArrayDataset, cell_truth, patch_truth

__all__ = ["DATASETS", "ArrayDataset", "cell_truth", "dataset_options", "get_dataset", "get_loader",
           "patch_truth"]

# name -> builder(split, seed, **options); the options a builder accepts are its keyword arguments
DATASETS: dict[str, Callable[..., Dataset]] = {
    "patch_game": patch_game.build,                                     # 32x32, 4x4 patches of 8 px
    "patch_game64": functools.partial(patch_game.build, image_size=64),  # 64x64, 8x8 patches of 8 px
    "patch_parity": patch_game.build_parity,          # parity of three objects (image_size= too)
    "video": video.build,
    "digits": digits.build_digits,
    "digits_video": digits.build_digits_video,
    "image_folder": folders.build_image_folder,                         # needs root=
    "video_folder": folders.build_video_folder,                         # needs root=
}


def dataset_options(name: str) -> dict[str, object]:
    """The options dataset `name` accepts, with their defaults."""
    params = inspect.signature(DATASETS[name]).parameters
    return {k: p.default for k, p in params.items() if k not in ("split", "seed")}


def get_dataset(name: str, split: str = "train", seed: int = 0, **options) -> Dataset:
    """Dataset `name`'s `split`, determined by `seed`; `options` are the builder's keywords."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    unknown = sorted(set(options) - set(dataset_options(name)))
    if unknown:
        raise ValueError(f"dataset {name!r} takes no option(s) {unknown}; valid options are "
                         f"{sorted(dataset_options(name))}")
    dataset = DATASETS[name](split, seed, **options)
    dataset.name = name
    return dataset


def get_loader(name: str, split: str = "train", batch_size: int = 64, seed: int = 0,
               shuffle: bool | None = None, **options) -> DataLoader:
    """Batches of dataset `name`; shuffled (from `seed`) by default for the train split only."""
    dataset = get_dataset(name, split, seed, **options)
    shuffle = split == "train" if shuffle is None else shuffle
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      num_workers=0)
