"""Run an experiment from its configuration: train its models, report, benchmark; on one process
or under torchrun.

    python -m experiments.run --config configs/default.toml                  # every stage, offline
    python -m experiments.run --config configs/imagenette_vit_s16.toml --data-root ~/imagenette2
    torchrun --nproc_per_node 8 -m experiments.run --config configs/imagenette_vit_s16.toml
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-endpoint host:29500 -m experiments.run ...

Stages (`--stage`, default all that apply): `classifier`, `surrogate` (ViT-Shapley's, when
configured), `learned` (LearnedSHAP), `vit_shapley` (ViT-Shapley's explainer), `report` and
`benchmark`. Training stages run every rank on its shard of each batch (DistributedDataParallel);
rank 0 writes the checkpoints. The report and the benchmark split their examples over the ranks
(references and explanations) and rank 0 merges them into one results file, the same file a
single process writes: `report.json` / `benchmark.json` (with their `.md`) in the experiment's
output folder, timings apart in `timings.json`.

The report: LearnedSHAP's phi against the references of its own game (exact up to 16 players,
else antithetic permutation with the configured budget and its own noise), its efficiency gap and
its accuracy beside the classifier's. The benchmark: every configured method on the same
examples (LearnedSHAP and ViT-Shapley in one pass, samplers at the configured budgets, gradient
methods), each scored against the references of the game it is compared on, with its cost in
model evaluations.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace

import torch
from torch import Tensor, nn

from evaluation.examples import Examples, load_examples
from evaluation.faithfulness import compare
from evaluation.formatting import number, stat
from evaluation.records import write_json, write_text
from evaluation.references import Reference, reference
from evaluation.runs import Run, RunSpec, run_method
from evaluation.scoring import score
from evaluation.timing import forward_seconds
from experiments import config as cfg
from models import distributed, zoo

SAMPLER_METHODS = ("permutation", "kernel_shap", "kernel")
TIMING_KEYS = ("seconds", "forward_ratio")


def stages_of(exp: cfg.Experiment, asked: list[str] | None) -> list[str]:
    applicable = [s for s in cfg.STAGES if not (exp.video and s in ("surrogate", "vit_shapley"))
                  and not (s == "surrogate" and exp.explainer.surrogate_epochs <= 0)]
    if not asked:
        return applicable
    wrong = sorted(set(asked) - set(cfg.STAGES))
    if wrong:
        raise ValueError(f"unknown stage(s) {wrong}; choose from {list(cfg.STAGES)}")
    skipped = sorted(set(asked) - set(applicable))
    if skipped:
        raise ValueError(f"stage(s) {skipped} do not apply to this experiment (video models have "
                         "no ViT-Shapley; a surrogate needs explainer.surrogate_epochs > 0)")
    return [s for s in cfg.STAGES if s in asked]


def device_of(exp: cfg.Experiment, device: torch.device) -> torch.device:
    if exp.run.device == "cpu":
        return torch.device("cpu")
    if exp.run.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run.device is 'cuda' but no GPU is visible; use run.device='auto'")
    return device


def trained(exp: cfg.Experiment, specs: dict, stage: str, device, progress: bool) -> zoo.Trained:
    name = {"classifier": exp.name, "surrogate": f"{exp.name}_surrogate",
            "learned": f"{exp.name}_learned", "vit_shapley": f"{exp.name}_vit_shapley"}[stage]
    amp = None if exp.run.amp == "none" else exp.run.amp
    return zoo.load(specs[name], quick=False, device=device, progress=progress, amp=amp,
                    compile=exp.run.compile)


# --- sharded ground truth -----------------------------------------------------------------------
def budget_for(model: nn.Module, exp: cfg.Experiment) -> int | None:
    return None if model.n_players <= 16 else exp.run.reference_budget


def references(model: nn.Module, ex: Examples, exp: cfg.Experiment) -> list[Reference]:
    """One reference per example, the examples split over the ranks, every rank gets all."""
    budget = budget_for(model, exp)
    return distributed.map_sharded(lambda x: reference(model, x, budget), list(ex.x))


def example(ex: Examples, i: int) -> Examples:
    """Example i alone."""
    pick = slice(i, i + 1)
    return replace(ex, x=ex.x[pick], y=ex.y[pick], relevant=ex.relevant[pick],
                   truth=ex.truth[pick], pairs=None if ex.pairs is None else ex.pairs[pick],
                   index=ex.index[pick])


def sharded_run(spec: RunSpec, model: nn.Module, ex: Examples, targets: Tensor, seed: int) -> Run:
    """run_method over the examples split across the ranks, merged in example order."""
    parts = distributed.map_sharded(
        lambda i: run_method(spec, model, example(ex, i), targets[i:i + 1], seed=seed),
        list(range(len(ex))))
    cat = lambda key: torch.cat([getattr(r, key) for r in parts])   # noqa: E731
    pairs = cat("pairs") if all(r.pairs is not None for r in parts) else None
    return Run(spec, cat("values"), cat("pixel_map"), pairs,
               [e for r in parts for e in r.evals], [s for r in parts for s in r.seconds],
               [f for r in parts for f in r.forward_seconds], parts[0].extras)


# --- stages -------------------------------------------------------------------------------------
def report(exp: cfg.Experiment, specs: dict, device, progress: bool) -> dict:
    learned = trained(exp, specs, "learned", device, progress)
    plain = trained(exp, specs, "classifier", device, progress)
    model = learned.model.eval()
    ex = load_examples(specs[f"{exp.name}_learned"], model, exp.run.per_class)
    refs = references(model, ex, exp)
    agreement = compare(model, ex, refs, exp.run.remainder_coalitions)
    return {"experiment": exp.name, "model": f"{exp.name}_learned", "n_players": model.n_players,
            "reference": refs[0].describe(), "examples": len(ex), "per_class": exp.run.per_class,
            "accuracy": learned.meta["accuracy"], "classifier_accuracy": plain.meta["accuracy"],
            "agreement": {k: v for k, v in agreement.items() if k != "examples"}}


def plan(exp: cfg.Experiment, n: int, explainer: nn.Module | None) -> list[RunSpec]:
    out = []
    for method in exp.run.methods:
        if method == "vit_shapley":
            if explainer is not None:
                out.append(RunSpec("vit_shapley", options=(("explainer", explainer),),
                                   explains="the classifier's game (through its surrogate)"))
        elif method in SAMPLER_METHODS:
            name = "kernel" if method == "kernel_shap" else method
            out += [RunSpec(name, 2 * n * m, explains="the game") for m in exp.run.budgets]
        else:
            out.append(RunSpec(method, explains="the game" if method == "learned_shap" else ""))
    return out


def benchmark(exp: cfg.Experiment, specs: dict, device, progress: bool) -> tuple[dict, dict]:
    """Every configured method on the same examples; rows and their timings apart."""
    learned = trained(exp, specs, "learned", device, progress).model.eval()
    explainer = frozen = None
    if not exp.video and "vit_shapley" in exp.run.methods:
        explainer = trained(exp, specs, "vit_shapley", device, progress).model.eval()
        frozen = zoo.frozen_model(specs[f"{exp.name}_vit_shapley"]).to(device)
    ex = load_examples(specs[f"{exp.name}_learned"], learned, exp.run.per_class)
    with torch.no_grad():
        targets = learned(ex.x.to(model_device(learned))).argmax(-1).cpu()
    refs = references(learned, ex, exp)
    fwd = {id(m): forward_seconds(m, ex.x[:1].to(model_device(m)))
           for m in (learned, frozen) if m is not None}
    rows, timings = [], {}
    for spec in plan(exp, learned.n_players, explainer):
        # ViT-Shapley explains the classifier (or its surrogate): score it on that model's game
        model = frozen if spec.method == "vit_shapley" else learned
        game_refs = refs if model is learned else references(model, ex, exp)
        run = sharded_run(spec, model, ex, targets, exp.train.seed)
        if not distributed.is_main():
            continue
        scored = score(run, model, ex, targets, game_refs, fwd[id(model)])
        row = {"method": spec.method, "budget": spec.budget, "explains": spec.explains,
               **{k: v for k, v in scored.items() if k in METRICS}}
        timings[spec.key] = {k: scored.get(k) for k in TIMING_KEYS}
        rows.append(row)
    return ({"experiment": exp.name, "n_players": learned.n_players, "examples": len(ex),
             "reference": refs[0].describe(), "rows": rows}, timings)


METRICS = ("rel_l2_exact", "pearson_exact", "efficiency_gap", "auroc_truth", "insertion_auc",
           "deletion_auc", "evals")


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def markdown(name: str, result: dict) -> str:
    if name == "report":
        a = result["agreement"]
        return (f"**{result['experiment']}: LearnedSHAP against {result['reference']}** "
                f"({result['examples']} examples, {result['n_players']} players)\n\n"
                "| accuracy | classifier accuracy | rel. L2 | Pearson | efficiency gap (max) |\n"
                "|---:|---:|---:|---:|---:|\n"
                f"| {result['accuracy']:.3f} | {result['classifier_accuracy']:.3f} | "
                f"{stat(a['rel_l2'], 'mean', 3, 'g')} | {stat(a['pearson'], 'mean', 3, 'g')} | "
                f"{stat(a['efficiency_gap'], 'max', 3, 'g')} |")
    lines = [f"**{result['experiment']}: every method against {result['reference']}** "
             f"({result['examples']} examples, {result['n_players']} players)\n",
             "| method | budget | rel. L2 | Pearson | insertion AUC | deletion AUC | evals |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['method']} | {r['budget'] or ''} | {number(r['rel_l2_exact'], empty='n/a')} | "
                     f"{number(r['pearson_exact'], empty='n/a')} | {number(r['insertion_auc'], empty='n/a')} | "
                     f"{number(r['deletion_auc'], empty='n/a')} | {number(r['evals'], 0, empty='n/a')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cfg.add_arguments(parser)
    parser.add_argument("--stage", nargs="*", default=None, choices=list(cfg.STAGES))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    exp = cfg.from_args(args)
    device = device_of(exp, distributed.init())
    if exp.run.threads:
        torch.set_num_threads(exp.run.threads)
    stages = stages_of(exp, args.stage)
    specs = cfg.specs(exp)
    progress = not args.no_progress
    out, results, timings = exp.out, {}, {}
    try:
        for stage in stages:
            start = time.perf_counter()
            if stage in ("classifier", "surrogate", "learned", "vit_shapley"):
                meta = trained(exp, specs, stage, device, progress).meta
                results[stage] = {"model": meta["name"], "accuracy": meta["accuracy"],
                                  "fingerprint": meta["fingerprint"]}
            elif stage == "report":
                results[stage] = report(exp, specs, device, progress)
            else:
                results[stage], timings["benchmark_runs"] = benchmark(exp, specs, device, progress)
            timings[stage] = time.perf_counter() - start
        if distributed.is_main():
            write_json(out / "config.json", asdict(exp))
            for stage in ("report", "benchmark"):
                if stage in results:
                    written = write_json(out / f"{stage}.json", results[stage])
                    write_text(out / f"{stage}.md", markdown(stage, written) + "\n")
            write_json(out / "timings.json", {**timings, "processes": distributed.world_size(),
                                              "device": str(device)})
            for stage, r in results.items():
                if stage in ("report", "benchmark"):
                    print(markdown(stage, r))
                else:
                    print(f"{stage}: {r['model']}, accuracy {r['accuracy']}")
            print(f"results in {out}")
    finally:
        distributed.close()
    return results


if __name__ == "__main__":
    main()
