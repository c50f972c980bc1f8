"""evaluation.sweep: the selection rule on constructed rows, and a quick run that resumes."""

from __future__ import annotations

import json

import pytest

from evaluation import sweep


def row(setting, seed, accuracy, rel_l2=None, model="vit_patches"):
    return {"model": model, "setting": setting, "seed": seed, "accuracy_large": accuracy,
            "rel_l2": rel_l2}


def test_the_most_faithful_setting_that_keeps_the_accuracy_is_chosen():
    rows = [row(None, 0, 0.970), row(None, 1, 0.980),                # plain mean 0.975
            row("w100", 0, 0.968, 0.004), row("w100", 1, 0.970, 0.003),   # 0.969 < 0.970: fails
            row("w30", 0, 0.972, 0.012), row("w30", 1, 0.970, 0.010),     # 0.971: passes
            row("w10", 0, 0.976, 0.030), row("w10", 1, 0.978, 0.020),     # passes, less exact
            row("w1000", 0, 0.990, 0.001)]                                # one seed only
    sel = sweep.select(rows, "vit_patches")
    assert sel["bar"] == pytest.approx(0.970) and sel["plain_seeds"] == 2
    assert sel["chosen"] == "w30"
    assert {c["setting"]: c["passes"] for c in sel["candidates"]} == {
        "w100": False, "w30": True, "w10": True}
    assert sweep.select(rows[:4], "vit_patches")["chosen"] is None       # nothing passes


def test_second_seeds_go_to_the_most_faithful_settings_near_the_plain_accuracy():
    rows = [row(None, 0, 0.975), row("w1000", 0, 0.90, 0.001), row("w100", 0, 0.968, 0.004),
            row("w10", 0, 0.976, 0.03), row("w1", 0, 0.99, 0.19)]
    names = [s.name for s in sweep.stage2_candidates(rows, "vit_patches", quick=False)]
    assert names == ["w100", "w10", "w1"]                               # w1000 is too inaccurate


def test_setting_names_say_how_the_head_was_trained():
    assert sweep.Setting(100, sampler="kernel_paired").name == "w100-kernel_paired"
    assert sweep.Setting(10, warmup=False, pairwise=False).name == "w10-nowarmup-unary"
    spec = sweep.spec_for("vit_patches", sweep.Setting(30, sampler="kernel"), 1, quick=False)
    assert spec.head["consistency"] == 30.0 and spec.head["sampler"] == "kernel"
    assert spec.train_seed == 1 and spec.seed == 0                      # same data, other init


@pytest.mark.slow
def test_quick_sweep_writes_its_tables_and_resumes_without_training(tmp_path, quick_cache,
                                                                   monkeypatch):
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(quick_cache))
    out = tmp_path / "sweep"
    results = sweep.main(["--quick", "--models", "vit_patches", "--out", str(out),
                          "--no-progress"])
    rows = results["rows"]
    assert {r["setting"] for r in rows if r["seed"] == 0} == \
        {None} | {s.name for s in sweep.QUICK_SETTINGS}
    for r in rows:
        if r["setting"] is not None:
            assert 0 <= r["remainder"] <= 1 and r["rel_l2"] > 0 and r["n_examples"] == 4
            assert r["efficiency_gap_max"] < 1e-4
    assert (out / "sweep_vit_patches.png").stat().st_size > 1000
    assert "Chosen:" in (out / "sweep.md").read_text()
    from models import zoo

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed sweep must not train again")

    monkeypatch.setattr(zoo, "fit", no_training)
    again = sweep.main(["--quick", "--models", "vit_patches", "--out", str(out), "--no-progress"])
    assert again["rows"] == json.loads((out / "sweep.json").read_text())["rows"] == rows


def test_the_default_heads_train_with_the_setting_the_committed_sweep_chose():
    from models import zoo

    committed = json.loads((sweep.OUT / "sweep.json").read_text())
    assert not committed["quick"]
    for key, base in sweep.BASES.items():
        chosen = committed["selection"][key]["chosen"]
        setting = next(s for s in sweep.settings_for(key, quick=False) if s.name == chosen)
        # the default model is the sweep's seed-0 model of that setting: same head, same seed
        spec = sweep.spec_for(key, setting, 0, quick=False)
        assert zoo.SPECS[base].head == spec.head
        assert zoo.SPECS[base].init_seed == spec.init_seed == 0
