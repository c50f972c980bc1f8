"""Post-hoc LearnedSHAP: efficient by construction, its loss is the frozen game's, it trains
towards the frozen model's Shapley values, and it explains through `explain` at two rows."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from explainers import explain
from models.harsanyi import LearnedShapViT
from models.posthoc import PostHocShap, coalition_values, frozen_values, posthoc_loss
from models.train import seeded, train
from models.vit import ViTConfig, create_vit
from shapley.exact import exact_shapley
from shapley.game import MaskingGame
from shapley.sampling import kernel_coalitions
from tests.conftest import away_from_init


@pytest.fixture(scope="module")
def frozen():
    """A small plain ViT with class-token pooling (9 players)."""
    with seeded(0):
        return create_vit(ViTConfig(image_size=12, patch_size=4, dim=16, depth=2, heads=2)).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(2))


def explainer_of(model, **kw) -> PostHocShap:
    with seeded(1):
        net = PostHocShap(model, rank=2, **kw)
    net.calibrate(model, torch.rand(1, 3, 12, 12))
    return net.eval()


def test_the_empty_end_is_the_frozen_models_and_phi_is_efficient(frozen, images):
    net = explainer_of(frozen)
    empty = MaskingGame(frozen, images[0])(torch.zeros(1, 9, dtype=torch.bool))[0]
    torch.testing.assert_close(net.v_empty, empty)              # the same for every input
    with torch.no_grad():
        v_full = frozen(images)
        out = net.decompose(images, v_full)
    torch.testing.assert_close(out.shapley.sum(1), v_full - net.v_empty, rtol=0, atol=1e-5)
    full = torch.ones(len(images), 1, 9, dtype=torch.bool)
    torch.testing.assert_close(coalition_values(out, full)[:, 0], v_full, rtol=0, atol=1e-5)


def test_frozen_values_are_the_masking_game(frozen, images):
    keep = kernel_coalitions(9, 6 * 5, torch.Generator().manual_seed(3)).view(6, 5, 9)
    values = frozen_values(frozen, images, keep)                 # (B, M, K)
    for b in range(6):
        torch.testing.assert_close(values[b], MaskingGame(frozen, images[b])(keep[b]),
                                   rtol=1e-5, atol=1e-5)


def test_the_loss_vanishes_when_the_decomposition_is_the_frozen_game(images):
    """A token-wise LearnedSHAP ViT's game is its own decomposition; an explainer with its
    backbone and head reproduces every coalition, so the loss is zero."""
    with seeded(0):
        model = LearnedShapViT(create_vit(ViTConfig(image_size=12, patch_size=4, dim=16,
                                                    depth=0)), rank=2)
        away_from_init(model)
    model.eval()
    net = PostHocShap(model.backbone, rank=2)
    net.head.load_state_dict(model.head.state_dict())
    net.calibrate(model, images)
    loss, _ = posthoc_loss(model, coalitions=8)(net, {"x": images}, torch.Generator())
    assert loss.item() < 1e-10
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.head.pair_weight.zero_()                       # the pairs removed
    assert posthoc_loss(model, coalitions=8)(other, {"x": images}, torch.Generator())[0] > 1e-6


def test_training_on_the_frozen_game_approaches_its_shapley_values(frozen):
    """A short run (kernel coalitions, paired) cuts the gap to the exact values of the frozen
    game: the explainer learns the frozen model's Shapley values, not its own."""
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(256, 3, 12, 12, generator=gen)
    loader = torch.utils.data.DataLoader([{"x": xi, "y": torch.tensor(0)} for xi in x],
                                         batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    test = torch.rand(6, 3, 12, 12, generator=gen)
    exact = [exact_shapley(MaskingGame(frozen, t), 9, interactions=False).values for t in test]

    def gap(net):
        with torch.no_grad():
            out = net.decompose(test, frozen(test))
        return sum(float((out.shapley[i].double() - exact[i]).norm() / exact[i].norm())
                   for i in range(len(test))) / len(test)

    net = explainer_of(frozen)
    before = gap(net)
    counter = [0]
    train(net, loader, epochs=15, lr=3e-3, seed=0, loss_fn=posthoc_loss(frozen, 16, counter),
          progress=False, log=lambda s: None, device="cpu")
    assert counter[0] == 15 * 256 * 17                         # the training cost, counted
    assert gap(net.eval()) < 0.5 * before


def test_explain_costs_the_prediction_and_one_explainer_pass(frozen, images):
    net = explainer_of(frozen)
    att = explain("learned_shap_posthoc", frozen, images, 1, explainer=net)
    assert att.cost.evals == 2 * len(images)
    with torch.no_grad():
        out = net.decompose(images, frozen(images))
    torch.testing.assert_close(att.values, out.shapley[:, :, 1])
    assert att.extras["pairs"].shape == (6, 9, 9)
    unary = explain("learned_shap_posthoc", frozen, images, 1,
                    explainer=explainer_of(frozen, pairwise=False))
    assert "pairs" not in unary.extras


def test_explain_leaves_both_networks_as_they_were(frozen, images):
    net = explainer_of(frozen).train()
    model = copy.deepcopy(frozen).train()
    explain("learned_shap_posthoc", model, images, 0, explainer=net)
    assert net.training and model.training
    assert all(p.requires_grad for p in net.parameters())


def test_a_missing_or_foreign_explainer_is_named(frozen, images):
    with pytest.raises(ValueError, match="needs the trained explainer"):
        explain("learned_shap_posthoc", frozen, images, 0)
    with seeded(0):
        other = create_vit(ViTConfig(image_size=12, patch_size=6, dim=16, depth=1, heads=2))
    with pytest.raises(ValueError, match="trained for a"):
        explain("learned_shap_posthoc", other, images, 0, explainer=explainer_of(frozen))
    with pytest.raises(TypeError, match="explains ViTs that drop tokens"):
        PostHocShap(torch.nn.Linear(3, 3))


def test_vit_shapley_has_its_own_head_and_verb(frozen, images):
    with seeded(1):
        net = PostHocShap(frozen, head="vit_shapley")
    net.calibrate(frozen, images)
    att = explain("vit_shapley", frozen, images, 2, explainer=net.eval())
    assert att.cost.evals == 2 * len(images) and "pairs" not in att.extras
    with torch.no_grad():
        v_full = frozen(images)
    torch.testing.assert_close(att.values.sum(1), (v_full - net.v_empty)[:, 2], rtol=0,
                               atol=1e-5)
    with pytest.raises(ValueError, match="harsanyi head, which vit_shapley does not read.*"
                                         "explain\\('learned_shap_posthoc'"):
        explain("vit_shapley", frozen, images, 0, explainer=explainer_of(frozen))
    with pytest.raises(ValueError, match="vit_shapley head, which learned_shap_posthoc does not "
                                         "read.*explain\\('vit_shapley'"):
        explain("learned_shap_posthoc", frozen, images, 0, explainer=net)
    with pytest.raises(ValueError, match="unknown explainer head"):
        PostHocShap(frozen, head="mlp")


def test_a_posthoc_explainer_is_retrained_when_its_frozen_model_changes(monkeypatch):
    from dataclasses import replace

    from models import zoo

    spec = zoo.all_specs()["posthoc_vit_patches"]
    before = zoo.fingerprint(spec)
    plain = zoo.SPECS["vit_patches"]
    monkeypatch.setitem(zoo.SPECS, "vit_patches", replace(plain, epochs=plain.epochs + 1))
    assert zoo.fingerprint(spec) != before


@pytest.mark.slow
def test_quick_posthoc_report_trains_measures_and_tables(tmp_path, quick_cache, monkeypatch):
    from models import zoo
    from studies import posthoc

    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(quick_cache))
    names = ["posthoc_vit_patches", "vit_shapley_vit_patches"]
    results = posthoc.main(["--quick", "--models", *names, "--out", str(tmp_path),
                            "--no-progress"])
    assert [r["name"] for r in results] == names
    for r in results:
        assert r["evals_per_explanation"] == 2 and r["frozen_evals"] > 0
        assert r["efficiency_gap"]["max"] < 1e-4 and r["n_examples"] == 4
        assert r["method"] == ("vit_shapley" if r["name"].startswith("vit_shapley")
                               else "learned_shap_posthoc")
    table = (tmp_path / "posthoc.md").read_text()
    assert "| `posthoc_vit_patches` | `vit_patches` | 16 | unary + pairs |" in table
    assert "ViT-Shapley (attention block + MLP)" in table
    trained = zoo.load("posthoc_vit_patches", quick=True, train_missing=False)
    assert trained.meta["frozen_evals"] == results[0]["frozen_evals"]


def test_the_posthoc_objective_is_minimised_by_shapley_values_and_faith_shap_pairs():
    """The explainer's objective with free terms, in expectation over its own coalition sampler
    (paired Shapley-kernel sizes, a uniform subset of each size; both ends exact through the bias
    and the efficient normalisation), on a game with interactions of every order: its gradient
    vanishes at the order-2 Faith-Shap indices, where phi = c_i + 1/2 sum_j c_ij are the exact
    Shapley values. The loss is quadratic in the terms, so that point is its minimum."""
    from models.harsanyi import HeadOutput
    from models.posthoc import efficient
    from shapley.exact import coalition_masks, faith_shap, shapley_from_table, shapley_kernel_sizes

    n, gen = 6, torch.Generator().manual_seed(5)
    table = torch.randn(2**n, 2, generator=gen, dtype=torch.float64)           # (2^n, K)
    table[0] = 0.3
    masks = coalition_masks(n)                                                  # (2^n, n)
    sizes = masks.sum(1)
    p_size = shapley_kernel_sizes(n).double()                                   # (n + 1,)
    counts = torch.tensor([math.comb(n, int(s)) for s in sizes], dtype=torch.float64)
    weight = p_size[sizes] / counts                                             # (2^n,)
    unary_fs, pairs_fs = faith_shap(table)

    def expected_loss(unary, pair):
        out = efficient(HeadOutput(None, None, unary[None], pair[None], None),
                        table[-1][None], table[0])
        g = coalition_values(out, masks[None])[0]                               # (2^n, K)
        return (weight[:, None] * (g - table).square()).sum()

    unary = unary_fs.clone().requires_grad_(True)
    pair = pairs_fs.clone().requires_grad_(True)
    expected_loss(unary, pair).backward()
    assert unary.grad.abs().max() < 1e-10 and pair.grad.abs().max() < 1e-10
    out = efficient(HeadOutput(None, None, unary_fs[None], pairs_fs[None], None),
                    table[-1][None], table[0])
    torch.testing.assert_close(out.shapley[0], shapley_from_table(table), rtol=0, atol=1e-10)
    # a nearby symmetric point is worse
    other = pairs_fs + 0.01 * torch.randn(pairs_fs.shape, generator=gen, dtype=torch.float64)
    other = (other + other.transpose(0, 1)) / 2 * (1 - torch.eye(n, dtype=torch.float64))[..., None]
    assert expected_loss(unary_fs, other) > expected_loss(unary_fs, pairs_fs)


def test_phi_first_keeps_phi_at_the_shapley_values_whatever_the_pairs():
    """The phi-first objective in expectation over the Shapley kernel (both ends exact), on a
    game with interactions of every order: at phi = the exact Shapley values and pairs = the
    order-2 Faith-Shap indices nothing moves; with wrong pairs and phi still exact, only the pairs
    move."""
    from models.harsanyi import HeadOutput
    from models.posthoc import efficient, phi_first_error
    from shapley.exact import coalition_masks, faith_shap, shapley_from_table, shapley_kernel_sizes

    n, gen = 6, torch.Generator().manual_seed(7)
    table = torch.randn(2**n, 2, generator=gen, dtype=torch.float64)           # (2^n, K)
    masks = coalition_masks(n)                                                  # (2^n, n)
    sizes = masks.sum(1)
    counts = torch.tensor([math.comb(n, int(s)) for s in sizes], dtype=torch.float64)
    weight = shapley_kernel_sizes(n).double()[sizes] / counts                   # (2^n,)
    unary_fs, pairs_fs = faith_shap(table)
    exact = shapley_from_table(table)                                           # (n, K)

    def gradients(unary, pair, loss):
        unary, pair = unary.clone().requires_grad_(True), pair.clone().requires_grad_(True)
        out = efficient(HeadOutput(None, None, unary[None], pair[None], None),
                        table[-1][None], table[0])
        loss(out).backward()
        return unary.grad, pair.grad, out.shapley[0].detach()

    def phi_first(out):
        return phi_first_error(out, masks[None], table[None], weight)

    def joint(out):
        return (weight[:, None] * (coalition_values(out, masks[None])[0] - table).square()).sum()

    du, dp, phi = gradients(unary_fs, pairs_fs, phi_first)
    torch.testing.assert_close(phi, exact, rtol=0, atol=1e-10)
    assert du.abs().max() < 1e-10 and dp.abs().max() < 1e-10
    wrong = pairs_fs + 0.1 * torch.randn(pairs_fs.shape, generator=gen, dtype=torch.float64)
    wrong = (wrong + wrong.transpose(0, 1)) / 2 * (1 - torch.eye(n, dtype=torch.float64))[..., None]
    unary = exact - wrong.sum(1) / 2                                            # phi still exact
    du, dp, phi = gradients(unary, wrong, phi_first)
    torch.testing.assert_close(phi, exact, rtol=0, atol=1e-10)
    assert du.abs().max() < 1e-10 and dp.abs().max() > 1e-3
    # in expectation the joint fit does not move phi either (what wrong pairs leave has zero
    # Shapley values); the two objectives differ in what a sample of coalitions does
    du_joint, dp_joint, _ = gradients(unary, wrong, joint)
    assert du_joint.abs().max() < 1e-10 and dp_joint.abs().max() > 1e-3


def test_pairs_beside_vit_shapley_leave_its_training_as_it_is(frozen, images):
    """ViT-Shapley's explainer with our pair terms beside it, trained phi first: on the same
    coalitions, every weight that computes phi gets the gradient ViT-Shapley's own loss gives
    it, whatever the pair terms; the pair terms learn, and phi has its pairs' halves in it."""
    from models.posthoc import PLUS_PAIRS_HEAD, new_explainer, phi_first_loss

    with seeded(2):
        plus = new_explainer(frozen, PLUS_PAIRS_HEAD, rank=2)
        vit_shapley = PostHocShap(frozen, head="vit_shapley")
    with torch.no_grad():
        plus.head.pairs.pair_sign.normal_(generator=torch.Generator().manual_seed(0))
    vit_shapley.backbone.load_state_dict(plus.backbone.state_dict())
    vit_shapley.head.load_state_dict(plus.head.vit_shapley.state_dict())
    for net in (plus, vit_shapley):
        net.calibrate(frozen, images)
        net.train()
    ours = phi_first_loss(frozen, 8)(plus, {"x": images}, torch.Generator().manual_seed(3))[0]
    theirs = posthoc_loss(frozen, 8)(vit_shapley, {"x": images},
                                     torch.Generator().manual_seed(3))[0]
    ours.backward()
    theirs.backward()
    assert ours > theirs > 0                             # the pair terms' own fit comes on top
    for mine, same in ((plus.backbone, vit_shapley.backbone),
                       (plus.head.vit_shapley, vit_shapley.head)):
        for (name, a), b in zip(mine.named_parameters(), same.parameters()):
            if b.grad is None:
                assert a.grad is None or a.grad.abs().max() == 0, name
            else:
                torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7, msg=name)
    assert plus.head.pairs.pair_sign.grad.abs().sum() > 0
    assert plus.head.pairs.unary_proj.weight.grad is None
    att = explain("learned_shap_posthoc", frozen, images, 1, explainer=plus.eval())
    phi = explain("vit_shapley", frozen, images, 1, explainer=vit_shapley.eval())
    torch.testing.assert_close(att.values, phi.values, rtol=1e-4, atol=1e-6)
    assert att.extras["pairs"].abs().sum() > 0
    with pytest.raises(ValueError, match="for no pair terms fit head='vit_shapley'"):
        new_explainer(frozen, PLUS_PAIRS_HEAD, pairwise=False)


def test_permutation_targets_are_unbiased_and_exact_on_a_pairwise_game():
    """The regression objective's targets: an antithetic pair of orders is exact on a game of
    order at most 2; on any game their mean over many orders is the Shapley value."""
    from models.posthoc import antithetic_prefixes, permutation_targets
    from shapley.exact import coalition_masks, shapley_from_table

    n, gen = 5, torch.Generator().manual_seed(3)
    masks = coalition_masks(n)
    bits = (masks.long() << torch.arange(n)).sum(1)
    rand = torch.randn(2**n, 2, generator=gen, dtype=torch.float64)
    size = masks.sum(1)
    pairwise = torch.zeros(2**n, 2, dtype=torch.float64)    # v(S) = sum of dividends of |T| <= 2
    for t in range(2**n):
        if 0 < size[t] <= 2:
            inside = (bits[:, None] & bits[t]) == bits[t]
            pairwise += inside * rand[t]
    for table, orders, atol in ((pairwise, 1, 1e-12), (rand, 4000, 0.05)):
        keep = antithetic_prefixes(n, 1, orders, gen)                           # (1, R, n)
        assert keep.shape == (1, orders * 2 * (n - 1), n)
        index = (keep.long() << torch.arange(n)).sum(-1)                         # (1, R)
        phi = permutation_targets(keep, table[index], table[-1][None], table[0])[0]
        torch.testing.assert_close(phi, shapley_from_table(table), rtol=0, atol=atol)
        torch.testing.assert_close(phi.sum(0), table[-1] - table[0])             # efficient


@pytest.mark.parametrize("objective", ["permutation", "mix"])
def test_the_regression_objectives_count_their_evaluations_and_train(frozen, objective):
    from models.posthoc import evals_per_image

    x = torch.rand(8, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    net = explainer_of(frozen).train()
    counter = [0]
    loss, _ = posthoc_loss(frozen, 16, counter, objective)(net, {"x": x}, torch.Generator())
    loss.backward()
    per_image = 1 + 16 + 16 if objective == "mix" else 1 + 16      # one pair: 2 x 8 prefixes
    assert evals_per_image(9, 16, objective) == per_image and counter == [8 * per_image]
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert loss.item() > 0 and sum(float(g.abs().sum()) for g in grads) > 0
    with pytest.raises(ValueError, match="unknown objective"):
        posthoc_loss(frozen, 16, None, "faith")


def test_vit_shapley_with_pairs_and_a_deeper_explainer_are_efficient_and_train(frozen, images):
    from models.posthoc import READOUT_HEAD, new_explainer

    with seeded(1):
        attended = PostHocShap(frozen, rank=2, head="vit_shapley_pairs")
        deeper = PostHocShap(frozen, rank=2, extra_blocks=2)
        readout = new_explainer(frozen, READOUT_HEAD, rank=2)
    base = sum(p.numel() for p in explainer_of(frozen).parameters())
    assert sum(p.numel() for p in deeper.parameters()) > base and len(deeper.extra) == 2
    with torch.no_grad():
        v_full = frozen(images)
    for net in (attended, deeper, readout):
        net.calibrate(frozen, images)
        att = explain("learned_shap_posthoc", frozen, images, 1, explainer=net.eval())
        assert att.extras["pairs"].shape == (6, 9, 9)
        torch.testing.assert_close(att.values.sum(1), (v_full - net.v_empty)[:, 1], rtol=0,
                                   atol=1e-5)
        loss, _ = posthoc_loss(frozen, 8)(net.train(), {"x": images}, torch.Generator())
        loss.backward()
        assert all(p.grad is not None for p in net.extra.parameters())
    # ViT-Shapley's MLP readout writes unary terms beside ours: phi = c_i + 1/2 sum_j c_ij still,
    # and its weights train
    assert readout.kind == READOUT_HEAD and all(p.grad is not None
                                                for p in readout.head.mlp.parameters())
    with torch.no_grad():
        readout.head.harsanyi.pair_sign.normal_(generator=torch.Generator().manual_seed(0))
        out = readout.head(torch.randn(2, 9, frozen.dim, generator=torch.Generator().manual_seed(1)))
    assert out.pair.abs().sum() > 0
    torch.testing.assert_close(out.shapley, out.unary + out.pair.sum(2) / 2)
    torch.testing.assert_close(out.restrict(torch.ones(2, 9, dtype=torch.bool)), out.logits)
    with pytest.raises(ValueError, match="vit_shapley_readout_pairs head, which vit_shapley does"):
        explain("vit_shapley", frozen, images, 0, explainer=readout.eval())
    with pytest.raises(ValueError, match="unknown explainer head 'mlp'.*vit_shapley_plus_pairs"):
        new_explainer(frozen, "mlp")
    with pytest.raises(ValueError, match="vit_shapley_pairs head, which vit_shapley does not read"):
        explain("vit_shapley", frozen, images, 0, explainer=attended.eval())
    with pytest.raises(ValueError, match="extra_blocks must be >= 0"):
        PostHocShap(frozen, extra_blocks=-1)
