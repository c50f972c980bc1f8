"""shap's blur-masked workflow against exact values of the same game, at equal model evaluations.

Image users call `shap.Explainer(f, shap.maskers.Image("blur(k,k)", shape))` with `max_evals`;
with an image masker shap picks its Partition explainer, which computes Owen values over shap's
own hierarchy of the image (axis-aligned halvings of the pixels), not Shapley values of any fixed
players. This study scores that call (`shap_partition`) and its `algorithm="permutation"` twin
(`shap_permutation`) on the game they play, with our patch players: v(S) = the class probability
of the image whose patches outside S are replaced by shap's own blur (OpenCV's box filter). On
that one game, per image and for the predicted class:

- the exact Shapley values of the patches (2^16 coalitions) and the exact Owen values over
  shap's hierarchy above the patches (`shapley.owen`; a few hundred coalitions), the two targets;
- shap's values summed over each patch's pixels and channels, at shap's own budgets;
- at the same numbers of evaluations: our antithetic permutation sampler and paired
  KernelSHAP on the patches, and hierarchical exact Shapley (exact among quadrants, then inside
  them: `shapley.hierarchical`), each scored against both targets (relative L2 error).

The same on clips, with the tubelet masker behind the same call (8 tubelets of the 3D-ResNet). A
second table says where shap's partition of the image meets our patch players: which image sizes
keep every patch as one node of shap's tree (so that summing shap's pixel values per patch gives
patch-level Owen values) and which cut patches apart. Models: the ViT and the 2D ResNet (resnet18
topology) on patch-game images, the 3D-ResNet on motion clips. Writes `blur_game.json`,
`blur_game.md`, the figures `shap_blur_workflow.png` (error against evaluations) and
`shap_blur_topk.png` (shap's top-3 classes, drawn as shap users expect) and the block in docs/shap-workflows.md.

    python -m studies.blur_game [--quick] [--models vit_patches resnet_patches r3d_video]

About 25 minutes on 2 cores (23 min measured on one thread; the ResNet's exact values take most of it): `make shap-blur`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from evaluation.cli import experiment_parser, setup
from evaluation.examples import load_examples
from evaluation.formatting import checkpoints_sentence, stat
from evaluation.metrics import rel_l2
from evaluation.records import write_json, write_text
from explainers import explain
from explainers.core import Players
from explainers.core.inputs import make_players
from explainers.shap_blur import blurred_input, default_kernel, minimum_evals
from models import zoo
from shapley.exact import exact_shapley
from shapley.game import MaskingGame, patch_feature_mask
from shapley.owen import groups_in_tree, halving_tree, owen_values
from tools.readme import replace_block
from viz.overlay import plot_top_classes, save_figure

ROOT = zoo.ROOT
OUT = ROOT / "shap_overlays"
IMAGE_MODELS = ("vit_patches", "resnet_patches")
VIDEO_MODEL = "r3d_video"
TOP_K = 3


@dataclass(frozen=True)
class Plan:
    per_class: int
    budgets: tuple[int, ...]           # evaluations for shap_partition, permutation, kernel
    permutations: tuple[int, ...]      # shap_permutation: this many permutations
    seeds: tuple[int, ...]


PLANS = {
    "image": Plan(2, (72, 128, 512, 2048, 8192), (1, 2), (0,)),
    "video": Plan(2, (16, 32, 64, 128, 256), (1, 2, 4), (0, 1)),
}
QUICK = {"image": Plan(1, (72, 256), (1,), (0,)), "video": Plan(1, (16, 64), (1, 2), (0,))}


def players_of(model: nn.Module, x: Tensor) -> Players:
    """The players the study values: the model's patches (ViT or ResNet) or its tubelets."""
    return make_players(model, x[None], None, None)


def blur_game(model: nn.Module, x: Tensor, players: Players, kernel: int) -> MaskingGame:
    """v(S): class probabilities with the players outside S replaced by shap's blur of `x`."""
    return MaskingGame(model, x, removal="baseline", baseline=blurred_input(x, kernel),
                       feature_mask=players.mask, output="prob")


def runs_for(plan: Plan, n_features: int) -> list[tuple[str, int, dict]]:
    """(method, evaluations asked for, options) of every run on one input."""
    runs = [("hierarchical_shapley", 0, {})]
    for b in plan.budgets:
        runs += [("shap_partition", b, {"max_evals": b}), ("permutation", b, {"budget": b}),
                 ("kernel", b, {"budget": b})]
    one = minimum_evals("permutation", n_features)
    runs += [("shap_permutation", one * m, {"max_evals": one * m}) for m in plan.permutations]
    return runs


def score_input(model: nn.Module, x: Tensor, k: int, plan: Plan, kernel: int) -> dict:
    """Every run on one input (C, *S), scored against the exact Shapley and Owen values."""
    players = players_of(model, x)
    game = blur_game(model, x, players, kernel)
    exact = exact_shapley(game, players.n, interactions=False).values[:, k].float()     # (N,)
    owen, owen_evals = owen_values(game, halving_tree(tuple(players.grid)), players.n)
    owen = owen[:, k].float()
    n_features = players.n if x.ndim == 4 else int(np.prod(x.shape))
    baseline = blurred_input(x, kernel)
    rows = [{"method": "exact Owen", "asked": owen_evals, "evals": owen_evals, "seed": None,
             "vs_shapley": rel_l2(owen, exact), "vs_owen": 0.0}]
    for method, asked, options in runs_for(plan, n_features):
        if method.startswith("shap"):
            options = {**options, "blur": kernel}
        else:                          # our methods on the same game: shap's blur, probabilities
            options = {**options, "baseline": baseline, "removal": "baseline", "output": "prob"}
        seeds = plan.seeds if method in ("permutation", "kernel", "shap_permutation") else (0,)
        for seed in seeds:
            a = explain(method, model, x, k, seed=seed, **options)
            rows.append({"method": method, "asked": asked, "evals": a.cost.evals, "seed": seed,
                         "vs_shapley": rel_l2(a.values[0], exact),
                         "vs_owen": rel_l2(a.values[0], owen)})
    return {"rows": rows, "exact": exact.tolist(), "owen": owen.tolist()}


def summarise(per_input: list[dict]) -> list[dict]:
    """Mean and standard error over inputs (and seeds) of each (method, evaluations asked)."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for item in per_input:
        for r in item["rows"]:
            groups.setdefault((r["method"], r["asked"]), []).append(r)
    out = []
    for (method, asked), rows in groups.items():
        entry = {"method": method, "asked": asked, "n": len(rows),
                 "evals": float(np.mean([r["evals"] for r in rows]))}
        for key in ("vs_shapley", "vs_owen"):
            v = np.array([r[key] for r in rows], float)
            entry[key] = {"mean": float(v.mean()),
                          "se": float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0}
        out.append(entry)
    return sorted(out, key=lambda e: (e["method"], e["evals"]))


def study_model(name: str, plan: Plan, quick: bool, progress: bool) -> dict:
    """One zoo model: `plan.per_class` test inputs of each class, every run, summarised."""
    spec = zoo.resolve(name, quick)
    trained = zoo.load(name, quick=quick, progress=progress)
    model = trained.model.eval()
    ex = load_examples(spec, model, plan.per_class)
    with torch.no_grad():
        targets = model(ex.x).argmax(-1)
    kernel = default_kernel(ex.x)
    per_input = []
    for x, k in tqdm(list(zip(ex.x, targets.tolist(), strict=True)), desc=f"{name} blur game",
                     disable=not progress):
        per_input.append(score_input(model, x, k, plan, kernel))
    players = players_of(model, ex.x[0])
    return {"model": name, "description": spec.description, "n_players": players.n,
            "fingerprint": trained.meta.get("fingerprint"),
            "grid": list(players.grid), "kernel": kernel, "n_inputs": len(ex.x),
            "per_class": plan.per_class, "classes": ex.classes,
            "summary": summarise(per_input), "per_input": per_input}


def alignment(sizes: list[tuple[int, int]]) -> list[dict]:
    """For each (image side, patch side): how many patches are single nodes of shap's tree."""
    import shap

    out = []
    for side, patch in sizes:
        masker = shap.maskers.Image("blur(3,3)", (side, side, 3))
        ids = patch_feature_mask(side, side, patch).flatten().numpy()          # (H W,)
        n = int(ids.max()) + 1
        groups = [np.flatnonzero(np.repeat(ids == p, 3)) for p in range(n)]
        out.append({"image": side, "patch": patch, "patches": n,
                    "nodes": groups_in_tree(masker.clustering, side * side * 3, groups)})
    return out


def top_k_figure(names: list[str], quick: bool, per_model: int = 2, max_evals: int = 2048):
    """shap's top-k picture: each row an input and its 3 most probable classes' shap values."""
    xs, maps, labels, probs, truths = [], [], [], [], []
    for name in names:
        spec = zoo.resolve(name, quick)
        model = zoo.load(name, quick=quick, progress=False).model.eval()
        ex = load_examples(spec, model, 1)
        idx = list(range(min(per_model, len(ex.x))))
        a = explain("shap_partition", model, ex.x[idx], max_evals=max_evals, top_k=TOP_K)
        top = a.extras["top_k"]
        xs.append(ex.x[idx])
        maps.append(top["pixel_maps"])
        probs.append(top["probabilities"])
        truths.append(ex.truth[idx])
        short = name.replace("_patches", "")
        labels += [[f"{short}: {ex.classes[c]}" for c in row.tolist()] for row in top["classes"]]
    fig = plot_top_classes(torch.cat(xs), torch.cat(maps), labels, scores=torch.cat(probs),
                           truth=torch.cat(truths), patch_size=8)
    fig.suptitle(f"shap Partition explainer, blur masker, max_evals={max_evals}: top-{TOP_K} "
                 "classes (probability); red raises, blue lowers; green: the objects",
                 fontsize=9)
    return fig


def figure(results: dict):
    """Relative L2 error against model evaluations, against Shapley (top) and Owen (bottom)."""
    from viz.overlay import new_figure

    models = results["models"]
    fig = new_figure(figsize=(4.3 * len(models), 7.0), layout="constrained")
    axes = np.asarray(fig.subplots(2, len(models), squeeze=False))
    style = {"shap_partition": ("C3", "o-"), "shap_permutation": ("C1", "s-"),
             "permutation": ("C0", "^-"), "kernel": ("C2", "v-"),
             "hierarchical_shapley": ("black", "D"), "exact Owen": ("C4", "*")}
    for col, m in enumerate(models):
        for row, key in enumerate(("vs_shapley", "vs_owen")):
            ax = axes[row, col]
            for method, (colour, marker) in style.items():
                pts = [e for e in m["summary"] if e["method"] == method]
                if not pts or (method == "exact Owen" and key == "vs_owen"):
                    continue
                ax.errorbar([e["evals"] for e in pts], [max(e[key]["mean"], 1e-6) for e in pts],
                            yerr=[e[key]["se"] for e in pts], fmt=marker, color=colour, ms=5,
                            lw=1, capsize=2, label=method)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("model evaluations per input")
            target = "exact Shapley values" if key == "vs_shapley" else "exact Owen values"
            ax.set_ylabel(f"rel. L2 vs {target}")
            ax.set_title(f"{m['model']} ({m['n_players']} players)\nvs {target} of the blur game",
                         fontsize=9)
            ax.legend(fontsize=6)
    fig.suptitle("shap's blur-masked workflow against the same game's exact values "
                 "(mean ± s.e. over inputs and seeds)", fontsize=10)
    return fig


def markdown(results: dict) -> str:
    lines = ["| model | method | evaluations (mean) | rel. L2 vs exact Shapley | rel. L2 vs exact "
             "Owen | runs |", "|---|---|---|---|---|---|"]
    for m in results["models"]:
        for e in m["summary"]:
            lines.append(f"| {m['model']} ({m['n_players']}) | {e['method']} | {e['evals']:.0f} | "
                         f"{e['vs_shapley']['mean']:.3g} ± {e['vs_shapley']['se']:.2g} | "
                         f"{e['vs_owen']['mean']:.3g} ± {e['vs_owen']['se']:.2g} | {e['n']} |")
    lines += ["", "| image side (px) | patch side (px) | patches | patches that are one node "
              "of shap's tree |", "|---|---|---|---|"]
    for a in results["alignment"]:
        lines.append(f"| {a['image']} | {a['patch']} | {a['patches']} | {a['nodes']} |")
    checkpoints = checkpoints_sentence(
        {m["model"]: m["fingerprint"] for m in results["models"] if m.get("fingerprint")}).strip()
    return "\n".join(lines) + (f"\n\n{checkpoints}" if checkpoints else "")


def run(names: list[str], quick: bool, progress: bool) -> dict:
    models = []
    for name in names:
        plans = QUICK if quick else PLANS
        plan = plans["video" if name == VIDEO_MODEL else "image"]
        models.append(study_model(name, plan, quick, progress))
    sizes = [(32, 8)] if quick else [(32, 8), (64, 8), (112, 8), (224, 16)]
    return {"quick": quick, "models": models, "alignment": alignment(sizes)}


def main(argv: list[str] | None = None) -> dict:
    parser = experiment_parser(__doc__.splitlines()[0], "folder for blur_game.json / .md / .png "
                               "(default shap_overlays/; in quick mode <cache>/blur-game-quick/)")
    parser.add_argument("--models", nargs="*", default=None,
                        choices=[*IMAGE_MODELS, VIDEO_MODEL])
    args = parser.parse_args(argv)
    quick, out = setup(args, OUT, "blur-game-quick")
    names = args.models or [*IMAGE_MODELS, VIDEO_MODEL]
    results = write_json(out / "blur_game.json", run(names, quick, not args.no_progress))
    table = markdown(results)
    write_text(out / "blur_game.md", table + "\n")
    save_figure(figure(results), out / "shap_blur_workflow.png", dpi=80)
    images = [n for n in names if n != VIDEO_MODEL]
    if images:
        save_figure(top_k_figure(images, quick), out / "shap_blur_topk.png", dpi=80)
    if not quick and out.resolve() == OUT.resolve():
        replace_block("blur_game", table)
    for m in results["models"]:
        best = {e["method"]: e for e in m["summary"]}
        print(f"{m['model']}: " + "; ".join(f"{k} {stat(v['vs_shapley'], 'mean', 3, 'g')} vs "
                                             "Shapley" for k, v in best.items()))
    return results


if __name__ == "__main__":
    main()
