"""Shapley values of the masking game estimated from random permutations (antithetic pairs)."""

from __future__ import annotations

from torch import Tensor, nn

from explainers.core import Players, Result, per_input_values, register


@register("permutation")
def permutation(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
                budget: int = 2048, removal: str = "auto", baseline: str | Tensor = "blur",
                output: str = "logit", batch_size: int = 1024, antithetic: bool = True) -> Result:
    """Permutation-sampling Shapley values with about `budget` model rows per input.

    Each input uses the same `seed`, so its values do not depend on its place in the batch.
    Removal as for `exact`.
    """
    from shapley.sampling import permutation_shapley

    return per_input_values(
        model, x, target, players,
        lambda game: permutation_shapley(game, players.n, budget, seed=seed, antithetic=antithetic).values,
        removal=removal, baseline=baseline, batch_size=batch_size, output=output)
