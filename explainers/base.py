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
so the same seed gives the same attributions.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from shapley.game import DEFAULT_TUBELETS, make_baseline, patch_feature_mask, tubelet_feature_mask


# --- what a call returns ----------------------------------------------------------------------
@dataclass
class Cost:
    forwards: int       # rows (inputs) evaluated by the model's forward
    backwards: int      # rows whose gradient flowed back through the model's output
    seconds: float      # wall time of the whole call


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
    uncounted_forwards: int = 0         # rows run without model.forward (ViT token dropping)


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


Explainer = Callable[..., Result]
EXPLAINERS: dict[str, Explainer] = {}


def register(name: str, *, gradients: bool = True,
             randomness: bool = True) -> Callable[[Explainer], Explainer]:
    """Decorator adding a method to EXPLAINERS under `name`.

    A method that declares `gradients=False` runs under torch.no_grad(); one that declares
    `randomness=False` is not reseeded and its call skips saving the global RNG states (the
    side-effect tests check both declarations). Both make a call cheaper, which matters for
    methods that cost one forward pass.
    """

    def add(fn: Explainer) -> Explainer:
        old = EXPLAINERS.get(name)
        if old is not None and qualified(old) != qualified(fn):     # re-imports may re-register
            raise ValueError(f"explainer {name!r} is already registered by {qualified(old)}; "
                             "register this one under another name")
        fn.needs_gradients, fn.uses_randomness = gradients, randomness
        EXPLAINERS[name] = fn
        return fn

    return add


def qualified(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def lookup(method: str) -> Explainer:
    """The registered function for `method`."""
    if method not in EXPLAINERS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(EXPLAINERS)}")
    return EXPLAINERS[method]


# --- the verb ---------------------------------------------------------------------------------
def explain(method: str, model: nn.Module, x: Tensor, target: Tensor | int | None = None, *,
            seed: int = 0, feature_mask: Tensor | None = None,
            tubelets: tuple[int, int, int] | None = None, **options) -> Attribution:
    """Player values (B, N) and a pixel map for class `target` of each input (predicted if None).

    Args:
        x: images (B, C, H, W) or clips (B, C, T, H, W) in [0, 1]; one input without the batch
            dimension is explained as a batch of one.
        target: class per input (B,), one class for all, or None for the model's prediction.
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
            count_rows(model) as counter:
        xb = as_batch(model, x, feature_mask, device)
        players = make_players(model, xb, feature_mask, tubelets)
        tb = as_target(model, xb, target, options.get("batch_size", 64))
        if fn.uses_randomness:
            reseed(seed)
        result = fn(model, xb, tb, players, seed=seed, **options)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    values, pixel_map = complete(method, result, players, xb)
    cost = Cost(counter.forwards + result.uncounted_forwards, counter.backwards,
                time.perf_counter() - start)
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


@functools.cache
def accepted_options(fn: Explainer) -> tuple[str, ...] | None:
    """The keyword options `fn` takes (None: any). Cached: inspecting a signature costs more
    than a millisecond explanation can spare."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "seed")


def check_options(method: str, fn: Explainer, options: dict) -> None:
    """Reject options the method does not take, listing the ones it does."""
    accepted = accepted_options(fn)
    if accepted is None:
        return
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"{method} got unknown option(s) {unknown}; it accepts "
                        f"{', '.join(accepted) or 'no options'}")


# --- leaving no trace -------------------------------------------------------------------------
HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
              "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
              "_backward_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_hooks_always_called",
                 "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")


@contextlib.contextmanager
def leave_no_trace(model: nn.Module, gradients: bool = True,
                   randomness: bool = True) -> Iterator[None]:
    """Eval mode, frozen parameters, grad enabled; restore modes, hooks, grads and RNGs after.

    Without `gradients` the call runs under no_grad instead; without `randomness` the RNG
    states are not saved (the method promises not to draw from them). Only what differs is set
    and restored: a LearnedSHAP explanation costs one forward pass (about 2 ms for the 16-patch
    ViT), and touching every module and parameter twice cost about as much again.
    """
    import torch.nn.modules.module as module_globals

    # one pass: (module, its __dict__, mode, copies of its non-empty hook dicts, full-backward flag)
    records = [(m, d, d["training"], {n: dict(h) for n in HOOK_DICTS if (h := d.get(n))},
                d.get("_is_full_backward_hook")) for m in model.modules() for d in [m.__dict__]]
    global_hooks = {name: dict(getattr(module_globals, name)) for name in _GLOBAL_HOOKS
                    if hasattr(module_globals, name)}
    params = list(model.parameters()) if gradients else []    # no_grad cannot touch them
    grads = [p.grad for p in params]
    trainable = [p for p in params if p.requires_grad]
    np_state, py_state = (np.random.get_state(), random.getstate()) if randomness else (None, None)
    rng = (torch.random.fork_rng(devices=cuda_devices()) if randomness
           else contextlib.nullcontext())
    try:
        with rng, torch.enable_grad() if gradients else torch.no_grad():
            if any(r[2] for r in records):
                model.eval()
            for p in trainable:
                p.requires_grad_(False)
            yield
    finally:
        for p in trainable:
            p.requires_grad_(True)
        for p, g in zip(params, grads, strict=True):
            if p.grad is not g:
                p.grad = g
        for m, d, mode, saved, fb in records:
            if d["training"] != mode:
                m.training = mode
            for name in HOOK_DICTS:
                current = d.get(name)
                if current or name in saved:
                    restore_hooks(current, saved.get(name, {}))
            if d.get("_is_full_backward_hook") is not fb:
                m._is_full_backward_hook = fb
        for name, entries in global_hooks.items():
            restore_hooks(getattr(module_globals, name), entries)
        if randomness:
            np.random.set_state(np_state)
            random.setstate(py_state)


def restore_hooks(current: dict, saved: dict) -> None:
    """Put a hook dict back as it was, in place (torch holds references to these dicts)."""
    if current != saved:
        current.clear()
        current.update(saved)


def cuda_devices() -> list[int]:
    """CUDA devices whose RNG state a call saves: all of them, once CUDA is in use."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return []
    return list(range(torch.cuda.device_count()))


def reseed(seed: int) -> None:
    """Seed torch's, numpy's and Python's global RNGs (inside `leave_no_trace` only)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# --- counting rows ----------------------------------------------------------------------------
class RowCounter:
    """Counts rows through watched modules' forward, and rows of gradient through their output."""

    def __init__(self):
        self.forwards = 0
        self.backwards = 0
        self.handles: list = []

    def watch(self, module: nn.Module) -> None:
        self.handles.append(module.register_forward_hook(self._on_forward))

    def _on_forward(self, module: nn.Module, args, output) -> None:
        out = output
        if not isinstance(out, Tensor):
            out = getattr(output, "logits", None)
            if out is None and isinstance(output, (tuple, list)):
                out = next((o for o in output if isinstance(o, Tensor)), None)
        if not isinstance(out, Tensor) or out.ndim == 0:
            return
        self.forwards += out.shape[0]
        if out.requires_grad:
            out.register_hook(self._on_backward)

    def _on_backward(self, grad: Tensor) -> None:
        self.backwards += grad.shape[0]

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


_ACTIVE_COUNTER: contextvars.ContextVar[RowCounter | None] = contextvars.ContextVar(
    "explainers_row_counter", default=None)


@contextlib.contextmanager
def count_rows(model: nn.Module) -> Iterator[RowCounter]:
    """Count the model's forward/backward rows for the duration of one call."""
    counter = RowCounter()
    token = _ACTIVE_COUNTER.set(counter)
    try:
        counter.watch(model)
        yield counter
    finally:
        counter.close()
        _ACTIVE_COUNTER.reset(token)


def watch(module: nn.Module) -> None:
    """Count `module`'s rows (e.g. a method's private copy of the model) in the current Cost."""
    counter = _ACTIVE_COUNTER.get()
    if counter is not None:
        counter.watch(module)


# --- what kind of model -----------------------------------------------------------------------
def model_device(model: nn.Module) -> torch.device:
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def model_name(model: nn.Module) -> str:
    return type(model).__name__


def is_vit(model: nn.Module) -> bool:
    """A ViT whose players are its own patches (models.vit.ViT and models wrapping it)."""
    return hasattr(model, "patch_size") and hasattr(model, "grid")


def wrapped(model: nn.Module, depth: int = 5) -> Iterator[nn.Module]:
    """`model`, then the modules it wraps through `.backbone` (LearnedSHAP heads, ViT wrappers)."""
    m = model
    for _ in range(depth):
        if not isinstance(m, nn.Module):
            return
        yield m
        m = getattr(m, "backbone", None)


def find_timm_vit(model: nn.Module):
    """The timm VisionTransformer inside `model` (following `.backbone`), or None."""
    from timm.models.vision_transformer import VisionTransformer

    return next((m for m in wrapped(model) if isinstance(m, VisionTransformer)), None)


def is_video_model(model: nn.Module) -> bool:
    """A model of clips (B, C, T, H, W): our 3D-ResNets and models wrapping them."""
    from models.resnet_3d import ResNet3D, TorchvisionR3D

    return any(isinstance(m, (ResNet3D, TorchvisionR3D)) or hasattr(m, "tubelets")
               for m in wrapped(model))


def n_classes(model: nn.Module, x: Tensor) -> int:
    """The number of classes: the model's `n_classes`, else from one forward row."""
    k = getattr(model, "n_classes", None)
    if isinstance(k, int):
        return k
    with torch.no_grad():
        return model(x[:1]).shape[-1]


# --- validation -------------------------------------------------------------------------------
def as_batch(model: nn.Module, x: Tensor, feature_mask: Tensor | None,
             device: torch.device) -> Tensor:
    """A validated batch (B, C, *S): a copy of `x` on the model's device and dtype."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}; "
                        "use torch.as_tensor(x)")
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
    if is_vit(model):
        check_vit_size(model, x)
    dtype = next(model.parameters(), torch.empty(0)).dtype
    dtype = dtype if dtype.is_floating_point else x.dtype
    return x.detach().to(device=device, dtype=dtype).clone()


def in_channels(model: nn.Module) -> int | None:
    """The input channels the model's config declares, if any (following `.backbone`)."""
    declared = (getattr(getattr(m, "config", None), "in_chans", None) for m in wrapped(model))
    return next((c for c in declared if isinstance(c, int)), None)


def expected_rank(model: nn.Module, feature_mask: Tensor | None, x: Tensor) -> int:
    """4 for image models, 5 for video models."""
    if feature_mask is not None:
        if not isinstance(feature_mask, Tensor) or feature_mask.ndim not in (2, 3):
            shape = tuple(feature_mask.shape) if isinstance(feature_mask, Tensor) else type(
                feature_mask).__name__
            raise ValueError(f"feature_mask must be an integer tensor (H, W) or (T, H, W), got "
                             f"{shape}")
        return feature_mask.ndim + 2
    if is_vit(model):
        return 4
    if is_video_model(model):
        return 5
    return 5 if x.ndim == 5 else 4


def check_vit_size(model: nn.Module, x: Tensor) -> None:
    """Raise when the images do not tile into the ViT's patches or do not match its input size."""
    H, W = x.shape[-2:]
    p = model.patch_size
    if H % p or W % p:
        raise ValueError(f"image is {H}x{W} but patch size {p} needs a multiple of {p}; "
                         "resize the input or set patch_size")
    size = tuple(getattr(model, "image_size", (H, W)))
    if (H, W) != size:
        raise ValueError(f"image is {H}x{W} but {model_name(model)} expects {size[0]}x{size[1]}; "
                         "resize the input")


def make_players(model: nn.Module, x: Tensor, feature_mask: Tensor | None,
                 tubelets: tuple[int, int, int] | None) -> Players:
    """The players of a batch (B, C, *S): a feature mask, the ViT's patches or tubelets."""
    S = tuple(x.shape[2:])
    if feature_mask is not None:
        if feature_mask.dtype in (torch.bool,) or feature_mask.is_floating_point():
            raise TypeError(f"feature_mask must hold integer player ids, got {feature_mask.dtype}; "
                            "use feature_mask.long()")
        if tuple(feature_mask.shape) != S:
            raise ValueError(f"feature_mask has shape {tuple(feature_mask.shape)} but the input's "
                             f"pixels are {S}; give one player id per pixel")
        mask = feature_mask.detach().long().cpu()
        ids = mask.unique()
        if ids.min() != 0 or len(ids) != ids.max() + 1:
            raise ValueError("feature_mask must number the players 0..N-1 with none missing, got "
                             f"ids {ids.tolist()[:10]}{'...' if len(ids) > 10 else ''}")
        return Players(mask, len(ids), "feature_mask", None)
    if is_vit(model):
        mask = patch_feature_mask(*S, model.patch_size)
        return Players(mask, int(mask.max()) + 1, "patches", tuple(model.grid))
    if x.ndim == 5:
        grid = tubelets or tuple(getattr(model, "tubelets", DEFAULT_TUBELETS))
        if len(grid) != 3 or not all(isinstance(g, int) and g > 0 for g in grid):
            raise ValueError(f"tubelets must be three positive ints (t, h, w), got {grid!r}")
        mask = tubelet_feature_mask(*S, grid=tuple(grid))
        return Players(mask, int(mask.max()) + 1, "tubelets", tuple(grid))
    raise ValueError(f"{model_name(model)} has no patch grid: pass feature_mask ({S[0]}, {S[1]}) "
                     "with player ids 0..N-1, e.g. shapley.game.patch_feature_mask(H, W, 8)")


def as_target(model: nn.Module, x: Tensor, target: Tensor | int | None,
              batch_size: int = 64) -> Tensor:
    """Target classes (B,) long on the model's device; the predicted class when `target` is None."""
    B = x.shape[0]
    if target is None:
        with torch.no_grad():
            return torch.cat([model(chunk).argmax(-1) for chunk in x.split(batch_size)])
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


# --- helpers shared by methods ----------------------------------------------------------------
def default_background(x: Tensor) -> Tensor:
    """References for one input (C, *S) when no training data is given: (2, C, *S).

    Black (zeros) and a Gaussian-blurred copy of the input (the masking game's default baseline):
    one reference far from the input and one that keeps its colours but not its small details.
    """
    return torch.stack([torch.zeros_like(x), make_baseline(x, "blur")])


def background_for(x: Tensor, background: Tensor | str | Sequence[str] | None) -> Tensor:
    """References (M, C, *S) for one input (C, *S): given ones, named baselines or the default."""
    if background is None:
        return default_background(x)
    if isinstance(background, str):
        background = [background]
    if isinstance(background, (list, tuple)):
        return torch.stack([make_baseline(x, b) for b in background])
    if not isinstance(background, Tensor):
        raise TypeError(f"background must be a tensor (M, C, ...), a baseline name or None, got "
                        f"{type(background).__name__}")
    bg = background.detach().to(x)
    if bg.ndim == x.ndim:
        bg = bg[None]
    if tuple(bg.shape[1:]) != tuple(x.shape) or len(bg) == 0:
        raise ValueError(f"background has shape {tuple(background.shape)} but the inputs are "
                         f"{tuple(x.shape)}; give (M, {', '.join(map(str, x.shape))}) reference "
                         "inputs, e.g. a few training examples")
    return bg


def unsupported(method: str, model: nn.Module, why: str, instead: str) -> ValueError:
    """The error for a method that cannot explain a model."""
    return ValueError(f"{method} cannot explain {model_name(model)}: {why}; use {instead}")


def games(model: nn.Module, x: Tensor, players: Players, *, removal: str, baseline: str | Tensor,
          batch_size: int, output: str) -> Iterator:
    """One masking game per input of the batch (B, C, *S), over `players`."""
    from shapley.game import MaskingGame

    own_patches = players.kind == "patches"
    if removal == "drop" and not own_patches:
        raise ValueError("removal='drop' removes the ViT's own patches: it works with neither a "
                         "feature_mask nor a video model; use removal='baseline'")
    for xi in x:
        yield MaskingGame(model, xi, removal=removal, baseline=baseline,
                          feature_mask=None if own_patches else players.mask,
                          batch_size=batch_size, output=output)


def uncounted(game) -> int:
    """Rows a game ran without model.forward: ViT token dropping calls the blocks directly."""
    return game.n_evals if game.removal == "drop" else 0


def per_input_values(model: nn.Module, x: Tensor, target: Tensor, players: Players,
                     estimate: Callable, *, removal: str, baseline: str | Tensor,
                     batch_size: int, output: str) -> Result:
    """Values (B, N) of each input's target class from `estimate(game) -> (N, K)` on its game."""
    values, rows = [], 0
    per_input = games(model, x, players, removal=removal, baseline=baseline,
                      batch_size=batch_size, output=output)
    for game, k in zip(per_input, target.tolist(), strict=True):
        values.append(estimate(game)[:, k])                                # (N,)
        rows += uncounted(game)
    return Result(values=torch.stack(values).float().to(x.device), uncounted_forwards=rows)
