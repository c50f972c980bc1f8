"""The tubelet-local LearnedSHAP 3D-ResNet: local tokens, an exactly pairwise game, the video study."""

from __future__ import annotations

import json

import pytest
import torch

from explainers import explain
from models.harsanyi import LearnedShapR3D
from models.resnet_3d import ResNet3DConfig, create_r3d
from models.tubelet_r3d import LearnedShapTubeletR3D
from shapley.exact import exact_shapley
from shapley.game import MaskingGame, tubelet_feature_mask
from studies import video
from tests.conftest import away_from_init


def tubelet_model(grid=(2, 2, 2), seed=0) -> LearnedShapTubeletR3D:
    torch.manual_seed(seed)
    model = LearnedShapTubeletR3D(ResNet3DConfig(n_classes=3), grid).eval()
    away_from_init(model)
    with torch.no_grad():                    # pair terms of a size comparable to the unary ones
        model.head.pair_weight.mul_(20.0)
    return model


def clips(n=2, seed=1) -> torch.Tensor:
    return torch.rand(n, 3, 8, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("grid", [(2, 2, 2), (2, 4, 4)])
def test_a_tubelet_token_depends_on_its_own_pixels_only(grid):
    model, x = tubelet_model(grid), clips()
    cells = tubelet_feature_mask(8, 32, 32, grid)
    for i in (0, model.n_players - 1):
        y = torch.where(cells == i, torch.rand_like(x), x)            # new pixels in tubelet i
        with torch.no_grad():
            change = (model.embed(y) - model.embed(x)).norm(dim=-1)   # (B, N)
        assert bool((change[:, i] > 1e-3).all())
        assert float(change[:, torch.arange(model.n_players) != i].max()) == 0.0


def test_the_head_is_the_exact_shapley_value_of_the_token_dropping_game():
    model, x = tubelet_model(), clips()
    out = model.shapley_values(x)
    for b in range(len(x)):
        game = MaskingGame(model, x[b], removal="drop")
        exact = exact_shapley(game, game.n_players).values                 # (N, K) float64
        torch.testing.assert_close(out.shapley[b].double(), exact, atol=1e-5, rtol=1e-5)
        # the pair terms are the game's Harsanyi dividends: v({i, j}) - v({i}) - v({j}) + v({})
        z = torch.zeros(4, model.n_players, dtype=torch.bool)
        z[1, 0] = z[2, 5] = z[3, 0] = z[3, 5] = True
        v = game(z).double()                                                # (4, K)
        torch.testing.assert_close(v[3] - v[1] - v[2] + v[0], out.pair[b, 0, 5].double(),
                                   atol=1e-5, rtol=1e-5)
        # efficiency with v(empty) = bias, no extra forward
        torch.testing.assert_close(v[0], model.head.bias.double(), atol=1e-6, rtol=0)
        torch.testing.assert_close(out.shapley[b].sum(0).double(),
                                   out.logits[b].double() - v[0], atol=1e-5, rtol=1e-5)


def test_explainers_play_the_models_own_tubelet_game():
    model, x = tubelet_model(), clips()
    learned = explain("learned_shap", model, x, target=1)
    exact = explain("exact", model, x, target=1)            # token dropping, chosen by itself
    torch.testing.assert_close(learned.values, exact.values, atol=1e-5, rtol=1e-5)
    assert learned.values.shape == (2, 8) and learned.pixel_map.shape[-3:] == (8, 32, 32)
    # costs counted where every evaluation ends, the head: one row per clip, 2^8 per game
    assert learned.cost.forwards == 2 and exact.cost.forwards == 2 * 256
    # the same model under pixel removal (blur) is another game, on the same 32-tubelet grid
    blurred = explain("permutation", tubelet_model((2, 4, 4)), x, target=1, budget=64,
                      removal="baseline")
    assert blurred.values.shape == (2, 32)
    # one antithetic pair of permutations is exact on a pairwise game (each pair halves)
    perm = explain("permutation", model, x, target=1, budget=16)
    torch.testing.assert_close(perm.values, exact.values, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="tubelet grid"):
        LearnedShapTubeletR3D(ResNet3DConfig(), (3, 2, 2))(clips(1))
    with pytest.raises(ValueError, match="learned_shap values belong"):
        explain("learned_shap", model, x, tubelets=(2, 4, 4))


def test_gradcam_pp_tiles_the_tubelet_maps_back_into_the_clip():
    model, x = tubelet_model((2, 4, 4)), clips()
    cells = model.trunk.forward_features(model.cut(x))                  # (B * N, C, t, h, w)
    # tile inverts cut: the pixels come back in place, and so does any per-tubelet map
    torch.testing.assert_close(model.tile(model.cut(x)), x, atol=0, rtol=0)
    grid = model.tile(cells)                                             # (B, C, 2t, 4h, 4w)
    assert grid.shape == (2, cells.shape[1], 2 * cells.shape[2], 4 * cells.shape[3],
                          4 * cells.shape[4])
    t, h, w = cells.shape[2:]
    # tubelet 5 (time 0, row 1, column 1) fills its own block of the clip's map
    torch.testing.assert_close(grid[1, :, :t, h:2 * h, w:2 * w], cells[model.n_players + 5])
    cam = explain("gradcam_pp", model, x, target=1)
    assert cam.pixel_map.shape == (2, 8, 32, 32) and bool(torch.isfinite(cam.pixel_map).all())
    with pytest.raises(ValueError, match="not cells of the clip"):
        explain("shap_cam", model, x, target=1)


def test_leakage_separates_the_whole_clip_model_from_the_tubelet_model():
    x = clips(2)
    torch.manual_seed(0)
    whole = away_from_init(LearnedShapR3D(create_r3d(ResNet3DConfig(n_classes=3))).eval())
    leaky, local = video.causes(whole, x), video.causes(tubelet_model(), x)
    # different batch sizes may round differently on some backends: zero up to float error
    assert leaky["leakage"]["mean"] > 1e-3 and local["leakage"]["max"] < 1e-6
    assert local["empty_minus_bias"]["max"] < 1e-6        # v(empty) is the head's bias
    assert leaky["empty_spread"] > 0                     # the blurred clip's output varies


@pytest.mark.slow
def test_video_quick_run_writes_consistent_tables(tmp_path):
    models = ["learned_r3d_video", "learned_r3d_video_zeros", "learned_r3d_tubelets",
              "learned_r3d_tubelets32", "posthoc_r3d_video"]
    results = video.main(["--quick", "--out", str(tmp_path), "--no-progress", "--threads", "1",
                          "--models", *models])
    saved = json.loads((tmp_path / "video.json").read_text())
    assert [g["explainers"][0]["name"] for g in saved["games"]] == models
    assert (tmp_path / "video_error_vs_evals.png").stat().st_size > 10_000
    for g in results["games"]:
        e = g["explainers"][0]
        assert g["grid"][:2] == [g["n_players"] + 1, 2 * g["n_players"]]   # one permutation, one pair
        if g["kind"] == "frozen":      # post-hoc: efficient for the frozen blur game
            assert g["model"] == "r3d_video" and e["efficiency_gap"]["max"] < 1e-4
            assert e["evals_per_explanation"] == 3          # explainer, v(N), v(empty)
            continue
        if g["model"].startswith("learned_r3d_video"):
            assert e["causes"]["leakage"]["mean"] > 0
            # the blurred clip depends on the input, the zero clip does not
            zeros = g["model"].endswith("zeros")
            assert (e["causes"]["empty_spread"] < 1e-5) == zeros
        else:    # exact by construction, whatever its training: against exact or sampled refs
            assert e["causes"]["leakage"]["max"] < 1e-6
            exact = e["reference"].startswith("exact")
            assert e["rel_l2"]["max"] < (1e-4 if exact else 3 * e["reference_noise"]["max"] + 1e-4)
            assert e["setting"] == "no consistency loss"
    md = (tmp_path / "video.md").read_text()
    assert "`learned_r3d_tubelets32`" in md and "leakage" in md and "`posthoc_r3d_video`" in md
    # a run of some models keeps the others' results
    again = video.main(["--quick", "--out", str(tmp_path), "--no-progress", "--threads", "1",
                        "--models", "learned_r3d_tubelets"])
    assert again["models"] == models
