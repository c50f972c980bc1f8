"""The masking game: what "removing a patch" means, defined once for every explainer.

For a model, one input `x` and every class at once, `v(S)` is the model's class score (logit, or
softmax probability) when only the players in coalition `S` are present. Players are

- ViT patches (`players="patches"`, the model's own grid),
- 3D-ResNet tubelets: a (t, h, w) grid of spatio-temporal cells over the clip,
- any pixel grouping given as an integer `feature_mask` (H, W) or (T, H, W) with values 0..N-1,
  as captum takes it, so 2D CNNs such as ResNet18 work too.

Removal is either

- `"drop"`: the missing patches' tokens are left out of the ViT's sequence (ViT-Shapley's choice;
  they cannot influence anything), or, for a video model built on tubelet tokens (any model with
  `embed`, `encode` and `n_players`), the missing tubelets' tokens, or
- `"baseline"`: missing pixels are replaced by a baseline, `"zeros"`, `"mean"` (the per-channel
  mean: the input's own unless a dataset mean tensor is given), `"blur"` (a Gaussian-blurred copy of
  the input, as shap's image masker does), or any tensor broadcastable to the input.

Games are batched: `game(coalitions)` takes a (C, N) bool tensor and returns (C, K) float tensors,
running many coalitions per forward pass, on the model's device. The model is put in eval mode for
the call and its mode is restored afterwards.
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.functional as TF
from torch import Tensor, nn

# Default tubelet grid (t, h, w): 8 players. Exact Shapley values of a 3D-ResNet then cost 2^8 = 256
# forward passes per clip; 16 tubelets would cost 65,536 clip forwards (minutes per clip on 2 cores).
DEFAULT_TUBELETS = (2, 2, 2)


def check_patch_grid(height: int, width: int, patch_size: int, what: str = "image") -> None:
    """Raise a ValueError unless square patches of `patch_size` tile a height x width `what`."""
    if patch_size < 1 or height % patch_size or width % patch_size:
        raise ValueError(f"{what} is {height}x{width} but patch size {patch_size} needs a "
                         f"multiple of {patch_size}; resize or set patch_size")


def check_feature_mask(feature_mask: Tensor, pixels: tuple[int, ...]) -> tuple[Tensor, int]:
    """A captum-style feature mask, checked: (mask (H, W) or (T, H, W) long on the CPU, N).

    It must hold one integer player id per pixel of `pixels`, numbered 0..N-1 with none missing.
    """
    if not isinstance(feature_mask, Tensor) or feature_mask.ndim not in (2, 3):
        shape = (tuple(feature_mask.shape) if isinstance(feature_mask, Tensor)
                 else type(feature_mask).__name__)
        raise ValueError(f"feature_mask must be an integer tensor (H, W) or (T, H, W), got {shape}")
    if feature_mask.dtype == torch.bool or feature_mask.is_floating_point():
        raise TypeError(f"feature_mask must hold integer player ids, got {feature_mask.dtype}; "
                        "use feature_mask.long()")
    if tuple(feature_mask.shape) != tuple(pixels):
        raise ValueError(f"feature_mask has shape {tuple(feature_mask.shape)} but the input's "
                         f"pixels are {tuple(pixels)}; give one player id per pixel")
    mask = feature_mask.detach().long().cpu()
    ids = mask.unique()
    if ids.min() != 0 or len(ids) != ids.max() + 1:
        raise ValueError("feature_mask must number the players 0..N-1 with none missing, got "
                         f"ids {ids.tolist()[:10]}{'...' if len(ids) > 10 else ''}")
    return mask, len(ids)


def patch_feature_mask(height: int, width: int, patch_size: int) -> Tensor:
    """Players as square patches, numbered row by row: (H, W) long."""
    check_patch_grid(height, width, patch_size)
    gw = width // patch_size
    rows = torch.arange(height)[:, None] // patch_size
    cols = torch.arange(width)[None, :] // patch_size
    return rows * gw + cols


def tubelet_feature_mask(frames: int, height: int, width: int,
                         grid: tuple[int, int, int] = DEFAULT_TUBELETS) -> Tensor:
    """Players as tubelets, a (t, h, w) grid of cells numbered time-major: (T, H, W) long."""
    gt, gh, gw = grid
    if frames % gt or height % gh or width % gw:
        raise ValueError(f"a {frames}x{height}x{width} clip cannot be cut into a {gt}x{gh}x{gw} "
                         "tubelet grid; each grid size must divide the clip's size")
    t = torch.arange(frames)[:, None, None] // (frames // gt)
    h = torch.arange(height)[None, :, None] // (height // gh)
    w = torch.arange(width)[None, None, :] // (width // gw)
    return (t * gh + h) * gw + w


def make_baseline(x: Tensor, baseline: str | Tensor, mean: Tensor | None = None) -> Tensor:
    """The input with every player removed, shaped like `x` (C, H, W) or (C, T, H, W)."""
    if isinstance(baseline, Tensor):
        return baseline.to(x).expand_as(x)
    if baseline == "zeros":
        return torch.zeros_like(x)
    if baseline == "mean":
        dims = tuple(range(1, x.ndim))
        m = mean if mean is not None else x.mean(dims)
        return m.to(x).view(-1, *[1] * (x.ndim - 1)).expand_as(x).clone()
    if baseline == "blur":
        size = max(x.shape[-2:])
        sigma = size / 8                               # blurs away 8 px objects on 32 px images
        k = 2 * math.ceil(2 * sigma) + 1
        if x.ndim == 4:                                # video (C, T, H, W): blur each frame
            return TF.gaussian_blur(x.transpose(0, 1), [k, k], [sigma, sigma]).transpose(0, 1)
        return TF.gaussian_blur(x, [k, k], [sigma, sigma])
    raise ValueError(f"unknown baseline {baseline!r}; use 'zeros', 'mean', 'blur' or a tensor")


class MaskingGame:
    """v(S) for one input and every class: (C, N) bool coalitions -> (C, K) scores."""

    def __init__(self, model: nn.Module, x: Tensor, *, removal: str = "auto",
                 baseline: str | Tensor = "blur", feature_mask: Tensor | None = None,
                 tubelets: tuple[int, int, int] = DEFAULT_TUBELETS, output: str = "logit",
                 batch_size: int = 1024, data_mean: Tensor | None = None):
        if x.ndim not in (3, 4):
            raise ValueError(f"a game explains one input (C, H, W) or (C, T, H, W), got shape "
                             f"{tuple(x.shape)}; index the batch, e.g. x[0]")
        if output not in ("logit", "prob"):
            raise ValueError(f"output must be 'logit' or 'prob', got {output!r}")
        can_drop = hasattr(model, "n_players") and hasattr(model, "encode")
        if removal == "auto":
            removal = "drop" if can_drop and feature_mask is None else "baseline"
        if removal == "drop" and not can_drop:
            raise ValueError(f"removal='drop' needs a ViT that can drop tokens; "
                             f"{type(model).__name__} cannot: use removal='baseline'")
        if removal not in ("drop", "baseline"):
            raise ValueError(f"removal must be 'drop', 'baseline' or 'auto', got {removal!r}")
        self.model, self.removal, self.output, self.batch_size = model, removal, output, batch_size
        self.device = next(model.parameters()).device
        self.x = x.to(self.device)
        self.n_evals = 0
        if removal == "drop":
            if feature_mask is not None:
                raise ValueError("token dropping removes the ViT's own patches; a feature_mask "
                                 "only applies with removal='baseline'")
            self.n_players = model.n_players
            # a clip's players are the model's tubelets, an image's its patches
            self.feature_mask = (tubelet_feature_mask(*x.shape[-3:], grid=model.tubelets)
                                 if x.ndim == 4 else
                                 patch_feature_mask(*x.shape[-2:], model.patch_size))
            return
        if feature_mask is None:
            if x.ndim == 4:
                feature_mask = tubelet_feature_mask(*x.shape[-3:], grid=tubelets)
            elif hasattr(model, "patch_size"):
                feature_mask = patch_feature_mask(*x.shape[-2:], model.patch_size)
            else:
                raise ValueError("this model has no patch grid: pass feature_mask (H, W) with "
                                 "player ids 0..N-1, e.g. shapley.patch_feature_mask(H, W, 8)")
        self.feature_mask, self.n_players = check_feature_mask(feature_mask, tuple(x.shape[1:]))
        self._pixel_mask = self.feature_mask.to(self.device)
        self._baseline = make_baseline(self.x, baseline, data_mean)

    def __call__(self, coalitions: Tensor) -> Tensor:
        """Scores (C, K) of the model on the input with only each row's players present."""
        if coalitions.ndim != 2 or coalitions.shape[1] != self.n_players:
            raise ValueError(f"coalitions must be (C, {self.n_players}) bool, got shape "
                             f"{tuple(coalitions.shape)}")
        coalitions = coalitions.bool().to(self.device)
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                if self.removal == "drop":
                    # Coalitions of one size run together: the ViT then evaluates one shorter
                    # sequence per chunk instead of masking attention over all N patches.
                    sizes = coalitions.sum(1)
                    order = sizes.argsort(stable=True)
                    seq = model.embed(self.x[None])                          # (1, P + N, D)
                    chunks = [idx for group in order.split(sizes.bincount().tolist())
                              for idx in group.split(self.batch_size) if len(idx)]
                    out = torch.cat([self._drop(seq, coalitions[idx]) for idx in chunks])
                    out = out[order.argsort()]
                else:
                    out = torch.cat([self._replace(chunk)
                                     for chunk in coalitions.split(self.batch_size)])
        finally:
            model.train(was_training)
        self.n_evals += len(coalitions)
        out = out.softmax(-1) if self.output == "prob" else out
        return out.float()

    def _drop(self, seq: Tensor, keep: Tensor) -> Tensor:
        m = self.model
        return m.forward_head(m.encode(seq.expand(len(keep), -1, -1), keep), keep)

    def _replace(self, keep: Tensor) -> Tensor:
        present = keep[:, self._pixel_mask][:, None]            # (C, 1, H, W) or (C, 1, T, H, W)
        return self.model(torch.where(present, self.x, self._baseline))
