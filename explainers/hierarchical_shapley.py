"""Hierarchical exact Shapley values: exact among quadrants (octants of a clip), recursing."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from explainers.core import Players, Result, games, register


@register("hierarchical_shapley", gradients=False, randomness=False)
def hierarchical_shapley(model: nn.Module, x: Tensor, target: Tensor, players: Players, *,
                         seed: int, tolerance: float = 0.0, removal: str = "auto",
                         baseline: str | Tensor = "blur", output: str = "logit",
                         batch_size: int = 1024) -> Result:
    """Exact Shapley values of the four quadrants (eight octants of a clip's tubelets), then of
    the quadrants inside each quadrant whose share passes `tolerance` (a fraction of
    |v(N) - v({})|), down to single patches or tubelets; see shapley.hierarchical.

    Efficient by construction (the values sum to v(N) - v({})); exact on games whose
    interactions stay inside the quadrants; 16 + 4 x 14 = 72 coalitions for a 4 x 4 grid instead
    of 2^16. The players must form a grid (a ViT's patches or a tubelet grid), not a free
    feature_mask. Removal as for "exact". Deterministic: `seed` is unused.
    """
    from shapley.hierarchical import hierarchical_shapley as solve

    if players.grid is None:
        raise ValueError("hierarchical_shapley splits a grid of players into quadrants; give "
                         "the model's patches or tubelets=(t, h, w), not a free feature_mask")
    values, evals = [], []
    per_input = games(model, x, players, removal=removal, baseline=baseline,
                      batch_size=batch_size, output=output)
    for game, k in zip(per_input, target.tolist(), strict=True):
        res = solve(game, tuple(players.grid), tolerance=tolerance, target=k,
                    batch_size=batch_size)
        values.append(res.values[:, k])                                      # (N,)
        evals.append(res.n_evals)
    return Result(values=torch.stack(values).float().to(x.device),
                  extras={"coalitions": evals})
