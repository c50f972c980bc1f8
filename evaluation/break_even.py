"""Break-even and speed-up at equal error: the fewest model evaluations at which a sampler is as
exact as a one-pass explainer, and that number over the explainer's own forward passes.

Samplers run on a grid of budgets: n + 1 (one permutation, the cheapest complete sampler run),
then 2n (one antithetic pair of permutations, exact for any game without interactions above
order two: so a head whose game is pairwise cannot be "more exact than one antithetic pair", and
the fair comparison is the speed-up at equal error), doubling up to the largest. At each budget
the error is the relative L2 distance to the reference, averaged over the same examples and
several seeds. The break-even is the first budget whose mean error is at or below the
explainer's:

- reached at the grid's first budget: "≤ N" (the sampler may need even fewer);
- reached later: N, the smallest budget on the grid (the true value lies above the budget
  before it);
- never reached: "> N" for the largest budget tried.

The speed-up is the break-even over the explainer's evaluations, with the same relation, and for
a break-even inside the grid the range it lies in. The same holds for pair terms (order-2
interactions) against shapiq's Faith-Shap approximators, with exact Faith-Shap as the reference.

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
from shapley.sampling import SAMPLERS, min_budget, permutation_shapley
from shapley.shapiq_samplers import (
    INTERACTIONS,
    QUADRATIC,
    SHAPIQ,
    shapiq_interactions,
    shapiq_sampler,
)

# Every sampler a break-even can run: ours (all classes at once: antithetic permutations,
# i.i.d. permutations, which alone run at n + 1 evaluations, and KernelSHAP), Leverage SHAP
# (Musco & Witter 2025, ours: shapiq 1.4.1 has none) and shapiq's Shapley-value approximators
# (one class a call).
ALL_SAMPLERS = [*SAMPLERS, "permutation_iid", "leverage", *SHAPIQ]
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
    if name == "permutation_iid":
        res = permutation_shapley(game, n, budget=budget, seed=seed, antithetic=False)
        return res.values[:, target].double().cpu(), res.n_evals
    if name == "leverage":
        res = leverage_shap(game, n, budget=budget, seed=seed)
        return res.values[:, target].double().cpu(), res.n_evals
    res = shapiq_sampler(name)(game, n, budget=budget, seed=seed, output=target)
    return res.values[:, 0].double().cpu(), res.n_evals


def smallest_budget(name: str, n: int) -> int:
    """The smallest budget sampler `name` accepts (shapiq's take any; the grid starts at n + 1)."""
    if name in SAMPLERS:
        return min_budget(name, n)
    if name == "permutation_iid":
        return min_budget("permutation", n, antithetic=False)
    return min_budget("kernel", n) if name == "leverage" else 2


def doubling_grid(n: int, largest: int, factor: int = 2) -> list[int]:
    """Budgets n + 1 (one permutation), then 2n, 4n, 8n, ... up to `largest` (at least 2n);
    with `factor` 4: n + 1, 2n, 8n, ..."""
    grid = [2 * n]
    while grid[-1] * factor <= largest:
        grid.append(grid[-1] * factor)
    return [n + 1, *grid]


def first_reached(curve: Sequence[dict], target_error: float) -> dict:
    """The break-even on one sampler's curve [{evals, rel_l2}, ...] (in grid order).

    Returns {"evals": the evaluations at the first budget whose error is <= target_error (or the
    largest tried), "relation": "≤" (at the first budget), "=" (later: the evaluations needed lie
    above "evals_before", the budget before it) or ">" (never)}.
    """
    if not curve:
        raise ValueError("the curve is empty: run the sampler on at least one budget")
    for i, point in enumerate(curve):
        if point["rel_l2"] <= target_error:
            if i == 0:
                return {"evals": point["evals"], "relation": "≤"}
            return {"evals": point["evals"], "relation": "=", "evals_before": curve[i - 1]["evals"]}
    return {"evals": curve[-1]["evals"], "relation": ">"}


def speed_up(reached: dict, explainer_evals: float) -> dict:
    """A break-even over the explainer's own evaluations: {"value", "relation", and for "=" the
    "low" end of the range the true speed-up lies in}."""
    if not explainer_evals > 0:
        raise ValueError(f"the explainer's evaluations must be positive, got {explainer_evals}")
    out = {"value": reached["evals"] / explainer_evals, "relation": reached["relation"]}
    if reached["relation"] == "=":
        out["low"] = reached["evals_before"] / explainer_evals
    return out


def describe_speed_up(s: dict | None) -> str:
    """"≤ 17", "17–34" (between two budgets of the grid) or "> 1,024"; "–" for none."""
    if s is None:
        return "–"
    value = f"{s['value']:,.3g}" if s["value"] < 1000 else f"{s['value']:,.0f}"
    if s["relation"] == "=":
        low = f"{s['low']:,.3g}" if s["low"] < 1000 else f"{s['low']:,.0f}"
        return f"{low}–{value}"
    return f"{s['relation']} {value}"


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
            def trial(game, k, ref, seed, budget=budget, name=name):
                values, n_evals = estimate(name, game, n, budget, seed, int(k))
                return rel_l2(values, ref.values[:, k]), n_evals

            curve.append(curve_point(budget, trial, list(zip(games, targets, references,
                                                             strict=True)),
                                     seeds[:1] if name in SLOW else seeds,
                                     f"{name} @ {budget}", progress))
        curves[name] = curve
    return curves


def curve_point(budget: int, trial, cases: list, seeds: Sequence[int], desc: str,
                progress: bool) -> dict:
    """One point of an error curve: `trial(game, k, ref, seed) -> (error, evaluations)` over
    every case (game, target, reference) and seed, averaged; a method that cannot run at this
    budget gives a "failed" point instead."""
    errs, evals = [], []
    start = time.perf_counter()
    try:
        for game, k, ref in tqdm(cases, leave=False, desc=desc, disable=not progress):
            for seed in seeds:
                err, n_evals = trial(game, k, ref, seed)
                errs.append(err)
                evals.append(n_evals)
    except Exception as e:       # a library method that cannot run at this budget
        return {"budget": budget, "failed": f"{type(e).__name__}: {e}"}
    return {"budget": budget, "evals": float(np.mean(evals)), "rel_l2": float(np.mean(errs)),
            "rel_l2_std": float(np.std(errs)), "seconds": (time.perf_counter() - start) / len(errs)}


def completed(curve: Sequence[dict]) -> list[dict]:
    """The points of a curve whose sampler ran (budgets it failed at are left out)."""
    return [p for p in curve if "failed" not in p]


def break_even(curves: dict[str, list[dict]], target_error: float,
               reference_noise: float = 0.0, explainer_evals: float | None = None) -> dict:
    """Every sampler's break-even against `target_error`, the best sampler, whether the
    reference resolves the comparison, and (given the explainer's evaluations) the speed-up at
    equal error: the best sampler's break-even over the explainer's evaluations."""
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
    if explainer_evals is not None:
        out["explainer_evals"] = explainer_evals
        out["speed_up"] = speed_up(overall(out["samplers"], out["best"]), explainer_evals)
    return out


def overall(samplers: dict[str, dict], best: str) -> dict:
    """The best sampler's break-even with every sampler's evidence: at each grid budget below the
    one where the best sampler matched, every sampler that ran there missed (else it would be
    the best), so the tried samplers need more than the largest such budget's evaluations. This
    turns the antithetic pair's "≤ 2n" (its first budget) into "between n + 1 and 2n" when one
    i.i.d. permutation ran at n + 1 and missed."""
    reached = samplers[best]
    if reached["relation"] == ">":
        return reached
    budget = next(p["budget"] for p in reached["curve"] if p["evals"] == reached["evals"])
    below = [p["evals"] for s in samplers.values() for p in s["curve"] if p["budget"] < budget]
    if not below:
        return reached
    return {**reached, "relation": "=",
            "evals_before": max(below + [reached.get("evals_before", 0.0)])}


def pair_curves(model, xs: Sequence[torch.Tensor], targets: Sequence[int],
                references: Sequence[Reference], budgets: Sequence[int],
                seeds: Sequence[int] = (0, 1), approximators: Sequence[str] = tuple(INTERACTIONS),
                progress: bool = True) -> dict[str, list[dict]]:
    """Each Faith-Shap approximator's mean error on the pair terms (upper triangle, relative L2)
    against the references' exact order-2 Faith-Shap index, at every budget: the curves a pair
    break-even reads, in `sampler_curves`' format."""
    if any(ref.pairs_faith is None for ref in references):
        raise ValueError("pair curves need references with exact Faith-Shap pairs (exact "
                         "references, at most 16 players)")
    n = model.n_players
    iu = torch.triu_indices(n, n, 1)
    if any(float(ref.pairs_faith[iu[0], iu[1], k].norm()) == 0
           for ref, k in zip(references, targets, strict=True)):
        raise ValueError("an example's exact Faith-Shap pairs are all zero, so no relative error "
                         "can be measured on it; leave it out")
    games = [game_for(model, x) for x in xs]
    curves = {}
    for name in approximators:
        run = shapiq_interactions(name)
        curve = []
        for budget in budgets:
            def trial(game, k, ref, seed, budget=budget, run=run):
                res = run(game, n, budget, seed=seed, output=int(k))
                exact = ref.pairs_faith[iu[0], iu[1], k]
                return rel_l2(res.pairs[iu[0], iu[1]], exact), res.n_evals

            curve.append(curve_point(budget, trial, list(zip(games, targets, references,
                                                             strict=True)),
                                     seeds, f"{name} @ {budget}", progress))
        curves[name] = curve
    return curves
