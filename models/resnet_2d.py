"""A 2D ResNet for images: torchvision's resnet18 topology, narrowed to train on 2 CPU cores.

The model that the shap and Shap-CAM workflows are usually applied to. Same blocks and stages as
torchvision's `resnet18` (torchvision's own `BasicBlock`, two per stage, stride 2 from the second
stage on), with configurable widths (resnet18: 64, 128, 256, 512) and a stem for small images (a
3x3 convolution, no max-pool, as for CIFAR: a 32 px image ends as a 4 x 4 feature map, one cell
per 8 px patch). `torchvision_name="resnet18"` builds torchvision's own model instead (ImageNet
weights from the local cache only, never downloaded).

Its players are patches given as a feature mask (`patch_size`): a CNN has no patch tokens to drop,
so removing a patch replaces its pixels (blur, zeros, ...). It exposes `forward_features(x) -> (B,
C, h, w)`, `forward_head`, `feature_layer` (the last stage, for GradCAM++) and `blocks()`, the
named stages whose outputs the per-layer methods explain. Inputs are images (B, C, H, W) in [0, 1];
normalisation happens inside the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.pretrained import torchvision_weights


@dataclass
class ResNet2DConfig:
    n_classes: int = 4
    in_chans: int = 3
    image_size: int = 32
    patch_size: int = 8                           # players: patches of this many pixels
    widths: tuple[int, ...] = (8, 16, 32, 64)     # resnet18: (64, 128, 256, 512)
    blocks: tuple[int, ...] = (2, 2, 2, 2)        # resnet18's
    stem: str = "small"                           # "small" (3x3, stride 1) or "imagenet" (7x7/2 + pool)
    torchvision_name: str = ""                    # "resnet18": torchvision's model itself
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)


class ResNet2D(nn.Module):
    """resnet18's stages of torchvision `BasicBlock`s with the widths of `config`."""

    def __init__(self, config: ResNet2DConfig):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        if len(config.widths) != len(config.blocks):
            raise ValueError(f"widths and blocks need one entry per stage, got {config.widths} "
                             f"and {config.blocks}")
        if config.stem not in ("small", "imagenet"):
            raise ValueError(f"stem must be 'small' or 'imagenet', got {config.stem!r}")
        if config.image_size % config.patch_size:
            raise ValueError(f"image_size {config.image_size} is not a multiple of patch_size "
                             f"{config.patch_size}: the patch players would not tile the image")
        self.config = config
        w0 = config.widths[0]
        if config.stem == "small":
            stem = [nn.Conv2d(config.in_chans, w0, 3, 1, 1, bias=False)]
        else:
            stem = [nn.Conv2d(config.in_chans, w0, 7, 2, 3, bias=False)]
        stem += [nn.BatchNorm2d(w0), nn.ReLU(inplace=True)]
        if config.stem == "imagenet":
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        stages, c_in = [], w0
        for i, (width, n_blocks) in enumerate(zip(config.widths, config.blocks, strict=True)):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or c_in != width:
                down = nn.Sequential(nn.Conv2d(c_in, width, 1, stride, bias=False),
                                     nn.BatchNorm2d(width))
            layers = [BasicBlock(c_in, width, stride, down)]
            layers += [BasicBlock(width, width) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, config.n_classes)
        for m in self.modules():                      # torchvision's resnet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)

    @property
    def n_classes(self) -> int:
        return self.head.out_features

    @property
    def patch_players(self) -> int:
        """The side of the square patches that are this model's players (a feature mask)."""
        return self.config.patch_size

    @property
    def feature_layer(self) -> nn.Module:
        """The last stage, whose output the head pools (for GradCAM-style methods)."""
        return self.stages[-1]

    def blocks(self) -> dict[str, nn.Module]:
        """The stem and every residual block, in order, by name: the layers whose outputs the
        per-layer methods (Shap-CAM, GradCAM++, layer DeepLiftShap) explain."""
        out = {"stem": self.stem}
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage):
                out[f"layer{i + 1}.{j}"] = block
        return out

    def forward_features(self, x: Tensor) -> Tensor:
        """The feature map before pooling: (B, C, h, w)."""
        check_images(x)
        return self.stages(self.stem((x - self.mean) / self.std))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(features.mean((2, 3)))                  # (B, K)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class TorchvisionResNet18(ResNet2D):
    """torchvision's resnet18 itself (ImageNet weights if cached), with ResNet2D's interface."""

    def __init__(self, config: ResNet2DConfig, pretrained: bool = False):
        nn.Module.__init__(self)
        from torchvision.models import ResNet18_Weights, resnet18

        self.config = config
        weights = ResNet18_Weights.IMAGENET1K_V1 if pretrained else None
        if weights is not None:
            torchvision_weights(weights, "resnet18")   # torchvision would download them itself
        net = resnet18(weights=weights)
        if net.fc.out_features != config.n_classes:
            net.fc = nn.Linear(net.fc.in_features, config.n_classes)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)
        self.head = net.fc
        mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if pretrained else (
            config.mean, config.std)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)


def check_images(x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got a tensor of shape {tuple(x.shape)}; "
                         "a single image needs x.unsqueeze(0)")


def create_resnet2d(config: ResNet2DConfig | str | None = None, *, pretrained: bool = False,
                    n_classes: int | None = None) -> ResNet2D:
    """The narrowed ResNet from a config, or "resnet18" for torchvision's."""
    if config is None:
        config = ResNet2DConfig()
    if isinstance(config, str):
        config = ResNet2DConfig(torchvision_name=config, image_size=224, patch_size=16,
                                widths=(64, 128, 256, 512), stem="imagenet")
    if n_classes is not None:
        config = ResNet2DConfig(**{**config.__dict__, "n_classes": n_classes})
    if config.torchvision_name == "resnet18":
        return TorchvisionResNet18(config, pretrained)
    if config.torchvision_name:
        raise ValueError(f"unknown torchvision image model {config.torchvision_name!r}; only "
                         "'resnet18' is wired in")
    if pretrained:
        raise ValueError("pretrained=True needs create_resnet2d('resnet18', pretrained=True)")
    return ResNet2D(config)
