"""Is LearnedSHAP the model's Shapley value? Checks against the model's own masking game.

For held-out examples drawn equally from every class: LearnedSHAP's `phi` (one explanation)
against the reference Shapley values of the same model's masking game (token dropping for the
ViTs and the tubelet-local 3D-ResNet, blurred tubelets for the whole-clip one): exact
enumeration up to 16 players, antithetic permutation sampling in two independent halves beyond
(its noise reported beside every error it judges). Also the efficiency gap
sum(phi) - (v(N) - v(empty)), the learned pair terms `c_ij` against the game's exact pair
dividends (Harsanyi) and against the dataset's true interacting pairs, and what an explanation
costs against the plain-head model's forward pass. How many evaluations the samplers need to
match LearnedSHAP (the break-even) is the benchmark's.

    python -m studies.learned_report [--quick] [--out shap_overlays/learned_shap.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from evaluation.examples import load_examples
from evaluation.faithfulness import REFERENCE_BUDGET64, compare, references_for
from evaluation.formatting import number, stat
from evaluation.records import json_ready, split_fields, write_json, write_text
from evaluation.timing import forward_cost
from explainers.core import model_device
from models import zoo
from tools.readme import replace_block

# model -> examples per class (the same number from every class)
REPORT = {"learned_vit_patches": 4, "learned_vit_digits": 1, "learned_r3d_tubelets": 4,
          "learned_r3d_video": 4, "learned_vit_patches64": 4}
QUICK_REPORT = {"learned_vit_patches": 1, "learned_r3d_tubelets": 1, "learned_r3d_video": 1,
                "learned_vit_patches64": 1}


def report(name: str, per_class: int, quick: bool | None = None,
           reference_budget: int = REFERENCE_BUDGET64, progress: bool = True) -> dict:
    """Agreement and cost of one LearnedSHAP model of the zoo on `per_class` inputs per class."""
    spec = zoo.resolve(name, quick)
    trained = zoo.load(name, quick=quick, progress=progress)
    plain = zoo.load(zoo.SPECS[name].plain, quick=quick, progress=progress)
    model = trained.model.eval()
    ex = load_examples(spec, model, per_class)
    budget = None if model.n_players <= 16 else reference_budget
    refs = references_for(model, ex, budget, progress)
    learned = compare(model, ex, refs)
    batch = ex.x[:8].to(model_device(model))
    return {"model": name, "n_players": model.n_players, "reference": refs[0].describe(),
            "classes": ex.classes, "per_class": per_class,
            "accuracy": trained.meta["accuracy"], "plain_head_accuracy": plain.meta["accuracy"],
            "fingerprint": trained.meta.get("fingerprint"),
            "agreement": {k: v for k, v in learned.items() if k != "examples"},
            "cost": forward_cost(model, plain.model, batch),
            "examples": learned["examples"]}


def markdown(results: list[dict]) -> str:
    """The report as a table: agreement with the reference, efficiency, pairs and cost."""
    lines = ["| model | players | reference (max noise) | accuracy (plain head) | examples | "
             "Pearson mean (min) | rel. L2 mean (max) | max efficiency gap | remainder 1 - R² | "
             "pairs vs Faith-Shap: Pearson, rel. L2 | "
             "pairs vs Harsanyi (Pearson): all (true-pair images) | "
             "pairs vs truth (AUROC, true class) | time vs plain forward | checkpoint |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        a = r["agreement"]
        noise = a["max_reference_noise"]
        ref = r["reference"] + (f" ({noise:.3f})" if noise else "")
        bound = "" if a["resolved"] else "≤ "
        lines.append(
            f"| `{r['model']}` | {r['n_players']} | {ref} | "
            f"{100 * r['accuracy']:.1f}% ({100 * r['plain_head_accuracy']:.1f}%) | "
            f"{a['pearson']['n']} ({r['per_class']} per class) | "
            f"{stat(a['pearson'], 'mean')} ({stat(a['pearson'], 'min')}) | "
            f"{bound}{stat(a['rel_l2'], 'mean', style='g')} ({stat(a['rel_l2'], 'max', style='g')}) | "
            f"{a['efficiency_gap']['max']:.1e} | {stat(a.get('remainder'), 'mean', 4)} | "
            f"{stat(a.get('pair_pearson_faith'), 'mean')}, {stat(a.get('pair_rel_l2_faith'), 'mean')} | "
            f"{stat(a['pair_pearson_harsanyi'], 'mean')} "
            f"({stat(a['pair_pearson_harsanyi_true_pair'], 'mean')}) | "
            f"{stat(a['pair_auroc_truth'], 'mean')} | x{r['cost']['ratio']:.2f} | "
            f"`{r.get('fingerprint') or 'not recorded'}` |")
    return "\n".join(lines)


def per_class_markdown(results: list[dict]) -> str:
    """phi's error, the remainder and the pair references by true class, a line per class."""
    lines = ["| model | class | phi rel. L2 | remainder 1 - R² | pairs vs Faith-Shap: Pearson, "
             "rel. L2 | pairs vs Harsanyi (Pearson) |", "|---|---|---:|---:|---|---:|"]

    def class_stat(per: dict, key: str, c: str, digits: int = 3, style: str = "f") -> str:
        return number(per.get(key, {}).get(c), digits, style, empty="n/a")

    for r in results:
        per = r["agreement"]["per_class"]
        for c in r["classes"]:
            lines.append(f"| `{r['model']}` | {c} | {class_stat(per, 'rel_l2', c, style='g')} | "
                         f"{class_stat(per, 'remainder', c, 4)} | {class_stat(per, 'pair_pearson_faith', c)}, "
                         f"{class_stat(per, 'pair_rel_l2_faith', c)} | "
                         f"{class_stat(per, 'pair_pearson_harsanyi', c)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", default=None)
    parser.add_argument("--out", type=Path, default=None,
                        help="json path (default shap_overlays/learned_shap.json; in quick mode "
                             "<cache>/learned-quick.json, so a smoke test never overwrites it)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    quick = zoo.quick_mode(args.quick)
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = QUICK_REPORT if quick else REPORT
    results = [report(name, per_class, quick,
                      reference_budget=2048 if quick else REFERENCE_BUDGET64,
                      progress=not args.no_progress) for name, per_class in plan.items()]
    out = args.out or (zoo.cache_dir() / "learned-quick.json" if quick
                       else zoo.ROOT / "shap_overlays" / "learned_shap.json")
    # the seconds of `cost` change from run to run: kept apart, so the JSON reruns byte for byte
    stable, timing = split_fields(results, frozenset({"cost"}))
    write_json(out, stable)
    write_json(out.with_name(out.stem + "_timing.json"), timing or [])
    results = json_ready(results)
    table = markdown(results) + "\n\n" + per_class_markdown(results)
    write_text(out.with_suffix(".md"), table + "\n")
    if not quick and out.resolve() == (zoo.ROOT / "shap_overlays" / "learned_shap.json").resolve():
        replace_block("learned", table)
    for r in results:
        a = r["agreement"]
        print(f"{r['model']}: acc {r['accuracy']:.3f} (plain head {r['plain_head_accuracy']:.3f}); "
              f"pearson {a['pearson']['mean']:.3f} (min {a['pearson']['min']:.3f}), rel L2 "
              f"{a['rel_l2']['mean']:.3f} vs {r['reference']}; efficiency gap "
              f"{a['efficiency_gap']['max']:.1e}; cost x{r['cost']['ratio']:.2f} a plain forward")
    return results


if __name__ == "__main__":
    main()
