"""What exactness costs: the parity of three objects, a task no pairwise additive model can solve.

Under token dropping, a model whose game is exactly pairwise computes its full-image logit as
b + sum_i u_i(x_i) + sum_{i<j} w_ij(x_i, x_j): a pairwise additive model over patches, whatever
the backbone does in between. The patch game's classes each depend on at most two objects, so
that class costs nothing there. Here the class is the parity of three key objects
(`data.patch_game`, dataset `patch_parity`): its Harsanyi decomposition has a term of order
three (x1 + x2 + x3 - 2 (x1x2 + x1x3 + x2x3) + 4 x1x2x3), so a pairwise additive model cannot
follow it on every presence pattern. Worse, with the 8 patterns equally likely every feature of
one or two objects is uncorrelated with the label, so under cross-entropy the best pairwise
additive model is a constant (chance accuracy; `tests/test_parity.py` checks it on the data's
law). Every model starts from the trained patch-game ViT (`init_from`, a curriculum: from
scratch the plain ViT found no signal and stayed at chance). For the plain ViT and co-trained
LearnedSHAP ViTs without the consistency loss and at weights 10 and 100 (`SPECS`),
and the patch-local
LearnedSHAP ViT (`models.patch_vit`, the pairwise class by construction), on the same stratified
test images, this measures

- test accuracy (1,000 balanced images) and the last epoch's training accuracy;
- for the LearnedSHAP heads, phi against the exact Shapley values of the model's own game
  (Pearson, relative L2) and the head's remainder (1 - R^2 of its own decomposition on
  Shapley-kernel coalitions);
- for every model, the pairwise remainder of its game: 1 - R^2 of the best 2-additive game
  (order-2 Faith-Shap, fitted to all 2^16 coalitions) on the same coalitions, i.e. how far the
  model's game is from any pairwise one.

Writes `parity.json`, `parity.md` and the block `parity` in docs/exactness-cost.md.

    python -m studies.parity [--quick]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from evaluation.cli import experiment_parser, setup
from evaluation.examples import load_examples
from evaluation.faithfulness import compare, references_for, stats, unexplained
from evaluation.formatting import stat
from evaluation.records import write_json, write_text
from evaluation.references import game_for
from models import zoo
from models.zoo import ModelSpec, co_trained_head
from shapley.exact import evaluate_all, faith_shap
from shapley.sampling import kernel_coalitions
from tools.readme import replace_block

# What exactness costs (`python -m studies.parity`, make parity): patch-game images whose class
# is the parity of three key objects (data.patch_game, `patch_parity`), which no model summing
# terms of one or two patches can compute. The plain ViT beside co-trained LearnedSHAP ViTs
# without the consistency loss and at weights 10 and 100 (paired Shapley-kernel coalitions, the
# sampler of the default heads). Each starts from the trained 16-patch patch-game ViT
# (`vit_patches`, whose features detect the three key objects; a curriculum) and trains 20
# epochs without patch dropping (which would make the label noise: dropping one key object
# flips the parity). From scratch, no object and no pair of objects is correlated with the
# label, and the plain ViT stayed at chance (52.8% after 20 epochs; 50% after 9 epochs on
# 20,000 images).
QUICK_PARITY = {"epochs": 1, "data_options": {"n_train": 128, "n_test": 64}}
SPECS: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("vit_parity", "vit", "patch_parity", {"n_classes": 2}, epochs=20,
              quick=QUICK_PARITY, init_from="vit_patches",
              description="ViT, 16 patches, parity of three objects (patch_parity)"),
    *(ModelSpec(f"learned_vit_parity_w{w:g}", "learned_vit", "patch_parity", {"n_classes": 2},
                epochs=20, head=co_trained_head(float(w), "kernel_paired"), plain="vit_parity",
                quick=QUICK_PARITY, init_from="vit_patches",
                description=f"LearnedSHAP ViT, 16 patches, parity of three objects, consistency {w:g}")
      for w in (0, 10, 100)),
]}


OUT = zoo.ROOT / "shap_overlays"
PER_CLASS = 4
COALITIONS = 1000       # Shapley-kernel coalitions the remainders are measured on


def pairwise_fit(unary: Tensor, pairs: Tensor, v_empty: Tensor, keep: Tensor) -> Tensor:
    """The 2-additive game v({}) + sum_i c_i + sum_{i<j} c_ij on coalitions `keep` (C, N) bool:
    (C, K) from unary (N, K), symmetric pairs (N, N, K) and v_empty (K,)."""
    k = keep.double()                                                     # (C, N)
    return (v_empty.double() + k @ unary.double()
            + torch.einsum("ci,cj,ijk->ck", k, k, pairs.double()) / 2)


def pairwise_remainder(model: nn.Module, x: Tensor, target: int, coalitions: int = COALITIONS,
                       seed: int = 0) -> float:
    """1 - R^2 of the best 2-additive game (order-2 Faith-Shap of all 2^N coalitions) against
    the model's game of `x` on Shapley-kernel coalitions, class `target`: 0 for a pairwise game."""
    n = model.n_players
    game = game_for(model, x)
    table = evaluate_all(game, n)                                         # (2^N, K)
    unary, pairs = faith_shap(table)                                      # (N, K), (N, N, K)
    keep = kernel_coalitions(n, coalitions, torch.Generator().manual_seed(seed))   # (C, N)
    v = game(keep)[:, target].double().cpu()
    g = pairwise_fit(unary, pairs, table[0], keep)[:, target]
    return unexplained(v, g)


def measure(name: str, quick: bool, per_class: int, progress: bool) -> dict:
    """One model: accuracies, and on `per_class` test images of each class its agreement with
    exact values (LearnedSHAP heads) and the remainders of its game."""
    trained = zoo.load(name, quick=quick, progress=progress)
    model = trained.model.eval()
    spec = zoo.resolve(name, quick)
    ex = load_examples(spec, model, per_class)
    with torch.no_grad():
        targets = model(ex.x).argmax(-1)                                  # (B,) predicted
    pairwise = [pairwise_remainder(model, ex.x[i], int(targets[i]), seed=i)
                for i in tqdm(range(len(ex)), desc=f"{name} pairwise fit", leave=False,
                              disable=not progress)]
    row = {"model": name, "consistency": spec.head.get("consistency") if spec.head else None,
           "accuracy": trained.meta["accuracy"], "n_test": trained.meta["n_test"],
           "train_accuracy": trained.meta["history"][-1]["train_acc"],
           "fingerprint": trained.meta["fingerprint"], "examples": len(ex),
           "pairwise_remainder": stats(pairwise)}
    if hasattr(model, "shapley_values"):
        agreement = compare(model, ex, references_for(model, ex, None, progress), COALITIONS)
        row.update({k: agreement[k] for k in ("pearson", "rel_l2", "remainder")})
    return row


def markdown(results: dict) -> str:
    lines = ["| model | consistency | test accuracy | train accuracy | phi Pearson mean (min) | "
             "phi rel. L2 mean (max) | head remainder 1 - R² | game's pairwise remainder 1 - R² "
             "mean (max) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["models"]:
        weight = "–" if r["consistency"] is None else f"{r['consistency']:g}"
        lines.append(f"| `{r['model']}` | {weight} | {100 * r['accuracy']:.1f}% | "
                     f"{100 * r['train_accuracy']:.1f}% | {stat(r.get('pearson'), 'mean')} "
                     f"({stat(r.get('pearson'), 'min')}) | {stat(r.get('rel_l2'), 'mean')} "
                     f"({stat(r.get('rel_l2'), 'max')}) | {stat(r.get('remainder'), 'mean', 4)} | "
                     f"{stat(r['pairwise_remainder'], 'mean', 4)} "
                     f"({stat(r['pairwise_remainder'], 'max', 4)}) |")
    first = results["models"][0]
    return (f"Parity of three objects, 16 patches; accuracy on {first['n_test']} balanced test "
            f"images; phi and remainders on {first['examples']} of them ({results['per_class']} "
            f"per class), predicted class, exact references; remainders on {COALITIONS} "
            "Shapley-kernel coalitions; checkpoints "
            + ", ".join(f"`{r['model']}` {r['fingerprint']}" for r in results["models"])
            + ".\n\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> dict:
    parser = experiment_parser(__doc__.splitlines()[0], "folder for parity.json / .md (default "
                               "shap_overlays/; in quick mode <cache>/parity-quick/)")
    parser.add_argument("--per-class", type=int, default=None,
                        help=f"test images of each class (default {PER_CLASS}; quick: 1)")
    args = parser.parse_args(argv)
    quick, out = setup(args, OUT, "parity-quick")
    per_class = args.per_class or (1 if quick else PER_CLASS)
    names = [*SPECS, "learned_patch_vit_parity"]     # the pairwise class, built
    rows = [measure(name, quick, per_class, not args.no_progress) for name in names]
    results = write_json(out / "parity.json", {"quick": quick, "per_class": per_class,
                                               "models": rows})
    table = markdown(results)
    write_text(out / "parity.md", table + "\n")
    if not quick and out.resolve() == OUT.resolve():
        replace_block("parity", table)
    print(table)
    return results


if __name__ == "__main__":
    main()
