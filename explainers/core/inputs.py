"""Checking what a user passes to `explain`: the batch, the targets, the players, the model's
output and options that would be ignored.

Every check runs before any expensive work and says what was wrong and how to fix it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from explainers.core.model_kind import (
    in_channels,
    is_video_model,
    is_vit,
    model_name,
    n_classes,
)
from shapley.game import (
    DEFAULT_TUBELETS,
    check_feature_mask,
    patch_feature_mask,
    tubelet_feature_mask,
)

RANGE_TOLERANCE = 1e-4     # values this far outside [0, 1] still count as [0, 1] (rounding)


@dataclass
class Players:
    """Who the players are: one integer id per pixel, as captum's `feature_mask`."""

    mask: Tensor                        # (H, W) or (T, H, W) long, ids 0..n-1, on the CPU
    n: int
    kind: str                           # "patches" (the ViT's own), "tubelets" or "feature_mask"
    grid: tuple[int, ...] | None        # the patch or tubelet grid; None for a free feature_mask

    def pool(self, pixel_map: Tensor) -> Tensor:
        """Sum a pixel map (B, *S) over each player's pixels: (B, N)."""
        ids = self.mask.to(pixel_map.device).flatten()                      # (P,)
        flat = pixel_map.flatten(1)                                          # (B, P)
        return flat.new_zeros(len(flat), self.n).index_add_(1, ids, flat)

    def paint(self, values: Tensor) -> Tensor:
        """Paint each player's value on its pixels: (B, N) -> (B, *S)."""
        return values[:, self.mask.to(values.device)]


def as_batch(model: nn.Module, x: Tensor, feature_mask: Tensor | None,
             device: torch.device) -> Tensor:
    """A validated batch (B, C, *S): a copy of `x` on the model's device and dtype."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}; "
                        "use torch.as_tensor(x)")
    if device.type == "meta":
        raise ValueError(f"{model_name(model)}'s parameters are on the meta device and hold no "
                         "values; materialise the model first, e.g. model.to_empty(device='cpu') "
                         "then models.train.load_checkpoint(path, model)")
    if x.device.type == "meta":
        raise ValueError("x is on the meta device and holds no values; pass the input's data "
                         "(a tensor on 'cpu' or 'cuda')")
    if not x.is_floating_point():
        raise TypeError(f"x must be a float tensor of values in [0, 1], got {x.dtype}; "
                        "use x.float() / 255 for 8-bit images")
    rank = expected_rank(model, feature_mask, x)
    what = ("images (B, C, H, W) or one image (C, H, W)" if rank == 4 else
            "clips (B, C, T, H, W) or one clip (C, T, H, W)")
    channels = in_channels(model)
    if channels is not None:
        what = what.replace("C,", f"{channels},").replace("(C", f"({channels}")
    shape = tuple(x.shape)
    if x.ndim == rank - 1:
        x = x[None]
    if x.ndim != rank or (channels is not None and x.shape[1] != channels):
        raise ValueError(f"{model_name(model)} expects {what}, got a tensor of shape {shape}")
    if x.shape[0] == 0:
        raise ValueError(f"x is an empty batch {tuple(x.shape)}; pass at least one input")
    finite = torch.isfinite(x)
    if not finite.all():
        raise ValueError(f"x contains {int((~finite).sum())} NaN or infinite values; clean the "
                         "input (e.g. torch.nan_to_num) before explaining it")
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise ValueError(f"x holds values in [{lo:.3g}, {hi:.3g}] but explainers take inputs in "
                         "[0, 1] (the models normalise inside, and baselines such as black or a "
                         "blur are defined there); pass unnormalised inputs, e.g. x / 255 for "
                         "8-bit images")
    if is_vit(model):
        check_vit_size(model, x)
    dtype = next(model.parameters(), torch.empty(0)).dtype
    dtype = dtype if dtype.is_floating_point else x.dtype
    return x.detach().to(device=device, dtype=dtype).clone()


def expected_rank(model: nn.Module, feature_mask: Tensor | None, x: Tensor) -> int:
    """4 for image models, 5 for video models."""
    if feature_mask is not None:
        if not isinstance(feature_mask, Tensor) or feature_mask.ndim not in (2, 3):
            check_feature_mask(feature_mask, ())         # raises, naming what was given
        return feature_mask.ndim + 2
    if is_vit(model):
        return 4
    if is_video_model(model):
        return 5
    return 5 if x.ndim == 5 else 4


def check_vit_size(model: nn.Module, x: Tensor) -> None:
    """Raise when the images do not tile into the ViT's patches or do not match its input size."""
    from models.vit import check_image

    check_image(x, tuple(getattr(model, "image_size", x.shape[-2:])), model.patch_size,
                model_name(model))


def make_players(model: nn.Module, x: Tensor, feature_mask: Tensor | None,
                 tubelets: tuple[int, int, int] | None) -> Players:
    """The players of a batch (B, C, *S): a feature mask, the ViT's patches or tubelets."""
    S = tuple(x.shape[2:])
    if tubelets is not None and (feature_mask is not None or x.ndim != 5):
        why = ("a feature_mask already names the players" if feature_mask is not None else
               f"the input is {x.ndim - 2}-D, and tubelets cut clips (B, C, T, H, W)")
        raise ValueError(f"tubelets={tubelets!r} would be ignored: {why}; drop tubelets=")
    if feature_mask is not None:
        mask, n = check_feature_mask(feature_mask, S)
        return Players(mask, n, "feature_mask", None)
    if is_vit(model):
        mask = patch_feature_mask(*S, model.patch_size)
        return Players(mask, int(mask.max()) + 1, "patches", tuple(model.grid))
    side = getattr(model, "patch_players", None)      # a CNN whose players are patches
    if isinstance(side, int) and x.ndim == 4:
        H, W = S
        if H % side or W % side:
            raise ValueError(f"{model_name(model)}'s players are {side} px patches, but the "
                             f"images are {H}x{W}; resize them to a multiple of {side} or pass "
                             "a feature_mask")
        mask = patch_feature_mask(H, W, side)
        return Players(mask, int(mask.max()) + 1, "feature_mask", (H // side, W // side))
    if x.ndim == 5:
        grid = tubelets or tuple(getattr(model, "tubelets", DEFAULT_TUBELETS))
        if len(grid) != 3 or not all(isinstance(g, int) and g > 0 for g in grid):
            raise ValueError(f"tubelets must be three positive ints (t, h, w), got {grid!r}")
        mask = tubelet_feature_mask(*S, grid=tuple(grid))
        return Players(mask, int(mask.max()) + 1, "tubelets", tuple(grid))
    if type(model).__name__ == "VisionTransformer":   # a timm ViT, not wrapped
        raise ValueError("a timm VisionTransformer has no players as it is: wrap it once, "
                         "model = models.vit.as_vit(model), to make its patches the players "
                         "(dropped as tokens), or pass a feature_mask")
    raise ValueError(f"{model_name(model)} has no patch grid: pass feature_mask ({S[0]}, {S[1]}) "
                     "with player ids 0..N-1, e.g. shapley.game.patch_feature_mask(H, W, 8)")


def as_target(model: nn.Module, x: Tensor, target, batch_size: int = 64) -> Tensor:
    """Target classes (B,) long on the model's device; the predicted class when `target` is None.

    Accepts an int (one class for all), a (B,) tensor, list or numpy array of class indices, or a
    numpy integer scalar (e.g. `labels[i]` of an int64 array).
    """
    B = x.shape[0]
    if target is None:
        with torch.no_grad():
            return torch.cat([model(chunk).argmax(-1) for chunk in x.split(batch_size)])
    if isinstance(target, np.integer):
        target = int(target)
    elif isinstance(target, (np.ndarray, list, tuple)):
        target = torch.as_tensor(np.asarray(target))
    if isinstance(target, bool) or not isinstance(target, (int, Tensor)):
        raise TypeError(f"target must be an int, a (B,) tensor of class indices or None, got "
                        f"{type(target).__name__}")
    t = torch.as_tensor(target)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got {t.dtype}; use target.long()")
    if t.ndim == 0:
        t = t.expand(B)
    if t.shape != (B,):
        raise ValueError(f"target has shape {tuple(t.shape)} but the batch has {B} inputs; give "
                         "one class per input, one int for all, or None for the predicted class")
    K = n_classes(model, x)
    bad = (t < 0) | (t >= K)
    if bad.any():
        raise ValueError(f"target {t[bad][0].item()} is out of range: {model_name(model)} has "
                         f"{K} classes (0..{K - 1})")
    return t.to(x.device).long()


def check_count(name: str, value, minimum: int = 1) -> int:
    """An integer option such as `n_samples` or `n_steps`, at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def own_players(model: nn.Module, players: Players) -> bool:
    """Whether the players are the model's own tokens: a ViT's patches, or the tubelets a video
    model drops as tokens (the masking game can then remove them by token dropping)."""
    return players.kind == "patches" or (
        players.kind == "tubelets" and getattr(model, "removal", None) == "drop"
        and tuple(players.grid) == tuple(model.tubelets))


def check_baseline_is_used(method: str, model: nn.Module, players: Players, options: dict,
                           accepted: tuple[str, ...] | None) -> None:
    """Refuse `baseline=` where the masking game drops the model's own tokens and never reads it.

    `removal="auto"` drops tokens whenever the model can (shapley.game.MaskingGame); a baseline
    the user chose would then be silently ignored.
    """
    if "baseline" not in options or accepted is None or "removal" not in accepted:
        return
    removal = options.get("removal", "auto")
    can_drop = hasattr(model, "n_players") and hasattr(model, "encode")
    if removal in ("auto", "drop") and can_drop and own_players(model, players):
        given = options["baseline"]
        shown = "<tensor>" if isinstance(given, Tensor) else repr(given)
        raise ValueError(f"baseline={shown} would be ignored: {method} removes "
                         f"{model_name(model)}'s own {players.kind} by token dropping "
                         f"(removal={removal!r}); pass removal='baseline' to replace them with "
                         "the baseline, or drop baseline=")


@contextlib.contextmanager
def logits_only(model: nn.Module) -> Iterator[None]:
    """Raise in our words, at the model's first pass, when its forward returns no logits tensor.

    Explainers need `model(x)` to be the logits (B, K); a tuple or a dict (e.g. a Hugging Face
    style output) would otherwise fail deep inside a method with an obscure AttributeError.
    """

    def check(module: nn.Module, args, output) -> None:
        if not isinstance(output, Tensor):
            kind = type(output).__name__
            hint = ("out['logits']" if isinstance(output, dict) else
                    "out[0]" if isinstance(output, (tuple, list)) else "out.logits")
            raise TypeError(f"{model_name(module)}'s forward returned a {kind}, but explainers "
                            "need the logits tensor (B, K); wrap the model in a module whose "
                            f"forward returns them (e.g. {hint})")

    handle = model.register_forward_hook(check)
    try:
        yield
    finally:
        handle.remove()
