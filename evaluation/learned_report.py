"""Is LearnedSHAP the model's Shapley value? Checks against the model's own masking game.

For each held-out example: LearnedSHAP's `phi` (one forward pass) against the exact Shapley values
of the same model's masking game (token dropping for the ViT, blurred tubelets for the 3D-ResNet),
the learned pair terms `c_ij` against the game's exact pair dividends (Harsanyi) and against the
dataset's true interacting pairs, and the *break-even budget*: how many model evaluations
antithetic permutation sampling and KernelSHAP need to reach LearnedSHAP's error on the same
examples. With more players than exact enumeration allows (the 64-patch ViT), the reference is
KernelSHAP with a large budget, as ViT-Shapley does.

    python -m evaluation.learned_report [--quick] [--out shap_overlays/learned_shap.json]

The break-even budgets are computed by `python -m evaluation.benchmark` (same functions).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

import data
from evaluation.metrics import auroc, pearson, rel_l2
from explainers.base import model_device
from models import zoo
from shapley.exact import exact_shapley
from shapley.game import MaskingGame
from shapley.sampling import SAMPLERS, kernel_shap, min_budget
from tools.readme import replace_block

EXACT_LIMIT = 16        # players up to which the reference is exact enumeration


@dataclass
class Example:
    x: Tensor            # (C, H, W) or (C, T, H, W)
    y: int
    pairs: Tensor | None  # (N, N) bool true interacting pairs, when the dataset has them


REFERENCE_BUDGET64 = 16384   # KernelSHAP evaluations of the 64-patch reference in this report


def examples(spec: zoo.ModelSpec, n: int, seed: int = 1) -> list[Example]:
    """The first `n` test examples of the model's dataset (a fixed, seeded order)."""
    ds = data.get_dataset(spec.dataset, "test", seed=spec.seed, **spec.data_options)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    out = []
    for i in idx.tolist():
        item = ds[i]
        out.append(Example(item["x"], int(item["y"]), item.get("pairs")))
    return out


def game_for(model: nn.Module, x: Tensor) -> MaskingGame:
    """The model's own masking game (the removal its consistency loss was trained on)."""
    if getattr(model, "removal", "drop") == "drop":
        return MaskingGame(model, x, removal="drop")
    return MaskingGame(model, x, removal="baseline", baseline=model.baseline,
                       tubelets=model.tubelets)


@torch.no_grad()
def compare(model: nn.Module, exs: list[Example], reference_budget: int = 20000,
            progress: bool = True) -> dict:
    """Per-example agreement of phi (and pairs) with the reference values of the same game."""
    model.eval()
    n = model.n_players
    rows = []
    for ex in tqdm(exs, desc="LearnedSHAP vs reference", disable=not progress):
        x = ex.x.to(model_device(model))
        out = model.explain(x[None])
        target = int(out.logits[0].argmax())
        phi = out.shapley[0, :, target].double().cpu()                      # (N,)
        game = game_for(model, x)
        row = {"target": target, "label": ex.y}
        if n <= EXACT_LIMIT:
            ref = exact_shapley(game, n, interactions=True)
            ref_phi, ref_pairs = ref.values[:, target], ref.pairs_harsanyi[..., target]
            label_ref_pairs = ref.pairs_harsanyi[..., ex.y]
            row["reference_seconds"] = ref.seconds
        else:
            ref = kernel_shap(game, n, budget=reference_budget, seed=12345)
            ref_phi, ref_pairs, label_ref_pairs = ref.values[:, target], None, None
            row["reference_seconds"] = ref.seconds
        row.update(pearson=pearson(phi, ref_phi), rel_l2=rel_l2(phi, ref_phi),
                   phi=phi.tolist(), reference=ref_phi.tolist())
        if out.pair is not None:
            learned_pairs = out.pair[0, :, :, target].double().cpu()       # (N, N)
            iu = torch.triu_indices(n, n, 1)
            has_pair = ex.pairs is not None and bool(ex.pairs.any())
            if ref_pairs is not None:
                r = pearson(learned_pairs[iu[0], iu[1]], ref_pairs[iu[0], iu[1]])
                row["pair_pearson_harsanyi"] = r
                # Where no pair decides the class, both pair tables are near-zero noise and their
                # correlation says little; reported apart for the images that hold a true pair.
                if has_pair:
                    row["pair_pearson_harsanyi_true_pair"] = r
            if has_pair:
                # the true pairs are what makes the *true* class (e.g. triangle AND cross), so
                # they are scored on that class's terms even when the model predicts another
                # (there the pair is evidence against the prediction, and would rank last)
                truth = ex.pairs[iu[0], iu[1]]
                label_pairs = out.pair[0, :, :, ex.y].double().cpu()          # (N, N)
                row["pair_auroc_truth"] = auroc(label_pairs[iu[0], iu[1]], truth)
                if label_ref_pairs is not None:
                    row["pair_auroc_truth_exact"] = auroc(label_ref_pairs[iu[0], iu[1]], truth)
        rows.append(row)
    return {"examples": rows, **summarise(rows)}


def summarise(rows: list[dict]) -> dict:
    def stats(key):
        v = np.array([r[key] for r in rows if key in r and r[key] == r[key]], dtype=float)
        return None if len(v) == 0 else {"mean": float(v.mean()), "min": float(v.min()),
                                         "max": float(v.max()), "n": int(len(v))}
    return {k: stats(k) for k in ("pearson", "rel_l2", "pair_pearson_harsanyi",
                                  "pair_pearson_harsanyi_true_pair",
                                  "pair_auroc_truth", "pair_auroc_truth_exact")}


def break_even(model: nn.Module, exs: list[Example], learned: dict, budgets: list[int],
               seeds: tuple[int, ...] = (0, 1, 2), progress: bool = True) -> dict:
    """Evaluations that permutation sampling and KernelSHAP need to match LearnedSHAP's error.

    The error is the relative L2 distance to the same reference as `compare` (exact values, or
    the large-budget KernelSHAP), averaged over examples and seeds. The break-even budget is the
    smallest budget on the grid whose mean error is at most LearnedSHAP's mean error, or None
    when no budget on the grid reaches it.
    """
    n = model.n_players
    target_error = learned["rel_l2"]["mean"]
    curves = {}
    for method, fn in SAMPLERS.items():
        curve = []
        for budget in [b for b in budgets if b >= min_budget(method, n)]:
            errs, evals = [], []
            for ex, row in tqdm(list(zip(exs, learned["examples"])), leave=False,
                                desc=f"{method} @ {budget}", disable=not progress):
                game = game_for(model, ex.x.to(model_device(model)))
                ref = torch.tensor(row["reference"], dtype=torch.float64)
                for seed in seeds:
                    est = fn(game, n, budget=budget, seed=seed)
                    errs.append(rel_l2(est.values[:, row["target"]], ref))
                    evals.append(est.n_evals)
            curve.append({"budget": budget, "evals": float(np.mean(evals)),
                          "rel_l2": float(np.mean(errs))})
        reached = [c for c in curve if c["rel_l2"] <= target_error]
        curves[method] = {"curve": curve,
                          "break_even_evals": reached[0]["evals"] if reached else None}
    return {"learned_rel_l2": target_error, **curves}


def forward_cost(model: nn.Module, plain: nn.Module, x: Tensor, repeats: int = 20) -> dict:
    """Seconds for one LearnedSHAP explanation (its forward) against the plain model's forward."""
    def timed(fn):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats
    with torch.no_grad():
        t_learned = timed(lambda: model.explain(x))
        t_plain = timed(lambda: plain(x))
    return {"learned_seconds": t_learned, "plain_seconds": t_plain, "ratio": t_learned / t_plain}


def report(name: str, n_examples: int, quick: bool | None = None,
           reference_budget: int = 20000, progress: bool = True) -> dict:
    """Agreement and cost of one LearnedSHAP model of the zoo on `n_examples` held-out inputs.

    The break-even budgets (`break_even` above) are computed once, by the benchmark, into
    `shap_overlays/results.json`.
    """
    spec = zoo.resolve(name, quick)
    trained = zoo.load(name, quick=quick, progress=progress)
    plain = zoo.load(zoo.SPECS[name].plain, quick=quick, progress=progress)
    model = trained.model
    exs = examples(spec, n_examples)
    learned = compare(model, exs, reference_budget, progress)
    batch = torch.stack([e.x for e in exs[:8]]).to(model_device(model))
    return {"model": name, "n_players": model.n_players,
            "reference": "exact" if model.n_players <= EXACT_LIMIT
            else f"kernel_shap budget {reference_budget}",
            "accuracy": trained.meta["accuracy"], "plain_head_accuracy": plain.meta["accuracy"],
            "agreement": {k: v for k, v in learned.items() if k != "examples"},
            "cost": forward_cost(model, plain.model, batch),
            "examples": learned["examples"]}


def markdown(results: list[dict]) -> str:
    """The report as a table: agreement with the reference, and cost."""
    def f(stats, key, digits=3):
        return "n/a" if not stats or stats.get(key) is None else f"{stats[key]:.{digits}f}"

    lines = ["| model | players | reference | accuracy (plain head) | Pearson mean (min) | "
             "rel. L2 mean (max) | pairs vs Harsanyi (Pearson): all (true-pair images) | "
             "pairs vs truth (AUROC, true class) | "
             "time vs plain forward |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a = r["agreement"]
        lines.append(
            f"| `{r['model']}` | {r['n_players']} | {r['reference']} | "
            f"{100 * r['accuracy']:.1f}% ({100 * r['plain_head_accuracy']:.1f}%) | "
            f"{f(a['pearson'], 'mean')} ({f(a['pearson'], 'min')}) over {a['pearson']['n']} | "
            f"{f(a['rel_l2'], 'mean')} ({f(a['rel_l2'], 'max')}) | "
            f"{f(a['pair_pearson_harsanyi'], 'mean')} "
            f"({f(a['pair_pearson_harsanyi_true_pair'], 'mean')}) | "
            f"{f(a['pair_auroc_truth'], 'mean')} | "
            f"x{r['cost']['ratio']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=None)
    parser.add_argument("--out", default="shap_overlays/learned_shap.json")
    args = parser.parse_args()
    quick = zoo.quick_mode(args.quick)
    small = 2 if quick else None
    results = [report("learned_vit_patches", small or 32, quick),
               report("learned_r3d_video", small or 16, quick),
               report("learned_vit_patches64", small or 4, quick,
                      reference_budget=4096 if quick else REFERENCE_BUDGET64)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    out.with_suffix(".md").write_text(table + "\n")
    if not quick:
        replace_block("learned", table)
    for r in results:
        a = r["agreement"]
        print(f"{r['model']}: acc {r['accuracy']:.3f} (plain head {r['plain_head_accuracy']:.3f}); "
              f"pearson {a['pearson']['mean']:.3f} (min {a['pearson']['min']:.3f}), rel L2 "
              f"{a['rel_l2']['mean']:.3f} vs {r['reference']}; cost x{r['cost']['ratio']:.2f} "
              "a plain forward")

if __name__ == "__main__":
    main()
