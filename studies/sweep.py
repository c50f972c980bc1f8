"""The accuracy-faithfulness trade-off of co-trained LearnedSHAP heads: a staged, resumable sweep.

Each setting retrains one LearnedSHAP ViT (16 patches, digits, 64 patches) with the co-trained
recipe (gradients clipped to norm 1, `models.zoo.RECIPE_CLIP_NORM`) and another consistency
weight, coalition sampler (`models.harsanyi.SAMPLERS`: uniform sizes, Shapley kernel, paired or
not) or head (unary + pairs, unary only); one setting per model trains without clipping, the
ablation of the recipe. Each setting is measured on:

- accuracy on the model's test split and on a large one (4,000 generated images; digits: its 360);
- phi against the reference values of the model's own game (exact at 16 players; at 64
  antithetic permutation sampling with its own noise), relative L2 and Pearson, on the same
  number of test images from every class;
- the pair terms against exact order-2 Faith-Shap and Harsanyi pair dividends (16 players);
- the game's remainder: the share of v's variance that the head's own decomposition leaves
  unexplained, 1 - R^2 over 1,000 Shapley-kernel coalitions per image (predicted class);
- training time.

Stage 1 trains the plain model at training seeds 0, 1 and 2 and every setting at seed 0. Stage 2
trains seeds 1 and 2 of every setting near the front: those on the seed-0 accuracy-faithfulness
Pareto front whose accuracy is within 1.5 points of the plain mean (up to four, most faithful
first); when none of them passes the rule, the other near settings follow, most faithful first.
The rule that picks the new default: the most faithful setting (mean phi error over its three
seeds) whose mean accuracy over the three seeds (on the large test split) is at least the plain
model's mean minus 0.5 point, with no seed more than 1.5 points below that mean. Results are
written after every setting (`shap_overlays/sweep.json`) and a rerun skips what is there;
checkpoints are cached like every zoo model.

    python -m studies.sweep [--models vit_patches vit_digits vit_patches64] [--quick]
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from evaluation.cli import experiment_parser, setup
from evaluation.faithfulness import REFERENCE_BUDGET64
from evaluation.formatting import number
from evaluation.head_checks import head_faithfulness, large_test_accuracy
from evaluation.records import write_json, write_text
from models import zoo
from tools.readme import replace_block
from viz.overlay import new_figure, save_figure

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "shap_overlays"
BASES = {"vit_patches": "learned_vit_patches", "vit_digits": "learned_vit_digits",
         "vit_patches64": "learned_vit_patches64"}
LARGE_TEST = 4000           # generated test images for the accuracy rule
TOLERANCE = 0.005           # the seeds' mean accuracy may fall this far below the plain mean
MAX_DROP = 0.015            # and no seed further
SEEDS = (0, 1, 2)           # training seeds of the plain model and of every setting near the front
FRONT_LIMIT = 4
PER_CLASS = {"vit_patches": 2, "vit_digits": 1, "vit_patches64": 2}


@dataclass(frozen=True)
class Setting:
    """One way of training the head: consistency weight, warm-up, coalition sampler, head,
    gradient clipping (None: none, the recipe's ablation)."""

    consistency: float
    warmup: bool | float = True       # epochs of linear warm-up: True = 1, False = none
    sampler: str = "uniform"
    pairwise: bool = True
    clip: float | None = zoo.RECIPE_CLIP_NORM

    @property
    def warmup_epochs(self) -> int | float:
        w = float(self.warmup)
        return int(w) if w.is_integer() else w

    @property
    def name(self) -> str:
        w = self.warmup_epochs
        return (f"w{self.consistency:g}" + ("" if w == 1 else "-nowarmup" if w == 0 else
                                            f"-warmup{w:g}")
                + ("" if self.sampler == "uniform" else f"-{self.sampler}")
                + ("" if self.pairwise else "-unary")
                + ("-noclip" if self.clip is None else "" if self.clip == zoo.RECIPE_CLIP_NORM
                   else f"-clip{self.clip:g}"))


# With the recipe's clipping the strong weights train stably (without it one seed of 64 patches
# lost 30 points: the no-clip ablation below measures it), so the grid centres on them: uniform
# sizes and the paired Shapley kernel from weight 10 to 1000, the unary-only head, and weight 100
# with paired coalitions without clipping (the ablation).
NO_CLIP = Setting(100, sampler="kernel_paired", clip=None)
SETTINGS = ([Setting(w) for w in (10, 100, 1000)]
            + [Setting(w, sampler="kernel_paired") for w in (10, 100, 300, 1000)]
            + [Setting(100, pairwise=False), NO_CLIP])
# the 64-patch model trains for 3.5 minutes: fewer settings, the same axes
SETTINGS64 = ([Setting(w) for w in (100, 1000)]
              + [Setting(w, sampler="kernel_paired") for w in (10, 100, 1000)] + [NO_CLIP])
QUICK_SETTINGS = [Setting(10), Setting(100, sampler="kernel_paired")]


def settings_for(key: str, quick: bool) -> list[Setting]:
    if quick:
        return QUICK_SETTINGS
    return SETTINGS64 if key == "vit_patches64" else SETTINGS


def spec_for(key: str, setting: Setting | None, seed: int, quick: bool) -> zoo.ModelSpec:
    """The zoo spec of one setting (None: the plain model) at one training seed."""
    base = zoo.SPECS[BASES[key]]
    if setting is None:
        base = zoo.SPECS[base.plain]
        spec = replace(base, name=f"sweep-{base.name}-seed{seed}", train_seed=seed)
    else:
        head = {**base.head, "consistency": float(setting.consistency),
                "warmup_epochs": setting.warmup_epochs, "sampler": setting.sampler,
                "pairwise": setting.pairwise,
                # the recipe is the kind's default (zoo.clip_norm_of): named only when it differs
                **({} if setting.clip == zoo.RECIPE_CLIP_NORM else {"clip_norm": setting.clip})}
        spec = replace(base, name=f"sweep-{base.name}-{setting.name}-seed{seed}", head=head,
                       train_seed=seed)
    return zoo.resolve(spec, quick)


def measure(key: str, setting: Setting | None, seed: int, quick: bool,
            progress: bool = True) -> dict:
    """Train (or load) one setting at one seed and measure it."""
    spec = spec_for(key, setting, seed, quick)
    start = time.perf_counter()
    trained = zoo.load(spec, quick=False, progress=progress)     # spec_for resolved quick mode
    accuracy_large, n_large = large_test_accuracy(spec, trained.model, 256 if quick else LARGE_TEST)
    row = {"model": key, "setting": None if setting is None else setting.name,
           "config": None if setting is None else asdict(setting), "seed": seed,
           "fingerprint": trained.meta["fingerprint"], "accuracy": trained.meta["accuracy"],
           "accuracy_large": accuracy_large, "n_large": n_large,
           "train_seconds": trained.meta["train_seconds"]}
    if setting is not None:
        budget = None if trained.model.n_players <= 16 else (2048 if quick else REFERENCE_BUDGET64)
        row.update(head_faithfulness(spec, trained.model.eval(), 1 if quick else PER_CLASS[key],
                                     budget, 200 if quick else 1000))
    row["seconds"] = time.perf_counter() - start
    return row


def plain_mean(rows: list[dict], key: str) -> float | None:
    plain = [r["accuracy_large"] for r in rows if r["model"] == key and r["setting"] is None]
    return float(np.mean(plain)) if plain else None


def select(rows: list[dict], key: str) -> dict:
    """The new default: the most faithful setting with every seed whose accuracy passes (mean
    at least the plain mean minus TOLERANCE, no seed more than MAX_DROP below the plain mean).
    Settings without the recipe (the no-clipping ablation) are measured, never chosen."""
    plain = [r for r in rows if r["model"] == key and r["setting"] is None]
    mean_plain = plain_mean(rows, key)
    bar = None if mean_plain is None else mean_plain - TOLERANCE
    floor = None if mean_plain is None else mean_plain - MAX_DROP
    by_setting: dict[str, list[dict]] = {}
    for r in rows:
        if (r["model"] == key and r["setting"] is not None
                and (r.get("config") or {}).get("clip", zoo.RECIPE_CLIP_NORM) is not None):
            by_setting.setdefault(r["setting"], []).append(r)
    candidates = []
    for name, rs in by_setting.items():
        if len({r["seed"] for r in rs}) < len(SEEDS) or bar is None:
            continue
        accuracies = [r["accuracy_large"] for r in rs]
        acc, worst = float(np.mean(accuracies)), min(accuracies)
        candidates.append({"setting": name, "accuracy_large": acc, "accuracy_min": worst,
                           "rel_l2": float(np.mean([r["rel_l2"] for r in rs])),
                           "rel_l2_max": float(max(r["rel_l2"] for r in rs)),
                           # a hair of slack: the bar is a difference of float means
                           "passes": acc >= bar - 1e-9 and worst >= floor - 1e-9})
    passing = sorted((c for c in candidates if c["passes"]), key=lambda c: c["rel_l2"])
    return {"plain_accuracy_large": mean_plain, "bar": bar, "floor": floor,
            "plain_seeds": len(plain), "candidates": candidates,
            "chosen": passing[0]["setting"] if passing else None}


def near_front(rows: list[dict], key: str, quick: bool) -> tuple[list[Setting], list[Setting]]:
    """Settings to train at every seed: those on the seed-0 Pareto front within MAX_DROP of the
    plain mean (a setting is off the front when another is at least as faithful and at least as
    accurate), up to FRONT_LIMIT, most faithful first; then the fallback when none of them
    passes: the front's cut members, then the other settings within MAX_DROP, most faithful
    first."""
    mean_plain = plain_mean(rows, key)
    if mean_plain is None:
        return [], []
    near = [r for r in rows if r["model"] == key and r["setting"] is not None and r["seed"] == 0
            and r["accuracy_large"] >= mean_plain - MAX_DROP]
    near.sort(key=lambda r: (r["rel_l2"], -r["accuracy_large"]))
    front, best_accuracy = [], -1.0
    for r in near:                       # most faithful first: on the front if more accurate
        if r["accuracy_large"] > best_accuracy:
            front.append(r)
            best_accuracy = r["accuracy_large"]
    front, cut = front[:FRONT_LIMIT], front[FRONT_LIMIT:]
    by_name = {s.name: s for s in settings_for(key, quick)}
    named = [by_name[r["setting"]] for r in front if r["setting"] in by_name]
    rest = [by_name[r["setting"]] for r in cut + [r for r in near if r not in front + cut]
            if r["setting"] in by_name]
    return named, rest


def load_rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rows"] if path.exists() else []


def current(rows: list[dict], quick: bool) -> list[dict]:
    """The rows that measured today's grid with today's code (their checkpoint's fingerprint is
    the one their spec has now): rows of dropped settings or older checkpoints are not shown."""
    keep = []
    for r in rows:
        grid = {s.name: s for s in settings_for(r["model"], quick)}
        if r["setting"] is not None and r["setting"] not in grid:
            continue
        spec = spec_for(r["model"], grid.get(r["setting"]), r["seed"], quick)
        if r["fingerprint"] == zoo.fingerprint(spec):
            keep.append(r)
    return keep


def run(keys: list[str], quick: bool, out: Path, progress: bool = True) -> dict:
    """Both stages for every model, resuming from `out`/sweep.json; returns the results."""
    path = out / "sweep.json"
    rows = current(load_rows(path), quick)
    done = {(r["model"], r["setting"], r["seed"]) for r in rows}

    def ensure(key: str, setting: Setting | None, seed: int) -> None:
        ident = (key, None if setting is None else setting.name, seed)
        if ident in done:
            return
        rows.append(measure(key, setting, seed, quick, progress))
        done.add(ident)
        save(rows, keys, quick, out)

    for key in keys:
        todo = [(None, seed) for seed in SEEDS] + [(s, 0) for s in settings_for(key, quick)]
        for setting, seed in tqdm(todo, desc=f"sweep {key}: stage 1", disable=not progress):
            ensure(key, setting, seed)
        # stage 2: every seed of the settings near the front, then others until one passes
        front, rest = near_front(rows, key, quick)
        for setting in tqdm(front + rest, desc=f"sweep {key}: stage 2", disable=not progress):
            if setting not in front and select(rows, key)["chosen"] is not None:
                break
            for seed in SEEDS[1:]:
                ensure(key, setting, seed)
    return save(rows, keys, quick, out)


def save(rows: list[dict], keys: list[str], quick: bool, out: Path) -> dict:
    results = {"quick": quick, "rows": rows,
               "selection": {k: select(rows, k) for k in BASES if any(r["model"] == k for r in rows)}}
    results = write_json(out / "sweep.json", results)
    md = markdown(results)
    write_text(out / "sweep.md", md)
    for key in results["selection"]:
        save_figure(figure(results, key), out / f"sweep_{key}.png")
    if not quick and out.resolve() == OUT.resolve():
        replace_block("sweep", md)
    return results


def markdown(results: dict) -> str:
    lines = []
    for key, sel in results["selection"].items():
        rows = [r for r in results["rows"] if r["model"] == key]
        lines += [f"#### {key} (`{BASES[key]}`)", "",
                  "| setting | seed | accuracy (1,000 / large) | phi rel. L2 mean (max) | Pearson | "
                  "pairs vs Faith-Shap: Pearson, rel. L2 | pairs vs Harsanyi | remainder 1 - R² | "
                  "train s | checkpoint |", "|---|---:|---|---|---:|---|---:|---:|---:|---|"]
        order = {None: -1, **{s.name: i for i, s in enumerate(settings_for(key, results["quick"]))}}
        for r in sorted(rows, key=lambda r: (order.get(r["setting"], len(order)), r["seed"])):
            accuracy = f"{r['accuracy']:.1%} / {r['accuracy_large']:.2%}"
            if r["setting"] is None:
                lines.append(f"| plain head | {r['seed']} | {accuracy} | | | | | | "
                             f"{r['train_seconds']:.0f} | `{r['fingerprint']}` |")
                continue
            bound = "" if r["resolved"] else "≤ "
            lines.append(
                f"| {r['setting']} | {r['seed']} | {accuracy} "
                f"| {bound}{number(r['rel_l2'], 3, 'g')} ({number(r['rel_l2_max'], 3, 'g')}) | "
                f"{number(r['pearson'], 4)} | {number(r['pair_pearson_faith'])}, "
                f"{number(r['pair_rel_l2_faith'])} | {number(r['pair_pearson_harsanyi'])} | "
                f"{number(r['remainder'], 3, 'g')} | {r['train_seconds']:.0f} | `{r['fingerprint']}` |")
        chosen = sel["chosen"]
        lines += ["", f"Plain head over {sel['plain_seeds']} seed(s): "
                  f"{number(sel['plain_accuracy_large'], 4)} on the large test split; the rule asks "
                  f"for a mean of at least {number(sel['bar'], 4)} and no seed below "
                  f"{number(sel['floor'], 4)}. Settings with {len(SEEDS)} seeds (mean accuracy, "
                  "worst seed, mean rel. L2): "
                  + ("; ".join(f"{c['setting']} {c['accuracy_large']:.4f}, {c['accuracy_min']:.4f}, "
                               f"{c['rel_l2']:.4f} ({'passes' if c['passes'] else 'fails'})"
                               for c in sel["candidates"]) or "none")
                  + f". Chosen: **{chosen or 'none passes'}**.", ""]
    sampled = [r["reference"] for r in results["rows"]
               if r.get("reference") and r["reference"] != "exact"]
    lines += ["References: exact for 16 players" + (f"; 64 patches: {sampled[0]}, its noise "
              "below a third of every error unless the error is marked ≤" if sampled else "")
              + ". Accuracy: the test split the model trains with (1,000 images; digits 360) "
              "and the large one (4,000 generated images; digits the same 360). Every setting "
              f"but -noclip clips gradients to norm {zoo.RECIPE_CLIP_NORM:g}; checkpoint: the "
              "fingerprint of the model measured (`models.zoo.fingerprint`).", ""]
    return "\n".join(lines)


def figure(results: dict, key: str):
    """Accuracy against phi error, one point per setting (seed 0), the plain model as a line."""
    rows = [r for r in results["rows"] if r["model"] == key]
    fig = new_figure(figsize=(7.2, 4.4), layout="constrained")
    ax = fig.subplots()
    for r in rows:
        if r["setting"] is None:
            continue
        c = r["config"]
        marker = {"uniform": "o", "kernel": "s", "kernel_paired": "D"}[c["sampler"]]
        colour = ("#7f7f7f" if c.get("clip") is None else "#1f77b4" if c["pairwise"]
                  else "#ff7f0e")
        warm = float(c["warmup"])
        first = r["seed"] == 0              # later seeds: smaller, fainter, not labelled
        ax.plot(r["rel_l2"], 100 * r["accuracy_large"], marker, color=colour,
                mfc="none" if warm == 0 else colour, mew=2.5 if warm > 1 else 1,
                ms=7 if first else 4, alpha=1.0 if first else 0.5)
        if first:
            ax.annotate(r["setting"], (r["rel_l2"], 100 * r["accuracy_large"]), fontsize=6,
                        xytext=(4, 3), textcoords="offset points")
    sel = results["selection"][key]
    if sel["plain_accuracy_large"] is not None:
        ax.axhline(100 * sel["plain_accuracy_large"], color="black", lw=1,
                   label="plain head (mean over seeds)")
        ax.axhline(100 * sel["bar"], color="black", lw=0.8, ls="--", label="the accuracy rule")
    ax.plot([], [], "o", color="#1f77b4", label="unary + pairs, uniform sizes")
    ax.plot([], [], "D", color="#1f77b4", label="Shapley kernel, paired")
    ax.plot([], [], "s", color="#1f77b4", label="Shapley kernel")
    ax.plot([], [], "o", color="#ff7f0e", label="unary only")
    ax.plot([], [], "D", color="#7f7f7f", label="no gradient clipping (ablation)")
    ax.plot([], [], "o", color="#1f77b4", ms=4, alpha=0.5, label="training seeds 1 and 2")
    ax.set_xscale("log")
    ax.set_xlabel("relative L2 error of phi against the model's own Shapley values")
    ax.set_ylabel(f"test accuracy (%), {rows[0]['n_large'] if rows else ''} images")
    ax.set_title(f"{BASES[key]}: accuracy against faithfulness (labels: training seed 0)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return fig


def main(argv: list[str] | None = None) -> dict:
    parser = experiment_parser(__doc__.splitlines()[0], "folder for sweep.json / .md and the "
                               "figures (default shap_overlays/; in quick mode <cache>/sweep-quick/)")
    parser.add_argument("--models", nargs="*", default=list(BASES), choices=list(BASES))
    args = parser.parse_args(argv)
    quick, out = setup(args, OUT, "sweep-quick")
    results = run(args.models, quick, out, progress=not args.no_progress)
    for key, sel in results["selection"].items():
        print(f"{key}: chosen {sel['chosen']}")
    return results


if __name__ == "__main__":
    main()
