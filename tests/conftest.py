"""Shared fixtures: one quick-mode cache (tiny trained models, reference values) for the session.

The quick benchmark and the notebooks in quick mode train the same tiny models and compute the
same references; sharing one cache trains them once. It lives in pytest's temporary folder, so
the repository's own cache is never touched. `quick_make_run` runs the quick `make run` pipeline
once for every test that reads its outputs. `image_tree` is a small ImageNet-layout folder.
"""

import os

import pytest
import torch
from PIL import Image

IMAGE_COLOURS = {"cat": (220, 30, 30), "dog": (30, 30, 220)}      # RGB


@pytest.fixture(scope="session")
def quick_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("quick-cache")


@pytest.fixture(scope="session", autouse=True)
def never_the_repository_cache(quick_cache):
    """Every test caches under pytest's temporary folder (the session's quick cache, unless it
    sets its own): no test writes checkpoints or references into the repository's `.cache/`."""
    before = os.environ.get("LEARNEDSHAP_CACHE")
    os.environ["LEARNEDSHAP_CACHE"] = str(quick_cache)
    yield
    if before is None:
        os.environ.pop("LEARNEDSHAP_CACHE", None)
    else:
        os.environ["LEARNEDSHAP_CACHE"] = before


@pytest.fixture(scope="session")
def quick_make_run(tmp_path_factory, quick_cache):
    """One quick `make run` in a fresh copy of the repository, with reruns (tests.quick_make_run):
    the reproducibility, benchmark and notebook tests read its outputs."""
    from tests.quick_make_run import quick_make_run as run

    return run(tmp_path_factory, quick_cache)


@pytest.fixture
def image_tree(tmp_path):
    """root/train/<class>/*.jpg and root/val/<class>/*.png: 3 images of one colour per class."""
    root = tmp_path / "images"
    for split, ext in (("train", ".jpg"), ("val", ".png")):
        for c, rgb in IMAGE_COLOURS.items():
            (root / split / c).mkdir(parents=True)
            for k in range(3):
                Image.new("RGB", (40 + 8 * k, 30), rgb).save(root / split / c / f"{c}{k}{ext}")
    return root


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run far faster on one thread: two threads mostly wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def away_from_init(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Draw every Harsanyi head's terms in `module` at random (seeded), in place.

    A fresh head starts with every term at zero (its logits are its bias), so a test of what the
    terms do (exactness, efficiency, pairs split in half) on an untrained model would pass on
    zeros; this puts every term to work."""
    from models.harsanyi import HarsanyiHead

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in (m for m in module.modules() if isinstance(m, HarsanyiHead)):
            params = dict(head.named_parameters())    # the norm and the detectors keep their init
            for name in ("unary_proj.weight", "unary_weight", "bias", "pair_sign", "pair_weight"):
                if name in params:                    # no pair terms in the unary-only ablation
                    params[name].copy_(torch.randn(params[name].shape, generator=gen))
    return module
