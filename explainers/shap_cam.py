"""Shap-CAM (Zheng et al., ECCV 2022): Shapley values of the cells of a convolutional feature map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explainers.core import Players, Result, check_count, register, resolve_layer, unsupported


class CellGame:
    """v(S) for one input: the model's scores with the feature-map cells outside S set to the
    map's mean over cells (Shap-CAM's removal), per channel. Coalitions (C, n_cells) bool."""

    def __init__(self, model: nn.Module, x: Tensor, layer: nn.Module, output: str,
                 batch_size: int):
        self.model, self.x, self.layer = model, x, layer
        self.output, self.batch_size = output, batch_size
        captured = []
        handle = layer.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
        try:
            with torch.no_grad():
                model(x[None])
        finally:
            handle.remove()
        if not captured or not isinstance(captured[0], Tensor) or captured[0].ndim not in (4, 5):
            raise ValueError("shap_cam needs a layer whose output is a convolutional feature map "
                             "(B, C, h, w) or (B, C, t, h, w); pick a block of the CNN")
        self.features = captured[0][0]                                       # (C, *cells)
        self.cells = tuple(self.features.shape[1:])
        self.n_players = int(torch.tensor(self.cells).prod())
        self.mean = self.features.flatten(1).mean(1).view(-1, *[1] * len(self.cells))  # (C, 1..)

    def __call__(self, coalitions: Tensor) -> Tensor:
        outs = []
        for chunk in coalitions.split(self.batch_size):
            keep = chunk.to(self.x.device).view(len(chunk), 1, *self.cells)        # (b, 1, *cells)
            replaced = torch.where(keep, self.features, self.mean)                # (b, C, *cells)
            handle = self.layer.register_forward_hook(lambda m, i, o, r=replaced: r)
            try:
                with torch.no_grad():
                    out = self.model(self.x[None].expand(len(chunk), *self.x.shape))
            finally:
                handle.remove()
            outs.append(out.softmax(-1) if self.output == "prob" else out)
        return torch.cat(outs).double().cpu()                                     # (C, K)


def upsample_cells(cells: Tensor, size: tuple[int, ...]) -> Tensor:
    """Cell values (B, *cells) -> a pixel map (B, *size), bilinear (trilinear for clips) as
    Grad-CAM upsamples, divided by each cell's pixel count so that a uniform map keeps its mass."""
    mode = "bilinear" if cells.ndim == 3 else "trilinear"
    area = float(torch.tensor(size).prod()) / float(torch.tensor(cells.shape[1:]).prod())
    up = F.interpolate(cells[:, None].float(), size=size, mode=mode, align_corners=False)
    return up[:, 0] / area


@register("shap_cam", gradients=False)
def shap_cam(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
             target_layer: str | nn.Module | None = None, budget: int | None = None,
             output: str = "prob", batch_size: int = 512) -> Result:
    """Shapley values of the cells of the feature map at `target_layer` (a name from the model's
    `blocks()` such as "layer3.1", or the module; default: its `feature_layer`), a cell removed by
    setting all its channels to the map's mean over cells, as Shap-CAM removes them; estimated by
    antithetic permutation sampling with `budget` network passes (default: 4 pairs of orderings,
    8 (n_cells - 1) + 2) and upsampled to the input (`upsample_cells`). `output`: the class
    "prob" (Shap-CAM's class confidence) or "logit". The cell values are in extras["cells"]
    (B, *cells); their sum is v(all cells) - v(no cell)."""
    from shapley.sampling import min_budget, permutation_shapley

    if output not in ("prob", "logit"):
        raise ValueError(f"output must be 'prob' or 'logit', got {output!r}")
    batch_size = check_count("batch_size", batch_size)
    if callable(getattr(model, "tile", None)):
        raise unsupported("shap_cam", model, "its trunk runs on every tubelet as a clip of its "
                          "own, so a layer's cells are not cells of the clip's feature map",
                          "gradcam_pp (which tiles them back) or the model's own exact game")
    module = resolve_layer(model, target_layer, "shap_cam")
    if module is None:
        raise unsupported("shap_cam", model, "it has no feature_layer (a convolutional stage)",
                          "shap_cam with target_layer=<a block of the CNN>")
    cell_maps = []
    for xi, k in zip(x, target.tolist(), strict=True):
        game = CellGame(model, xi, module, output, batch_size)
        n = game.n_players
        least = min_budget("permutation", n)
        b = 4 * (least - 2) + 2 if budget is None else check_count("budget", budget)
        if b < least:
            raise ValueError(f"budget={b} is below one antithetic pair of orderings of the "
                             f"{n} cells of this layer: {least}; raise the budget")
        phi = permutation_shapley(game, n, b, seed=seed).values[:, k]                 # (n,)
        cell_maps.append(phi.view(game.cells).float())
    cells = torch.stack(cell_maps).to(x.device)                                      # (B, *cells)
    return Result(pixel_map=upsample_cells(cells, tuple(x.shape[2:])),
                  extras={"cells": cells})
