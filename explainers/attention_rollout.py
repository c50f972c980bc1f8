"""Attention rollout (Abnar & Zuidema 2020): attention propagated through every ViT block."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from explainers.attention import attention_to_patches, patch_attention, resolve_queries
from explainers.core import Players, Result, register


@register("attention_rollout", gradients=False, randomness=False)
def attention_rollout(model: nn.Module, x: Tensor, target: Tensor, players: Players, *,
                      seed: int, residual: float = 0.5, queries: str = "auto",
                      batch_size: int = 256) -> Result:
    """Rows of A_L ... A_1 read at the patches, A = residual I + (1 - residual) mean_heads(attn).

    Each block's head-averaged attention is mixed with the identity for the residual connection
    and renormalised, then multiplied from the first block to the last; the result is read at
    the class token's row or averaged over the patch tokens' rows (`queries`, as for
    `attention`: by default the tokens the head reads). Class-agnostic: (B, N).
    """
    vit, maps = patch_attention("attention_rollout", model, x, players, "all", batch_size)
    queries = resolve_queries(model, vit, queries)
    rollout = None
    for i in range(len(vit.blocks)):
        a = maps[i].mean(1)                                                 # (B, L, L)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = residual * eye + (1 - residual) * a
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout                     # (B, L, L)
    return Result(values=attention_to_patches(rollout, vit.num_prefix_tokens, queries),
                  extras={"class_agnostic": True, "queries": queries})
