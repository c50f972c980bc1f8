"""The scale study: its samplers, its break-even, its costs, and a quick end-to-end run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from evaluation import break_even as be
from evaluation import games
from models import zoo
from shapley.exact import exact_shapley
from shapley.leverage import _all_subsets, leverage_shap
from studies import scale


def additive_game(weights: torch.Tensor):
    """v(S) = sum of the weights in S, two classes (the second the negative): Shapley = weights."""
    def game(z: torch.Tensor) -> torch.Tensor:              # (C, n) bool -> (C, 2)
        v = z.double() @ weights
        return torch.stack([v, -v], 1)
    return game


def test_all_subsets_enumerates_one_size_without_the_power_set():
    z = _all_subsets(196, 2)
    assert z.shape == (196 * 195 // 2, 196)
    assert bool((z.sum(1) == 2).all()) and len({row.numpy().tobytes() for row in z}) == len(z)


def test_leverage_shap_enumerates_small_sizes_of_many_players():
    # 40 players and 4,000 evaluations: the size pair (1, 39) has 80 coalitions, fewer than its
    # share of the budget, so it is enumerated (that used to build all 2^40 coalitions)
    w = torch.linspace(-1, 1, 40, dtype=torch.float64)
    res = leverage_shap(additive_game(w), 40, budget=4000, seed=0)
    torch.testing.assert_close(res.values[:, 0], w, atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", be.ALL_SAMPLERS)
def test_every_sampler_estimates_one_class_of_a_small_game(name):
    torch.manual_seed(0)
    n = 6
    game = pairwise_game(n)
    exact = exact_shapley(game, n).values
    values, n_evals = be.estimate(name, game, n, budget=64, seed=0, target=1)
    assert values.shape == (n,) and 0 < n_evals <= 64 + 2
    rel = float((values - exact[:, 1]).norm() / exact[:, 1].norm())
    assert rel < 0.5, f"{name}: rel L2 {rel:.3f} on a 6-player game with 64 evaluations"


def pairwise_game(n: int):
    """A game with unary and pair terms and two classes."""
    g = torch.Generator().manual_seed(3)
    unary = torch.randn(n, 2, generator=g, dtype=torch.float64)
    pair = torch.randn(n, n, 2, generator=g, dtype=torch.float64).triu(1)

    def game(z: torch.Tensor) -> torch.Tensor:
        k = z.double()
        return k @ unary + torch.einsum("ci,ijk,cj->ck", k, pair, k)
    return game


def test_quadratic_samplers_are_skipped_beyond_64_players_with_a_reason():
    assert be.skip_reason("shapiq_kadd", 64) is None
    reason = be.skip_reason("shapiq_kadd", 196)
    assert reason and "19,110 pairs" in reason
    # a sampler skipped for its measured cost keeps that reason at every larger player count
    assert "LightGBM" in be.skip_reason("shapiq_proxyspex", 64)
    assert "LightGBM" in be.skip_reason("shapiq_proxyspex", 196)
    assert be.skip_reason("leverage", 196) is None
    with pytest.raises(ValueError, match="unknown sampler"):
        be.skip_reason("nope", 16)


def test_training_evals_count_every_row_the_model_sees():
    spec = zoo.all_specs()["learned_vit_patches196_w0"]
    spec = replace(spec, head={**spec.head, "consistency": 100.0})
    paired = replace(spec, head={**spec.head, "sampler": "kernel_paired"})
    uniform = replace(spec, head={**spec.head, "sampler": "uniform"})
    # 28 epochs of 5,000 images: the full input and a coalition (with its complement if paired)
    assert games.training_evals(paired) == 28 * 5000 * 3
    assert games.training_evals(uniform) == 28 * 5000 * 2
    assert games.training_evals(zoo.all_specs()["learned_vit_patches196_w0"]) == 28 * 5000
    # a model started from the plain ViT's weights also pays for the plain ViT's 28 epochs
    ramped = zoo.all_specs()["learned_vit_patches196"]
    assert ramped.init_from == "vit_patches196"
    assert games.training_evals(ramped) == 28 * 5000 + 16 * 5000 * 2


def test_versus_samplers_names_the_sampler_that_reaches_the_error_first():
    curves = {"grid": [32, 64, 128], "skipped": {}, "curves": {
        "slow": [{"budget": b, "evals": b, "rel_l2": e, "seconds": 0.1}
                 for b, e in [(32, 0.5), (64, 0.3), (128, 0.05)]],
        "fast": [{"budget": b, "evals": b, "rel_l2": e, "seconds": 0.2}
                 for b, e in [(32, 0.4), (64, 0.08), (128, 0.01)]]}}
    entry = {"rel_l2": {"mean": 0.1}, "reference_noise": {"max": 0.0}}
    out = games.versus_samplers(entry, curves, n=16)
    assert out["best"] == "fast" and out["evals"] == 64 and out["text"] == "64"
    assert out["beyond_one_pair"] and out["best_seconds"] == 0.2
    assert out["per_sampler"] == {"slow": "128", "fast": "64"}
    # one pass per explanation: the sampler needs 33 to 64 evaluations, a speed-up in that range
    assert games.speed_up_cell({**entry, "break_even": out, "evals_per_explanation": 1}) == \
        "speed-up 32–64"
    assert games.speed_up_cell({**entry, "break_even": out}) == "speed-up not recorded"
    # an explainer worse than every sampler's first budget: the best sampler needs <= 2n
    worse = games.versus_samplers({**entry, "rel_l2": {"mean": 0.45}}, curves, n=16)
    assert worse["best"] == "fast" and worse["text"] == "≤ 32" and not worse["beyond_one_pair"]
    # reached at 2n, but after a budget below it (the grid starts at n + 1): still not beyond
    start = {"grid": [17, 32], "skipped": {}, "curves": {"iid": [
        {"budget": b, "evals": b, "rel_l2": e, "seconds": 0.1} for b, e in [(17, 0.5), (32, 0.05)]]}}
    at_pair = games.versus_samplers(entry, start, n=16)
    assert at_pair["relation"] == "=" and not at_pair["beyond_one_pair"]


@pytest.mark.slow
def test_scale_quick_run_writes_consistent_tables(tmp_path):
    results = scale.main(["--quick", "--players", "16", "196", "--out", str(tmp_path),
                          "--no-progress", "--threads", "1"])
    saved = json.loads((tmp_path / "scale.json").read_text())
    assert saved["players"] == [16, 196]
    assert (tmp_path / "scale_error_vs_evals.png").stat().st_size > 10_000
    kinds = [(g["kind"], g["n_players"]) for g in results["games"]]
    assert kinds == [("co_trained", 16), ("frozen", 16), ("co_trained", 196),
                     ("co_trained", 196), ("co_trained", 196), ("frozen", 196)]
    for g in results["games"]:
        n = g["n_players"]
        assert g["grid"] == [n + 1, 2 * n, 4 * n]
        # the quadratic regression is skipped at 196 players, with the reason in the table
        assert ("shapiq_kadd" in g["skipped"]) == (n == 196)
        for e in g["explainers"]:
            b = e["break_even"]
            best = g["curves"][b["best"]]
            target = e["rel_l2"]["mean"]
            if b["relation"] == "≤":
                assert best[0]["rel_l2"] <= target
            elif b["relation"] == ">":    # no sampler reached it: none of them did anywhere
                assert all(p["rel_l2"] > target for c in g["curves"].values() for p in c)
            assert b["beyond_one_pair"] == (b["relation"] == ">" or b["evals"] > 2 * n)
            assert e["goal_met"] == (target <= e["goal"] and (e["kind"] == "frozen" or (
                e["accuracy"] >= e["plain_accuracy"] - e["accuracy_tolerance"])))
            if e["kind"] == "co_trained":     # the goals' accuracy rule: 1 point at 196 players
                assert e["accuracy_tolerance"] == (0.01 if n == 196 else 0.005)
    md = (tmp_path / "scale.md").read_text()
    assert "`learned_vit_patches196_w0`" in md and "`vit_shapley_vit_patches196`" in md
    assert "skipped at 196 players" in md


def test_a_run_of_some_player_counts_keeps_the_others(tmp_path):
    path = tmp_path / "scale.json"
    game = lambda n, kind: {"n_players": n, "kind": kind}      # noqa: E731
    path.write_text(json.dumps({"quick": False, "samplers": ["a"], "players": [16, 64],
                                "seconds": {"16": 1, "64": 2},
                                "games": [game(16, "co_trained"), game(64, "frozen")]}))
    new = {"quick": False, "samplers": ["a"], "players": [64, 196], "seconds": {"64": 5, "196": 9},
           "games": [game(64, "frozen"), game(196, "frozen"), game(64, "co_trained")]}
    out = scale.merge_saved(new, path)
    assert out["players"] == [16, 64, 196] and out["seconds"] == {"16": 1, "64": 5, "196": 9}
    assert [(g["n_players"], g["kind"]) for g in out["games"]] == [
        (16, "co_trained"), (64, "co_trained"), (64, "frozen"), (196, "frozen")]
    assert scale.merge_saved({**new, "quick": True}, path) == {**new, "quick": True}   # other setup


def test_196_players_run_the_samplers_at_2n_8n_and_32n():
    assert be.doubling_grid(196, 32 * 196, factor=4) == [197, 392, 1568, 6272]
    assert be.doubling_grid(64, 32 * 64) == [65, 128, 256, 512, 1024, 2048]
    assert scale.setting_for(196, quick=False).grid_factor == 4
    assert scale.setting_for(196, quick=True).grid_factor == 2     # quick: n + 1, 2n and 4n


def test_sampler_table_puts_each_budget_under_its_own_column():
    curve = [{"budget": b, "evals": b, "rel_l2": e} for b, e in ((392, 0.5), (1568, 0.2))]
    results = {"largest": 32, "samplers": ["permutation", "shapiq_kadd"],
               "games": [{"kind": "frozen", "model": "m", "n_players": 196,
                          "grid": [392, 1568, 6272], "curves": {"permutation": curve},
                          "skipped": {"shapiq_kadd": "skipped at 196 players: why"}}]}
    rows = games.sampler_table(results).splitlines()
    assert rows[0].split(" | ")[3:] == ["2n", "4n", "8n", "16n", "32n |"]
    assert rows[2].endswith("| permutation | 0.5 | – | 0.2 | – | – |")
    assert rows[3].endswith("| skipped at 196 players: why |  |  |  |  |")


def test_a_finished_game_is_read_back_not_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(tmp_path))
    calls = []

    def fake(kind):
        def compute(*args):
            calls.append(kind)
            return {"kind": kind, "n_players": 16, "explainers": [], "grid": [32], "curves": {},
                    "skipped": {}}
        return compute
    monkeypatch.setattr(scale, "co_trained", lambda name, *a: fake("co_trained")())
    monkeypatch.setattr(scale, "frozen", lambda *a: fake("frozen")())
    first = scale.run([16], quick=True, progress=False, only=["vit_patches"])
    assert calls == ["frozen"] and [g["kind"] for g in first["games"]] == ["frozen"]
    again = scale.run([16], quick=True, progress=False)      # the frozen game from the cache
    assert calls == ["frozen", "co_trained"]
    assert again["games"][1] == first["games"][0]
    assert again["seconds"]["16"] == sum(g["seconds"] for g in again["games"])
    # another setting is another game
    s = scale.setting_for(16, quick=True)
    other = scale.replace(s, per_class=2)
    beside = scale.replace(s, co_trained=(*s.co_trained, "learned_vit_patches196"))
    keys = [games.game_key("frozen", ["vit_patches"], x, True, ["permutation"], 4)
            for x in (s, other, beside)]
    assert keys[0] != keys[1] and keys[0] == keys[2]     # a model listed beside it changes nothing


def test_from_cache_computes_nothing_and_keeps_earlier_rows_marked(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(tmp_path))
    monkeypatch.setattr(scale, "co_trained", lambda *a: pytest.fail("computed a game"))
    monkeypatch.setattr(scale, "frozen", lambda *a: pytest.fail("computed a game"))
    old = {"kind": "co_trained", "model": "learned_vit_patches", "n_players": 16}
    out = scale.run([16], quick=True, progress=False,
                    fallback={"games": [old], "seconds": {"16": 7.0}})
    assert out["games"] == [old]                     # the frozen game: neither cached nor earlier
    assert out["seconds"]["16"] == 7.0               # the earlier run's time for the games it gave
    # a cached game of today's checkpoints wins over the earlier row
    s = scale.setting_for(16, quick=True)
    key = games.game_key("co_trained", ["learned_vit_patches", "vit_patches"], s, True,
                         scale.QUICK["samplers"], scale.QUICK["largest"])
    games.write_json(games.game_path(key), {**old, "seconds": 3.0, "fresh": True})
    out = scale.run([16], quick=True, progress=False, fallback={"games": [old]})
    assert out["games"][0]["fresh"] and out["seconds"]["16"] == 3.0
    # the table's checkpoint column: today's fingerprint plain, another one marked as earlier
    current = scale.zoo.fingerprint(scale.zoo.resolve("learned_vit_patches", True))
    assert games.checkpoint_cell({"name": "learned_vit_patches", "fingerprint": current},
                                 True) == f"`{current}`"
    assert games.checkpoint_cell({"name": "learned_vit_patches", "fingerprint": "0123"},
                                 True) == "`0123` (earlier)"
    assert games.checkpoint_cell({"name": "learned_vit_patches"}, True) == "earlier (not recorded)"


def test_games_names_a_model_of_the_player_counts():
    with pytest.raises(SystemExit, match="no game of \\['vit_patches64'\\] at \\[16\\] players"):
        scale.main(["--quick", "--players", "16", "--games", "vit_patches64", "--no-progress"])


def test_training_seconds_add_up_the_epochs_of_a_resumed_training():
    resumed = {"train_seconds": 30.0, "history": [{"seconds": 100.0}, {"seconds": 30.0}]}
    assert games.training_seconds(resumed) == 130.0
    assert games.training_seconds({"train_seconds": 7.0, "history": []}) == 7.0


def test_the_figure_cuts_a_diverging_curve_and_says_so():
    """A sampler that diverges (1e10) does not flatten the others: the axis stops at 30x the
    largest one-pass error (at least 2) and the panel names the cut; without divergence the axis
    and the panel stay as drawn."""
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    ax.set_yscale("log")
    ax.plot([1, 2, 3], [0.5, 0.1, 0.01])
    ax.plot([1, 2, 3], [1e10, 1e3, 1.0])
    scale.clip_diverging(ax, [0.1, 0.2])
    assert ax.get_ylim()[1] == pytest.approx(6.0)
    assert any("y cut at 6" in t.get_text() for t in ax.texts)

    calm = Figure().subplots()
    calm.plot([1, 2, 3], [0.5, 0.1, 0.01])
    before = calm.get_ylim()
    scale.clip_diverging(calm, [0.1])
    assert calm.get_ylim() == before and not calm.texts
