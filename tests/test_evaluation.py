"""evaluation: stratified examples, references and their noise, scoring on games with known
Shapley values, and the break-even rule on constructed error curves."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from evaluation import break_even as be
from evaluation import references
from evaluation.examples import Examples, per_class_means, stratified_indices
from evaluation.references import game_for, reference, resolved
from evaluation.runs import Run, RunSpec, exact_run, label, row_label, run_method
from evaluation.scoring import EfficiencyError, efficiency_gap, score
from models.harsanyi import LearnedShapViT
from models.train import seeded
from models.vit import ViTConfig, create_vit
from shapley.exact import exact_shapley
from tests.conftest import away_from_init


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(tmp_path / "cache"))


# --- stratified examples ------------------------------------------------------------------------
def test_stratified_indices_take_the_same_number_of_every_class_interleaved():
    labels = [0] * 10 + [1] * 3 + [2] * 7
    idx = stratified_indices(labels, 3, seed=4)
    assert [labels[i] for i in idx] == [0, 1, 2] * 3          # any prefix of 3m holds m of each
    assert len(set(idx)) == 9
    assert stratified_indices(labels, 3, seed=4) == idx       # seeded
    assert stratified_indices(labels, 3, seed=5) != idx
    assert stratified_indices(labels, 2, seed=4) == idx[:6]   # fewer per class: a prefix
    with pytest.raises(ValueError, match=r"classes \{1: 3\} have fewer"):
        stratified_indices(labels, 4)


def test_per_class_means_skip_missing_values():
    out = per_class_means([1.0, None, 3.0, math.nan, 5.0], [0, 0, 1, 1, 0], ["a", "b"])
    assert out == {"a": 3.0, "b": 3.0}


# --- a model whose Shapley values are known in closed form --------------------------------------
def token_wise_model(pairwise: bool) -> LearnedShapViT:
    """A LearnedSHAP ViT without attention blocks: each patch token depends on its patch alone,
    so dropping patches removes exactly their head terms and the game is the head's 2-additive
    decomposition, phi_i = c_i + 1/2 sum_j c_ij (unary terms only without pairs)."""
    with seeded(0):
        model = LearnedShapViT(create_vit(ViTConfig(image_size=12, patch_size=4, dim=16,
                                                    depth=0)), rank=2, pairwise=pairwise)
        away_from_init(model)
    return model.eval()


def closed_form(model: LearnedShapViT, x: torch.Tensor) -> torch.Tensor:
    """c_i + 1/2 sum_j c_ij read off the head's terms: (B, N, K)."""
    with torch.no_grad():
        out = model.explain(x)
    phi = out.unary
    if out.pair is not None:
        phi = phi + out.pair.sum(2) / 2
    return phi.double()


def examples_for(model: LearnedShapViT, n: int = 4) -> Examples:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(n, 3, 12, 12, generator=gen)
    relevant = torch.zeros(n, 9, dtype=torch.bool)
    relevant[:, :2] = True
    pairs = torch.zeros(n, 9, 9, dtype=torch.bool)
    pairs[:, 0, 1] = pairs[:, 1, 0] = True
    return Examples(x, torch.arange(n) % 2, relevant, torch.zeros(n, 12, 12, dtype=torch.bool),
                    pairs, ["a", "b"], "test", list(range(n)))


@pytest.mark.parametrize("pairwise", [False, True], ids=["additive", "pairwise"])
def test_exact_reference_is_the_closed_form(pairwise):
    model = token_wise_model(pairwise)
    ex = examples_for(model, 2)
    for i in range(2):
        ref = reference(model, ex.x[i])
        torch.testing.assert_close(ref.values, closed_form(model, ex.x[i:i + 1])[0],
                                   rtol=0, atol=1e-5)
        assert ref.exact and ref.noise(0) == 0 and ref.n_evals == 2**9


# every Shapley method, with a budget at which it is exact on a 2-additive game
SHAPLEY_RUNS = [RunSpec("learned_shap"), RunSpec("exact"),
                RunSpec("permutation", 18),   # one antithetic pair: exact without higher orders
                RunSpec("kernel", 512)]       # 2^9 coalitions: the regression is exact


@pytest.mark.parametrize("pairwise", [False, True], ids=["additive", "pairwise"])
@pytest.mark.parametrize("spec", SHAPLEY_RUNS, ids=lambda s: s.method)
def test_score_finds_every_shapley_method_exact_on_a_known_game(spec, pairwise):
    model = token_wise_model(pairwise)
    ex = examples_for(model)
    targets = torch.tensor([0, 1, 2, 3])
    refs = [reference(model, x) for x in ex.x]
    run = run_method(spec, model, ex, targets, seed=0)
    truth = closed_form(model, ex.x)[torch.arange(4), :, targets]            # (B, N)
    torch.testing.assert_close(run.values, truth, rtol=0, atol=1e-4)
    row = score(run, model, ex, targets, refs, fwd_seconds=1e-3)
    assert row["rel_l2_exact"] < 1e-4 and row["pearson_exact"] > 1 - 1e-6
    assert row["efficiency_gap"] < 1e-4
    assert row["per_class"]["rel_l2_exact"]["a"] < 1e-4


def test_score_measures_a_known_error_and_ranks_the_truth():
    model = token_wise_model(True)
    ex = examples_for(model)
    targets = torch.zeros(4, dtype=torch.long)
    refs = [reference(model, x) for x in ex.x]
    exact = run_method(RunSpec("exact"), model, ex, targets, seed=0)
    delta = torch.zeros_like(exact.values)
    delta[:, 0] = 0.5                                  # a known error on one player
    wrong = Run(RunSpec("permutation", variant="off by 0.5"), exact.values + delta, exact.pixel_map,
                None, exact.evals, exact.seconds, exact.forward_seconds)
    row = score(wrong, model, ex, targets, refs, fwd_seconds=1e-3)
    expected = [0.5 / float(r.values[:, 0].norm()) for r in refs]
    assert row["per_example"]["rel_l2_exact"] == pytest.approx(expected, rel=1e-4)
    assert row["per_example"]["efficiency_gap"] == pytest.approx([0.5] * 4, abs=1e-4)
    assert row["per_class"]["rel_l2_exact"]["a"] == pytest.approx((expected[0] + expected[2]) / 2)
    # the same values claimed by a method that is efficient by construction stop the run
    claimed = Run(RunSpec("exact"), wrong.values, exact.pixel_map, None, exact.evals,
                  exact.seconds, exact.forward_seconds)
    with pytest.raises(EfficiencyError, match="exact on example 0"):
        score(claimed, model, ex, targets, refs, fwd_seconds=1e-3)
    # AUROC against the relevant players: their own values decide it
    perfect = torch.zeros_like(exact.values)
    perfect[:, :2] = 1.0
    ranked = Run(RunSpec("permutation", variant="truth"), perfect, exact.pixel_map, None,
                 exact.evals, exact.seconds, exact.forward_seconds)
    assert score(ranked, model, ex, targets, refs, 1e-3)["auroc_truth"] == 1.0
    assert score(Run(RunSpec("permutation", variant="inverted"), -perfect, exact.pixel_map, None,
                     exact.evals, exact.seconds, exact.forward_seconds),
                 model, ex, targets, refs, 1e-3)["auroc_truth"] == 0.0


def test_efficiency_gap_of_exact_values_is_zero():
    model = token_wise_model(True)
    x = examples_for(model, 1).x[0]
    ref = reference(model, x)
    for k in range(4):
        assert abs(efficiency_gap(ref.values[:, k], ref, k)) < 1e-9
    assert efficiency_gap(ref.values[:, 0] + 0.25, ref, 0) == pytest.approx(9 * 0.25)


# --- sampled references -------------------------------------------------------------------------
def test_sampled_reference_reports_its_own_noise(monkeypatch):
    """Two independent halves: their distance over two tracks the mean's real error."""
    with seeded(0):
        model = LearnedShapViT(create_vit(ViTConfig(image_size=12, patch_size=4, dim=16,
                                                    depth=1, heads=2)), rank=2).eval()
        away_from_init(model)
    monkeypatch.setattr(references, "EXACT_LIMIT", 4)          # 9 players: sampled
    x = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(8))
    exact = exact_shapley(game_for(model, x), 9).values
    noises, errors = [], []
    for seed in range(6):
        ref = reference(model, x, 72, seed=seed)
        assert ref.method == "permutation" and ref.halves.shape == (2, 9, 4)
        torch.testing.assert_close(ref.values, ref.halves.mean(0))
        noises.append(ref.noise(0))
        errors.append(float((ref.values[:, 0] - exact[:, 0]).norm() / exact[:, 0].norm()))
    ratio = sum(noises) / sum(errors)
    assert 0.5 < ratio < 2.0, ratio
    with pytest.raises(ValueError, match="budget >= 36"):
        reference(model, x, 20)


def test_references_are_cached_and_a_broken_cache_file_is_recomputed():
    model = token_wise_model(True)
    x = examples_for(model, 1).x[0]
    first = reference(model, x)
    files = list(references.cache_dir().glob("*.pt"))
    assert len(files) == 1
    again = reference(model, x)
    assert torch.equal(first.values, again.values) and again.seconds == first.seconds
    files[0].write_bytes(b"not a tensor file")
    third = reference(model, x)
    assert torch.equal(first.values, third.values)
    other = reference(model, x + 0.01)                        # another input: another file
    assert not torch.equal(other.values, first.values)
    assert len(list(references.cache_dir().glob("*.pt"))) == 2


def test_resolved_needs_the_noise_below_a_third_of_the_error():
    assert resolved(0.3, 0.1) and resolved(0.05, 0.0)
    assert not resolved(0.29, 0.1)


# --- the break-even rule --------------------------------------------------------------------------
def curve(*errors, start=32):
    return [{"budget": start * 2**i, "evals": start * 2**i - 2, "rel_l2": e}
            for i, e in enumerate(errors)]


@pytest.mark.parametrize("errors, target, relation, evals, text", [
    ((0.01, 0.005), 0.05, "≤", 30, "≤ 30"),           # already at the grid's first budget
    ((0.2, 0.1, 0.04), 0.05, "=", 126, "126"),        # reached on the grid
    ((0.2, 0.1, 0.05), 0.05, "=", 126, "126"),        # "at or below" counts equality
    ((0.2, 0.1, 0.06), 0.05, ">", 126, "> 126"),      # never: above the largest tried
])
def test_break_even_rule_on_constructed_curves(errors, target, relation, evals, text):
    found = be.first_reached(curve(*errors), target)
    assert {k: found[k] for k in ("evals", "relation")} == {"evals": evals, "relation": relation}
    assert be.describe(found) == text
    if relation == "=":                   # the true break-even lies above the budget before
        assert found["evals_before"] == evals // 2 - 1


@pytest.mark.parametrize("errors, text", [
    ((0.01, 0.005), "≤ 15"), ((0.2, 0.1, 0.04), "31–63"), ((0.2, 0.1, 0.06), "> 63")])
def test_speed_up_at_equal_error_is_the_break_even_over_the_head_s_evaluations(errors, text):
    out = be.break_even({"a": curve(*errors), "b": curve(*(e * 10 for e in errors))}, 0.05,
                        explainer_evals=2)
    assert out["best"] == "a" and be.describe_speed_up(out["speed_up"]) == text
    assert "speed_up" not in be.break_even({"a": curve(*errors)}, 0.05)
    with pytest.raises(ValueError, match="evaluations must be positive"):
        be.speed_up(be.first_reached(curve(*errors), 0.05), 0)


def test_a_cheaper_sampler_that_missed_bounds_the_speed_up_from_below():
    """An antithetic pair that matches at its first budget (2n = 32) gives "≤ 32" alone; an
    i.i.d. permutation that ran at 17 and missed puts the break-even between 17 and 32."""
    pair = curve(0.001, 0.0005)                                         # evals 30, 62
    iid = [{"budget": 17, "evals": 17, "rel_l2": 0.1}, {"budget": 32, "evals": 32, "rel_l2": 0.05}]
    alone = be.break_even({"permutation": pair}, 0.01, explainer_evals=1)
    assert be.describe_speed_up(alone["speed_up"]) == "≤ 30"
    both = be.break_even({"permutation": pair, "permutation_iid": iid}, 0.01, explainer_evals=1)
    assert both["best"] == "permutation" and be.describe_speed_up(both["speed_up"]) == "17–30"
    # the samplers' own break-evens are unchanged: only the speed-up uses every sampler
    assert be.describe(both["samplers"]["permutation"]) == "≤ 30"
    # a sampler that missed at the same grid budget (KernelSHAP spending 31 of 32) says nothing
    # about fewer evaluations: the bound comes from the budget below
    kernel = [{"budget": 32, "evals": 31, "rel_l2": 0.02}]
    three = be.break_even({"permutation": pair, "permutation_iid": iid, "kernel": kernel}, 0.01,
                          explainer_evals=1)
    assert be.describe_speed_up(three["speed_up"]) == "17–30"


def test_break_even_names_the_best_sampler_and_whether_the_reference_resolves_it():
    curves = {"permutation": curve(0.2, 0.04), "kernel": curve(0.03), "slow": curve(0.2, 0.1)}
    out = be.break_even(curves, 0.05, reference_noise=0.01)
    assert out["best"] == "kernel" and out["resolved"]
    assert out["samplers"]["slow"]["relation"] == ">"
    assert not be.break_even(curves, 0.05, reference_noise=0.02)["resolved"]
    never = be.break_even({"a": curve(0.3, 0.2), "b": curve(0.3, 0.1)}, 0.01)
    assert never["best"] == "b"                       # none matches: the lowest final error
    with pytest.raises(ValueError, match="curve is empty"):
        be.first_reached([], 0.1)


def test_the_grid_starts_at_one_permutation_then_one_antithetic_pair():
    assert be.doubling_grid(16, 2048) == [17, 32, 64, 128, 256, 512, 1024, 2048]
    assert be.doubling_grid(64, 100) == [65, 128]
    assert be.smallest_budget("permutation_iid", 16) == 17
    assert be.smallest_budget("permutation", 16) == 32


def test_sampler_curves_fall_with_budget_on_a_model_with_interactions():
    with seeded(0):
        model = LearnedShapViT(create_vit(ViTConfig(image_size=12, patch_size=4, dim=16,
                                                    depth=1, heads=2)), rank=2).eval()
        away_from_init(model)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(9))
    refs = [reference(model, xi) for xi in x]
    curves = be.sampler_curves(model, list(x), [0, 1], refs, [18, 72, 288], seeds=(0, 1),
                               progress=False)
    for name, c in curves.items():
        assert c[-1]["rel_l2"] < c[0]["rel_l2"], name
        assert all(p["evals"] <= p["budget"] for p in c)
    # at n + 1 = 10 evaluations only one i.i.d. permutation fits, not an antithetic pair
    cheapest = be.sampler_curves(model, list(x), [0, 1], refs, [10], seeds=(0,), progress=False,
                                 samplers=("permutation", "permutation_iid"))
    assert cheapest["permutation"] == [] and cheapest["permutation_iid"][0]["evals"] == 10


def test_faith_shap_approximators_reach_the_exact_pairs_at_the_full_budget():
    """shapiq's order-2 Faith-Shap approximators on a 9-player model whose game has
    interactions of every order: their pair error falls to ~0 at 2^9 evaluations, where the
    references' exact Faith-Shap pairs are the truth."""
    with seeded(0):
        model = LearnedShapViT(create_vit(ViTConfig(image_size=12, patch_size=4, dim=16,
                                                    depth=1, heads=2)), rank=2).eval()
        away_from_init(model)
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(9))
    refs = [reference(model, xi) for xi in x]
    curves = be.pair_curves(model, list(x), [1], refs, [20, 512], seeds=(0,), progress=False)
    assert set(curves) == {"shapiq_regression_fsii", "shapiq_shapiq_fsii", "shapiq_svarmiq_fsii"}
    for name, (low, full) in curves.items():
        assert full["rel_l2"] < 1e-4 < low["rel_l2"], name
    no_pairs = [replace(refs[0], pairs_faith=None)]
    with pytest.raises(ValueError, match="exact Faith-Shap pairs"):
        be.pair_curves(model, list(x), [1], no_pairs, [20], progress=False)


# --- labels -------------------------------------------------------------------------------------
def test_labels_show_variants_and_the_evaluations_made():
    assert label("kernel", evals=254.0) == "kernel (254 evals)"
    assert label("gradient_shap", "blur ref") == "gradient_shap (blur ref)"
    assert row_label({"method": "permutation", "budget": 64, "evals": 61.5}) == \
        "permutation (62 evals)"
    assert row_label({"method": "exact", "budget": None, "evals": 512.0}) == "exact"
    assert RunSpec("kernel", 64).key != RunSpec("kernel", 128).key
    assert RunSpec("gradient_shap").key != RunSpec("gradient_shap", variant="blur ref").key


def test_the_exact_row_from_references_equals_running_exact_and_catches_a_wrong_reference():
    """`exact_run` takes its values from the references and times `explain("exact")` on a few
    examples: its values, pairs and map equal a full run's, and a reference of another game is
    refused instead of scored."""
    model = token_wise_model(pairwise=True)
    ex = examples_for(model)
    targets = torch.tensor([0, 1, 0, 1])
    refs = [reference(model, x) for x in ex.x]
    spec = RunSpec("exact")
    full = run_method(spec, model, ex, targets, seed=0)
    cheap = exact_run(spec, model, ex, targets, refs, seed=0, timed=1)
    assert torch.allclose(cheap.values, full.values, atol=1e-6)
    assert torch.allclose(cheap.pairs, full.pairs, atol=1e-6)
    assert torch.allclose(cheap.pixel_map, full.pixel_map, atol=1e-6)
    assert cheap.evals == full.evals and len(cheap.seconds) == len(ex)
    wrong = [reference(token_wise_model(pairwise=False), x) for x in ex.x]
    with pytest.raises(AssertionError, match="differs from the exact references"):
        exact_run(spec, model, ex, targets, wrong, seed=0, timed=1)
