"""How close an explanation is to the Shapley values of its model's own game.

Shared by the studies: the references of a set of examples (exact up to 16 players, else
antithetic permutation in two halves with its own noise; `evaluation.references`), a
self-explaining model's phi and pair terms against them (`compare`), a post-hoc explainer of a
frozen model against them (`measure`), and what a pairwise decomposition leaves of the game
(`remainder`, `decomposition_remainder`: 1 - R² on Shapley-kernel coalitions).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from evaluation.examples import Examples, load_examples, per_class_means
from evaluation.metrics import auroc, pearson, rel_l2
from evaluation.references import Reference, game_for, reference, resolved
from evaluation.scoring import check_efficiency, efficiency_gap
from explainers import explain
from explainers.core import model_device
from explainers.learned_shap_posthoc import frozen_decomposition
from models import zoo
from shapley.sampling import kernel_coalitions

REFERENCE_BUDGET64 = 16384   # evaluations of the 64-patch reference: two halves of 8,192
REFERENCE_BUDGET196 = 19600  # 2 x 9,800 evaluations: 25 antithetic pairs of permutations a half
# the statistics `compare` summarises (mean, min, max), and those also averaged per true class
STATS = ("pearson", "rel_l2", "efficiency_gap", "reference_noise", "remainder",
         "pair_pearson_harsanyi", "pair_pearson_harsanyi_true_pair", "pair_pearson_faith",
         "pair_rel_l2_faith", "pair_auroc_truth", "pair_auroc_truth_exact")
PER_CLASS_STATS = ("pearson", "rel_l2", "remainder", "pair_pearson_faith", "pair_rel_l2_faith",
                   "pair_pearson_harsanyi")


def references_for(model: nn.Module, ex: Examples, budget: int | None,
                   progress: bool = True) -> list[Reference]:
    """The reference of every example (cached; see evaluation.references)."""
    return [reference(model, x, budget) for x in tqdm(ex.x, desc="references", leave=False,
                                                       disable=not progress)]


@torch.no_grad()
def compare(model: nn.Module, ex: Examples, refs: list[Reference],
            remainder_coalitions: int = 1000) -> dict:
    """Per-example agreement of phi (and pairs) with the references of the same game, and the
    game's remainder (`remainder` over that many Shapley-kernel coalitions; 0 skips it)."""
    model.eval()
    n = model.n_players
    iu = torch.triu_indices(n, n, 1)
    rows = []
    for i in range(len(ex)):
        x, y, ref = ex.x[i].to(model_device(model)), int(ex.y[i]), refs[i]
        out = model.shapley_values(x[None])
        target = int(out.logits[0].argmax())
        phi = out.shapley[0, :, target].double().cpu()                      # (N,)
        ref_phi = ref.values[:, target]
        row = {"index": ex.index[i], "target": target, "label": y,
               "pearson": pearson(phi, ref_phi), "rel_l2": rel_l2(phi, ref_phi),
               "efficiency_gap": abs(check_efficiency(phi, ref, target, f"example {i}")),
               "reference_noise": ref.noise(target), "reference_evals": ref.n_evals,
               "phi": phi.tolist(), "reference": ref_phi.tolist()}
        if remainder_coalitions:
            row["remainder"] = remainder(model, ex.x[i], target, remainder_coalitions, seed=i)
        if out.pair is not None:
            learned_pairs = out.pair[0, :, :, target].double().cpu()       # (N, N)
            has_pair = ex.pairs is not None and bool(ex.pairs[i].any())
            if ref.pairs_harsanyi is not None:
                r = pearson(learned_pairs[iu[0], iu[1]], ref.pairs_harsanyi[iu[0], iu[1], target])
                row["pair_pearson_harsanyi"] = r
                # Where no pair decides the class, both pair tables are near-zero noise and their
                # correlation says little; reported apart for the images that hold a true pair.
                if has_pair:
                    row["pair_pearson_harsanyi_true_pair"] = r
            if ref.pairs_faith is not None:
                faith = ref.pairs_faith[iu[0], iu[1], target]
                row["pair_pearson_faith"] = pearson(learned_pairs[iu[0], iu[1]], faith)
                if faith.norm() > 0:
                    row["pair_rel_l2_faith"] = rel_l2(learned_pairs[iu[0], iu[1]], faith)
            if has_pair:
                # the true pairs are what makes the *true* class (e.g. triangle AND cross), so
                # they are scored on that class's terms even when the model predicts another
                # (there the pair is evidence against the prediction, and would rank last)
                truth = ex.pairs[i][iu[0], iu[1]]
                label_pairs = out.pair[0, :, :, y].double().cpu()              # (N, N)
                row["pair_auroc_truth"] = auroc(label_pairs[iu[0], iu[1]], truth)
                if ref.pairs_harsanyi is not None:
                    row["pair_auroc_truth_exact"] = auroc(
                        ref.pairs_harsanyi[iu[0], iu[1], y], truth)
        rows.append(row)
    return {"examples": rows, **summarise(rows, ex.classes)}


@torch.no_grad()
def remainder(model: nn.Module, x: Tensor, target: int, n_coalitions: int = 1000,
              seed: int = 0) -> float:
    """1 - R^2 of the head's decomposition against the model's game on Shapley-kernel coalitions.

    The share of the variance of v(S) (class `target`, S drawn from the Shapley kernel) that the
    head's own 2-additive decomposition restricted to S leaves unexplained: 0 when the model's
    game is the head's (pairwise), larger the more higher-order terms it keeps. It also bounds
    the samplers: one antithetic pair of permutations is exact for a pairwise game.
    """
    n = model.n_players
    keep = kernel_coalitions(n, n_coalitions, torch.Generator().manual_seed(seed))
    v = game_for(model, x)(keep)[:, target].double().cpu()                 # (C,)
    full = model.explain(x[None].to(model_device(model)))
    g = full.restrict(keep.to(full.unary.device))[:, target].double().cpu()
    return unexplained(v, g)


def unexplained(v: Tensor, g: Tensor) -> float:
    """1 - R^2 of the fit g of the game values v (both (C,)): the share of v's variance left."""
    total = float(((v - v.mean()) ** 2).sum())
    return float(((v - g) ** 2).sum()) / total if total > 0 else float("nan")


def stats(values) -> dict | None:
    v = np.array([a for a in values if a is not None and a == a], dtype=float)
    return None if len(v) == 0 else {"mean": float(v.mean()), "min": float(v.min()),
                                     "max": float(v.max()), "n": int(len(v))}


def summarise(rows: list[dict], classes: list[str]) -> dict:
    """Mean / min / max of every statistic, and its mean over each true class."""
    labels = [r["label"] for r in rows]
    out = {k: stats([r.get(k) for r in rows]) for k in STATS}
    out["per_class"] = {k: per_class_means([r.get(k) for r in rows], labels, classes)
                        for k in PER_CLASS_STATS}
    errors = [r["rel_l2"] for r in rows]
    noise = max(r["reference_noise"] for r in rows)
    out["resolved"] = all(resolved(e, r["reference_noise"]) for e, r in zip(errors, rows,
                                                                              strict=True))
    out["max_reference_noise"] = noise
    return out


# `measure`'s defaults: 16 test images of each game (the same for every explainer), and the
# post-hoc goals (phi rel. L2) it records beside each result
PER_CLASS = 4
GOALS = {16: 0.05, 64: 0.10}


def measure(name: str, quick: bool, progress: bool = True, per_class: int | None = None,
            budget: int | None = None, remainder_coalitions: int = 0) -> dict:
    """Train (or load) one post-hoc explainer and score it against its frozen model's game.

    `per_class` test images of each class (default 4; quick 1), against exact values up to 16
    players, else an antithetic-permutation reference of `budget` evaluations (default the
    report's 64-patch budget; quick 2,048). With `remainder_coalitions`, each row also gets the
    share of the frozen game (1 - R² over that many Shapley-kernel coalitions) that the
    explainer's own decomposition leaves unexplained.
    """
    spec = zoo.resolve(name, quick)
    trained = zoo.load(name, quick=quick, progress=progress)
    explainer = trained.model.eval()
    frozen = zoo.frozen_model(spec)
    ex = load_examples(spec, frozen, per_class or (1 if quick else PER_CLASS))
    n = frozen.n_players
    if n <= 16:
        budget = None
    elif budget is None:
        budget = 2048 if quick else REFERENCE_BUDGET64
    with torch.no_grad():
        targets = frozen(ex.x).argmax(-1)
    kind = spec.head.get("kind", "harsanyi")
    method = "vit_shapley" if kind == "vit_shapley" else "learned_shap_posthoc"
    rows = []
    iu = torch.triu_indices(n, n, 1)
    for i in tqdm(range(len(ex)), desc=name, leave=False, disable=not progress):
        att = explain(method, frozen, ex.x[i], int(targets[i]), explainer=explainer)
        k, ref = int(targets[i]), reference(frozen, ex.x[i], budget)
        phi = att.values[0].double()
        row = {"index": ex.index[i], "label": int(ex.y[i]), "target": k,
               "rel_l2": rel_l2(phi, ref.values[:, k]), "pearson": pearson(phi, ref.values[:, k]),
               "efficiency_gap": abs(efficiency_gap(phi, ref, k)),
               "reference_noise": ref.noise(k), "evals": att.cost.evals,
               "seconds": att.cost.seconds}
        if remainder_coalitions:
            row["remainder"] = decomposition_remainder(explainer, frozen, ex.x[i], k,
                                                       remainder_coalitions, seed=i)
        if "pairs" in att.extras and ref.pairs_faith is not None:
            learned, faith = att.extras["pairs"][0].double(), ref.pairs_faith[..., k]
            row["pair_pearson_faith"] = pearson(learned[iu[0], iu[1]], faith[iu[0], iu[1]])
        rows.append(row)
    errors = [r["rel_l2"] for r in rows]
    head = ("ViT-Shapley (attention block + MLP)" if kind == "vit_shapley" else
            "unary + pairs" if spec.head.get("pairwise", True) else "unary only")
    return {"name": name, "method": method, "explains": spec.plain, "n_players": n,
            "head": head, "reference": ref.describe(),
            "n_examples": len(ex), "per_class": ex.per_class, "epochs": spec.epochs,
            "coalitions_per_image": spec.head.get("coalitions", 32),
            "train_seconds": trained.meta["train_seconds"],
            "fingerprint": trained.meta.get("fingerprint"),
            "frozen_evals": trained.meta.get("frozen_evals"),
            "resolved": all(resolved(e, r["reference_noise"]) for e, r in zip(errors, rows,
                                                                              strict=True)),
            "goal": GOALS.get(n), "rel_l2": stats(errors),
            "pearson": stats([r["pearson"] for r in rows]),
            "efficiency_gap": stats([r["efficiency_gap"] for r in rows]),
            "reference_noise": stats([r["reference_noise"] for r in rows]),
            "pair_pearson_faith": stats([r.get("pair_pearson_faith") for r in rows]),
            "evals_per_explanation": float(np.mean([r["evals"] for r in rows])),
            "seconds_per_explanation": float(np.median([r["seconds"] for r in rows])),
            "remainder": stats([r.get("remainder") for r in rows]),
            "examples": rows}


@torch.no_grad()
def decomposition_remainder(explainer: nn.Module, frozen: nn.Module, x: Tensor, target: int,
                            n_coalitions: int = 1000, seed: int = 0) -> float:
    """1 - R² of the explainer's decomposition against the frozen game on Shapley-kernel
    coalitions (class `target`): what its additive (+ pairwise) form cannot hold of the game."""
    keep = kernel_coalitions(frozen.n_players, n_coalitions, torch.Generator().manual_seed(seed))
    v = game_for(frozen, x)(keep)[:, target].double().cpu()                  # (C,)
    xb = x[None].to(model_device(frozen))
    out = frozen_decomposition(explainer, frozen, xb)
    g = out.restrict(keep.to(out.unary.device))[:, target].double().cpu()
    return unexplained(v, g)
