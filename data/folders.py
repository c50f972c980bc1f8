"""Images and videos on disk, in the usual class-per-folder layouts.

`image_folder`: Imagenette/ImageNet layout `root/<split>/<class>/*.jpg|*.jpeg|*.png` with split
folders `train` and `val` ("test" reads `val` when there is no `test` folder). Each image is resized
so that its short side is `image_size` and centre-cropped to a square, as for ImageNet models.

`video_folder`: UCF101-like layout `root/<class>/*.avi|*.mp4`, or `root/<split>/<class>/...`.
Without split folders each class's files are ordered by a seeded hash of their names and the
first 80% train, the rest test: deterministic, stratified, and stable across machines. (UCF101's
own split lists keep one actor's clips together; put the clips in split folders to use them.)
Clips are decoded with OpenCV, `frames` frames sampled uniformly over the whole clip, each resized
(short side, then centre crop) to `image_size`.

Classes are the sorted folder names, as in torchvision's ImageFolder. Items: `x` (3, H, W) or
(3, T, H, W) float32 in [0, 1] RGB, `y` int64. Files are read lazily, one item at a time.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from data.base import check_split
from shapley.game import check_patch_grid

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".avi", ".mp4")
SPLIT_FOLDERS = ("train", "val", "test")


def split_folder(root: str | Path, split: str, layout: str) -> Path:
    """The folder of one split: `root/<split>`, with "test" falling back to `root/val`."""
    check_split(split, SPLIT_FOLDERS)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist; download the data there or "
                                f"pass root=<folder> laid out as {layout}")
    for name in (split, "val") if split == "test" else (split,):
        if (root / name).is_dir():
            return root / name
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    raise FileNotFoundError(f"{root} has no {split!r} folder (found {found}); expected {layout}")


def scan_classes(folder: Path, extensions: tuple[str, ...]) -> tuple[list[str], list[list[Path]]]:
    """Sorted class folder names and each class's sorted files with one of `extensions`."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"{folder} holds no class folders; expected "
                                f"{folder}/<class>/<file> with files ending in {extensions}")
    files = [sorted(p for p in (folder / c).iterdir() if p.is_file()
                    and p.suffix.lower() in extensions) for c in classes]
    if not any(files):
        raise FileNotFoundError(f"no readable files under {folder}: no class folder holds a file "
                                f"ending in {extensions}; put them in {folder}/<class>/")
    empty = [c for c, f in zip(classes, files, strict=True) if not f]
    if empty:
        raise ValueError(f"class folder(s) {empty} in {folder} hold no file ending in "
                         f"{extensions}; add files or remove the folder(s)")
    return classes, files


def check_positive(name: str, value) -> None:
    """Raise unless `value` is an integer >= 1 (frames, image_size): the loaders' sizes."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def resize_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W, 3) frame so its short side is `size`, then centre-crop to (size, size, 3)."""
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (nh - size) // 2, (nw - size) // 2
    return image[top:top + size, left:left + size]


def read_video(path: Path, frames: int, size: int) -> Tensor:
    """Decode a video with OpenCV: `frames` frames spread uniformly -> (3, T, size, size) in [0, 1]."""
    capture = cv2.VideoCapture(str(path))
    decoded = []
    try:
        while True:
            ok, frame = capture.read()                                     # BGR (H, W, 3) uint8
            if not ok:
                break
            decoded.append(resize_crop(frame, size))                       # resized now: less memory
    finally:
        capture.release()
    if not decoded:
        raise RuntimeError(f"cannot decode video {path}: OpenCV read no frames; check that the "
                           "file is a valid .avi/.mp4 or remove it")
    pick = np.linspace(0, len(decoded) - 1, frames).round().astype(int)   # repeats short clips
    clip = np.stack([decoded[i][..., ::-1] for i in pick])                 # (T, H, W, 3) RGB
    return torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).float() / 255


class ImageFolderDataset(Dataset):
    """Images from `root/<split>/<class>/`, resized and centre-cropped to `image_size`."""

    kind = "image"

    def __init__(self, root: str | Path, split: str = "train", *, image_size: int = 224,
                 patch_size: int = 16):
        check_positive("image_size", image_size)
        check_patch_grid(image_size, image_size, patch_size)
        folder = split_folder(root, split, "root/train/<class>/*.jpg and root/val/<class>/*.jpg")
        self.classes, files = scan_classes(folder, IMAGE_EXTENSIONS)
        self.samples = [(p, y) for y, paths in enumerate(files) for p in paths]
        self.name, self.split, self.root = "image_folder", split, Path(root)
        self.image_size, self.patch_size = image_size, patch_size
        self.grid = (image_size // patch_size, image_size // patch_size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        path, y = self.samples[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except (OSError, ValueError) as err:
            raise RuntimeError(f"cannot decode image {path}: {err}; replace or remove the file") from err
        image = TF.center_crop(TF.resize(image, self.image_size), self.image_size)
        x = TF.pil_to_tensor(image).float() / 255                          # (3, H, W)
        return {"x": x, "y": torch.tensor(y, dtype=torch.int64)}


class VideoFolderDataset(Dataset):
    """Clips from `root/<class>/` (or `root/<split>/<class>/`), `frames` frames of `image_size`."""

    kind = "video"
    patch_size = None
    grid = None

    def __init__(self, root: str | Path, split: str = "train", seed: int = 0, *,
                 frames: int = 16, image_size: int = 112):
        check_split(split, SPLIT_FOLDERS)
        check_positive("frames", frames)
        check_positive("image_size", image_size)
        root = Path(root)
        layout = "root/<class>/*.avi or root/train/<class>/*.avi"
        if root.is_dir() and not any((root / s).is_dir() for s in SPLIT_FOLDERS):
            self.classes, files = scan_classes(root, VIDEO_EXTENSIONS)
            files = [hash_split(paths, split, seed) for paths in files]
        else:
            self.classes, files = scan_classes(split_folder(root, split, layout), VIDEO_EXTENSIONS)
        self.samples = [(p, y) for y, paths in enumerate(files) for p in paths]
        self.name, self.split, self.seed, self.root = "video_folder", split, seed, root
        self.frames, self.image_size = frames, image_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        path, y = self.samples[index]
        return {"x": read_video(path, self.frames, self.image_size),
                "y": torch.tensor(y, dtype=torch.int64)}


def hash_split(paths: list[Path], split: str, seed: int, test_share: float = 0.2) -> list[Path]:
    """One class's files of `split`: ordered by a seeded hash of their names, the last 20% test."""
    order = sorted(paths, key=lambda p: hashlib.sha256(f"{seed}/{p.name}".encode()).hexdigest())
    n_test = max(1, round(len(order) * test_share)) if len(order) > 1 else 0
    return sorted(order[len(order) - n_test:] if split != "train" else order[:len(order) - n_test])


def build_image_folder(split: str = "train", seed: int = 0, *, root: str | Path | None = None,
                       image_size: int = 224, patch_size: int = 16) -> ImageFolderDataset:
    """Images on disk (seed is unused: the split folders fix the split)."""
    if root is None:
        raise ValueError("image_folder needs root=<folder> laid out as root/train/<class>/*.jpg")
    return ImageFolderDataset(root, split, image_size=image_size, patch_size=patch_size)


def build_video_folder(split: str = "train", seed: int = 0, *, root: str | Path | None = None,
                       frames: int = 16, image_size: int = 112) -> VideoFolderDataset:
    """Videos on disk; without split folders, the seed fixes the 80/20 split."""
    if root is None:
        raise ValueError("video_folder needs root=<folder> laid out as root/<class>/*.avi")
    return VideoFolderDataset(root, split, seed, frames=frames, image_size=image_size)
