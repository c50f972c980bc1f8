"""Leverage SHAP (Musco & Witter 2025): KernelSHAP's regression on leverage-score samples.

KernelSHAP's constrained least squares over all 2^n - 2 coalitions has leverage scores that are
equal within a coalition size and, summed over a size, equal across sizes: sampling by leverage
means a size uniformly from 1..n-1, then a uniform subset of it (KernelSHAP instead draws sizes
from the Shapley kernel itself, crowding the smallest and largest). Following the paper, each
coalition comes with its complement (paired) and coalitions are drawn without replacement; the
regression reweights every sampled coalition by its kernel weight over its inclusion
probability. Here that is done size by size: the budget is spread evenly over the size pairs
(s, n - s), a size pair small enough is enumerated (weight: the kernel weight itself), and a
larger one gets a uniform sample without replacement, each weighted by the kernel weight times
C(n, s) / (its number of samples): an unbiased estimate of the full regression's normal equations.

Why our own: no released library implements it for batched torch games.
"""

from __future__ import annotations

import itertools
import math
import time

import torch

from shapley.exact import Game, coalition_masks, constrained_wls
from shapley.sampling import SamplingResult, _evaluate_distinct, _kernel_weights, min_budget


def leverage_shap(game: Game, n: int, budget: int, seed: int = 0,
                  batch_size: int = 4096) -> SamplingResult:
    """Shapley values (n, K) by Leverage SHAP with about `budget` game evaluations."""
    start = time.perf_counter()
    minimum = min_budget("kernel", n)
    if n < 2:
        raise ValueError(f"leverage_shap needs n >= 2 players, got n={n}")
    if budget < minimum:
        raise ValueError(f"leverage_shap: budget={budget} game evaluations is below the minimum "
                         f"{minimum} for n={n} players (v({{}}), v(N) and at least {n} "
                         "coalitions); raise the budget")
    weights = _kernel_weights(n)                                   # per coalition of size s
    if budget >= 2**n:                                             # enumerate: exact
        z = coalition_masks(n)[1:-1]
        w = weights[z.sum(1)]
    else:
        z, w = _stratified_pairs(n, budget - 2, weights, torch.Generator().manual_seed(seed))
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    values, n_evals = _evaluate_distinct(game, torch.cat([ends, z]), batch_size)
    phi = constrained_wls(z, values[2:] - values[0], w, values[1] - values[0])
    return SamplingResult(phi, n_evals, time.perf_counter() - start)


def _stratified_pairs(n: int, budget: int, weights: torch.Tensor,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Coalitions (C, n) and regression weights (C,): the budget spread evenly over size pairs,
    enumerated where it fits, sampled without replacement (with complements) where not."""
    pairs = [(s, n - s) for s in range(1, n // 2 + 1)]             # (s, n - s); s = n/2 alone
    count = [math.comb(n, s) * (1 if s == n - s else 2) for s, _ in pairs]
    share = [0] * len(pairs)
    left, open_ = budget, list(range(len(pairs)))
    while open_ and left > 0:                                      # water-filling
        each = left / len(open_)
        full = [i for i in open_ if count[i] - share[i] <= each]
        if not full:
            for i in open_:
                share[i] += int(each)
            break
        for i in full:
            left -= count[i] - share[i]
            share[i] = count[i]
            open_.remove(i)
    rows, w = [], []
    for (s, t), m, c in zip(pairs, share, count, strict=True):
        if m <= 0:
            continue
        if m >= c:                                                 # every coalition of both sizes
            z = _all_subsets(n, s)
            z = z if s == t else torch.cat([z, ~z])
            rows.append(z)
            w.append(weights[z.sum(1)])
            continue
        k = max(m // (1 if s == t else 2), 1)                      # coalitions of size s drawn
        z = _uniform_subsets(n, s, k, generator)
        if s != t:
            z = torch.cat([z, ~z])                                 # their complements, size t
        rows.append(z)
        # kernel weight / inclusion probability = (n-1) / (C(n,s) s t) * C(n,s) / k, written
        # without C(n, s), which overflows a float beyond about 1,030 players
        w.append(torch.full((len(z),), (n - 1) / (s * t * k), dtype=torch.float64))
    return torch.cat(rows), torch.cat(w)


def _all_subsets(n: int, size: int) -> torch.Tensor:
    """Every subset of `size` players, (C(n, size), n) bool, without enumerating all 2^n."""
    idx = torch.tensor(list(itertools.combinations(range(n), size)), dtype=torch.long)
    z = torch.zeros(len(idx), n, dtype=torch.bool)
    return z.scatter_(1, idx.view(len(idx), size), True)


def _uniform_subsets(n: int, size: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """`k` distinct uniform subsets of `size` players (k < C(n, size)): (k, n) bool."""
    out: dict[bytes, torch.Tensor] = {}
    while len(out) < k:
        rank = torch.rand(2 * (k - len(out)), n, generator=generator).argsort(1)
        for row in rank < size:
            key = row.numpy().tobytes()
            if key not in out and len(out) < k:
                out[key] = row
    return torch.stack(list(out.values()))
