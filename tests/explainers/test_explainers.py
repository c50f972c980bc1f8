"""explainers: shapes, known answers, Shapley-core agreement, reproducibility, clear errors (no side
effects: test_explainer_side_effects.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from explainers import EXPLAINERS, Result, explain, register
from explainers.gradient_shap import path_integral
from models.harsanyi import LearnedShapR3D, LearnedShapViT
from models.resnet_3d import ResNet3DConfig, create_r3d
from models.train import seeded
from models.vit import ViTConfig, create_vit
from shapley.exact import exact_shapley
from shapley.game import MaskingGame, patch_feature_mask, tubelet_feature_mask
from tests.conftest import away_from_init
from tests.explainers.cases import FAST, TUBELETS, VIDEO_METHODS, VIT_METHODS, Linear, run


# --- shapes -----------------------------------------------------------------------------------
def test_registry_lists_every_method():
    assert set(VIT_METHODS) | set(VIDEO_METHODS) <= set(EXPLAINERS)


@pytest.mark.parametrize("method", VIT_METHODS)
def test_vit_shapes(method, vit, images):
    att = run(method, vit, images)
    assert att.values.shape == (2, 4) and att.pixel_map.shape == (2, 16, 16)
    assert att.target.shape == (2,) and att.method == method
    assert torch.isfinite(att.values).all() and torch.isfinite(att.pixel_map).all()
    assert att.cost.forwards > 0 and att.cost.seconds > 0
    if method == "exact":
        assert att.extras["pairs"].shape == (2, 4, 4)
        assert att.extras["pairs_harsanyi"].shape == (2, 4, 4)


@pytest.mark.parametrize("method", VIDEO_METHODS)
def test_video_shapes(method, r3d, clips):
    att = run(method, r3d, clips)
    assert att.values.shape == (2, 8) and att.pixel_map.shape == (2, 4, 16, 16)
    assert torch.isfinite(att.values).all() and torch.isfinite(att.pixel_map).all()


def test_default_tubelets_are_8_cells(r3d):
    clip = torch.rand(3, 8, 16, 16)
    att = explain("integrated_gradients", r3d, clip, n_steps=4)
    assert att.values.shape == (1, 8) and att.pixel_map.shape == (1, 8, 16, 16)


def test_single_input_is_a_batch_of_one(vit, images):
    one = explain("integrated_gradients", vit, images[1], target=2, n_steps=8)
    batch = explain("integrated_gradients", vit, images, target=2, n_steps=8)
    assert one.values.shape == (1, 4)
    torch.testing.assert_close(one.values[0], batch.values[1], rtol=1e-4, atol=1e-5)


def test_target_none_is_the_prediction(vit, images):
    att = explain("attention", vit, images)
    assert torch.equal(att.target, vit(images).argmax(1))


def test_gradient_values_sum_pixels_per_player(vit, images):
    att = explain("integrated_gradients", vit, images, target=0, n_steps=8)
    mask = patch_feature_mask(16, 16, 8)
    expected = torch.stack([att.pixel_map[:, mask == i].sum(1) for i in range(4)], 1)
    torch.testing.assert_close(att.values, expected)


def test_shapley_pixel_map_paints_values(vit, images):
    att = explain("exact", vit, images, target=1)
    torch.testing.assert_close(att.pixel_map, att.values[:, patch_feature_mask(16, 16, 8)])


# --- known answers ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["integrated_gradients", "gradient_shap",
                                    "captum_gradient_shap", "deeplift_shap", "exact",
                                    "permutation", "kernel"])
@pytest.mark.parametrize("shape", [(3, 8, 8), (3, 4, 8, 8)], ids=["image", "video"])
def test_linear_model_gives_w_times_x_minus_baseline(method, shape):
    """On f = w.x + b every method's player value is sum over its pixels of w (x - baseline)."""
    torch.manual_seed(0)
    model = Linear(shape)
    x = torch.rand(2, *shape)
    baseline = torch.rand(*shape)
    mask = (patch_feature_mask(8, 8, 4) if len(shape) == 3
            else tubelet_feature_mask(4, 8, 8, (2, 2, 2)))
    target = torch.tensor([2, 0])
    options = {"integrated_gradients": {"baseline": baseline, "n_steps": 8},
               "exact": {"baseline": baseline}, "permutation": {"baseline": baseline},
               "kernel": {"baseline": baseline, "budget": 512},
               }.get(method, {"background": baseline[None], "n_samples": 8})
    if method == "deeplift_shap":
        options = {"background": baseline[None]}
    att = explain(method, model, x, target, feature_mask=mask, **options)
    w = model.weight.detach()[target].view(2, *shape)                     # (B, C, *S)
    pixels = (w * (x - baseline)).sum(1)                                   # (B, *S)
    expected = torch.stack([pixels[:, mask == i].sum(1) for i in range(int(mask.max()) + 1)], 1)
    torch.testing.assert_close(att.values, expected, rtol=1e-4, atol=1e-4)
    # efficiency: the values add up to f(x) - f(baseline)
    gap = model(x)[[0, 1], target] - model(baseline[None])[0, target]
    torch.testing.assert_close(att.values.sum(1), gap.detach(), rtol=1e-4, atol=1e-4)


def test_gradient_shap_converges_to_its_path_integral_which_closes_the_gap():
    """On a smooth nonlinear model the straight-path integral gives f(x) - mean f(x') (the
    gradient theorem), and GradientSHAP's sum approaches it as its samples grow: its gap is
    Monte-Carlo noise, not a bias. Its mean over seeds shrinks with four times the samples."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.Tanh(), nn.Linear(16, 3))
    x, references = torch.rand(2, 3, 4, 4), torch.rand(5, 3, 4, 4)
    target = torch.tensor([0, 2])
    with torch.no_grad():
        truth = model(x)[[0, 1], target] - model(references)[:, target].mean(0)         # (B,)
    torch.testing.assert_close(path_integral(model, x, target, references), truth,
                               rtol=1e-4, atol=1e-5)

    def mean_gap(n):
        sums = [explain("gradient_shap", model, x, target, seed=s, n_samples=n,
                        background=references, feature_mask=patch_feature_mask(4, 4, 2)
                        ).values.sum(1) for s in range(6)]
        return torch.stack([(s - truth).abs() for s in sums]).mean()

    assert mean_gap(256) < mean_gap(16)


@pytest.mark.parametrize("method", ["saliency", "smoothgrad"])
@pytest.mark.parametrize("absolute", [True, False])
def test_gradient_maps_of_a_linear_model_are_its_weights(method, absolute):
    """f = w.x + b has the gradient w everywhere, so saliency and SmoothGrad (whatever the noise)
    give |w| (or w) per pixel, summed over channels and over each player's pixels."""
    torch.manual_seed(0)
    model = Linear((3, 8, 8))
    x = torch.rand(2, 3, 8, 8)
    target = torch.tensor([1, 2])
    mask = patch_feature_mask(8, 8, 4)
    att = explain(method, model, x, target, feature_mask=mask, absolute=absolute,
                  **({"n_samples": 4} if method == "smoothgrad" else {}))
    w = model.weight.detach()[target].view(2, 3, 8, 8)
    pixels = (w.abs() if absolute else w).sum(1)                           # (B, H, W)
    torch.testing.assert_close(att.pixel_map, pixels, rtol=1e-5, atol=1e-6)
    expected = torch.stack([pixels[:, mask == i].sum(1) for i in range(4)], 1)
    torch.testing.assert_close(att.values, expected, rtol=1e-5, atol=1e-5)


def test_smoothgrad_rejects_a_noise_level_that_is_not_positive(vit, images):
    with pytest.raises(ValueError, match="positive standard deviation"):
        explain("smoothgrad", vit, images, noise=0.0)


def test_exact_is_the_shapley_core(vit, images):
    target = torch.tensor([3, 1])
    att = explain("exact", vit, images, target)
    for i in range(2):
        core = exact_shapley(MaskingGame(vit, images[i]), 4)
        torch.testing.assert_close(att.values[i], core.values[:, target[i]].float())
        torch.testing.assert_close(att.extras["pairs"][i], core.pairs_sii[:, :, target[i]].float())
    assert att.cost.forwards == 2 * 2**4                     # token dropping: 2^N rows per input


def test_exact_on_video_is_the_shapley_core(r3d, clips):
    att = explain("exact", r3d, clips, 0, tubelets=TUBELETS, baseline="zeros")
    game = MaskingGame(r3d, clips[1], baseline="zeros", tubelets=TUBELETS)
    torch.testing.assert_close(att.values[1], exact_shapley(game, 8).values[:, 0].float())


def test_permutation_with_a_big_budget_approaches_exact(vit9):
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    exact = explain("exact", vit9, x, 0).values
    errors = [(explain("permutation", vit9, x, 0, budget=b).values - exact).norm()
              for b in (64, 2048)]
    assert errors[1] < errors[0]
    assert errors[1] < 0.1 * exact.norm()


def test_deeplift_shap_is_complete_on_the_3d_resnet(r3d, clips):
    """DeepLift's attributions add up to f(x) - mean f(reference): the reused ReLUs are split."""
    refs = torch.stack([torch.zeros_like(clips[0]), torch.full_like(clips[0], 0.5)])
    att = explain("deeplift_shap", r3d, clips, 1, tubelets=TUBELETS, background=refs)
    with torch.no_grad():
        gap = r3d(clips)[:, 1] - r3d(refs)[:, 1].mean()
    torch.testing.assert_close(att.values.sum(1), gap, rtol=1e-3, atol=1e-4)


def test_attention_reads_the_tokens_the_head_reads(learned_vit, images):
    """A LearnedSHAP head reads the patch tokens: attention is their mean row, not the class
    token's (which no logit depends on); asking for the class token still works."""
    probs = []
    drop = learned_vit.backbone.backbone.blocks[-1].attn.attn_drop
    handle = drop.register_forward_hook(lambda m, i, o: probs.append(i[0]))
    try:
        with torch.no_grad():
            learned_vit(images)
    finally:
        handle.remove()
    heads = probs[0].mean(1)                                              # (B, L, L)
    att = explain("attention", learned_vit, images)
    assert att.extras["queries"] == "patch_tokens"
    torch.testing.assert_close(att.values, heads[:, 1:, 1:].mean(1))
    cls = explain("attention", learned_vit, images, queries="class_token")
    torch.testing.assert_close(cls.values, heads[:, 0, 1:])
    rollout = explain("attention_rollout", learned_vit, images)
    assert rollout.extras["queries"] == "patch_tokens"


def test_gradcam_pp_uses_a_layer_that_reaches_the_logits(learned_vit, vit, images):
    """GradCAM++ reads the tokens the head reads: a LearnedSHAP head reads the final norm's patch
    tokens; a class-token ViT reads only the class token after the last block, so there its patch
    tokens have no gradient and the last block's input is used instead."""
    from explainers.core import find_timm_vit

    inner = find_timm_vit(learned_vit)
    default = explain("gradcam_pp", learned_vit, images, 1).pixel_map
    at_norm = explain("gradcam_pp", learned_vit, images, 1, target_layer=inner.norm).pixel_map
    at_block = explain("gradcam_pp", learned_vit, images, 1,
                       target_layer=inner.blocks[-1].norm1).pixel_map
    torch.testing.assert_close(default, at_norm)
    assert not torch.allclose(default, at_block)

    plain = find_timm_vit(vit)
    grads = []
    handle = plain.norm.register_full_backward_hook(lambda m, gi, go: grads.append(go[0]))
    try:
        x = images.clone().requires_grad_()
        vit(x)[:, 1].sum().backward()
    finally:
        handle.remove()
    assert grads[0][:, 1:].abs().sum() == 0                    # patch tokens: no gradient
    torch.testing.assert_close(
        explain("gradcam_pp", vit, images, 1).pixel_map,
        explain("gradcam_pp", vit, images, 1, target_layer=plain.blocks[-1].norm1).pixel_map)


def test_attention_is_the_class_token_row_of_the_last_block(vit, images):
    probs = []
    drop = vit.backbone.blocks[-1].attn.attn_drop   # sees the probabilities on the plain path
    handle = drop.register_forward_hook(lambda m, i, o: probs.append(i[0]))
    try:
        with torch.no_grad():
            vit(images)
    finally:
        handle.remove()
    expected = probs[0].mean(1)[:, 0, 1:]                                  # (B, N)
    torch.testing.assert_close(explain("attention", vit, images).values, expected)
    fused = copy.deepcopy(vit)
    for block in fused.backbone.blocks:
        block.attn.fused_attn = True
    torch.testing.assert_close(explain("attention", fused, images).values, expected)


def test_rollout_of_one_block_without_residual_is_attention(images):
    with seeded(0):
        one = create_vit(ViTConfig(image_size=16, patch_size=8, dim=16, depth=1, heads=2))
    torch.testing.assert_close(explain("attention_rollout", one, images, residual=0.0).values,
                               explain("attention", one, images).values)


def test_gradcam_pp_maps_are_scaled_to_unit_range(vit, r3d, images, clips):
    for model, x in [(vit, images), (r3d, clips)]:
        m = run("gradcam_pp", model, x).pixel_map
        assert m.min() >= -0.05 and m.max() <= 1.05      # scipy's cubic zoom may overshoot a bit


def test_cost_counts_rows(vit, images):
    att = explain("integrated_gradients", vit, images, target=0, n_steps=8)
    assert (att.cost.forwards, att.cost.backwards) == (16, 16)
    att = explain("attention", vit, images)
    assert (att.cost.forwards, att.cost.backwards) == (4, 0)   # prediction + one pass
    assert att.cost.evals == 4


def test_cost_counts_passes_that_bypass_forward(vit, images, monkeypatch):
    """Rows are counted where every evaluation passes (the ViT's final norm), so a token-dropping
    game and a second backbone pass inside an explainer are both seen."""
    att = explain("exact", vit, images, 0)
    assert att.cost.forwards == 2 * 2**4                       # 2^N coalitions per input
    with seeded(0):
        model = away_from_init(LearnedShapViT(create_vit(ViTConfig(
            image_size=16, patch_size=8, dim=16, depth=1, heads=2)), rank=2).eval())
    assert explain("learned_shap", model, images, 0).cost.evals == 2     # one row per image
    once = LearnedShapViT.shapley_values

    def twice(self, x):
        self.backbone.forward_features(x)                      # a wasted backbone pass
        return once(self, x)

    monkeypatch.setattr(LearnedShapViT, "shapley_values", twice)
    assert explain("learned_shap", model, images, 0).cost.evals == 4


# --- reproducibility --------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["gradient_shap", "captum_gradient_shap", "permutation",
                                    "kernel"])
def test_same_seed_same_attributions(method, vit9):
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    options = {**FAST.get(method, {}), "budget": 32} if method in ("permutation", "kernel") else {}
    a = run(method, vit9, x, target=1, seed=7, **options)
    b = run(method, vit9, x, target=1, seed=7, **options)
    c = run(method, vit9, x, target=1, seed=8, **options)
    assert torch.equal(a.values, b.values) and torch.equal(a.pixel_map, b.pixel_map)
    assert not torch.equal(a.values, c.values)


def test_an_input_does_not_depend_on_its_batch(vit, images):
    batch = run("gradient_shap", vit, images, target=1)
    alone = run("gradient_shap", vit, images[1:], target=1)
    torch.testing.assert_close(batch.values[1], alone.values[0], rtol=1e-4, atol=1e-6)


# --- errors -----------------------------------------------------------------------------------
def test_unknown_method_lists_the_valid_ones(vit, images):
    with pytest.raises(ValueError, match="unknown method 'shapley'.*gradient_shap"):
        explain("shapley", vit, images)


def test_unknown_option_lists_the_accepted_ones(vit, images):
    with pytest.raises(TypeError, match="n_sample.*n_steps"):
        explain("integrated_gradients", vit, images, n_sample=3)


@pytest.mark.parametrize("bad, match", [
    (torch.rand(3, 16), "expects images"),
    (torch.rand(1, 2, 3, 16, 16), "expects images"),
    (torch.rand(0, 3, 16, 16), "empty batch"),
    (torch.full((1, 3, 16, 16), float("nan")), "NaN or infinite"),
    (torch.full((1, 3, 16, 16), float("inf")), "NaN or infinite"),
    (torch.rand(1, 3, 12, 12), "patch size 8 needs a multiple of 8"),
    (torch.rand(1, 3, 24, 24), "expects 16x16"),
])
def test_bad_images(bad, match, vit):
    with pytest.raises(ValueError, match=match):
        explain("attention", vit, bad)


def test_bad_clips(r3d):
    with pytest.raises(ValueError, match="expects clips"):
        explain("gradcam_pp", r3d, torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="tubelet grid"):
        explain("gradcam_pp", r3d, torch.rand(1, 3, 5, 16, 16))


@pytest.mark.parametrize("target, error, match", [
    (4, ValueError, "target 4 is out of range.*4 classes"),
    (-1, ValueError, "out of range"),
    (torch.tensor([0, 1, 2]), ValueError, "one class per input"),
    (torch.tensor([0.5, 1.0]), TypeError, "integer class"),
    (np.float32(1.0), TypeError, "must be an int"),
    ("2", TypeError, "must be an int"),
])
def test_bad_targets(target, error, match, vit, images):
    with pytest.raises(error, match=match):
        explain("attention", vit, images, target)


@pytest.mark.parametrize("target", [np.int64(2), np.array([2, 2]), [2, 2]],
                         ids=["numpy int", "numpy array", "list"])
def test_numpy_and_list_targets_are_accepted(target, vit, images):
    att = explain("attention", vit, images, target)
    assert att.target.tolist() == [2, 2]


@pytest.mark.parametrize("x", [torch.rand(1, 3, 16, 16) * 255, torch.rand(1, 3, 16, 16) - 0.5],
                         ids=["0..255", "normalised"])
def test_inputs_outside_the_unit_range_name_the_fix(x, vit):
    with pytest.raises(ValueError, match=r"explainers take inputs in \[0, 1\].*x / 255"):
        explain("attention", vit, x)


@pytest.mark.parametrize("method, option", [
    ("gradient_shap", {"n_samples": 0}), ("captum_gradient_shap", {"n_samples": -1}),
    ("integrated_gradients", {"n_steps": 0}), ("gradient_shap", {"batch_size": 0})])
def test_sample_counts_below_one_are_refused(method, option, vit, images):
    name = next(iter(option))
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1"):
        explain(method, vit, images, 0, **option)


def test_tubelets_that_would_be_ignored_are_refused(vit, images, r3d, clips):
    with pytest.raises(ValueError, match="tubelets=.*would be ignored.*2-D"):
        explain("attention", vit, images, tubelets=(2, 2, 2))
    mask = tubelet_feature_mask(4, 16, 16, (1, 2, 2))
    with pytest.raises(ValueError, match="would be ignored: a feature_mask already names"):
        explain("integrated_gradients", r3d, clips, 0, feature_mask=mask, tubelets=(2, 2, 2),
                n_steps=2)


def test_bad_feature_masks(vit, images):
    with pytest.raises(ValueError, match="attention scores the ViT's own patches"):
        explain("attention", vit, images, feature_mask=torch.zeros(16, 16).long())
    model = Linear((3, 16, 16))
    with pytest.raises(ValueError, match="no patch grid: pass feature_mask"):
        explain("integrated_gradients", model, images)
    with pytest.raises(ValueError, match="feature_mask has shape"):
        explain("integrated_gradients", model, images, feature_mask=torch.zeros(8, 8).long())
    with pytest.raises(ValueError, match="0..N-1"):
        explain("integrated_gradients", model, images, feature_mask=torch.ones(16, 16).long())


@pytest.mark.parametrize("method, kind, match", [
    ("attention", "r3d", "attention cannot explain ResNet3D"),
    ("attention_rollout", "r3d", "attention_rollout cannot explain ResNet3D"),
    ("deeplift_shap", "vit", "deeplift_shap cannot explain ViT: captum's DeepLift has no rules "
                             "for GELU/LayerNorm/attention; use gradient_shap or exact"),
    ("gradcam_pp", "linear", "gradcam_pp cannot explain Linear"),
])
def test_methods_name_the_models_they_cannot_explain(method, kind, match, vit, r3d, images,
                                                     clips):
    model, x, kw = {"vit": (vit, images, {}), "r3d": (r3d, clips, {"tubelets": TUBELETS}),
                    "linear": (Linear((3, 16, 16)), images,
                               {"feature_mask": patch_feature_mask(16, 16, 8)})}[kind]
    with pytest.raises(ValueError, match=match):
        explain(method, model, x, **kw)


# --- the registry -----------------------------------------------------------------------------
def test_a_method_registered_later_works(vit, images):
    @register("uniform_test_method")
    def uniform(model, x, target, players, *, seed, level: float = 1.0):
        return Result(values=torch.full((len(x), players.n), level))

    try:
        att = explain("uniform_test_method", vit, images, level=2.0)
        assert torch.equal(att.values, torch.full((2, 4), 2.0))
        assert torch.equal(att.pixel_map, torch.full((2, 16, 16), 2.0))
    finally:
        EXPLAINERS.pop("uniform_test_method")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["gradient_shap", "integrated_gradients", "exact",
                                    "attention", "gradcam_pp"])
def test_cuda_matches_cpu(method, vit, images):
    cpu = run(method, vit, images, target=0)
    gpu = run(method, copy.deepcopy(vit).cuda(), images.cuda(), target=0)
    assert gpu.values.device.type == "cuda"
    torch.testing.assert_close(gpu.values.cpu(), cpu.values, rtol=1e-3, atol=1e-3)


def test_deeplift_shap_groups_references_without_changing_the_answer(r3d, clips):
    refs = torch.rand(5, 3, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    whole = explain("deeplift_shap", r3d, clips[:1], 0, tubelets=TUBELETS, background=refs)
    grouped = explain("deeplift_shap", r3d, clips[:1], 0, tubelets=TUBELETS, background=refs,
                      batch_size=4)                   # groups of 2, 2 and 1 references
    torch.testing.assert_close(grouped.values, whole.values, rtol=1e-4, atol=1e-5)


def test_hierarchical_shapley_explains_through_the_verb(vit9):
    """Nine patches (3 x 3): quadrants of 1, 2, 2 and 4 patches, fewer rows than 2^9."""
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(5))
    att = explain("hierarchical_shapley", vit9, x, target=1)
    flat = explain("exact", vit9, x, target=1)
    torch.testing.assert_close(att.values.sum(1), flat.values.sum(1), rtol=1e-4, atol=1e-5)
    assert att.cost.forwards == sum(att.extras["coalitions"]) < flat.cost.forwards
    coarse = explain("hierarchical_shapley", vit9, x, target=1, tolerance=float("inf"))
    assert coarse.extras["coalitions"] == [16, 16]
    with pytest.raises(ValueError, match="grid of players"):
        explain("hierarchical_shapley", vit9, x, feature_mask=torch.arange(144).view(12, 12) % 4)


def test_learned_shap_values_are_the_heads_decomposition(learned_vit, images):
    att = explain("learned_shap", learned_vit, images, torch.tensor([1, 3]))
    with torch.no_grad():
        out = learned_vit.explain(images)
    torch.testing.assert_close(att.values, out.shapley[[0, 1], :, [1, 3]])
    torch.testing.assert_close(att.extras["pairs"], out.pair[[0, 1], :, :, [1, 3]])
    # efficient for its game: with every patch dropped the head returns its bias
    game = MaskingGame(learned_vit, images[0])
    ends = game(torch.tensor([[False] * 4, [True] * 4]))
    torch.testing.assert_close(att.values[0].sum(), ends[1, 1] - ends[0, 1], rtol=0, atol=1e-5)


def test_learned_shap_on_video_is_efficient_for_the_blur_game(clips):
    """The empty clip is the blur, whose output is not the head's bias: one more forward row
    gives v(empty), and phi sums to v(N) - v(empty)."""
    with seeded(0):
        model = LearnedShapR3D(create_r3d(ResNet3DConfig(widths=(4, 8), blocks=(1, 1),
                                                         strides=((1, 2, 2), (2, 2, 2)))),
                               tubelets=TUBELETS, rank=2).eval()
        away_from_init(model)
    att = explain("learned_shap", model, clips, 2)
    assert att.cost.evals == 2 * len(clips)                    # the clip and its blur
    with torch.no_grad():
        head = model.explain(clips)
    for i in range(2):
        game = MaskingGame(model, clips[i], baseline="blur", tubelets=TUBELETS)
        ends = game(torch.tensor([[False] * 8, [True] * 8]))
        torch.testing.assert_close(att.values[i].sum(), ends[1, 2] - ends[0, 2], rtol=0,
                                   atol=1e-5)
        shift = (head.bias[2] - ends[0, 2]) / 8                 # the gap, shared equally
        torch.testing.assert_close(att.values[i], head.shapley[i, :, 2] + shift, rtol=0,
                                   atol=1e-5)
