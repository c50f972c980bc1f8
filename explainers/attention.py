"""The ViT's last-block attention from the class token to each patch, averaged over heads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from explainers.base import Players, Result, find_timm_vit, register, unsupported


@contextlib.contextmanager
def capture_attention(vit: nn.Module, blocks: list[int]) -> Iterator[dict[int, Tensor]]:
    """Record the attention probabilities (B, heads, L, L) of the given blocks during forwards."""
    maps: dict[int, list[Tensor]] = {i: [] for i in blocks}

    def hook(i: int):
        def record(attn: nn.Module, args, kwargs, output) -> None:
            if kwargs.get("attn_mask") is not None or kwargs.get("is_causal"):
                raise ValueError("attention maps with an attention mask are not supported")
            tokens = args[0]                                               # (B, L, D)
            B, L, _ = tokens.shape
            qkv = attn.qkv(tokens).reshape(B, L, 3, attn.num_heads, attn.head_dim)
            q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)                  # (B, heads, L, d)
            q, k = attn.q_norm(q), attn.k_norm(k)
            # Recomputed from qkv: timm's fused path (scaled_dot_product_attention) never
            # materialises the probabilities.
            maps[i].append(((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1).detach())
        return record

    handles = []
    try:
        for i in blocks:
            attn = vit.blocks[i].attn
            if not all(hasattr(attn, a) for a in ("qkv", "num_heads", "head_dim", "scale")):
                raise TypeError(f"block {i} has {type(attn).__name__}, not timm's Attention; "
                                "attention maps need a qkv projection")
            handles.append(attn.register_forward_hook(hook(i), with_kwargs=True))
        out: dict[int, Tensor] = {}
        yield out
        out.update({i: torch.cat(m) for i, m in maps.items()})
    finally:
        for h in handles:
            h.remove()


def patch_attention(method: str, model: nn.Module, x: Tensor, players: Players, blocks: str,
                    batch_size: int) -> tuple[nn.Module, dict[int, Tensor]]:
    """Run the ViT on x (B, 3, H, W) and return its timm backbone and per-block attention."""
    vit = find_timm_vit(model)
    if vit is None:
        raise unsupported(method, model, "it reads a ViT's attention and this model has no "
                          "timm VisionTransformer blocks", "gradcam_pp, gradient_shap or exact")
    if players.kind != "patches":
        raise ValueError(f"{method} scores the ViT's own patches; drop feature_mask (or use a "
                         "Shapley method, which takes any feature_mask)")
    index = list(range(len(vit.blocks))) if blocks == "all" else [len(vit.blocks) - 1]
    with capture_attention(vit, index) as maps, torch.no_grad():
        for chunk in x.split(batch_size):
            model(chunk)
    return vit, maps


def from_class_token(attn: Tensor, n_prefix: int) -> Tensor:
    """Attention (B, L, L) from the class token to the patches (B, N).

    Without prefix tokens (global average pooling) it is the mean attention each patch receives.
    """
    if n_prefix == 0:
        return attn.mean(1)
    return attn[:, 0, n_prefix:]


@register("attention", gradients=False, randomness=False)
def attention(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
              batch_size: int = 256) -> Result:
    """Last block's class-token attention to each patch, mean over heads: (B, N), class-agnostic.

    The same map for every target class: attention says where the model looks, not for what.
    """
    vit, maps = patch_attention("attention", model, x, players, "last", batch_size)
    last = maps[len(vit.blocks) - 1].mean(1)                               # (B, L, L)
    return Result(values=from_class_token(last, vit.num_prefix_tokens),
                  extras={"class_agnostic": True})
