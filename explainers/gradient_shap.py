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
