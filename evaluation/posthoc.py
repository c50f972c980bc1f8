"""Explaining frozen ViTs: post-hoc LearnedSHAP and ViT-Shapley, trained, measured, tabled.

For each explainer of `models.zoo.POSTHOC_SPECS` (post-hoc LearnedSHAP with unary + pairs and
unary only, and ViT-Shapley, for the plain 16-patch and 64-patch ViTs, all trained on the same
objective at the same cost): phi against the reference values of the frozen model's own game
(exact for 16 players; antithetic permutation with its own noise for 64) on the same number of
test images from every class, its efficiency gap, the pair terms against exact Faith-Shap (16),
and what it cost: frozen-model evaluations and seconds of training, and model rows per
explanation. Heavy (the explainers train for minutes each), so it runs under its own target and
its results are committed: `shap_overlays/posthoc.json`, `posthoc.md` and the block in docs/posthoc.md.

    python -m evaluation.posthoc [--quick] [--models posthoc_vit_patches ...]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from evaluation.cli import experiment_parser, setup
from evaluation.examples import load_examples
from evaluation.learned_report import REFERENCE_BUDGET64, stats, unexplained
from evaluation.metrics import pearson, rel_l2
from evaluation.records import write_json, write_text
from evaluation.references import game_for, reference, resolved
from evaluation.scoring import efficiency_gap
from explainers import explain
from explainers.core import model_device
from explainers.learned_shap_posthoc import frozen_decomposition
from models import zoo
from shapley.sampling import kernel_coalitions
from tools.readme import replace_block

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "shap_overlays"
PER_CLASS = 4            # 16 test images of each game, the same for every explainer
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


def markdown(results: list[dict]) -> str:
    lines = ["| explainer | explains | players | head | reference (max noise) | examples | "
             "phi rel. L2 mean (max) | goal | Pearson mean (min) | max efficiency gap | "
             "pairs vs Faith-Shap (Pearson) | training: frozen evals, s | evals / explanation |",
             "|---|---|---:|---|---|---|---|---:|---|---:|---:|---|---:|"]
    for r in results:
        e, p = r["rel_l2"], r["pearson"]
        noise = r["reference_noise"]["max"]
        bound = "" if r["resolved"] else "≤ "
        pair = "n/a" if r["pair_pearson_faith"] is None else f"{r['pair_pearson_faith']['mean']:.3f}"
        met = "met" if e["mean"] <= r["goal"] else "not met"
        lines.append(
            f"| `{r['name']}` | `{r['explains']}` | {r['n_players']} | "
            f"{r['head']} | {r['reference']}"
            + (f" ({noise:.4f})" if noise else "") + f" | {r['n_examples']} ({r['per_class']} "
            f"per class) | {bound}{e['mean']:.3f} ({e['max']:.3f}) | ≤ {r['goal']} ({met}) | "
            f"{p['mean']:.3f} ({p['min']:.3f}) | {r['efficiency_gap']['max']:.1e} | "
            f"{pair} | "
            f"{r['frozen_evals']:,}, {r['train_seconds']:.0f} | {r['evals_per_explanation']:g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = experiment_parser(__doc__.splitlines()[0], "folder for posthoc.json / .md (default "
                               "shap_overlays/; in quick mode <cache>/posthoc-quick/)")
    parser.add_argument("--models", nargs="*", default=list(zoo.POSTHOC_SPECS),
                        choices=list(zoo.POSTHOC_SPECS))
    args = parser.parse_args(argv)
    quick, out = setup(args, OUT, "posthoc-quick")
    results = [measure(name, quick, not args.no_progress) for name in args.models]
    results = write_json(out / "posthoc.json", results)
    table = markdown(results)
    write_text(out / "posthoc.md", table + "\n")
    if not quick and out.resolve() == OUT.resolve():
        replace_block("posthoc", table)
    for r in results:
        print(f"{r['name']}: rel L2 {r['rel_l2']['mean']:.3f} (max {r['rel_l2']['max']:.3f}) "
              f"against {r['reference']}; {r['frozen_evals']:,} frozen evaluations in training")
    return results


if __name__ == "__main__":
    main()
