"""The patch-local study: its table on constructed rows, and a quick run that resumes."""

from __future__ import annotations

import json

import pytest

from studies import patch_local


def test_each_size_compares_the_plain_the_co_trained_and_the_patch_local_vit():
    for size, names in patch_local.SIZES.items():
        specs = [patch_local.zoo.resolve(name, quick=False) for name in names]
        assert [s.kind for s in specs] == ["vit", "learned_vit", "learned_patch_vit"]
        # trained on the same images for the same epochs: only the architecture differs (at 196
        # patches the co-trained recipe continues from the plain ViT's weights instead)
        assert len({(s.dataset, json.dumps(s.data_options)) for s in specs}) == 1, size
        plain, co_trained, local = specs
        assert local.epochs == plain.epochs, size
        assert co_trained.epochs == plain.epochs or co_trained.init_from == plain.name, size
        assert specs[2].head["consistency"] == 0.0
    assert patch_local.reference_budget(16, quick=False) is None            # exact
    assert patch_local.reference_budget(64, quick=False) == patch_local.REFERENCE_BUDGET64
    row = {"size": 16, "model": "m", "fingerprint": "abc", "accuracy": 0.9, "accuracy_large": 0.91,
           "train_accuracy": 0.95, "train_seconds": 3.0}
    md = patch_local.markdown({"rows": [
        {**row, "role": "plain"},
        {**row, "role": "patch-local", "rel_l2": 1e-7, "rel_l2_max": 2e-7, "resolved": True,
         "pair_pearson_faith": 1.0, "remainder": 0.0, "reference": "exact"}]})
    lines = md.splitlines()
    assert len({line.count("|") for line in lines[:4]}) == 1          # every row has every cell
    assert "| 1e-07 (2e-07) |" in md and "(exact)" in md


@pytest.mark.slow
def test_quick_patch_local_run_is_exact_and_resumes_without_training(tmp_path, quick_cache,
                                                                     monkeypatch):
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(quick_cache))
    results = patch_local.main(["--quick", "--sizes", "16", "--out", str(tmp_path),
                                "--no-progress"])
    rows = results["rows"]
    assert [r["role"] for r in rows] == list(patch_local.ROLES)
    local = rows[-1]
    assert local["rel_l2_max"] < 1e-4 and local["remainder"] < 1e-6       # exact by design
    assert local["pair_pearson_faith"] > 0.999
    assert "`learned_patch_vit_patches`" in (tmp_path / "patch_local.md").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed study must not train again")

    monkeypatch.setattr(patch_local.zoo, "fit", no_training)
    again = patch_local.main(["--quick", "--sizes", "16", "--out", str(tmp_path), "--no-progress"])
    assert again["rows"] == rows
