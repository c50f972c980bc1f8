"""The benchmark: every explainer on the same LearnedSHAP models and games, in one results table.

Every method explains the *LearnedSHAP* models of the zoo, so LearnedSHAP is compared with the
others on identical models and identical masking games (token dropping for the ViTs, blurred
(2, 2, 2) tubelets for the 3D-ResNet: `learned_report.game_for`). Each test example's predicted
class is explained, one input per call. For each model and method (samplers once per budget):

- agreement with the exact Shapley values of the game: Pearson, Spearman, relative L2;
- ground truth: AUROC and pointing game on the relevant players, pair AUROC on the true pairs;
- faithfulness: insertion / deletion AUC over players through the game (RISE), Average Drop /
  Increase in Confidence on blur-masked inputs, raw and after seed 004's equal-mass rescaling;
- cost: model rows per explanation (forwards + backwards), seconds, and seconds over one forward.

Then the break-even budgets (evaluations permutation sampling and KernelSHAP need to match
LearnedSHAP's error, `learned_report.break_even`), Adebayo et al.'s cascading randomisation on the
16-patch ViT, and the timings. Writes `results.json`, `results.md` and four figures into `--out`.

    python -m evaluation.benchmark [--quick] [--out shap_overlays/]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from tqdm.auto import tqdm

import data
from evaluation import learned_report
from evaluation.learned_report import game_for
from evaluation.metrics import (
    auroc,
    average_drop_increase,
    cascading_randomization,
    forward_ratio,
    insertion_deletion,
    masked_probabilities,
    pair_auroc,
    pearson,
    pointing_game,
    rel_l2,
    spearman,
)
from explainers import Attribution, explain
from explainers.base import model_device
from models import zoo
from tools.readme import replace_block
from viz.overlay import (
    colorbar,
    draw_overlay,
    plot_attributions,
    save_figure,
    symmetric_limit,
    truth_rows,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "shap_overlays"

# benchmark key -> the zoo's LearnedSHAP model that every method explains
MODELS = {"vit_patches": "learned_vit_patches", "vit_digits": "learned_vit_digits",
          "r3d_video": "learned_r3d_video"}
BREAK_EVEN_ONLY = {"vit_patches64": "learned_vit_patches64"}   # 64 players: no exact reference

IMAGE_METHODS = ["learned_shap", "exact", "permutation", "kernel", "gradient_shap",
                 "captum_gradient_shap", "integrated_gradients", "gradcam_pp", "attention",
                 "attention_rollout"]
VIDEO_METHODS = ["learned_shap", "exact", "permutation", "kernel", "gradient_shap",
                 "captum_gradient_shap", "integrated_gradients", "deeplift_shap", "gradcam_pp"]
SAMPLERS = ("permutation", "kernel")
# maps without the game's units (attention weights, CAMs scaled to [0, 1]): no relative L2
UNITLESS = {"attention", "attention_rollout", "gradcam_pp"}
EXAMPLE_SEED = 1            # the example order learned_report uses: both reports score one set
RESCALE_SHARE = 0.3         # equal-mass rescaling keeps 30% of the maximal mass (seed 004)
SANITY_METHODS = ["learned_shap", "permutation", "gradient_shap", "gradcam_pp", "attention_rollout"]


@dataclass(frozen=True)
class Column:
    key: str            # field of a results row
    header: str
    better: str         # "max" or "min": which value is bold
    agreement: bool = False   # compares with exact: the exact row is the reference, not a rival


COLUMNS = [
    Column("pearson_exact", "Pearson vs exact ↑", "max", True),
    Column("spearman_exact", "Spearman vs exact ↑", "max", True),
    Column("rel_l2_exact", "rel. L2 vs exact ↓", "min", True),
    Column("auroc_truth", "AUROC truth ↑", "max"),
    Column("pointing_game", "pointing ↑", "max"),
    Column("pair_auroc_truth", "pair AUROC ↑", "max"),
    Column("insertion_auc", "insertion ↑", "max"),
    Column("deletion_auc", "deletion ↓", "min"),
    Column("avg_drop", "Avg Drop % ↓", "min"),
    Column("avg_increase", "Increase % ↑", "max"),
    Column("avg_drop_rescaled", "Avg Drop % eq. mass ↓", "min"),
    Column("avg_increase_rescaled", "Increase % eq. mass ↑", "max"),
    Column("evals", "evals ↓", "min"),
    Column("seconds", "s / expl. ↓", "min"),
    Column("forward_ratio", "× forward ↓", "min"),
]
METRIC_KEYS = [c.key for c in COLUMNS]


# --- settings -----------------------------------------------------------------------------------
@dataclass
class Settings:
    """How much work the benchmark does: the full run fits `make run`, quick mode CI."""

    quick: bool
    seed: int = 0
    n_examples: dict[str, int] = field(default_factory=dict)   # per benchmark model
    n_samples: int = 200             # GradientSHAP samples per input (shap and captum)
    ig_steps: int = 50               # integrated-gradients steps
    budgets: dict[str, list[int]] = field(default_factory=dict)      # sampler rows per model
    break_even_budgets: dict[str, list[int]] = field(default_factory=dict)
    break_even_examples: dict[str, int] = field(default_factory=dict)
    break_even_seeds: tuple[int, ...] = (0, 1)
    reference_budget64: int = 8192   # KernelSHAP reference of the 64-patch ViT
    sanity_examples: int = 2
    sanity_samples: int = 50         # GradientSHAP samples inside the randomisation check
    sanity_budget: int = 256         # permutation budget inside the randomisation check
    figure_examples: int = 6
    # One thread by default: these tiny models gain little from a second, and with any other
    # process on a 2-core machine two threads wait for each other (many times slower).
    threads: int = 1


def settings_for(quick: bool, seed: int = 0) -> Settings:
    """The full benchmark's settings (about four minutes on two CPU cores), or quick mode's."""
    vit_be = [32, 64, 128, 256, 512, 1024, 2048]
    if quick:
        return Settings(
            quick=True, seed=seed,
            n_examples={"vit_patches": 3, "vit_digits": 2, "r3d_video": 2},
            n_samples=16, ig_steps=16,
            budgets={"vit_patches": [64, 256], "vit_digits": [64], "r3d_video": [32, 64]},
            break_even_budgets={"vit_patches": vit_be[:5], "vit_digits": vit_be[:3],
                                "r3d_video": [16, 32, 64], "vit_patches64": [128, 512]},
            break_even_examples={"vit_patches": 2, "vit_digits": 1, "r3d_video": 1,
                                 "vit_patches64": 1},
            break_even_seeds=(0,), reference_budget64=1024,
            sanity_examples=1, sanity_samples=8, sanity_budget=64, figure_examples=3)
    return Settings(
        quick=False, seed=seed,
        n_examples={"vit_patches": 12, "vit_digits": 6, "r3d_video": 8},
        budgets={"vit_patches": [64, 256, 1024], "vit_digits": [64, 256, 1024],
                 "r3d_video": [32, 64, 128]},
        break_even_budgets={"vit_patches": vit_be, "vit_digits": vit_be,
                            "r3d_video": [16, 32, 64, 128, 256],
                            "vit_patches64": [128, 256, 512, 1024, 2048]},
        break_even_examples={"vit_patches": 6, "vit_digits": 4, "r3d_video": 4,
                             "vit_patches64": 3})


# --- examples -----------------------------------------------------------------------------------
@dataclass
class Examples:
    """Stacked test examples of one model's dataset with their player-level ground truth."""

    x: Tensor                   # (B, C, H, W) images or (B, C, T, H, W) clips
    y: Tensor                   # (B,) true classes
    relevant: Tensor            # (B, N) bool: players the class depends on
    truth: Tensor               # (B, H, W) or (B, T, H, W) bool pixels of the evidence
    pairs: Tensor | None        # (B, N, N) bool true interacting pairs, when the data has them
    classes: list[str]
    truth_kind: str             # how `relevant` was made (the digits' is a weak ink mask)


def load_examples(spec: zoo.ModelSpec, model: nn.Module, n: int) -> Examples:
    """The first `n` test examples in learned_report's seeded order, with relevant players."""
    ds = data.get_dataset(spec.dataset, "test", seed=spec.seed, **spec.data_options)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(EXAMPLE_SEED))[:n]
    items = [ds[i] for i in idx.tolist()]
    x = torch.stack([it["x"] for it in items])
    truth = torch.stack([it["truth"] for it in items]).bool()
    if "relevant" in items[0]:
        relevant, kind = torch.stack([it["relevant"] for it in items]), "relevant patches"
    elif x.ndim == 5:
        relevant = data.cell_truth(truth, tuple(model.tubelets))
        kind = f"tubelets {tuple(model.tubelets)} the moving object occupies"
    else:
        relevant = data.patch_truth(truth, model.patch_size)
        kind = "patches holding ink (weak truth: where ink is absent matters too)"
    pairs = torch.stack([it["pairs"] for it in items]).bool() if "pairs" in items[0] else None
    return Examples(x, torch.stack([it["y"] for it in items]), relevant.bool(), truth, pairs,
                    list(ds.classes), kind)


# --- running the methods ------------------------------------------------------------------------
@dataclass
class Run:
    """One method's explanations of every example, one call per example."""

    method: str
    budget: int | None
    options: dict
    values: Tensor              # (B, N)
    pixel_map: Tensor           # (B, H, W) or (B, T, H, W)
    pairs: Tensor | None        # (B, N, N) pair terms, for methods that give them
    evals: list[int]            # model rows per explanation (forwards + backwards)
    seconds: list[float]
    forward_seconds: list[float | None]  # a forward timed beside each cheap explanation, else None

    @property
    def label(self) -> str:
        return self.method if self.budget is None else f"{self.method} @ {self.budget}"


def method_options(method: str, settings: Settings) -> dict:
    """The options a method runs with in this benchmark."""
    if method in ("gradient_shap", "captum_gradient_shap"):
        return {"n_samples": settings.n_samples}
    if method == "integrated_gradients":
        return {"n_steps": settings.ig_steps}
    return {}


CHEAP_SECONDS = 0.05     # explanations faster than this are timed against a paired forward
CHEAP_REPEATS = 10


def timed_explain(method: str, model: nn.Module, x: Tensor, target: Tensor, *, seed: int,
                  **options) -> tuple[Attribution, float | None]:
    """`explain`, and for a cheap explanation a forward time measured beside it.

    A single cold run of a millisecond method measures mostly first-call overhead, and a forward
    pass timed minutes earlier on a busy machine is no fair yardstick either. So explanations
    under CHEAP_SECONDS are re-run CHEAP_REPEATS times (same seed, same values), alternating with
    one forward pass of the model on the same input: cost.seconds becomes the median explanation
    time and the second value the median forward time (None for slower explanations, which run
    once and are compared with `forward_seconds`).
    """
    out = explain(method, model, x, target, seed=seed, **options)
    if out.cost.seconds >= CHEAP_SECONDS:
        return out, None
    times, forwards = [], []
    for _ in range(CHEAP_REPEATS):
        times.append(explain(method, model, x, target, seed=seed, **options).cost.seconds)
        with torch.no_grad():
            start = time.perf_counter()
            model(x)
            forwards.append(time.perf_counter() - start)
    out = replace(out, cost=replace(out.cost, seconds=float(np.median(times))))
    return out, float(np.median(forwards))


def run_method(method: str, model: nn.Module, ex: Examples, targets: Tensor, *, seed: int,
               budget: int | None = None, options: dict | None = None) -> Run:
    """Explain each example on its own (costs are per explanation) and stack the results."""
    options = dict(options or {})
    if budget is not None:
        options["budget"] = budget
    timed = [timed_explain(method, model, ex.x[i:i + 1], targets[i:i + 1], seed=seed, **options)
             for i in range(len(ex.x))]
    outs = [out for out, _ in timed]
    pairs = [o.extras.get("pairs") for o in outs]
    return Run(method, budget, options,
               values=torch.cat([o.values for o in outs]).double(),
               pixel_map=torch.cat([o.pixel_map for o in outs]).double(),
               pairs=torch.cat(pairs).double() if all(p is not None for p in pairs) else None,
               evals=[o.cost.forwards + o.cost.backwards for o in outs],
               seconds=[o.cost.seconds for o in outs],
               forward_seconds=[fwd for _, fwd in timed])


@torch.no_grad()
def forward_seconds(model: nn.Module, x: Tensor, repeats: int = 30) -> float:
    """Median seconds of one plain forward pass of the model on one input (B = 1)."""
    model.eval()
    for _ in range(3):
        model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# --- scoring ------------------------------------------------------------------------------------
def nanmean(values: list[float | None]) -> float | None:
    """Mean over the defined values (None and nan drop out), None when none is defined."""
    v = [float(a) for a in values if a is not None and not math.isnan(float(a))]
    return float(np.mean(v)) if v else None


def positive_mass(pixel_map: Tensor) -> bool:
    """Whether a map keeps anything after clipping negatives (equal-mass rescaling needs it)."""
    return bool((pixel_map > 0).any())


def score(run: Run, model: nn.Module, ex: Examples, targets: Tensor, exact: Tensor,
          fwd_seconds: float) -> dict:
    """Every metric of one run, per example and averaged."""
    B = len(ex.x)
    per: dict[str, list] = {k: [None] * B for k in METRIC_KEYS}
    curves = {"insertion": [], "deletion": []}
    for i in range(B):
        v, t = run.values[i], int(targets[i])
        per["pearson_exact"][i] = pearson(v, exact[i])
        per["spearman_exact"][i] = spearman(v, exact[i])
        if run.method not in UNITLESS:
            per["rel_l2_exact"][i] = rel_l2(v, exact[i])
        per["auroc_truth"][i] = auroc(v, ex.relevant[i])
        if ex.relevant[i].any():
            per["pointing_game"][i] = float(pointing_game(v, ex.relevant[i]))
        if run.pairs is not None and ex.pairs is not None and ex.pairs[i].any():
            p = run.pairs[i]
            per["pair_auroc_truth"][i] = pair_auroc((p + p.T) / 2, ex.pairs[i])
        curve = insertion_deletion(game_for(model, ex.x[i].to(model_device(model))), v, t)
        per["insertion_auc"][i], per["deletion_auc"][i] = curve["insertion_auc"], curve["deletion_auc"]
        curves["insertion"].append(curve["insertion_curve"])
        curves["deletion"].append(curve["deletion_curve"])
        # no row counted means the cost was not measured (no explanation is free): null, not 0
        per["evals"][i] = float(run.evals[i]) if run.evals[i] > 0 else None
        per["seconds"][i] = run.seconds[i]
        per["forward_ratio"][i] = forward_ratio(run.seconds[i], run.forward_seconds[i] or fwd_seconds)
    y_full, y_masked = masked_probabilities(model, ex.x, run.pixel_map, targets, "blur")
    for i in range(B):
        per["avg_drop"][i], per["avg_increase"][i] = average_drop_increase(
            y_full[i:i + 1], y_masked[i:i + 1])
    keep = [i for i in range(B) if positive_mass(run.pixel_map[i])]   # an empty map has no mass
    if keep:
        y_full, y_masked = masked_probabilities(model, ex.x[keep], run.pixel_map[keep],
                                                targets[keep], "blur", r=RESCALE_SHARE)
        for j, i in enumerate(keep):
            per["avg_drop_rescaled"][i], per["avg_increase_rescaled"][i] = \
                average_drop_increase(y_full[j:j + 1], y_masked[j:j + 1])
    row = {k: nanmean(per[k]) for k in METRIC_KEYS}
    row.update(insertion_curve=torch.stack(curves["insertion"]).mean(0).tolist(),
               deletion_curve=torch.stack(curves["deletion"]).mean(0).tolist(),
               fractions=curve["fractions"].tolist(),   # the same steps for every example
               per_example=per)
    return row


# --- one model ----------------------------------------------------------------------------------
@dataclass
class ModelResult:
    """One model's runs, results rows and break-even budgets (what the figures draw from)."""

    key: str
    info: dict                  # the `models` entry
    rows: list[dict]
    runs: dict[str, Run]        # label -> run, for the figures
    examples: Examples
    targets: Tensor
    skipped: list[dict]
    break_even: dict | None = None
    model: nn.Module | None = None


def plan(key: str, settings: Settings) -> list[tuple[str, int | None]]:
    """(method, budget) pairs to run on one model: samplers once per budget."""
    methods = VIDEO_METHODS if key == "r3d_video" else IMAGE_METHODS
    out = []
    for m in methods:
        if m in SAMPLERS:
            out += [(m, b) for b in settings.budgets[key]]
        else:
            out.append((m, None))
    return out


def labels(todo: list[tuple[str, int | None]]) -> list[str]:
    """Run labels of planned (method, budget) pairs, as `Run.label` writes them."""
    return [m if b is None else f"{m} @ {b}" for m, b in todo]


def model_info(name: str, trained: zoo.Trained, plain: zoo.Trained) -> dict:
    """The `models` entry: which zoo model, its accuracy and its plain-head twin's."""
    spec = zoo.SPECS[name]
    model = trained.model
    game = ("token dropping" if getattr(model, "removal", "drop") == "drop" else
            f"{model.baseline} baseline on {tuple(model.tubelets)} tubelets")
    return {"zoo_model": name, "accuracy": trained.meta["accuracy"],
            "plain_model": spec.plain, "plain_head_accuracy": plain.meta["accuracy"],
            "n_players": model.n_players, "game": game, "dataset": spec.dataset,
            "description": spec.description}


def load_models(settings: Settings, progress: bool = True) -> dict[str, zoo.Trained]:
    """Every LearnedSHAP model and its plain-head twin, loaded (or trained) before any timing."""
    names = [*MODELS.values(), *BREAK_EVEN_ONLY.values()]
    names += [zoo.SPECS[n].plain for n in names]
    return {n: zoo.load(n, quick=settings.quick, progress=progress) for n in names}


def benchmark_model(key: str, trained: dict[str, zoo.Trained], settings: Settings,
                    progress: bool = True) -> ModelResult:
    """Run and score every method on one LearnedSHAP model, then its break-even budgets."""
    name = MODELS[key]
    model = trained[name].model.eval()
    plain = trained[zoo.SPECS[name].plain]
    info = model_info(name, trained[name], plain)
    ex = load_examples(zoo.resolve(name, settings.quick), model, settings.n_examples[key])
    device = model_device(model)
    with torch.no_grad():
        targets = model(ex.x.to(device)).argmax(-1).cpu()                  # (B,) predicted
    info["forward_seconds"] = forward_seconds(model, ex.x[:1].to(device))
    info["truth"] = ex.truth_kind
    info["examples_correct"] = float((targets == ex.y).double().mean())
    # LearnedSHAP's whole cost: its explanation (the forward) against the plain-head model's
    info["learned_cost"] = learned_report.forward_cost(model, plain.model, ex.x[:8].to(device))

    todo = plan(key, settings)
    runs, skipped = {}, []
    # exact first: every other run is scored against it
    for method, budget in tqdm(sorted(todo, key=lambda mb: mb[0] != "exact"), desc=key,
                               disable=not progress):
        try:
            run = run_method(method, model, ex, targets, seed=settings.seed, budget=budget,
                             options=method_options(method, settings))
        except ValueError as err:          # a method that cannot explain this model says why
            skipped.append({"model": key, "method": method, "reason": str(err)})
            continue
        runs[run.label] = run
    exact = runs["exact"]
    runs = {label: runs[label] for label in labels(todo) if label in runs}   # the plan's order
    rows = []
    for run in runs.values():
        row = {"model": key, "zoo_model": name, "method": run.method, "budget": run.budget,
               "options": {k: v for k, v in run.options.items() if k != "budget"},
               "n_examples": len(ex.x)}
        row.update(score(run, model, ex, targets, exact.values, info["forward_seconds"]))
        if row["evals"] is None:
            skipped.append({"model": key, "method": run.method, "reason": "explain() counted no "
                            "model rows, so `evals` is null (a counting gap in the explainer; "
                            "one forward pass per explanation is expected for learned_shap)"})
        rows.append(row)
    result = ModelResult(key, info, rows, runs, ex, targets, skipped, model=model)
    result.break_even = break_even_exact(result, settings, progress)
    return result


def break_even_exact(res: ModelResult, settings: Settings, progress: bool) -> dict:
    """learned_report.break_even on the first examples, against the exact values computed here."""
    k = min(settings.break_even_examples[res.key], len(res.examples.x))
    exact, learned = res.runs["exact"], res.runs["learned_shap"]
    rows = [{"target": int(res.targets[i]), "reference": exact.values[i].tolist()}
            for i in range(k)]
    errors = [rel_l2(learned.values[i], exact.values[i]) for i in range(k)]
    summary = {"examples": rows, "rel_l2": {"mean": float(np.mean(errors))}}
    exs = [learned_report.Example(res.examples.x[i], int(res.examples.y[i]), None)
           for i in range(k)]
    out = learned_report.break_even(res.model, exs, summary, settings.break_even_budgets[res.key],
                                    seeds=settings.break_even_seeds, progress=progress)
    return {"n_players": res.model.n_players, "reference": "exact", "n_examples": k,
            "seeds": list(settings.break_even_seeds),
            "learned_evals": nanmean([float(e) for e in learned.evals[:k]]), **out}


def break_even_64(trained: dict[str, zoo.Trained], settings: Settings,
                  progress: bool = True) -> tuple[dict, dict]:
    """The 64-patch ViT: LearnedSHAP against a large-budget KernelSHAP, and the break-even."""
    name = BREAK_EVEN_ONLY["vit_patches64"]
    model = trained[name].model.eval()
    info = model_info(name, trained[name], trained[zoo.SPECS[name].plain])
    info["break_even_only"] = True
    spec = zoo.resolve(name, settings.quick)
    k = settings.break_even_examples["vit_patches64"]
    exs = learned_report.examples(spec, k, seed=EXAMPLE_SEED)
    info["forward_seconds"] = forward_seconds(model, exs[0].x[None])
    learned = learned_report.compare(model, exs, settings.reference_budget64, progress)
    out = learned_report.break_even(model, exs, learned, settings.break_even_budgets["vit_patches64"],
                                    seeds=settings.break_even_seeds, progress=progress)
    evals = explain("learned_shap", model, exs[0].x, learned["examples"][0]["target"]).cost
    return info, {"n_players": model.n_players, "n_examples": k,
                  "learned_evals": evals.forwards + evals.backwards,
                  "reference": f"kernel_shap budget {settings.reference_budget64}",
                  "seeds": list(settings.break_even_seeds),
                  "learned_pearson": learned["pearson"]["mean"], **out}


# --- sanity -------------------------------------------------------------------------------------
def randomisation_layers(model: nn.Module) -> list[str]:
    """Cascading order for a LearnedSHAP ViT: head, final norm, blocks last to first, embedding."""
    from timm.models.vision_transformer import VisionTransformer

    vit = next((n for n, m in model.named_modules() if isinstance(m, VisionTransformer)), None)
    if vit is None:
        raise ValueError(f"randomisation_layers handles LearnedSHAP ViTs, not "
                         f"{type(model).__name__}; pass layers= to cascading_randomization")
    depth = len(dict(model.named_modules())[vit].blocks)
    return (["head", f"{vit}.norm"] + [f"{vit}.blocks.{i}" for i in reversed(range(depth))]
            + [f"{vit}.patch_embed"])


def sanity(res: ModelResult, settings: Settings, progress: bool = True) -> dict:
    """Cascading randomisation of a few methods on the first examples: similarity per step."""
    layers = randomisation_layers(res.model)
    k = min(settings.sanity_examples, len(res.examples.x))
    options = {"gradient_shap": {"n_samples": settings.sanity_samples},
               "permutation": {"budget": settings.sanity_budget}}
    out = {"model": res.key, "layers": layers, "n_examples": k, "methods": {}}
    for method in tqdm(SANITY_METHODS, desc="cascading randomisation", disable=not progress):
        def explain_fn(m: nn.Module, x: Tensor, t: int, method: str = method) -> Tensor:
            return explain(method, m, x[None], t, seed=settings.seed,
                           **options.get(method, {})).values[0]
        steps = [cascading_randomization(res.model, explain_fn, res.examples.x[i],
                                         int(res.targets[i]), layers, seed=settings.seed)
                 for i in range(k)]
        out["methods"][method] = {
            "spearman": [nanmean([s[j]["spearman"] for s in steps]) for j in range(len(layers))],
            "pearson": [nanmean([s[j]["pearson"] for s in steps]) for j in range(len(layers))],
            "options": options.get(method, {})}
    return out


# --- markdown -----------------------------------------------------------------------------------
def sig3(v: float | None) -> str:
    """A number with 3 significant digits, thousands separated; an en dash for a missing value."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    rounded = float(f"{float(v):.3g}")            # 9.996 -> 10.0 moves to the next decade
    if rounded == 0:
        return "0"
    digits = math.floor(math.log10(abs(rounded)))
    if digits >= 3:
        return f"{rounded:,.0f}"
    if digits < -3:
        return f"{rounded:.2e}"
    return f"{rounded:.{2 - digits}f}"


def best_rows(rows: list[dict], column: Column, exclude: set[int] | None = None) -> set[int]:
    """Indices of the rows with the best value of a column, as shown (3 digits): ties all win.

    Rows in `exclude` and rows without a value compete with no one; with fewer than two
    competitors nothing is best.
    """
    exclude = exclude or set()
    shown = {i: float(sig3(r.get(column.key)).replace(",", ""))
             for i, r in enumerate(rows)
             if i not in exclude and r.get(column.key) is not None
             and not math.isnan(r[column.key])}
    if len(shown) < 2:
        return set()
    best = max(shown.values()) if column.better == "max" else min(shown.values())
    return {i for i, v in shown.items() if v == best}


def row_label(row: dict) -> str:
    """A results row's name in tables: the method, with its budget for samplers."""
    return row["method"] if row.get("budget") is None else f"{row['method']} @ {row['budget']:,}"


def shortfalls(rows: list[dict], method: str = "learned_shap") -> list[dict]:
    """The columns of one model's rows where `method` is not the best, with the best value.

    The same rule as the bold in results.md: values compared as shown (3 digits), and in the
    columns against exact values the exact row is the reference, not a rival.
    """
    mine = next((i for i, r in enumerate(rows) if r["method"] == method), None)
    if mine is None:
        raise ValueError(f"no {method!r} row among the {len(rows)} rows given; pass the rows of "
                         "one model, e.g. [r for r in results['results'] if r['model'] == key]")
    reference = {i for i, r in enumerate(rows) if r["method"] == "exact"}
    out = []
    for c in COLUMNS:
        if rows[mine].get(c.key) is None:
            continue
        best = best_rows(rows, c, reference if c.agreement else None)
        if best and mine not in best:
            winner = rows[min(best)]
            out.append({"column": c.key, "header": c.header, "value": rows[mine][c.key],
                        "best": winner[c.key], "best_method": row_label(winner)})
    return out


def markdown_table(rows: list[dict], columns: list[Column] = COLUMNS) -> str:
    """Methods as rows, metrics as columns, 3 significant digits, the best per column in bold.

    In the columns comparing with exact values the exact row is the reference, not a rival.
    Columns with no value in any row are left out.
    """
    columns = [c for c in columns if any(r.get(c.key) is not None for r in rows)]
    reference = {i for i, r in enumerate(rows) if r["method"] == "exact"}
    bold = {c.key: best_rows(rows, c, reference if c.agreement else None) for c in columns}
    lines = ["| method | " + " | ".join(c.header for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for i, r in enumerate(rows):
        label = row_label(r)
        cells = []
        for c in columns:
            text = sig3(r.get(c.key))
            cells.append(f"**{text}**" if i in bold[c.key] else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def break_even_table(break_even: dict) -> str:
    """One line per model: LearnedSHAP's error and the evaluations samplers need to match it."""
    lines = ["| model | players | reference | examples × seeds | LearnedSHAP rel. L2 | "
             "LearnedSHAP evals | permutation evals to match | KernelSHAP evals to match |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    def match(sampler: dict) -> str:
        if sampler["break_even_evals"] is not None:
            return sig3(sampler["break_even_evals"])
        grid = [c["budget"] for c in sampler["curve"]]
        return f"not reached by {max(grid):,}" if grid else "–"

    for key, b in break_even.items():
        lines.append(f"| {key} | {b['n_players']} | {b['reference']} | "
                     f"{b['n_examples']} × {len(b['seeds'])} | {sig3(b['learned_rel_l2'])} | "
                     f"{b['learned_evals']:g} | {match(b['permutation'])} | {match(b['kernel'])} |")
    return "\n".join(lines)


def sanity_table(s: dict) -> str:
    """Spearman similarity of |attributions| to the intact model's after each randomised layer."""
    short = [name.split(".")[-2] + " " + name.split(".")[-1] if ".blocks." in name
             else name.split(".")[-1] for name in s["layers"]]
    lines = ["| method | " + " | ".join(f"+ {n}" for n in short) + " |",
             "|---|" + "---:|" * len(short)]
    for method, m in s["methods"].items():
        lines.append(f"| {method} | " + " | ".join(sig3(v) for v in m["spearman"]) + " |")
    return "\n".join(lines)


def models_table(models: dict) -> str:
    """The explained models: LearnedSHAP accuracy beside the plain-head twin's, and the game."""
    lines = ["| benchmark key | zoo model | accuracy | plain head accuracy | players | game |",
             "|---|---|---:|---:|---:|---|"]
    for key, m in models.items():
        lines.append(f"| {key} | `{m['zoo_model']}` | {m['accuracy']:.1%} | "
                     f"{m['plain_head_accuracy']:.1%} (`{m['plain_model']}`) | {m['n_players']} | "
                     f"{m['game']}{' (break-even only)' if m.get('break_even_only') else ''} |")
    return "\n".join(lines)


def config_line(config: dict) -> str:
    v = config["versions"]
    return (f"Configuration: seed {config['seed']}, examples {config['n_examples']}, GradientSHAP "
            f"{config['n_samples']} samples, IG {config['ig_steps']} steps, sampler budgets "
            f"{config['budgets']}, quick={config['quick']}, {config['threads']} torch thread(s); "
            f"torch {v['torch']}, timm {v['timm']}, shap {v['shap']}, captum {v['captum']}, "
            f"shapiq {v['shapiq']}; {config['date']}.")


def reduction_sentence(settings: Settings) -> str:
    """What was cut to fit the time budget, in words."""
    if settings.quick:
        return ("**Quick mode**: tiny models trained for an epoch or two, "
                f"{sum(settings.n_examples.values())} examples in all, GradientSHAP with "
                f"{settings.n_samples} samples and small sampler budgets. The numbers test the "
                "pipeline; they are not results.")
    n = settings.n_examples
    return (f"To keep the full benchmark within about four minutes on two CPU cores (it runs "
            f"inside `make run`), it scores fewer examples than the learned-SHAP report's 32: "
            f"{n['vit_patches']} patch-game images, {n['vit_digits']} digits and "
            f"{n['r3d_video']} clips (exact enumeration costs 65,536 ViT evaluations per image). "
            f"GradientSHAP keeps its default {settings.n_samples} samples; the break-even "
            f"budgets use the first {settings.break_even_examples['vit_patches']} images "
            f"({settings.break_even_examples['vit_digits']} digits, "
            f"{settings.break_even_examples['r3d_video']} clips, "
            f"{settings.break_even_examples['vit_patches64']} 64-patch images) with "
            f"{len(settings.break_even_seeds)} seeds, and the 64-patch reference is KernelSHAP "
            f"with {settings.reference_budget64:,} evaluations (the learned-SHAP report's: "
            f"{learned_report.REFERENCE_BUDGET64:,}).")


def write_markdown(results: dict, settings: Settings) -> str:
    """results.md: a table per model, break-even, sanity, configuration."""
    out = ["# Benchmark: every explainer on the same LearnedSHAP models", "",
           "Each method explains the LearnedSHAP models' predicted class; every Shapley quantity "
           "and the insertion/deletion curves use the model's own masking game (token dropping "
           "for the ViTs, blurred (2, 2, 2) tubelets for the 3D-ResNet). Means over examples; "
           "bold: best per column (in the columns against exact, among the other methods). "
           "evals: model rows per explanation (forwards + backwards); × forward: seconds per "
           "explanation over one plain forward pass of the same model (for explanations under "
           f"{1000 * CHEAP_SECONDS:.0f} ms, medians of {CHEAP_REPEATS} warm runs of each, "
           "alternating). Average Drop / Increase "
           "mask the input towards its blur by the normalised map; \"eq. mass\" rescales every "
           f"map to {RESCALE_SHARE:.0%} of the maximal mass first (seed 004). Columns without "
           "a value in any row are omitted.", "", reduction_sentence(settings), "",
           "## Models", "", models_table(results["models"]), ""]
    for key, info in results["models"].items():
        if info.get("break_even_only"):
            continue
        rows = [r for r in results["results"] if r["model"] == key]
        out += [f"## {key} (`{info['zoo_model']}`: accuracy {info['accuracy']:.1%}, plain head "
                f"{info['plain_head_accuracy']:.1%})", "",
                f"{info['n_players']} players, game: {info['game']}; truth: {info['truth']}; "
                f"{rows[0]['n_examples'] if rows else 0} examples, "
                f"{info['examples_correct']:.0%} predicted correctly; one forward "
                f"{1000 * info['forward_seconds']:.2f} ms.", "", markdown_table(rows), ""]
        if key == "vit_digits":
            out += ["The digits' truth is weak (patches holding ink; where ink is absent matters "
                    "too), so read its AUROC and pointing game with care.", ""]
    out += ["## Break-even: evaluations a sampler needs to match LearnedSHAP's error", "",
            break_even_table(results["break_even"]), ""]
    if results.get("sanity"):
        s = results["sanity"]
        out += [f"## Sanity: cascading randomisation ({s['model']}, {s['n_examples']} example(s))",
                "", "Spearman rank correlation of |attributions| with those of the intact model "
                "after randomising each further layer, from the head down (Adebayo et al. 2018); "
                "a method that follows the model falls towards 0.", "", sanity_table(s), ""]
    if results["skipped"]:
        out += ["## Methods that could not be run or measured", ""]
        out += [f"- {s['method']} on {s['model']}: {s['reason']}" for s in results["skipped"]]
        out += [""]
    t = results["timings"]
    out += [f"Exact Shapley values of the 16-patch ViT: {t['exact_seconds_per_image']:.2f} s per "
            f"image; this benchmark: {t['benchmark_seconds']:.0f} s"
            + (f"; `make run`: {t['make_run_seconds']:.0f} s" if t.get("make_run_seconds")
               else "") + ".", "", config_line(results["config"]), ""]
    return "\n".join(out)


# --- figures ------------------------------------------------------------------------------------
def figure_runs(runs: dict[str, Run]) -> dict[str, Run]:
    """The runs shown in figures: samplers only at their largest budget."""
    largest = {}
    for run in runs.values():
        if run.method in SAMPLERS and (run.method not in largest
                                       or run.budget > largest[run.method].budget):
            largest[run.method] = run
    return {label: r for label, r in runs.items()
            if r.method not in SAMPLERS or largest[r.method] is r}


def varied_indices(labels: list[int], n: int) -> list[int]:
    """Up to `n` indices taking each class in turn (in order of first appearance): a varied pick."""
    queues: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        queues.setdefault(c, []).append(i)
    picks: list[int] = []
    while len(picks) < min(n, len(labels)):
        for queue in queues.values():
            if queue and len(picks) < n:
                picks.append(queue.pop(0))
    return picks


def grid_images(res: ModelResult, n: int) -> Figure:
    """Methods x examples (one of each class first) on the 16-patch ViT, key objects outlined."""
    ex = res.examples
    idx = varied_indices(ex.y.tolist(), n)
    maps = {label: run.pixel_map[idx].float() for label, run in figure_runs(res.runs).items()}
    titles = [f"{ex.classes[int(ex.y[i])]}\npred. {ex.classes[int(res.targets[i])]}" for i in idx]
    return plot_attributions(ex.x[idx], maps, truth=ex.truth[idx], patch_size=res.model.patch_size,
                             titles=titles, panel=1.3,
                             suptitle=f"Every method on {res.info['zoo_model']} "
                                      "(predicted class; key objects outlined)")


def grid_video(res: ModelResult, index: int = 0, panel: float = 1.2) -> Figure:
    """Methods x frames for one clip: the frames on top, one row per method, truth outlined."""
    ex = res.examples
    clip, truth = ex.x[index], ex.truth[index]                         # (3, T, H, W), (T, H, W)
    runs = figure_runs(res.runs)
    T, H, W = clip.shape[1:]
    spatial = tuple(res.model.tubelets[1:])
    mask = truth_rows(truth, 1, (T, H, W), None)[0]
    fig = Figure(figsize=(panel * T + 1.6, panel * (1 + len(runs))), layout="constrained")
    axes = np.asarray(fig.subplots(1 + len(runs), T, squeeze=False))
    gt = res.model.tubelets[0]
    for t in range(T):
        draw_overlay(axes[0, t], clip[:, t], None, 1.0, truth=mask[t], grid=spatial,
                     title=f"t={t} · time cell {t * gt // T}")
    axes[0, 0].set_ylabel("input", fontsize=8)
    for r, (label, run) in enumerate(runs.items(), start=1):
        heat = run.pixel_map[index].float()                            # (T, H, W)
        vmax = symmetric_limit(heat)
        mappable = None
        for t in range(T):
            mappable = draw_overlay(axes[r, t], clip[:, t], heat[t], vmax, truth=mask[t],
                                    grid=spatial)
        axes[r, 0].set_ylabel(label, fontsize=7)
        colorbar(fig, mappable, axes[r, :].tolist())
    y, p = int(ex.y[index]), int(res.targets[index])
    fig.suptitle(f"Every method on {res.info['zoo_model']}: one clip, class {ex.classes[y]} "
                 f"(pred. {ex.classes[p]}); moving object outlined", fontsize=10)
    return fig


def convergence(res: ModelResult, break_even: dict) -> Figure:
    """Sampler error against exact values vs evaluations, with one-shot methods as points."""
    fig = Figure(figsize=(8.4, 4.2), layout="constrained")
    ax = fig.subplots()
    colours = {"permutation": "#1f77b4", "kernel": "#ff7f0e"}
    for method in SAMPLERS:
        curve = break_even[method]["curve"]
        if curve:
            ax.plot([c["evals"] for c in curve], [c["rel_l2"] for c in curve], "-o", ms=4,
                    color=colours[method], label=f"{method} sampling (mean over seeds)")
    k = break_even["n_examples"]
    rows = {r["method"]: r for r in res.rows if r["budget"] is None}
    points = [("learned_shap", "LearnedSHAP", "*", "#d62728", 14),
              ("gradient_shap", "GradientSHAP (shap)", "s", "#2ca02c", 7),
              ("captum_gradient_shap", "GradientSHAP (captum)", "D", "#9467bd", 6),
              ("integrated_gradients", "integrated gradients", "^", "#8c564b", 7)]
    for method, label, marker, colour, size in points:
        if method not in rows:
            continue
        per = rows[method]["per_example"]
        err, evals = nanmean(per["rel_l2_exact"][:k]), nanmean(per["evals"][:k])
        if err is not None and evals:
            ax.plot([evals], [err], marker, ms=size, color=colour, label=f"{label} (one run)")
    ax.axhline(break_even["learned_rel_l2"], color="#d62728", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model evaluations per explanation (forwards + backwards)")
    ax.set_ylabel("relative L2 error vs exact Shapley values")
    ax.set_title(f"{res.info['zoo_model']}: error vs cost ({k} examples; dashed: LearnedSHAP)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return fig


def insertion_deletion_figure(results: list[ModelResult]) -> Figure:
    """Mean insertion and deletion curves per method, one row per model."""
    fig = Figure(figsize=(10, 3.2 * len(results)), layout="constrained")
    axes = np.asarray(fig.subplots(len(results), 2, squeeze=False))
    cmap = matplotlib.colormaps["tab10"]
    for r, res in enumerate(results):
        shown = figure_runs(res.runs)
        rows = [row for row in res.rows
                if (row["method"] if row["budget"] is None
                    else f"{row['method']} @ {row['budget']}") in shown]
        for j, kind in enumerate(("insertion", "deletion")):
            ax = axes[r, j]
            for c, row in enumerate(rows):
                label = row["method"] if row["budget"] is None else \
                    f"{row['method']} @ {row['budget']}"
                style = "-" if row["method"] in ("learned_shap", "exact") else "--"
                ax.plot(row["fractions"], row[f"{kind}_curve"], style, color=cmap(c % 10),
                        lw=2 if row["method"] == "learned_shap" else 1.2,
                        label=f"{label} (AUC {row[f'{kind}_auc']:.3f})")
            ax.set_title(f"{res.key}: {kind} ({'higher' if j == 0 else 'lower'} is better)",
                         fontsize=9)
            ax.set_xlabel(f"fraction of players {'inserted' if j == 0 else 'deleted'}")
            ax.set_ylabel("probability of the predicted class")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
    fig.suptitle("Insertion / deletion through each model's masking game, mean over examples",
                 fontsize=10)
    return fig


# --- the whole benchmark ------------------------------------------------------------------------
def versions() -> dict[str, str | None]:
    out = {}
    for package in ("torch", "timm", "shap", "captum", "shapiq", "numpy"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def json_ready(obj):
    """Tensors to lists, nan and inf to None, recursively: what json can write."""
    if isinstance(obj, Tensor):
        return json_ready(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return json_ready(obj.item())
    return obj


def make_run_seconds(given: float | None) -> float | None:
    """`make run`'s duration when known: the option, else LEARNEDSHAP_MAKE_RUN_SECONDS."""
    if given is not None:
        return given
    env = os.environ.get("LEARNEDSHAP_MAKE_RUN_SECONDS")
    try:
        return float(env) if env else None
    except ValueError:
        raise ValueError(f"LEARNEDSHAP_MAKE_RUN_SECONDS={env!r} is not a number of seconds; "
                         "set it to e.g. 412.5 or unset it") from None


def warm_imports() -> None:
    """Import the explainers' libraries up front: their first call would time the import."""
    import warnings

    with warnings.catch_warnings():      # shap 0.51 builds colormaps with deprecated setters
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import captum.attr  # noqa: F401
        import pytorch_grad_cam  # noqa: F401
        import shap  # noqa: F401


def run_benchmark(settings: Settings, out: Path, make_run: float | None = None,
                  progress: bool = True) -> dict:
    """Everything: rows, break-even, sanity, timings, config; files written into `out`."""
    start = time.perf_counter()
    torch.set_num_threads(settings.threads)
    warm_imports()
    t0 = time.perf_counter()
    trained = load_models(settings, progress)
    sections, results = {"load_models": time.perf_counter() - t0}, []
    for key in MODELS:
        t0 = time.perf_counter()
        results.append(benchmark_model(key, trained, settings, progress))
        sections[key] = time.perf_counter() - t0
    t0 = time.perf_counter()
    info64, be64 = break_even_64(trained, settings, progress)
    sections["vit_patches64"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    patches = results[0]
    sanity_result = sanity(patches, settings, progress)
    sections["sanity"] = time.perf_counter() - t0

    models = {r.key: r.info for r in results} | {"vit_patches64": info64}
    break_even = {r.key: r.break_even for r in results} | {"vit_patches64": be64}
    out_results = {
        "models": models,
        "results": [row for r in results for row in r.rows],
        "break_even": break_even,
        "sanity": sanity_result,
        "skipped": [s for r in results for s in r.skipped],
        "timings": {"exact_seconds_per_image": float(np.mean(patches.runs["exact"].seconds)),
                    "make_run_seconds": make_run_seconds(make_run),
                    "sections_seconds": sections},
        "config": {**{k: v for k, v in asdict(settings).items()}, "versions": versions(),
                   "date": datetime.datetime.now().isoformat(timespec="seconds"),
                   "targets": "predicted class", "example_seed": EXAMPLE_SEED,
                   "rescale_share": RESCALE_SHARE, "average_drop_baseline": "blur",
                   "platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    save_figure(grid_images(patches, settings.figure_examples), out / "benchmark_grid_images.png")
    video = next(r for r in results if r.key == "r3d_video")
    save_figure(grid_video(video), out / "benchmark_grid_video.png")
    save_figure(convergence(patches, break_even["vit_patches"]), out / "benchmark_convergence.png")
    save_figure(insertion_deletion_figure(results), out / "benchmark_insertion_deletion.png")
    sections["figures"] = time.perf_counter() - t0
    out_results["timings"]["benchmark_seconds"] = time.perf_counter() - start
    out_results = json_ready(out_results)
    (out / "results.json").write_text(json.dumps(out_results, indent=1) + "\n")
    markdown = write_markdown(out_results, settings)
    (out / "results.md").write_text(markdown)
    if out.resolve() == DEFAULT_OUT.resolve():      # the committed results: show them in the README
        replace_block("results", re.sub(r"(?m)^#", "###", markdown))
    return out_results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=None,
                        help="tiny models, a few examples (also when LEARNEDSHAP_QUICK=1)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for results.json, results.md and the figures (default "
                             "shap_overlays/; in quick mode <cache>/benchmark-quick/, so a smoke "
                             "test never overwrites the committed results)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default 1: robust on a shared CPU)")
    parser.add_argument("--make-run-seconds", type=float, default=None,
                        help="duration of `make run`, reported in timings (or set "
                             "LEARNEDSHAP_MAKE_RUN_SECONDS)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    quick = zoo.quick_mode(args.quick)
    settings = settings_for(quick, args.seed)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        settings.threads = args.threads
    out = args.out or (zoo.cache_dir() / "benchmark-quick" if quick else DEFAULT_OUT)
    results = run_benchmark(settings, out, args.make_run_seconds, progress=not args.no_progress)
    t = results["timings"]
    print(f"benchmark ({'quick' if quick else 'full'}) done in {t['benchmark_seconds']:.0f} s "
          f"-> {out}/results.json, results.md")
    return results


if __name__ == "__main__":
    main()
