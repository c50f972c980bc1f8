"""shapiq 1.4.1's Shapley-value approximators on our games, with budgets counted the same way.

shapiq explains one output at a time through a numpy game (C, n) bool -> (C,), so each adapter
runs it on one class of our batched torch game and counts the rows shapiq actually asked for
(its budget is a bound, which some approximators do not fill). Seeds go to shapiq's
`random_state`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from shapley.exact import Game, call_game
from shapley.sampling import SamplingResult

# name -> (shapiq class, its options)
SHAPIQ = {
    "shapiq_kernel": ("KernelSHAP", {"pairing_trick": True}),
    "shapiq_unbiased_kernel": ("UnbiasedKernelSHAP", {"pairing_trick": True}),
    "shapiq_kadd": ("kADDSHAP", {"max_order": 2, "pairing_trick": True}),
    "shapiq_svarm": ("SVARM", {}),
    "shapiq_stratified": ("StratifiedSamplingSV", {}),
    "shapiq_permutation": ("PermutationSamplingSV", {}),
    "shapiq_owen": ("OwenSamplingSV", {}),
    "shapiq_proxyspex": ("ProxySPEX", {"index": "FSII", "max_order": 2}),
}
# kADD-SHAP's regression and ProxySPEX's order-2 Faith-Shap read-out hold every pair: memory and
# time grow like n^2 coefficients times the budget's rows, beyond a CPU's reach at 196 players
QUADRATIC = {"shapiq_kadd", "shapiq_proxyspex"}


# shapiq's approximators of the order-2 Faith-Shap index (FSII): the index a pairwise head's pair
# terms equal at the optimum, each exact at the full budget 2^n. KernelSHAPIQ is left out: it
# estimates k-SII, another index (0.047 rel. L2 from exact FSII pairs at the full budget on a
# 7-player game with interactions up to order 4), so it does not converge to the same target.
INTERACTIONS = {
    "shapiq_regression_fsii": ("RegressionFSII", {"max_order": 2, "pairing_trick": True}),
    "shapiq_shapiq_fsii": ("SHAPIQ", {"index": "FSII", "max_order": 2}),
    "shapiq_svarmiq_fsii": ("SVARMIQ", {"index": "FSII", "max_order": 2}),
}


@dataclass
class PairsResult:
    pairs: Tensor                       # (n, n) estimated order-2 interactions, symmetric, 0 diagonal
    n_evals: int                        # game rows shapiq asked for
    seconds: float


def _approximate(cls_name: str, options: dict, game: Game, n: int, budget: int, seed: int,
                 output: int):
    """shapiq approximator `cls_name` run on class `output` of our torch game: (its
    InteractionValues, the rows it evaluated, seconds)."""
    import shapiq

    start = time.perf_counter()
    rows = [0]

    def numpy_game(coalitions: np.ndarray) -> np.ndarray:       # (C, n) bool -> (C,)
        z = torch.from_numpy(np.atleast_2d(np.asarray(coalitions, dtype=bool)))
        rows[0] += len(z)
        return call_game(game, z)[:, output].numpy()

    if cls_name in ("ProxySPEX", "SHAPIQ", "SVARMIQ", "RegressionFSII"):
        approx = getattr(shapiq, cls_name)(n=n, random_state=seed, **options)
    else:
        approx = getattr(shapiq, cls_name)(n, random_state=seed, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iv = approx.approximate(budget, numpy_game)
    return iv, rows[0], time.perf_counter() - start


def shapiq_interactions(name: str) -> Callable[..., PairsResult]:
    """`fn(game, n, budget, seed, output) -> PairsResult`: shapiq's order-2 Faith-Shap
    approximator `name` on class `output` of the game."""
    if name not in INTERACTIONS:
        raise ValueError(f"unknown shapiq interaction approximator {name!r}; choose one of "
                         f"{sorted(INTERACTIONS)}")
    cls_name, options = INTERACTIONS[name]

    def run(game: Game, n: int, budget: int, seed: int = 0, output: int = 0) -> PairsResult:
        iv, rows, seconds = _approximate(cls_name, options, game, n, budget, seed, output)
        pairs = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            for j in range(i + 1, n):
                pairs[i, j] = pairs[j, i] = float(iv[(i, j)])
        return PairsResult(pairs, rows, seconds)

    run.__name__ = name
    return run


def shapiq_sampler(name: str) -> Callable[..., SamplingResult]:
    """Our sampler signature `fn(game, n, budget, seed, output) -> SamplingResult` for shapiq's
    approximator `name`; values (n, 1) for class `output` of the game."""
    if name not in SHAPIQ:
        raise ValueError(f"unknown shapiq sampler {name!r}; choose one of {sorted(SHAPIQ)}")
    cls_name, options = SHAPIQ[name]

    def run(game: Game, n: int, budget: int, seed: int = 0, output: int = 0) -> SamplingResult:
        iv, rows, seconds = _approximate(cls_name, options, game, n, budget, seed, output)
        values = np.array([iv[(i,)] for i in range(n)], dtype=np.float64)
        return SamplingResult(torch.from_numpy(values)[:, None], rows, seconds)

    run.__name__ = name
    return run
