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

import numpy as np
import torch

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


def shapiq_sampler(name: str) -> Callable[..., SamplingResult]:
    """Our sampler signature `fn(game, n, budget, seed, output) -> SamplingResult` for shapiq's
    approximator `name`; values (n, 1) for class `output` of the game."""
    if name not in SHAPIQ:
        raise ValueError(f"unknown shapiq sampler {name!r}; choose one of {sorted(SHAPIQ)}")
    cls_name, options = SHAPIQ[name]

    def run(game: Game, n: int, budget: int, seed: int = 0, output: int = 0) -> SamplingResult:
        import shapiq

        start = time.perf_counter()
        rows = [0]

        def numpy_game(coalitions: np.ndarray) -> np.ndarray:       # (C, n) bool -> (C,)
            z = torch.from_numpy(np.atleast_2d(np.asarray(coalitions, dtype=bool)))
            rows[0] += len(z)
            return call_game(game, z)[:, output].numpy()

        kwargs = dict(options)
        if cls_name == "ProxySPEX":
            approx = getattr(shapiq, cls_name)(n=n, random_state=seed, **kwargs)
        else:
            approx = getattr(shapiq, cls_name)(n, random_state=seed, **kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iv = approx.approximate(budget, numpy_game)
        values = np.array([iv[(i,)] for i in range(n)], dtype=np.float64)
        return SamplingResult(torch.from_numpy(values)[:, None], rows[0],
                              time.perf_counter() - start)

    run.__name__ = name
    return run
