"""Integrated gradients (Sundararajan et al. 2017) with captum: any differentiable model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from explainers.core import Players, Result, check_count, register
from shapley.game import make_baseline


@register("integrated_gradients")
def integrated_gradients(model: nn.Module, x: Tensor, target: Tensor, players: Players, *,
                         seed: int, baseline: str | Tensor = "zeros", n_steps: int = 50,
                         batch_size: int = 64) -> Result:
    """captum.attr.IntegratedGradients pixel attributions along the straight path from `baseline`.

    `baseline` is "zeros" (captum's default, a black image), "blur", "mean" or a tensor shaped
    like one input; `batch_size` bounds the rows per forward pass (captum's internal_batch_size).
    """
    from captum.attr import IntegratedGradients

    n_steps = check_count("n_steps", n_steps)
    batch_size = check_count("batch_size", batch_size)
    base = torch.stack([make_baseline(xi, baseline) for xi in x])          # (B, C, *S)
    attr = IntegratedGradients(model).attribute(
        x, baselines=base, target=target, n_steps=n_steps,
        internal_batch_size=batch_size)
    return Result(pixels=attr.detach())                                    # (B, C, *S)
