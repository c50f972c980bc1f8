"""Faithfulness of a saliency map used as a soft mask (Grad-CAM++'s protocol), and the equal-mass
rescaling that makes maps of different mass comparable.

`explanation_masked_input` masks an input by its map, `masked_probabilities` runs the model on
the masked inputs, `average_drop_increase` scores them (Chattopadhyay et al. 2018), raw or after
`equal_mass_rescale` (Domeniconi 2025, a reproduction of Shap-CAM by Zheng et al. 2022), which
removes Average Drop's bias towards maps with more mass. Conventions as in `evaluation.metrics`.
"""

from __future__ import annotations

import math

import torch
from scipy.optimize import brentq
from torch import Tensor, nn

# the input checks every metric shares (kept private to the metrics: their messages say what to
# change in a metric's arguments)
from evaluation.metrics import _finite
from shapley.game import make_baseline


def average_drop_increase(model_prob_full: Tensor,
                          model_prob_explained: Tensor) -> tuple[float, float]:
    """Average Drop and Increase in Confidence, in percent (Chattopadhyay et al. 2018, Grad-CAM++).

    With Y the target-class probability on each full input and O on the input masked by its
    explanation (see `explanation_masked_input`), over a batch (B,):
    Average Drop = mean(max(0, Y - O) / Y) * 100 (lower is better) and
    Increase in Confidence = mean(O > Y) * 100 (higher is better).
    Both favour maps with more mass (an all-ones map has Average Drop 0); compare maps after
    `equal_mass_rescale` too (Domeniconi 2025).
    """
    y = _finite("model_prob_full", model_prob_full)
    o = _finite("model_prob_explained", model_prob_explained)
    if y.ndim != 1 or y.shape != o.shape or len(y) == 0:
        raise ValueError(f"model_prob_full and model_prob_explained must be matching batches "
                         f"(B,), got shapes {tuple(y.shape)} and {tuple(o.shape)}")
    for name, p in (("model_prob_full", y), ("model_prob_explained", o)):
        if p.min() < 0 or p.max() > 1:
            raise ValueError(f"{name} must be probabilities in [0, 1]; apply softmax to logits "
                             "and take the target class")
    if (y <= 0).any():
        raise ValueError("model_prob_full has a zero probability, and Average Drop divides by "
                         "it; drop examples the model gives no chance to the target class")
    avg_drop = float(((y - o).clamp(min=0) / y).mean() * 100)
    increase = float((o > y).double().mean() * 100)
    return avg_drop, increase


def normalise_map(pixel_map: Tensor) -> Tensor:
    """A saliency map as a soft mask in [0, 1]: negatives clipped to 0, then divided by the max.

    A map with no positive value becomes all zeros (it keeps nothing of the input).
    """
    s = _finite("pixel_map", pixel_map).clamp(min=0)
    top = s.max()
    return s / top if top > 0 else s


def explanation_masked_input(x: Tensor, pixel_map: Tensor, baseline: str | Tensor, *,
                             normalise: bool = True) -> Tensor:
    """One input softly masked by its explanation: x * s + baseline * (1 - s), s the map in [0, 1].

    Grad-CAM++ and Shap-CAM (Zheng et al. 2022) mask "by point-wise multiplication of the image
    with the saliency map", which is `baseline="zeros"` here; Domeniconi 2025 notes the papers leave the
    map's scaling ambiguous. We fix it: s = normalise_map(pixel_map) (negatives clipped to 0,
    divided by the max), used as a soft mask towards the baseline. `baseline` is built by the
    masking game's `make_baseline` ("zeros", "mean", "blur" or a tensor), so with the game's
    baseline a zero in the map removes a pixel exactly as the game does. Pass
    `normalise=False` for a map already in [0, 1], e.g. after `equal_mass_rescale`.

    Args:
        x: one input (C, H, W) or (C, T, H, W).
        pixel_map: (H, W) or (T, H, W); from per-player values use `values[game.feature_mask]`.
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be one input (C, H, W) or (C, T, H, W), got shape "
                         f"{tuple(x.shape)}; index the batch, e.g. x[0]")
    s = torch.as_tensor(pixel_map)
    if tuple(s.shape) != tuple(x.shape[1:]):
        raise ValueError(f"pixel_map has shape {tuple(s.shape)} but the input's pixels are "
                         f"{tuple(x.shape[1:])}; upsample the map (F.interpolate) or turn player "
                         "values into a map with values[game.feature_mask]")
    if normalise:
        s = normalise_map(s)
    else:
        s = _finite("pixel_map", s)
        if s.min() < 0 or s.max() > 1:
            raise ValueError("with normalise=False the map must lie in [0, 1]; pass "
                             "normalise=True or use normalise_map first")
    s = s.to(x)[None]                                       # (1, H, W): one mask for all channels
    return x * s + make_baseline(x, baseline) * (1 - s)


def masked_probabilities(model: nn.Module, x: Tensor, pixel_maps: Tensor, targets: Tensor,
                         baseline: str | Tensor, *,
                         r: float | None = None) -> tuple[Tensor, Tensor]:
    """Y and O of `average_drop_increase`: the targets' probabilities on full and masked inputs.

    Each map is normalised to [0, 1] (`normalise_map`) and, when `r` is given, rescaled to mass
    `r * numel` with `equal_mass_rescale` before masking its input.

    Args:
        x: a batch of inputs (B, C, H, W) or (B, C, T, H, W).
        pixel_maps: one map per input (B, H, W) or (B, T, H, W).
        targets: class per input (B,).

    Returns:
        (Y, O), two (B,) float64 tensors of softmax probabilities.
    """
    targets = torch.as_tensor(targets).long().flatten()
    if x.ndim not in (4, 5) or len(targets) != len(x) or len(pixel_maps) != len(x):
        raise ValueError(f"need a batch x (B, C, ...), pixel_maps (B, ...) and targets (B,) of "
                         f"one size, got {tuple(x.shape)}, {tuple(pixel_maps.shape)} and "
                         f"{tuple(targets.shape)}")
    masks = [normalise_map(m) for m in pixel_maps]
    if r is not None:
        masks = [equal_mass_rescale(m, r) for m in masks]
    masked = torch.stack([explanation_masked_input(xi, m, baseline, normalise=False)
                          for xi, m in zip(x, masks, strict=True)])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            both = model(torch.cat([x, masked]).to(device)).double().softmax(-1).cpu()
    finally:
        model.train(was_training)
    if targets.min() < 0 or targets.max() >= both.shape[1]:
        raise ValueError(f"targets must be class indices in 0..{both.shape[1] - 1}, got "
                         f"{targets.tolist()[:10]}")
    prob = both[torch.arange(2 * len(x)), targets.repeat(2)]                 # (2B,)
    return prob[:len(x)], prob[len(x):]


def _unit_map(s: Tensor, r: float) -> Tensor:
    """A map with values in [0, 1] as float64, and a checked mass share r."""
    t = _finite("s", s)
    if t.numel() == 0 or t.min() < 0 or t.max() > 1:
        raise ValueError("s must be a non-empty map with values in [0, 1]; normalise it first "
                         "with normalise_map")
    if not isinstance(r, (int, float)) or not 0 < r <= 1:
        raise ValueError(f"r is the share of the map's maximum mass to keep, in (0, 1]; got {r!r}")
    return t


def equal_mass_exponent(s: Tensor, r: float = 0.3) -> float:
    """The exponent exp(alpha) > 0 with sum(s ** exp(alpha)) = r * s.numel() (Domeniconi 2025).

    sum(s ** p) falls from the number of positive entries (p -> 0) to the number of ones
    (p -> inf), so a solution exists iff #(s == 1) < r * numel < #(s > 0); otherwise this raises
    (`equal_mass_rescale` has fallbacks). Solved for alpha = log p by Brent's method.
    """
    flat = _unit_map(s, r).flatten()
    target = r * flat.numel()
    n_one, n_pos = int((flat == 1).sum()), int((flat > 0).sum())
    if not n_one < target < n_pos:
        raise ValueError(f"no exponent gives this map mass {target:g}: its mass lies between "
                         f"#(s == 1) = {n_one} and #(s > 0) = {n_pos}; choose r in "
                         f"({n_one / flat.numel():.3g}, {n_pos / flat.numel():.3g}) or use "
                         "equal_mass_rescale, which falls back")
    logs = flat[(flat > 0) & (flat < 1)].log()            # the only entries the exponent moves

    def excess(alpha: float) -> float:                     # decreasing in alpha
        p = math.exp(min(alpha, 709.0))                    # 709: the largest exp in float64
        return n_one + float(torch.exp(p * logs).sum()) - target

    lo, hi = -1.0, 1.0
    while excess(lo) <= 0:                                 # p -> 0 leaves mass n_pos > target
        lo *= 2
    while excess(hi) >= 0:                                 # p -> inf leaves mass n_one < target
        hi *= 2
    alpha = brentq(excess, lo, hi, xtol=1e-14, rtol=1e-15, maxiter=500)
    return math.exp(alpha)


def equal_mass_rescale(s: Tensor, r: float = 0.3) -> Tensor:
    """The equal-mass map s ** exp(alpha) of Domeniconi 2025, with sum r * s.numel(), order kept.

    Average Drop favours maps with more mass (all ones scores a perfect 0), so before comparing
    two explainers both maps get the same mass while their maxima stay at 1. Where no exponent
    reaches the mass, the closest fair map is returned instead:
    - too many entries already at 1 (e.g. the all-ones map): the power cannot lower them, so the
      map is scaled linearly, s * r * numel / sum(s): exact mass, order kept, max below 1;
    - too few positive entries (#(s > 0) <= r * numel): the exponent's limit at 0, the map's
      support (s > 0) as 0/1, whose mass #(s > 0) stays below the target (a sparse map keeps no
      advantage from this);
    - an all-zero map has no mass to rescale and raises.
    The result has the dtype of `s`.
    """
    t = _unit_map(s, r)
    target = r * t.numel()
    n_one, n_pos = int((t == 1).sum()), int((t > 0).sum())
    if n_pos == 0:
        raise ValueError("s is all zeros: no rescaling gives it mass; count the example as an "
                         "empty explanation or skip it")
    if target >= n_pos:
        out = (t > 0).double()
    elif target <= n_one:
        out = t * (target / t.sum())
    else:
        out = t ** equal_mass_exponent(t, r)
    dtype = s.dtype if isinstance(s, Tensor) and s.is_floating_point() else torch.float64
    return out.to(dtype)
