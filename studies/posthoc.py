"""Explaining frozen ViTs: post-hoc LearnedSHAP and ViT-Shapley, trained, measured, tabled.

For each explainer of `SPECS` (post-hoc LearnedSHAP with unary + pairs and
unary only, and ViT-Shapley, for the plain 16-patch and 64-patch ViTs, all trained on the same
objective at the same cost): phi against the reference values of the frozen model's own game
(exact for 16 players; antithetic permutation with its own noise for 64) on the same number of
test images from every class, its efficiency gap, the pair terms against exact Faith-Shap (16),
and what it cost: frozen-model evaluations and seconds of training, and model rows per
explanation. Heavy (the explainers train for minutes each), so it runs under its own target and
its results are committed: `shap_overlays/posthoc.json`, `posthoc.md` and the block in docs/posthoc.md.

    python -m studies.posthoc [--quick] [--models posthoc_vit_patches ...]
"""

from __future__ import annotations

from pathlib import Path

from evaluation.cli import experiment_parser, setup
from evaluation.faithfulness import measure
from evaluation.records import write_json, write_text
from models.zoo import VIT64, ModelSpec
from tools.readme import replace_block

# Post-hoc LearnedSHAP explainers of the frozen plain ViTs (`plain`: the model they explain).
# Their training costs minutes of frozen-model evaluations (30 epochs of 5,000 images with 32
# coalitions each: 5 million evaluations), so `make build` leaves them out:
# `python -m studies.posthoc` (make posthoc) trains and measures them.
SPECS: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("posthoc_vit_patches", "posthoc_vit", "patch_game", {"n_classes": 4}, epochs=30,
              head={"rank": 8, "pairwise": True, "coalitions": 32}, plain="vit_patches",
              quick={"epochs": 1, "data_options": {"n_train": 256, "n_test": 128}},
              description="post-hoc LearnedSHAP (unary + pairs) of the frozen vit_patches"),
    ModelSpec("posthoc_vit_patches_unary", "posthoc_vit", "patch_game", {"n_classes": 4},
              epochs=30, head={"pairwise": False, "coalitions": 32}, plain="vit_patches",
              quick={"epochs": 1, "data_options": {"n_train": 256, "n_test": 128}},
              description="post-hoc LearnedSHAP (unary only) of the frozen vit_patches"),
    ModelSpec("posthoc_vit_patches64", "posthoc_vit", "patch_game64", VIT64, epochs=30,
              head={"rank": 8, "pairwise": True, "coalitions": 32}, plain="vit_patches64",
              quick={"epochs": 1, "data_options": {"n_train": 128, "n_test": 64}},
              description="post-hoc LearnedSHAP (unary + pairs) of the frozen vit_patches64"),
    ModelSpec("posthoc_vit_patches64_unary", "posthoc_vit", "patch_game64", VIT64, epochs=30,
              head={"pairwise": False, "coalitions": 32}, plain="vit_patches64",
              quick={"epochs": 1, "data_options": {"n_train": 128, "n_test": 64}},
              description="post-hoc LearnedSHAP (unary only) of the frozen vit_patches64"),
    # ViT-Shapley's explainer of the same frozen models, trained on the same objective at the
    # same cost (epochs, images, coalitions: frozen-model evaluations)
    ModelSpec("vit_shapley_vit_patches", "posthoc_vit", "patch_game", {"n_classes": 4},
              epochs=30, head={"kind": "vit_shapley", "coalitions": 32}, plain="vit_patches",
              quick={"epochs": 1, "data_options": {"n_train": 256, "n_test": 128}},
              description="ViT-Shapley explainer of the frozen vit_patches"),
    ModelSpec("vit_shapley_vit_patches64", "posthoc_vit", "patch_game64", VIT64, epochs=30,
              head={"kind": "vit_shapley", "coalitions": 32}, plain="vit_patches64",
              quick={"epochs": 1, "data_options": {"n_train": 128, "n_test": 64}},
              description="ViT-Shapley explainer of the frozen vit_patches64"),
]}


ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "shap_overlays"


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
    parser.add_argument("--models", nargs="*", default=list(SPECS),
                        choices=list(SPECS))
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
