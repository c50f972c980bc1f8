"""Post-hoc LearnedSHAP on video: a Shapley explainer network for a frozen 3D-ResNet.

The video counterpart of `models.posthoc` (the setting of ViT-Shapley, Covert, Kim & Lee 2023):
the plain 3D-ResNet is given and never changes; its game removes a tubelet by replacing its pixels
with the blurred clip's (`TubeletPlayers` declares that game, on a tubelet grid). The explainer is a
copy of the 3D-ResNet whose feature grid, pooled to the tubelets, feeds a Harsanyi head, fine-tuned
on the frozen game alone: Shapley-kernel coalitions, each with its complement, and the mean squared
gap between the decomposition g(S) = v(empty) + sum_{i in S} c_i + sum_{i<j in S} c_ij and v(S).

Both ends are exact. Unlike a ViT's, the empty clip here (the blur) has an output of its own that
depends on the input, so v(empty) is one more forward of the frozen model per clip, in training and
at explanation time; the additive efficient normalisation then shifts every unary term so that phi
sums to v(N) - v(empty). An explanation costs three forward rows: the explainer, v(N) and v(empty).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.harsanyi import HeadOutput, LearnedShapR3D
from models.kinds import Kind, ModelSpec, frozen_model, head_options, register_kind
from models.posthoc import coalition_values, efficient
from models.train import LossFn
from models.tubelet_players import TubeletPlayers
from shapley.sampling import paired_kernel_coalitions


class PostHocVideoShap(nn.Module):
    """An explainer for a frozen 3D-ResNet: a LearnedSHAP 3D-ResNet built on its copy.

    `backbone` is the co-trained design's `LearnedShapR3D` (the feature grid pooled to tubelets,
    a Harsanyi head, the same removal), here fine-tuned on the frozen model's game instead.
    """

    kind = "harsanyi"
    head_tokens = "patches"

    def __init__(self, model: nn.Module, tubelets: tuple[int, int, int] = (2, 2, 2),
                 rank: int = 8, pairwise: bool = True, baseline: str = "blur"):
        super().__init__()
        if not (hasattr(model, "forward_features") and hasattr(model, "head")):
            raise TypeError(f"post-hoc video LearnedSHAP explains our 3D-ResNets "
                            f"(models.resnet_3d.ResNet3D), not {type(model).__name__}")
        backbone = copy.deepcopy(model)                  # fine-tuned; the frozen one is not
        backbone.requires_grad_(True)
        self.backbone = LearnedShapR3D(backbone, tubelets, baseline, rank, pairwise)

    n_players = property(lambda self: self.backbone.n_players)
    n_classes = property(lambda self: self.backbone.n_classes)
    grid = property(lambda self: self.backbone.tubelets)

    def removed(self, x: Tensor) -> Tensor:
        """The clips with every tubelet removed: what the frozen model's v(empty) is taken on."""
        return self.backbone.removed(x)

    def decompose(self, x: Tensor, v_full: Tensor, v_empty: Tensor) -> HeadOutput:
        """The head's terms made efficient for the frozen game: phi sums to v(N) - v(empty).

        x (B, C, T, H, W); v_full, v_empty (B, K): the frozen model on x and on `removed(x)`.
        The returned `bias` is v(empty) (B, K).
        """
        return efficient(self.backbone.explain(x), v_full, v_empty)


def posthoc_video_loss(game: TubeletPlayers, coalitions: int = 16,
                       counter: list[int] | None = None):
    """The training loss of a PostHocVideoShap on the frozen model's tubelet game.

    Each clip gets `coalitions` coalitions (half from the Shapley kernel, half their complements)
    plus its two ends; `counter` accumulates the frozen model's evaluations ([n]).
    """
    if coalitions < 2 or coalitions % 2:
        raise ValueError(f"coalitions must be an even number >= 2 (pairs), got {coalitions}")
    game.eval()

    def loss_fn(explainer: nn.Module, batch: dict[str, Tensor], gen: torch.Generator):
        x = batch["x"]
        B, n = len(x), explainer.n_players
        keep = paired_kernel_coalitions(n, B, coalitions // 2, gen).to(x.device)  # (B, M, N)
        with torch.no_grad():
            v_full, v_empty = game(x), game(game.removed(x))                    # (B, K) each
            v_keep = game.coalition_values(x, keep)                            # (B, M, K)
        if counter is not None:
            counter[0] += B * (coalitions + 2)
        out = explainer.decompose(x, v_full, v_empty)
        g = coalition_values(replace(out, bias=out.bias[:, None]), keep)       # (B, M, K)
        return F.mse_loss(g, v_keep), v_full

    return loss_fn


# --- the zoo's kinds (models.kinds): how a spec builds this module's models, and their loss ---
def posthoc_r3d(spec: ModelSpec) -> nn.Module:
    return PostHocVideoShap(frozen_model(spec).model, **head_options(spec))


def posthoc_r3d_loss(spec: ModelSpec, steps_per_epoch: int, counter: list[int] | None) -> LossFn:
    return posthoc_video_loss(frozen_model(spec), spec.head.get("coalitions", 16), counter)


register_kind("posthoc_r3d", Kind(posthoc_r3d, posthoc_r3d_loss))
