"""Pretrained weights come from the local caches only: no network, a clear error naming the cache
path when they are missing, the file's weights when they are there, random weights only when
asked for. The caches point at an empty temporary folder and every socket call fails."""

from __future__ import annotations

import socket

import huggingface_hub.constants as hf_constants
import pytest
import torch

from models.pretrained import WeightsNotCached, hf_repo_dir, torch_hub_file
from models.resnet_2d import create_resnet2d
from models.resnet_3d import create_r3d
from models.vit import create_vit

VIT = "vit_tiny_patch16_224"
VIT_REPO = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"     # timm's default tag for VIT


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Torch hub and Hugging Face caches in an empty folder of their own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    """Every way out (name lookup, connect) raises; the list records each attempt."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("the tests forbid the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_vit_without_cached_weights_names_the_cache_and_never_connects(empty_caches, no_network):
    with pytest.raises(WeightsNotCached) as err:
        create_vit(VIT, pretrained=True)
    message = str(err.value)
    assert str(hf_repo_dir(VIT_REPO)) in message and str(empty_caches) in message
    assert "never downloads" in message and "pretrained=False" in message
    assert f"hf download {VIT_REPO}" in message
    assert no_network == []


def test_resnet18_without_cached_weights_names_the_file_and_never_connects(empty_caches,
                                                                          no_network):
    from torchvision.models import ResNet18_Weights

    with pytest.raises(WeightsNotCached) as err:
        create_resnet2d("resnet18", pretrained=True)
    expected = torch_hub_file(ResNet18_Weights.IMAGENET1K_V1.url)
    assert expected.name == "resnet18-f37072fd.pth" and str(empty_caches) in str(expected)
    assert str(expected) in str(err.value) and "pretrained=False" in str(err.value)
    assert no_network == []


def test_r3d18_without_cached_weights_names_the_file_and_never_connects(empty_caches,
                                                                       no_network):
    with pytest.raises(WeightsNotCached, match=r"r3d_18-b3b3357e\.pth.*pretrained=False"):
        create_r3d("r3d_18", pretrained=True)
    assert no_network == []


def test_vit_loads_cached_hub_weights_without_the_network(empty_caches, no_network):
    """A file in the Hugging Face cache layout is what the model gets, not random weights."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    saved = timm.create_model(VIT).state_dict()
    commit = "0" * 40
    snapshot = hf_repo_dir(VIT_REPO) / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(commit)
    save_file(saved, snapshot / "model.safetensors")
    torch.manual_seed(1)                      # a random initialisation would differ
    vit = create_vit(VIT, pretrained=True)
    for name in ("pos_embed", "blocks.0.attn.qkv.weight", "head.weight"):
        torch.testing.assert_close(vit.backbone.state_dict()[name], saved[name])
    assert no_network == []


def test_resnet18_loads_cached_torch_hub_weights_without_the_network(empty_caches, no_network):
    from torchvision.models import ResNet18_Weights, resnet18

    torch.manual_seed(0)
    saved = resnet18().state_dict()
    path = torch_hub_file(ResNet18_Weights.IMAGENET1K_V1.url)
    path.parent.mkdir(parents=True)
    torch.save(saved, path)
    torch.manual_seed(1)
    net = create_resnet2d("resnet18", pretrained=True)
    torch.testing.assert_close(net.stem[0].weight, saved["conv1.weight"])
    torch.testing.assert_close(net.stages[3][1].conv2.weight, saved["layer4.1.conv2.weight"])
    assert no_network == []


@pytest.mark.parametrize("build", [lambda: create_vit(VIT), lambda: create_resnet2d("resnet18"),
                                   lambda: create_r3d("r3d_18")], ids=["vit", "resnet18", "r3d_18"])
def test_random_weights_need_no_cache_and_no_network(empty_caches, no_network, build):
    assert isinstance(build(), torch.nn.Module)
    assert no_network == []
