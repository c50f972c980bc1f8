"""evaluation.benchmark: the quick run's schema and self-consistency, and the table helpers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from evaluation import benchmark
from evaluation.benchmark import (
    COLUMNS,
    Column,
    best_rows,
    break_even_table,
    json_ready,
    make_run_seconds,
    markdown_table,
    nanmean,
    shortfalls,
    sig3,
)

ROW_FIELDS = ["model", "method", "budget", "n_examples", "pearson_exact", "spearman_exact",
              "rel_l2_exact", "auroc_truth", "pointing_game", "pair_auroc_truth",
              "insertion_auc", "deletion_auc", "avg_drop", "avg_increase", "avg_drop_rescaled",
              "avg_increase_rescaled", "evals", "seconds", "forward_ratio"]
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
         "evals": 1.0, "deletion_auc": 0.30},
        {"method": "exact", "budget": None, "pearson_exact": 1.0, "rel_l2_exact": 0.0,
         "evals": 65536.0, "deletion_auc": 0.25},
        {"method": "permutation", "budget": 1024, "pearson_exact": 0.99, "rel_l2_exact": 0.05,
         "evals": 1000.0, "deletion_auc": 0.31},
    ]
    table = markdown_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| method | Pearson vs exact ↑ |")
    assert "AUROC" not in lines[0]                      # a column with no value is left out
    learned, exact, perm = lines[2], lines[3], lines[4]
    assert "| **1.00** |" in learned                     # fewest evals
    assert "**" not in exact.split("|")[2] and "**" not in exact.split("|")[3]
    assert "**0.250**" in exact                          # deletion: the exact row competes there
    assert perm.startswith("| permutation @ 1,024 | **0.990** | **0.0500** |")


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
    assert lost["pearson_exact"]["best_method"] == "kernel @ 256"
    assert lost["deletion_auc"] == {"column": "deletion_auc", "header": "deletion ↓",
                                    "value": 0.30, "best": 0.25, "best_method": "exact"}
    with pytest.raises(ValueError, match="no 'gradcam_pp' row"):
        shortfalls(rows, "gradcam_pp")


def test_markdown_table_has_a_column_per_metric():
    row = {"method": "m", "budget": None, **{c.key: 0.5 for c in COLUMNS}}
    header = markdown_table([row]).splitlines()[0]
    assert header.count("|") == len(COLUMNS) + 2


@pytest.mark.parametrize("first, expected_calls, expected", [(0.001, 11, 0.002), (0.2, 1, 0.2)])
def test_cheap_explanations_are_timed_beside_a_paired_forward(monkeypatch, first, expected_calls,
                                                               expected):
    from explainers import Attribution
    from explainers.base import Cost
    times = iter([first] + [0.003, 0.002, 0.002, 0.001, 0.002, 0.009, 0.002, 0.002, 0.001, 0.004])
    calls, forwards = [], []

    def fake_explain(method, model, x, target, *, seed, **options):
        calls.append(seed)
        return Attribution(torch.zeros(1, 4), torch.zeros(1, 2, 2), method, target,
                           Cost(1, 0, next(times)))

    monkeypatch.setattr(benchmark, "explain", fake_explain)
    model = lambda x: forwards.append(torch.is_grad_enabled())        # noqa: E731
    out, fwd = benchmark.timed_explain("m", model, torch.zeros(1, 3, 2, 2), torch.zeros(1), seed=7)
    assert len(calls) == expected_calls and set(calls) == {7}
    assert out.cost.seconds == pytest.approx(expected)
    assert len(forwards) == expected_calls - 1 and not any(forwards)   # one forward per repeat
    assert (fwd is None) == (expected_calls == 1) and (fwd is None or fwd > 0)


def test_break_even_table_says_when_the_grid_never_matches():
    be = {"vit": {"n_players": 16, "reference": "exact", "n_examples": 2, "seeds": [0, 1],
                  "learned_rel_l2": 0.05, "learned_evals": 1,
                  "permutation": {"break_even_evals": 254.0,
                                  "curve": [{"budget": 256, "evals": 254.0, "rel_l2": 0.04}]},
                  "kernel": {"break_even_evals": None,
                             "curve": [{"budget": 256, "evals": 250.0, "rel_l2": 0.09}]}}}
    line = break_even_table(be).splitlines()[2]
    assert "| 254 |" in line and "not reached by 256" in line and "2 × 2" in line


def test_varied_indices_take_each_class_in_turn():
    assert benchmark.varied_indices([2, 2, 2, 3, 2, 0], 4) == [0, 3, 5, 1]
    assert benchmark.varied_indices([1, 1], 5) == [0, 1]
    assert benchmark.varied_indices([], 3) == []


def test_nanmean_ignores_missing_values():
    assert nanmean([1.0, None, math.nan, 3.0]) == 2.0
    assert nanmean([None, math.nan]) is None
    assert nanmean([]) is None


def test_json_ready_writes_nan_as_null():
    out = json_ready({"a": math.nan, "b": torch.tensor([1.0, math.inf]), "c": (1, 2.5)})
    assert out == {"a": None, "b": [1.0, None], "c": [1, 2.5]}
    json.dumps(out, allow_nan=False)


def test_make_run_seconds_from_option_or_environment(monkeypatch):
    monkeypatch.delenv("LEARNEDSHAP_MAKE_RUN_SECONDS", raising=False)
    assert make_run_seconds(None) is None
    assert make_run_seconds(12.5) == 12.5
    monkeypatch.setenv("LEARNEDSHAP_MAKE_RUN_SECONDS", "400")
    assert make_run_seconds(None) == 400.0
    monkeypatch.setenv("LEARNEDSHAP_MAKE_RUN_SECONDS", "soon")
    with pytest.raises(ValueError, match="not a number of seconds"):
        make_run_seconds(None)


def test_full_settings_cover_every_model():
    full = benchmark.settings_for(quick=False)
    assert set(full.n_examples) == set(benchmark.MODELS)
    assert set(full.break_even_budgets) == set(benchmark.MODELS) | set(benchmark.BREAK_EVEN_ONLY)
    assert full.n_samples == 200 and not full.quick


# --- the quick run (slow) -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`python -m evaluation.benchmark --quick --out tmp`, in-process, on a fresh cache."""
    out = tmp_path_factory.mktemp("benchmark")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEARNEDSHAP_QUICK", "1")
        mp.setenv("LEARNEDSHAP_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("LEARNEDSHAP_MAKE_RUN_SECONDS", raising=False)
        try:
            returned = benchmark.main(["--quick", "--out", str(out), "--no-progress"])
        finally:
            torch.set_num_threads(threads)
    results = json.loads((out / "results.json").read_text())
    return out, results, returned


def rows_of(results: dict, model: str, method: str) -> list[dict]:
    return [r for r in results["results"] if r["model"] == model and r["method"] == method]


@pytest.mark.slow
def test_quick_run_writes_every_file(quick_run):
    out, results, returned = quick_run
    assert returned == results
    for name in FIGURES:
        assert (out / name).stat().st_size > 1000, name
    md = (out / "results.md").read_text()
    assert "| method | Pearson vs exact ↑ |" in md and "| learned_shap |" in md
    assert "## Break-even" in md and "Quick mode" in md and "Configuration:" in md


@pytest.mark.slow
def test_quick_run_schema(quick_run):
    _, results, _ = quick_run
    for key in ("models", "results", "break_even", "sanity", "timings", "config", "skipped"):
        assert key in results, key
    models = results["models"]
    assert {k: m["zoo_model"] for k, m in models.items()} == {
        "vit_patches": "learned_vit_patches", "vit_digits": "learned_vit_digits",
        "r3d_video": "learned_r3d_video", "vit_patches64": "learned_vit_patches64"}
    for m in models.values():
        assert 0 <= m["accuracy"] <= 1 and 0 <= m["plain_head_accuracy"] <= 1
        assert m["forward_seconds"] > 0
    for row in results["results"]:
        for name in ROW_FIELDS:
            assert name in row, (row["model"], row["method"], name)
        assert isinstance(row["n_examples"], int) and row["n_examples"] > 0
        for name in ROW_FIELDS[4:]:
            assert row[name] is None or isinstance(row[name], (int, float)), name
        assert (row["budget"] is None) == (row["method"] not in benchmark.SAMPLERS)
        assert row["evals"] is None or row["evals"] >= 1          # null: rows not counted
        assert row["seconds"] > 0 and row["forward_ratio"] > 0


@pytest.mark.slow
def test_quick_run_has_every_method_once_per_budget(quick_run):
    _, results, _ = quick_run
    settings = benchmark.settings_for(quick=True)
    for model in benchmark.MODELS:
        methods = [(r["method"], r["budget"]) for r in results["results"] if r["model"] == model]
        assert len(methods) == len(set(methods))
        for sampler in benchmark.SAMPLERS:
            assert sorted(b for m, b in methods if m == sampler) == settings.budgets[model]
        assert ("learned_shap", None) in methods and ("exact", None) in methods
    # captum's DeepLift has no LayerNorm rule: the video head is skipped with the reason, not run
    (skip,) = [s for s in results["skipped"] if s["method"] == "deeplift_shap"]
    assert skip["model"] == "r3d_video" and "LayerNorm" in skip["reason"]
    assert not rows_of(results, "r3d_video", "deeplift_shap")


@pytest.mark.slow
def test_quick_run_nulls_where_a_metric_does_not_apply(quick_run):
    _, results, _ = quick_run
    for row in results["results"]:
        if row["method"] in benchmark.UNITLESS:
            assert row["rel_l2_exact"] is None, row["method"]
        if row["method"] not in ("learned_shap", "exact") or row["model"] != "vit_patches":
            assert row["pair_auroc_truth"] is None, (row["model"], row["method"])
        assert row["pearson_exact"] is not None and row["insertion_auc"] is not None


@pytest.mark.slow
def test_exact_agrees_with_itself(quick_run):
    _, results, _ = quick_run
    for model in benchmark.MODELS:
        (row,) = rows_of(results, model, "exact")
        assert row["pearson_exact"] == pytest.approx(1.0)
        assert row["spearman_exact"] == pytest.approx(1.0)
        assert row["rel_l2_exact"] == pytest.approx(0.0, abs=1e-9)
    assert results["timings"]["exact_seconds_per_image"] > 0
    assert results["timings"]["make_run_seconds"] is None


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vit_patches", "vit_digits"])
def test_learned_shap_costs_one_forward(quick_run, model):
    _, results, _ = quick_run
    (row,) = rows_of(results, model, "learned_shap")
    assert row["evals"] == pytest.approx(1.0)
    assert all(e == 1 for e in row["per_example"]["evals"])


@pytest.mark.slow
def test_learned_shap_costs_one_forward_on_video(quick_run):
    _, results, _ = quick_run
    (row,) = rows_of(results, "r3d_video", "learned_shap")
    assert row["evals"] == pytest.approx(1.0)


@pytest.mark.slow
def test_quick_run_break_even_sanity_and_config(quick_run):
    _, results, _ = quick_run
    assert set(results["break_even"]) == set(benchmark.MODELS) | set(benchmark.BREAK_EVEN_ONLY)
    for b in results["break_even"].values():
        assert math.isfinite(b["learned_rel_l2"]) and b["learned_rel_l2"] > 0
        assert b["learned_evals"] == 1                   # one forward per explanation
        for sampler in benchmark.SAMPLERS:
            assert b[sampler]["curve"], sampler
            e = b[sampler]["break_even_evals"]
            assert e is None or e > 0
    sanity = results["sanity"]
    assert sanity["layers"][0] == "head"
    for m in sanity["methods"].values():
        assert len(m["spearman"]) == len(sanity["layers"])
    config = results["config"]
    assert config["quick"] is True and config["seed"] == 0
    assert set(config["versions"]) >= {"torch", "timm", "shap", "captum", "shapiq"}
    assert config["date"][:2] == "20"
