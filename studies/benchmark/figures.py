"""The benchmark's figures: every method's maps, the samplers' error against cost, and the
insertion / deletion curves. Each takes the benchmark's in-memory results and returns a Figure."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from evaluation.runs import SAMPLERS, Run, row_label
from viz.overlay import (
    colorbar,
    draw_overlay,
    new_figure,
    plot_attributions,
    symmetric_limit,
    truth_rows,
)


def figure_runs(runs: dict[str, Run]) -> dict[str, Run]:
    """The runs shown in figures (by label): samplers only at their largest budget."""
    largest: dict[str, Run] = {}
    for run in runs.values():
        s = run.spec
        if s.method in SAMPLERS and (s.method not in largest
                                     or s.budget > largest[s.method].spec.budget):
            largest[s.method] = run
    return {r.label: r for r in runs.values()
            if r.method not in SAMPLERS or largest[r.method] is r}


def varied_indices(labels: list[int], n: int) -> list[int]:
    """Up to `n` indices taking each class in turn (in order of first appearance): a varied pick."""
    queues: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        queues.setdefault(c, []).append(i)
    picks: list[int] = []
    while len(picks) < min(n, len(labels)):
        for queue in queues.values():
            if queue and len(picks) < n:
                picks.append(queue.pop(0))
    return picks


def grid_images(res, n: int) -> Figure:
    """Methods x examples (one of each class first) on the 16-patch ViT, key objects outlined."""
    ex = res.examples
    idx = varied_indices(ex.y.tolist(), n)
    maps = {label: run.pixel_map[idx].float() for label, run in figure_runs(res.runs).items()}
    titles = [f"{ex.classes[int(ex.y[i])]}\npred. {ex.classes[int(res.targets[i])]}" for i in idx]
    return plot_attributions(ex.x[idx], maps, truth=ex.truth[idx], patch_size=res.model.patch_size,
                             titles=titles, panel=1.3,
                             suptitle=f"Every method on {res.info['zoo_model']} "
                                      "(predicted class; key objects outlined)")


def grid_video(res, index: int = 0, panel: float = 1.2) -> Figure:
    """Methods x frames for one clip: the frames on top, one row per method, truth outlined."""
    ex = res.examples
    clip, truth = ex.x[index], ex.truth[index]                         # (3, T, H, W), (T, H, W)
    runs = figure_runs(res.runs)
    T, H, W = clip.shape[1:]
    spatial = tuple(res.model.tubelets[1:])
    mask = truth_rows(truth, 1, (T, H, W), None)[0]
    fig = new_figure(figsize=(panel * T + 1.6, panel * (1 + len(runs))), layout="constrained")
    axes = np.asarray(fig.subplots(1 + len(runs), T, squeeze=False))
    gt = res.model.tubelets[0]
    for t in range(T):
        draw_overlay(axes[0, t], clip[:, t], None, 1.0, truth=mask[t], grid=spatial,
                     title=f"t={t} · time cell {t * gt // T}")
    axes[0, 0].set_ylabel("input", fontsize=8)
    for r, (label, run) in enumerate(runs.items(), start=1):
        heat = run.pixel_map[index].float()                            # (T, H, W)
        vmax = symmetric_limit(heat)
        mappable = None
        for t in range(T):
            mappable = draw_overlay(axes[r, t], clip[:, t], heat[t], vmax, truth=mask[t],
                                    grid=spatial)
        axes[r, 0].set_ylabel(label, fontsize=6)
        colorbar(fig, mappable, axes[r, :].tolist())
    y, p = int(ex.y[index]), int(res.targets[index])
    fig.suptitle(f"Every method on {res.info['zoo_model']}: one clip, class {ex.classes[y]} "
                 f"(pred. {ex.classes[p]}); moving object outlined", fontsize=10)
    return fig


POINTS = [("learned_shap", "LearnedSHAP", "*", "#d62728", 14),
          ("gradient_shap", "GradientSHAP (shap)", "s", "#2ca02c", 7),
          ("captum_gradient_shap", "GradientSHAP (captum)", "D", "#9467bd", 6),
          ("integrated_gradients", "integrated gradients", "^", "#8c564b", 7)]


def convergence(res, break_even: dict) -> Figure:
    """Sampler error against exact values vs evaluations, with one-shot methods as points."""
    fig = new_figure(figsize=(8.4, 4.2), layout="constrained")
    ax = fig.subplots()
    colours = {"permutation": "#1f77b4", "kernel": "#ff7f0e"}
    for method, s in break_even["samplers"].items():
        curve = s["curve"]
        ax.plot([c["evals"] for c in curve], [c["rel_l2"] for c in curve], "-o", ms=4,
                color=colours.get(method), label=f"{method} sampling (mean over seeds)")
    rows = {r["method"]: r for r in res.rows if r["budget"] is None and not r.get("variant")}
    for method, name, marker, colour, size in POINTS:
        if method not in rows:
            continue
        err, evals = rows[method]["rel_l2_exact"], rows[method]["evals"]
        if err is not None and evals:
            ax.plot([evals], [err], marker, ms=size, color=colour, label=f"{name} (one run)")
    ax.axhline(break_even["target_error"], color="#d62728", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model evaluations per explanation (forwards + backwards)")
    ax.set_ylabel("relative L2 error vs exact Shapley values")
    ax.set_title(f"{res.info['zoo_model']}: error vs cost ({break_even['n_examples']} examples; "
                 "dashed: LearnedSHAP)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return fig


def insertion_deletion_figure(results: list) -> Figure:
    """Mean insertion and deletion curves per method, one row per model."""
    fig = new_figure(figsize=(10, 3.2 * len(results)), layout="constrained")
    axes = np.asarray(fig.subplots(len(results), 2, squeeze=False))
    cmap = matplotlib.colormaps["tab10"]
    for r, res in enumerate(results):
        shown = figure_runs(res.runs)
        rows = [row for row in res.rows if row_label(row) in shown]
        for j, kind in enumerate(("insertion", "deletion")):
            ax = axes[r, j]
            for c, row in enumerate(rows):
                style = "-" if row["method"] in ("learned_shap", "exact") else "--"
                ax.plot(row["fractions"], row[f"{kind}_curve"], style, color=cmap(c % 10),
                        lw=2 if row["method"] == "learned_shap" else 1.2,
                        label=f"{row_label(row)} (AUC {row[f'{kind}_auc']:.3f})")
            ax.set_title(f"{res.key}: {kind} ({'higher' if j == 0 else 'lower'} is better)",
                         fontsize=9)
            ax.set_xlabel(f"fraction of players {'inserted' if j == 0 else 'deleted'}")
            ax.set_ylabel("probability of the predicted class")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    fig.suptitle("Insertion / deletion through each model's masking game, mean over examples",
                 fontsize=10)
    return fig


__all__ = ["convergence", "figure_runs", "grid_images", "grid_video",
           "insertion_deletion_figure", "varied_indices"]
