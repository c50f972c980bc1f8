"""The zoo's kinds for the co-trained LearnedSHAP models (`models.kinds`): a Harsanyi head on a ViT
or a 3D-ResNet (`models.harsanyi`), the patch-local ViT (`models.patch_vit`) and the
tubelet-local 3D-ResNet (`models.tubelet_r3d`), each trained with its classifier under the
consistency loss (`learned_shap_loss`, its weight ramped in over `warmup_epochs`, its coalitions
from `sampler`) and the recipe's gradient clipping.
"""

from __future__ import annotations

from torch import nn

from models.harsanyi import LearnedShapR3D, LearnedShapViT, learned_shap_loss
from models.kinds import RECIPE_CLIP_NORM, Kind, ModelSpec, backbone, head_options, register_kind
from models.patch_vit import LearnedShapPatchViT
from models.resnet_3d import ResNet3DConfig
from models.train import LossFn
from models.tubelet_r3d import LearnedShapTubeletR3D


def learned_vit(spec: ModelSpec) -> nn.Module:
    return LearnedShapViT(backbone(spec), **head_options(spec))


def learned_r3d(spec: ModelSpec) -> nn.Module:
    return LearnedShapR3D(backbone(spec), **head_options(spec))


def learned_loss(spec: ModelSpec, steps_per_epoch: int, counter: list[int] | None) -> LossFn:
    # every row gets a random coalition for the consistency term (drop_prob 1 there); the
    # classification term always sees the full input
    warmup = round(spec.head.get("warmup_epochs", 1) * steps_per_epoch)
    return learned_shap_loss(spec.head.get("consistency", 1.0), warmup_steps=warmup,
                             sampler=spec.head.get("sampler", "uniform"))


def learned_patch_vit(spec: ModelSpec) -> nn.Module:
    return LearnedShapPatchViT(backbone(spec), **head_options(spec))


def learned_tubelet_r3d(spec: ModelSpec) -> nn.Module:
    return LearnedShapTubeletR3D(ResNet3DConfig(**spec.config), **head_options(spec))


register_kind("learned_vit", Kind(learned_vit, learned_loss, clip_norm=RECIPE_CLIP_NORM))
register_kind("learned_r3d", Kind(learned_r3d, learned_loss, clip_norm=RECIPE_CLIP_NORM))
register_kind("learned_patch_vit",
              Kind(learned_patch_vit, learned_loss, clip_norm=RECIPE_CLIP_NORM))
register_kind("learned_tubelet_r3d",
              Kind(learned_tubelet_r3d, learned_loss, clip_norm=RECIPE_CLIP_NORM))
