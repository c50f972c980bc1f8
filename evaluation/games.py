"""One-pass explainers against the samplers on the same game: what the scale and video studies
share.

A game here is one model's masking game on stratified test examples: a co-trained LearnedSHAP
model explaining itself (`co_trained`), or a frozen model explained by post-hoc explainers
(`frozen`). Each is scored against its reference (`evaluation.faithfulness`), then every sampler
runs on the same examples and references along a budget grid (`curves_for`), and the explainer's
break-even and speed-up at equal error follow (`versus_samplers`). Each game's results are cached
under `<cache>/scale/` by `game_key` (its setting, its models' checkpoints and the code that
computes it), and the tables below render them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import Tensor, nn

import data
from evaluation import break_even as be
from evaluation.examples import load_examples
from evaluation.faithfulness import compare, measure, references_for
from evaluation.formatting import stat
from evaluation.records import write_json
from evaluation.timing import forward_cost
from explainers.core import model_device
from models import zoo
from tools.code_key import code_key

LARGEST = 32            # samplers run on budgets n + 1, 2n, 4n, ... 32n (in units of n players)
# quick mode (tests): a small grid and a few samplers
QUICK_LARGEST = 4
QUICK_SAMPLERS = ("permutation", "kernel", "leverage", "shapiq_kernel", "shapiq_stratified",
                  "shapiq_kadd")


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


REMAINDER_COALITIONS = 1000


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
    it and the explainer's evaluations, `speed_up_cell`). "beyond_one_pair": the best sampler needs
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


def error_cell(e: dict) -> str:
    bound = "" if e["resolved"] else "≤ "
    return f"{bound}{e['rel_l2']['mean']:.3g} ({e['rel_l2']['max']:.3g})"


def reference_cell(e: dict) -> str:
    noise = e["reference_noise"]["max"]
    return e["reference"] + (f" ({noise:.2g})" if noise else "")


def verdict(met: bool) -> str:
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


def speed_up_cell(e: dict) -> str:
    """The best sampler's break-even over the explainer's evaluations per explanation."""
    b = e["break_even"]
    if "evals_per_explanation" not in e or (b["relation"] == "=" and not b.get("evals_before")):
        return "speed-up not recorded"
    return "speed-up " + be.describe_speed_up(be.speed_up(b, e["evals_per_explanation"]))


def shared_cells(e: dict, quick: bool) -> str:
    b = e["break_even"]
    return (f"{b['text']} ({b['best']}; {speed_up_cell(e)}) | "
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
            f"({100 * e['plain_accuracy']:.1f}%) | {error_cell(e)} | ≤ {e['goal']}, ≥ plain - "
            f"{100 * e['accuracy_tolerance']:g} pt ({verdict(e['goal_met'])}) | {reference_cell(e)} | "
            f"{stat(e['pair_pearson_faith'], 'mean')}, {stat(e['pair_rel_l2_faith'], 'mean')} | "
            f"{stat(e['remainder'], 'mean', 2, 'g')} | " + shared_cells(e, results["quick"]))
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
                f"({100 * e['accuracy']:.1f}%) | {error_cell(e)} | ≤ {e['goal']} "
                f"({verdict(e['goal_met'])}) | {reference_cell(e)} | "
                f"{stat(e['pair_pearson_faith'], 'mean')} | {stat(e.get('remainder'), 'mean', 2, 'g')} | "
                + shared_cells(e, results["quick"]))
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


def saved_results(results: dict, path: Path) -> dict | None:
    """The results file at `path` when it holds the same configuration (quick mode, samplers) as
    `results`, so that a run of some parts can keep the others; None when there is none."""
    if not path.exists():
        return None
    old = json.loads(path.read_text())
    same = old.get("quick") == results["quick"] and old.get("samplers") == results["samplers"]
    return old if same else None
