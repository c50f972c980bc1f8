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

    python -m evaluation.learned_report [--quick] [--out shap_overlays/learned_shap.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from evaluation.examples import Examples, load_examples, per_class_means
from evaluation.metrics import auroc, pearson, rel_l2
from evaluation.records import json_ready, split_fields, write_json, write_text
from evaluation.references import Reference, game_for, reference, resolved
from evaluation.scoring import check_efficiency
from evaluation.timing import forward_cost
from explainers.core import model_device
from models import zoo
from shapley.sampling import kernel_coalitions
from tools.readme import replace_block

REFERENCE_BUDGET64 = 16384   # evaluations of the 64-patch reference: two halves of 8,192
REFERENCE_BUDGET196 = 19600  # 2 x 9,800 evaluations: 25 antithetic pairs of permutations a half
# model -> examples per class (the same number from every class)
REPORT = {"learned_vit_patches": 4, "learned_vit_digits": 1, "learned_r3d_tubelets": 4,
          "learned_r3d_video": 4, "learned_vit_patches64": 4}
QUICK_REPORT = {"learned_vit_patches": 1, "learned_r3d_tubelets": 1, "learned_r3d_video": 1,
                "learned_vit_patches64": 1}
STATS = ("pearson", "rel_l2", "efficiency_gap", "reference_noise", "remainder",
         "pair_pearson_harsanyi", "pair_pearson_harsanyi_true_pair", "pair_pearson_faith",
         "pair_rel_l2_faith", "pair_auroc_truth", "pair_auroc_truth_exact")
PER_CLASS_STATS = ("pearson", "rel_l2", "remainder", "pair_pearson_faith", "pair_rel_l2_faith",
                   "pair_pearson_harsanyi")


def references_for(model: nn.Module, ex: Examples, budget: int | None,
                   progress: bool = True) -> list[Reference]:
    """The reference of every example (cached; see evaluation.references)."""
    return [reference(model, x, budget) for x in tqdm(ex.x, desc="references", leave=False,
                                                       disable=not progress)]


@torch.no_grad()
def compare(model: nn.Module, ex: Examples, refs: list[Reference],
            remainder_coalitions: int = 1000) -> dict:
    """Per-example agreement of phi (and pairs) with the references of the same game, and the
    game's remainder (`remainder` over that many Shapley-kernel coalitions; 0 skips it)."""
    model.eval()
    n = model.n_players
    iu = torch.triu_indices(n, n, 1)
    rows = []
    for i in range(len(ex)):
        x, y, ref = ex.x[i].to(model_device(model)), int(ex.y[i]), refs[i]
        out = model.shapley_values(x[None])
        target = int(out.logits[0].argmax())
        phi = out.shapley[0, :, target].double().cpu()                      # (N,)
        ref_phi = ref.values[:, target]
        row = {"index": ex.index[i], "target": target, "label": y,
               "pearson": pearson(phi, ref_phi), "rel_l2": rel_l2(phi, ref_phi),
               "efficiency_gap": abs(check_efficiency(phi, ref, target, f"example {i}")),
               "reference_noise": ref.noise(target), "reference_evals": ref.n_evals,
               "phi": phi.tolist(), "reference": ref_phi.tolist()}
        if remainder_coalitions:
            row["remainder"] = remainder(model, ex.x[i], target, remainder_coalitions, seed=i)
        if out.pair is not None:
            learned_pairs = out.pair[0, :, :, target].double().cpu()       # (N, N)
            has_pair = ex.pairs is not None and bool(ex.pairs[i].any())
            if ref.pairs_harsanyi is not None:
                r = pearson(learned_pairs[iu[0], iu[1]], ref.pairs_harsanyi[iu[0], iu[1], target])
                row["pair_pearson_harsanyi"] = r
                # Where no pair decides the class, both pair tables are near-zero noise and their
                # correlation says little; reported apart for the images that hold a true pair.
                if has_pair:
                    row["pair_pearson_harsanyi_true_pair"] = r
            if ref.pairs_faith is not None:
                faith = ref.pairs_faith[iu[0], iu[1], target]
                row["pair_pearson_faith"] = pearson(learned_pairs[iu[0], iu[1]], faith)
                if faith.norm() > 0:
                    row["pair_rel_l2_faith"] = rel_l2(learned_pairs[iu[0], iu[1]], faith)
            if has_pair:
                # the true pairs are what makes the *true* class (e.g. triangle AND cross), so
                # they are scored on that class's terms even when the model predicts another
                # (there the pair is evidence against the prediction, and would rank last)
                truth = ex.pairs[i][iu[0], iu[1]]
                label_pairs = out.pair[0, :, :, y].double().cpu()              # (N, N)
                row["pair_auroc_truth"] = auroc(label_pairs[iu[0], iu[1]], truth)
                if ref.pairs_harsanyi is not None:
                    row["pair_auroc_truth_exact"] = auroc(
                        ref.pairs_harsanyi[iu[0], iu[1], y], truth)
        rows.append(row)
    return {"examples": rows, **summarise(rows, ex.classes)}


@torch.no_grad()
def remainder(model: nn.Module, x: Tensor, target: int, n_coalitions: int = 1000,
              seed: int = 0) -> float:
    """1 - R^2 of the head's decomposition against the model's game on Shapley-kernel coalitions.

    The share of the variance of v(S) (class `target`, S drawn from the Shapley kernel) that the
    head's own 2-additive decomposition restricted to S leaves unexplained: 0 when the model's
    game is the head's (pairwise), larger the more higher-order terms it keeps. It also bounds
    the samplers: one antithetic pair of permutations is exact for a pairwise game.
    """
    n = model.n_players
    keep = kernel_coalitions(n, n_coalitions, torch.Generator().manual_seed(seed))
    v = game_for(model, x)(keep)[:, target].double().cpu()                 # (C,)
    full = model.explain(x[None].to(model_device(model)))
    g = full.restrict(keep.to(full.unary.device))[:, target].double().cpu()
    return unexplained(v, g)


def unexplained(v: Tensor, g: Tensor) -> float:
    """1 - R^2 of the fit g of the game values v (both (C,)): the share of v's variance left."""
    total = float(((v - v.mean()) ** 2).sum())
    return float(((v - g) ** 2).sum()) / total if total > 0 else float("nan")


def stats(values) -> dict | None:
    v = np.array([a for a in values if a is not None and a == a], dtype=float)
    return None if len(v) == 0 else {"mean": float(v.mean()), "min": float(v.min()),
                                     "max": float(v.max()), "n": int(len(v))}


def summarise(rows: list[dict], classes: list[str]) -> dict:
    """Mean / min / max of every statistic, and its mean over each true class."""
    labels = [r["label"] for r in rows]
    out = {k: stats([r.get(k) for r in rows]) for k in STATS}
    out["per_class"] = {k: per_class_means([r.get(k) for r in rows], labels, classes)
                        for k in PER_CLASS_STATS}
    errors = [r["rel_l2"] for r in rows]
    noise = max(r["reference_noise"] for r in rows)
    out["resolved"] = all(resolved(e, r["reference_noise"]) for e, r in zip(errors, rows,
                                                                              strict=True))
    out["max_reference_noise"] = noise
    return out


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


def f(s: dict | None, key: str, digits: int = 3, style: str = "f") -> str:
    """One statistic of a summary, or n/a (style "g": significant digits, for tiny errors)."""
    return "n/a" if not s or s.get(key) is None else f"{s[key]:.{digits}{style}}"


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
            f"{f(a['pearson'], 'mean')} ({f(a['pearson'], 'min')}) | "
            f"{bound}{f(a['rel_l2'], 'mean', style='g')} ({f(a['rel_l2'], 'max', style='g')}) | "
            f"{a['efficiency_gap']['max']:.1e} | {f(a.get('remainder'), 'mean', 4)} | "
            f"{f(a.get('pair_pearson_faith'), 'mean')}, {f(a.get('pair_rel_l2_faith'), 'mean')} | "
            f"{f(a['pair_pearson_harsanyi'], 'mean')} "
            f"({f(a['pair_pearson_harsanyi_true_pair'], 'mean')}) | "
            f"{f(a['pair_auroc_truth'], 'mean')} | x{r['cost']['ratio']:.2f} | "
            f"`{r.get('fingerprint') or 'not recorded'}` |")
    return "\n".join(lines)


def per_class_markdown(results: list[dict]) -> str:
    """phi's error, the remainder and the pair references by true class, a line per class."""
    lines = ["| model | class | phi rel. L2 | remainder 1 - R² | pairs vs Faith-Shap: Pearson, "
             "rel. L2 | pairs vs Harsanyi (Pearson) |", "|---|---|---:|---:|---|---:|"]

    def g(per: dict, key: str, c: str, digits: int = 3, style: str = "f") -> str:
        v = per.get(key, {}).get(c)
        return "n/a" if v is None else f"{v:.{digits}{style}}"

    for r in results:
        per = r["agreement"]["per_class"]
        for c in r["classes"]:
            lines.append(f"| `{r['model']}` | {c} | {g(per, 'rel_l2', c, style='g')} | "
                         f"{g(per, 'remainder', c, 4)} | {g(per, 'pair_pearson_faith', c)}, "
                         f"{g(per, 'pair_rel_l2_faith', c)} | "
                         f"{g(per, 'pair_pearson_harsanyi', c)} |")
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
