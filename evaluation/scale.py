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

    python -m evaluation.scale [--quick] [--players 16 64 196] [--games MODEL ...]

Each game's results are cached under `<cache>/scale/` (keyed by its setting, its models'
checkpoints and the scoring code), so a run killed midway redoes no finished game, and `--games`
computes some games only (e.g. two processes, one game each; a run without it writes the tables).

Heavy (the six 196-player models trained for 12 minutes to 2 hours each on 2 shared cores), so it
has its own target: `make scale`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from torch import Tensor, nn

import data
from evaluation import break_even as be
from evaluation.cli import experiment_parser, setup
from evaluation.examples import load_examples
from evaluation.learned_report import (
    REFERENCE_BUDGET64,
    REFERENCE_BUDGET196,
    compare,
    f,
    references_for,
)
from evaluation.posthoc import measure
from evaluation.records import write_json, write_text
from evaluation.timing import forward_cost
from explainers.core import model_device
from models import zoo
from tools.code_key import code_key
from tools.readme import replace_block
from viz.overlay import save_figure

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "shap_overlays"
LARGEST = 32                   # samplers run on budgets n + 1, 2n, 4n, ... 32n


@dataclass(frozen=True)
class Setting:
    """What runs at one player count."""

    co_trained: tuple[str, ...]          # LearnedSHAP ViTs of the zoo
    frozen: str                          # the plain ViT the post-hoc explainers explain
    explainers: tuple[str, ...]          # post-hoc LearnedSHAP and ViT-Shapley of `frozen`
    per_class: int                       # test images of each class
    reference_budget: int | None         # None: exact
    seeds: tuple[int, ...]               # sampler seeds
    goal_co_trained: float
    goal_frozen: float
    accuracy_tolerance: float            # co-trained accuracy may fall this far below plain
    grid_factor: int = 2                 # budgets n + 1, 2n, 2n * factor, ... up to the largest


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
QUICK = {"per_class": 1, "reference_budget": {64: 1024, 196: 1568}, "largest": 4, "seeds": (0,),
         "samplers": ("permutation", "kernel", "leverage", "shapiq_kernel", "shapiq_stratified",
                      "shapiq_kadd")}
REMAINDER_COALITIONS = 1000


def setting_for(n_players: int, quick: bool) -> Setting:
    if n_players not in SETTINGS:
        raise ValueError(f"no scale setting for {n_players} players; choose from {list(SETTINGS)}")
    s = SETTINGS[n_players]
    if not quick:
        return s
    budget = None if s.reference_budget is None else QUICK["reference_budget"][n_players]
    return replace(s, per_class=QUICK["per_class"], reference_budget=budget, seeds=QUICK["seeds"],
                   grid_factor=2)



def training_evals(spec: zoo.ModelSpec) -> int:
    """Model rows a co-trained LearnedSHAP ViT evaluates in training: per image and epoch, the
    full input and one coalition for the consistency term (two with the paired sampler), plus
    those of the model whose weights it started from."""
    n_train = {**data.dataset_options(spec.dataset), **spec.data_options}["n_train"]
    before = training_evals(zoo.resolve(spec.init_from)) if spec.init_from else 0
    if not spec.head.get("consistency"):
        return before + spec.epochs * n_train      # no consistency term: the full input only
    rows = 1 + (2 if spec.head.get("sampler") == "kernel_paired" else 1)
    return before + spec.epochs * n_train * rows


def training_seconds(meta: dict) -> float:
    """Seconds a model trained, over every run of a training resumed after a stop (the
    checkpoint's `train_seconds` counts only the run that finished it)."""
    epochs = meta.get("history") or []
    if epochs and all("seconds" in row for row in epochs):
        return sum(row["seconds"] for row in epochs)
    return meta["train_seconds"]


def curves_for(model: nn.Module, xs: Tensor, targets: list[int], refs, n: int, seeds, samplers,
               largest: int, progress: bool, factor: int = 2) -> dict:
    """Every sampler's error curve on budgets n + 1, 2n, 2n * factor, ... up to largest * n."""
    grid = be.doubling_grid(n, largest * n, factor)
    curves = be.sampler_curves(model, list(xs), targets, refs, grid, seeds=seeds,
                               samplers=samplers, progress=progress)
    reasons = {s: be.skip_reason(s, n) for s in samplers}
    skipped = {s: r for s, r in reasons.items() if r}
    return {"grid": grid, "curves": curves, "skipped": skipped}


def versus_samplers(entry: dict, curves: dict, n: int) -> dict:
    """The explainer's break-even against every sampler (the speed-up at equal error follows from
    it and the explainer's evaluations, `_speed_up`). "beyond_one_pair": the best sampler needs
    more than one antithetic pair (2n evaluations), which no explainer of a pairwise game can
    reach, so the tables report the speed-up instead."""
    out = be.break_even(curves["curves"], entry["rel_l2"]["mean"],
                        entry["reference_noise"]["max"])
    best = out["samplers"][out["best"]]
    point = next((p for p in best["curve"] if p["evals"] == best["evals"]), best["curve"][-1])
    return {"best": out["best"], "evals": best["evals"], "relation": best["relation"],
            "evals_before": best.get("evals_before"),
            "text": be.describe(best), "resolved": out["resolved"], "best_seconds": point["seconds"],
            "beyond_one_pair": best["relation"] == ">" or best["evals"] > 2 * n,
            "per_sampler": {k: be.describe(v) for k, v in out["samplers"].items()},
            "one_pair": 2 * n}


def co_trained(name: str, s: Setting, quick: bool, samplers, largest: int,
               progress: bool) -> dict:
    """A LearnedSHAP ViT explaining itself, against its own game's reference and the samplers."""
    spec = zoo.resolve(name, quick)
    trained = zoo.load(name, quick=quick, progress=progress)
    plain = zoo.load(spec.plain, quick=quick, progress=progress)
    model = trained.model.eval()
    n = model.n_players
    ex = load_examples(spec, model, s.per_class)
    refs = references_for(model, ex, s.reference_budget, progress)
    agreement = compare(model, ex, refs, REMAINDER_COALITIONS)
    rows = agreement.pop("examples")
    head = spec.head
    entry = {"name": name, "method": "learned_shap", "kind": "co_trained", "n_players": n,
             "setting": (f"consistency {head['consistency']:g}, {head.get('sampler', 'uniform')}"
                         if head.get("consistency") else "no consistency loss"),
             "reference": refs[0].describe(), "n_examples": len(ex), "per_class": s.per_class,
             "accuracy": trained.meta["accuracy"], "plain": spec.plain,
             "plain_accuracy": plain.meta["accuracy"], "goal": s.goal_co_trained,
             "rel_l2": agreement["rel_l2"], "pearson": agreement["pearson"],
             "reference_noise": agreement["reference_noise"],
             "resolved": agreement["resolved"], "remainder": agreement["remainder"],
             "pair_pearson_faith": agreement["pair_pearson_faith"],
             "pair_rel_l2_faith": agreement["pair_rel_l2_faith"],
             "evals_per_explanation": 1,
             "accuracy_tolerance": s.accuracy_tolerance,
             "seconds_per_explanation": forward_cost(
                 model, plain.model, ex.x[:1].to(model_device(model)), 10)["learned_seconds"],
             "training_evals": training_evals(spec),
             "train_seconds": training_seconds(trained.meta),
             "fingerprint": trained.meta.get("fingerprint"), "examples": rows}
    targets = [r["target"] for r in rows]
    curves = curves_for(model, ex.x, targets, refs, n, s.seeds, samplers, largest, progress,
                        s.grid_factor)
    entry["break_even"] = versus_samplers(entry, curves, n)
    accuracy_ok = entry["accuracy"] >= entry["plain_accuracy"] - s.accuracy_tolerance
    entry["goal_met"] = entry["rel_l2"]["mean"] <= s.goal_co_trained and accuracy_ok
    return {"kind": "co_trained", "model": name, "n_players": n, "explainers": [entry], **curves}


def frozen(s: Setting, quick: bool, samplers, largest: int, progress: bool) -> dict:
    """The plain ViT explained by the post-hoc explainers, against the samplers on its game."""
    plain = zoo.load(s.frozen, quick=quick, progress=progress)
    model = plain.model.eval()
    n = model.n_players
    entries = []
    for name in s.explainers:
        r = measure(name, quick, progress, per_class=s.per_class, budget=s.reference_budget,
                    remainder_coalitions=REMAINDER_COALITIONS if "unary" not in name else 0)
        r.update(kind="frozen", goal=s.goal_frozen, accuracy=plain.meta["accuracy"],
                 training_evals=r["frozen_evals"],
                 goal_met=r["rel_l2"]["mean"] <= s.goal_frozen)
        entries.append(r)
    spec = zoo.resolve(s.frozen, quick)
    ex = load_examples(spec, model, s.per_class)
    refs = references_for(model, ex, s.reference_budget, progress)
    targets = [r["target"] for r in entries[0]["examples"]]
    curves = curves_for(model, ex.x, targets, refs, n, s.seeds, samplers, largest, progress,
                        s.grid_factor)
    for entry in entries:
        entry["break_even"] = versus_samplers(entry, curves, n)
    return {"kind": "frozen", "model": s.frozen, "n_players": n, "explainers": entries, **curves}


GAMES = {"co_trained": co_trained, "frozen": frozen}


def game_key(kind: str, models: list[str], s: Setting, quick: bool, samplers, largest: int) -> str:
    """Hash of what one game's results depend on: the setting, the samplers and grid, the
    checkpoints of its models (their fingerprints, which cover the models' code) and the code
    that computes the game (`tools.code_key` from `co_trained` or `frozen`; the drivers' tables
    and figure are not in it, nor is `zoo.load`, whose result the checkpoints name)."""
    checkpoints = [zoo.checkpoint_path(zoo.resolve(m, quick)).name for m in models]
    # which models the setting lists is not the game's business (a model added beside it keeps it)
    setting = {k: v for k, v in asdict(s).items() if k not in ("co_trained", "frozen", "explainers")}
    parts = {"kind": kind, "setting": setting, "quick": quick, "samplers": list(samplers),
             "largest": largest, "checkpoints": checkpoints,
             "code": code_key([GAMES[kind]], skip=["models.zoo:load", "models.zoo:resolve"])}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def game_path(key: str) -> Path:
    return zoo.cache_dir() / "scale" / f"{key}.json"


def cached_game(key: str, label: str, compute: Callable[[], dict]) -> dict:
    """A game's results from `<cache>/scale/<key>.json`, or computed, timed and saved there: a
    study killed midway, or run in parts (`--games`, one process each), redoes no finished game."""
    path = game_path(key)
    if path.exists():
        print(f"{label}: reusing {path}")
        return json.loads(path.read_text())
    start = time.perf_counter()
    game = compute()
    game["seconds"] = time.perf_counter() - start
    return write_json(path, game)


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


# --- tables and the figure ------------------------------------------------------------------------
def _err(e: dict) -> str:
    bound = "" if e["resolved"] else "≤ "
    return f"{bound}{e['rel_l2']['mean']:.3g} ({e['rel_l2']['max']:.3g})"


def _ref(e: dict) -> str:
    noise = e["reference_noise"]["max"]
    return e["reference"] + (f" ({noise:.2g})" if noise else "")


def _verdict(met: bool) -> str:
    return "met" if met else "not met"


# the columns both tables end with: the explainer against the samplers, and what it cost
SHARED_HEAD = ("break-even of the best sampler (speed-up at equal error) | s / explanation (best "
               "sampler there) | training: {evals} evals, s | checkpoint |")


def checkpoint_cell(e: dict, quick: bool) -> str:
    """The fingerprint of the checkpoint a row measured, marked when it is not the one its model
    has today (a row kept from an earlier run): a reader sees which numbers are current."""
    measured = e.get("fingerprint")
    if measured is None:
        return "earlier (not recorded)"
    try:
        current = zoo.fingerprint(zoo.resolve(e["name"], quick))
    except KeyError:                       # a model no longer in the zoo
        current = None
    return f"`{measured}`" + ("" if measured == current else " (earlier)")


def _speed_up(e: dict) -> str:
    """The best sampler's break-even over the explainer's evaluations per explanation."""
    b = e["break_even"]
    if "evals_per_explanation" not in e or (b["relation"] == "=" and not b.get("evals_before")):
        return "speed-up not recorded"
    return "speed-up " + be.describe_speed_up(be.speed_up(b, e["evals_per_explanation"]))


def _shared(e: dict, quick: bool) -> str:
    b = e["break_even"]
    return (f"{b['text']} ({b['best']}; {_speed_up(e)}) | "
            f"{e['seconds_per_explanation']:.2g} ({b['best_seconds']:.2g}) | "
            f"{e['training_evals']:,}, {e['train_seconds']:.0f} | "
            f"{checkpoint_cell(e, quick)} |")


def setting_cell(e: dict) -> str:
    """A co-trained row's setting, with what its spec adds today: a start from another model's
    weights (rows of models no longer in the zoo, or of other checkpoints, keep what they
    recorded)."""
    try:
        spec = zoo.resolve(e["name"], False)
    except KeyError:
        return e["setting"]
    if e.get("fingerprint") != zoo.fingerprint(spec):
        return e["setting"]
    return e["setting"] + (f", from `{spec.init_from}`" if spec.init_from else "")


def co_trained_table(results: dict) -> str:
    lines = ["| players | model | setting | accuracy (plain) | phi rel. L2 mean (max) | goal | "
             "reference (max noise) | pairs vs Faith-Shap: Pearson, rel. L2 | remainder 1 - R² | "
             + SHARED_HEAD.format(evals="model"), "|---:|---|---|---|---|---|---|---|---:|---|---|---|---|"]
    for g in results["games"]:
        if g["kind"] != "co_trained":
            continue
        e = g["explainers"][0]
        lines.append(
            f"| {e['n_players']} | `{e['name']}` | {setting_cell(e)} | {100 * e['accuracy']:.1f}% "
            f"({100 * e['plain_accuracy']:.1f}%) | {_err(e)} | ≤ {e['goal']}, ≥ plain - "
            f"{100 * e['accuracy_tolerance']:g} pt ({_verdict(e['goal_met'])}) | {_ref(e)} | "
            f"{f(e['pair_pearson_faith'], 'mean')}, {f(e['pair_rel_l2_faith'], 'mean')} | "
            f"{f(e['remainder'], 'mean', 2, 'g')} | " + _shared(e, results["quick"]))
    return "\n".join(lines)


def frozen_table(results: dict) -> str:
    lines = ["| players | explainer | head | explains (accuracy) | phi rel. L2 mean (max) | goal | "
             "reference (max noise) | pairs vs Faith-Shap (Pearson) | remainder of its fit | "
             + SHARED_HEAD.format(evals="frozen"), "|---:|---|---|---|---|---|---|---|---:|---|---|---|---|"]
    for g in results["games"]:
        if g["kind"] != "frozen":
            continue
        for e in g["explainers"]:
            lines.append(
                f"| {e['n_players']} | `{e['name']}` | {e['head']} | `{e['explains']}` "
                f"({100 * e['accuracy']:.1f}%) | {_err(e)} | ≤ {e['goal']} "
                f"({_verdict(e['goal_met'])}) | {_ref(e)} | "
                f"{f(e['pair_pearson_faith'], 'mean')} | {f(e.get('remainder'), 'mean', 2, 'g')} | "
                + _shared(e, results["quick"]))
    return "\n".join(lines)


def sampler_table(results: dict) -> str:
    """Every sampler's mean error at every budget, one block of rows per game."""
    largest = results["largest"]
    multiples = [2 ** i for i in range(1, 20) if 2 ** i <= largest]
    lines = ["| game | players | sampler | " + " | ".join(f"{m}n" for m in multiples) + " |",
             "|---|---:|---|" + "---:|" * len(multiples)]
    for g in results["games"]:
        label = f"{g['kind'].replace('_', '-')} `{g['model']}`"
        n = g["n_players"]
        for name in results["samplers"]:
            if name in g["skipped"]:
                cells = [g["skipped"][name]] + [""] * (len(multiples) - 1)
            else:   # "–": a budget off this game's grid, or a run that did not reach it
                by_budget = {p["budget"]: p for p in g["curves"].get(name, [])}
                cells = [("failed" if "failed" in by_budget[m * n] else
                          f"{by_budget[m * n]['rel_l2']:.3g}") if m * n in by_budget else "–"
                         for m in multiples]
            lines.append(f"| {label} | {g['n_players']} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def earlier(results: dict, path: Path) -> dict | None:
    """The results file at `path` when it holds the same configuration (quick mode, samplers) as
    `results`, so that a run of some parts can keep the others; None when there is none."""
    if not path.exists():
        return None
    old = json.loads(path.read_text())
    same = old.get("quick") == results["quick"] and old.get("samplers") == results["samplers"]
    return old if same else None


def merged(results: dict, path: Path) -> dict:
    """These player counts' results over an earlier file's others (`--players` runs one part)."""
    old = earlier(results, path)
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
    results = merged(results, out / "scale.json")
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
