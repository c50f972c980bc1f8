"""ViT-Shapley's surrogate: a classifier fine-tuned to accept held-out patches.

Covert, Kim & Lee (ICLR 2023) explain a ViT that was not trained with missing patches through a
surrogate: a copy of it fine-tuned so that, with any subset of patches dropped, it predicts what
the classifier predicts on the whole image (KL divergence to the classifier's full-input
distribution, random subsets drawn uniformly in size). The game ViT-Shapley then explains is the
surrogate's token-dropping game. This project's own ViTs are trained with random token dropping
(`drop_prob`), so they are their own surrogates; a pretrained timm ViT is not.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.kinds import Kind, ModelSpec, frozen_model, register_kind
from models.train import LossFn, random_keep


def surrogate_from(classifier: nn.Module) -> nn.Module:
    """The surrogate before fine-tuning: a trainable copy of the classifier."""
    model = copy.deepcopy(classifier)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train()


def surrogate_loss(classifier: nn.Module, drop_prob: float = 0.5) -> LossFn:
    """KL(classifier(x) || surrogate(x with random patches dropped)) on a `drop_prob` share of rows
    (the others keep every patch), plus nothing else: the labels are never read."""
    classifier = classifier.eval()
    for p in classifier.parameters():
        p.requires_grad_(False)

    def loss_fn(model: nn.Module, batch: dict[str, Tensor], gen: torch.Generator):
        x = batch["x"]
        with torch.no_grad():
            target = F.log_softmax(classifier(x).float(), -1)                       # (B, K)
        keep = random_keep(len(x), model.n_players, drop_prob, gen, x.device)      # (B, N)
        logits = model(x, keep)
        loss = F.kl_div(F.log_softmax(logits.float(), -1), target, log_target=True,
                        reduction="batchmean")
        return loss, logits

    return loss_fn


# --- the zoo's kinds (models.kinds): how a spec builds this module's models, and their loss ---
def surrogate_vit(spec: ModelSpec) -> nn.Module:
    return surrogate_from(frozen_model(spec))


def surrogate_vit_loss(spec: ModelSpec, steps_per_epoch: int, counter: list[int] | None) -> LossFn:
    return surrogate_loss(frozen_model(spec), spec.head.get("drop_prob", 0.5))


register_kind("surrogate_vit", Kind(surrogate_vit, surrogate_vit_loss))
