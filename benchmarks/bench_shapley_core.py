"""Speed of exact Shapley values and convergence of the samplers, on synthetic games (prints only).

    python benchmarks/bench_shapley_core.py [--quick]

1. exact_shapley on a random-network game, n=16 players, K=10 outputs: the game evaluations and
   each table transform timed apart.
2. Mean relative L2 error against exact values vs budget, permutation sampling and KernelSHAP, on
   a game with unary, pairwise and triple interactions. `shapley.convergence_table` takes any game,
   so the same table can be made for a real model's MaskingGame.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # run as a script from anywhere

from shapley import (  # noqa: E402
    convergence_table,
    evaluate_all,
    exact_shapley,
    harsanyi_pairs,
    moebius_transform,
    shapley_from_table,
    shapley_interaction_pairs,
)


def network_game(n: int, k: int, hidden: int = 64, seed: int = 0):
    """v(S) = a random two-layer tanh network of the coalition's indicator: (C, n) -> (C, K)."""
    gen = torch.Generator().manual_seed(seed)
    w1 = torch.randn(n, hidden, generator=gen) / n**0.5
    b1 = torch.randn(hidden, generator=gen)
    w2 = torch.randn(hidden, k, generator=gen) / hidden**0.5
    return lambda z: torch.tanh(z.float() @ w1 + b1) @ w2                        # float32 game


def interaction_game(n: int, k: int, seed: int = 0):
    """Unary + pairwise + triple Harsanyi dividends, all players interacting: (C, n) -> (C, K)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, k, generator=gen, dtype=torch.float64)
    b = torch.randn(n, n, k, generator=gen, dtype=torch.float64) / n**0.5
    b = (b + b.transpose(0, 1)) * ~torch.eye(n, dtype=torch.bool)[..., None]     # symmetric
    c = torch.randn(n, n, n, k, generator=gen, dtype=torch.float64) / n
    i, j, m = torch.meshgrid(*[torch.arange(n)] * 3, indexing="ij")
    c = c * ((i < j) & (j < m))[..., None]                                       # one per triple

    def game(z: Tensor) -> Tensor:
        x = z.double()                                                           # (C, n)
        pair = torch.einsum("ci,ijk,cj->ck", x, b, x) / 2
        triple = torch.einsum("ci,cj,cm,ijmk->ck", x, x, x, c)
        return x @ a + pair + triple
    return game


def timed(f, *args):
    start = time.perf_counter()
    out = f(*args)
    return out, time.perf_counter() - start


def bench_exact(n: int = 16, k: int = 10) -> None:
    game = network_game(n, k)
    result = exact_shapley(game, n)                                              # warm up
    table, t_eval = timed(evaluate_all, game, n)
    print(f"exact_shapley, random-network game, n={n}, K={k}: {2**n} coalitions")
    print(f"  {'evaluate_all (the game)':28s} {t_eval * 1e3:8.1f} ms")
    total = 0.0
    for f in (shapley_from_table, harsanyi_pairs, shapley_interaction_pairs, moebius_transform):
        _, t = timed(f, table)
        total += t if f is not moebius_transform else 0.0      # SII runs its own transform
        print(f"  {f.__name__:28s} {t * 1e3:8.1f} ms")
    result, t_all = timed(exact_shapley, game, n)
    print(f"  {'transforms in exact_shapley':28s} {total * 1e3:8.1f} ms")
    print(f"  {'exact_shapley, all of it':28s} {t_all * 1e3:8.1f} ms")
    gap = (result.values.sum(0) - (result.v_full - result.v_empty)).abs().max().item()
    print(f"  efficiency gap max |sum phi - (v(N) - v({{}}))| = {gap:.1e}")


def bench_convergence(n: int, budgets: list[int], seeds: list[int]) -> None:
    game = interaction_game(n, k=3)
    exact = exact_shapley(game, n, interactions=False)
    rows = convergence_table(game, n, exact.values, budgets, seeds)
    print(f"\nconvergence, unary + pairwise + triple game, n={n}, K=3, {len(seeds)} seeds "
          f"(exact: {exact.n_evals} evaluations, {exact.seconds:.2f} s)")
    print(f"  {'sampler':12s} {'budget':>7s} {'n_evals':>8s} {'rel. L2 error':>14s} "
          f"{'+-':>8s} {'seconds':>8s}")
    for r in rows:
        print(f"  {r['sampler']:12s} {r['budget']:7d} {r['n_evals']:8.0f} {r['rel_error']:14.4f} "
              f"{r['rel_error_std']:8.4f} {r['seconds']:8.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer players, budgets and seeds")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n")
    bench_exact(n=12 if quick else 16)
    if quick:
        bench_convergence(n=10, budgets=[100, 1000], seeds=[0, 1])
    else:
        bench_convergence(n=14, budgets=[100, 300, 1000, 3000, 10000], seeds=list(range(5)))
