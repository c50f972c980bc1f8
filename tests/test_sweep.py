"""studies.sweep: the selection rule on constructed rows, and a quick run that resumes."""

from __future__ import annotations

import json

import pytest

from studies import sweep


def row(setting, seed, accuracy, rel_l2=None, model="vit_patches"):
    return {"model": model, "setting": setting, "seed": seed, "accuracy_large": accuracy,
            "rel_l2": rel_l2}


def test_the_most_faithful_setting_whose_three_seeds_keep_the_accuracy_is_chosen():
    rows = [row(None, 0, 0.970), row(None, 1, 0.980), row(None, 2, 0.975),   # plain mean 0.975
            # mean 0.969 < 0.970: fails
            *(row("w100", s, a, e) for s, a, e in [(0, .968, .004), (1, .970, .003), (2, .969, .004)]),
            # mean 0.972 passes, but one seed 0.950 < 0.960 (the worst seed's floor): fails
            *(row("w300", s, a, e) for s, a, e in [(0, .985, .002), (1, .950, .001), (2, .981, .002)]),
            # mean 0.971, worst 0.968: passes
            *(row("w30", s, a, e) for s, a, e in [(0, .972, .012), (1, .970, .010), (2, .971, .011)]),
            # passes, less faithful
            *(row("w10", s, a, e) for s, a, e in [(0, .976, .030), (1, .978, .020), (2, .975, .02)]),
            row("w1000", 0, 0.990, 0.001), row("w1000", 1, 0.990, 0.001)]   # two seeds only
    sel = sweep.select(rows, "vit_patches")
    assert sel["bar"] == pytest.approx(0.970) and sel["floor"] == pytest.approx(0.960)
    assert sel["plain_seeds"] == 3 and sel["chosen"] == "w30"
    assert {c["setting"]: c["passes"] for c in sel["candidates"]} == {
        "w100": False, "w300": False, "w30": True, "w10": True}
    assert sweep.select(rows[:9], "vit_patches")["chosen"] is None       # nothing passes


def test_every_seed_goes_to_the_front_near_the_plain_accuracy_most_faithful_first():
    rows = [row(None, 0, 0.975), row("w1000", 0, 0.90, 0.001),          # too inaccurate
            row("w300-kernel_paired", 0, 0.965, 0.002),                 # front
            row("w100", 0, 0.962, 0.004),                               # dominated by w300 kp
            row("w100-kernel_paired", 0, 0.970, 0.005),                 # front
            row("w10", 0, 0.976, 0.03), row("w10-kernel_paired", 0, 0.99, 0.19)]
    front, rest = sweep.near_front(rows, "vit_patches", quick=False)
    assert [s.name for s in front] == ["w300-kernel_paired", "w100-kernel_paired", "w10",
                                       "w10-kernel_paired"]
    assert [s.name for s in rest] == ["w100"]


def test_the_ablation_without_the_recipe_is_measured_but_never_chosen():
    plain = [row(None, s, 0.975) for s in range(3)]
    noclip = [{**row(sweep.NO_CLIP.name, s, 0.99, 0.0001), "config": {"clip": None}}
              for s in range(3)]
    recipe = [{**row("w100", s, 0.975, 0.001), "config": {"clip": 1.0}} for s in range(3)]
    assert sweep.select(plain + noclip + recipe, "vit_patches")["chosen"] == "w100"
    assert sweep.select(plain + noclip, "vit_patches")["chosen"] is None
    # three rows of one seed are not three seeds
    same_seed = [{**r, "seed": 0} for r in recipe]
    assert sweep.select(plain + same_seed, "vit_patches")["candidates"] == []


def test_a_front_longer_than_the_limit_keeps_its_cut_members_first_in_the_fallback():
    names = ["w10", "w100", "w1000", "w10-kernel_paired", "w100-kernel_paired"]
    rows = [row(None, 0, 0.975)] + [row(n, 0, 0.97 + 0.001 * i, 0.001 * (i + 1))
                                    for i, n in enumerate(names)]        # all on the front
    rows.append(row("w100-unary", 0, 0.965, 0.0015))                    # dominated
    front, rest = sweep.near_front(rows, "vit_patches", quick=False)
    assert [s.name for s in front] == names[:sweep.FRONT_LIMIT]
    assert [s.name for s in rest] == [names[-1], "w100-unary"]


def test_setting_names_say_how_the_head_was_trained():
    assert sweep.Setting(100, sampler="kernel_paired").name == "w100-kernel_paired"
    assert sweep.Setting(10, warmup=False, pairwise=False).name == "w10-nowarmup-unary"
    assert sweep.NO_CLIP.name == "w100-kernel_paired-noclip"
    assert sweep.spec_for("vit_patches", sweep.NO_CLIP, 0, quick=False).head["clip_norm"] is None
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
