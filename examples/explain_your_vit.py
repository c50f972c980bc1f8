"""Explain a ViT you already trained: fit a post-hoc explainer to it once, then each explanation
is one forward pass of the explainer (and the model's own prediction).

The explainer is ViT-Shapley's (Covert, Kim & Lee 2023), the most exact post-hoc explainer at
every budget the post-hoc study measured (docs/posthoc.md); `head="harsanyi"` fits post-hoc
LearnedSHAP instead, whose pair terms `explain("learned_shap_posthoc", ...)` returns too.

Your model stays as it is (frozen). Here it is the project's plain 16-patch ViT on the generated
patch-game images (`make build` trains it; this script trains it first if it is missing); yours
can be any `models.vit.ViT`, or a timm VisionTransformer wrapped once with `models.vit.as_vit`.
The script fits the explainer with a budget of frozen-model evaluations, explains a few test
images, and scores their values against the exact Shapley values of the model's game (16 patches:
2^16 coalitions, which only a small model allows).

    python -m examples.explain_your_vit [--quick] [--budget EVALS]
"""

from __future__ import annotations

import argparse
import time

import torch

import data
from explainers import explain
from models import zoo
from models.posthoc import fit_posthoc
from models.vit import ViT


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (the tests use it)")
    parser.add_argument("--budget", type=int, default=None,
                        help="frozen-model evaluations to fit with (default 330,000: two epochs "
                             "of 5,000 images with 32 coalitions each; quick: 8,448)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    start = time.perf_counter()

    # 1. your trained ViT (here the project's; e.g. models.vit.as_vit(my_timm_vit) for yours)
    model: ViT = zoo.load("vit_patches", quick=args.quick, progress=False).model.eval()

    # 2. images it was trained on (the labels are not used) and a budget
    images = 256 if args.quick else 5000
    loader = data.get_loader("patch_game", "train", batch_size=64, n_train=images)
    budget = args.budget or images * 33 * (1 if args.quick else 2)
    checkpoint = zoo.cache_dir() / "examples" / f"vit_shapley-vit_patches-{budget}.pt"
    explainer = fit_posthoc(model, loader, budget=budget, checkpoint=checkpoint,
                            progress=not args.quick)

    # 3. explain: one (N,) row of Shapley values per image, for its predicted class
    test = data.get_loader("patch_game", "test", batch_size=4, n_test=4)
    x = next(iter(test))["x"]                                           # (4, 3, 32, 32)
    att = explain("vit_shapley", model, x, None, explainer=explainer)         # values (4, 16)

    # 4. how close: the exact values (65,536 coalitions an image: a check, not a workflow)
    exact = explain("exact", model, x, att.target).values                  # (4, 16)
    errors = (att.values - exact).norm(dim=1) / exact.norm(dim=1)           # (4,)
    seconds = time.perf_counter() - start
    print(f"phi {tuple(att.values.shape)} at {att.cost.evals / len(x):g} model and explainer "
          f"rows an image; rel. L2 against the exact values: mean {float(errors.mean()):.3f} "
          f"(per image {', '.join(f'{float(e):.3f}' for e in errors)}); {seconds:.0f} s in all")
    return {"values": att.values, "target": att.target, "x": x, "exact": exact,
            "rel_l2": float(errors.mean()),
            "seconds": seconds, "checkpoint": checkpoint}


if __name__ == "__main__":
    main()
