"""GradientSHAP (expected gradients) with shap's `GradientExplainer`: any differentiable model."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from explainers.core import Players, Result, background_for, check_count, register, reseed


class TargetColumn(nn.Module):
    """The model's score for one class, (B, 1): shap then differentiates that class only."""

    def __init__(self, model: nn.Module, k: int):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)[:, self.k:self.k + 1]


@register("gradient_shap")
def gradient_shap(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
                  n_samples: int = 200, background: Tensor | str | Sequence[str] | None = None,
                  local_smoothing: float = 0.0, batch_size: int = 50) -> Result:
    """shap.GradientExplainer pixel attributions, E[grad f(x' + t (x - x')) * (x - x')].

    `background` holds the reference inputs x' (M, C, ...), ideally a few dozen training
    examples. Without it each input is compared with two references of its own: black (zeros)
    and a Gaussian-blurred copy of itself (see `explainers.core.default_background`). shap draws
    its samples from numpy's global RNG; it is seeded from `seed` for each input and restored
    afterwards by `explain`.
    """
    with warnings.catch_warnings():      # shap 0.51 builds colormaps with deprecated setters
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap

    n_samples = check_count("n_samples", n_samples)
    batch_size = check_count("batch_size", batch_size)
    rows = []
    for xi, k in zip(x, target.tolist(), strict=True):   # xi: (C, *S)
        bg = background_for(xi, background)                     # (M, C, *S)
        explainer = shap.GradientExplainer(TargetColumn(model, k), bg, batch_size=batch_size,
                                           local_smoothing=local_smoothing)
        reseed(seed)                                      # the same samples for every input
        phi = explainer.shap_values(xi[None], nsamples=n_samples, rseed=seed)
        phi = np.asarray(phi)                                   # (1, C, *S, 1): one output column
        rows.append(torch.from_numpy(phi.reshape(xi.shape)).float())
    return Result(pixels=torch.stack(rows).to(x.device))       # (B, C, *S)


def path_integral(model: nn.Module, x: Tensor, target: Tensor, references: Tensor,
                  steps: int = 128) -> Tensor:
    """The value GradientSHAP's samples estimate, without their noise: for each input, the mean
    over `references` of the straight-path integral of the target's gradient times (x - x'),
    by the midpoint rule with `steps` points. It equals f(x) - mean f(x') up to the rule's error
    (the gradient theorem), so a gap between GradientSHAP's sum and f(x) - mean f(x') that this
    closes is Monte-Carlo noise of the samples, not a bias. x (B, C, ...), references (M, C, ...)
    -> (B,)."""
    steps = check_count("steps", steps)
    t = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps        # (T,)
    t = t.view(-1, *([1] * x.dim()))                                               # (T, 1, C, ...)
    totals = []
    for xi, k in zip(x, target.tolist(), strict=True):
        total = x.new_zeros(())
        for ref in references:
            points = (ref + t * (xi - ref)).reshape(steps, *xi.shape).requires_grad_()
            grad, = torch.autograd.grad(model(points)[:, k].sum(), points)          # (T, C, ...)
            total = total + (grad.mean(0) * (xi - ref)).sum()
        totals.append(total / len(references))
    return torch.stack(totals).detach()                                            # (B,)
