"""GradientSHAP with captum's `GradientShap`: shap's estimator, a second implementation."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from explainers.core import Players, Result, background_for, check_count, register, reseed


@register("captum_gradient_shap")
def captum_gradient_shap(model: nn.Module, x: Tensor, target: Tensor, players: Players, *,
                         seed: int, n_samples: int = 200,
                         background: Tensor | str | Sequence[str] | None = None,
                         stdevs: float = 0.0, batch_size: int = 50) -> Result:
    """captum.attr.GradientShap pixel attributions, averaged over `n_samples` draws per input.

    `background` works as for `gradient_shap` (default: zeros and a blurred copy of each input).
    At most `batch_size` samples run through the model at once; the draws come from numpy's and
    torch's global RNGs, seeded from `seed` for each input and restored by `explain`.
    """
    from captum.attr import GradientShap

    n_samples = check_count("n_samples", n_samples)
    batch_size = check_count("batch_size", batch_size)
    explainer = GradientShap(model)
    rows = []
    for xi, k in zip(x, target.tolist(), strict=True):   # xi: (C, *S)
        bg = background_for(xi, background)                     # (M, C, *S)
        reseed(seed)
        total, done = torch.zeros_like(xi), 0
        while done < n_samples:
            n = min(batch_size, n_samples - done)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*required_grads has been set.*")
                attr = explainer.attribute(xi[None], baselines=bg, n_samples=n, stdevs=stdevs,
                                           target=k)             # (1, C, *S), mean over n draws
            total += attr[0].detach() * n
            done += n
        rows.append(total / n_samples)
    return Result(pixels=torch.stack(rows))                     # (B, C, *S)
