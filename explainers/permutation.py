"""Shapley values of the masking game estimated from random permutations (antithetic pairs)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from explainers.base import Players, Result, games, register, uncounted


@register("permutation")
def permutation(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
                budget: int = 2048, removal: str = "auto", baseline: str | Tensor = "blur",
                output: str = "logit", batch_size: int = 1024, antithetic: bool = True) -> Result:
    """Permutation-sampling Shapley values with about `budget` model rows per input.

    Each input uses the same `seed`, so its values do not depend on its place in the batch.
    Removal as for `exact`.
    """
    from shapley.sampling import permutation_shapley

    values, rows = [], 0
    per_input = games(model, x, players, removal=removal, baseline=baseline,
                      batch_size=batch_size, output=output)
    for game, k in zip(per_input, target.tolist(), strict=True):
        res = permutation_shapley(game, players.n, budget, seed=seed, antithetic=antithetic)
        values.append(res.values[:, k])                                   # (N,)
        rows += uncounted(game)
    return Result(values=torch.stack(values).float().to(x.device), uncounted_forwards=rows)
