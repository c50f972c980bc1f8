"""The benchmark: every explainer on the same LearnedSHAP models and games, in one results table.

Every method explains the *LearnedSHAP* models of the zoo, so LearnedSHAP is compared with the
others on identical models and identical masking games (token dropping for the ViTs, tubelet
tokens dropped for the tubelet-local 3D-ResNet: `references.game_for`). Each test example's
predicted class is explained, one input per call, on the same number of examples from every
class. For each model and run (`plan`; samplers once per budget) `scoring.score` gives agreement
with the exact values, ground truth, faithfulness and cost; then the break-even budgets
(`break_even`) against the same references, Adebayo et al.'s cascading randomisation on the
16-patch ViT, and the timings. Writes `results.json`, `results_timing.json`, `results.md` (`studies.benchmark.markdown`) and
four figures into `--out`. Every wall-clock quantity (seconds, ratios of seconds, the date, the
host) goes to `results_timing.json`, so that a rerun on the same machine writes a byte-identical
`results.json`; `load_results` merges the two back.

    python -m studies.benchmark [--quick] [--out shap_overlays/]
    python -m studies.benchmark --record-make-run SECONDS   # after `make run`: its duration
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from evaluation.examples import EXAMPLE_SEED, Examples, load_examples
from evaluation.metrics import cascading_randomization
from evaluation.records import (
    json_ready,
    merge_fields,
    split_fields,
    versions,
    write_json,
    write_text,
)
from evaluation.references import Reference, reference
from evaluation.runs import SAMPLERS, Run, RunSpec, exact_run, run_method
from evaluation.scoring import RESCALE_SHARE, nanmean, score
from evaluation.timing import forward_cost, forward_seconds
from explainers import explain
from explainers.core import model_device
from models import zoo
from studies.benchmark.break_even import break_even_model
from studies.benchmark.figures import (
    convergence,
    grid_images,
    grid_video,
    insertion_deletion_figure,
)
from studies.benchmark.markdown import render
from studies.benchmark.settings import Settings, settings_for
from tools.readme import replace_block
from viz.overlay import save_figure

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "shap_overlays"

# benchmark key -> the zoo's LearnedSHAP model that every method explains
MODELS = {"vit_patches": "learned_vit_patches", "vit_digits": "learned_vit_digits",
          "r3d_video": "learned_r3d_tubelets"}
BREAK_EVEN_ONLY = {"vit_patches64": "learned_vit_patches64"}   # 64 players: no exact reference
SANITY_METHODS = ["learned_shap", "permutation", "gradient_shap", "gradcam_pp", "attention_rollout"]
FIGURE_DPI = 80     # the benchmark's grids hold a hundred panels: keep the PNGs small
RESULTS = "results.json"
TIMING = "results_timing.json"
# Fields that change from run to run on one machine (wall-clock seconds, ratios of them, the date,
# the host), wherever they sit in the results: written to TIMING, never to RESULTS.
TIMING_FIELDS = frozenset({"seconds", "forward_ratio", "forward_seconds", "learned_cost",
                           "timings", "date", "platform", "cpu_count"})


# --- what runs on each model --------------------------------------------------------------------
GRADIENT_EXPLAINS = {"gradient_shap": "refs black + blur", "captum_gradient_shap":
                     "refs black + blur", "integrated_gradients": "baseline black"}


def plan(key: str, model: nn.Module, settings: Settings) -> list[RunSpec]:
    """The runs on one model, each run the way its own users would run it, or said otherwise."""
    n = model.n_players
    video = key == "r3d_video"
    gradients = [("n_samples", settings.n_samples)]
    specs = [RunSpec("learned_shap", explains="the game"), RunSpec("exact", explains="the game"),
             RunSpec("hierarchical_shapley", explains="the game, quadrants then inside")]
    for sampler in SAMPLERS:
        specs += [RunSpec(sampler, 2 * n * m, explains="the game") for m in settings.budgets[key]]
    specs += [RunSpec("gradient_shap", options=tuple(gradients),
                      explains=GRADIENT_EXPLAINS["gradient_shap"]),
              RunSpec("captum_gradient_shap", options=tuple(gradients),
                      explains=GRADIENT_EXPLAINS["captum_gradient_shap"]),
              RunSpec("integrated_gradients", options=(("n_steps", settings.ig_steps),),
                      explains=GRADIENT_EXPLAINS["integrated_gradients"]),
              # the plain gradient maps the saliency literature compares against (no units)
              RunSpec("saliency", explains="|gradient|"),
              RunSpec("smoothgrad", options=(("n_samples", settings.n_samples),),
                      explains="|gradient|, noise 0.15")]
    # shap's blur-masked workflow as image users call it (Partition, and its permutation twin at
    # one permutation), on logits so that its values share the table's units; its own game
    # (OpenCV's box blur of half the image side), so its error includes the change of game
    pixels = n if video else 3 * math.prod(getattr(model, "image_size", (32, 32)))
    shap_budget = 16 * n
    specs += [RunSpec("shap_partition", options=(("max_evals", shap_budget), ("output", "logit")),
                      explains="shap's blur game: Owen values"),
              RunSpec("shap_permutation", options=(("max_evals", max(shap_budget, 2 * pixels + 1)),
                                                   ("output", "logit")),
                      explains="shap's blur game: Owen values (tree permutations)")]
    if video and getattr(model, "removal", "drop") == "drop":
        # tubelet-local: its game drops tubelet tokens, which no pixel reference matches (as for
        # the ViTs), and its trunk runs on each tubelet: GradCAM++ tiles the maps back
        specs += [RunSpec("deeplift_shap", explains="refs black + blur"),
                  RunSpec("shap_cam", options=(("output", "logit"),),
                          explains="cells of the last stage, removed to the map's mean"),
                  RunSpec("gradcam_pp", explains="layer: last stage, tubelet maps tiled")]
    elif video:   # the game's own removal is a blur: the gradient methods' matching reference
        specs += [RunSpec("gradient_shap", variant="blur ref", explains="ref blur = the game's",
                          options=(*gradients, ("background", "blur"))),
                  RunSpec("integrated_gradients", variant="blur baseline",
                          explains="baseline blur = the game's",
                          options=(("n_steps", settings.ig_steps), ("baseline", "blur"))),
                  RunSpec("deeplift_shap", explains="refs black + blur"),
                  # Shap-CAM at the middle stage: at the last one a cell removed to the map's
                  # mean is invisible to the average pool that follows
                  RunSpec("shap_cam", options=(("target_layer", "layer2.0"), ("output", "logit")),
                          explains="cells of layer2.0, removed to the map's mean"),
                  RunSpec("gradcam_pp", explains="layer: last stage (the head's input)")]
    else:
        specs += [RunSpec("gradcam_pp", explains="layer: final norm (the head's input)"),
                  RunSpec("attention", explains="patch-token queries (the head's)"),
                  RunSpec("attention_rollout", explains="patch-token queries (the head's)")]
    return specs


def notes(key: str, info: dict) -> list[str]:
    """How to read one model's table: what 'vs exact' compares and how each method was run."""
    game = info["game"]
    out = [f"\"vs exact\" compares every row with the exact Shapley values of this model's game "
           f"({game}). The gradient rows explain a game of their own, in which a player is "
           "removed by moving its pixels to a reference input (the `explains` column). The "
           "exact row's values are the references' own (one enumeration of the same game); its "
           f"seconds were measured on the first {info['exact_timed']} examples, since its cost, "
           "2^N model rows, is the same for every input."]
    if key == "r3d_video" and "tubelet tokens" in game:
        out.append("Dropping a tubelet's token has no pixel reference that matches it, so the "
                   "gradient rows keep their defaults. The trunk runs on every tubelet as a clip "
                   "of its own: GradCAM++ reads its last stage with the tubelets' maps tiled "
                   "back into the clip's grid, and Shap-CAM, whose cells would be cells of one "
                   "tubelet, cannot run; neither can DeepLiftSHAP (captum has no LayerNorm rule).")
    elif key == "r3d_video":
        out.append("The rows marked blur use the game's own reference, so they approximate the "
                   "same game; DeepLiftSHAP cannot run here (captum has no LayerNorm rule).")
    else:
        out.append("Token dropping has no pixel reference that matches it, so the gradient "
                   "rows keep their defaults (shap's and captum's examples use such references). "
                   "The LearnedSHAP head reads the patch tokens, never the class token: "
                   "attention and rollout read the attention those patch tokens pay "
                   "(`queries=\"patch_tokens\"`), and GradCAM++ the final norm, whose patch "
                   "tokens reach the logits.")
    return out


# --- one model ----------------------------------------------------------------------------------
@dataclass
class ModelResult:
    """One model's runs, results rows and break-even budgets (what the figures draw from)."""

    key: str
    info: dict                  # the `models` entry
    rows: list[dict]
    runs: dict[str, Run]        # spec key -> run, for the figures
    examples: Examples
    targets: Tensor
    references: list[Reference]
    skipped: list[dict]
    break_even: dict | None = None
    model: nn.Module | None = None


def model_info(name: str, trained: zoo.Trained, plain: zoo.Trained) -> dict:
    """The `models` entry: which zoo model, its accuracy and its plain-head twin's."""
    spec = zoo.SPECS[name]
    model = trained.model
    game = (f"{model.baseline} baseline on {tuple(model.tubelets)} tubelets"
            if getattr(model, "removal", "drop") != "drop" else
            f"tubelet tokens dropped, {tuple(model.tubelets)} tubelets"
            if hasattr(model, "tubelets") else "token dropping")
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
    spec = zoo.resolve(name, settings.quick)
    per_class = max(settings.per_class[key], settings.break_even_per_class[key])
    pool = load_examples(spec, model, per_class)       # the break-even may score more of them
    ex = pool.first(settings.per_class[key])
    device = model_device(model)
    with torch.no_grad():
        targets = model(pool.x.to(device)).argmax(-1).cpu()                # (B,) predicted
    refs = [reference(model, x) for x in tqdm(pool.x, desc=f"{key} references", leave=False,
                                              disable=not progress)]
    info.update(forward_seconds=forward_seconds(model, ex.x[:1].to(device)),
                truth=ex.truth_kind, per_class=settings.per_class[key], n_examples=len(ex),
                examples_correct=float((targets[:len(ex)] == ex.y).double().mean()),
                # LearnedSHAP's whole cost: its explanation against the plain-head model's forward
                learned_cost=forward_cost(model, plain.model, ex.x[:8].to(device)),
                exact_timed=settings.exact_timed)
    info["notes"] = notes(key, info)
    runs, skipped = {}, []
    for rs in tqdm(plan(key, model, settings), desc=key, disable=not progress):
        try:
            if rs.method == "exact":      # the references hold its values: time a few examples
                runs[rs.key] = exact_run(rs, model, ex, targets[:len(ex)], refs[:len(ex)],
                                         seed=settings.seed, timed=settings.exact_timed)
            else:
                runs[rs.key] = run_method(rs, model, ex, targets[:len(ex)], seed=settings.seed)
        except ValueError as err:          # a method that cannot explain this model says why
            skipped.append({"model": key, "method": rs.method, "reason": str(err)})
    rows = []
    for run in runs.values():
        row = {"model": key, "zoo_model": name, "method": run.method, "variant": run.spec.variant,
               "budget": run.spec.budget, "explains": run.spec.explains,
               "options": {k: v for k, v in run.spec.options}, "n_examples": len(ex),
               "queries": run.extras.get("queries")}
        row.update(score(run, model, ex, targets[:len(ex)], refs[:len(ex)],
                         info["forward_seconds"]))
        if row["evals"] is None:
            skipped.append({"model": key, "method": run.method, "reason": "explain() counted no "
                            "model rows, so `evals` is null (a counting gap in the explainer)"})
        rows.append(row)
    result = ModelResult(key, info, rows, runs, ex, targets[:len(ex)], refs[:len(ex)], skipped,
                         model=model)
    k = settings.break_even_per_class[key] * len(ex.classes)
    result.break_even = break_even_model(model, pool.first(settings.break_even_per_class[key]),
                                         targets[:k], refs[:k], settings, key, progress)
    return result


def break_even_64(trained: dict[str, zoo.Trained], settings: Settings,
                  progress: bool = True) -> tuple[dict, dict]:
    """The 64-patch ViT: LearnedSHAP against a sampled reference (noise given), and the break-even."""
    name = BREAK_EVEN_ONLY["vit_patches64"]
    model = trained[name].model.eval()
    info = model_info(name, trained[name], trained[zoo.SPECS[name].plain])
    info["break_even_only"] = True
    spec = zoo.resolve(name, settings.quick)
    ex = load_examples(spec, model, settings.break_even_per_class["vit_patches64"])
    info["forward_seconds"] = forward_seconds(model, ex.x[:1])
    with torch.no_grad():
        targets = model(ex.x.to(model_device(model))).argmax(-1).cpu()
    refs = [reference(model, x, settings.reference_budget64)
            for x in tqdm(ex.x, desc="vit_patches64 references", leave=False,
                          disable=not progress)]
    return info, break_even_model(model, ex, targets, refs, settings, "vit_patches64", progress)


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
    """Cascading randomisation of a few methods on one example per class: similarity per step."""
    layers = randomisation_layers(res.model)
    ex = res.examples.first(settings.sanity_per_class)
    options = {"gradient_shap": {"n_samples": settings.sanity_samples},
               "permutation": {"budget": settings.sanity_budget}}
    out = {"model": res.key, "layers": layers, "n_examples": len(ex), "methods": {}}
    for method in tqdm(SANITY_METHODS, desc="cascading randomisation", disable=not progress):
        def explain_fn(m: nn.Module, x: Tensor, t: int, method: str = method) -> Tensor:
            return explain(method, m, x[None], t, seed=settings.seed,
                           **options.get(method, {})).values[0]
        steps = [cascading_randomization(res.model, explain_fn, ex.x[i], int(res.targets[i]),
                                         layers, seed=settings.seed) for i in range(len(ex))]
        out["methods"][method] = {
            "spearman": [nanmean([s[j]["spearman"] for s in steps]) for j in range(len(layers))],
            "pearson": [nanmean([s[j]["pearson"] for s in steps]) for j in range(len(layers))],
            "options": options.get(method, {})}
    return out


# --- the whole benchmark ------------------------------------------------------------------------
def warm_imports() -> None:
    """Import the explainers' libraries up front: their first call would time the import."""
    import warnings

    with warnings.catch_warnings():      # shap 0.51 builds colormaps with deprecated setters
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import captum.attr  # noqa: F401
        import pytorch_grad_cam  # noqa: F401
        import shap  # noqa: F401


def run_benchmark(settings: Settings, out: Path, progress: bool = True) -> dict:
    """Everything: rows, break-even, sanity, timings, config; files written into `out`."""
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
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
    finally:
        torch.set_num_threads(threads)

    out_results = {
        "models": {r.key: r.info for r in results} | {"vit_patches64": info64},
        "results": [row for r in results for row in r.rows],
        "break_even": {r.key: r.break_even for r in results} | {"vit_patches64": be64},
        "sanity": sanity_result,
        "skipped": [s for r in results for s in r.skipped],
        "timings": {"exact_seconds_per_image": float(np.mean(
                        [ref.seconds for ref in patches.references])),
                    "make_run_seconds": None, "sections_seconds": sections},
        "config": {**asdict(settings), "versions": versions(),
                   "date": datetime.datetime.now().isoformat(timespec="seconds"),
                   "targets": "predicted class", "example_seed": EXAMPLE_SEED,
                   "checkpoints": {n: t.meta.get("fingerprint") for n, t in sorted(trained.items())},
                   "rescale_share": RESCALE_SHARE, "average_drop_baseline": "blur",
                   "platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    video = next(r for r in results if r.key == "r3d_video")
    figures = {"benchmark_grid_images.png": grid_images(patches, settings.figure_examples),
               "benchmark_grid_video.png": grid_video(video),
               "benchmark_convergence.png": convergence(
                   patches, out_results["break_even"]["vit_patches"]),
               "benchmark_insertion_deletion.png": insertion_deletion_figure(results)}
    for name, fig in figures.items():
        save_figure(fig, out / name, dpi=FIGURE_DPI)
    sections["figures"] = time.perf_counter() - t0
    out_results["timings"]["benchmark_seconds"] = time.perf_counter() - start
    return write_results(out_results, out)


def write_results(results: dict, out: Path) -> dict:
    """results.json (no timings), results_timing.json and results.md in `out`; the block
    too for the committed results. Returns the results as written, timings merged back."""
    results = json_ready(results)
    stable, timing = split_fields(results, TIMING_FIELDS)
    write_json(out / RESULTS, stable)
    write_json(out / TIMING, timing or {})
    markdown = render(results)
    write_text(out / "results.md", markdown)
    if out.resolve() == DEFAULT_OUT.resolve():      # the committed results: show them in docs
        replace_block("results", re.sub(r"(?m)^#", "###", markdown))
    return results


def load_results(out: Path = DEFAULT_OUT) -> dict:
    """results.json with results_timing.json merged back (a results.json written before the split
    holds its timings itself)."""
    path = out / RESULTS
    if not path.exists():
        raise FileNotFoundError(f"no {path}: run the benchmark first (`make run`, or "
                                "`python -m studies.benchmark --quick --out DIR`)")
    results = json.loads(path.read_text())
    timing = out / TIMING
    return merge_fields(results, json.loads(timing.read_text())) if timing.exists() else results


def record_make_run(seconds: float, out: Path = DEFAULT_OUT) -> dict:
    """Put `make run`'s duration into the timings (results_timing.json) and re-render the markdown;
    results.json stays as it is."""
    if not (seconds > 0):
        raise ValueError(f"make run took a positive number of seconds, got {seconds!r}")
    results = load_results(out)
    results.setdefault("timings", {})["make_run_seconds"] = seconds
    return write_results(results, out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=None,
                        help="tiny models, a few examples (also when LEARNEDSHAP_QUICK=1)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for results.json, results_timing.json, results.md and the "
                             "figures (default shap_overlays/; in quick mode "
                             "<cache>/benchmark-quick/, so a smoke test never overwrites the "
                             "committed results)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default 2; 1 on a CPU shared with other work)")
    parser.add_argument("--record-make-run", type=float, default=None, metavar="SECONDS",
                        help="only write `make run`'s duration into the results and re-render")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    quick = zoo.quick_mode(args.quick)
    out = args.out or (zoo.cache_dir() / "benchmark-quick" if quick else DEFAULT_OUT)
    if args.record_make_run is not None:
        return record_make_run(args.record_make_run, out)
    settings = settings_for(quick, args.seed)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        settings.threads = args.threads
    results = run_benchmark(settings, out, progress=not args.no_progress)
    t = results["timings"]
    print(f"benchmark ({'quick' if quick else 'full'}) done in {t['benchmark_seconds']:.0f} s "
          f"-> {out}/{RESULTS}, {TIMING}, results.md")
    return results


if __name__ == "__main__":
    main()
