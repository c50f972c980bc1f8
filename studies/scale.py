"""The scale study: one forward pass against ViT-Shapley and the strongest samplers at 16, 64, 196.

For each player count two kinds of game, each on the same stratified test images:

- **co-trained**: a LearnedSHAP ViT explains itself in one forward pass (`phi` of its head);
- **frozen**: the plain ViT (trained without the head) explained by post-hoc LearnedSHAP and by
  ViT-Shapley (Covert, Kim & Lee 2023), both trained on the frozen game at equal cost (one
  explainer forward and the model's own prediction per explanation).

Every one-pass explainer is scored against a reference of its game (exact up to 16 players, else
antithetic permutation in two halves, with its own noise), and every sampler (ours, Leverage
SHAP, shapiq's; `evaluation.break_even.ALL_SAMPLERS`) runs on the same images and references at
budgets n + 1 (one permutation), 2n, 4n, ..., 32n (n + 1, 2n, 8n and 32n at 196 players, to keep it
within hours). Break-even: the fewest evaluations at which the best sampler's mean error is at or
below the explainer's; the speed-up at equal error is that over the explainer's evaluations. Also the pair terms against exact Faith-Shap
(16 players), the game's remainder (what a pairwise decomposition leaves unexplained), accuracy,
seconds per explanation and training cost in model evaluations. Writes `scale.json`, `scale.md`,
the figure `scale_error_vs_evals.png` and the block in docs/scale.md.

    python -m studies.scale [--quick] [--players 16 64 196] [--games MODEL ...]

Each game's results are cached under `<cache>/scale/` (keyed by its setting, its models'
checkpoints and the scoring code), so a run killed midway redoes no finished game, and `--games`
computes some games only (e.g. two processes, one game each; a run without it writes the tables).

Heavy (the six 196-player models trained for 12 minutes to 2 hours each on 2 shared cores), so it
has its own target: `make scale`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import partial
from pathlib import Path

from evaluation import break_even as be
from evaluation.cli import experiment_parser, setup
from evaluation.faithfulness import (
    REFERENCE_BUDGET64,
    REFERENCE_BUDGET196,
)
from evaluation.games import (
    LARGEST,
    QUICK_LARGEST,
    QUICK_SAMPLERS,
    Setting,
    cached_game,
    co_trained,
    co_trained_table,
    frozen,
    frozen_table,
    game_key,
    game_path,
    sampler_table,
    saved_results,
)
from evaluation.records import write_json, write_text
from models import zoo
from models.zoo import VIT64, ModelSpec, co_trained_head
from tools.readme import replace_block
from viz.overlay import save_figure

# The scale study's 196-player setting (`python -m studies.scale`, make scale): 112 x 112
# patch-game images cut into 8-px patches (14 x 14 players), the 64-patch ViT's narrow shape with
# a longer sequence. Its plain model, co-trained LearnedSHAP ViTs (the recipe on two training
# seeds, and the head without consistency), and the two post-hoc explainers of the plain model at
# equal cost. 6 to 33 minutes each on 2 cores, so `make build` leaves them out. The post-hoc pair
# trains 8 epochs, not 30: at 196 tokens an epoch of 5,000 images with 32 coalitions each cost
# 78 to 98 s here, 3.9 to 5.4 times the 64-patch one (15 to 20 s).
VIT196 = {**VIT64, "image_size": 112}
PATCH196 = {"image_size": 112}
QUICK196 = {"epochs": 1, "data_options": {"n_train": 64, "n_test": 32}}
SPECS: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("vit_patches196", "vit", "patch_game", VIT196, epochs=28, drop_prob=0.5,
              data_options=PATCH196, quick=QUICK196,
              description="ViT (dim 32, depth 3), 196 patches of 8 px, 112x112 patch-game images"),
    # The co-trained recipe at 196 players, on two training seeds. From scratch the 64-patch
    # choice (consistency 1,000 from the first epoch) held training accuracy at chance for 20
    # epochs, and the head without consistency needs 4 epochs to leave chance: here the backbone
    # starts from the plain ViT's trained features (a curriculum, as the parity models do), the
    # head from zero, and consistency 100 (uniform coalition sizes, as at 64 patches) ramps in
    # over 4 of 16 epochs, so the head reads good features before exactness is asked of it.
    *(ModelSpec(f"learned_vit_patches196{suffix}", "learned_vit", "patch_game", VIT196,
                epochs=16, head={**co_trained_head(100.0), "warmup_epochs": 4}, plain="vit_patches196",
                data_options=PATCH196, quick=QUICK196, init_from="vit_patches196",
                train_seed=seed,
                description="LearnedSHAP ViT (dim 32, depth 3), 196 patches, consistency 100 "
                            f"ramped from the plain ViT's features, training seed {seed}")
      for suffix, seed in (("", 0), ("_s1", 1))),
    # the same head without the consistency loss: what the head itself costs in accuracy
    ModelSpec("learned_vit_patches196_w0", "learned_vit", "patch_game", VIT196, epochs=28,
              head=co_trained_head(0.0, "kernel_paired"), plain="vit_patches196",
              data_options=PATCH196, quick=QUICK196,
              description="LearnedSHAP ViT (dim 32, depth 3), 196 patches, no consistency loss"),
    ModelSpec("posthoc_vit_patches196", "posthoc_vit", "patch_game", VIT196, epochs=8,
              head={"rank": 8, "pairwise": True, "coalitions": 32}, plain="vit_patches196",
              data_options=PATCH196, quick=QUICK196,
              description="post-hoc LearnedSHAP (unary + pairs) of the frozen vit_patches196"),
    ModelSpec("vit_shapley_vit_patches196", "posthoc_vit", "patch_game", VIT196, epochs=8,
              head={"kind": "vit_shapley", "coalitions": 32}, plain="vit_patches196",
              data_options=PATCH196, quick=QUICK196,
              description="ViT-Shapley explainer of the frozen vit_patches196"),
]}


OUT = zoo.RESULTS_DIR


SETTINGS = {
    16: Setting(("learned_vit_patches",), "vit_patches",
                ("posthoc_vit_patches", "vit_shapley_vit_patches"),
                4, None, (0, 1), 0.01, 0.05, 0.005),
    64: Setting(("learned_vit_patches64",), "vit_patches64",
                ("posthoc_vit_patches64", "vit_shapley_vit_patches64"), 4, REFERENCE_BUDGET64,
                (0, 1), 0.01, 0.10, 0.005),
    196: Setting(("learned_vit_patches196", "learned_vit_patches196_s1",
                  "learned_vit_patches196_w0"), "vit_patches196",
                 ("posthoc_vit_patches196", "vit_shapley_vit_patches196"),
                 2, REFERENCE_BUDGET196, (0,), 0.01, 0.15, 0.01, grid_factor=4),
}
# quick mode (tests): one image per class, small references and grids, a few samplers
QUICK = {"per_class": 1, "reference_budget": {64: 1024, 196: 1568}, "largest": QUICK_LARGEST,
         "seeds": (0,), "samplers": QUICK_SAMPLERS}


def setting_for(n_players: int, quick: bool) -> Setting:
    if n_players not in SETTINGS:
        raise ValueError(f"no scale setting for {n_players} players; choose from {list(SETTINGS)}")
    s = SETTINGS[n_players]
    if not quick:
        return s
    budget = None if s.reference_budget is None else QUICK["reference_budget"][n_players]
    return replace(s, per_class=QUICK["per_class"], reference_budget=budget, seeds=QUICK["seeds"],
                   grid_factor=2)


def run(players: list[int], quick: bool, progress: bool = True,
        only: list[str] | None = None, fallback: dict | None = None) -> dict:
    """Every game of these player counts (or only those whose model is named in `only`).

    With `fallback` (an earlier results file), nothing is computed: a game comes from the cache
    when today's checkpoints and code have one, else from `fallback` (its rows keep the
    fingerprints of the checkpoints they measured, which the tables mark as earlier)."""
    samplers = QUICK["samplers"] if quick else tuple(be.ALL_SAMPLERS)
    largest = QUICK["largest"] if quick else LARGEST
    games, seconds = [], {}
    for n in players:
        s = setting_for(n, quick)
        jobs = [("co_trained", name, [name, zoo.resolve(name, quick).plain],
                 partial(co_trained, name, s, quick, samplers, largest, progress))
                for name in s.co_trained]
        jobs.append(("frozen", s.frozen, [s.frozen, *s.explainers],
                     partial(frozen, s, quick, samplers, largest, progress)))
        mine, kept = [], 0
        for kind, model, models, compute in jobs:
            if only is not None and model not in only:
                continue
            key = game_key(kind, models, s, quick, samplers, largest)
            if fallback is not None and not game_path(key).exists():
                earlier_game = next((g for g in fallback["games"]
                                     if (g["kind"], g["model"]) == (kind, model)), None)
                if earlier_game is not None:
                    mine.append(earlier_game)
                    kept += 1
                continue
            mine.append(cached_game(key, f"{kind} {model}", compute))
        games += mine
        # computing, not training the models (an earlier run's own total when it gave them all)
        seconds[str(n)] = (fallback.get("seconds", {}).get(str(n), 0.0) if mine and kept == len(mine)
                           else sum(g.get("seconds", 0.0) for g in mine))
    return {"players": players, "quick": quick, "samplers": list(samplers), "largest": largest,
            "games": games, "seconds": seconds}


def markdown(results: dict) -> str:
    return ("**Co-trained: LearnedSHAP explains its own model**\n\n" + co_trained_table(results)
            + "\n\n**Frozen: the plain ViT explained after training**\n\n"
            + frozen_table(results) + "\n\n**Every sampler's mean rel. L2 error by budget (model "
            "evaluations, in units of n players)**\n\n" + sampler_table(results))


def clip_diverging(ax, points: list[float], factor: float = 30.0) -> None:
    """Cut the panel's y-axis at `factor` times its largest one-pass error (at least 2) when a
    sampler's curve goes far above it (shapiq's unbiased KernelSHAP reaches 1e10 at 2n), so the
    other curves keep their resolution; the panel says so."""
    highest = max((y for line in ax.get_lines() for y in line.get_ydata()), default=0.0)
    top = max(2.0, factor * max(points, default=0.0))
    if highest > top:
        ax.set_ylim(top=top)
        ax.text(0.02, 0.02, f"y cut at {top:.2g}: a curve reaches {highest:.2g}",
                transform=ax.transAxes, fontsize=6, color="#d62728")


def figure(results: dict):
    """Error against model evaluations: a curve per sampler, the one-pass explainers as points;
    one panel per player count, co-trained above, frozen below."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    players = results["players"]
    fig = Figure(figsize=(4.2 * len(players), 8.0), layout="constrained")
    axes = fig.subplots(2, len(players), squeeze=False)
    # every sampler its own colour, line style and marker (tab20 has 20 distinct colours)
    palette = colormaps["tab20"]
    colours = {name: palette(i % 20) for i, name in enumerate(results["samplers"])}
    styles = {name: ("-", "--", "-.")[i % 3] for i, name in enumerate(results["samplers"])}
    glyphs = {name: "os^vD<>ph*XP"[i % 12] for i, name in enumerate(results["samplers"])}
    markers = "o^sDvP*X"
    for row, kind in enumerate(("co_trained", "frozen")):
        for col, n in enumerate(players):
            ax = axes[row, col]
            games = [g for g in results["games"] if g["kind"] == kind and g["n_players"] == n]
            for g in games[:1]:
                for name, curve in g["curves"].items():
                    curve = be.completed(curve)
                    ax.plot([p["evals"] for p in curve], [p["rel_l2"] for p in curve],
                            styles[name], color=colours[name], marker=glyphs[name], ms=3, lw=1,
                            label=name)
            k = 0
            for i, g in enumerate(games):
                first = k
                for e in g["explainers"]:
                    ax.plot([e["evals_per_explanation"]], [e["rel_l2"]["mean"]],
                            markers[k % len(markers)], color="black", ms=8, mfc="none", mew=1.5,
                            label=f"{e['name']} (one pass)")
                    k += 1
                if i:   # another model, another game: its point against its own best sampler
                    best = g["explainers"][0]["break_even"]["best"]
                    curve = be.completed(g["curves"][best])
                    ax.plot([p["evals"] for p in curve], [p["rel_l2"] for p in curve], "--",
                            color="black", marker=markers[first % len(markers)], ms=4, lw=1,
                            label=f"{best} on {g['model']}'s game")
                noise = max(e["reference_noise"]["max"] for e in g["explainers"])
                if noise:
                    ax.axhline(noise, color="grey", ls=":", lw=1)
            ax.axvline(2 * n, color="#d62728", ls="--", lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            clip_diverging(ax, [e["rel_l2"]["mean"] for g in games for e in g["explainers"]])
            ax.set_xlabel("model evaluations per explanation")
            ax.set_ylabel("rel. L2 error of phi (predicted class)")
            ax.set_title(f"{kind.replace('_', '-')}, {n} players\n(red: 2n, one antithetic pair; "
                         "dotted: reference noise)", fontsize=9)
            # the panel's own points here; the samplers' colours once, below the panels
            points = [(h, lab) for h, lab in zip(*ax.get_legend_handles_labels())
                      if lab not in colours]
            ax.legend(*zip(*points), fontsize=6, loc="upper right")
    handles = [Line2D([], [], ls=styles[name], color=colours[name], marker=glyphs[name], ms=3,
                      label=name) for name in results["samplers"]]
    fig.legend(handles=handles, loc="outside lower center", ncol=6, fontsize=7)
    fig.suptitle("Scale study: error against model evaluations, samplers (curves) and one-pass "
                 "explainers (points)")
    return fig


def merge_saved(results: dict, path: Path) -> dict:
    """These player counts' results over an earlier file's others (`--players` runs one part)."""
    old = saved_results(results, path)
    if old is None:
        return results
    kept = [g for g in old["games"] if g["n_players"] not in results["players"]]
    players = sorted(set(results["players"]) | {g["n_players"] for g in kept})
    games = sorted(kept + results["games"], key=lambda g: (g["n_players"], g["kind"] != "co_trained"))
    seconds = {**old.get("seconds", {}), **results["seconds"]}
    return {**results, "players": players, "games": games, "seconds": seconds}


def main(argv: list[str] | None = None) -> dict:
    parser = experiment_parser(__doc__.splitlines()[0], "folder for scale.json / .md / .png "
                               "(default shap_overlays/; in quick mode <cache>/scale-quick/)")
    parser.add_argument("--players", nargs="*", type=int, default=list(SETTINGS),
                        choices=list(SETTINGS))
    parser.add_argument("--games", nargs="+", default=None, metavar="MODEL",
                        help="compute and cache only the games of these models (a co-trained "
                             "LearnedSHAP ViT, or the plain ViT of a frozen game), e.g. one "
                             "process each; a run without --games then writes the tables")
    parser.add_argument("--from-cache", action="store_true",
                        help="compute nothing: write the tables from the games cached for today's "
                             "checkpoints, and for the others the rows of the results file "
                             "(their checkpoint column marks them as earlier)")
    args = parser.parse_args(argv)
    quick, out = setup(args, OUT, "scale-quick")
    if args.games:
        known = {m for n in args.players for m in (*SETTINGS[n].co_trained, SETTINGS[n].frozen)}
        unknown = sorted(set(args.games) - known)
        if unknown:
            raise SystemExit(f"--games: no game of {unknown} at {args.players} players; "
                             f"choose from {sorted(known)}")
        results = run(args.players, quick, not args.no_progress, only=args.games)
        print(f"cached {len(results['games'])} games in {zoo.cache_dir() / 'scale'}; run "
              "without --games to write the tables")
        return results
    fallback = None
    if args.from_cache:
        if not (out / "scale.json").exists():
            raise SystemExit(f"--from-cache: no {out / 'scale.json'} to take the uncached games "
                             "from; run without --from-cache to compute them")
        fallback = json.loads((out / "scale.json").read_text())
    results = run(args.players, quick, not args.no_progress, fallback=fallback)
    results = merge_saved(results, out / "scale.json")
    results = write_json(out / "scale.json", results)
    table = markdown(results)
    write_text(out / "scale.md", table + "\n")
    save_figure(figure(results), out / "scale_error_vs_evals.png", dpi=80)
    if not quick and out.resolve() == OUT.resolve():
        replace_block("scale", table)
    for g in results["games"]:
        for e in g["explainers"]:
            print(f"{g['kind']} {e['name']} ({g['n_players']} players): rel L2 "
                  f"{e['rel_l2']['mean']:.3g}; best sampler {e['break_even']['best']} breaks "
                  f"even at {e['break_even']['text']}")
    print("scale study: " + ", ".join(f"{n} players {t:.0f} s"
                                      for n, t in results["seconds"].items()))
    return results


if __name__ == "__main__":
    main()
