"""The ViT's last-block attention to each patch, averaged over heads.

The queries are the tokens the model's head reads: the class token for a ViT classified by its
class token (timm's default), the patch tokens otherwise (a LearnedSHAP head reads every patch
token, mean pooling too). Attention from a token the head never reads would explain nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from explainers.core import (
    Players,
    Result,
    find_timm_vit,
    head_reads_class_token,
    register,
    unsupported,
)


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


QUERIES = ("auto", "class_token", "patch_tokens")


def resolve_queries(model: nn.Module, vit: nn.Module, queries: str) -> str:
    """"class_token" or "patch_tokens": which tokens' attention the method reads."""
    if queries not in QUERIES:
        raise ValueError(f"queries must be one of {QUERIES}, got {queries!r}")
    if queries == "auto":
        return "class_token" if head_reads_class_token(model) else "patch_tokens"
    if queries == "class_token" and vit.num_prefix_tokens == 0:
        raise ValueError("queries='class_token' but this ViT has no class token; use "
                         "queries='patch_tokens'")
    return queries


def attention_to_patches(attn: Tensor, n_prefix: int, queries: str) -> Tensor:
    """Attention (B, L, L) paid to each patch (B, N) by the class token or, on average, by the
    patch tokens."""
    if queries == "class_token":
        return attn[:, 0, n_prefix:]
    return attn[:, n_prefix:, n_prefix:].mean(1)


@register("attention", gradients=False, randomness=False)
def attention(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
              queries: str = "auto", batch_size: int = 256) -> Result:
    """Last block's attention to each patch, mean over heads: (B, N), class-agnostic.

    `queries`: "class_token", "patch_tokens" (their mean), or "auto": the tokens the model's
    head reads. The same map for every target class: attention says where the model looks, not
    for what. extras "queries" says which tokens were read.
    """
    vit, maps = patch_attention("attention", model, x, players, "last", batch_size)
    queries = resolve_queries(model, vit, queries)
    last = maps[len(vit.blocks) - 1].mean(1)                               # (B, L, L)
    return Result(values=attention_to_patches(last, vit.num_prefix_tokens, queries),
                  extras={"class_agnostic": True, "queries": queries})
