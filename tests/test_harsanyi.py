"""LearnedSHAP head: its phi are the exact Shapley values of its own game, and every weight trains."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.harsanyi import (
    HarsanyiHead,
    HeadConfig,
    LearnedShapR3D,
    LearnedShapViT,
    consistency_loss,
    learned_shap_loss,
)
from models.resnet_3d import ResNet3DConfig, create_r3d
from models.train import seeded
from models.vit import ViTConfig, create_vit
from shapley.exact import coalition_masks, exact_shapley, harsanyi_pairs
from shapley.game import MaskingGame
from tests.conftest import away_from_init


@pytest.fixture
def head():
    with seeded(0):
        h = HarsanyiHead(HeadConfig(n_players=6, dim=8, n_classes=3, rank=2))
        away_from_init(h)                        # every term matters
    return h


def head_game(head, tokens):
    """The head's own game on one input's tokens: v(S) = its logits with only S present."""
    return lambda keep: head(tokens.expand(len(keep), -1, -1), keep).logits


def test_phi_equals_exact_shapley_values_of_the_heads_game(head):
    tokens = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(1))
    out = head(tokens)
    with torch.no_grad():
        exact = exact_shapley(head_game(head, tokens), 6)
    torch.testing.assert_close(out.shapley[0].double(), exact.values, rtol=0, atol=1e-6)
    # efficiency by construction: the values sum to the logits minus the bias
    torch.testing.assert_close(out.shapley.sum(1) + out.bias, out.logits, rtol=0, atol=1e-5)


def test_pair_terms_are_the_games_harsanyi_dividends_and_split_in_half(head):
    tokens = torch.randn(1, 6, 8, generator=torch.Generator().manual_seed(2))
    out = head(tokens)
    pair = out.pair[0]                                               # (N, N, K)
    torch.testing.assert_close(pair, pair.transpose(0, 1))
    assert pair.diagonal(dim1=0, dim2=1).abs().max() == 0
    with torch.no_grad():
        table = head_game(head, tokens)(coalition_masks(6)).double()
    torch.testing.assert_close(harsanyi_pairs(table), pair.double(), rtol=0, atol=1e-5)
    torch.testing.assert_close(out.shapley[0], out.unary[0] + pair.sum(1) / 2)


def test_every_weight_is_a_parameter_that_receives_gradients_and_trains(head):
    names = {n for n, _ in head.named_parameters()}
    assert {"unary_weight", "pair_weight", "pair_sign", "bias", "unary_proj.weight",
            "pair_proj.weight"} <= names
    before = {n: p.detach().clone() for n, p in head.named_parameters()}
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        tokens = torch.randn(16, 6, 8, generator=gen)
        loss = F.cross_entropy(head(tokens).logits, torch.randint(0, 3, (16,), generator=gen))
        opt.zero_grad()
        loss.backward()
        for n, p in head.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        opt.step()
    for n, p in head.named_parameters():
        assert not torch.equal(p, before[n]), f"{n} did not change in training"


def test_a_fresh_head_starts_at_its_bias_and_every_weight_leaves_zero_in_two_steps():
    """Zero-initialised terms: the logits start at the bias whatever the tokens (no random
    offsets that the model must first unlearn), and two SGD steps move every parameter (the
    detectors Q get their first gradient once the pair signs have left zero)."""
    with seeded(0):
        h = HarsanyiHead(HeadConfig(n_players=6, dim=8, n_classes=3, rank=2))
    gen = torch.Generator().manual_seed(4)
    out = h(torch.randn(5, 6, 8, generator=gen))
    assert out.unary.abs().max() == 0 and out.pair.abs().max() == 0
    torch.testing.assert_close(out.logits, h.bias.expand(5, -1))
    before = {n: p.detach().clone() for n, p in h.named_parameters()}
    opt = torch.optim.SGD(h.parameters(), lr=0.5)
    for _ in range(2):
        tokens = torch.randn(16, 6, 8, generator=gen)
        loss = F.cross_entropy(h(tokens).logits, torch.randint(0, 3, (16,), generator=gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(not torch.equal(p, before[n]) for n, p in h.named_parameters())
    assert h(tokens).pair.abs().max() > 0


def test_ablation_without_pairs_is_additive():
    with seeded(0):
        h = away_from_init(HarsanyiHead(HeadConfig(n_players=5, dim=4, n_classes=2,
                                                   pairwise=False)))
    out = h(torch.randn(3, 5, 4))
    assert out.pair is None and not hasattr(h, "pair_weight")
    torch.testing.assert_close(out.shapley, out.unary)
    torch.testing.assert_close(out.logits, out.bias + out.unary.sum(1))


def test_wrong_number_of_players_names_the_fix(head):
    with pytest.raises(ValueError, match="n_players=4"):
        head(torch.randn(1, 4, 8))


class Additive(torch.nn.Module):
    """A model that is exactly additive over players: removing one removes exactly its term."""

    n_players = 4

    def __init__(self):
        super().__init__()
        self.head = away_from_init(HarsanyiHead(HeadConfig(4, 1, 2, pairwise=False)))

    def explain(self, x):                              # x: (B, 4) one scalar token per player
        return self.head(x[..., None])

    def masked_logits(self, x, keep):
        return self.head(x[..., None], keep).logits


def test_consistency_loss_is_zero_for_an_exactly_additive_model():
    model = Additive()
    x = torch.randn(8, 4)
    keep = torch.rand(8, 4, generator=torch.Generator().manual_seed(0)) < 0.5
    assert consistency_loss(model, model.explain(x), x, keep).item() == pytest.approx(0, abs=1e-12)


def tiny_learned_vit(**kw):
    with seeded(0):
        return away_from_init(LearnedShapViT(create_vit(ViTConfig(dim=16, depth=1, heads=2)),
                                             rank=2, **kw))


def test_learned_vit_phi_is_exact_on_its_game_when_the_backbone_is_token_wise():
    # With no attention mixing (zero-depth), a patch's token does not depend on the others, so
    # dropping patches removes exactly their terms: phi must equal the masking game's values.
    with seeded(0):
        model = LearnedShapViT(create_vit(ViTConfig(dim=16, depth=0, heads=2)), rank=2).eval()
        away_from_init(model)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = model.explain(x)
        exact = exact_shapley(MaskingGame(model, x[0]), 16, interactions=False)
    torch.testing.assert_close(out.shapley[0].double(), exact.values, rtol=0, atol=1e-4)


def test_the_patch_local_vit_is_exact_on_its_game_with_attention_in_its_blocks():
    """Two transformer blocks, yet each patch token depends on its own patch only: dropping
    patches removes exactly their terms, so the head's phi are the exact Shapley values and its
    pairs the game's Harsanyi dividends; the attention ViT with the same weights is not exact."""
    from models.patch_vit import LearnedShapPatchViT

    with seeded(0):
        local = LearnedShapPatchViT(create_vit(ViTConfig(image_size=24, dim=16, depth=2, heads=2)), rank=2).eval()
        away_from_init(local)
    attention = LearnedShapViT(local.backbone, rank=2).eval()
    attention.head.load_state_dict(local.head.state_dict())
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        tokens = local.encode(local.embed(x))
        other = x.clone()
        other[:, :, :8, :8] = torch.rand(2, 3, 8, 8)                  # change patch 0 only
        changed = local.encode(local.embed(other))
        torch.testing.assert_close(changed[:, local.backbone.n_prefix + 1:],
                                   tokens[:, local.backbone.n_prefix + 1:])
        out = local.explain(x[:1])
        exact = exact_shapley(MaskingGame(local, x[0]), 9, interactions=False)
        torch.testing.assert_close(out.shapley[0].double(), exact.values, rtol=0, atol=1e-4)
        table = MaskingGame(local, x[0])(coalition_masks(9)).double()
        torch.testing.assert_close(harsanyi_pairs(table), out.pair[0].double(), rtol=0, atol=1e-4)
        mixed = exact_shapley(MaskingGame(attention, x[0]), 9, interactions=False).values
        assert (attention.explain(x[:1]).shapley[0].double() - mixed).abs().max() > 1e-3
    with pytest.raises(ValueError, match="one token at a time"):
        LearnedShapPatchViT(nn.Identity())


def test_learned_vit_is_a_vit_for_the_masking_game():
    model = tiny_learned_vit().eval()
    x = torch.rand(2, 3, 32, 32)
    keep = torch.rand(2, 16, generator=torch.Generator().manual_seed(5)) < 0.5
    game = MaskingGame(model, x[0])
    assert game.removal == "drop"
    torch.testing.assert_close(game(keep[:1]), model(x[:1], keep[:1]))
    assert model.explain(x).shapley.shape == (2, 16, 4)


def test_learned_shap_loss_trains_backbone_and_head_and_consistency_switch():
    gen = torch.Generator().manual_seed(6)
    batch = {"x": torch.rand(8, 3, 32, 32, generator=gen), "y": torch.randint(0, 4, (8,))}
    for weight in (0.0, 1.0):
        model = tiny_learned_vit()
        loss, logits = learned_shap_loss(consistency=weight)(model, batch, gen)
        ce = F.cross_entropy(logits, batch["y"])
        if weight == 0:
            torch.testing.assert_close(loss, ce)
        else:
            assert loss > ce
        loss.backward()
        assert model.head.pair_weight.grad.abs().sum() > 0
        assert model.backbone.backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_learned_r3d_masks_tubelets_with_its_baseline():
    with seeded(0):
        model = away_from_init(LearnedShapR3D(create_r3d(ResNet3DConfig(widths=(4, 8, 8))),
                                              rank=2).eval())
    x = torch.rand(2, 3, 8, 32, 32)
    out = model.explain(x)
    assert out.shapley.shape == (2, 8, 4)
    keep = torch.rand(2, 8, generator=torch.Generator().manual_seed(7)) < 0.5
    game = MaskingGame(model, x[1], removal="baseline", baseline="blur", tubelets=(2, 2, 2))
    torch.testing.assert_close(model.masked_logits(x, keep)[1:], game(keep[1:]))


def test_pair_detectors_are_non_negative_so_a_silent_player_has_no_pairs():
    # relu detectors: a token all of whose detector inputs are negative takes part in no pair
    with seeded(0):
        h = HarsanyiHead(HeadConfig(n_players=4, dim=3, n_classes=2, rank=2))
    with torch.no_grad():
        h.pair_proj.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]).repeat(4, 1))  # reads feature 0
        h.pair_sign.fill_(1.0)
    tokens = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [-1.0, -1.0, 5.0], [2.0, 1.0, 0.0]]])
    pair = h(tokens).pair[0]                                      # (N, N, K)
    normed = h.norm(tokens)[0]
    silent = normed[:, 0] <= 0                                    # players whose detectors are 0
    assert silent.any() and not silent.all()
    assert (pair[silent] == 0).all() and (pair[:, silent] == 0).all()
    assert (pair[~silent][:, ~silent].abs().sum() > 0)


@pytest.mark.slow
def test_consistency_training_brings_phi_towards_the_models_own_shapley_values():
    """The consistency loss is what makes phi the Shapley value of the model's masking game: the
    same short run on a depth-2 ViT (once trained, attention mixes the patches, so the game is
    not the head's decomposition by construction) with the loss switched off leaves phi far from
    exact. (Measured here: rel. L2 0.36 without, 0.04 with; an untrained ViT barely mixes its
    tokens, so both are small before training.)"""
    import data
    from models.train import train

    loader = data.get_loader("patch_game", "train", batch_size=64, n_train=2048, n_test=64,
                             image_size=24)
    test = data.get_dataset("patch_game", "test", n_train=2048, n_test=64, image_size=24)
    x = torch.stack([test[i]["x"] for i in range(8)])
    gaps = {}
    for weight in (0.0, 10.0):
        with seeded(0):
            model = LearnedShapViT(create_vit(ViTConfig(image_size=24, dim=32, depth=2,
                                                        heads=2)), rank=4)
        train(model, loader, epochs=8, seed=0, progress=False, log=lambda s: None,
              loss_fn=learned_shap_loss(weight, warmup_steps=8), device="cpu")
        errors = []
        with torch.no_grad():
            out = model.explain(x)
        for i in range(len(x)):
            k = int(out.logits[i].argmax())
            exact = exact_shapley(MaskingGame(model, x[i]), 9, interactions=False).values[:, k]
            errors.append(float((out.shapley[i, :, k].double() - exact).norm() / exact.norm()))
        gaps[weight] = sum(errors) / len(errors)
    assert gaps[10.0] < 0.3 * gaps[0.0], gaps


@pytest.mark.parametrize("pairwise", [True, False], ids=["pairs", "unary"])
@pytest.mark.parametrize("image_size, patch", [(32, 8), (24, 3)], ids=["16 players", "64 players"])
def test_every_vit_head_is_efficient_for_its_game(pairwise, image_size, patch):
    """sum phi = v(N) - v(empty) to 1e-5: with every patch dropped the head returns its bias."""
    with seeded(0):
        model = LearnedShapViT(create_vit(ViTConfig(image_size=image_size, patch_size=patch,
                                                    dim=16, depth=1, heads=2)),
                               rank=2, pairwise=pairwise).eval()
        away_from_init(model)
        with torch.no_grad():
            model.head.bias.normal_()
    x = torch.rand(3, 3, image_size, image_size, generator=torch.Generator().manual_seed(8))
    n = model.n_players
    with torch.no_grad():
        out = model.shapley_values(x)
    for i in range(3):
        ends = MaskingGame(model, x[i])(torch.stack([torch.zeros(n, dtype=torch.bool),
                                                     torch.ones(n, dtype=torch.bool)]))
        torch.testing.assert_close(out.shapley[i].sum(0), ends[1] - ends[0], rtol=0, atol=1e-5)
