"""Timing explanations fairly: against a forward pass of the same model, measured beside them."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor, nn

from explainers import Attribution, explain

CHEAP_SECONDS = 0.05     # explanations faster than this are timed against a paired forward
CHEAP_REPEATS = 10


def timed_explain(method: str, model: nn.Module, x: Tensor, target: Tensor, *, seed: int,
                  **options) -> tuple[Attribution, float | None]:
    """`explain`, and for a cheap explanation a forward time measured beside it.

    A single cold run of a millisecond method measures mostly first-call overhead, and a forward
    pass timed minutes earlier on a busy machine is no fair yardstick either. So explanations
    under CHEAP_SECONDS are re-run CHEAP_REPEATS times (same seed, same values), alternating with
    one forward pass of the model on the same input: cost.seconds becomes the median explanation
    time and the second value the median forward time (None for slower explanations, which run
    once and are compared with `forward_seconds`).
    """
    out = explain(method, model, x, target, seed=seed, **options)
    if out.cost.seconds >= CHEAP_SECONDS:
        return out, None
    times, forwards = [], []
    for _ in range(CHEAP_REPEATS):
        times.append(explain(method, model, x, target, seed=seed, **options).cost.seconds)
        with torch.no_grad():
            start = time.perf_counter()
            model(x)
            forwards.append(time.perf_counter() - start)
    out = replace(out, cost=replace(out.cost, seconds=float(np.median(times))))
    return out, float(np.median(forwards))


@torch.no_grad()
def forward_seconds(model: nn.Module, x: Tensor, repeats: int = 30) -> float:
    """Median seconds of one plain forward pass of the model on `x` (after 3 warm-up passes)."""
    was_training = model.training
    model.eval()
    try:
        for _ in range(3):
            model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return float(np.median(times))


@torch.no_grad()
def forward_cost(model: nn.Module, plain: nn.Module, x: Tensor, repeats: int = 20) -> dict:
    """Median seconds of one LearnedSHAP explanation (`shapley_values`) against the plain-head
    model's forward on the same batch, alternating the two."""
    learned, forward = [], []
    for i in range(repeats + 2):
        start = time.perf_counter()
        model.shapley_values(x)
        middle = time.perf_counter()
        plain(x)
        if i >= 2:                              # two warm-up rounds
            learned.append(middle - start)
            forward.append(time.perf_counter() - middle)
    t_learned, t_plain = float(np.median(learned)), float(np.median(forward))
    return {"learned_seconds": t_learned, "plain_seconds": t_plain, "ratio": t_learned / t_plain}
