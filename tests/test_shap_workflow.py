"""shap's blur-masked workflow, exact Owen values, and the 2D ResNet every image method runs on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from explainers import explain
from explainers.shap_blur import blurred_input, tubelet_masker
from models.resnet_2d import ResNet2DConfig, create_resnet2d
from models.resnet_3d import ResNet3DConfig, create_r3d
from models.train import seeded
from models.vit import ViTConfig, create_vit
from shapley.exact import exact_shapley
from shapley.game import MaskingGame, patch_feature_mask, tubelet_feature_mask
from shapley.owen import groups_in_tree, halving_tree, owen_values, tree_nodes

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one thread is faster


def table_game(values: dict[frozenset, float], n: int):
    """A game given by its Harsanyi dividends {coalition: dividend}: v(S) = sum over T in S."""

    def game(coalitions: Tensor) -> Tensor:
        out = torch.zeros(len(coalitions), 1, dtype=torch.float64)
        for T, d in values.items():
            out[:, 0] += d * coalitions[:, sorted(T)].all(1).double()
        return out

    return game


# --- exact Owen values ------------------------------------------------------------------------
def test_owen_splits_an_interaction_by_the_tree_where_shapley_splits_it_evenly():
    tree = halving_tree((4,))                      # {0, 1} | {2, 3}
    game = table_game({frozenset({0, 1, 2}): 1.0}, 4)
    owen, _ = owen_values(game, tree, 4)
    torch.testing.assert_close(owen[:, 0], torch.tensor([0.25, 0.25, 0.5, 0.0],
                                                        dtype=torch.float64))
    shapley = exact_shapley(game, 4, interactions=False).values[:, 0]
    torch.testing.assert_close(shapley, torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0],
                                                     dtype=torch.float64))


def test_owen_equals_shapley_without_interactions_across_unions():
    dividends = {frozenset({i}): float(i + 1) for i in range(8)}
    dividends[frozenset({0, 1})] = 2.0             # a pair inside one union of the tree
    dividends[frozenset({4, 5, 6, 7})] = -1.0      # a whole half
    game = table_game(dividends, 8)
    owen, n_evals = owen_values(game, halving_tree((2, 4)), 8)
    torch.testing.assert_close(owen, exact_shapley(game, 8, interactions=False).values)
    assert n_evals < 2 ** 8


def test_owen_is_efficient_on_a_random_game():
    g = torch.Generator().manual_seed(0)
    dividends = {frozenset(torch.randperm(9, generator=g)[:k].tolist()): float(torch.randn(1, generator=g))
                 for k in (1, 2, 3, 4, 5) for _ in range(3)}
    game = table_game(dividends, 9)
    owen, _ = owen_values(game, halving_tree((3, 3)), 9)
    full = game(torch.ones(1, 9, dtype=torch.bool)) - game(torch.zeros(1, 9, dtype=torch.bool))
    torch.testing.assert_close(owen.sum(0), full[0])


def test_a_tree_that_misses_players_is_refused():
    with pytest.raises(ValueError, match="linkage matrix"):
        owen_values(table_game({}, 4), np.zeros((2, 4)), 4)
    with pytest.raises(ValueError, match="exactly once"):
        owen_values(table_game({}, 4), np.array([[0, 1, 2, 2], [0, 2, 2, 2], [4, 5, 4, 4]]), 4)


# --- shap's Partition explainer computes Owen values ------------------------------------------
def test_shap_partition_with_every_evaluation_is_the_exact_owen_value():
    """At a budget that reaches every pixel, shap's Partition values are the Owen values over the
    tree of its image masker (checked on a 4 x 4 one-channel image and an interacting model)."""
    import shap

    rng = np.random.default_rng(0)
    w = rng.normal(size=16)

    def f(X):
        X = np.asarray(X).reshape(len(X), 16)
        return (X @ w + 3 * X[:, 0] * X[:, 5] + 2 * X[:, 3] * X[:, 12] * X[:, 15])[:, None]

    x = rng.uniform(size=(4, 4, 1))
    masker = shap.maskers.Image(np.zeros((4, 4, 1)), (4, 4, 1))
    got = shap.Explainer(f, masker, algorithm="partition")(x[None], max_evals=10_000,
                                                           silent=True).values[0].reshape(16)

    def game(c: Tensor) -> Tensor:
        return torch.from_numpy(f(c.numpy() * x.reshape(1, 16)))

    owen, _ = owen_values(game, masker.clustering, 16)
    np.testing.assert_allclose(got, owen[:, 0].numpy(), atol=1e-12)
    shapley = exact_shapley(game, 16, interactions=False).values[:, 0].numpy()
    assert np.abs(got - shapley).max() > 1e-3      # ... which are not the Shapley values here
    assert set(tree_nodes(masker.clustering, 16)) == set(tree_nodes(halving_tree((4, 4)), 16))


def test_shap_tree_holds_our_patches_when_sides_halve_down_to_them():
    import shap

    def patches_in_tree(side: int, patch: int) -> int:
        masker = shap.maskers.Image("blur(3,3)", (side, side, 3))
        ids = patch_feature_mask(side, side, patch).flatten()                 # (H W,)
        pixels = [np.flatnonzero(np.repeat((ids == p).numpy(), 3)) for p in range(int(ids.max()) + 1)]
        return groups_in_tree(masker.clustering, side * side * 3, pixels)

    assert patches_in_tree(32, 8) == 16           # 32 -> 16 -> 8: every patch is a node
    assert patches_in_tree(24, 8) < 9             # 24 -> 12 -> 6: the halvings cut the patches


# --- the explainers -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vit() -> nn.Module:
    with seeded(0):
        return create_vit(ViTConfig(image_size=16, patch_size=8, dim=16, depth=2, heads=2)).eval()


@pytest.fixture(scope="module")
def images() -> Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_shap_partition_top_k_are_shaps_classes_with_the_target_first(vit, images):
    a = explain("shap_partition", vit, images, max_evals=64, top_k=3)
    with torch.no_grad():
        probs = vit(images).softmax(-1)
    top = a.extras["top_k"]
    assert torch.equal(top["classes"], probs.argsort(-1, descending=True)[:, :3])
    torch.testing.assert_close(top["probabilities"], probs.gather(1, top["classes"]))
    torch.testing.assert_close(top["values"][:, 0], a.values)
    assert top["pixel_maps"].shape == (2, 3, 16, 16)
    other = explain("shap_partition", vit, images, target=2, max_evals=64, top_k=2)
    assert (other.extras["top_k"]["classes"][:, 0] == 2).all()


@pytest.mark.parametrize("method, budget", [("shap_partition", 64), ("shap_permutation", 1600)])
def test_shap_values_are_efficient_for_the_blur_game(method, budget, vit, images):
    """Owen values, like Shapley values, add up to p(x) - p(blurred x) of the class explained."""
    a = explain(method, vit, images, max_evals=budget, blur=4)
    with torch.no_grad():
        blurred = torch.stack([blurred_input(x, 4) for x in images])
        gap = vit(images).softmax(-1) - vit(blurred).softmax(-1)
    torch.testing.assert_close(a.values.sum(1), gap.gather(1, a.target[:, None])[:, 0],
                               atol=1e-5, rtol=1e-4)


def test_shap_permutation_below_one_permutation_names_the_minimum(vit, images):
    with pytest.raises(ValueError, match=r"needs here: 1537 .*raise max_evals or use shap_partition"):
        explain("shap_permutation", vit, images, max_evals=1000)


def test_tubelet_masker_runs_the_same_call_on_clips_and_gives_owen_values():
    with seeded(0):
        r3d = create_r3d(ResNet3DConfig(widths=(4, 8), blocks=(1, 1),
                                        strides=((1, 2, 2), (2, 2, 2)))).eval()
    clip = torch.rand(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    a = explain("shap_partition", r3d, clip, tubelets=(2, 2, 2), max_evals=10_000, blur=3)
    assert a.values.shape == (1, 8) and a.pixel_map.shape == (1, 4, 16, 16)
    baseline = blurred_input(clip[0], 3)
    game = MaskingGame(r3d, clip[0], removal="baseline", baseline=baseline, output="prob",
                       feature_mask=tubelet_feature_mask(4, 16, 16, grid=(2, 2, 2)))
    owen, _ = owen_values(game, halving_tree((2, 2, 2)), 8)
    torch.testing.assert_close(a.values[0].double(), owen[:, int(a.target[0])], atol=1e-5,
                               rtol=1e-4)
    masker = tubelet_masker(0.5, (2, 2, 2), (4, 16, 16, 3))
    (out,) = masker(np.zeros(8, bool), clip[0].movedim(0, -1).numpy())
    assert np.all(out == 0.5)                      # a number replaces the removed tubelets
    p = explain("shap_permutation", r3d, clip, tubelets=(2, 2, 2), max_evals=340, blur=3)
    torch.testing.assert_close(p.values.sum(), a.values.sum(), atol=1e-5, rtol=1e-4)


# --- the 2D ResNet ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    with seeded(0):
        return create_resnet2d(ResNet2DConfig(image_size=16, patch_size=8, widths=(4, 8),
                                              blocks=(2, 2))).eval()


RESNET_METHODS = {"gradient_shap": {"n_samples": 8}, "captum_gradient_shap": {"n_samples": 8},
                  "integrated_gradients": {"n_steps": 8}, "saliency": {},
                  "smoothgrad": {"n_samples": 8}, "deeplift_shap": {}, "gradcam_pp": {},
                  "exact": {}, "permutation": {"budget": 64}, "kernel": {"budget": 64},
                  "hierarchical_shapley": {}, "shap_partition": {"max_evals": 64},
                  "shap_permutation": {"max_evals": 1600}}


@pytest.mark.parametrize("method", sorted(RESNET_METHODS))
def test_every_image_method_runs_on_the_2d_resnet_with_patch_players(method, resnet, images):
    a = explain(method, resnet, images, **RESNET_METHODS[method])
    assert a.values.shape == (2, 4) and a.pixel_map.shape == (2, 16, 16)
    assert torch.isfinite(a.values).all() and a.cost.evals > 0


def test_deeplift_shap_is_complete_on_the_2d_resnet(resnet, images):
    """DeepLift's rescale rule on a ReLU network: attributions sum to f(x) - mean f(reference)."""
    a = explain("deeplift_shap", resnet, images, background="zeros")
    with torch.no_grad():
        gap = resnet(images) - resnet(torch.zeros_like(images))
    torch.testing.assert_close(a.values.sum(1), gap.gather(1, a.target[:, None])[:, 0],
                               atol=1e-4, rtol=1e-3)


def test_resnet_patch_players_are_the_exact_game_of_its_patches(resnet, images):
    a = explain("exact", resnet, images[:1])
    game = MaskingGame(resnet, images[0], removal="baseline", baseline="blur",
                       feature_mask=patch_feature_mask(16, 16, 8))
    torch.testing.assert_close(a.values[0].double(),
                               exact_shapley(game, 4).values[:, int(a.target[0])].double(),
                               atol=1e-5, rtol=1e-4)


def test_resnet_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        create_resnet2d(ResNet2DConfig(image_size=20, patch_size=8))
    with pytest.raises(ValueError, match="pretrained=True needs"):
        create_resnet2d(ResNet2DConfig(), pretrained=True)
    resnet = create_resnet2d(ResNet2DConfig(image_size=16, patch_size=8, widths=(4,), blocks=(1,)))
    with pytest.raises(ValueError, match="8 px patches, but the images are 12x12"):
        explain("saliency", resnet, torch.rand(1, 3, 12, 12))


def test_torchvision_resnet18_without_cached_weights_says_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch.hub

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="never downloads at run time"):
        create_resnet2d("resnet18", pretrained=True)
    net = create_resnet2d("resnet18", n_classes=3)
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 3) and net.patch_players == 16
