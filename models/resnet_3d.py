"""3D-ResNets for video: a small configurable one for our clips, torchvision's r3d_18 for real video.

Both expose `forward_features(x) -> (B, C, T', H', W')`, the spatio-temporal feature grid before
pooling (where GradCAM++ and the LearnedSHAP head plug in), and `forward_head(features) -> (B, K)`.
Inputs are clips (B, 3, T, H, W) in [0, 1]; normalisation happens inside the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.pretrained import torchvision_weights


@dataclass
class ResNet3DConfig:
    n_classes: int = 4
    in_chans: int = 3
    widths: tuple[int, ...] = (16, 32, 64)        # channels of each stage
    blocks: tuple[int, ...] = (1, 1, 1)           # residual blocks per stage
    # (t, h, w) stride of each stage; the stem halves h and w. An 8x32x32 clip ends as a 4x4x4 grid
    # (downsampling early keeps a training step on 32 clips near 0.15 s on 2 CPU cores).
    strides: tuple[tuple[int, int, int], ...] = ((1, 2, 2), (2, 2, 2), (1, 1, 1))
    torchvision_name: str = ""                    # "r3d_18" for torchvision's model instead
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)


class BasicBlock3D(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: tuple[int, int, int]):
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(c_out)
        self.relu = nn.ReLU()
        self.shortcut = nn.Identity()
        if c_in != c_out or stride != (1, 1, 1):
            self.shortcut = nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm3d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet3D(nn.Module):
    """A small 3D-ResNet: stem, residual stages, global average pool, linear head."""

    def __init__(self, config: ResNet3DConfig):
        super().__init__()
        if not (len(config.widths) == len(config.blocks) == len(config.strides)):
            raise ValueError("widths, blocks and strides need one entry per stage, got "
                             f"{config.widths}, {config.blocks}, {config.strides}")
        self.config = config
        w0 = config.widths[0]
        self.stem = nn.Sequential(nn.Conv3d(config.in_chans, w0, 3, (1, 2, 2), 1, bias=False),
                                  nn.BatchNorm3d(w0), nn.ReLU())
        stages, c_in = [], w0
        for width, n_blocks, stride in zip(config.widths, config.blocks, config.strides):
            layers = [BasicBlock3D(c_in, width, tuple(stride))]
            layers += [BasicBlock3D(width, width, (1, 1, 1)) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*layers))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, config.n_classes)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1, 1), persistent=False)

    @property
    def n_classes(self) -> int:
        return self.head.out_features

    @property
    def feature_layer(self) -> nn.Module:
        """The last layer before pooling (for GradCAM-style methods)."""
        return self.stages[-1]

    def forward_features(self, x: Tensor) -> Tensor:
        """The feature grid before pooling: (B, C, T', H', W')."""
        check_clip(x)
        return self.stages(self.stem((x - self.mean) / self.std))

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(features.mean((2, 3, 4)))               # (B, K)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class TorchvisionR3D(nn.Module):
    """torchvision's r3d_18 with the same features/head split (Kinetics-400 weights if cached)."""

    def __init__(self, config: ResNet3DConfig, pretrained: bool = False):
        super().__init__()
        from torchvision.models.video import R3D_18_Weights, r3d_18

        self.config = config
        weights = R3D_18_Weights.KINETICS400_V1 if pretrained else None
        if weights is not None:
            torchvision_weights(weights, "r3d_18")   # torchvision would download them itself
        net = r3d_18(weights=weights)
        if net.fc.out_features != config.n_classes:
            net.fc = nn.Linear(net.fc.in_features, config.n_classes)
        self.net = net
        mean, std = (weights.transforms().mean, weights.transforms().std) if weights else (
            config.mean, config.std)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1, 1), persistent=False)

    @property
    def n_classes(self) -> int:
        return self.net.fc.out_features

    @property
    def feature_layer(self) -> nn.Module:
        return self.net.layer4

    def forward_features(self, x: Tensor) -> Tensor:
        check_clip(x)
        n = self.net
        x = n.stem((x - self.mean) / self.std)
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))          # (B, 512, T/8, H/16, W/16)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.net.fc(features.mean((2, 3, 4)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def check_clip(x: Tensor) -> None:
    if x.ndim != 5:
        raise ValueError(f"expected clips (B, C, T, H, W), got a tensor of shape {tuple(x.shape)}; "
                         "a single clip needs x.unsqueeze(0)")


def create_r3d(config: ResNet3DConfig | str | None = None, *, pretrained: bool = False,
               n_classes: int | None = None) -> nn.Module:
    """The small 3D-ResNet from a config, or "r3d_18" for torchvision's."""
    if config is None:
        config = ResNet3DConfig()
    if isinstance(config, str):
        config = ResNet3DConfig(torchvision_name=config)
    if n_classes is not None:
        config = ResNet3DConfig(**{**config.__dict__, "n_classes": n_classes})
    if config.torchvision_name == "r3d_18":
        return TorchvisionR3D(config, pretrained)
    if config.torchvision_name:
        raise ValueError(f"unknown torchvision video model {config.torchvision_name!r}; "
                         "only 'r3d_18' is wired in")
    if pretrained:
        raise ValueError("pretrained=True needs create_r3d('r3d_18', pretrained=True)")
    return ResNet3D(config)
