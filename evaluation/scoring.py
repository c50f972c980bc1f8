"""Scoring one run: every metric per example, its mean, and its mean over each class.

For each example the run's values for the explained class are compared with the reference
Shapley values of the same game (Pearson, Spearman, relative L2, the efficiency gap
sum(phi) - (v(N) - v(empty))), with the data's ground truth (AUROC, pointing game, pair AUROC),
and perturbed through the model (insertion / deletion through the game; Average Drop and
Increase in Confidence on blur-masked inputs, raw and after equal-mass rescaling). Costs are
the model rows counted by `explain` and the seconds against one forward pass.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from evaluation.efficiency import EFFICIENCY_RTOL, EfficiencyError, check_efficient
from evaluation.examples import Examples, per_class_means
from evaluation.map_metrics import average_drop_increase, masked_probabilities
from evaluation.metrics import (
    auroc,
    forward_ratio,
    insertion_deletion,
    pair_auroc,
    pearson,
    pointing_game,
    rel_l2,
    spearman,
)
from evaluation.references import Reference, game_for
from evaluation.runs import UNITLESS, Run

RESCALE_SHARE = 0.3         # equal-mass rescaling keeps 30% of the maximal mass
METRIC_KEYS = ["pearson_exact", "spearman_exact", "rel_l2_exact", "efficiency_gap",
               "auroc_truth", "pointing_game", "pair_auroc_truth", "insertion_auc",
               "deletion_auc", "avg_drop", "avg_increase", "avg_drop_rescaled",
               "avg_increase_rescaled", "evals", "seconds", "forward_ratio"]
__all__ = ["EFFICIENCY_RTOL", "EfficiencyError", "check_efficiency", "efficiency_gap", "score"]


def nanmean(values) -> float | None:
    """Mean over the defined values (None and nan drop out), None when none is defined."""
    v = [float(a) for a in values if a is not None and not math.isnan(float(a))]
    return float(np.mean(v)) if v else None


def positive_mass(pixel_map: Tensor) -> bool:
    """Whether a map keeps anything after clipping negatives (equal-mass rescaling needs it)."""
    return bool((pixel_map > 0).any())


def efficiency_gap(values: Tensor, ref: Reference, k: int) -> float:
    """sum(phi) - (v(N) - v(empty)) of class k: 0 for efficient values of the reference's game."""
    return float(values.double().sum() - (ref.v_full[k] - ref.v_empty[k]))


EFFICIENT = ("exact", "learned_shap")     # methods efficient by construction in the benchmark


def check_efficiency(values: Tensor, ref: Reference, k: int, what: str) -> float:
    """The efficiency gap of `values` (N,) for class k; raises EfficiencyError when it exceeds
    1e-5 of |v(N) - v(empty)| (or of sum |phi|, when that is larger)."""
    return float(check_efficient(values[:, None], ref.v_empty[k:k + 1], ref.v_full[k:k + 1],
                                 what, classes=[k])[0])


def score(run: Run, model: nn.Module, ex: Examples, targets: Tensor,
          refs: list[Reference], fwd_seconds: float) -> dict:
    """Every metric of one run: means, per-class means and per-example values."""
    B = len(ex.x)
    per: dict[str, list] = {k: [None] * B for k in METRIC_KEYS}
    curves = {"insertion": [], "deletion": []}
    unitless = run.method in UNITLESS
    for i in range(B):
        v, t, ref = run.values[i], int(targets[i]), refs[i]
        exact = ref.values[:, t]
        per["pearson_exact"][i] = pearson(v, exact)
        per["spearman_exact"][i] = spearman(v, exact)
        if not unitless:
            per["rel_l2_exact"][i] = rel_l2(v, exact)
            if run.method in EFFICIENT:
                per["efficiency_gap"][i] = abs(check_efficiency(v, ref, t, f"{run.method} on "
                                                                f"example {i}"))
            else:
                per["efficiency_gap"][i] = abs(efficiency_gap(v, ref, t))
        per["auroc_truth"][i] = auroc(v, ex.relevant[i])
        if ex.relevant[i].any():
            per["pointing_game"][i] = float(pointing_game(v, ex.relevant[i]))
        if run.pairs is not None and ex.pairs is not None and ex.pairs[i].any():
            p = run.pairs[i]
            per["pair_auroc_truth"][i] = pair_auroc((p + p.T) / 2, ex.pairs[i])
        curve = insertion_deletion(game_for(model, ex.x[i]), v, t)
        per["insertion_auc"][i], per["deletion_auc"][i] = curve["insertion_auc"], curve["deletion_auc"]
        curves["insertion"].append(curve["insertion_curve"])
        curves["deletion"].append(curve["deletion_curve"])
        # no row counted means the cost was not measured (no explanation is free): null, not 0
        per["evals"][i] = float(run.evals[i]) if run.evals[i] > 0 else None
        per["seconds"][i] = run.seconds[i]
        per["forward_ratio"][i] = forward_ratio(run.seconds[i], run.forward_seconds[i] or fwd_seconds)
    y_full, y_masked = masked_probabilities(model, ex.x, run.pixel_map, targets, "blur")
    for i in range(B):
        per["avg_drop"][i], per["avg_increase"][i] = average_drop_increase(
            y_full[i:i + 1], y_masked[i:i + 1])
    keep = [i for i in range(B) if positive_mass(run.pixel_map[i])]   # an empty map has no mass
    if keep:
        y_full, y_masked = masked_probabilities(model, ex.x[keep], run.pixel_map[keep],
                                                targets[keep], "blur", r=RESCALE_SHARE)
        for j, i in enumerate(keep):
            per["avg_drop_rescaled"][i], per["avg_increase_rescaled"][i] = \
                average_drop_increase(y_full[j:j + 1], y_masked[j:j + 1])
    labels = ex.y.tolist()
    row = {k: nanmean(per[k]) for k in METRIC_KEYS}
    row.update(per_class={k: per_class_means(per[k], labels, ex.classes) for k in METRIC_KEYS},
               insertion_curve=torch.stack(curves["insertion"]).mean(0).tolist(),
               deletion_curve=torch.stack(curves["deletion"]).mean(0).tolist(),
               fractions=curve["fractions"].tolist(),   # the same steps for every example
               per_example=per)
    return row
