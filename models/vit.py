"""Vision Transformer on top of timm, with patch tokens exposed and token dropping.

`ViT` wraps a timm `VisionTransformer` (our small CPU configurations, or any timm model name with
`pretrained=True` for users who have the weights) and adds what Shapley explanations need:

- `forward_features(x, keep)` returns the token sequence after the blocks, like timm, but can run
  on a subset of patches: `keep` (B, N) bool says which patches are present. Missing patches are
  *dropped* from the sequence (not zeroed), as ViT-Shapley does, so they cannot influence anything.
- `forward_head(tokens, keep)` pools and classifies (class token, or a mean over present patches).

Inputs are images in [0, 1]; normalisation happens inside the model so that every explainer and
baseline works in image space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from models.pretrained import WeightsNotCached, hub_offline, timm_weights
from shapley.game import check_patch_grid


@dataclass
class ViTConfig:
    image_size: int = 32
    patch_size: int = 8       # 32 / 8 -> a 4 x 4 grid: 16 players, exact Shapley values are cheap
    n_classes: int = 4
    dim: int = 48
    depth: int = 4
    heads: int = 3
    mlp_ratio: float = 2.0
    # torch's fused CPU attention is ~2x slower than plain matmuls on 5-17 token sequences, and
    # exact Shapley values evaluate 65536 of them per image; timm's plain path is numerically equal.
    fused_attn: bool = False
    in_chans: int = 3
    global_pool: str = "token"  # "token" (class token) or "avg" (mean over present patches)
    timm_name: str = ""       # a timm model name instead of the small configuration above
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)


class ViT(nn.Module):
    """A timm VisionTransformer whose patches can be removed by token dropping."""

    def __init__(self, config: ViTConfig, backbone: VisionTransformer | None = None):
        super().__init__()
        self.config = config
        if backbone is None:
            if config.image_size % config.patch_size:
                raise ValueError(
                    f"image size {config.image_size} is not a multiple of patch size "
                    f"{config.patch_size}; choose sizes that tile the image")
            backbone = VisionTransformer(
                img_size=config.image_size, patch_size=config.patch_size,
                in_chans=config.in_chans, num_classes=config.n_classes,
                embed_dim=config.dim, depth=config.depth, num_heads=config.heads,
                mlp_ratio=config.mlp_ratio, global_pool=config.global_pool)
        if not isinstance(backbone, VisionTransformer):
            raise TypeError(f"ViT wraps timm VisionTransformer models, got {type(backbone).__name__}")
        for block in backbone.blocks:
            block.attn.fused_attn = config.fused_attn
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)

    # --- geometry -------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.backbone.patch_embed.grid_size)

    @property
    def n_players(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def patch_size(self) -> int:
        return self.backbone.patch_embed.patch_size[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.backbone.patch_embed.img_size)

    @property
    def n_prefix(self) -> int:
        return self.backbone.num_prefix_tokens

    @property
    def n_classes(self) -> int:
        return self.backbone.num_classes

    @property
    def dim(self) -> int:
        return self.backbone.embed_dim

    # --- forward --------------------------------------------------------------------------
    def embed(self, x: Tensor) -> Tensor:
        """Patch embeddings with positions, prefix (class) tokens first: (B, P + N, D)."""
        check_image(x, self.image_size, self.patch_size)
        vit = self.backbone
        x = (x - self.mean) / self.std
        seq = vit._pos_embed(vit.patch_embed(x))   # (B, P + N, D), positions added before dropping
        return vit.norm_pre(seq)

    def forward_features(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """Tokens after the blocks and final norm, (B, P + N, D); dropped patches come back as 0."""
        return self.encode(self.embed(x), keep)

    def encode(self, seq: Tensor, keep: Tensor | None = None) -> Tensor:
        """Run the blocks on embedded tokens (B, P + N, D), dropping the patches `keep` excludes.

        When every row keeps the same number of patches, the kept tokens are gathered into one
        shorter sequence (the cheapest exact path: the masking game batches coalitions by size).
        Otherwise the dropped tokens are masked out of every attention's keys, which is the same
        computation for the kept tokens in one pass (training batches mix sizes).
        """
        if keep is None:
            return self._blocks(seq)
        keep = check_keep(keep, seq.shape[0], self.n_players).to(seq.device)
        P, (B, L, D) = self.n_prefix, seq.shape
        present = torch.cat([keep.new_ones(B, P), keep], 1)                 # (B, P + N)
        sizes = keep.sum(1)                                                 # (B,)
        if bool((sizes == sizes[0]).all()):
            k = int(sizes[0])
            pos = present.nonzero()[:, 1].view(B, P + k)[..., None].expand(-1, -1, D)
            sub = self._blocks(seq.gather(1, pos))                          # (B, P + k, D)
            return seq.new_zeros(B, L, D).scatter(1, pos, sub)
        bias = seq.new_zeros(B, 1, 1, L).masked_fill(~present[:, None, None, :], float("-inf"))
        x = seq
        for block in self.backbone.blocks:
            x = block(x, attn_mask=bias)                                    # (B, P + N, D)
        return self.backbone.norm(x) * present[..., None]

    def forward_head(self, tokens: Tensor, keep: Tensor | None = None) -> Tensor:
        """Class logits (B, K) from the tokens of `forward_features`."""
        vit = self.backbone
        if vit.global_pool == "token":
            pooled = tokens[:, 0]                                   # (B, D)
        elif vit.global_pool == "avg":
            patches = tokens[:, self.n_prefix:]                     # (B, N, D)
            if keep is None:
                pooled = patches.mean(1)
            else:
                w = keep.to(patches.dtype)[..., None]               # (B, N, 1)
                pooled = (patches * w).sum(1) / w.sum(1).clamp(min=1)
        else:
            raise ValueError(f"global_pool={vit.global_pool!r} is not supported; use 'token' or 'avg'")
        return vit.head(vit.head_drop(vit.fc_norm(pooled)))

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """Logits (B, K); `keep` (B, N) bool removes the patches it marks False."""
        return self.forward_head(self.forward_features(x, keep), keep)

    def _blocks(self, seq: Tensor) -> Tensor:
        vit = self.backbone
        return vit.norm(vit.blocks(seq))


def check_image(x: Tensor, image_size: tuple[int, int], patch_size: int,
                model: str = "the model") -> None:
    """Raise an error that says what to do when `x` is not a batch the ViT can read."""
    if x.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got a tensor of shape {tuple(x.shape)}")
    H, W = x.shape[-2:]
    check_patch_grid(H, W, patch_size)
    if (H, W) != tuple(image_size):
        raise ValueError(f"image is {H}x{W} but {model} expects {image_size[0]}x{image_size[1]}; "
                         f"resize the input or build the model with image_size={H}")


def check_keep(keep: Tensor, batch: int, n_players: int) -> Tensor:
    """Validate a (B, N) patch mask; a (N,) mask is shared by the whole batch."""
    if keep.dtype != torch.bool:
        raise TypeError(f"keep must be a bool mask, got {keep.dtype}; use keep.bool()")
    if keep.ndim == 1:
        keep = keep.expand(batch, -1)
    if keep.shape != (batch, n_players):
        raise ValueError(f"keep has shape {tuple(keep.shape)} but the batch needs ({batch}, "
                         f"{n_players}): one flag per patch and image")
    return keep


def create_vit(config: ViTConfig | str | None = None, *, pretrained: bool = False,
               n_classes: int | None = None, image_size: int | None = None) -> ViT:
    """A small ViT from a config, or any timm ViT by name.

    `pretrained=True` reads the weights from the local Hugging Face / torch hub cache only
    (`models.pretrained`): missing weights raise WeightsNotCached naming the expected path.
    """
    if config is None:
        config = ViTConfig()
    if isinstance(config, str):
        config = ViTConfig(timm_name=config)
    if not config.timm_name:
        if pretrained:
            raise ValueError("pretrained=True needs a timm model name, e.g. "
                             "create_vit('vit_small_patch16_224', pretrained=True)")
        return ViT(config)
    kwargs = {}
    if n_classes is not None:
        kwargs["num_classes"] = n_classes
    if image_size is not None:
        kwargs["img_size"] = image_size
    try:
        with hub_offline():     # belt and braces: timm gets a local file or fails before the hub
            if pretrained:
                kwargs["pretrained_cfg_overlay"] = timm_weights(config.timm_name)
            backbone = timm.create_model(config.timm_name, pretrained=pretrained, **kwargs)
    except WeightsNotCached:
        raise
    except Exception as err:      # unknown names or tags (RuntimeError), unreadable files, ...
        raise RuntimeError(
            f"timm could not create {config.timm_name!r} (pretrained={pretrained}): {err}. Check "
            "the name with timm.list_models('vit*'); pretrained weights must already be in the "
            "Hugging Face / torch hub cache because this project never downloads at run time"
        ) from err
    cfg = backbone.pretrained_cfg or {}
    pe = backbone.patch_embed
    config = ViTConfig(**{**asdict(config),
                          "image_size": pe.img_size[0], "patch_size": pe.patch_size[0],
                          "n_classes": backbone.num_classes, "dim": backbone.embed_dim,
                          "depth": len(backbone.blocks), "in_chans": pe.proj.in_channels,
                          "global_pool": backbone.global_pool, "fused_attn": True,
                          "mean": tuple(cfg.get("mean", config.mean)),
                          "std": tuple(cfg.get("std", config.std))})
    return ViT(config, backbone)


def as_vit(backbone: VisionTransformer, config: ViTConfig | None = None) -> ViT:
    """A timm VisionTransformer you already have (trained, fine-tuned, loaded from a file) as a
    `ViT` whose patches can be dropped: the same module and weights, its geometry read from it,
    its input normalisation from its timm pretrained config (else `config`'s, else 0.5 / 0.5)."""
    # create_vit reads a created model's config the same way but keeps its own lines: its code is
    # part of every trained ViT's checkpoint key, and a shared helper would retrain them all
    if isinstance(backbone, ViT):
        return backbone
    if not isinstance(backbone, VisionTransformer):
        raise TypeError(f"as_vit wraps a timm VisionTransformer, got {type(backbone).__name__}")
    config = config or ViTConfig()
    cfg = getattr(backbone, "pretrained_cfg", None) or {}     # set by timm.create_model only
    pe, blocks = backbone.patch_embed, backbone.blocks
    return ViT(ViTConfig(**{**asdict(config),
                            "image_size": pe.img_size[0], "patch_size": pe.patch_size[0],
                            "n_classes": backbone.num_classes, "dim": backbone.embed_dim,
                            "depth": len(blocks), "in_chans": pe.proj.in_channels,
                            "heads": blocks[0].attn.num_heads if len(blocks) else config.heads,
                            "global_pool": backbone.global_pool, "fused_attn": True,
                            "mean": tuple(cfg.get("mean", config.mean)),
                            "std": tuple(cfg.get("std", config.std)),
                            "timm_name": config.timm_name or cfg.get("architecture", "")}),
               backbone)
