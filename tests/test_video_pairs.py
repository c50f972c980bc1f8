"""The local-flicker clips and the study of what video pair terms see."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from data import video as video_data
from studies import video_pairs


def test_local_flicker_changes_brightness_in_place_and_keeps_the_clips_labels():
    plain = video_data.generate(16, np.random.default_rng(3))
    flick = video_data.generate(16, np.random.default_rng(3), local_flicker=(1, 2))
    assert "flicker" not in plain
    # the labels and the moving object are drawn first: the same with or without flicker
    assert torch.equal(plain["y"], flick["y"]) and torch.equal(plain["truth"], flick["truth"])
    mask = flick["flicker"]                                               # (B, T, H, W)
    assert mask.any((1, 2, 3)).all()                                      # every clip has one
    assert not (mask & flick["truth"]).any()                              # the mover stays on top
    x = flick["x"].float() / 255                                          # (B, 3, T, H, W)
    change = x.diff(dim=2).abs().mean(1)                                  # (B, T-1, H, W)
    steady = mask[:, 1:] & mask[:, :-1]
    background = ~(flick["truth"].any(1, keepdim=True) | mask.any(1, keepdim=True))
    background = background.expand_as(steady)
    # the flicker changes from frame to frame well beyond the background's global lighting flicker
    # and pixel noise (about 3x here)
    assert change[steady].mean() > 2.5 * change[background].mean()


def test_the_default_clips_are_unchanged_by_the_option():
    a = video_data.generate(8, np.random.default_rng(5))
    b = video_data.generate(8, np.random.default_rng(5), local_flicker=None)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pair_kinds_and_scores_on_hand_made_pairs():
    relevant = torch.tensor([1, 0, 0, 0, 1, 0, 0, 0], dtype=torch.bool)      # object: 0 then 4
    flicker = torch.tensor([0, 0, 1, 0, 0, 0, 1, 0], dtype=torch.bool)       # flicker: 2 and 6
    kinds = video_pairs.pair_kinds(relevant, flicker)
    assert kinds["object_object"].sum() == 2                      # {0, 4}, both ways
    assert kinds["object_flicker"].sum() == 8                                # 2 x 2 pairs, both ways
    assert kinds["object_background"].sum() == 16                            # 2 x 4, both ways
    motion = torch.zeros(8, 8)
    motion[0, 4] = motion[4, 0] = 1.0
    s = video_pairs.pair_scores(motion, kinds)
    assert s["object_auroc"] == 1.0 and s["flicker_share"] == 0.0
    assert s["flicker_chance"] == 4 / 28
    extraneous = motion.clone()
    extraneous[0, 2] = extraneous[2, 0] = -2.0          # a strong negative object-flicker pair
    s = video_pairs.pair_scores(extraneous, kinds)
    assert s["flicker_share"] == 2 / 3 and s["flicker_auroc"] > 0.5
    s = video_pairs.pair_scores(torch.zeros(8, 8), kinds)        # no pair matters: no ranking
    assert s["object_auroc"] == 0.5 and math.isnan(s["flicker_share"])


def test_video_pairs_quick_run(tmp_path):
    results = video_pairs.main(["--quick", "--out", str(tmp_path), "--no-progress",
                                "--threads", "1"])
    saved = json.loads((tmp_path / "video_pairs.json").read_text())
    assert saved == results
    names = [m["model"] for m in results["models"]]
    assert names == [video_pairs.PLAIN, *video_pairs.LEARNED]
    by_name = {m["model"]: m for m in results["models"]}
    assert "LearnedSHAP" not in by_name[video_pairs.PLAIN]["sources"]
    # the tubelet-local head is pairwise by construction: its pairs are the exact dividends, up
    # to float32 rounding, which is a larger share of the small pairs of a one-epoch model whose
    # terms started at zero (the whole-clip head's are 0.2 to 1 from them)
    tubelets = by_name["learned_r3d_tubelets_flicker"]["sources"]["LearnedSHAP"]
    assert tubelets["rel_l2_harsanyi"]["max"] < 1e-3
    for m in results["models"]:
        assert m["clips"] == 4 * m["per_class"]
        for s in m["sources"].values():
            assert 0 <= s["flicker_share"]["mean"] <= 1
    assert (tmp_path / video_pairs.FIGURE).stat().st_size > 10_000
    assert "object-flicker" in (tmp_path / "video_pairs.md").read_text()
