"""DeepLiftSHAP with captum: DeepLift's rescale rule averaged over references (ReLU CNNs)."""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from explainers.core import (
    HOOK_DICTS,
    Players,
    Result,
    background_for,
    find_timm_vit,
    model_name,
    register,
    resolve_layer,
    watch,
)

# Layers DeepLift has no rule for: captum would silently treat them as linear.
NO_RULE = (nn.GELU, nn.SiLU, nn.LayerNorm, nn.GroupNorm, nn.MultiheadAttention)


class CallSites(nn.Module):
    """A reused nonlinearity split into one fresh copy per call, used in call order.

    captum's DeepLift stores each nonlinearity's input and output on the module during the
    forward pass, so a module called twice (the ResNet block's `self.relu`) would overwrite its
    first call's state. A static network calls it the same number of times in the same order on
    every forward, so call k always runs copy k mod n.
    """

    def __init__(self, module: nn.Module, n_calls: int):
        super().__init__()
        fresh = copy.deepcopy(module)
        if hasattr(fresh, "inplace"):
            fresh.inplace = False            # in-place outputs break captum's backward hooks
        self.sites = nn.ModuleList(copy.deepcopy(fresh) for _ in range(n_calls))
        self.calls = 0

    def forward(self, *args, **kwargs):
        site = self.sites[self.calls % len(self.sites)]
        self.calls += 1
        return site(*args, **kwargs)


def deeplift_ready(model: nn.Module, probe: Tensor) -> nn.Module:
    """A private copy of the model in which no nonlinearity is reused or in-place."""
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    net = copy.deepcopy(model).eval()
    for m in net.modules():                   # the user's hooks stay on the user's model
        for name in HOOK_DICTS:
            if hasattr(m, name):
                getattr(m, name).clear()
    watch(net)                                # its rows count in the call's Cost
    calls: Counter = Counter()
    handles = [m.register_forward_hook(lambda m, i, o: calls.update([m]))
               for m in net.modules() if type(m) in SUPPORTED_NON_LINEAR]
    try:
        with torch.no_grad():
            net(probe)                        # one row: how often is each nonlinearity called
    finally:
        for h in handles:
            h.remove()
    split = {m: CallSites(m, max(calls[m], 1)) for m in calls
             if calls[m] > 1 or getattr(m, "inplace", False)}
    for parent in list(net.modules()):
        for name, child in parent._modules.items():
            if child in split:
                parent._modules[name] = split[child]
    return net


@register("deeplift_shap")
def deeplift_shap(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
                  background: Tensor | str | Sequence[str] | None = None,
                  target_layer: str | nn.Module | None = None, batch_size: int = 32) -> Result:
    """captum.attr.DeepLiftShap pixel attributions, one DeepLift per reference, averaged.

    Works on ReLU networks with BatchNorm in eval mode (an affine map), e.g. the 3D-ResNet;
    references as for `gradient_shap` (default: zeros and a blurred copy of each input). The
    attributions of each input sum to f(x) - mean f(reference) (DeepLift's completeness). One
    pass runs 2 rows per reference, so references go in groups of `batch_size` / 2.

    With `target_layer` (a block of the CNN or its name, as for gradcam_pp and shap_cam):
    captum's LayerDeepLiftShap, attributions of that layer's feature-map cells (summed over
    channels; they too sum to f(x) - mean f(reference)), upsampled to the input as Shap-CAM's
    cells are (`explainers.shap_cam.upsample_cells`).
    """
    from captum.attr import DeepLiftShap, LayerDeepLiftShap

    from explainers.shap_cam import upsample_cells

    if find_timm_vit(model) is not None:
        raise ValueError("deeplift_shap cannot explain ViT: captum's DeepLift has no rules for "
                         "GELU/LayerNorm/attention; use gradient_shap or exact")
    bad = sorted({type(m).__name__ for m in model.modules() if isinstance(m, NO_RULE)})
    if bad:
        raise ValueError(f"deeplift_shap cannot explain {model_name(model)}: captum's DeepLift has "
                         f"no rules for {'/'.join(bad)}; use gradient_shap or exact")
    net = deeplift_ready(model, x[:1])
    explainer, layer_name = DeepLiftShap(net), None
    if target_layer is not None:
        module = resolve_layer(model, target_layer, "deeplift_shap")
        layer_name = next(n for n, m in model.named_modules() if m is module)
        explainer = LayerDeepLiftShap(net, dict(net.named_modules())[layer_name])
    group = max(batch_size // 2, 2)
    rows = []
    for xi, k in zip(x, target.tolist(), strict=True):   # xi: (C, *S)
        refs = background_for(xi, background)              # (M, C, *S)
        total = 0.0
        for bg in refs.split(group):
            n = len(bg)
            if n == 1:
                bg = bg.expand(2, *bg.shape[1:])           # captum wants 2+ references
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*hooks.*")
                warnings.filterwarnings("ignore", message=".*required_grads has been set.*")
                attr = explainer.attribute(xi[None].clone(), baselines=bg.contiguous(),
                                           target=k)       # (1, C, *S), mean over the group
            total += attr[0].detach() * n
        rows.append(total / len(refs))
    if layer_name is None:
        return Result(pixels=torch.stack(rows))            # (B, C, *S)
    cells = torch.stack(rows).sum(1)                       # (B, *cells): channels summed
    return Result(pixel_map=upsample_cells(cells, tuple(x.shape[2:])), extras={"cells": cells})
