"""Shapley value estimators for games too large to enumerate: permutation sampling and KernelSHAP.

Why our own rather than shap's KernelExplainer or shapiq's approximators: ours evaluate batched
torch games for all K outputs at once, count the budget exactly in game evaluations (each distinct
coalition is evaluated once; v({}) and v(N) are shared by every sample), and draw from an explicit
torch.Generator. shap's KernelExplainer seeds numpy's global RNG and handles one model output
layout; shapiq's approximators explain one output at a time with per-call overhead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from .exact import Game, coalition_masks, constrained_wls, evaluate_coalitions


@dataclass
class SamplingResult:
    values: Tensor                      # (n, K) estimated Shapley values
    n_evals: int                        # distinct game evaluations made, v({}) and v(N) included
    seconds: float                      # wall time, game evaluations included


def _check_args(name: str, n: int, budget: int, minimum: int, why: str) -> None:
    if n < 2:
        raise ValueError(f"{name} needs n >= 2 players, got n={n}; with one player phi = "
                         "v(N) - v({}), no sampling needed")
    if budget < minimum:
        raise ValueError(f"{name}: budget={budget} game evaluations is below the minimum "
                         f"{minimum} for n={n} players ({why}); raise the budget")


def _evaluate_distinct(game: Game, coalitions: Tensor, batch_size: int) -> tuple[Tensor, int]:
    """v(S) for every row of coalitions (C, n), evaluating each distinct row once: (C, K), count."""
    distinct, inverse = torch.unique(coalitions, dim=0, return_inverse=True)
    return evaluate_coalitions(game, distinct, batch_size)[inverse], len(distinct)


def min_budget(sampler: str, n: int, *, antithetic: bool = True, paired: bool = True) -> int:
    """The smallest budget `sampler` ("permutation" or "kernel") accepts for n players."""
    if sampler == "permutation":       # v({}), v(N) and the n-1 prefixes of each ordering drawn
        return 2 + (2 * (n - 1) if antithetic else n - 1)
    if sampler == "kernel":            # v({}), v(N) and n coalitions (whole complement pairs)
        return 2 + n + (n % 2 if paired else 0)
    raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")


def permutation_shapley(game: Game, n: int, budget: int, seed: int = 0, antithetic: bool = True,
                        batch_size: int = 4096) -> SamplingResult:
    """Shapley values (n, K) as mean marginal contributions over random (antithetic) orderings."""
    start = time.perf_counter()
    per_draw = 2 * (n - 1) if antithetic else n - 1        # n-1 prefixes, and n-1 of the reverse
    draw = "pair of permutations" if antithetic else "permutation"
    _check_args("permutation_shapley", n, budget, min_budget("permutation", n, antithetic=antithetic),
                f"v({{}}), v(N) and {per_draw} per {draw}")
    gen = torch.Generator().manual_seed(seed)
    draws = (budget - 2) // per_draw
    perm = torch.rand(draws, n, generator=gen, dtype=torch.float64).argsort(1)   # (P, n)
    if antithetic:                      # the reverse order: exact for unary + pairwise games
        perm = torch.cat([perm, perm.flip(1)])
    rank = perm.argsort(1)                                                       # (P, n)
    prefix = rank[:, None, :] < torch.arange(n + 1)[:, None]    # (P, n+1, n): first k, k = 0..n
    values, n_evals = _evaluate_distinct(game, prefix.flatten(0, 1), batch_size)
    marginal = values.view(len(perm), n + 1, -1).diff(dim=1)    # (P, n, K) for player perm[p, k]
    phi = torch.zeros(n, marginal.shape[-1], dtype=torch.float64)
    phi.index_add_(0, perm.flatten(), marginal.flatten(0, 1))
    return SamplingResult(phi / len(perm), n_evals, time.perf_counter() - start)


def _kernel_weights(n: int) -> Tensor:
    """Shapley kernel (n-1) / (C(n, s) s (n - s)) of one coalition of size s = 0..n: (n+1,)."""
    w = [(n - 1) / (math.comb(n, s) * s * (n - s)) if 0 < s < n else 0.0 for s in range(n + 1)]
    return torch.tensor(w, dtype=torch.float64)


def kernel_coalitions(n: int, draws: int, generator: torch.Generator) -> Tensor:
    """Coalitions (draws, n) bool drawn with probability proportional to the Shapley kernel."""
    s = torch.arange(1, n, dtype=torch.float64)
    size_weight = 1 / (s * (n - s))                             # kernel x C(n, s) subsets, (n-1,)
    size = torch.multinomial(size_weight, draws, replacement=True, generator=generator) + 1
    rank = torch.rand(draws, n, generator=generator, dtype=torch.float64).argsort(1)  # (draws, n)
    return rank < size[:, None]             # rank is a uniform permutation: a uniform subset


def paired_kernel_coalitions(n: int, groups: int, pairs: int,
                             generator: torch.Generator) -> Tensor:
    """`pairs` Shapley-kernel coalitions for each of `groups` inputs, then their complements:
    (groups, 2 * pairs, n) bool (paired sampling, Covert & Lee 2021)."""
    half = kernel_coalitions(n, groups * pairs, generator).view(groups, pairs, n)
    return torch.cat([half, ~half], 1)


def kernel_shap(game: Game, n: int, budget: int, seed: int = 0, paired: bool = True,
                batch_size: int = 4096) -> SamplingResult:
    """Shapley values (n, K) by KernelSHAP: weighted least squares on sampled coalitions."""
    start = time.perf_counter()
    _check_args("kernel_shap", n, budget, min_budget("kernel", n, paired=paired),
                f"v({{}}), v(N) and at least {n} coalitions")
    if budget >= 2**n:                  # enumerate: the kernel-weighted regression is exact
        z = coalition_masks(n)[1:-1]
        w = _kernel_weights(n)[z.sum(1)]
    else:
        gen = torch.Generator().manual_seed(seed)
        z = kernel_coalitions(n, (budget - 2) // 2 if paired else budget - 2, gen)
        if paired:                      # each coalition with its complement (Covert & Lee 2021)
            z = torch.cat([z, ~z])
        w = torch.ones(len(z), dtype=torch.float64)             # sampled from the kernel already
    ends = torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    values, n_evals = _evaluate_distinct(game, torch.cat([ends, z]), batch_size)   # (2 + C, K)
    v_empty, v_full = values[0], values[1]
    phi = constrained_wls(z, values[2:] - v_empty, w, v_full - v_empty)
    return SamplingResult(phi, n_evals, time.perf_counter() - start)


SAMPLERS: dict[str, Callable[..., SamplingResult]] = {
    "permutation": permutation_shapley,
    "kernel": kernel_shap,
}


def convergence_table(game: Game, n: int, exact_values: Tensor, budgets: Iterable[int],
                      seeds: Iterable[int] = range(5),
                      samplers: Iterable[str] = tuple(SAMPLERS),
                      batch_size: int = 4096) -> list[dict]:
    """Mean relative L2 error ||phi - exact|| / ||exact|| (all n x K) per sampler and budget."""
    exact_values = exact_values.double().cpu()                  # (n, K)
    seeds, rows = list(seeds), []
    for name in samplers:
        for budget in budgets:
            runs = [SAMPLERS[name](game, n, budget, seed=s, batch_size=batch_size) for s in seeds]
            err = torch.stack([(r.values - exact_values).norm() for r in runs])
            err = err / exact_values.norm()
            rows.append(dict(sampler=name, budget=budget,
                             n_evals=sum(r.n_evals for r in runs) / len(runs),
                             rel_error=err.mean().item(),
                             rel_error_std=err.std().item() if len(runs) > 1 else 0.0,
                             seconds=sum(r.seconds for r in runs) / len(runs)))
    return rows
