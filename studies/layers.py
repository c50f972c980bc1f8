"""Shap-CAM, DeepLiftShap and GradCAM++ at every block of a 2D and a 3D ResNet.

Shap-CAM (Zheng et al., ECCV 2022) values the cells of one convolutional feature map; which layer
is left open, and the metrics it is judged by, Average Drop and Average Increase (Chattopadhyay et
al. 2018) and RISE's insertion and deletion AUCs (Petsiuk et al. 2018), were reported to depend
on the layer and, for the first two, on how much mass a map has (Domeniconi 2025, who proposed
rescaling every map to the same mass before comparing). This study computes, at the stem and at
every residual block of the 2D ResNet (resnet18 topology, patch-game images) and of the 3D-ResNet
(motion clips), on the same stratified test inputs and their predicted classes:

- `shap_cam` (cells removed to the map's mean, antithetic permutation sampling, 4 pairs of
  orderings), `deeplift_shap` with `target_layer` (captum's LayerDeepLiftShap, black and blurred
  references) and `gradcam_pp` with `target_layer` (pytorch-grad-cam), each map upsampled to the
  input;
- Average Drop and Average Increase (%) of the input multiplied by the map (black elsewhere), and
  insertion (from a blurred input) and deletion (to black) AUCs in 1% steps of pixels, both for
  the map as it is and after equal-mass rescaling (r = 0.3);
- each layer's receptive field (`receptive_field`), the x-axis of the figure.

Writes `layers.json`, `layers.md`, the figure `shap_cam_layers.png` (per-layer curves) and the
block in docs/shap-workflows.md. About 15 minutes on 2 cores: `make layers`.

    python -m studies.layers [--quick] [--models resnet_patches r3d_video]
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from evaluation.cli import experiment_parser, setup
from evaluation.examples import load_examples
from evaluation.formatting import checkpoints_sentence
from evaluation.map_metrics import (
    average_drop_increase,
    equal_mass_rescale,
    masked_probabilities,
    normalise_map,
)
from evaluation.metrics import insertion_deletion
from evaluation.records import publish, write_json
from explainers import explain
from explainers.core import cnn_blocks
from models import zoo
from shapley.game import MaskingGame
from viz.overlay import new_figure

OUT = zoo.ROOT / "shap_overlays"
MODELS = ("resnet_patches", "r3d_video")
METHODS = ("shap_cam", "deeplift_shap", "gradcam_pp")
PER_CLASS = 2
STEPS = 100                  # insertion and deletion: 1% of the pixels a step
R = 0.3                      # equal-mass share (Domeniconi 2025)
QUICK = {"per_class": 1, "steps": 10, "blocks": 2}     # the last two blocks (fewest cells)


def receptive_field(model: nn.Module, block: str) -> dict[str, int]:
    """The receptive field (in input pixels, and frames for clips) of one cell of `block`'s
    output, along the main path: r += (k - 1) x jump and jump x= stride over every convolution
    and pooling from the input to the block's last one (1x1 shortcut projections, which see
    less, are skipped)."""
    blocks = cnn_blocks(model)
    if block not in blocks:
        raise ValueError(f"no block {block!r}; choose one of {list(blocks)}")
    target = blocks[block]
    modules = list(model.named_modules())
    inside = {id(m) for m in target.modules()}
    last = max(i for i, (_, m) in enumerate(modules) if id(m) in inside)
    space = time = 1
    jump_s = jump_t = 1
    for name, m in modules[:last + 1]:
        if any(part in name for part in ("downsample", "shortcut")):
            continue
        if not isinstance(m, (nn.Conv2d, nn.Conv3d, nn.MaxPool2d, nn.MaxPool3d)):
            continue
        k, s, d = (np.atleast_1d(np.asarray(v)) for v in (m.kernel_size, m.stride, m.dilation))
        ks, ss, ds = int(k[-1]), int(s[-1]), int(d[-1])
        space += (ks - 1) * ds * jump_s
        jump_s *= ss
        if len(k) == 3:
            time += (int(k[0]) - 1) * int(d[0]) * jump_t
            jump_t *= int(s[0])
    out = {"pixels": space}
    if any(isinstance(m, nn.Conv3d) for _, m in modules):
        out["frames"] = time
    return out


def pixel_game(model: nn.Module, x: Tensor, baseline: str) -> MaskingGame:
    """Every pixel a player (all channels together): the game insertion and deletion walk."""
    ids = torch.arange(int(np.prod(x.shape[1:]))).view(x.shape[1:])
    return MaskingGame(model, x, removal="baseline", baseline=baseline, feature_mask=ids,
                       output="prob")


def scores(model: nn.Module, x: Tensor, maps: Tensor, targets: Tensor, steps: int) -> dict:
    """Average Drop / Increase and insertion / deletion AUCs, raw and equal-mass rescaled."""
    out = {}
    for tag, r in (("raw", None), ("equal_mass", R)):
        y, o = masked_probabilities(model, x, maps, targets, "zeros", r=r)
        drop, increase = average_drop_increase(y, o)
        ins, dels = [], []
        for xi, m, k in zip(x, maps, targets.tolist(), strict=True):
            ranked = m if r is None else equal_mass_rescale(normalise_map(m), r)
            ins.append(insertion_deletion(pixel_game(model, xi, "blur"), ranked.flatten(), k,
                                          steps)["insertion_auc"])
            dels.append(insertion_deletion(pixel_game(model, xi, "zeros"), ranked.flatten(), k,
                                           steps)["deletion_auc"])
        out[tag] = {"average_drop": drop, "average_increase": increase,
                    "insertion_auc": float(np.mean(ins)), "deletion_auc": float(np.mean(dels))}
    return out


def study_model(name: str, quick: bool, progress: bool) -> dict:
    spec = zoo.resolve(name, quick)
    trained = zoo.load(name, quick=quick, progress=progress)
    model = trained.model.eval()
    per_class = QUICK["per_class"] if quick else PER_CLASS
    steps = QUICK["steps"] if quick else STEPS
    ex = load_examples(spec, model, per_class)
    with torch.no_grad():
        targets = model(ex.x).argmax(-1)
    blocks = list(cnn_blocks(model))
    if quick:
        blocks = blocks[-QUICK["blocks"]:]
    rows = []
    todo = [(b, m) for b in blocks for m in METHODS]
    for block, method in tqdm(todo, desc=f"{name} layers", disable=not progress):
        a = explain(method, model, ex.x, targets, target_layer=block)
        cells = a.extras.get("cells")
        rows.append({"block": block, "method": method, "evals_per_input": a.cost.evals / len(ex.x),
                     "seconds_per_input": a.cost.seconds / len(ex.x),
                     "cells": None if cells is None else list(cells.shape[1:]),
                     "receptive_field": receptive_field(model, block),
                     **scores(model, ex.x, a.pixel_map, targets, steps)})
    return {"model": name, "description": spec.description, "n_inputs": len(ex.x),
            "fingerprint": trained.meta.get("fingerprint"),
            "per_class": per_class, "blocks": blocks, "rows": rows,
            "accuracy_on_inputs": float((targets == ex.y).double().mean())}


METRICS = (("average_drop", "Average Drop (%) ↓"), ("average_increase", "Average Increase (%) ↑"),
           ("insertion_auc", "insertion AUC ↑"), ("deletion_auc", "deletion AUC ↓"))


def figure(results: dict):
    """One row per model, one panel per metric: a curve per method against the receptive field,
    solid for the raw maps, dashed after equal-mass rescaling."""
    models = results["models"]
    fig = new_figure(figsize=(15, 3.6 * len(models)), layout="constrained")
    axes = np.asarray(fig.subplots(len(models), len(METRICS), squeeze=False))
    colours = {"shap_cam": "C3", "deeplift_shap": "C0", "gradcam_pp": "C2"}
    for r, m in enumerate(models):
        for c, (key, label) in enumerate(METRICS):
            ax = axes[r, c]
            for method in METHODS:
                pts = [row for row in m["rows"] if row["method"] == method]
                rf = [row["receptive_field"]["pixels"] for row in pts]
                for tag, ls in (("raw", "-"), ("equal_mass", "--")):
                    ax.plot(rf, [row[tag][key] for row in pts], ls, marker="o", ms=3,
                            color=colours[method],
                            label=f"{method}{'' if tag == 'raw' else ' (equal mass)'}")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("receptive field of a cell (px)")
            ax.set_title(f"{m['model']}: {label}", fontsize=9)
            if c == 0:
                ax.legend(fontsize=6)
    fig.suptitle("Per-layer maps at the stem and every residual block (solid: as computed; "
                 f"dashed: rescaled to equal mass, r = {R})", fontsize=10)
    return fig


def markdown(results: dict) -> str:
    lines = ["| model | block | receptive field (px) | method | evals / input | "
             "Avg Drop % (equal mass) | Avg Increase % (equal mass) | insertion AUC (equal mass) "
             "| deletion AUC (equal mass) |", "|---|---|---|---|---|---|---|---|---|"]
    for m in results["models"]:
        for row in m["rows"]:
            cells = [f"{row['raw'][k]:.3g} ({row['equal_mass'][k]:.3g})" for k, _ in METRICS]
            rf = row["receptive_field"]
            rf_text = f"{rf['pixels']}" + (f" x {rf['frames']} frames" if "frames" in rf else "")
            lines.append(f"| {m['model']} | {row['block']} | {rf_text} | {row['method']} | "
                         f"{row['evals_per_input']:.0f} | " + " | ".join(cells) + " |")
    checkpoints = checkpoints_sentence(
        {m["model"]: m["fingerprint"] for m in results["models"] if m.get("fingerprint")}).strip()
    return "\n".join(lines) + (f"\n\n{checkpoints}" if checkpoints else "")


def main(argv: list[str] | None = None) -> dict:
    parser = experiment_parser(__doc__.splitlines()[0], "folder for layers.json / .md / .png "
                               "(default shap_overlays/; in quick mode <cache>/layers-quick/)")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args(argv)
    quick, out = setup(args, OUT, "layers-quick")
    results = {"quick": quick, "r": R, "steps": QUICK["steps"] if quick else STEPS,
               "models": [study_model(n, quick, not args.no_progress) for n in args.models]}
    results = write_json(out / "layers.json", results)
    table = markdown(results)
    publish(table, out, "layers", figure(results), "shap_cam_layers.png", block="layers",
            committed=not quick and out.resolve() == OUT.resolve())
    print(table)
    return results


if __name__ == "__main__":
    main()
