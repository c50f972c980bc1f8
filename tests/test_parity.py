"""What exactness costs: the parity study's pairwise remainder, and its quick run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from evaluation.faithfulness import unexplained
from shapley.exact import faith_shap
from studies import parity


def table_of(v, n: int) -> torch.Tensor:
    """The game table (2^n, 1) in bitmask order of a function of the coalition's members."""
    return torch.tensor([[float(v({i for i in range(n) if m >> i & 1}))] for m in range(2 ** n)],
                        dtype=torch.float64)


def remainder_of(table: torch.Tensor, n: int) -> float:
    unary, pairs = faith_shap(table)
    keep = torch.tensor([[bool(m >> i & 1) for i in range(n)] for m in range(1, 2 ** n - 1)])
    g = parity.pairwise_fit(unary, pairs, table[0], keep)[:, 0]
    return unexplained(table[1:-1, 0], g)


def test_a_pairwise_game_leaves_no_remainder_and_parity_does():
    n = 5
    gen = torch.Generator().manual_seed(0)
    u, w = torch.randn(n, generator=gen), torch.randn(n, n, generator=gen)
    pairwise = table_of(lambda s: 0.3 + sum(u[i] for i in s)
                        + sum(w[i, j] for i in s for j in s if i < j), n)
    assert remainder_of(pairwise, n) < 1e-12
    # the parity of three of the five players: a term of order three no pair can carry
    odd = table_of(lambda s: len(s & {0, 1, 2}) % 2, n)
    assert remainder_of(odd, n) > 0.05
    # and the fit is the game's on the ends, efficient like Faith-Shap
    unary, pairs = faith_shap(odd)
    full = parity.pairwise_fit(unary, pairs, odd[0], torch.ones(1, n, dtype=torch.bool))
    assert math.isclose(float(full[0, 0]), float(odd[-1, 0]), abs_tol=1e-9)


def test_the_best_pairwise_model_of_the_parity_task_under_cross_entropy_is_a_constant():
    """The data's law (each of the 8 key patterns equally likely, 3 to 5 objects in all, the
    rest distractors): every feature a pairwise additive model over objects can read (each key,
    the distractor count d, their pairs, d choose 2) is uncorrelated with the label, so the
    cross-entropy optimum over that linear class is the constant (loss log 2, chance accuracy);
    with the triple product x1 x2 x3 the same fit is exact."""
    rows = [(x, total) for x in range(8) for total in (3, 4, 5)]          # equally likely
    bits = torch.tensor([[m >> i & 1 for i in range(3)] for m, _ in rows], dtype=torch.float64)
    d = torch.tensor([t for _, t in rows], dtype=torch.float64) - bits.sum(1)  # distractors
    y = bits.sum(1) % 2
    pairwise = torch.stack([torch.ones_like(d), *bits.T, d, bits[:, 0] * bits[:, 1],
                            bits[:, 0] * bits[:, 2], bits[:, 1] * bits[:, 2], *(bits.T * d),
                            d * (d - 1) / 2], 1)                           # (24, 11)

    def fit(features: torch.Tensor) -> float:
        theta = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([theta], max_iter=500, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(features @ theta, y)
            loss.backward()
            return loss

        opt.step(closure)
        return float(closure().detach())

    assert math.isclose(fit(pairwise), math.log(2), rel_tol=1e-9)
    triple = torch.cat([pairwise, bits.prod(1, keepdim=True)], 1)
    assert fit(triple) < 0.05


@pytest.mark.slow
def test_quick_parity_run_writes_its_tables(tmp_path, quick_cache, monkeypatch):
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(quick_cache))
    results = parity.main(["--quick", "--out", str(tmp_path), "--no-progress"])
    saved = json.loads((tmp_path / "parity.json").read_text())
    assert saved == results and [r["model"] for r in saved["models"]] == [
        *parity.SPECS, "learned_patch_vit_parity"]
    for r in saved["models"]:
        assert 0 <= r["accuracy"] <= 1 and r["examples"] == 2          # one image per class
        # 1 - R^2 of a fit made on all coalitions, measured on a sample: at least 0, and above 1
        # where an untrained model's game hardly varies
        assert 0 <= r["pairwise_remainder"]["mean"] < math.inf
        assert ("rel_l2" in r) == r["model"].startswith("learned")
    # the patch-local model is pairwise by construction: exact, and no pairwise remainder
    local = saved["models"][-1]
    assert local["rel_l2"]["max"] < 1e-4 and local["pairwise_remainder"]["max"] < 1e-6
    md = (tmp_path / "parity.md").read_text()
    assert "`learned_vit_parity_w100`" in md and "pairwise remainder" in md
