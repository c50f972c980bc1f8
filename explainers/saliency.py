"""Saliency (Simonyan, Vedaldi & Zisserman 2014) with captum: the gradient's magnitude."""

from __future__ import annotations

from torch import Tensor, nn

from explainers.core import Players, Result, register


@register("saliency", randomness=False)
def saliency(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
             absolute: bool = True) -> Result:
    """captum.attr.Saliency: |d logit_target / d x| per pixel and channel (the signed gradient
    with `absolute=False`). One forward and one backward pass; `seed` is unused. Not in the
    game's units (a gradient, not a share of the output): compare it by rank, not by size."""
    from captum.attr import Saliency

    x = x.detach().clone().requires_grad_(True)        # captum would warn and set it itself
    attr = Saliency(model).attribute(x, target=target, abs=absolute)
    return Result(pixels=attr.detach())                                    # (B, C, *S)
