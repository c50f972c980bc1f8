"""LearnedSHAP: Shapley values read off a trained Harsanyi head, in one forward pass."""

from __future__ import annotations

from torch import Tensor, nn

from explainers.core import Players, Result, register
from models.harsanyi import LearnedShapR3D, LearnedShapViT
from models.tubelet_r3d import LearnedShapTubeletR3D


@register("learned_shap", gradients=False, randomness=False)
def learned_shap(model: nn.Module, x: Tensor, target: Tensor, players: Players, *,
                 seed: int) -> Result:
    """phi_i = c_i + 1/2 sum_j c_ij of the model's LearnedSHAP head, and its pair terms.

    The values are efficient for the model's own game (`shapley_values`): one forward pass for
    a ViT or the tubelet-local 3D-ResNet, whose empty coalition is the head's bias; two forward
    rows per clip for the whole-clip 3D-ResNet, whose empty clip (the blur) has an output of its
    own.
    extras "pairs" (B, N, N) holds the learned pair contributions c_ij of the target class.
    The players are the model's own (ViT patches, or the tubelets its head was built on).
    Deterministic: `seed` is unused.
    """
    if not isinstance(model, LearnedShapViT | LearnedShapR3D | LearnedShapTubeletR3D):
        raise ValueError(f"learned_shap explains models with a LearnedSHAP head, not "
                         f"{type(model).__name__}; train one, e.g. "
                         "models.zoo.load('learned_vit_patches').model")
    own = model.grid if isinstance(model, LearnedShapViT) else model.tubelets
    if players.grid is None or tuple(players.grid) != tuple(own):
        raise ValueError(f"learned_shap values belong to the head's own players (grid {own}); "
                         f"got players {players.kind} with grid {players.grid}: drop "
                         "feature_mask, or pass tubelets=" + str(own))
    out = model.shapley_values(x)
    k = target.view(-1, 1, 1)                                            # (B, 1, 1)
    values = out.shapley.gather(2, k.expand(-1, model.n_players, 1))[..., 0]   # (B, N)
    extras = {}
    if out.pair is not None:
        n = model.n_players
        extras["pairs"] = out.pair.gather(3, k[..., None].expand(-1, n, n, 1))[..., 0]
    return Result(values=values, extras=extras)
