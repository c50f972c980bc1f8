"""Exact Shapley values of the default 16-patch ViT, and the samplers' convergence on its game.

    python benchmarks/bench_vit_game.py [--images 4] [--threads 2] [--quick]

Prints (asserts nothing):
1. seconds for exact Shapley values of one image, all classes (2^16 = 65,536 coalitions through
   the model by token dropping, plus the table transforms); the target is at most 10 s on 2 cores.
2. the mean relative L2 error of antithetic permutation sampling and paired KernelSHAP against
   those exact values as the evaluation budget grows, averaged over images and seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # run as a script from anywhere

import data  # noqa: E402
from models import zoo  # noqa: E402
from shapley import convergence_table, exact_shapley  # noqa: E402
from shapley.game import MaskingGame  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--model", default="vit_patches")
    parser.add_argument("--quick", action="store_true", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    trained = zoo.load(args.model, quick=args.quick)
    model, spec = trained.model.eval(), zoo.resolve(args.model, args.quick)
    ds = data.get_dataset(spec.dataset, "test", seed=spec.seed, **spec.data_options)
    n = model.n_players
    print(f"{args.model}: {n} players, {model.n_classes} classes, torch threads {args.threads}, "
          f"test accuracy {trained.meta['accuracy']:.3f}")

    exact, seconds = [], []
    for i in range(args.images):
        game = MaskingGame(model, ds[i]["x"])
        start = time.perf_counter()
        res = exact_shapley(game, n, interactions=True)
        seconds.append(time.perf_counter() - start)
        exact.append((game, res.values))
        print(f"  image {i}: exact Shapley values + pair interactions, all classes, "
              f"{res.n_evals} evaluations: {seconds[-1]:.2f} s")
    print(f"exact Shapley values per image: mean {sum(seconds) / len(seconds):.2f} s "
          f"(target: at most 10 s on 2 cores)")

    budgets = [64, 128, 256, 512, 1024, 2048, 4096, 8192]
    rows = {}
    for game, values in exact:
        for row in convergence_table(game, n, values, budgets, seeds=range(3)):
            rows.setdefault((row["sampler"], row["budget"]), []).append(row)
    print("\nconvergence on the ViT's game (mean over images and 3 seeds)")
    print(f"  {'sampler':<12}{'budget':>8}{'evals':>9}{'rel. L2 error':>15}")
    for (sampler, budget), rs in sorted(rows.items()):
        evals = sum(r["n_evals"] for r in rs) / len(rs)
        err = sum(r["rel_error"] for r in rs) / len(rs)
        print(f"  {sampler:<12}{budget:>8}{evals:>9.0f}{err:>15.4f}")


if __name__ == "__main__":
    main()
