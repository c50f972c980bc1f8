"""Pretrained weights from the local caches only: never a download, never silent random weights.

timm's ViTs are read from the Hugging Face hub cache (or, for weights timm knows only by URL, the
torch hub cache), torchvision's ResNets from the torch hub cache. Each loader first finds the
weight file on disk and hands timm / torchvision that file; when it is missing, `WeightsNotCached`
names the path where it should be and how to put it there, before any library could try the
network. Random weights come only from `pretrained=False`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import huggingface_hub
import huggingface_hub.constants as hf_constants
import torch

HF_FILES = ("model.safetensors", "pytorch_model.bin")   # what timm reads from a hub repository


class WeightsNotCached(RuntimeError):
    """Pretrained weights were asked for but are not in the local cache."""


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Make the Hugging Face hub read its cache only: a missing file fails at once, no retries."""
    old = hf_constants.HF_HUB_OFFLINE
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = old


def torch_hub_file(url: str) -> Path:
    """Where torch hub keeps the download of `url`: <torch hub dir>/checkpoints/<file name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def torchvision_weights(weights, model: str) -> None:
    """Check that torchvision's `weights` (a WeightsEnum member) are in the torch hub cache.

    torchvision downloads missing weights by itself; calling this first turns that download
    into an error naming the file to copy there.
    """
    path = torch_hub_file(weights.url)
    if not path.is_file():
        raise WeightsNotCached(
            f"{model} weights {weights} are not in the torch hub cache: no {path}. This project "
            f"never downloads at run time; copy {path.name} there (from {weights.url}, fetched "
            "on a machine with network; TORCH_HOME moves the cache) or use pretrained=False "
            "for random weights")


def hf_repo_dir(repo_id: str) -> Path:
    """The Hugging Face cache folder of a model repository."""
    return Path(hf_constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"


def timm_weights(name: str) -> dict:
    """A `pretrained_cfg_overlay` that makes timm load `name`'s weights from the local file.

    Raises WeightsNotCached, naming the expected cache path, when the file is not there, and
    when timm knows no pretrained weights for `name` (timm raises then too; this says why).
    """
    import timm.models
    from timm.models._hub import hf_split

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:          # an unknown name: timm.create_model says so itself
        return {}
    if cfg.file:
        return {}
    if cfg.hf_hub_id:
        repo, revision = hf_split(cfg.hf_hub_id)
        names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_FILES
        for filename in names:
            found = huggingface_hub.try_to_load_from_cache(repo, filename, revision=revision)
            if isinstance(found, str):
                # the hub's files are plain state dicts, not the custom (.npz) format of the URL
                return {"file": found, "custom_load": False, "source": ""}
        raise WeightsNotCached(
            f"pretrained weights of timm model {name!r} are not in the Hugging Face cache: no "
            f"{' or '.join(names)} under {hf_repo_dir(repo)}. This project never downloads at "
            f"run time; fetch them once on a machine with network (`hf download {repo} "
            f"{names[0]}`) and copy the folder {hf_repo_dir(repo).name} of its Hugging Face "
            "cache here (HF_HOME or HF_HUB_CACHE moves the cache), or use pretrained=False for "
            "random weights")
    if cfg.url:
        path = torch_hub_file(cfg.url)
        if path.is_file():
            return {"file": str(path), "source": ""}
        raise WeightsNotCached(
            f"pretrained weights of timm model {name!r} are not in the torch hub cache: no "
            f"{path}. This project never downloads at run time; copy {path.name} there (from "
            f"{cfg.url}) or use pretrained=False for random weights")
    raise WeightsNotCached(f"timm knows no pretrained weights for {name!r}; use another tag "
                           "(timm.list_pretrained('vit*')) or pretrained=False for random weights")
