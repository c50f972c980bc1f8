"""What kind of model an explainer faces: a ViT with patches, a video model, its device, classes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch import Tensor, nn


def model_device(model: nn.Module) -> torch.device:
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def model_name(model: nn.Module) -> str:
    return type(model).__name__


def is_vit(model: nn.Module) -> bool:
    """A ViT whose players are its own patches (models.vit.ViT and models wrapping it)."""
    return hasattr(model, "patch_size") and hasattr(model, "grid")


def wrapped(model: nn.Module, depth: int = 5) -> Iterator[nn.Module]:
    """`model`, then the modules it wraps through `.backbone` (LearnedSHAP heads, ViT wrappers)."""
    m = model
    for _ in range(depth):
        if not isinstance(m, nn.Module):
            return
        yield m
        m = getattr(m, "backbone", None)


def find_timm_vit(model: nn.Module):
    """The timm VisionTransformer inside `model` (following `.backbone`), or None."""
    from timm.models.vision_transformer import VisionTransformer

    return next((m for m in wrapped(model) if isinstance(m, VisionTransformer)), None)


def find_resnet3d(model: nn.Module):
    """The 3D-ResNet inside `model` (ours or torchvision's r3d_18, following `.backbone`), or None."""
    from models.resnet_3d import ResNet3D, TorchvisionR3D

    return next((m for m in wrapped(model) if isinstance(m, (ResNet3D, TorchvisionR3D))), None)


def is_video_model(model: nn.Module) -> bool:
    """A model of clips (B, C, T, H, W): our 3D-ResNets and models wrapping them."""
    return find_resnet3d(model) is not None or any(hasattr(m, "tubelets") for m in wrapped(model))


def head_reads_class_token(model: nn.Module) -> bool:
    """Whether the ViT's logits come from its class token (timm's global_pool="token").

    False for a LearnedSHAP ViT, whose head reads the patch tokens, and for mean pooling.
    """
    if getattr(model, "head_tokens", None) == "patches":
        return False
    vit = find_timm_vit(model)
    return vit is not None and vit.global_pool == "token" and vit.num_prefix_tokens > 0


def n_classes(model: nn.Module, x: Tensor) -> int:
    """The number of classes: the model's `n_classes`, else from one forward row."""
    k = getattr(model, "n_classes", None)
    if isinstance(k, int):
        return k
    with torch.no_grad():
        return model(x[:1]).shape[-1]


def in_channels(model: nn.Module) -> int | None:
    """The input channels the model's config declares, if any (following `.backbone`)."""
    declared = (getattr(getattr(m, "config", None), "in_chans", None) for m in wrapped(model))
    return next((c for c in declared if isinstance(c, int)), None)


def evaluation_points(model: nn.Module) -> list[nn.Module]:
    """Modules that every model evaluation passes exactly once, row by row: where rows are counted.

    A ViT's final norm (timm's `norm`: plain forwards, token-dropping games and LearnedSHAP's
    decomposition all end there), a 3D-ResNet's stem, any other model's own forward. Counting
    there, rather than at `model.forward`, also sees the passes that call the backbone directly.
    """
    vit = find_timm_vit(model)
    if vit is not None and isinstance(vit.norm, nn.Module):
        return [vit.norm]
    r3d = find_resnet3d(model)
    if r3d is not None:
        return [r3d.stem if hasattr(r3d, "stem") else r3d.net.stem]
    if getattr(model, "removal", None) == "drop" and hasattr(model, "embed") and hasattr(model, "head"):
        return [model.head]     # tubelet tokens: a forward and a dropped coalition end in the head
    return [model]
