"""Hierarchical exact Shapley values: quadrants first, then inside the quadrants that matter.

The grid of players (patches (gh, gw) or tubelets (gt, gh, gw)) is split in half along every
axis longer than one cell: 4 quadrants of an image, 8 octants of a clip (in time and space). The
children of a node get exact Shapley values of the node's own game, 2^4 (or 2^8) coalitions of
children, in which everything outside the node is removed (the context h-Shap uses, Teneggi et
al. 2022). Those values are shifted equally (additive efficient normalisation) so that they sum
to the node's own share; a child whose share passes `tolerance` (a fraction of |v(N) - v({})| of
the explained class) is solved the same way, down to single players, and any other child spreads
its share evenly over its players. So the map is efficient, v(N) - v({}) in total, at a cost of
at most 2^c distinct coalitions (c = 4 or 8 children) per node solved instead of 2^N.

It is exact when the game has no interaction across the hierarchy's boundaries: when every
Harsanyi dividend lies inside one leaf group of every level (e.g. a 4 x 4 grid whose dividends
each stay inside one quadrant), each node's game is the sum of its children's, and the children's
Shapley values are the sums of the flat ones. Interactions across a boundary are split by the
hierarchy, not by the Shapley formula, which is what makes it cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from shapley.exact import Game, evaluate_coalitions, shapley_from_table

Box = tuple[tuple[int, int], ...]          # (start, stop) along each grid axis


@dataclass
class HierarchicalResult:
    values: Tensor           # (N, K) float64, efficient: sums to v(N) - v({})
    n_evals: int             # distinct coalitions evaluated
    nodes: int               # nodes whose children were solved exactly
    v_empty: Tensor          # (K,)
    v_full: Tensor           # (K,)


def split(box: Box) -> list[Box]:
    """The children of a box: each axis longer than one cell cut in half (time-major order)."""
    halves = [[(a, (a + b) // 2), ((a + b) // 2, b)] if b - a > 1 else [(a, b)] for a, b in box]
    children = [()]
    for options in halves:
        children = [c + (o,) for c in children for o in options]
    return children if len(children) > 1 else []


def hierarchical_shapley(game: Game, grid: tuple[int, ...], *, tolerance: float = 0.0,
                         target: int | None = None, batch_size: int = 4096) -> HierarchicalResult:
    """Shapley values (N, K) of a game over a grid of players numbered row-major (time-major).

    `tolerance`: recurse into a child when |its share| > tolerance * |v(N) - v({})| in class
    `target` (every class when None); 0 recurses everywhere, inf stops at the first level.
    """
    if tolerance < 0 or tolerance != tolerance:
        raise ValueError(f"tolerance must be >= 0 (a fraction of |v(N) - v({{}})|), got "
                         f"{tolerance!r}")
    n = math.prod(grid)
    ids = torch.arange(n).view(*grid)
    cache: dict[bytes, Tensor] = {}

    def values_of(coalitions: Tensor) -> Tensor:                  # (M, N) bool -> (M, K)
        keys = [bytes(c.numpy()) for c in coalitions]
        fresh: dict[bytes, int] = {}                   # coalitions not evaluated yet, once each
        for i, k in enumerate(keys):
            if k not in cache and k not in fresh:
                fresh[k] = i
        if fresh:
            out = evaluate_coalitions(game, coalitions[list(fresh.values())], batch_size)
            cache.update(zip(fresh, out, strict=True))
        return torch.stack([cache[k] for k in keys])

    ends = values_of(torch.stack([torch.zeros(n, dtype=torch.bool),
                                  torch.ones(n, dtype=torch.bool)]))                # (2, K)
    total = ends[1] - ends[0]                                                        # (K,)
    scale = (total.abs() if target is None else total[target].abs()).clamp_min(1e-12)
    values = torch.zeros(n, len(total), dtype=torch.float64)
    nodes = 0

    def members(box: Box) -> Tensor:
        return ids[tuple(slice(a, b) for a, b in box)].flatten()

    def solve(box: Box, share: Tensor) -> None:
        nonlocal nodes
        children = split(box)
        groups = [members(c) for c in children]
        m = len(children)
        subsets = torch.arange(2 ** m)
        coalitions = torch.zeros(2 ** m, n, dtype=torch.bool)           # everything else removed
        for j, g in enumerate(groups):
            coalitions[:, g] = ((subsets >> j) & 1).bool()[:, None]
        phi = shapley_from_table(values_of(coalitions))                  # (m, K)
        phi = phi + (share - phi.sum(0)) / m                             # sums to the share
        nodes += 1
        for child, g, p in zip(children, groups, phi, strict=True):
            size = p.abs() if target is None else p[target].abs()
            if len(g) > 1 and bool((size > tolerance * scale).any()):
                solve(child, p)
            else:
                values[g] = p / len(g)

    if n == 1:
        values[0] = total
    else:
        solve(tuple((0, s) for s in grid), total)
    return HierarchicalResult(values, len(cache), nodes, ends[0], ends[1])
