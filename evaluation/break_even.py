"""Break-even: the fewest model evaluations at which a sampler is as exact as a one-pass explainer.

Samplers run on a doubling grid of budgets starting at 2n, one antithetic pair of permutations
(the smallest budget permutation sampling accepts, and exact for any game without interactions
above order two). At each budget the error is the relative L2 distance to the reference, averaged
over the same examples and several seeds. The break-even is the first budget whose mean error is
at or below the explainer's:

- reached at the grid's first budget: "≤ N" (the sampler may need even fewer);
- reached later: N, the smallest budget on the doubling grid (the true value lies above half);
- never reached: "> N" for the largest budget tried.

Against a sampled reference, the comparison is only as good as the reference: when its noise is
more than a third of the explainer's error, the break-even is marked unresolved.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from evaluation.metrics import rel_l2
from evaluation.references import Reference, game_for, resolved
from shapley.sampling import SAMPLERS, min_budget


def doubling_grid(n: int, largest: int) -> list[int]:
    """Budgets 2n, 4n, 8n, ... up to `largest` (at least the first)."""
    grid = [2 * n]
    while grid[-1] * 2 <= largest:
        grid.append(grid[-1] * 2)
    return grid


def first_reached(curve: Sequence[dict], target_error: float) -> dict:
    """The break-even on one sampler's curve [{evals, rel_l2}, ...] (in grid order).

    Returns {"evals": the evaluations at the first budget whose error is <= target_error (or the
    largest tried), "relation": "≤" (at the first budget), "=" (later) or ">" (never)}.
    """
    if not curve:
        raise ValueError("the curve is empty: run the sampler on at least one budget")
    for i, point in enumerate(curve):
        if point["rel_l2"] <= target_error:
            return {"evals": point["evals"], "relation": "≤" if i == 0 else "="}
    return {"evals": curve[-1]["evals"], "relation": ">"}


def describe(be: dict) -> str:
    """A break-even as text: "≤ 32", "254" or "> 2,048"."""
    evals = f"{be['evals']:,.0f}"
    return evals if be["relation"] == "=" else f"{be['relation']} {evals}"


def sampler_curves(model, xs: Sequence[torch.Tensor], targets: Sequence[int],
                   references: Sequence[Reference], budgets: Sequence[int],
                   seeds: Sequence[int] = (0, 1), samplers: Sequence[str] = tuple(SAMPLERS),
                   progress: bool = True) -> dict[str, list[dict]]:
    """Each sampler's mean error against the references at every budget it accepts."""
    n = model.n_players
    games = [game_for(model, x) for x in xs]
    curves = {}
    for name in samplers:
        curve = []
        for budget in [b for b in budgets if b >= min_budget(name, n)]:
            errs, evals = [], []
            for game, k, ref in tqdm(list(zip(games, targets, references, strict=True)),
                                     leave=False, desc=f"{name} @ {budget}",
                                     disable=not progress):
                for seed in seeds:
                    est = SAMPLERS[name](game, n, budget=budget, seed=seed)
                    errs.append(rel_l2(est.values[:, k], ref.values[:, k]))
                    evals.append(est.n_evals)
            curve.append({"budget": budget, "evals": float(np.mean(evals)),
                          "rel_l2": float(np.mean(errs)), "rel_l2_std": float(np.std(errs))})
        curves[name] = curve
    return curves


def break_even(curves: dict[str, list[dict]], target_error: float,
               reference_noise: float = 0.0) -> dict:
    """Every sampler's break-even against `target_error`, the best sampler, and whether the
    reference resolves the comparison."""
    out = {"target_error": target_error, "reference_noise": reference_noise,
           "resolved": resolved(target_error, reference_noise), "samplers": {}}
    for name, curve in curves.items():
        # a point whose error is below three times the reference noise is only a bound
        curve = [{**p, "resolved": resolved(p["rel_l2"], reference_noise)} for p in curve]
        out["samplers"][name] = {"curve": curve, **first_reached(curve, target_error)}
    def rank(name: str) -> tuple:          # reached first, by evaluations; then by final error
        s = out["samplers"][name]
        never = s["relation"] == ">"
        return never, s["curve"][-1]["rel_l2"] if never else s["evals"]

    out["best"] = min(out["samplers"], key=rank)
    return out
