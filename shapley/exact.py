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


@dataclass
class ExactResult:
    values: Tensor                      # (n, K) Shapley values
    v_empty: Tensor                     # (K,) v({})
    v_full: Tensor                      # (K,) v(N)
    pairs_sii: Tensor | None            # (n, n, K) pairwise Shapley interaction index
    pairs_harsanyi: Tensor | None       # (n, n, K) pair dividends
    n_evals: int                        # game evaluations: 2**n
    seconds: float                      # wall time, game evaluations included


def exact_shapley(game: Game, n: int, batch_size: int = 4096, interactions: bool = True,
                  progress: bool = False) -> ExactResult:
    """Exact Shapley values (and pair interactions) of a game, from one enumeration."""
    start = time.perf_counter()
    table = evaluate_all(game, n, batch_size, progress)       # (2**n, K)
    return ExactResult(
        values=shapley_from_table(table), v_empty=table[0].clone(), v_full=table[-1].clone(),
        pairs_sii=shapley_interaction_pairs(table) if interactions else None,
        pairs_harsanyi=harsanyi_pairs(table) if interactions else None,
        n_evals=len(table), seconds=time.perf_counter() - start)
