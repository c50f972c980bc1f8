"""Numerical guards: Shapley values summed over many coalitions accumulate in float64, and the
efficiency check of the reports fails loudly instead of printing a gap."""

from __future__ import annotations

import pytest
import torch

from evaluation.references import Reference
from evaluation.scoring import EFFICIENCY_RTOL, EfficiencyError, check_efficiency
from shapley.exact import exact_shapley
from shapley.hierarchical import hierarchical_shapley
from shapley.leverage import leverage_shap
from shapley.owen import halving_tree, owen_values
from shapley.sampling import kernel_shap, permutation_shapley

OFFSET = 1e6        # float32 has a spacing of 0.0625 here: any float32 sum loses the weights


def offset_game(n: int):
    """v(S) = 1e6 + sum_{i in S} w_i + 0.5 [0 in S and 1 in S], in float64: Shapley values are
    w_i, plus 0.25 for players 0 and 1."""
    w = torch.linspace(-0.3, 0.5, n, dtype=torch.float64)

    def game(s: torch.Tensor) -> torch.Tensor:
        s = s.double()
        return (OFFSET + s @ w + 0.5 * s[:, 0] * s[:, 1])[:, None]           # (C, 1)

    truth = w.clone()
    truth[:2] += 0.25
    return game, truth


def assert_efficient(values: torch.Tensor, game, n: int) -> None:
    assert values.dtype == torch.float64
    ends = game(torch.stack([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]))
    torch.testing.assert_close(values.sum(0), ends[1] - ends[0], rtol=0, atol=1e-9)


def test_exact_values_accumulate_in_float64_over_8192_coalitions():
    game, truth = offset_game(13)
    res = exact_shapley(game, 13, interactions=False)
    torch.testing.assert_close(res.values[:, 0], truth, rtol=0, atol=1e-9)
    assert_efficient(res.values, game, 13)


@pytest.mark.parametrize("sampler", ["permutation", "kernel", "leverage"])
def test_samplers_accumulate_in_float64_beyond_4096_evaluations(sampler):
    n, budget = 13, 5200
    game, truth = offset_game(n)
    fn = {"permutation": permutation_shapley, "kernel": kernel_shap,
          "leverage": leverage_shap}[sampler]
    values = fn(game, n, budget, seed=0).values
    assert_efficient(values, game, n)
    if sampler == "permutation":         # players 2.. add w_i to every coalition: exact
        torch.testing.assert_close(values[2:, 0], truth[2:], rtol=0, atol=1e-9)


def test_owen_and_hierarchical_values_accumulate_in_float64():
    game, truth = offset_game(16)
    owen, _ = owen_values(game, halving_tree((4, 4)), 16)
    assert_efficient(owen, game, 16)
    torch.testing.assert_close(owen[2:, 0], truth[2:], rtol=0, atol=1e-9)
    res = hierarchical_shapley(game, (4, 4))      # players 0 and 1 share every quadrant: exact
    torch.testing.assert_close(res.values[:, 0], truth, rtol=0, atol=1e-9)
    assert_efficient(res.values, game, 16)


def reference(values: torch.Tensor, total: float) -> Reference:
    return Reference(values[:, None].double(), torch.zeros(1, dtype=torch.float64),
                     torch.tensor([total], dtype=torch.float64), "exact", 0, 0.0)


def test_the_efficiency_check_passes_rounding_and_fails_a_real_gap():
    phi = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    ref = reference(phi, 6.0)
    assert check_efficiency(phi.float(), ref, 0, "float32 values") == pytest.approx(0, abs=1e-6)
    nudged = phi.clone()
    nudged[0] += 0.5 * EFFICIENCY_RTOL * 6
    check_efficiency(nudged, ref, 0, "within 1e-5")
    nudged[0] += 2 * EFFICIENCY_RTOL * 6
    with pytest.raises(EfficiencyError, match=r"example 3: the values of class 0 sum .* off"):
        check_efficiency(nudged, ref, 0, "example 3")
