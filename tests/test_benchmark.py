"""studies.benchmark: the quick run's schema and self-consistency, and the table helpers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from evaluation import timing
from evaluation.formatting import sig3
from evaluation.records import json_ready
from evaluation.runs import SAMPLERS, UNITLESS
from evaluation.scoring import nanmean
from studies import benchmark
from studies.benchmark.markdown import render
from studies.benchmark.tables import (
    COLUMNS,
    Column,
    best_rows,
    break_even_table,
    headline_table,
    markdown_table,
    shortfalls,
)

ROW_FIELDS = ["model", "method", "variant", "budget", "explains", "n_examples", "pearson_exact",
              "spearman_exact", "rel_l2_exact", "efficiency_gap", "auroc_truth",
              "pointing_game", "pair_auroc_truth", "insertion_auc", "deletion_auc", "avg_drop",
              "avg_increase", "avg_drop_rescaled", "avg_increase_rescaled", "evals", "seconds",
              "forward_ratio"]
METRICS = ROW_FIELDS[6:]
FIGURES = ["benchmark_grid_images.png", "benchmark_grid_video.png", "benchmark_convergence.png",
           "benchmark_insertion_deletion.png"]


# --- helpers (fast) -----------------------------------------------------------------------------
@pytest.mark.parametrize("value, text", [
    (None, "–"), (math.nan, "–"), (0, "0"), (0.0, "0"), (1, "1.00"), (0.99951, "1.00"),
    (9.996, "10.0"), (12.34, "12.3"), (123.4, "123"), (65536, "65,500"), (0.012345, "0.0123"),
    (-0.5381, "-0.538"), (0.00012345, "1.23e-04"), (1234567.0, "1,230,000")])
def test_sig3_keeps_three_significant_digits(value, text):
    assert sig3(value) == text


def test_best_rows_follow_the_column_direction_and_share_ties():
    rows = [{"a": 0.5}, {"a": 0.91}, {"a": 0.9104}, {"a": None}]
    assert best_rows(rows, Column("a", "a", "max")) == {1, 2}     # equal as shown: 0.910
    assert best_rows(rows, Column("a", "a", "min")) == {0}


def test_best_rows_skip_excluded_rows_and_need_two_competitors():
    rows = [{"a": 1.0}, {"a": 0.2}, {"a": None}]
    assert best_rows(rows, Column("a", "a", "max"), exclude={0}) == set()
    assert best_rows(rows, Column("a", "a", "max")) == {0}
    assert best_rows([{"a": math.nan}, {"a": 0.3}], Column("a", "a", "min")) == set()


def test_markdown_table_bolds_the_best_but_not_the_exact_reference():
    rows = [
        {"method": "learned_shap", "budget": None, "pearson_exact": 0.95, "rel_l2_exact": 0.2,
         "evals": 1.0, "deletion_auc": 0.30, "explains": "the game"},
        {"method": "exact", "budget": None, "pearson_exact": 1.0, "rel_l2_exact": 0.0,
         "evals": 65536.0, "deletion_auc": 0.25, "explains": "the game"},
        {"method": "permutation", "budget": 1024, "pearson_exact": 0.99, "rel_l2_exact": 0.05,
         "evals": 1000.0, "deletion_auc": 0.31, "explains": "the game"},
    ]
    lines = markdown_table(rows).splitlines()
    assert lines[0].startswith("| method | explains | Pearson vs exact ↑ |")
    assert "AUROC" not in lines[0]                      # a column with no value is left out
    learned, exact, perm = lines[2], lines[3], lines[4]
    assert "| **1.00** |" in learned                     # fewest evals
    assert "**" not in exact.split("|")[3] and "**" not in exact.split("|")[4]
    assert "**0.250**" in exact                          # deletion: the exact row competes there
    # samplers are labelled with the evaluations they made, not the budget asked for
    assert perm.startswith("| permutation (1,000 evals) | the game | **0.990** | **0.0500** |")


def test_shortfalls_name_the_columns_another_method_wins():
    rows = [
        {"method": "learned_shap", "budget": None, "pearson_exact": 0.95, "evals": 1.0,
         "deletion_auc": 0.30, "auroc_truth": None},
        {"method": "exact", "budget": None, "pearson_exact": 1.0, "evals": 65536.0,
         "deletion_auc": 0.25, "auroc_truth": 0.9},
        {"method": "kernel", "budget": 256, "pearson_exact": 0.99, "evals": 250.0,
         "deletion_auc": 0.31, "auroc_truth": 0.8},
    ]
    lost = {s["column"]: s for s in shortfalls(rows)}
    assert set(lost) == {"pearson_exact", "deletion_auc"}       # evals won; no AUROC of its own
    assert lost["pearson_exact"]["best_method"] == "kernel (250 evals)"
    assert lost["deletion_auc"] == {"column": "deletion_auc", "header": "deletion ↓",
                                    "value": 0.30, "best": 0.25, "best_method": "exact"}
    with pytest.raises(ValueError, match="no 'gradcam_pp' row"):
        shortfalls(rows, "gradcam_pp")


def test_markdown_table_has_a_column_per_metric():
    row = {"method": "m", "budget": None, **{c.key: 0.5 for c in COLUMNS}}
    header = markdown_table([row]).splitlines()[0]
    assert header.count("|") == len(COLUMNS) + 3


@pytest.mark.parametrize("first, expected_calls, expected", [(0.001, 11, 0.002), (0.2, 1, 0.2)])
def test_cheap_explanations_are_timed_beside_a_paired_forward(monkeypatch, first, expected_calls,
                                                               expected):
    from explainers import Attribution, Cost
    times = iter([first] + [0.003, 0.002, 0.002, 0.001, 0.002, 0.009, 0.002, 0.002, 0.001, 0.004])
    calls, forwards = [], []

    def fake_explain(method, model, x, target, *, seed, **options):
        calls.append(seed)
        return Attribution(torch.zeros(1, 4), torch.zeros(1, 2, 2), method, target,
                           Cost(1, 0, next(times)))

    monkeypatch.setattr(timing, "explain", fake_explain)
    model = lambda x: forwards.append(torch.is_grad_enabled())        # noqa: E731
    out, fwd = timing.timed_explain("m", model, torch.zeros(1, 3, 2, 2), torch.zeros(1), seed=7)
    assert len(calls) == expected_calls and set(calls) == {7}
    assert out.cost.seconds == pytest.approx(expected)
    assert len(forwards) == expected_calls - 1 and not any(forwards)   # one forward per repeat
    assert (fwd is None) == (expected_calls == 1) and (fwd is None or fwd > 0)


def break_even_entry(**kw) -> dict:
    entry = {"n_players": 16, "reference": "exact", "n_examples": 4, "per_class": 1,
             "seeds": [0, 1], "target_error": 0.05, "learned_evals": 1.0,
             "reference_noise": 0.0, "resolved": True, "best": "permutation",
             "samplers": {"permutation": {"evals": 30.0, "relation": "≤", "curve": []},
                          "kernel": {"evals": 2046.0, "relation": ">", "curve": []}}}
    return {**entry, **kw}


def test_break_even_table_writes_bounds_and_the_reference_noise():
    line = break_even_table({"vit": break_even_entry()}).splitlines()[2]
    assert "| ≤ 30 |" in line and "| > 2,046 |" in line and "4 × 2" in line
    assert line.endswith("| permutation | – | yes |")                 # no speed-up recorded
    fast = break_even_entry(speed_up={"value": 30.0, "relation": "≤"})
    assert break_even_table({"vit": fast}).splitlines()[2].endswith("| permutation | ≤ 30 | yes |")
    noisy = break_even_entry(reference="antithetic permutation, 2 x 8,192",
                             reference_noise=0.02, resolved=False)
    line = break_even_table({"vit64": noisy}).splitlines()[2]
    assert "8,192 (0.0200)" in line and "no: reference noise" in line


def test_nanmean_ignores_missing_values():
    assert nanmean([1.0, None, math.nan, 3.0]) == 2.0
    assert nanmean([None, math.nan]) is None
    assert nanmean([]) is None


def test_json_ready_writes_nan_as_null():
    out = json_ready({"a": math.nan, "b": torch.tensor([1.0, math.inf]), "c": (1, 2.5)})
    assert out == {"a": None, "b": [1.0, None], "c": [1, 2.5]}
    json.dumps(out, allow_nan=False)


def test_full_settings_cover_every_model_with_the_same_number_per_class():
    full = benchmark.settings_for(quick=False)
    assert set(full.per_class) == set(benchmark.MODELS)
    assert set(full.break_even_per_class) == set(benchmark.MODELS) | set(benchmark.BREAK_EVEN_ONLY)
    assert full.break_even_per_class["vit_patches64"] * 4 >= 16   # sampled reference: 16 or more
    assert full.n_samples == 200 and not full.quick


# --- the quick run (slow) -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_run(quick_make_run, tmp_path_factory):
    """The quick benchmark (`python -m studies.benchmark --quick`) of the session's quick
    `make run` (its rerun's folder, copied: a test below writes into it), timings merged back."""
    out = tmp_path_factory.mktemp("benchmark") / "out"
    shutil.copytree(quick_make_run.rerun, out)
    return out, benchmark.load_results(out)


def test_the_benchmark_restores_torch_threads_when_it_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    threads = torch.get_num_threads()
    monkeypatch.setattr(benchmark, "load_models", broken)
    settings = benchmark.settings_for(quick=True)
    settings.threads = threads + 1
    with pytest.raises(RuntimeError, match="injected"):
        benchmark.run_benchmark(settings, Path("unused"), progress=False)
    assert torch.get_num_threads() == threads


def rows_of(results: dict, model: str, method: str) -> list[dict]:
    return [r for r in results["results"] if r["model"] == model and r["method"] == method]


@pytest.mark.slow
def test_quick_run_writes_every_file_and_the_markdown_comes_from_the_json(quick_run):
    out, results = quick_run
    for name in FIGURES:
        assert (out / name).stat().st_size > 1000, name
    md = (out / "results.md").read_text()
    assert md == render(results)                        # rebuildable from results.json alone
    assert "| method | explains | Pearson vs exact ↑ |" in md and "| learned_shap |" in md
    assert "## Speed-up at equal error" in md and "Quick mode" in md and "Configuration:" in md
    assert "by true class" in md


@pytest.mark.slow
def test_quick_run_schema(quick_run):
    _, results = quick_run
    for key in ("models", "results", "break_even", "sanity", "timings", "config", "skipped"):
        assert key in results, key
    models = results["models"]
    assert {k: m["zoo_model"] for k, m in models.items()} == {
        "vit_patches": "learned_vit_patches", "vit_digits": "learned_vit_digits",
        "r3d_video": "learned_r3d_tubelets", "vit_patches64": "learned_vit_patches64"}
    for m in models.values():
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["plain_head_accuracy"] <= 1
        assert m["forward_seconds"] > 0
    for row in results["results"]:
        for name in ROW_FIELDS:
            assert name in row, (row["model"], row["method"], name)
        assert isinstance(row["n_examples"], int) and row["n_examples"] > 0
        for name in METRICS:
            assert row[name] is None or isinstance(row[name], (int, float)), name
        assert set(row["per_class"]) == set(METRICS)
        assert (row["budget"] is None) == (row["method"] not in SAMPLERS)
        assert row["evals"] is None or row["evals"] >= 1          # null: rows not counted
        assert row["seconds"] > 0 and row["forward_ratio"] > 0


@pytest.mark.slow
def test_quick_run_scores_the_same_number_of_examples_of_every_class(quick_run):
    _, results = quick_run
    for key, m in results["models"].items():
        if m.get("break_even_only"):
            continue
        (row,) = [r for r in rows_of(results, key, "exact")]
        classes = row["per_class"]["pearson_exact"]
        assert row["n_examples"] == m["per_class"] * len(classes)
    for b in results["break_even"].values():
        assert b["n_examples"] % b["per_class"] == 0


@pytest.mark.slow
def test_quick_run_has_every_planned_run_once(quick_run):
    _, results = quick_run
    settings = benchmark.settings_for(quick=True)
    for model in benchmark.MODELS:
        runs = [(r["method"], r["variant"], r["budget"]) for r in results["results"]
                if r["model"] == model]
        assert len(runs) == len(set(runs))
        n = results["models"][model]["n_players"]
        for sampler in SAMPLERS:
            assert sorted(b for m, _, b in runs if m == sampler) == \
                [2 * n * m for m in settings.budgets[model]]
    # the tubelet-local video game drops tokens: no blur-reference rows; GradCAM++ runs on the
    # tiled tubelet maps, Shap-CAM and DeepLift are skipped with their reasons, not run
    video = {(m, v) for m, v, _ in [(r["method"], r["variant"], r["budget"])
                                     for r in results["results"] if r["model"] == "r3d_video"]}
    assert ("gradcam_pp", "") in video and not any(v == "blur ref" for _, v in video)
    skips = {s["method"]: s for s in results["skipped"] if s["model"] == "r3d_video"}
    assert "LayerNorm" in skips["deeplift_shap"]["reason"]
    assert "tubelet" in skips["shap_cam"]["reason"]
    # attention reads the patch tokens the LearnedSHAP head reads
    for row in rows_of(results, "vit_patches", "attention"):
        assert row["queries"] == "patch_tokens"


@pytest.mark.slow
def test_quick_run_nulls_where_a_metric_does_not_apply(quick_run):
    _, results = quick_run
    for row in results["results"]:
        if row["method"] in UNITLESS:
            assert row["rel_l2_exact"] is None and row["efficiency_gap"] is None, row["method"]
        if row["method"] not in ("learned_shap", "exact") or row["model"] != "vit_patches":
            assert row["pair_auroc_truth"] is None, (row["model"], row["method"])
        assert row["pearson_exact"] is not None and row["insertion_auc"] is not None


@pytest.mark.slow
def test_exact_agrees_with_itself_and_game_methods_are_efficient(quick_run):
    _, results = quick_run
    for model in benchmark.MODELS:
        (row,) = rows_of(results, model, "exact")
        assert row["pearson_exact"] == pytest.approx(1.0)
        assert row["spearman_exact"] == pytest.approx(1.0)
        assert row["rel_l2_exact"] == pytest.approx(0.0, abs=1e-6)     # float32 against float64
        for method in ("exact", "learned_shap", "kernel"):
            for r in rows_of(results, model, method):
                assert r["efficiency_gap"] < 1e-4, (model, method)
    assert results["timings"]["exact_seconds_per_image"] > 0
    assert results["timings"]["make_run_seconds"] is None


@pytest.mark.slow
@pytest.mark.parametrize("model, evals", [("vit_patches", 1), ("vit_digits", 1),
                                          ("r3d_video", 1)])
def test_learned_shap_costs_one_forward(quick_run, model, evals):
    """A ViT's and a tubelet-local 3D-ResNet's empty coalition is the head's bias: one row
    (the whole-clip model's blurred clip would be a second; tests/test_harsanyi.py)."""
    _, results = quick_run
    (row,) = rows_of(results, model, "learned_shap")
    assert all(e == evals for e in row["per_example"]["evals"])
    assert results["break_even"][model]["learned_evals"] == evals


@pytest.mark.slow
def test_quick_run_break_even_sanity_and_config(quick_run):
    _, results = quick_run
    assert set(results["break_even"]) == set(benchmark.MODELS) | set(benchmark.BREAK_EVEN_ONLY)
    for key, b in results["break_even"].items():
        assert math.isfinite(b["target_error"]) and b["target_error"] > 0
        assert b["best"] in b["samplers"]
        assert (b["reference_noise"] == 0) == (key != "vit_patches64")
        for sampler in SAMPLERS:
            s = b["samplers"][sampler]
            assert s["curve"] and s["curve"][0]["budget"] == 2 * b["n_players"], sampler
            assert s["relation"] in ("≤", "=", ">")
        # one i.i.d. permutation runs at n + 1, below the antithetic pair's 2n
        assert b["samplers"]["permutation_iid"]["curve"][0]["evals"] == b["n_players"] + 1
        assert b["speed_up"]["value"] == b["samplers"][b["best"]]["evals"] / b["learned_evals"]
        if b["n_players"] <= 16 and key.startswith("vit"):      # exact Faith-Shap pairs
            assert b["pairs"]["best"] in b["pairs"]["samplers"] and b["pairs"]["n_examples"] > 0
    sanity = results["sanity"]
    assert sanity["layers"][0] == "head"
    for m in sanity["methods"].values():
        assert len(m["spearman"]) == len(sanity["layers"])
    config = results["config"]
    assert config["quick"] is True and config["seed"] == 0
    assert set(config["versions"]) >= {"torch", "timm", "shap", "captum", "shapiq"}
    assert config["date"][:2] == "20"


@pytest.mark.slow
def test_make_run_duration_is_recorded_in_the_results(quick_run):
    out, results = quick_run
    before = (out / "results.json").read_bytes()
    updated = benchmark.record_make_run(412.0, out)
    assert updated["timings"]["make_run_seconds"] == 412.0
    assert benchmark.load_results(out) == updated
    assert (out / "results.json").read_bytes() == before          # the timings live apart
    assert "`make run`: 412 s" in (out / "results.md").read_text()
    with pytest.raises(ValueError, match="positive number of seconds"):
        benchmark.record_make_run(0.0, out)


def test_headline_table_takes_each_sampler_at_its_largest_budget():
    rows = [{"model": "m", "method": "permutation", "variant": "", "budget": b, "rel_l2_exact": e,
             "evals": b, "forward_ratio": None, "auroc_truth": None, "deletion_auc": None}
            for b, e in ((32, 0.5), (512, 0.01))]
    rows.append({"model": "m", "method": "learned_shap", "variant": "", "budget": None,
                 "rel_l2_exact": 1e-4, "evals": 1, "forward_ratio": 1.1, "auroc_truth": 1.0,
                 "deletion_auc": 0.2})
    table = headline_table(rows).splitlines()
    assert len(table) == 4 and "learned_shap" in table[2] and "1.00e-04" in table[2]
    assert "0.0100" in table[3] and "512" in table[3] and "0.500" not in table[3]
