"""`fit_posthoc`: one call fits a post-hoc explainer to a user's own trained ViT (ours or timm's),
spends the budget it is given, saves and reloads its checkpoint, and the explainer refuses a
model it was not fitted to."""

from __future__ import annotations

import copy

import pytest
import timm
import torch

from explainers import explain
from models import posthoc
from models.posthoc import fit_posthoc
from models.train import seeded
from models.vit import ViTConfig, as_vit, create_vit
from shapley.exact import exact_shapley
from shapley.game import MaskingGame


@pytest.fixture(scope="module")
def model():
    """A small plain ViT (9 players), the user's already trained model (its weights stay)."""
    with seeded(0):
        return create_vit(ViTConfig(image_size=12, patch_size=4, dim=16, depth=2, heads=2)).eval()


def loader_of(n: int, seed: int = 4):
    x = torch.rand(n, 3, 12, 12, generator=torch.Generator().manual_seed(seed))
    data = torch.utils.data.TensorDataset(x, torch.zeros(n, dtype=torch.long))
    return torch.utils.data.DataLoader(data, batch_size=32, shuffle=True,
                                       generator=torch.Generator().manual_seed(0))


def gap(model, explainer, test) -> float:
    """Mean rel. L2 of the explainer's phi against the exact values of the model's game."""
    errors = []
    for t in test:
        k = int(model(t[None]).argmax())
        exact = exact_shapley(MaskingGame(model, t), 9, interactions=False).values[:, k]
        phi = explain("learned_shap_posthoc", model, t[None], k, explainer=explainer).values[0]
        errors.append(float((phi.double() - exact).norm() / exact.norm()))
    return sum(errors) / len(errors)


def test_one_call_fits_the_models_shapley_values_and_saves_them(model, tmp_path, monkeypatch):
    weights = copy.deepcopy(model.state_dict())
    test = torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(9))
    with seeded(0):
        unfitted = posthoc.PostHocShap(model, rank=2)
    unfitted.calibrate(model, test)
    path = tmp_path / "explainer.pt"
    budget = 8 * 128 * 17                              # 8 epochs of 128 images, 16 coalitions
    explainer = fit_posthoc(model, loader_of(128), budget=budget, head="harsanyi", rank=2,
                            coalitions=16, checkpoint=path, progress=False)
    assert gap(model, explainer, test) < 0.5 * gap(model, unfitted.eval(), test)
    for k, v in model.state_dict().items():           # the user's model is left as it was
        torch.testing.assert_close(v, weights[k], rtol=0, atol=0)
    meta = torch.load(path, weights_only=True)["meta"]
    assert meta["frozen_evals"] == budget and meta["run"]["epochs"] == 8
    assert not (tmp_path / "explainer.pt.state.pt").exists()   # removed once training ended
    # the same call again reads the checkpoint: no training
    monkeypatch.setattr("models.train.train", lambda *a, **k: pytest.fail("trained again"))
    again = fit_posthoc(model, loader_of(128), budget=budget, head="harsanyi", rank=2,
                        coalitions=16, checkpoint=path, progress=False)
    x = test[:2]
    torch.testing.assert_close(explain("learned_shap_posthoc", model, x, 0, explainer=again).values,
                               explain("learned_shap_posthoc", model, x, 0,
                                       explainer=explainer).values)
    with pytest.raises(ValueError, match="fitted with other settings"):
        fit_posthoc(model, loader_of(128), budget=budget, head="harsanyi", rank=4,
                    coalitions=16, checkpoint=path, progress=False)


def test_a_model_the_explainer_was_not_fitted_to_is_refused(model):
    explainer = fit_posthoc(model, loader_of(32), epochs=1, head="harsanyi", rank=2,
                            coalitions=4, progress=False)
    x = torch.rand(1, 3, 12, 12)
    explain("learned_shap_posthoc", model, x, 0, explainer=explainer)          # its own: fine
    tuned = copy.deepcopy(model)
    with torch.no_grad():
        tuned.backbone.head.bias.add_(0.01)                   # one training step's worth
    with pytest.raises(ValueError, match="fitted to other weights.*fit_posthoc"):
        explain("learned_shap_posthoc", tuned, x, 0, explainer=explainer)


def test_budget_or_epochs_and_what_a_budget_buys(model):
    with pytest.raises(ValueError, match="either budget= .* or epochs=, not both"):
        fit_posthoc(model, loader_of(32), budget=10_000, epochs=2, progress=False)
    with pytest.raises(ValueError, match="not neither"):
        fit_posthoc(model, loader_of(32), progress=False)
    with pytest.raises(ValueError, match="less than half an epoch"):
        fit_posthoc(model, loader_of(32), budget=50, coalitions=4, progress=False)
    # 32 images x 5 evaluations = 160 an epoch: 500 evaluations buy 3 epochs (rounded)
    counted = []
    real = posthoc.posthoc_loss

    def counting(m, coalitions, counter, objective):
        counted.append(counter)
        return real(m, coalitions, counter, objective)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(posthoc, "posthoc_loss", counting)
        fit_posthoc(model, loader_of(32), budget=500, rank=2, coalitions=4, progress=False)
    assert counted[0][0] == 3 * 160
    # the regression objective costs one antithetic pair an image here: 1 + 2 x 8 evaluations
    with pytest.raises(ValueError, match=r"less than half an epoch \(544: 32 images, 17 eval"):
        fit_posthoc(model, loader_of(32), budget=200, coalitions=4, objective="permutation",
                    progress=False)
    with pytest.raises(ValueError, match="unknown objective"):
        fit_posthoc(model, loader_of(32), epochs=1, objective="faith", progress=False)


def test_vit_shapleys_head_with_pairs_fitted_phi_first(model, tmp_path):
    """ViT-Shapley's head with our pair terms, trained phi first: it costs what the kernel
    objective costs, and its values are efficient for the model's game, with pairs."""
    from models.posthoc import PHI_FIRST, READOUT_HEAD

    path = tmp_path / "explainer.pt"
    explainer = fit_posthoc(model, loader_of(32), budget=500, head=READOUT_HEAD,
                            objective=PHI_FIRST, rank=2, coalitions=4, checkpoint=path,
                            progress=False)
    assert torch.load(path, weights_only=True)["meta"]["frozen_evals"] == 3 * 160
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    att = explain("learned_shap_posthoc", model, x, 1, explainer=explainer)
    with torch.no_grad():
        total = (model(x) - explainer.v_empty)[:, 1]
    torch.testing.assert_close(att.values.sum(1), total, rtol=0, atol=1e-5)
    assert att.extras["pairs"].shape == (2, 9, 9) and att.extras["pairs"].abs().sum() > 0
    with pytest.raises(ValueError, match="fit it with objective='phi_first'"):
        fit_posthoc(model, loader_of(32), epochs=1, head="vit_shapley_plus_pairs",
                    progress=False)


def test_a_timm_vit_is_wrapped_once_and_explained(tmp_path):
    with seeded(0):
        vit = timm.models.vision_transformer.VisionTransformer(
            img_size=12, patch_size=4, num_classes=3, embed_dim=16, depth=1, num_heads=2)
    with pytest.raises(TypeError, match="as_vit"):
        fit_posthoc(vit, loader_of(32), epochs=1, progress=False)
    x = torch.rand(2, 3, 12, 12)
    with pytest.raises(ValueError, match="as_vit"):
        explain("learned_shap_posthoc", vit, x, 0, explainer=None)
    model = as_vit(vit).eval()
    assert model.n_players == 9 and model.n_classes == 3 and model.backbone is vit
    torch.testing.assert_close(model(x), vit(x * 2 - 1))      # its normalisation: mean = std = 0.5
    explainer = fit_posthoc(model, loader_of(32), epochs=1, rank=2, coalitions=4,
                            head="vit_shapley", progress=False)
    att = explain("vit_shapley", model, x, 1, explainer=explainer)
    with torch.no_grad():
        v = model(x)
    torch.testing.assert_close(att.values.sum(1), (v - explainer.v_empty)[:, 1], rtol=0,
                               atol=1e-5)
