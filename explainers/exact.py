"""Exact Shapley values of the masking game (2^N coalitions), with pairwise interactions."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from explainers.core import Players, Result, games, register

MAX_PLAYERS = 20      # 2^20 model rows per input is already hours on a CPU


@register("exact", gradients=False, randomness=False)
def exact(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
          removal: str = "auto", baseline: str | Tensor = "blur", output: str = "logit",
          batch_size: int = 1024, interactions: bool = True) -> Result:
    """Exact Shapley values from all 2^N coalitions' scores, and pairwise interactions.

    extras "pairs" (B, N, N) is the pairwise Shapley interaction index, "pairs_harsanyi"
    (B, N, N) the pair dividends v(ij) - v(i) - v(j) + v({}).

    Removal is ViT token dropping by default ("auto"), else `baseline` replacement ("blur",
    "zeros", "mean" or a tensor); see shapley.game. Deterministic: `seed` is unused.
    """
    from shapley.exact import exact_shapley

    if players.n > MAX_PLAYERS:
        raise ValueError(f"exact needs 2^{players.n} model rows per input for {players.n} "
                         f"players; use at most {MAX_PLAYERS} players, or method 'permutation' "
                         "or 'kernel' with a budget")
    values, pairs, harsanyi = [], [], []
    per_input = games(model, x, players, removal=removal, baseline=baseline,
                      batch_size=batch_size, output=output)
    for game, k in zip(per_input, target.tolist(), strict=True):
        res = exact_shapley(game, players.n, interactions=interactions)
        values.append(res.values[:, k])                                   # (N,)
        if interactions:
            pairs.append(res.pairs_sii[:, :, k])                          # (N, N)
            harsanyi.append(res.pairs_harsanyi[:, :, k])
    extras = {"pairs": torch.stack(pairs).float(),                       # (B, N, N)
              "pairs_harsanyi": torch.stack(harsanyi).float()} if interactions else {}
    return Result(values=torch.stack(values).float().to(x.device), extras=extras)
