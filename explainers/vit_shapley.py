"""ViT-Shapley (Covert, Kim & Lee 2023): an amortized Shapley explainer of a frozen ViT."""

from __future__ import annotations

from torch import Tensor, nn

from explainers.core import Players, Result, register
from explainers.learned_shap_posthoc import amortized


@register("vit_shapley", gradients=False, randomness=False)
def vit_shapley(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
                explainer: nn.Module | None = None) -> Result:
    """phi of the frozen `model`'s masking game from a trained ViT-Shapley explainer.

    The explainer is the model's ViT fine-tuned with one more attention block and an MLP per
    token (`models.posthoc.TokenShapleyHead`), trained on the model's game with the
    Shapley-kernel least-squares loss (paired coalitions, additive efficient normalisation).
    Our plain ViTs were trained with random token dropping, so ViT-Shapley's first step (a
    surrogate fine-tuned to accept held-out patches) is the model itself. Cost: the model's
    prediction and one explainer forward. Deterministic: `seed` is unused.
    """
    return amortized("vit_shapley", ("vit_shapley",), model, x, target, players, explainer,
                     "vit_shapley_vit_patches")
