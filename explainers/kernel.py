"""KernelSHAP (Lundberg & Lee 2017) on the masking game: a weighted regression over coalitions."""

from __future__ import annotations

from torch import Tensor, nn

from explainers.core import Players, Result, per_input_values, register


@register("kernel")
def kernel(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
           budget: int = 2048, removal: str = "auto", baseline: str | Tensor = "blur",
           output: str = "logit", batch_size: int = 1024, paired: bool = True) -> Result:
    """KernelSHAP values with about `budget` model rows per input (paired coalition sampling).

    Each input uses the same `seed`, so its values do not depend on its place in the batch.
    Removal as for `exact`.
    """
    from shapley.sampling import kernel_shap

    return per_input_values(
        model, x, target, players,
        lambda game: kernel_shap(game, players.n, budget, seed=seed, paired=paired).values,
        removal=removal, baseline=baseline, batch_size=batch_size, output=output)
