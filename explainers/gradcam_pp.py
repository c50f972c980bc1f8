"""GradCAM++ (Chattopadhyay et al. 2018) with pytorch-grad-cam: ViT tokens or CNN features."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from explainers.core import (
    Players,
    Result,
    find_timm_vit,
    head_reads_class_token,
    register,
    resolve_layer,
    unsupported,
)


def token_grid(n_prefix: int, grid: tuple[int, int]) -> Callable[[Tensor], Tensor]:
    """Reshape transform: ViT tokens (B, P + N, D) -> a feature map (B, D, gh, gw)."""

    def reshape(tokens: Tensor) -> Tensor:
        patches = tokens[:, n_prefix:]                                       # (B, N, D)
        return patches.reshape(len(tokens), *grid, -1).permute(0, 3, 1, 2)

    return reshape


@register("gradcam_pp")
def gradcam_pp(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
               target_layer: str | nn.Module | None = None, batch_size: int = 32) -> Result:
    """GradCAM++ pixel map (B, H, W) or (B, T, H, W), scaled to [0, 1] per input.

    The default layer is one whose activations reach the logits of the model explained: for a
    ViT classified by its class token, the last block's first norm (the patch tokens its
    attention reads; after the last block only the class token reaches the head, so the patch
    tokens there have no gradient); for a ViT whose head reads the patch tokens (LearnedSHAP,
    mean pooling), the final norm, whose patch tokens are the head's input; for a CNN, its
    `feature_layer` (the ResNets' last stage, which the head pools; a tubelet-local model's maps
    of every tubelet tiled back into the clip's grid by its `tile`). `target_layer` overrides
    it: a module of the model or its name (a ResNet's `blocks()`, e.g. "layer2.0").
    """
    from pytorch_grad_cam import GradCAMPlusPlus
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    vit = find_timm_vit(model)
    reshape = None
    if target_layer is None:
        if vit is not None:
            target_layer = vit.blocks[-1].norm1 if head_reads_class_token(model) else vit.norm
            reshape = token_grid(vit.num_prefix_tokens, tuple(vit.patch_embed.grid_size))
        elif isinstance(getattr(model, "feature_layer", None), nn.Module):
            target_layer = model.feature_layer
        else:
            raise unsupported("gradcam_pp", model, "it has no feature_layer (its last "
                              "convolutional stage)", "gradcam_pp with target_layer=<that "
                              "layer>, or gradient_shap")
    else:
        target_layer = resolve_layer(model, target_layer, "gradcam_pp")
    if vit is not None and reshape is None:
        reshape = token_grid(vit.num_prefix_tokens, tuple(vit.patch_embed.grid_size))
    if vit is None:   # a tubelet-local model's trunk runs on each tubelet: tile its maps
        reshape = getattr(model, "tile", None)
    # grad-cam 1.5.7 handles 5-D activations itself: GradCAM++ weights sum over every axis after
    # the channels, get_cam_image has a 3D branch and scale_cam_image resizes volumes with scipy's
    # zoom, so the 3D-ResNet needs no CAM of our own.
    cam = GradCAMPlusPlus(model, [target_layer], reshape_transform=reshape)
    maps = []
    try:   # not `with cam:`, whose __exit__ swallows IndexErrors
        for chunk, t in zip(x.split(batch_size), target.split(batch_size), strict=True):
            chunk = chunk.clone().requires_grad_()       # parameters are frozen: grads via input
            targets = [ClassifierOutputTarget(k) for k in t.tolist()]
            maps.append(torch.from_numpy(cam(chunk, targets)))              # (b, *S) in [0, 1]
    finally:
        cam.activations_and_grads.release()
    return Result(pixel_map=torch.cat(maps).float().to(x.device))
