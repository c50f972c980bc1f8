"""Per-layer methods (Shap-CAM, layer DeepLiftShap, GradCAM++), receptive fields, and the two
studies that compare methods on one game: shap's blur workflow and the per-layer curves."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn

from explainers import explain
from explainers.core import cnn_blocks
from explainers.shap_cam import CellGame
from models.resnet_2d import ResNet2DConfig, create_resnet2d
from models.resnet_3d import ResNet3DConfig, create_r3d
from models.train import seeded
from models.vit import ViTConfig, create_vit
from shapley.exact import exact_shapley
from studies import blur_game, layers

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one thread is faster


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    with seeded(0):
        return create_resnet2d(ResNet2DConfig(image_size=16, patch_size=8, widths=(4, 8, 8),
                                              blocks=(1, 1, 1))).eval()


@pytest.fixture(scope="module")
def images() -> Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def full_and_empty(game: CellGame, k: int) -> float:
    ends = game(torch.stack([torch.ones(game.n_players, dtype=torch.bool),
                             torch.zeros(game.n_players, dtype=torch.bool)]))
    return float(ends[0, k] - ends[1, k])


def test_shap_cam_cells_are_shapley_values_of_the_mean_removal_game(resnet, images):
    a = explain("shap_cam", resnet, images[:1], target_layer="layer3.0", budget=4000)
    k = int(a.target[0])
    game = CellGame(resnet, images[0], cnn_blocks(resnet)["layer3.0"], "prob", 64)
    assert game.n_players == 16 and a.extras["cells"].shape == (1, 4, 4)
    exact = exact_shapley(game, 16, interactions=False).values[:, k]
    cells = a.extras["cells"][0].flatten().double()
    torch.testing.assert_close(cells.sum(), torch.tensor(full_and_empty(game, k),
                                                         dtype=torch.float64), atol=1e-5, rtol=1e-4)
    assert torch.linalg.norm(cells - exact) / torch.linalg.norm(exact) < 0.1
    with torch.no_grad():               # the full coalition is the model itself
        torch.testing.assert_close(game(torch.ones(1, 16, dtype=torch.bool))[0].float(),
                                   resnet(images[:1]).softmax(-1)[0])
    # the upsampled map keeps the cells' mass
    torch.testing.assert_close(a.pixel_map.sum(), a.extras["cells"].sum(), atol=1e-5, rtol=1e-4)


def test_shap_cam_before_a_global_average_pool_sums_to_zero(resnet, images):
    """Mean removal at the last block of a network that average-pools it changes nothing when
    every cell is removed: v(N) = v({}), so the cells' values sum to zero (efficiency)."""
    last = list(cnn_blocks(resnet))[-1]
    a = explain("shap_cam", resnet, images[:1], target_layer=last)
    assert abs(float(a.extras["cells"].sum())) < 1e-5
    assert float(a.extras["cells"].abs().sum()) > 0


def test_layer_deeplift_shap_is_complete(resnet, images):
    a = explain("deeplift_shap", resnet, images, target_layer="layer2.0", background="zeros")
    with torch.no_grad():
        gap = resnet(images) - resnet(torch.zeros_like(images))
    torch.testing.assert_close(a.extras["cells"].flatten(1).sum(1),
                               gap.gather(1, a.target[:, None])[:, 0], atol=1e-4, rtol=1e-3)


def test_gradcam_pp_by_name_is_gradcam_pp_by_module(resnet, images):
    by_name = explain("gradcam_pp", resnet, images, target_layer="layer2.0")
    by_module = explain("gradcam_pp", resnet, images, target_layer=cnn_blocks(resnet)["layer2.0"])
    torch.testing.assert_close(by_name.pixel_map, by_module.pixel_map)


def test_an_unknown_layer_lists_the_blocks(resnet, images):
    with pytest.raises(ValueError, match=r"no layer 'layer9'.*'stem', 'layer1.0'"):
        explain("shap_cam", resnet, images, target_layer="layer9")
    with pytest.raises(ValueError, match="below one antithetic pair"):
        explain("shap_cam", resnet, images, target_layer="layer3.0", budget=10)


def test_shap_cam_runs_on_clips():
    with seeded(0):
        r3d = create_r3d(ResNet3DConfig(widths=(4, 8), blocks=(1, 1),
                                        strides=((1, 2, 2), (2, 2, 2)))).eval()
    clip = torch.rand(1, 3, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    assert list(cnn_blocks(r3d)) == ["stem", "layer1.0", "layer2.0"]
    a = explain("shap_cam", r3d, clip, target_layer="layer2.0")
    assert a.pixel_map.shape == (1, 4, 16, 16) and a.extras["cells"].shape == (1, 2, 2, 2)


@pytest.mark.parametrize("block", ["stem", "layer1.0", "layer2.0"])
def test_receptive_field_is_the_input_gradients_reach(block):
    """Theory and measurement agree: the input pixels that move one central cell of the block."""
    with seeded(0):
        net = create_resnet2d(ResNet2DConfig(image_size=64, patch_size=8, widths=(8, 8, 8),
                                             blocks=(2, 1, 1))).eval()
    feats = []
    handle = cnn_blocks(net)[block].register_forward_hook(lambda m, i, o: feats.append(o))
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    net(x)
    handle.remove()
    f = feats[0]
    h, w = f.shape[-2] // 2, f.shape[-1] // 2
    f[0, :, h, w].sum().backward()
    rows = (x.grad[0].abs().sum((0, 2)) > 0).nonzero()
    measured = int(rows.max() - rows.min() + 1)
    assert measured == layers.receptive_field(net, block)["pixels"]


def test_layers_study_quick_writes_every_block_and_method(tmp_path):
    results = layers.main(["--quick", "--no-progress", "--out", str(tmp_path), "--models",
                           "resnet_patches"])
    rows = results["models"][0]["rows"]
    assert len(rows) == layers.QUICK["blocks"] * len(layers.METHODS)
    for row in rows:
        for tag in ("raw", "equal_mass"):
            assert 0 <= row[tag]["average_drop"] <= 100
            assert 0 <= row[tag]["insertion_auc"] <= 1 and 0 <= row[tag]["deletion_auc"] <= 1
    assert (tmp_path / "shap_cam_layers.png").stat().st_size > 0
    assert json.loads((tmp_path / "layers.json").read_text())["quick"] is True


# --- the blur-game study ------------------------------------------------------------------------
def test_blur_game_scores_every_run_against_exact_shapley_and_owen(images):
    with seeded(0):
        vit = create_vit(ViTConfig(image_size=16, patch_size=8, dim=16, depth=2, heads=2)).eval()
    plan = blur_game.Plan(1, (16, 64), (1,), (0,))
    out = blur_game.score_input(vit, images[0], 1, plan, kernel=8)
    by = {(r["method"], r["asked"]): r for r in out["rows"]}
    owen = next(r for r in out["rows"] if r["method"] == "exact Owen")
    assert owen["vs_owen"] == 0 and owen["evals"] <= 2 ** 4
    # 4 players, 4 quadrants: hierarchical exact Shapley is flat exact Shapley here
    assert by[("hierarchical_shapley", 0)]["vs_shapley"] < 1e-5
    assert by[("shap_partition", 64)]["evals"] <= 64 + 2        # shap keeps to its budget
    summary = blur_game.summarise([out])
    assert {e["method"] for e in summary} == {"exact Owen", "hierarchical_shapley",
                                              "shap_partition", "permutation", "kernel",
                                              "shap_permutation"}
    assert blur_game.alignment([(32, 8)])[0]["nodes"] == 16


def test_blur_game_quick_on_clips_writes_its_files(tmp_path):
    results = blur_game.main(["--quick", "--no-progress", "--out", str(tmp_path), "--models",
                              "r3d_video"])
    m = results["models"][0]
    assert m["n_players"] == 8 and m["n_inputs"] == 4
    assert (tmp_path / "shap_blur_workflow.png").stat().st_size > 0
    assert "| r3d_video (8) | exact Owen |" in (tmp_path / "blur_game.md").read_text()
