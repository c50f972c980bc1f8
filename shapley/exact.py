"""Exact Shapley values and pairwise interactions from one enumeration of all 2**n coalitions.

A game maps coalitions (C, N) bool to values (C, K), one column per output (e.g. class). The table
of all values is indexed by bitmask: row s holds v(S) with player i in S iff bit i of s is set.
Every transform below works on that table in float64 for all K outputs at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

Game = Callable[[Tensor], Tensor]      # (C, N) bool -> (C, K) float
MAX_EXACT_PLAYERS = 24                 # 2**24 coalitions: ~17M game evaluations, 134 MB per output


def coalition_masks(n: int) -> Tensor:
    """All 2**n coalitions (2**n, n) bool; row index = bitmask, bit i = player i present."""
    return _masks(torch.arange(2**n), n)


def _masks(index: Tensor, n: int) -> Tensor:
    return (index[:, None] >> torch.arange(n)) & 1 == 1                  # (C, n)


def _popcount(n: int) -> Tensor:
    """Coalition sizes (2**n,) long, in bitmask order."""
    size = torch.zeros(1, dtype=torch.long)
    for _ in range(n):
        size = torch.cat([size, size + 1])        # the upper half has one more bit set
    return size


def _table_players(table: Tensor) -> int:
    n = table.shape[0].bit_length() - 1 if table.ndim == 2 else -1
    if n < 1 or table.shape[0] != 2**n:
        raise ValueError(f"a game table must be (2**n, K) with n >= 1, got shape "
                         f"{tuple(table.shape)}; build it with evaluate_all(game, n)")
    return n


def call_game(game: Game, coalitions: Tensor, k: int | None = None) -> Tensor:
    """One game call, checked: (C, N) bool -> (C, K) float64 on CPU."""
    out = game(coalitions)
    if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != len(coalitions):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the game got {len(coalitions)} coalitions and must return a "
                         f"({len(coalitions)}, K) tensor, got {got}; for a single output "
                         "return v[:, None]")
    if k is not None and out.shape[1] != k:
        raise ValueError(f"the game returned {out.shape[1]} outputs after returning {k} before; "
                         "every call must return the same K")
    return out.detach().to("cpu", torch.float64)


def evaluate_coalitions(game: Game, coalitions: Tensor, batch_size: int = 4096) -> Tensor:
    """v(S) for the given coalitions (C, N) bool, in batches: (C, K) float64."""
    out: list[Tensor] = []
    for chunk in coalitions.split(batch_size):
        out.append(call_game(game, chunk, out[0].shape[1] if out else None))
    return torch.cat(out)


def evaluate_all(game: Game, n: int, batch_size: int = 4096, progress: bool = False) -> Tensor:
    """The game's table over all coalitions: (2**n, K) float64 in bitmask order."""
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(f"n={n} players means 2**{n} coalitions, too many to enumerate (at most "
                         f"n={MAX_EXACT_PLAYERS}); use permutation_shapley or kernel_shap")
    if n < 1:
        raise ValueError(f"a game needs at least one player, got n={n}")
    out: list[Tensor] = []
    starts = range(0, 2**n, batch_size)
    for start in tqdm(starts, desc=f"v(S), n={n}", disable=not progress):
        index = torch.arange(start, min(start + batch_size, 2**n))
        out.append(call_game(game, _masks(index, n), out[0].shape[1] if out else None))
    return torch.cat(out)


def _shapley_weights(n: int) -> Tensor:
    """w(s) = s! (n-s-1)! / n! for s = 0..n-1, and w(n) = 0: (n+1,) float64."""
    return torch.tensor([1 / (n * math.comb(n - 1, s)) for s in range(n)] + [0.0],
                        dtype=torch.float64)


def _split(x: Tensor, i: int) -> Tensor:
    """View a bitmask-ordered (2**n, ...) tensor as (high bits, bit i, low bits, ...)."""
    return x.view(x.shape[0] // 2 ** (i + 1), 2, 2**i, *x.shape[1:])


def shapley_from_table(table: Tensor) -> Tensor:
    """Exact Shapley values (n, K) from a game table (2**n, K)."""
    # phi_i = sum_{S in N-i} |S|!(n-|S|-1)!/n! [v(S+i) - v(S)], with S and S+i as strided views.
    n = _table_players(table)
    table = table.double()
    weight = _shapley_weights(n)[_popcount(n)]                    # (2**n,) by |S|
    phi = torch.empty(n, table.shape[1], dtype=torch.float64)
    for i in range(n):
        v, w = _split(table, i), _split(weight, i)[:, 0]           # (A, 2, B, K), (A, B)
        phi[i] = torch.einsum("ab,abk->k", w, v[:, 1] - v[:, 0])
    return phi


def moebius_transform(table: Tensor) -> Tensor:
    """Harsanyi dividends d(S) = sum_{T in S} (-1)^{|S|-|T|} v(T): (2**n, K), O(n 2**n)."""
    n = _table_players(table)
    d = table.double().clone()
    for i in range(n):
        view = _split(d, i)
        view[:, 1] -= view[:, 0]                                   # remove the sets without i
    return d


def _pairs(x: Tensor, n: int) -> Tensor:
    """Read a table (2**n, K) at every pair {i, j}: (n, n, K) with a zero diagonal."""
    bit = 1 << torch.arange(n)
    return x[bit[:, None] | bit[None, :]] * ~torch.eye(n, dtype=torch.bool)[..., None]


def harsanyi_pairs(table: Tensor) -> Tensor:
    """Pair dividends d({i, j}) = v(ij) - v(i) - v(j) + v({}): (n, n, K), zero diagonal."""
    n = _table_players(table)
    table = table.double()
    bit = 1 << torch.arange(n)
    single = table[bit]                                            # (n, K)
    d = table[bit[:, None] | bit[None, :]] - single[:, None] - single[None, :] + table[0]
    return d * ~torch.eye(n, dtype=torch.bool)[..., None]          # (n, n, K)


def shapley_interaction_pairs(table: Tensor) -> Tensor:
    """Pairwise Shapley interaction index (Grabisch & Roubens 1999): (n, n, K), zero diagonal."""
    # SII_ij = sum_{S in N-ij} |S|!(n-|S|-2)!/(n-1)! [v(S+ij) - v(S+i) - v(S+j) + v(S)]
    #        = sum_{T containing i, j} d(T) / (|T| - 1)   (Grabisch 1997), which is two O(n 2**n)
    # passes: the Moebius transform, then a sum over supersets of d(T) / (|T| - 1).
    n = _table_players(table)
    size = _popcount(n)[:, None]                                   # (2**n, 1)
    e = moebius_transform(table) / (size - 1).clamp(min=1) * (size >= 2)
    for i in range(n):
        view = _split(e, i)
        view[:, 0] += view[:, 1]                                   # add the sets with i
    return _pairs(e, n)


def constrained_wls(z: Tensor, y: Tensor, w: Tensor, total: Tensor) -> Tensor:
    """argmin_beta sum_c w_c |y_c - z_c beta|^2 subject to sum(beta) = total, per output: (p, K).

    z (C, p) design, y (C, K) responses, w (C,) weights, total (K,). The constraint is the full
    coalition's row when every column is a set of players (z_N is all ones).
    """
    # Closed form as in Covert & Lee 2021: beta = A^-1 (b - 1 lam), lam fixed by the constraint.
    z = z.double()
    zw = z * (w / w.sum())[:, None]
    a_inv = torch.linalg.pinv(zw.T @ z, hermitian=True)         # (p, p); pinv: rare singular A
    u = a_inv @ (zw.T @ y.double())                             # (p, K) unconstrained solution
    v = a_inv.sum(1, keepdim=True)                              # (p, 1) A^-1 1
    return u - v * (u.sum(0) - total.double()) / v.sum()


def shapley_kernel_sizes(n: int) -> Tensor:
    """The Shapley kernel's distribution of coalition sizes: p(s) ~ (n-1) / (s (n-s)), (n+1,).

    Each coalition of size s then weighs p(s) / C(n, s); the ends (s = 0, n) carry no weight
    here because every fit below holds them exact.
    """
    s = torch.arange(n + 1, dtype=torch.float64)
    p = torch.zeros(n + 1, dtype=torch.float64)
    p[1:n] = (n - 1) / (s[1:n] * (n - s[1:n]))
    return p / p.sum()


def fit_pairwise(table: Tensor, size_distribution: Tensor) -> tuple[Tensor, Tensor]:
    """The 2-additive game closest to the table, both ends exact: unary (n, K), pairs (n, n, K).

    Fits v(S) ~ v({}) + sum_{i in S} c_i + sum_{i<j in S} c_ij by least squares over every
    coalition 0 < |S| < n, weighted by size_distribution[|S|] / C(n, |S|) (sizes drawn from
    the distribution, then a uniform subset), with v(N) matched exactly. Under the Shapley
    kernel (`shapley_kernel_sizes`) this is order-2 Faith-Shap (Tsai, Yeh & Ravikumar 2023), and
    c_i + 1/2 sum_j c_ij are the exact Shapley values of any game (Charnes et al. 1988); under
    other distributions they are not.
    """
    n = _table_players(table)
    if n < 2:
        raise ValueError(f"a pairwise fit needs n >= 2 players, got n={n}")
    size_distribution = torch.as_tensor(size_distribution, dtype=torch.float64)
    if size_distribution.shape != (n + 1,) or (size_distribution[1:n] <= 0).any():
        raise ValueError(f"size_distribution must be (n+1,) = ({n + 1},) with positive weight on "
                         "every size 1..n-1")
    table = table.double()
    masks = coalition_masks(n)[1:-1].double()                         # (2^n - 2, n)
    i, j = torch.triu_indices(n, n, 1)
    design = torch.cat([masks, masks[:, i] * masks[:, j]], 1)        # (C, n + n(n-1)/2)
    size = masks.sum(1).long()
    binom = torch.tensor([math.comb(n, k) for k in range(n + 1)], dtype=torch.float64)
    weight = size_distribution[size] / binom[size]
    beta = constrained_wls(design, table[1:-1] - table[0], weight, table[-1] - table[0])
    unary = beta[:n]                                                  # (n, K)
    pairs = table.new_zeros(n, n, table.shape[1])
    pairs[i, j] = beta[n:]
    pairs[j, i] = beta[n:]
    return unary, pairs


def faith_shap(table: Tensor) -> tuple[Tensor, Tensor]:
    """Order-2 Faith-Shap interaction index of a game table (2**n, K): (n, K), (n, n, K)."""
    return fit_pairwise(table, shapley_kernel_sizes(table.shape[0].bit_length() - 1))


@dataclass
class ExactResult:
    values: Tensor                      # (n, K) Shapley values
    v_empty: Tensor                     # (K,) v({})
    v_full: Tensor                      # (K,) v(N)
    pairs_sii: Tensor | None            # (n, n, K) pairwise Shapley interaction index
    pairs_harsanyi: Tensor | None       # (n, n, K) pair dividends
    n_evals: int                        # game evaluations: 2**n
    seconds: float                      # wall time, game evaluations included
    pairs_faith: Tensor | None = None   # (n, n, K) order-2 Faith-Shap pairs (faith=True)


def exact_shapley(game: Game, n: int, batch_size: int = 4096, interactions: bool = True,
                  progress: bool = False, faith: bool = False) -> ExactResult:
    """Exact Shapley values (and pair interactions) of a game, from one enumeration.

    `faith` adds order-2 Faith-Shap pairs (a least-squares fit over all coalitions: a fraction
    of a second for 16 players).
    """
    start = time.perf_counter()
    table = evaluate_all(game, n, batch_size, progress)       # (2**n, K)
    return ExactResult(
        values=shapley_from_table(table), v_empty=table[0].clone(), v_full=table[-1].clone(),
        pairs_sii=shapley_interaction_pairs(table) if interactions else None,
        pairs_harsanyi=harsanyi_pairs(table) if interactions else None,
        pairs_faith=faith_shap(table)[1] if faith else None,
        n_evals=len(table), seconds=time.perf_counter() - start)
