"""One verb for every attribution method: `explain(method, model, x, target)` -> `Attribution`.

Each method lives in its own small file and registers itself with `@register("name")`. A
registered method is a function

    fn(model, x, target, players, *, seed, **options) -> Result

that receives a validated batch `x` (B, C, H, W) or (B, C, T, H, W) (a copy on the model's
device), `target` (B,) long, the `Players` (which pixels make up each player), and returns what it
computed: per-player `values` (B, N), a `pixel_map` (B, H, W) / (B, T, H, W), or per-channel
`pixels` (B, C, ...). `explain` fills in the rest: gradient methods' `values` are their pixel
attributions summed over channels and over each player's pixels; player-level methods' pixel maps
paint each player's value on its pixels.

`explain` also makes every call leave no trace, whatever the method does inside and also when it
raises: the model's train/eval flags, hooks and parameter gradients, torch's, numpy's and Python's
global RNG state and the input tensor are as they were. The model runs in eval mode with its
parameters frozen (gradients flow to the input only), and every global RNG is seeded from `seed`,
so the same seed gives the same attributions. Its `Cost` counts the rows the model evaluated
(`explainers.core.counting`), whichever path they took through the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from explainers.core.counting import count_rows
from explainers.core.inputs import (
    Players,
    as_batch,
    as_target,
    check_baseline_is_used,
    logits_only,
    make_players,
)
from explainers.core.isolation import leave_no_trace, reseed
from explainers.core.model_kind import model_device
from explainers.core.registry import accepted_options, check_options, lookup


@dataclass
class Cost:
    forwards: int       # rows (inputs or coalitions) the model evaluated
    backwards: int      # rows whose gradient flowed back through the model
    seconds: float      # wall time of the whole call

    @property
    def evals(self) -> int:
        """Model evaluations: forward rows plus backward rows."""
        return self.forwards + self.backwards


@dataclass
class Attribution:
    values: Tensor      # (B, N) per-player values for each input's target class
    pixel_map: Tensor   # (B, H, W) images, (B, T, H, W) video: for overlays
    method: str
    target: Tensor      # (B,)
    cost: Cost
    extras: dict = field(default_factory=dict)   # method-specific, e.g. "pairs": (B, N, N)


@dataclass
class Result:
    """What a method computed; `explain` derives whichever of values / pixel_map is missing."""

    values: Tensor | None = None        # (B, N)
    pixel_map: Tensor | None = None     # (B, *S), S = (H, W) or (T, H, W)
    pixels: Tensor | None = None        # (B, C, *S) per-channel pixel attributions
    extras: dict = field(default_factory=dict)


def explain(method: str, model: nn.Module, x: Tensor, target=None, *, seed: int = 0,
            feature_mask: Tensor | None = None, tubelets: tuple[int, int, int] | None = None,
            **options) -> Attribution:
    """Player values (B, N) and a pixel map for class `target` of each input (predicted if None).

    Args:
        model: a classifier whose forward returns the logits (B, K), on any device (x is copied
            there; the results come back on x's device).
        x: images (B, C, H, W) or clips (B, C, T, H, W) in [0, 1]; one input without the batch
            dimension is explained as a batch of one.
        target: class per input ((B,) tensor, list or numpy array), one int (or numpy integer)
            for all, or None for the model's prediction.
        feature_mask: integer (H, W) or (T, H, W) player ids 0..N-1; by default the players are
            the ViT's patches, or a video model's `tubelets` grid (t, h, w).
        options: method-specific (`n_samples`, `budget`, `baseline`, `batch_size`, ...).
    """
    start = time.perf_counter()
    fn = lookup(method)
    check_options(method, fn, options)
    out_device = x.device if isinstance(x, Tensor) else torch.device("cpu")
    device = model_device(model)
    with leave_no_trace(model, fn.needs_gradients, fn.uses_randomness), \
            count_rows(model) as counter, logits_only(model):
        xb = as_batch(model, x, feature_mask, device)
        players = make_players(model, xb, feature_mask, tubelets)
        check_baseline_is_used(method, model, players, options, accepted_options(fn))
        tb = as_target(model, xb, target, options.get("batch_size", 64))
        if fn.uses_randomness:
            reseed(seed)
        result = fn(model, xb, tb, players, seed=seed, **options)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    values, pixel_map = complete(method, result, players, xb)
    cost = Cost(counter.forwards, counter.backwards, time.perf_counter() - start)
    extras = {k: v.detach().to(out_device) if isinstance(v, Tensor) else v
              for k, v in result.extras.items()}
    return Attribution(values.detach().float().to(out_device),
                       pixel_map.detach().float().to(out_device), method,
                       tb.to(out_device), cost, extras)


def complete(method: str, result: Result, players: Players, x: Tensor) -> tuple[Tensor, Tensor]:
    """(values (B, N), pixel_map (B, *S)) from whatever the method returned."""
    B, S = x.shape[0], tuple(x.shape[2:])
    values, pixel_map = result.values, result.pixel_map
    if result.pixels is not None:
        pixel_map = result.pixels.sum(1) if pixel_map is None else pixel_map
    if pixel_map is None and values is None:
        raise RuntimeError(f"explainer {method!r} returned neither values nor a pixel map")
    if values is None:
        values = players.pool(pixel_map)
    if pixel_map is None:
        pixel_map = players.paint(values)
    if tuple(values.shape) != (B, players.n) or tuple(pixel_map.shape) != (B, *S):
        raise RuntimeError(f"explainer {method!r} returned values {tuple(values.shape)} and a "
                           f"pixel map {tuple(pixel_map.shape)}; expected ({B}, {players.n}) and "
                           f"{(B, *S)}")
    return values, pixel_map
