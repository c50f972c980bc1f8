"""Shapley math: known answers, the axioms, shapiq agreement, estimator convergence, errors."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shapley import (
    convergence_table,
    evaluate_all,
    exact_shapley,
    harsanyi_pairs,
    kernel_coalitions,
    kernel_shap,
    moebius_transform,
    permutation_shapley,
    shapley_from_table,
    shapley_interaction_pairs,
)
from shapley.exact import coalition_masks, faith_shap, fit_pairwise, shapley_kernel_sizes

SAMPLERS = [permutation_shapley, kernel_shap]


# ---------------------------------------------------------------- games for the tests

def table_game(table):
    """The game whose values over all coalitions are `table` (2**n, K)."""
    n = len(table).bit_length() - 1
    return lambda z: table[(z.long() << torch.arange(n)).sum(1)]       # (C, n) -> (C, K)


def zeta(dividends):
    """v(S) = sum of the dividends d(T) of every T in S: (2**n, K), brute force over T."""
    n = len(dividends).bit_length() - 1
    index = torch.arange(2**n)
    subset = (index[None, :] & ~index[:, None]) == 0                   # (S, T): T in S
    return subset.double() @ dividends


def random_dividends(n, k, orders, seed, scale=1.0):
    """Random Harsanyi dividends (2**n, K), nonzero only on coalitions of the given sizes."""
    gen = torch.Generator().manual_seed(seed)
    size = coalition_masks(n).sum(1)
    keep = torch.isin(size, torch.tensor(orders))[:, None]
    d = torch.randn(2**n, k, generator=gen, dtype=torch.float64) * keep
    return d * scale ** (size[:, None] - 1).clamp(min=0)               # higher orders smaller


def random_table(n, k, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(2**n, k, generator=gen, dtype=torch.float64)


def swap_players(n, p, q):
    """Bitmask permutation that exchanges players p and q: (2**n,)."""
    idx = torch.arange(2**n)
    flip = ((idx >> p) ^ (idx >> q)) & 1
    return idx ^ (flip << p) ^ (flip << q)


# ---------------------------------------------------------------- known answers

def test_coalition_masks_follow_bitmask_order():
    masks = coalition_masks(3)
    assert masks.shape == (8, 3) and masks.dtype == torch.bool
    assert masks[5].tolist() == [True, False, True]                    # 5 = 0b101
    assert masks.sum(1).tolist() == [0, 1, 1, 2, 1, 2, 2, 3]


def test_two_player_example():
    table = torch.tensor([[0.0], [7500.0], [5000.0], [10000.0]])       # {}, {A}, {B}, {A, B}
    phi = exact_shapley(table_game(table), 2).values
    assert phi[:, 0].tolist() == pytest.approx([6250.0, 3750.0])


@pytest.mark.parametrize("offset", [0.0, 2.5])
def test_linear_game_gives_its_weights(offset):
    n, k = 7, 3
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    game = lambda z: offset + z.double() @ w                            # noqa: E731
    exact = exact_shapley(game, n)
    torch.testing.assert_close(exact.values, w, rtol=0, atol=1e-12)
    torch.testing.assert_close(exact.v_empty, torch.full((k,), offset, dtype=torch.float64))
    assert exact.pairs_sii.abs().max() < 1e-12 and exact.pairs_harsanyi.abs().max() < 1e-12
    for sampler in SAMPLERS:                # an additive game is exact for any sample
        torch.testing.assert_close(sampler(game, n, 60, seed=3).values, w, rtol=0, atol=1e-10)


def test_unary_pairwise_game():
    n, k = 6, 3
    d = random_dividends(n, k, orders=[0, 1, 2], seed=1)
    table = zeta(d)
    bit = 1 << torch.arange(n)
    a = d[bit]                                                          # (n, K)
    b = d[bit[:, None] | bit[None, :]] * ~torch.eye(n, dtype=torch.bool)[..., None]
    torch.testing.assert_close(shapley_from_table(table), a + b.sum(1) / 2, rtol=0, atol=1e-9)
    torch.testing.assert_close(harsanyi_pairs(table), b, rtol=0, atol=1e-9)
    torch.testing.assert_close(shapley_interaction_pairs(table), b, rtol=0, atol=1e-9)
    torch.testing.assert_close(moebius_transform(table), d, rtol=0, atol=1e-9)


def test_against_the_definitions_by_brute_force():
    n, k = 5, 2
    table = random_table(n, k, seed=2)
    phi = torch.zeros(n, k, dtype=torch.float64)                        # over all n! orders
    for order in itertools.permutations(range(n)):
        s = 0
        for i in order:
            phi[i] += table[s | 1 << i] - table[s]
            s |= 1 << i
    torch.testing.assert_close(shapley_from_table(table), phi / math.factorial(n))
    sii = torch.zeros(n, n, k, dtype=torch.float64)
    for i, j in itertools.permutations(range(n), 2):
        for s in range(2**n):
            if not s >> i & 1 and not s >> j & 1:
                m = bin(s).count("1")
                w = math.factorial(m) * math.factorial(n - m - 2) / math.factorial(n - 1)
                sii[i, j] += w * (table[s | 1 << i | 1 << j] - table[s | 1 << i]
                                  - table[s | 1 << j] + table[s])
    torch.testing.assert_close(shapley_interaction_pairs(table), sii)
    d = torch.stack([sum((-1) ** (bin(s).count("1") - bin(t).count("1")) * table[t]
                         for t in range(2**n) if t & ~s == 0) for s in range(2**n)])
    torch.testing.assert_close(moebius_transform(table), d)
    torch.testing.assert_close(zeta(moebius_transform(table)), table)   # Moebius inverts zeta


# ---------------------------------------------------------------- axioms

@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 7), seed=st.integers(0, 2**31 - 1))
def test_efficiency(n, seed):
    table = random_table(n, 3, seed)
    phi = shapley_from_table(table)
    torch.testing.assert_close(phi.sum(0), table[-1] - table[0], rtol=0, atol=1e-6)
    for sampler in SAMPLERS:                # both estimators are efficient for every sample
        est = sampler(table_game(table), n, 4 * n, seed=seed).values
        torch.testing.assert_close(est.sum(0), table[-1] - table[0], rtol=0, atol=1e-6)
    sii = shapley_interaction_pairs(table)
    torch.testing.assert_close(sii, sii.transpose(0, 1), rtol=0, atol=1e-12)
    assert (sii.diagonal(dim1=0, dim2=1) == 0).all()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 7), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_symmetry(n, seed, data):
    p, q = data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
    table = random_table(n, 2, seed)
    table = (table + table[swap_players(n, p, q)]) / 2                  # v(S) = v(S with p <-> q)
    phi = shapley_from_table(table)
    torch.testing.assert_close(phi[p], phi[q], rtol=0, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 7), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_dummy_player_gets_zero(n, seed, data):
    dummy = data.draw(st.integers(0, n - 1))
    table = random_table(n, 2, seed)
    table = table[torch.arange(2**n) & ~(1 << dummy)]                   # v(S) = v(S - dummy)
    assert shapley_from_table(table)[dummy].abs().max() < 1e-9
    assert shapley_interaction_pairs(table)[dummy].abs().max() < 1e-9
    assert harsanyi_pairs(table)[dummy].abs().max() < 1e-9


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 7), seed=st.integers(0, 2**31 - 1),
       a=st.floats(-10, 10), b=st.floats(-10, 10))
def test_linearity(n, seed, a, b):
    v, w = random_table(n, 2, seed), random_table(n, 2, seed + 1)
    for f in (shapley_from_table, shapley_interaction_pairs, moebius_transform):
        torch.testing.assert_close(f(a * v + b * w), a * f(v) + b * f(w), rtol=0, atol=1e-8)
    for sampler in SAMPLERS:                # for a fixed seed the estimators are linear in v too
        est = [sampler(table_game(t), n, 5 * n, seed=seed).values for t in (v, w, a * v + b * w)]
        torch.testing.assert_close(est[2], a * est[0] + b * est[1], rtol=0, atol=1e-8)


# ---------------------------------------------------------------- shapiq agreement

@pytest.mark.parametrize("n", [5, 6, 7, 8])
def test_agrees_with_shapiq(n):
    shapiq = pytest.importorskip("shapiq")
    table = random_table(n, 2, seed=n)
    exact = exact_shapley(table_game(table), n)
    moebius = moebius_transform(table)
    for k in range(table.shape[1]):
        def game(z, k=k):                   # shapiq's game: numpy (C, n) -> (C,)
            return table_game(table)(torch.from_numpy(np.asarray(z, dtype=bool)))[:, k].numpy()
        computer = shapiq.ExactComputer(game, n_players=n)
        sv = computer("SV", order=1).get_n_order_values(1)
        sii = computer("SII", order=2).get_n_order_values(2)
        pairs = computer("Moebius", order=n).get_n_order_values(2)
        np.testing.assert_allclose(exact.values[:, k].numpy(), sv, atol=1e-10)
        np.testing.assert_allclose(exact.pairs_sii[..., k].numpy(), sii, atol=1e-10)
        np.testing.assert_allclose(exact.pairs_harsanyi[..., k].numpy(), pairs, atol=1e-10)
        mob = computer("Moebius", order=n)
        shapiq_moebius = [mob[tuple(np.flatnonzero(m.numpy()))] for m in coalition_masks(n)]
        np.testing.assert_allclose(moebius[:, k].numpy(), shapiq_moebius, atol=1e-10)


@pytest.mark.parametrize("n", [3, 5, 7])
def test_faith_shap_agrees_with_shapiq(n):
    shapiq = pytest.importorskip("shapiq")
    table = random_table(n, 2, seed=10 + n)
    unary, pairs = faith_shap(table)
    assert pairs.shape == (n, n, 2) and torch.equal(pairs, pairs.transpose(0, 1))
    assert (pairs.diagonal(dim1=0, dim2=1) == 0).all()
    for k in range(2):
        def game(z, k=k):
            return table_game(table)(torch.from_numpy(np.asarray(z, dtype=bool)))[:, k].numpy()
        fsii = shapiq.ExactComputer(game, n_players=n)("FSII", order=2)
        # shapiq holds the ends exact by a large weight, we by a constraint: 1e-8 apart
        np.testing.assert_allclose(unary[:, k].numpy(), fsii.get_n_order_values(1), atol=1e-7)
        np.testing.assert_allclose(pairs[..., k].numpy(), fsii.get_n_order_values(2), atol=1e-7)


def test_faith_shap_of_a_pairwise_game_is_its_harsanyi_dividends():
    table = zeta(random_dividends(6, 3, [1, 2], seed=4))
    unary, pairs = faith_shap(table)
    bit = 1 << torch.arange(6)
    torch.testing.assert_close(unary, table[bit] - table[0])
    torch.testing.assert_close(pairs, harsanyi_pairs(table))


def test_a_pairwise_fit_gives_shapley_values_only_under_the_kernel_with_exact_ends():
    """A head c_i + c_ij fitted to a game with interactions of every order: under the Shapley
    kernel its phi = c_i + 1/2 sum_j c_ij are the exact Shapley values; uniform sizes are not."""
    n = 9
    table = zeta(random_dividends(n, 2, list(range(1, n + 1)), seed=6, scale=0.7))
    exact = shapley_from_table(table)

    def error(sizes):
        unary, pairs = fit_pairwise(table, sizes)
        return float((unary + pairs.sum(1) / 2 - exact).norm() / exact.norm())

    assert error(shapley_kernel_sizes(n)) < 1e-10
    uniform = torch.ones(n + 1, dtype=torch.float64)
    uniform[[0, n]] = 0
    assert error(uniform) > 0.01
    with pytest.raises(ValueError, match="positive weight on every size"):
        fit_pairwise(table, torch.zeros(n + 1))


# ---------------------------------------------------------------- batching, float32, results

def test_results_do_not_depend_on_batch_size():
    n = 6
    game = table_game(random_table(n, 3, seed=4))
    runs = {bs: (exact_shapley(game, n, batch_size=bs).values,
                 permutation_shapley(game, n, 40, seed=1, batch_size=bs).values,
                 kernel_shap(game, n, 40, seed=1, batch_size=bs).values) for bs in (1, 7, 4096)}
    for bs in (1, 7):
        for got, want in zip(runs[bs], runs[4096], strict=True):
            assert torch.equal(got, want)


def test_float32_game_gives_float64_results():
    n = 5
    table = random_table(n, 2, seed=5)
    game = lambda z: table_game(table)(z).float()                        # noqa: E731
    exact = exact_shapley(game, n, interactions=False)
    assert exact.values.dtype == torch.float64 and exact.values.device.type == "cpu"
    assert exact.pairs_sii is None and exact.pairs_harsanyi is None
    assert exact.n_evals == 2**n and exact.v_full.shape == (2,)
    torch.testing.assert_close(exact.values, shapley_from_table(table.float()))
    for sampler in SAMPLERS:
        assert sampler(game, n, 20).values.dtype == torch.float64


# ---------------------------------------------------------------- estimators

@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_numbers(sampler):
    n = 8
    game = table_game(random_table(n, 3, seed=6))
    first, again = sampler(game, n, 100, seed=7), sampler(game, n, 100, seed=7)
    assert torch.equal(first.values, again.values) and first.n_evals == again.n_evals
    assert not torch.equal(first.values, sampler(game, n, 100, seed=8).values)


def test_one_antithetic_pair_is_exact_for_pairwise_games():
    n = 8
    table = zeta(random_dividends(n, 3, orders=[0, 1, 2], seed=9))
    minimum = 2 + 2 * (n - 1)
    est = permutation_shapley(table_game(table), n, minimum, seed=10)
    assert est.n_evals == minimum
    torch.testing.assert_close(est.values, shapley_from_table(table), rtol=0, atol=1e-9)
    one_way = permutation_shapley(table_game(table), n, minimum, seed=10, antithetic=False)
    assert (one_way.values - shapley_from_table(table)).abs().max() > 1e-3  # two permutations


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_error_falls_as_budget_grows(sampler):
    n = 10
    table = zeta(random_dividends(n, 3, orders=[1, 2, 3, 4], seed=11, scale=0.7))
    exact = shapley_from_table(table)
    errors = []
    for budget in (100, 1000, 10000):
        runs = [sampler(table_game(table), n, budget, seed=s) for s in range(5)]
        assert all(r.n_evals <= budget for r in runs)
        errors.append(sum((r.values - exact).norm() for r in runs) / len(runs) / exact.norm())
    assert errors[0] > 2 * errors[1] > 4 * errors[2], errors


def test_kernel_coalitions_follow_the_shapley_kernel():
    n, draws = 5, 300_000
    z = kernel_coalitions(n, draws, torch.Generator().manual_seed(0))
    freq = torch.bincount((z.long() << torch.arange(n)).sum(1), minlength=2**n) / draws
    size = coalition_masks(n).sum(1).tolist()
    kernel = torch.tensor([(n - 1) / (math.comb(n, s) * s * (n - s)) if 0 < s < n else 0.0
                           for s in size], dtype=torch.float64)   # Lundberg & Lee's pi(S)
    torch.testing.assert_close(freq.double(), kernel / kernel.sum(), rtol=0, atol=3e-3)


@pytest.mark.parametrize("n", [2, 5, 7])
@pytest.mark.parametrize("paired", [True, False])
def test_kernel_shap_with_full_budget_is_exact(n, paired):
    table = random_table(n, 3, seed=n)
    est = kernel_shap(table_game(table), n, 2**n + 5, paired=paired)
    assert est.n_evals == 2**n
    torch.testing.assert_close(est.values, shapley_from_table(table), rtol=0, atol=1e-9)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("paired", [True, False])
def test_n_evals_is_the_number_of_rows_evaluated(sampler, paired):
    n, seen = 9, []
    table = random_table(n, 1, seed=12)
    def game(z):
        seen.append(len(z))
        return table_game(table)(z)
    option = {"paired" if sampler is kernel_shap else "antithetic": paired}
    for budget in (20, 21, 57, 300, 1000):
        seen.clear()
        est = sampler(game, n, budget, seed=budget, batch_size=64, **option)
        assert est.n_evals == sum(seen) <= budget


def test_convergence_table_rows():
    n = 6
    game = table_game(random_table(n, 2, seed=13))
    rows = convergence_table(game, n, exact_shapley(game, n).values, [20, 64], seeds=[0, 1])
    assert [(r["sampler"], r["budget"]) for r in rows] == [
        ("permutation", 20), ("permutation", 64), ("kernel", 20), ("kernel", 64)]
    assert rows[-1]["rel_error"] < 1e-9                                 # 64 = 2**6: exact
    assert all(r["n_evals"] <= r["budget"] for r in rows)


# ---------------------------------------------------------------- errors

def test_too_many_players_for_exact():
    with pytest.raises(ValueError, match=r"2\*\*30 coalitions.*permutation_shapley or kernel_shap"):
        exact_shapley(lambda z: z.double(), 30)


@pytest.mark.parametrize("sampler, paired, minimum", [
    (permutation_shapley, True, 2 + 2 * 9), (permutation_shapley, False, 2 + 9),
    (kernel_shap, True, 2 + 10), (kernel_shap, False, 2 + 10)])
def test_budget_below_minimum(sampler, paired, minimum):
    option = {"paired" if sampler is kernel_shap else "antithetic": paired}
    game = table_game(random_table(10, 1, seed=0))
    with pytest.raises(ValueError, match=f"budget={minimum - 1} .* minimum {minimum}"):
        sampler(game, 10, minimum - 1, **option)
    assert sampler(game, 10, minimum, **option).n_evals <= minimum
    with pytest.raises(ValueError, match="n >= 2 players"):
        sampler(game, 1, 100)


@pytest.mark.parametrize("bad_game, problem", [
    (lambda z: z.double().sum(1), r"must return a \(\d+, K\) tensor, got \(\d+,\)"),
    (lambda z: torch.zeros(len(z) + 1, 2), r"must return a \(\d+, K\) tensor, got \(\d+, 2\)"),
    (lambda z: z.double().sum(1).tolist(), "got list"),
    (lambda z: torch.zeros(len(z), 1 + int(z[0].sum())), "same K"),
])
def test_wrong_game_output(bad_game, problem):
    for run in (lambda: evaluate_all(bad_game, 4, batch_size=1),
                lambda: permutation_shapley(bad_game, 4, 50, batch_size=1),
                lambda: kernel_shap(bad_game, 4, 10, batch_size=1)):
        with pytest.raises(ValueError, match=problem):
            run()


def test_bad_table_shape():
    with pytest.raises(ValueError, match=r"\(2\*\*n, K\)"):
        shapley_from_table(torch.zeros(6, 2))


# ---------------------------------------------------------------- Leverage SHAP and shapiq's samplers

def test_leverage_shap_is_exact_with_every_coalition_and_converges():
    from shapley.leverage import leverage_shap

    n = 10
    table = zeta(random_dividends(n, 2, list(range(1, n + 1)), seed=3, scale=0.8))
    exact = shapley_from_table(table)
    full = leverage_shap(table_game(table), n, 2**n)
    torch.testing.assert_close(full.values, exact, rtol=0, atol=1e-10)
    errors = [np.mean([float((leverage_shap(table_game(table), n, b, seed=s).values - exact).norm()
                             / exact.norm()) for s in range(4)]) for b in (64, 256, 768)]
    assert errors[0] > errors[1] > errors[2]
    one = leverage_shap(table_game(table), n, 256, seed=1)
    torch.testing.assert_close(one.values.sum(0), table[-1] - table[0])   # efficiency
    assert one.n_evals <= 256


def test_leverage_shap_beats_kernel_shap_at_moderate_budgets():
    """Uniform sizes (leverage scores) without replacement, against kernel-size sampling."""
    from shapley.leverage import leverage_shap

    n = 12
    table = zeta(random_dividends(n, 2, list(range(1, n + 1)), seed=3, scale=0.8))
    exact = shapley_from_table(table)

    def error(fn):
        return np.mean([float((fn(table_game(table), n, 512, seed=s).values - exact).norm()
                              / exact.norm()) for s in range(6)])

    assert error(leverage_shap) < error(kernel_shap)


@pytest.mark.parametrize("name", ["shapiq_kernel", "shapiq_kadd", "shapiq_svarm",
                                  "shapiq_stratified", "shapiq_permutation",
                                  "shapiq_unbiased_kernel", "shapiq_owen"])
def test_shapiq_samplers_explain_one_class_and_count_what_they_ask(name):
    pytest.importorskip("shapiq")
    from shapley.shapiq_samplers import shapiq_sampler

    n = 8
    table = zeta(random_dividends(n, 3, [1, 2, 3], seed=5))
    exact = shapley_from_table(table)[:, 2]
    res = shapiq_sampler(name)(table_game(table), n, 2**n, seed=0, output=2)
    assert res.values.shape == (n, 1) and 0 < res.n_evals <= 2**n
    err = float((res.values[:, 0] - exact).norm() / exact.norm())
    assert err < 0.5, err                    # every one of them is in the right place
    with pytest.raises(ValueError, match="unknown shapiq sampler"):
        shapiq_sampler("shapiq_magic")


# --- hierarchical exact Shapley ---------------------------------------------------------------
def dividend_game(groups: list[list[int]], n_classes: int = 3, seed: int = 0,
                  max_order: int | None = None):
    """v(S) = sum of a random dividend for every non-empty subset (of at most `max_order`
    players) of each group in S."""
    gen = torch.Generator().manual_seed(seed)
    divs = [(list(sub), torch.randn(n_classes, generator=gen, dtype=torch.float64))
            for g in groups for r in range(1, min(len(g), max_order or len(g)) + 1)
            for sub in itertools.combinations(g, r)]

    def game(c: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(c), n_classes, dtype=torch.float64)
        for members, d in divs:
            out += c[:, members].all(1, keepdim=True).double() * d
        return out

    return game


QUADRANTS = [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]   # of a 4 x 4 grid


def test_hierarchical_equals_flat_exact_without_cross_quadrant_interactions():
    from shapley.hierarchical import hierarchical_shapley

    game = dividend_game(QUADRANTS)
    flat = shapley_from_table(evaluate_all(game, 16))
    res = hierarchical_shapley(game, (4, 4))
    torch.testing.assert_close(res.values, flat, rtol=0, atol=1e-10)
    # 16 coalitions of quadrants, then 14 new ones inside each quadrant (its empty and full
    # coalitions were already evaluated): 72 instead of 2^16
    assert (res.n_evals, res.nodes) == (72, 5)


def test_hierarchical_is_efficient_and_stops_where_told():
    from shapley.hierarchical import hierarchical_shapley

    game = dividend_game([list(range(16))], seed=1, max_order=2)   # pairs across quadrants
    flat = shapley_from_table(evaluate_all(game, 16))
    for tolerance in (0.0, 0.3, float("inf")):
        res = hierarchical_shapley(game, (4, 4), tolerance=tolerance)
        torch.testing.assert_close(res.values.sum(0), res.v_full - res.v_empty)
    coarse = hierarchical_shapley(game, (4, 4), tolerance=float("inf"))
    assert (coarse.n_evals, coarse.nodes) == (16, 1)
    for q in QUADRANTS:                                     # each quadrant's share, spread evenly
        assert torch.allclose(coarse.values[q], coarse.values[q[0]].expand(4, -1))
    fine = hierarchical_shapley(game, (4, 4))
    assert not torch.allclose(fine.values, flat)            # cross-quadrant terms are split
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        hierarchical_shapley(game, (4, 4), tolerance=-1.0)


def test_hierarchical_splits_clips_in_time_and_space():
    from shapley.hierarchical import hierarchical_shapley, split

    assert len(split(((0, 2), (0, 4), (0, 4)))) == 8        # octants of a 2 x 4 x 4 grid
    assert split(((0, 1), (0, 2), (0, 2))) == [((0, 1), (0, 1), (0, 1)), ((0, 1), (0, 1), (1, 2)),
                                              ((0, 1), (1, 2), (0, 1)), ((0, 1), (1, 2), (1, 2))]
    grid = torch.arange(32).view(2, 4, 4)
    octants = [grid[t:t + 1, h:h + 2, w:w + 2].flatten().tolist()
               for t in (0, 1) for h in (0, 2) for w in (0, 2)]
    game = dividend_game(octants, seed=2)
    res = hierarchical_shapley(game, (2, 4, 4))
    # the flat values of the 32 players, from each octant's 2^4 sub-table: the game is additive
    # over octants, so phi_i is i's Shapley value in its octant's own game
    exact = torch.zeros(32, 3, dtype=torch.float64)
    for o in octants:
        idx = torch.arange(16)
        masks = torch.zeros(16, 32, dtype=torch.bool)
        for j, p in enumerate(o):
            masks[:, p] = ((idx >> j) & 1).bool()
        exact[o] = shapley_from_table(game(masks))
    torch.testing.assert_close(res.values, exact, rtol=0, atol=1e-10)
