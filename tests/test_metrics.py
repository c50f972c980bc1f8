"""Metrics: known answers, perfect > random > inverted maps, and the theory behind each one."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from torch import nn

from evaluation.map_metrics import (
    average_drop_increase,
    equal_mass_exponent,
    equal_mass_rescale,
    explanation_masked_input,
    masked_probabilities,
    normalise_map,
)
from evaluation.metrics import (
    auroc,
    cascading_randomization,
    forward_ratio,
    insertion_deletion,
    pair_auroc,
    pearson,
    pointing_game,
    rel_l2,
    spearman,
    topk_overlap,
)
from models.train import seeded
from shapley.game import MaskingGame

# small integers make ties likely, which is where rank-based metrics go wrong
tied_floats = st.integers(-3, 3).map(float)


def vectors(n_min: int = 2, n_max: int = 12):
    return st.integers(n_min, n_max).flatmap(
        lambda n: st.tuples(st.lists(tied_floats, min_size=n, max_size=n),
                            st.lists(tied_floats, min_size=n, max_size=n)))


# --- 1. agreement with exact Shapley values -------------------------------------------------

def test_correlations_known_answers():
    x = torch.arange(10.0)
    assert pearson(x, 2 * x + 1) == pytest.approx(1)
    assert pearson(x, -x) == pytest.approx(-1)
    assert spearman(x, x.exp()) == pytest.approx(1)               # any increasing transform
    assert spearman(x, -x ** 3) == pytest.approx(-1)
    assert math.isnan(pearson(x, torch.ones(10)))                   # constant: no direction
    assert math.isnan(spearman(torch.ones(10), x))


@settings(max_examples=60, deadline=None)
@given(vectors())
def test_correlations_match_numpy_and_scipy_with_ties(ab):
    a, b = (np.array(v) for v in ab)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        assert math.isnan(pearson(torch.tensor(a), torch.tensor(b)))
        return
    assert pearson(torch.tensor(a), torch.tensor(b)) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert spearman(torch.tensor(a), torch.tensor(b)) == pytest.approx(spearmanr(a, b)[0])


def test_rel_l2_and_topk_overlap_known_answers():
    ref = torch.tensor([3.0, -4.0])
    assert rel_l2(ref, ref) == 0
    assert rel_l2(torch.zeros(2), ref) == pytest.approx(1)
    assert rel_l2(ref + torch.tensor([0.3, 0.4]), ref) == pytest.approx(0.1)

    a = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    assert topk_overlap(a, a, 2) == 1
    assert topk_overlap(a, -a, 2) == 0
    assert topk_overlap(a, torch.tensor([5.0, 0.0, 3.0, 2.0, 1.0]), 2) == 0.5     # {0,1} vs {0,2}
    assert topk_overlap(a, -a, 5) == 1                                             # all players
    # ties at the k-th place go to the lower index: the top-1 of a constant vector is player 0
    assert topk_overlap(torch.ones(5), a, 1) == 1


# --- 2. ground truth from the data ----------------------------------------------------------

def test_auroc_known_answers():
    labels = torch.tensor([False, False, True, True])
    assert auroc(torch.tensor([0.1, 0.2, 0.8, 0.9]), labels) == 1
    assert auroc(torch.tensor([0.9, 0.8, 0.2, 0.1]), labels) == 0
    assert auroc(torch.ones(4), labels) == 0.5                       # ties count half
    assert auroc(torch.tensor([0.1, 0.5, 0.5, 0.9]), labels) == 0.875
    assert math.isnan(auroc(torch.rand(4), torch.ones(4, dtype=torch.bool)))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 15).flatmap(lambda n: st.tuples(
    st.lists(tied_floats, min_size=n, max_size=n), st.lists(st.booleans(), min_size=n, max_size=n))))
def test_auroc_is_sklearns_roc_auc(data):
    scores, labels = data
    if len(set(labels)) < 2:
        assert math.isnan(auroc(torch.tensor(scores), torch.tensor(labels)))
        return
    assert auroc(torch.tensor(scores), torch.tensor(labels)) == pytest.approx(
        roc_auc_score(labels, scores))


def test_perfect_map_beats_random_beats_inverted_on_auroc():
    g = torch.Generator().manual_seed(0)
    truth = torch.zeros(64, dtype=torch.bool)
    truth[torch.randperm(64, generator=g)[:16]] = True
    perfect = truth.double() + 0.1 * torch.rand(64, generator=g, dtype=torch.float64)
    random = torch.rand(64, generator=g, dtype=torch.float64)
    assert auroc(perfect, truth) == 1
    assert auroc(-perfect, truth) == 0 < auroc(random, truth) < 1
    assert auroc(perfect, truth) > auroc(random, truth) > auroc(-perfect, truth)


def test_pointing_game():
    relevant = torch.tensor([False, True, True, False])
    assert pointing_game(torch.tensor([0.1, 0.9, 0.5, 0.2]), relevant)
    assert not pointing_game(torch.tensor([0.9, 0.1, 0.5, 0.2]), relevant)
    # a tie at the top is a hit only if every tied player is relevant
    assert pointing_game(torch.tensor([0.0, 1.0, 1.0, 0.0]), relevant)
    assert not pointing_game(torch.ones(4), relevant)


def test_pair_auroc_ranks_raw_scores_over_the_upper_triangle():
    truth = torch.zeros(5, 5, dtype=torch.bool)
    truth[0, 1] = truth[1, 0] = truth[2, 3] = truth[3, 2] = True
    assert pair_auroc(truth.double(), truth) == 1
    assert pair_auroc(-truth.double(), truth) == 0
    scores = truth.double().clone()
    scores[1, 4] = scores[4, 1] = -5.0             # a strong negative interaction is not a hit
    assert pair_auroc(scores, truth) == 1
    assert pair_auroc(scores.abs(), truth) < 1
    lower_only = torch.tril(torch.randn(5, 5), -1)  # the lower triangle is never read
    assert pair_auroc(truth.double() + lower_only, truth) == 1


# --- 3. faithfulness: insertion and deletion ------------------------------------------------

def additive_game(weights: torch.Tensor):
    """(C, N) bool -> (C, 2) logits: class 0's logit is the sum of the present players' weights."""
    def game(coalitions):
        logit = coalitions.double() @ weights.double()                         # (C,)
        return torch.stack([logit, torch.zeros_like(logit)], 1)               # (C, 2)
    return game


def test_insertion_deletion_perfect_beats_random_beats_inverted():
    g = torch.Generator().manual_seed(0)
    weights = torch.randn(16, generator=g, dtype=torch.float64)
    game = additive_game(weights)
    random = torch.randn(16, generator=g, dtype=torch.float64)
    perfect, rand, inverted = (insertion_deletion(game, v, 0) for v in (weights, random, -weights))
    assert perfect["insertion_auc"] > rand["insertion_auc"] > inverted["insertion_auc"]
    assert perfect["deletion_auc"] < rand["deletion_auc"] < inverted["deletion_auc"]


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 10).flatmap(lambda n: st.tuples(
    st.lists(tied_floats, min_size=n, max_size=n), st.permutations(list(range(n))))))
def test_exact_weights_give_the_best_curves_at_every_step(data):
    # the k players of largest weight maximise the present sum, and the softmax is monotone in it
    w, perm = data
    weights = torch.tensor(w)
    game = additive_game(weights)
    best, any_map, worst = (insertion_deletion(game, v, 0)
                            for v in (weights, torch.tensor(perm, dtype=torch.float64), -weights))
    tol = 1e-12
    assert (best["insertion_curve"] >= any_map["insertion_curve"] - tol).all()
    assert (any_map["insertion_curve"] >= worst["insertion_curve"] - tol).all()
    assert (best["deletion_curve"] <= any_map["deletion_curve"] + tol).all()
    assert (any_map["deletion_curve"] <= worst["deletion_curve"] + tol).all()


def test_insertion_deletion_curves_endpoints_steps_and_one_call():
    weights = torch.tensor([2.0, -1.0, 0.5, 1.0, 0.0, -0.5, 3.0, 1.5], dtype=torch.float64)
    calls = []

    def game(coalitions):
        calls.append(len(coalitions))
        return additive_game(weights)(coalitions)

    out = insertion_deletion(game, weights, 0)
    assert calls == [18]                                       # both curves, N + 1 each, one call
    p_empty, p_full = 0.5, torch.sigmoid(weights.sum()).item()
    assert out["insertion_curve"][0] == p_empty and out["deletion_curve"][-1] == p_empty
    assert out["insertion_curve"][-1] == pytest.approx(p_full)
    assert out["deletion_curve"][0] == pytest.approx(p_full)
    torch.testing.assert_close(out["fractions"], torch.arange(9, dtype=torch.float64) / 8)
    assert out["insertion_auc"] == pytest.approx(
        torch.trapezoid(out["insertion_curve"], dx=1 / 8).item())

    coarse = insertion_deletion(game, weights, 0, steps=4)
    torch.testing.assert_close(coarse["fractions"], torch.tensor([0, 0.25, 0.5, 0.75, 1.0],
                                                                 dtype=torch.float64))
    torch.testing.assert_close(coarse["insertion_curve"], out["insertion_curve"][::2])

    # tied values keep the player order: the first player inserted is player 0
    tied = insertion_deletion(game, torch.zeros(8), 0)
    assert tied["insertion_curve"][1] == pytest.approx(torch.sigmoid(weights[0]).item())


def test_insertion_deletion_through_the_masking_game_follows_its_output():
    with seeded(0):
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(1))
    mask = torch.arange(16).view(4, 4) // 2                     # 8 players, pairs of pixels
    logit_game = MaskingGame(model, x, baseline="zeros", feature_mask=mask)
    prob_game = MaskingGame(model, x, baseline="zeros", feature_mask=mask, output="prob")
    values = torch.randn(8, generator=torch.Generator().manual_seed(2))
    a = insertion_deletion(logit_game, values, 1)
    b = insertion_deletion(prob_game, values, 1)                # no softmax applied twice
    assert a["insertion_auc"] == pytest.approx(b["insertion_auc"], abs=1e-6)
    assert a["deletion_auc"] == pytest.approx(b["deletion_auc"], abs=1e-6)
    assert logit_game.n_evals == 18
    with pytest.raises(ValueError, match="leave probabilities unset"):
        insertion_deletion(prob_game, values, 1, probabilities=False)
    with pytest.raises(ValueError, match="values score 7 players but the game has 8"):
        insertion_deletion(logit_game, values[:7], 1)


# --- 3. faithfulness: Average Drop and equal-mass rescaling ---------------------------------

class RegionModel(nn.Module):
    """A linear softmax model on 4x4 pixels: class 0's evidence is the top-left 2x2 region, and
    the bottom-right pixel is a distractor that counts against it."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(16, 2)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[0, REGION.flatten()] = 1.0
            self.linear.weight[0, 15] = -1.0
            self.linear.bias.copy_(torch.tensor([0.0, 2.0]))

    def forward(self, x):                                       # x: (B, 1, 4, 4)
        return self.linear(x.flatten(1))                        # (B, 2)


REGION = torch.zeros(4, 4, dtype=torch.bool)
REGION[:2, :2] = True


def drop_and_increase(pixel_map, r=None):
    x = torch.ones(1, 1, 4, 4)
    y, o = masked_probabilities(RegionModel(), x, pixel_map[None], torch.tensor([0]), "zeros", r=r)
    return average_drop_increase(y, o)


def test_average_drop_increase_known_answers():
    drop, increase = average_drop_increase(torch.tensor([0.5, 0.8]), torch.tensor([0.25, 0.9]))
    assert drop == pytest.approx(25.0)                                  # (0.5 - 0.25) / 0.5 / 2
    assert increase == pytest.approx(50.0)


def test_average_drop_ranks_maps_by_their_mass_in_the_relevant_region():
    inside = REGION.float()
    outside = (~REGION).float()
    half = torch.zeros(4, 4)
    half[0, :2] = half[2, :2] = 1.0                  # half the region, half outside (no distractor)
    drops = {name: drop_and_increase(m) for name, m in
             [("inside", inside), ("half", half), ("outside", outside)]}
    assert drops["inside"] == (0.0, 100.0)          # keeps the evidence, drops the distractor
    assert 0 < drops["half"][0] < drops["outside"][0]
    assert drops["half"][1] == drops["outside"][1] == 0


def test_all_ones_map_wins_average_drop_until_equal_mass_rescaling():
    ones = torch.ones(4, 4)
    assert drop_and_increase(ones) == (0.0, 0.0)              # Average Drop's bias: a perfect score
    rescaled_drop, _ = drop_and_increase(ones, r=0.3)
    assert rescaled_drop > 10                                  # its mass is now 0.3 per pixel
    torch.testing.assert_close(equal_mass_rescale(ones, 0.3), torch.full((4, 4), 0.3))
    assert drop_and_increase(REGION.float(), r=0.3)[0] == 0   # the true region keeps its score


def test_explanation_masked_input_is_a_soft_mask_towards_the_baseline():
    x = torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(0))
    pixel_map = torch.tensor([[-1.0, 0.0], [1.0, 4.0]])
    s = normalise_map(pixel_map)
    torch.testing.assert_close(s, torch.tensor([[0.0, 0.0], [0.25, 1.0]], dtype=torch.float64))
    baseline = torch.full((3, 2, 2), 7.0)
    out = explanation_masked_input(x, pixel_map, baseline)
    torch.testing.assert_close(out, x * s.float() + 7.0 * (1 - s.float()))
    torch.testing.assert_close(explanation_masked_input(x, pixel_map, "zeros"), x * s.float())
    with pytest.raises(ValueError, match="upsample the map"):
        explanation_masked_input(x, torch.ones(4, 4), "zeros")
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        explanation_masked_input(x, pixel_map, "zeros", normalise=False)


@pytest.mark.parametrize("seed", range(5))
def test_equal_mass_rescale_hits_the_mass_and_keeps_the_order(seed):
    g = torch.Generator().manual_seed(seed)
    s = normalise_map(torch.randn(16, 16, generator=g) + 0.5)      # some zeros, max 1
    r = 0.1 + 0.05 * seed
    exponent = equal_mass_exponent(s, r)
    out = equal_mass_rescale(s, r)
    assert exponent > 0
    assert float(out.sum()) == pytest.approx(r * s.numel(), abs=1e-4)
    assert out.max() == 1                                           # the maximum stays
    order = s.flatten().argsort(stable=True)
    assert (out.flatten()[order].diff() >= 0).all()                 # monotone
    torch.testing.assert_close(out, s ** exponent)


def test_equal_mass_rescale_fallbacks():
    sparse = torch.zeros(10)
    sparse[:2] = torch.tensor([1.0, 0.5])
    torch.testing.assert_close(equal_mass_rescale(sparse, 0.3), (sparse > 0).float())
    with pytest.raises(ValueError, match="no exponent gives this map mass"):
        equal_mass_exponent(sparse, 0.3)
    with pytest.raises(ValueError, match="all zeros"):
        equal_mass_rescale(torch.zeros(10), 0.3)
    with pytest.raises(ValueError, match="normalise it first"):
        equal_mass_rescale(torch.tensor([0.0, 2.0]), 0.3)
    with pytest.raises(ValueError, match="r is the share"):
        equal_mass_rescale(torch.rand(10), 1.5)


# --- 4. sanity: cascading randomisation -----------------------------------------------------

def gradient_x_input(model, x, target):
    """(16,) gradient times input of the target logit."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x[None])[0, target], x)
    return (grad * x).detach()


@pytest.fixture
def mlp():
    with seeded(0):
        return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                             nn.Linear(32, 3))


def test_cascading_randomization_destroys_the_explanation_and_not_the_model(mlp):
    x = torch.randn(16, generator=torch.Generator().manual_seed(1))
    before = {k: v.clone() for k, v in mlp.state_dict().items()}
    steps = cascading_randomization(mlp, gradient_x_input, x, 0, seed=3)
    assert [s["layer"] for s in steps] == ["4", "2", "0"]          # output layer first
    assert steps[-1]["spearman"] < 0.9
    assert all(abs(s["pearson"]) <= 1 for s in steps)
    for k, v in mlp.state_dict().items():                          # the original is untouched
        assert torch.equal(v, before[k]), k
    assert cascading_randomization(mlp, gradient_x_input, x, 0, seed=3) == steps
    assert cascading_randomization(mlp, gradient_x_input, x, 0, seed=4) != steps
    one = cascading_randomization(mlp, gradient_x_input, x, 0, layers=["4"], seed=3)
    assert one == steps[:1]                                        # same noise, same first step


def test_cascading_randomization_bad_layers(mlp):
    x = torch.randn(16)
    with pytest.raises(ValueError, match="not modules of Sequential"):
        cascading_randomization(mlp, gradient_x_input, x, 0, layers=["head"])
    with pytest.raises(ValueError, match="no parameters left"):
        cascading_randomization(mlp, gradient_x_input, x, 0, layers=["1"])


# --- 5. cost, and bad inputs ----------------------------------------------------------------

def test_forward_ratio():
    assert forward_ratio(2.0, 0.5) == 4.0
    with pytest.raises(ValueError, match="positive time"):
        forward_ratio(1.0, 0.0)


@pytest.mark.parametrize("call, message", [
    (lambda: pearson(torch.ones(3), torch.ones(4)), "must score the same players"),
    (lambda: spearman(torch.ones(2, 3), torch.ones(2, 3)), "call the metric on each row"),
    (lambda: pearson(torch.tensor([1.0, math.nan]), torch.ones(2)), "nan or inf"),
    (lambda: rel_l2(torch.ones(3), torch.zeros(3)), "absolute error"),
    (lambda: topk_overlap(torch.ones(3), torch.ones(3), 4), "k must be an integer in 1..3"),
    (lambda: auroc(torch.ones(3), torch.tensor([0, 2, 1])), "must be a bool mask"),
    (lambda: pointing_game(torch.ones(3), torch.zeros(3, dtype=torch.bool)), "skip examples"),
    (lambda: pair_auroc(torch.ones(3, 3, 2), torch.ones(3, 3)), "pick one class first"),
    (lambda: pair_auroc(torch.ones(3, 3), torch.triu(torch.ones(3, 3))), "must be symmetric"),
    (lambda: insertion_deletion(additive_game(torch.ones(3)), torch.ones(3), 5),
     "not a class of the game's 2 outputs"),
    (lambda: insertion_deletion(additive_game(torch.ones(3)), torch.ones(3), 0, steps=0),
     "steps must be an integer in 1..3"),
    (lambda: insertion_deletion(additive_game(torch.ones(3)), torch.ones(3), 0,
                                probabilities=True), "if these are logits"),
    (lambda: average_drop_increase(torch.tensor([0.0]), torch.tensor([0.5])), "divides by"),
    (lambda: average_drop_increase(torch.tensor([2.0]), torch.tensor([0.5])), "apply softmax"),
    (lambda: average_drop_increase(torch.ones(2), torch.ones(3)), "matching batches"),
])
def test_bad_inputs_say_what_to_do(call, message):
    with pytest.raises(ValueError, match=message):
        call()
