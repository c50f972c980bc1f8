"""Datasets: determinism, disjoint splits, ground truth that matches the pixels, cache, disk loaders."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch

import data
from data import base, digits, patch_game, video
from data.base import cell_truth, patch_truth
from tests.conftest import IMAGE_COLOURS

SMALL = {  # options that keep every generated dataset to a few dozen items
    "patch_game": {"n_train": 48, "n_test": 24},
    "patch_game64": {"n_train": 16, "n_test": 8},
    "patch_parity": {"n_train": 96, "n_test": 24},
    "video": {"n_train": 32, "n_test": 16},
    "digits": {"n_train": 200, "n_test": 100},
    "digits_video": {"n_train": 48, "n_test": 24},
}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test caches into its own folder, never into the repository's .cache."""
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tensors(name: str, split: str = "train", seed: int = 0) -> dict[str, torch.Tensor]:
    """The whole split as one batch (x as float32)."""
    ds = data.get_dataset(name, split, seed, **SMALL[name])
    return next(iter(data.get_loader(name, split, batch_size=len(ds), seed=seed, shuffle=False,
                                     **SMALL[name])))


# --- determinism and splits -----------------------------------------------------------------

@pytest.mark.parametrize("name", list(SMALL))
def test_same_seed_same_data_other_seed_other_data(name, cache):
    first = tensors(name, seed=3)
    for path in (cache / "data").glob("*.pt"):
        path.unlink()                                  # regenerate, not just reload
    again = tensors(name, seed=3)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = tensors(name, seed=4)
    assert not torch.equal(first["x"], other["x"])


@pytest.mark.parametrize("name", ["patch_game", "video", "digits_video"])
def test_train_and_test_share_no_sample(name):
    def rows(split):
        return {x.numpy().tobytes() for x in tensors(name, split)["x"]}

    assert not rows("train") & rows("test")


def test_digits_split_is_stratified_and_disjoint():
    _, train_y, train_idx = digits.source_digits("train", 0)
    _, test_y, test_idx = digits.source_digits("test", 0)
    assert not set(train_idx) & set(test_idx)
    assert len(train_idx) + len(test_idx) == 1797
    assert abs(len(test_idx) / 1797 - 0.2) < 0.01
    share = np.bincount(test_y, minlength=10) / np.bincount(np.r_[train_y, test_y], minlength=10)
    assert np.all(np.abs(share - 0.2) < 0.03)          # every digit split 80/20
    assert not np.array_equal(digits.source_digits("test", 1)[2], test_idx)
    assert np.array_equal(digits.source_digits("test", 0, limit=20)[2], test_idx[:20])
    assert len(data.get_dataset("digits", "train")) == len(train_idx)          # all by default


@pytest.mark.parametrize("name", ["patch_game", "video"])
def test_classes_are_balanced(name):
    y = tensors(name)["y"]
    assert torch.bincount(y).tolist() == [len(y) // 4] * 4


# --- loaders ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, x_shape, truth_shape", [
    ("patch_game", (3, 32, 32), (32, 32)),
    ("patch_game64", (3, 64, 64), (64, 64)),
    ("video", (3, 8, 32, 32), (8, 32, 32)),
    ("digits", (3, 32, 32), (32, 32)),
    ("digits_video", (3, 8, 32, 32), (8, 32, 32)),
])
def test_loader_batches(name, x_shape, truth_shape):
    loader = data.get_loader(name, "train", batch_size=8, **SMALL[name])
    ds, batch = loader.dataset, next(iter(loader))
    assert batch["x"].shape == (8, *x_shape) and batch["x"].dtype == torch.float32
    assert 0 <= batch["x"].min() and batch["x"].max() <= 1
    assert batch["y"].shape == (8,) and batch["y"].dtype == torch.int64
    assert batch["y"].max() < len(ds.classes)
    assert batch["truth"].shape == (8, *truth_shape) and batch["truth"].dtype == torch.bool
    assert ds.name == name and ds.kind == ("video" if len(x_shape) == 4 else "image")
    if ds.kind == "image":
        n = ds.grid[0] * ds.grid[1]
        assert ds.grid == (x_shape[1] // ds.patch_size, x_shape[2] // ds.patch_size)
        if "relevant" in batch:
            assert batch["relevant"].shape == (8, n) and batch["pairs"].shape == (8, n, n)


def test_loader_shuffles_train_from_seed_and_keeps_test_in_order():
    def order(split, seed):
        loader = data.get_loader("patch_game", split, batch_size=48, seed=seed, **SMALL["patch_game"])
        return next(iter(loader))["x"]

    assert torch.equal(order("train", 0), order("train", 0))
    in_order = data.get_dataset("patch_game", "train", **SMALL["patch_game"])
    assert not torch.equal(order("train", 0), torch.stack([in_order[i]["x"] for i in range(48)]))
    test = data.get_dataset("patch_game", "test", **SMALL["patch_game"])
    assert torch.equal(order("test", 0)[:24], torch.stack([test[i]["x"] for i in range(24)]))


# --- patch-game ground truth --------------------------------------------------------------------

def colour_masks(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Pixels of each key colour, allowing for the brightness jitter and noise: (B, H, W) each."""
    r, g, b = x.unbind(1)
    return {"red": (r > 0.55) & (g < 0.35) & (b < 0.35),
            "blue": (b > 0.55) & (r < 0.35) & (g < 0.5),
            "green": (g > 0.5) & (r < 0.35) & (b < 0.35),
            "yellow": (r > 0.55) & (g > 0.55) & (b < 0.35)}


@pytest.mark.parametrize("name", ["patch_game", "patch_game64"])
def test_patch_game_relevant_patches_hold_the_key_objects(name):
    batch = tensors(name)
    x, y, truth, relevant = batch["x"], batch["y"], batch["truth"], batch["relevant"]
    ds = data.get_dataset(name, **SMALL[name])
    # relevant patches are exactly those the key objects' pixels fall in
    assert torch.equal(patch_truth(truth, ds.patch_size), relevant)
    assert torch.equal(relevant.sum(1), torch.where(y == 2, 2, 1))
    assert not (relevant & batch["distractor"]).any()
    n_objects = relevant.sum(1) + batch["distractor"].sum(1)
    assert batch["distractor"].sum(1).min() >= 1 and set(n_objects.tolist()) == {3, 4}
    colours = colour_masks(x)
    key_colours = {0: ["red"], 1: ["blue"], 2: ["green", "yellow"], 3: ["green", "yellow"]}
    saturated = (x.amax(1) - x.amin(1)) > 0.45                  # object colours, not background
    p, (gh, gw) = ds.patch_size, ds.grid
    for i in range(len(y)):
        key = torch.stack([colours[c][i] for c in key_colours[int(y[i])]]).any(0)   # (H, W)
        # nearly every truth pixel has a key colour, and each relevant patch holds a whole object
        assert key[truth[i]].float().mean() > 0.97
        counts = (key & truth[i]).reshape(gh, p, gw, p).sum((1, 3)).flatten()      # (N,)
        assert (counts[relevant[i]] >= 15).all()
        # no object pixel lies outside `truth` inside a relevant patch (one object per patch)
        in_relevant = relevant[i].reshape(gh, gw).repeat_interleave(p, 0).repeat_interleave(p, 1)
        assert not (saturated[i] & in_relevant & ~truth[i]).any()
    # the rules: a pair shows a green and a yellow key object, a half pair exactly one of them
    green = (colours["green"] & truth).flatten(1).sum(1) >= 15
    yellow = (colours["yellow"] & truth).flatten(1).sum(1) >= 15
    assert torch.equal(green & yellow, y == 2)
    assert torch.equal(green ^ yellow, y == 3)


def test_patch_game_pairs_join_the_two_relevant_patches():
    batch = tensors("patch_game")
    y, pairs, relevant = batch["y"], batch["pairs"], batch["relevant"]
    assert torch.equal(pairs, pairs.transpose(1, 2))
    assert not pairs.diagonal(dim1=1, dim2=2).any()
    assert torch.equal(pairs.sum((1, 2)), torch.where(y == 2, 2, 0))   # one pair, both directions
    joined = pairs.any(2)                                              # patches in a pair
    assert torch.equal(joined[y == 2], relevant[y == 2])


def test_parity_labels_count_the_three_key_objects_present():
    batch = tensors("patch_parity")
    y, relevant, pairs, truth = batch["y"], batch["relevant"], batch["pairs"], batch["truth"]
    ds = data.get_dataset("patch_parity", **SMALL["patch_parity"])
    assert ds.classes == ["even", "odd"] and int(y.sum()) * 2 == len(y)       # balanced
    assert torch.equal(relevant.sum(1) % 2, y)                  # odd number of keys present
    assert torch.equal(patch_truth(truth, ds.patch_size), relevant)
    # every pattern of presence of the three keys occurs, 0 to 3 of them
    colours = colour_masks(batch["x"])
    shown = torch.stack([((colours[c] & truth).flatten(1).sum(1) >= 15)
                         for c in ("red", "blue", "green")], 1)            # (B, 3)
    assert torch.equal(shown.sum(1), relevant.sum(1))
    assert len({tuple(r) for r in shown.int().tolist()}) == 8
    # the object count says nothing about the class: 3 to 5 objects in both classes
    n_objects = relevant.sum(1) + batch["distractor"].sum(1)
    for c in (0, 1):
        assert set(n_objects[y == c].tolist()) == {3, 4, 5}
    # pairs join every two key objects present, both directions, and nothing else
    k = relevant.sum(1)
    assert torch.equal(pairs.sum((1, 2)), k * (k - 1))
    assert torch.equal(pairs, pairs.transpose(1, 2)) and not pairs.diagonal(dim1=1, dim2=2).any()
    assert not (pairs.any(2) & ~relevant).any()


def test_refactoring_the_renderer_left_the_patch_game_images_as_they_were():
    """The patch game of seed 0 hashes as it did before parity shared its renderer: the data the
    default models train on (and so their checkpoints) did not change."""
    out = patch_game.generate(64, base.split_rng("patch_game", "train", 0))
    h = hashlib.sha256()
    for key in sorted(out):
        h.update(key.encode() + out[key].numpy().tobytes())
    assert h.hexdigest() == "448b43530db8ab9e1bc640f2d4e748f47e187c19e5402405f88ee8a9f78db442"


def test_patch_game_distractors_are_never_read_by_a_rule():
    keys = set(patch_game.KEYS.values())
    assert not keys & set(patch_game.DISTRACTORS)
    # key shapes in wrong colours and key colours on wrong shapes are among the distractors
    assert {("circle", "blue"), ("square", "red"), ("triangle", "yellow")} <= set(patch_game.DISTRACTORS)


def test_patch_game_needs_patches_that_tile_the_image():
    with pytest.raises(ValueError, match="image is 32x32 but patch size 7 needs a multiple of 7"):
        data.get_dataset("patch_game", patch_size=7)
    with pytest.raises(ValueError, match="cannot place 3-4 objects on 4 patches"):
        data.get_dataset("patch_game", image_size=10, patch_size=5)
    with pytest.raises(ValueError, match="too small to tell shapes apart"):
        data.get_dataset("patch_game", image_size=32, patch_size=4)
    with pytest.raises(ValueError, match="image is 30x30 but patch size 8"):
        data.get_dataset("digits", image_size=30)


# --- video ground truth -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["video", "digits_video"])
def test_video_truth_follows_the_moving_object(name):
    batch = tensors(name)
    truth = batch["truth"].float()                                      # (B, T, H, W)
    area = truth.sum((2, 3))
    assert (area > 0).all()
    rows = (truth.sum(3) * torch.arange(truth.shape[2])).sum(2) / area  # (B, T) centroid row
    cols = (truth.sum(2) * torch.arange(truth.shape[3])).sum(2) / area
    if name == "video":
        assert (area == area[:, :1]).all()                                  # never leaves the frame
        step = {0: (0, 1), 1: (0, -1), 2: (1, 0), 3: (-1, 0)}               # right, left, down, up
        for i, c in enumerate(batch["y"].tolist()):
            dr, dc = rows[i].diff(), cols[i].diff()
            for d, sign in ((dr, step[c][0]), (dc, step[c][1])):
                assert torch.all(d * sign > 1.9) if sign else torch.allclose(d, torch.zeros_like(d))
    else:
        moved = torch.hypot(rows[:, -1] - rows[:, 0], cols[:, -1] - cols[:, 0])
        assert (moved > 3).float().mean() > 0.9                            # 1-2 px per frame


def test_video_frames_hold_the_object_where_truth_says():
    batch = tensors("video")
    x, truth = batch["x"], batch["truth"]                     # (B, 3, T, H, W), (B, T, H, W)
    saturated = (x.amax(1) - x.amin(1)) > 0.4
    white = x.amin(1) > 0.75
    visible = saturated | white
    assert visible[truth].float().mean() > 0.97


# --- player-level ground truth on hand-made masks -----------------------------------------------

def test_patch_truth_on_hand_made_masks():
    mask = torch.zeros(2, 4, 6, dtype=torch.bool)
    mask[0, 0, 5] = True                   # patch (0, 2) of a 2x3 grid of 2 px patches
    mask[1, 3, 0] = mask[1, 2, 1] = True   # both in patch (1, 0)
    expected = torch.tensor([[0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(patch_truth(mask, 2), expected)
    assert torch.equal(patch_truth(mask[0], 2), expected[0])
    assert torch.equal(patch_truth(torch.ones(4, 6, dtype=torch.bool), 2), torch.ones(6, dtype=torch.bool))
    with pytest.raises(ValueError, match="patch size 4 needs a multiple of 4"):
        patch_truth(mask, 4)


def test_cell_truth_numbers_cells_time_major():
    t, h, w, grid = 4, 6, 4, (2, 3, 2)
    for pt, ph, pw in np.ndindex(t, h, w):           # every single-pixel mask lands in one cell
        mask = torch.zeros(t, h, w, dtype=torch.bool)
        mask[pt, ph, pw] = True
        cell = ((pt // 2) * 3 + ph // 2) * 2 + pw // 2
        assert cell_truth(mask, grid).nonzero().flatten().tolist() == [cell]
    batch = torch.zeros(3, t, h, w, dtype=torch.bool)
    batch[1, :, 0, 0] = True                          # a static object over all frames
    cells = cell_truth(batch, grid)
    assert cells.shape == (3, 12)
    assert cells[1].nonzero().flatten().tolist() == [0, 6] and not cells[[0, 2]].any()
    with pytest.raises(ValueError, match="tubelet grid"):
        cell_truth(batch, (3, 3, 2))


# --- cache ----------------------------------------------------------------------------------------

def test_cache_round_trip_loads_without_generating(cache, monkeypatch):
    first = data.get_dataset("video", "train", **SMALL["video"])
    files = list((cache / "data").iterdir())
    assert [f.suffix for f in files] == [".pt"] and files[0].name.startswith("video-train-seed0-")

    def fail(*args, **kwargs):
        raise AssertionError("generated again although a cache file exists")

    real = video.generate
    monkeypatch.setattr(video, "generate", fail)
    again = data.get_dataset("video", "train", **SMALL["video"])
    assert all(torch.equal(first.tensors[k], again.tensors[k]) for k in first.tensors)
    monkeypatch.setattr(video, "generate", real)
    data.get_dataset("video", "train", n_train=8)                       # other options: another file
    assert len(list((cache / "data").iterdir())) == 2


def test_corrupt_cache_is_regenerated_with_a_warning(cache):
    first = data.get_dataset("patch_game", "test", **SMALL["patch_game"])
    (path,) = (cache / "data").glob("patch_game-test-*.pt")
    for garbage in (b"not a torch file", b""):
        path.write_bytes(garbage)
        with pytest.warns(RuntimeWarning, match="unreadable"):
            again = data.get_dataset("patch_game", "test", **SMALL["patch_game"])
        assert all(torch.equal(first.tensors[k], again.tensors[k]) for k in first.tensors)
        assert base.load_tensors(path).keys() == first.tensors.keys()   # rewritten, valid
    torch.save({"x": torch.zeros(3), "y": torch.zeros(2)}, path)        # readable, but wrong
    with pytest.warns(RuntimeWarning, match="unreadable"):
        data.get_dataset("patch_game", "test", **SMALL["patch_game"])
    assert list((cache / "data").iterdir()) == [path]                   # no temporary files left


# --- data on disk ---------------------------------------------------------------------------------



def write_avi(path, rgb, frames=10, size=(48, 40)):
    """A short MJPG clip of one colour whose brightness rises frame by frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for t in range(frames):
        level = 0.4 + 0.6 * t / (frames - 1)
        frame = np.zeros((size[1], size[0], 3), np.uint8) + np.array(rgb[::-1]) * level
        writer.write(frame.astype(np.uint8))                   # OpenCV writes BGR
    writer.release()


@pytest.fixture
def video_tree(tmp_path):
    root = tmp_path / "videos"
    for c, rgb in {"jump": (230, 30, 30), "walk": (30, 230, 30)}.items():
        (root / c).mkdir(parents=True)
        for k in range(5):
            write_avi(root / c / f"{c}_{k}.avi", rgb)
    return root


def test_image_folder_loads_resized_rgb_images(image_tree):
    loader = data.get_loader("image_folder", "train", batch_size=6, root=image_tree,
                             image_size=32, patch_size=8)
    ds = loader.dataset
    assert ds.classes == ["cat", "dog"] and ds.kind == "image" and ds.grid == (4, 4)
    batch = next(iter(loader))
    assert batch["x"].shape == (6, 3, 32, 32) and batch["x"].dtype == torch.float32
    assert batch["y"].dtype == torch.int64 and sorted(batch["y"].tolist()) == [0, 0, 0, 1, 1, 1]
    for x, y in zip(batch["x"], batch["y"], strict=True):
        expected = torch.tensor(IMAGE_COLOURS[ds.classes[y]]) / 255
        assert torch.allclose(x.mean((1, 2)), expected, atol=0.05)
    test = data.get_dataset("image_folder", "test", root=image_tree, image_size=32, patch_size=8)
    assert all(p.parent.parent.name == "val" for p, _ in test.samples)   # no test/: reads val/


def test_video_folder_splits_by_hash_and_decodes_clips(video_tree):
    train = data.get_dataset("video_folder", "train", root=video_tree, frames=4, image_size=16)
    test = data.get_dataset("video_folder", "test", root=video_tree, frames=4, image_size=16)
    train_files = {p for p, _ in train.samples}
    test_files = {p for p, _ in test.samples}
    assert len(train_files) == 8 and len(test_files) == 2 and not train_files & test_files
    assert sorted(y for _, y in test.samples) == [0, 1]               # stratified: one per class
    again = data.get_dataset("video_folder", "test", root=video_tree)
    assert {p for p, _ in again.samples} == test_files               # deterministic from the seed
    splits = {frozenset(p for p, _ in data.get_dataset("video_folder", "test", s,
                                                      root=video_tree).samples) for s in range(6)}
    assert len(splits) > 1                                             # the seed moves the split

    batch = next(iter(data.get_loader("video_folder", "train", batch_size=8, root=video_tree,
                                      frames=4, image_size=16)))
    x, y = batch["x"], batch["y"]
    assert x.shape == (8, 3, 4, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    colour = x.mean((2, 3, 4))                                          # (B, 3) RGB
    assert torch.all(colour[y == 0, 0] > colour[y == 0, 1] + 0.3)       # jump is red, not blue
    assert torch.all(colour[y == 1, 1] > colour[y == 1, 0] + 0.3)       # walk is green
    brightness = x.mean((1, 3, 4))                                      # (B, T)
    assert torch.all(brightness.diff(dim=1) > 0.05)                     # frames spread over the clip


def test_video_folder_reads_split_folders(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split / "wave").mkdir(parents=True)
        write_avi(tmp_path / split / "wave" / "a.avi", (200, 200, 200))
    test = data.get_dataset("video_folder", "test", root=tmp_path, frames=2, image_size=8)
    assert [p.parent.parent.name for p, _ in test.samples] == ["val"]
    assert test[0]["x"].shape == (3, 2, 8, 8)


# --- errors -----------------------------------------------------------------------------------------

def test_errors_name_the_problem(tmp_path, image_tree):
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*patch_game"):
        data.get_dataset("nope")
    with pytest.raises(ValueError, match="unknown split 'val'.*'train', 'test'"):
        data.get_dataset("patch_game", "val")
    with pytest.raises(ValueError, match="no option.*'n_samples'.*valid options"):
        data.get_dataset("patch_game", n_samples=3)
    with pytest.raises(ValueError, match="needs root="):
        data.get_dataset("image_folder")
    with pytest.raises(FileNotFoundError, match="missing.*does not exist"):
        data.get_dataset("image_folder", root=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.get_dataset("video_folder", root=tmp_path / "missing")
    (image_tree / "train" / "bird").mkdir()
    with pytest.raises(ValueError, match=r"\['bird'\]"):
        data.get_dataset("image_folder", root=image_tree)
    (tmp_path / "empty" / "jump").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no readable files"):
        data.get_dataset("video_folder", root=tmp_path / "empty")


def test_undecodable_files_are_named(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    images = data.get_dataset("image_folder", root=tmp_path, image_size=16, patch_size=8)
    with pytest.raises(RuntimeError, match="broken.jpg"):
        images[0]
    (tmp_path / "clips" / "jump").mkdir(parents=True)
    (tmp_path / "clips" / "jump" / "broken.avi").write_bytes(b"not a video")
    clips = data.get_dataset("video_folder", root=tmp_path / "clips")
    with pytest.raises(RuntimeError, match="broken.avi"):
        clips[0]
