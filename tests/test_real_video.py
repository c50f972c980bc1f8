"""Real video through the same code: r3d_18 on a UCF101-layout folder the test writes."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision.models._api

from studies import real_video


@pytest.mark.slow
def test_every_video_explainer_runs_on_r3d_18_from_a_folder(tmp_path):
    # 16 frames of 32 px: r3d_18's feature grid (T/8, H/16, W/16) = (2, 2, 2) still holds the
    # 2 x 2 x 2 tubelets LearnedSHAP pools to
    root = real_video.write_demo_folder(tmp_path / "ucf", frames=16, size=32, per_class=2)
    assert sorted(p.name for p in root.iterdir()) == ["move_left", "move_right"]
    results = real_video.main(["--data-root", str(root), "--random-weights", "--frames", "16",
                               "--size", "32", "--out", str(tmp_path), "--no-progress",
                               "--threads", "1"])
    saved = json.loads((tmp_path / "real_video.json").read_text())
    assert saved["weights"] == "random" and saved["clips"] == 2
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == set(real_video.METHODS)
    for r in rows.values():
        assert r["values_shape"] == [8] and r["finite"] and r["seconds_per_clip"] > 0
    assert rows["exact"]["evals_per_clip"] == 256 + 1   # 2^8 coalitions + the prediction


def test_missing_kinetics_weights_name_the_path_and_never_download(tmp_path, monkeypatch):
    hub = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        called = []
        monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url",
                            lambda *a, **k: called.append(a))
        with pytest.raises(FileNotFoundError, match=str(tmp_path / "hub")) as err:
            real_video.load_r3d18(random_weights=False)
        assert "--random-weights" in str(err.value) and not called
    finally:
        torch.hub.set_dir(hub)
