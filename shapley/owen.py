"""Exact Owen values over a binary hierarchy of the players: what shap's Partition explainer computes.

Owen (1977) values a game whose players come in nested unions (here a binary tree, as the
linkage matrices shap's maskers carry): the average marginal contribution of a player over the
orders that keep every union together. In a binary tree each union's sibling either comes wholly
before it or wholly after, independently at every level, so

    owen_i = mean over the 2^d subsets B of {sibling of each of i's d ancestors-or-self}
             of v(B u {i}) - v(B)

(d: the depth of leaf i; B the union of the chosen siblings). That is 2^d coalitions per player:
16 x 2^4 x 2 = 512 at most for a 4 x 4 grid of patches instead of 2^16 for the Shapley values.
The values are efficient, and they equal the Shapley values on games without interactions across
the tree's unions (an additive game, or a unanimity game on one union); they differ from them
when an interaction spans unions of different sizes (a unanimity game on {a, b} in one half and
{c} in the other: Shapley gives each 1/3; Owen gives c 1/2, a and b 1/4 each).

shap's Partition explainer walks the same recursion (each node with its sibling absent and
present) and, given enough `max_evals` to reach every leaf, returns these values; with fewer, it
stops at coarser unions and spreads their value evenly over their pixels.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from shapley.exact import Game, evaluate_coalitions

MAX_CONTEXTS = 2 ** 16       # coalitions per player: a leaf deeper than 16 levels is refused


def check_tree(tree: np.ndarray, n: int) -> np.ndarray:
    """A linkage matrix (n - 1, >= 2) whose first two columns join leaves 0..n-1 and earlier rows."""
    tree = np.asarray(tree)
    if tree.ndim != 2 or tree.shape[0] != n - 1 or tree.shape[1] < 2:
        raise ValueError(f"the tree must be a linkage matrix of shape ({n - 1}, 4) for {n} "
                         f"players (as shap's maskers' .clustering), got {tree.shape}")
    seen = sorted(int(c) for c in tree[:, :2].ravel())
    if seen != list(range(2 * n - 2)):
        raise ValueError("the tree does not join every player and every earlier union exactly "
                         "once; build it with shapley.owen.halving_tree or take shap's "
                         "masker.clustering")
    return tree


def sibling_paths(tree: np.ndarray, n: int) -> list[list[np.ndarray]]:
    """For each leaf, the players of the sibling of each node on its path to the root."""
    tree = check_tree(tree, n)
    members: dict[int, np.ndarray] = {i: np.array([i]) for i in range(n)}
    parent: dict[int, tuple[int, int]] = {}            # node -> (parent, sibling)
    for r, (a, b) in enumerate(tree[:, :2].astype(int)):
        node = n + r
        members[node] = np.concatenate([members[a], members[b]])
        parent[a], parent[b] = (node, b), (node, a)
    paths = []
    for leaf in range(n):
        path, node = [], leaf
        while node in parent:
            node, sibling = parent[node]
            path.append(members[sibling])
        paths.append(path)
    return paths


def owen_values(game: Game, tree: np.ndarray, n: int, *, batch_size: int = 4096) -> tuple[Tensor, int]:
    """Exact Owen values (N, K) float64 of `game` over the binary `tree`, and the number of
    distinct coalitions evaluated."""
    paths = sibling_paths(tree, n)
    deepest = max(len(p) for p in paths)
    if 2 ** deepest > MAX_CONTEXTS:
        raise ValueError(f"a player sits {deepest} levels deep: exact Owen values would need "
                         f"2^{deepest} coalitions for it; use shap's Partition explainer with a "
                         "budget, or a shallower tree")
    rows, index = [], []                     # (without, with) coalition per player and context
    for i, path in enumerate(paths):
        for pick in itertools.product((False, True), repeat=len(path)):
            s = torch.zeros(n, dtype=torch.bool)
            for chosen, sib in zip(pick, path, strict=True):
                if chosen:
                    s[torch.from_numpy(sib)] = True
            with_i = s.clone()
            with_i[i] = True
            rows += [s, with_i]
            index.append(i)
    coalitions = torch.stack(rows)                                          # (2M, N)
    distinct, inverse = torch.unique(coalitions, dim=0, return_inverse=True)
    v = evaluate_coalitions(game, distinct, batch_size).double()[inverse]  # (2M, K)
    marginal = v[1::2] - v[0::2]                                           # (M, K)
    who = torch.tensor(index)
    total = torch.zeros(n, v.shape[1], dtype=torch.float64).index_add_(0, who, marginal)
    count = torch.bincount(who, minlength=n).double()[:, None]
    return total / count, len(distinct)


def halving_tree(grid: tuple[int, ...]) -> np.ndarray:
    """A linkage matrix (M - 1, 4) over the cells of `grid` (numbered row-major, as patches and
    tubelets are): each node splits its box in two along its longest side (the first such axis on
    a tie, at size // 2), as shap's image masker splits an image, down to single cells. Column 2
    holds the node's size (a stand-in for a merge distance), column 3 its size."""
    M = int(np.prod(grid))
    ids = np.arange(M).reshape(grid)
    rows: list[list[float]] = []

    def node(box: tuple[slice, ...]) -> tuple[int, int]:                 # (id, size)
        sizes = [s.stop - s.start for s in box]
        if max(sizes) == 1:
            return int(ids[tuple(s.start for s in box)]), 1
        axis = int(np.argmax(sizes))
        mid = box[axis].start + sizes[axis] // 2
        left = tuple(slice(s.start, mid) if a == axis else s for a, s in enumerate(box))
        right = tuple(slice(mid, s.stop) if a == axis else s for a, s in enumerate(box))
        (li, ls), (ri, rs) = node(left), node(right)
        rows.append([li, ri, float(ls + rs), float(ls + rs)])
        return M + len(rows) - 1, ls + rs

    node(tuple(slice(0, g) for g in grid))
    return np.asarray(rows, dtype=float).reshape(-1, 4)


def tree_nodes(tree: np.ndarray, n: int) -> list[frozenset[int]]:
    """The leaf sets of every node of a linkage tree over n leaves (leaves first)."""
    members: list[frozenset[int]] = [frozenset([i]) for i in range(n)]
    for a, b in tree[:, :2].astype(int):
        members.append(members[a] | members[b])
    return members


def groups_in_tree(tree: np.ndarray, n: int, groups: list[np.ndarray]) -> int:
    """How many of `groups` (arrays of leaf ids, e.g. the pixels of each patch) are nodes of the
    tree, i.e. unions that shap's Partition explainer values as one block."""
    nodes = set(tree_nodes(tree, n))
    return sum(frozenset(int(i) for i in g) in nodes for g in groups)
