"""Pieces several methods share: reference inputs, per-input masking games, the 'cannot' error."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from explainers.core.inputs import Players, own_players
from explainers.core.model_kind import model_name
from explainers.core.verb import Result
from shapley.game import make_baseline


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

    own_patches = own_players(model, players)
    if removal == "drop" and not own_patches:
        raise ValueError("removal='drop' removes the model's own patches or tubelet tokens: it "
                         "works with neither a feature_mask nor another tubelet grid; use "
                         "removal='baseline'")
    for xi in x:
        yield MaskingGame(model, xi, removal=removal, baseline=baseline,
                          feature_mask=None if own_patches and removal != "baseline"
                          else players.mask,
                          batch_size=batch_size, output=output)


def per_input_values(model: nn.Module, x: Tensor, target: Tensor, players: Players,
                     estimate: Callable, *, removal: str, baseline: str | Tensor,
                     batch_size: int, output: str) -> Result:
    """Values (B, N) of each input's target class from `estimate(game) -> (N, K)` on its game."""
    values = []
    per_input = games(model, x, players, removal=removal, baseline=baseline,
                      batch_size=batch_size, output=output)
    for game, k in zip(per_input, target.tolist(), strict=True):
        values.append(estimate(game)[:, k])                                # (N,)
    return Result(values=torch.stack(values).float().to(x.device))


def resolve_layer(model: nn.Module, layer: str | nn.Module | None, method: str) -> nn.Module | None:
    """The module a per-layer method explains: a name from the model's `blocks()` (e.g.
    "layer2.0") or any of its `named_modules()`, the module itself, or (None) its feature_layer."""
    if layer is None:
        found = getattr(model, "feature_layer", None)
        return found if isinstance(found, nn.Module) else None
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError(f"{method}: the layer given is not a module of {model_name(model)}; "
                             "pass one of its own blocks (or its name)")
        return layer
    blocks = cnn_blocks(model)
    named = dict(model.named_modules())
    if isinstance(layer, str) and layer in blocks:
        return blocks[layer]
    if isinstance(layer, str) and layer in named and layer:
        return named[layer]
    raise ValueError(f"{method}: {model_name(model)} has no layer {layer!r}; choose one of "
                     f"{list(blocks) or sorted(n for n in named if n)[:20]}")


def cnn_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """A ResNet's stem and residual blocks in order, by name ("stem", "layer1.0", ...): the
    model's own `blocks()` (the 2D ResNet), else read from its `stem` and `stages` (our 3D-ResNet)
    or `layer1..4` (torchvision's); empty for other models."""
    if callable(getattr(model, "blocks", None)):
        return model.blocks()
    net = getattr(model, "net", model)
    stages = getattr(net, "stages", None)
    if stages is None and hasattr(net, "layer1"):
        stages = [getattr(net, f"layer{i}") for i in range(1, 5)]
    if not hasattr(net, "stem") or stages is None:
        return {}
    out = {"stem": net.stem}
    for i, stage in enumerate(stages):
        for j, block in enumerate(stage):
            out[f"layer{i + 1}.{j}"] = block
    return out
