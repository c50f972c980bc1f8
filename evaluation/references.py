"""Reference Shapley values of a model's own masking game: exact, or sampled with their noise.

Up to 16 players the reference enumerates all 2^n coalitions (values and pair interactions:
Harsanyi dividends, the Shapley interaction index and order-2 Faith-Shap).
Beyond, it is antithetic permutation sampling split into two independent halves, each with half
the budget: the reference is their mean and its noise, the relative L2 distance between the
halves over two (the mean of two independent estimates is off by about half their distance),
says how small an error it can judge. A measured error e of an estimate against a reference of
noise r is about sqrt(e_true^2 + r^2), so errors below about 3 r are reported as bounds.

References are cached under `<cache>/references/`, keyed by a hash of the model's weights and
module code, the input, the method and budget and the code that computes them (`tools.code_key`):
the report and the benchmark score the same examples against one computation, and a second
`make run` reuses it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from evaluation.efficiency import check_efficient
from explainers.core import model_device
from models import zoo
from shapley.exact import exact_shapley
from shapley.game import MaskingGame
from shapley.sampling import permutation_shapley
from tools.code_key import ROOT, code_key, code_ref, outside_key
from tools.files import save_torch

EXACT_LIMIT = 16            # players up to which the reference is exact enumeration
REFERENCE_SEED = 1000       # far from the seeds the samplers being judged use (0, 1, ...)
NOISE_FACTOR = 3            # an error is resolved when the reference noise is at most a third


def game_for(model: nn.Module, x: Tensor) -> MaskingGame:
    """The model's own masking game (the removal its consistency loss was trained on)."""
    x = x.to(model_device(model))
    if getattr(model, "removal", "drop") == "drop":
        return MaskingGame(model, x, removal="drop")
    return MaskingGame(model, x, removal="baseline", baseline=model.baseline,
                       tubelets=model.tubelets)


@dataclass
class Reference:
    """Shapley values of one input's game for every class, and what they cost."""

    values: Tensor                   # (N, K) float64
    v_empty: Tensor                  # (K,) v({})
    v_full: Tensor                   # (K,) v(N)
    method: str                      # "exact" or "permutation"
    n_evals: int                     # game evaluations made
    seconds: float                   # when it was computed (a cached reference keeps its time)
    halves: Tensor | None = None     # (2, N, K) the two independent half-budget estimates
    pairs_harsanyi: Tensor | None = None   # (N, N, K) exact references only
    pairs_sii: Tensor | None = None        # (N, N, K) pairwise Shapley interaction index
    pairs_faith: Tensor | None = None      # (N, N, K) order-2 Faith-Shap (Tsai et al. 2023)

    @property
    def exact(self) -> bool:
        return self.method == "exact"

    def noise(self, k: int) -> float:
        """Relative L2 noise of class k's values: 0 for exact, ||h1 - h2|| / (2 ||values||)."""
        if self.halves is None:
            return 0.0
        norm = float(self.values[:, k].norm())
        gap = float((self.halves[0, :, k] - self.halves[1, :, k]).norm())
        return gap / (2 * norm) if norm > 0 else float("inf")

    def describe(self) -> str:
        return "exact" if self.exact else f"antithetic permutation, 2 x {self.n_evals // 2:,}"


@outside_key
def fingerprint(model: nn.Module, x: Tensor, method: str, budget: int | None, seed: int, *,
                code_root: Path = ROOT) -> str:
    """A key for one reference: the model's weights and the code of its modules (those this
    project defines), the input, the method, budget and seed, and the code `compute` reaches
    (`tools.code_key`: moving a helper or changing how references are stored keeps the key);
    `code_root` reads that code from another source tree (the tests key edited copies)."""
    h = hashlib.sha256(f"{type(model).__qualname__}|{method}|{budget}|{seed}".encode())
    for name, t in model.state_dict().items():
        h.update(name.encode() + t.detach().cpu().contiguous().numpy().tobytes())
    h.update(x.detach().cpu().float().contiguous().numpy().tobytes())
    own = {code_ref(type(m)) for m in model.modules()} - {None}     # third-party modules: pinned
    h.update(code_key([compute, *sorted(own)], root=code_root).encode())
    return h.hexdigest()[:20]


@outside_key
def cache_dir() -> Path:
    return zoo.cache_dir() / "references"


def reference(model: nn.Module, x: Tensor, budget: int | None = None, *,
              seed: int = REFERENCE_SEED, cache: bool = True) -> Reference:
    """The reference values of `x` (C, *S) under the model's own game, cached.

    Exact enumeration when the model has at most EXACT_LIMIT players (`budget` must then be
    None), else antithetic permutation sampling with `budget` evaluations in two halves.
    """
    n = model.n_players
    method = "exact" if n <= EXACT_LIMIT else "permutation"
    if method == "exact" and budget is not None:
        raise ValueError(f"{n} players have an exact reference; pass budget=None")
    if method == "permutation" and (budget is None or budget < 4 * n):
        raise ValueError(f"{n} players need a sampled reference: pass budget >= {4 * n} "
                         "(two halves of at least one antithetic pair of permutations)")
    path = cache_dir() / f"{fingerprint(model, x, method, budget, seed)}.pt"
    if cache and path.exists():
        try:
            return load(path, method)
        except Exception:          # unreadable or foreign file: compute it again
            path.unlink(missing_ok=True)
    ref = compute(model, x, method, budget, seed)
    if cache:
        save(path, ref)
    return ref


def compute(model: nn.Module, x: Tensor, method: str, budget: int | None, seed: int) -> Reference:
    """The reference of `x` computed (no cache): what a cached reference's key hashes the code of."""
    n = model.n_players
    start = time.perf_counter()
    game = game_for(model, x)
    if method == "exact":
        res = exact_shapley(game, n, interactions=True, faith=True)
        # exact values are efficient to float64 rounding: anything more is a bug
        check_efficient(res.values, res.v_empty, res.v_full, "exact reference values")
        return Reference(res.values, res.v_empty, res.v_full, method, res.n_evals,
                         time.perf_counter() - start, pairs_harsanyi=res.pairs_harsanyi,
                         pairs_sii=res.pairs_sii, pairs_faith=res.pairs_faith)
    halves = [permutation_shapley(game, n, budget // 2, seed=seed + h) for h in (0, 1)]
    ends = game(torch.stack([torch.zeros(n, dtype=torch.bool),
                             torch.ones(n, dtype=torch.bool)])).double().cpu()       # (2, K)
    stacked = torch.stack([h.values for h in halves])                              # (2, N, K)
    return Reference(stacked.mean(0), ends[0], ends[1], method,
                     sum(h.n_evals for h in halves), time.perf_counter() - start,
                     halves=stacked)


FIELDS = ("values", "v_empty", "v_full", "halves", "pairs_harsanyi", "pairs_sii", "pairs_faith")


@outside_key
def save(path: Path, ref: Reference) -> None:
    """Write a reference atomically: a crash never leaves a half-written file at `path`."""
    state = {k: getattr(ref, k) for k in FIELDS if getattr(ref, k) is not None}
    state["n_evals"] = torch.tensor(ref.n_evals)
    state["seconds"] = torch.tensor(ref.seconds, dtype=torch.float64)
    save_torch(path, state)


@outside_key
def load(path: Path, method: str) -> Reference:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return Reference(method=method, n_evals=int(state.pop("n_evals")),
                     seconds=float(state.pop("seconds")),
                     **{k: state.get(k) for k in FIELDS})


def resolved(error: float, noise: float) -> bool:
    """Whether an error measured against a reference with this noise is a value, not a bound."""
    return noise * NOISE_FACTOR <= error * (1 + 1e-9)      # equality counts, despite rounding
