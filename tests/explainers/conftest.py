"""The explainer tests' fixtures: small untrained models (a ViT with 4 and one with 9 patches, a
3D-ResNet, a LearnedSHAP ViT moved away from its zero start) and inputs; every test here runs
on one thread (tiny models run far faster on one: two threads mostly wait for each other)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from models.harsanyi import LearnedShapViT
from models.resnet_3d import ResNet3DConfig, create_r3d
from models.train import seeded
from models.vit import ViTConfig, create_vit
from tests.conftest import away_from_init


@pytest.fixture(scope="module", autouse=True)
def every_test_on_one_thread(one_thread):
    """`tests.conftest.one_thread` for every test of this folder."""
    yield


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    with seeded(0):
        return create_vit(ViTConfig(image_size=16, patch_size=8, dim=16, depth=2, heads=2)).eval()


@pytest.fixture(scope="module")
def vit9() -> nn.Module:
    """Nine players: enough coalitions for samplers to differ from exact enumeration."""
    with seeded(0):
        return create_vit(ViTConfig(image_size=12, patch_size=4, dim=16, depth=2, heads=2)).eval()


@pytest.fixture(scope="module")
def r3d() -> nn.Module:
    with seeded(0):
        return create_r3d(ResNet3DConfig(widths=(4, 8), blocks=(1, 1),
                                         strides=((1, 2, 2), (2, 2, 2)))).eval()


@pytest.fixture(scope="module")
def images() -> Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))   # (B, C, H, W)


@pytest.fixture(scope="module")
def clips() -> Tensor:
    return torch.rand(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def learned_vit() -> nn.Module:
    with seeded(0):
        return away_from_init(LearnedShapViT(create_vit(ViTConfig(
            image_size=16, patch_size=8, dim=16, depth=2, heads=2)), rank=2).eval())
