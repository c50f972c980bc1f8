"""explainers leave no trace: hooks released, weights, modes and random states as they were,
after a success or an error, for every method and for the model-specific ones."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from explainers import EXPLAINERS, explain
from explainers.core import HOOK_DICTS
from models.train import seeded
from tests.explainers.cases import VIDEO_METHODS, VIT_METHODS, run


def hook_counts(model: nn.Module) -> list:
    return [(name, [tuple(getattr(m, d)) for d in HOOK_DICTS if hasattr(m, d)])
            for name, m in model.named_modules()]


def flaky(model: nn.Module, fail_on: int) -> nn.Module:
    """A copy of `model` whose forward (or ViT encode) raises on call number `fail_on`."""

    class Flaky(type(model)):
        def tick(self) -> None:
            self.calls += 1
            if self.calls == fail_on:
                raise RuntimeError("injected failure")

        def forward(self, *args, **kwargs):
            self.tick()
            return super().forward(*args, **kwargs)

        def encode(self, *args, **kwargs):       # the ViT's token-dropping path
            self.tick()
            return super().encode(*args, **kwargs)

        def shapley_values(self, *args, **kwargs):   # LearnedSHAP's one-pass explanation
            self.tick()
            return super().shapley_values(*args, **kwargs)

        def decompose(self, *args, **kwargs):        # a trained post-hoc explainer's pass
            self.tick()
            return super().decompose(*args, **kwargs)

    model = copy.deepcopy(model)
    model.__class__ = Flaky
    model.calls = 0
    return model


def snapshot(model: nn.Module, x: Tensor) -> dict:
    return {"modes": [m.training for m in model.modules()], "hooks": hook_counts(model),
            "grads": [p.grad for p in model.parameters()],
            "state": {k: v.clone() for k, v in model.state_dict().items()},   # params, buffers
            "requires": [p.requires_grad for p in model.parameters()],
            "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate(), "x": x.clone(), "x_requires": x.requires_grad,
            "grad_enabled": torch.is_grad_enabled()}


def assert_untouched(model: nn.Module, x: Tensor, before: dict) -> None:
    after = snapshot(model, x)
    assert after["modes"] == before["modes"]
    assert after["hooks"] == before["hooks"]
    assert all(a is b for a, b in zip(after["grads"], before["grads"], strict=True))
    assert after["requires"] == before["requires"]
    assert after["state"].keys() == before["state"].keys()
    assert all(torch.equal(after["state"][k], v) for k, v in before["state"].items())
    assert torch.equal(after["torch"], before["torch"])
    (_, key_a, *rest_a), (_, key_b, *rest_b) = after["numpy"], before["numpy"]
    assert np.array_equal(key_a, key_b) and rest_a == rest_b          # the key and its position
    assert after["python"] == before["python"]
    assert torch.equal(after["x"], before["x"]) and after["x_requires"] == before["x_requires"]
    assert after["grad_enabled"] == before["grad_enabled"]


def prepared(model: nn.Module) -> nn.Module:
    """Training mode, a user hook and stored gradients: all must survive an explanation."""
    model.train()
    model.register_forward_hook(lambda m, i, o: None)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    return model


@pytest.mark.parametrize("method", sorted(set(VIT_METHODS) | set(VIDEO_METHODS)))
def test_no_side_effects(method, vit, r3d, images, clips):
    model, x = (copy.deepcopy(vit), images) if method in VIT_METHODS else (copy.deepcopy(r3d),
                                                                         clips)
    model = prepared(model)
    x = x.clone()
    before = snapshot(model, x)
    run(method, model, x)
    assert_untouched(model, x, before)


def test_learned_shap_has_no_side_effects(learned_vit, images):
    model = prepared(copy.deepcopy(learned_vit))
    x = images.clone()
    before = snapshot(model, x)
    run("learned_shap", model, x)
    assert_untouched(model, x, before)


@pytest.mark.parametrize("method", sorted(m for m, fn in EXPLAINERS.items()
                                          if not fn.needs_gradients))
def test_methods_declared_gradient_free_run_without_autograd(method, vit, learned_vit, r3d,
                                                             images, clips):
    model = copy.deepcopy(learned_vit if method == "learned_shap" else vit)
    kw = {}
    if method == "shap_cam":                     # a CNN's feature map: the tiny 3D-ResNet
        model, images = copy.deepcopy(r3d), clips
    if method in ("learned_shap_posthoc", "vit_shapley"):      # trained explainers of `vit`
        from models.posthoc import PostHocShap

        kw["explainer"] = PostHocShap(vit, head="vit_shapley" if method == "vit_shapley"
                                      else "harsanyi")
    modes = []
    for m in [*model.modules(), *(kw["explainer"].modules() if kw else [])]:
        m.register_forward_hook(lambda mod, i, o: modes.append(torch.is_grad_enabled()))
    a = run(method, model, images, **kw)
    assert modes and not any(modes)
    if not EXPLAINERS[method].uses_randomness:             # declared free of randomness too
        b = run(method, model, images, seed=1, **kw)
        torch.testing.assert_close(a.values, b.values, rtol=0, atol=0)


@pytest.mark.parametrize("method", sorted(set(VIT_METHODS) | set(VIDEO_METHODS)))
def test_no_side_effects_after_an_error(method, vit, r3d, images, clips):
    base, x = (vit, images) if method in VIT_METHODS else (r3d, clips)
    model = prepared(flaky(base, fail_on=2))     # call 1 predicts the target, call 2 raises
    x = x.clone()
    before = snapshot(model, x)
    with pytest.raises(RuntimeError, match="injected failure"):
        run(method, model, x)
    assert_untouched(model, x, before)


MODEL_SPECIFIC = ["learned_shap", "learned_shap_posthoc", "shap_cam", "vit_shapley"]


def model_specific(method: str, vit, learned_vit, r3d, images, clips):
    """(model, input, options) for the methods that need their own kind of model."""
    if method == "learned_shap":
        return copy.deepcopy(learned_vit), images, {}
    if method == "shap_cam":                         # a CNN's feature map
        return copy.deepcopy(r3d), clips, {}
    from models.posthoc import PostHocShap

    with seeded(0):
        net = PostHocShap(vit, head="vit_shapley" if method == "vit_shapley" else "harsanyi")
    return copy.deepcopy(vit), images, {"explainer": net.eval()}


@pytest.mark.parametrize("fails", [False, True], ids=["success", "error"])
@pytest.mark.parametrize("method", MODEL_SPECIFIC)
def test_no_side_effects_of_the_model_specific_methods(method, fails, vit, learned_vit, r3d,
                                                       images, clips):
    """The methods left out of the shared lists: the same guarantees, after success and after an
    error injected mid-run (in the model, or in the trained explainer it reads)."""
    assert set(MODEL_SPECIFIC) | set(VIT_METHODS) | set(VIDEO_METHODS) == set(EXPLAINERS)
    model, x, kw = model_specific(method, vit, learned_vit, r3d, images, clips)
    if fails and "explainer" in kw:
        kw["explainer"] = flaky(kw["explainer"], fail_on=1)
    elif fails:
        model = flaky(model, fail_on=2)              # call 1 predicts the target, call 2 raises
    model, x = prepared(model), x.clone()
    watched = [(m, snapshot(m, x)) for m in (model, *kw.values())]
    if fails:
        with pytest.raises(RuntimeError, match="injected failure"):
            run(method, model, x, **kw)
    else:
        run(method, model, x, **kw)
    for m, before in watched:
        assert_untouched(m, x, before)


def test_explain_under_no_grad_still_works(vit, images):
    with torch.no_grad():
        att = explain("integrated_gradients", vit, images, 0, n_steps=4)
        assert not torch.is_grad_enabled()
    assert att.values.abs().sum() > 0
