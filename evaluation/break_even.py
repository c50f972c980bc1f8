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

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from evaluation.metrics import rel_l2
from evaluation.references import Reference, game_for, resolved
from shapley.leverage import leverage_shap
from shapley.sampling import SAMPLERS, min_budget
from shapley.shapiq_samplers import QUADRATIC, SHAPIQ, shapiq_sampler

# Every sampler a break-even can run: ours (all classes at once), Leverage SHAP (Musco & Witter
# 2025, ours: shapiq 1.4.1 has none) and shapiq's Shapley-value approximators (one class a call).
ALL_SAMPLERS = [*SAMPLERS, "leverage", *SHAPIQ]
QUADRATIC_LIMIT = 64      # players beyond which the samplers in QUADRATIC are skipped
# Samplers too slow per call for a study on 2 cores beyond some player count, with what one call
# took here (2 CPU threads, a cheap synthetic game, budget 32n): their cost is the library's own
# bookkeeping, not the model's evaluations. They run with the first sampler seed only.
SLOW = {"shapiq_svarm": (64, "135 s a call at 196 players and 32n (2.8 s at 64): shapiq's SVARM "
                             "updates its strata in a Python loop per coalition and player"),
        "shapiq_proxyspex": (16, "18 s a call at 64 players and 32n (5.8 s at 16): it fits a "
                                 "LightGBM proxy and its Fourier transform per call")}


def skip_reason(name: str, n: int) -> str | None:
    """Why sampler `name` does not run on n players, or None when it does."""
    if name not in ALL_SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {ALL_SAMPLERS}")
    # the measured cost first: a sampler skipped for it never reaches the quadratic limit
    if name in SLOW and n > SLOW[name][0]:
        return f"skipped at {n} players: {SLOW[name][1]}"
    if name in QUADRATIC and n > QUADRATIC_LIMIT:
        return (f"skipped at {n} players: its regression holds all {n * (n - 1) // 2:,} pairs, "
                "so memory and time grow with n^2 coefficients x the budget's coalitions")
    return None


def estimate(name: str, game, n: int, budget: int, seed: int, target: int) -> tuple[Tensor, int]:
    """Sampler `name`'s Shapley values of class `target`, (n,) float64, and its evaluations."""
    if name in SAMPLERS:
        res = SAMPLERS[name](game, n, budget=budget, seed=seed)
        return res.values[:, target].double().cpu(), res.n_evals
    if name == "leverage":
        res = leverage_shap(game, n, budget=budget, seed=seed)
        return res.values[:, target].double().cpu(), res.n_evals
    res = shapiq_sampler(name)(game, n, budget=budget, seed=seed, output=target)
    return res.values[:, 0].double().cpu(), res.n_evals


def smallest_budget(name: str, n: int) -> int:
    """The smallest budget sampler `name` accepts (shapiq's take any; the grid starts at 2n)."""
    if name in SAMPLERS:
        return min_budget(name, n)
    return min_budget("kernel", n) if name == "leverage" else 2


def doubling_grid(n: int, largest: int, factor: int = 2) -> list[int]:
    """Budgets 2n, 4n, 8n, ... up to `largest` (at least the first); with `factor` 4: 2n, 8n, ..."""
    grid = [2 * n]
    while grid[-1] * factor <= largest:
        grid.append(grid[-1] * factor)
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
    """Each sampler's mean error against the references at every budget it accepts.

    Samplers that cannot run on this many players (`skip_reason`) are left out; each point holds
    the mean evaluations made, the mean and spread of the error, and the seconds per estimate.
    """
    n = model.n_players
    games = [game_for(model, x) for x in xs]
    curves = {}
    for name in samplers:
        if skip_reason(name, n):
            continue
        curve = []
        for budget in [b for b in budgets if b >= smallest_budget(name, n)]:
            errs, evals = [], []
            start = time.perf_counter()
            try:
                for game, k, ref in tqdm(list(zip(games, targets, references, strict=True)),
                                         leave=False, desc=f"{name} @ {budget}",
                                         disable=not progress):
                    for seed in seeds[:1] if name in SLOW else seeds:
                        values, n_evals = estimate(name, game, n, budget, seed, int(k))
                        errs.append(rel_l2(values, ref.values[:, k]))
                        evals.append(n_evals)
            except Exception as e:       # a library sampler that cannot run at this budget
                curve.append({"budget": budget, "failed": f"{type(e).__name__}: {e}"})
                continue
            curve.append({"budget": budget, "evals": float(np.mean(evals)),
                          "rel_l2": float(np.mean(errs)), "rel_l2_std": float(np.std(errs)),
                          "seconds": (time.perf_counter() - start) / len(errs)})
        curves[name] = curve
    return curves


def completed(curve: Sequence[dict]) -> list[dict]:
    """The points of a curve whose sampler ran (budgets it failed at are left out)."""
    return [p for p in curve if "failed" not in p]


def break_even(curves: dict[str, list[dict]], target_error: float,
               reference_noise: float = 0.0) -> dict:
    """Every sampler's break-even against `target_error`, the best sampler, and whether the
    reference resolves the comparison."""
    out = {"target_error": target_error, "reference_noise": reference_noise,
           "resolved": resolved(target_error, reference_noise), "samplers": {}}
    for name, curve in curves.items():
        if not completed(curve):
            continue
        # a point whose error is below three times the reference noise is only a bound
        curve = [{**p, "resolved": resolved(p["rel_l2"], reference_noise)}
                 for p in completed(curve)]
        out["samplers"][name] = {"curve": curve, **first_reached(curve, target_error)}
    def rank(name: str) -> tuple:          # reached first, by evaluations; then by final error
        s = out["samplers"][name]
        never = s["relation"] == ">"
        return never, s["curve"][-1]["rel_l2"] if never else s["evals"]

    out["best"] = min(out["samplers"], key=rank)
    return out
