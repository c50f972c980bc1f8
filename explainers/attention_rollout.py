"""Attention rollout (Abnar & Zuidema 2020): attention propagated through every ViT block."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from explainers.attention import from_class_token, patch_attention
from explainers.base import Players, Result, register


@register("attention_rollout", gradients=False, randomness=False)
def attention_rollout(model: nn.Module, x: Tensor, target: Tensor, players: Players, *,
                      seed: int, residual: float = 0.5, batch_size: int = 256) -> Result:
    """Class-token row of A_L ... A_1, A = residual I + (1 - residual) mean_heads(attn): (B, N).

    Each block's head-averaged attention is mixed with the identity for the residual connection
    and renormalised, then multiplied from the first block to the last. Class-agnostic.
    """
    vit, maps = patch_attention("attention_rollout", model, x, players, "all", batch_size)
    rollout = None
    for i in range(len(vit.blocks)):
        a = maps[i].mean(1)                                                 # (B, L, L)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = residual * eye + (1 - residual) * a
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout                     # (B, L, L)
    return Result(values=from_class_token(rollout, vit.num_prefix_tokens),
                  extras={"class_agnostic": True})
