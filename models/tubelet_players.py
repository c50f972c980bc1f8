"""A plain video classifier with its game declared: which tubelets are the players, and what
removing one means (its pixels replaced by the blurred clip's, or zeros).

The frozen 3D-ResNet that post-hoc video explainers explain is wrapped in it, so that the
references, the samplers and the explainers all play the same game.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from shapley.game import make_baseline, tubelet_feature_mask


class TubeletPlayers(nn.Module):
    """A plain video classifier with its game declared: tubelets removed to a baseline (blur).

    The reference values, the samplers and the explainers read `n_players`, `tubelets`,
    `removal` and `baseline` from here; the forward pass is the model's own.
    """

    removal = "baseline"

    def __init__(self, model: nn.Module, tubelets: tuple[int, int, int] = (2, 2, 2),
                 baseline: str = "blur"):
        super().__init__()
        self.model, self.tubelets, self.baseline = model, tuple(tubelets), baseline
        # in the state dict, so two grids of one model never share a cached reference
        self.register_buffer("grid", torch.tensor(self.tubelets))

    n_classes = property(lambda self: self.model.n_classes)
    feature_layer = property(lambda self: self.model.feature_layer)

    @property
    def n_players(self) -> int:
        t, h, w = self.tubelets
        return t * h * w

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def removed(self, x: Tensor) -> Tensor:
        """The clips (B, C, T, H, W) with every tubelet removed: their baselines."""
        return torch.stack([make_baseline(clip, self.baseline) for clip in x])

    @torch.no_grad()
    def coalition_values(self, x: Tensor, keep: Tensor) -> Tensor:
        """v(S) of M coalitions of each clip: x (B, C, T, H, W), keep (B, M, N) -> (B, M, K)."""
        B, M, _ = keep.shape
        cells = tubelet_feature_mask(*x.shape[-3:], grid=self.tubelets).to(x.device)
        present = keep[:, :, cells][:, :, None]                       # (B, M, 1, T, H, W)
        clips = torch.where(present, x[:, None], self.removed(x)[:, None])
        return self.model(clips.flatten(0, 1)).view(B, M, -1)
