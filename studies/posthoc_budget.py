"""Explaining a frozen ViT: which objective and explainer architecture, at which training budget?

Two stages on the plain ViTs of the post-hoc and scale studies (the model stays frozen; every
explainer is scored like `evaluation.faithfulness.measure`: phi against its game's reference, exact at
16 patches, antithetic permutation with its own noise at 64 and 196):

1. **screen**, 16 patches, one budget (today's: 4.95 million frozen-model evaluations), one
   seed: every candidate of `CANDIDATES` (objectives: the Shapley-kernel decomposition, regression
   onto antithetic-permutation estimates as in Stochastic Amortization (Covert et al. 2024), a
   mix; architectures: today's head on the copied backbone, ViT-Shapley's attention block with our
   pair terms, ViT-Shapley's whole head (block and MLP readout) with our pair terms, fitted
   jointly or phi first (`models.posthoc.phi_first_loss`), ViT-Shapley's explainer as it is
   with our pair terms beside it, a deeper explainer; gradient clipping) and ViT-Shapley
   (Covert, Kim & Lee 2023);
2. **curves**: the screen's best two and ViT-Shapley at budgets from 0.1x to 1x of today's
   (4.95 M evaluations at 64 patches, 1.32 M at 196) and up to 3x at 16 patches, 2 training seeds
   each, so each point has its spread;
3. **diagnostics** (`DIAGNOSTICS`): what the gap to ViT-Shapley comes from: our head without its
   pair terms, and ViT-Shapley's head with our unary terms beside it (no pairs), at 16 patches,
   1x, on both seeds; and whether gradient clipping is what the deeper explainer's unclipped
   run at 64 patches and 1x lacked, with ViT-Shapley clipped the same way beside it (both
   seeds).

Budgets are counted in the frozen model's evaluations (v(N) and the objective's coalitions, per
image and epoch: `models.posthoc.evals_per_image`), turned into whole epochs of the same
training images. Every row is kept in `posthoc_budget.json` with the fingerprint of the
checkpoint it measured, so a run killed midway (or run size by size) redoes nothing finished; the
table and the figure `posthoc_budget.png` are rewritten from it.

    python -m studies.posthoc_budget [--quick] [--stage screen|curves|diagnostics|all]
        [--sizes 16 64 196]

Heavy (every point trains an explainer: 3 to 25 minutes each on 2 cores at 1x), so it has its
own target: `make posthoc-budget`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import data
from evaluation.cli import experiment_parser, setup
from evaluation.faithfulness import REFERENCE_BUDGET64, REFERENCE_BUDGET196, measure
from evaluation.records import publish, write_json
from models import zoo
from models.posthoc import PHI_FIRST, PLUS_PAIRS_HEAD, READOUT_HEAD, objective_evals, spec_kind

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "shap_overlays"

PAIRS = {"rank": 8, "pairwise": True, "coalitions": 32}
# name -> the explainer's head settings (models.zoo.posthoc_vit: kind, extra_blocks, objective,
# coalitions, clip_norm; the Harsanyi head's rank and pairwise)
CANDIDATES: dict[str, dict] = {
    "kernel": PAIRS,                                            # today's post-hoc LearnedSHAP
    "kernel_clip": {**PAIRS, "clip_norm": 1.0},                 # with the co-trained recipe's clip
    "permutation": {**PAIRS, "objective": "permutation"},
    "mix": {**PAIRS, "objective": "mix"},
    "attended_pairs": {**PAIRS, "kind": "vit_shapley_pairs"},
    "deeper": {**PAIRS, "extra_blocks": 2},
    "readout_pairs": {**PAIRS, "kind": READOUT_HEAD},           # ViT-Shapley's head + our pairs
    # the same, phi fitted as ViT-Shapley fits it and the pairs to what phi leaves
    "phi_first": {**PAIRS, "kind": READOUT_HEAD, "objective": PHI_FIRST},
    # ViT-Shapley's explainer as it is, our pair terms beside it on its detached tokens, phi first
    "plus_pairs": {**PAIRS, "kind": PLUS_PAIRS_HEAD, "objective": PHI_FIRST},
}
BASELINE = "vit_shapley"
BASELINE_HEAD = {"kind": "vit_shapley", "coalitions": 32}
# What the gap to ViT-Shapley comes from: our head without its pair terms, at the screen's budget
# on both seeds (measured beside the curves, not carried into them)
DIAGNOSTICS: dict[str, dict] = {
    "unary": {**PAIRS, "pairwise": False},
    # ViT-Shapley's head with our linear unary terms beside it, no pairs: whether adding our
    # head's pair terms or its per-position unary terms is what costs `readout_pairs`
    "readout_unary": {**PAIRS, "kind": READOUT_HEAD, "pairwise": False},
    # the deeper explainer with the co-trained recipe's gradient clipping, at 64 patches and 1x:
    # whether clipping is what its unclipped run there lacked (one of two seeds did not train)
    "deeper_clip": {**CANDIDATES["deeper"], "clip_norm": 1.0},
    # and ViT-Shapley given the same clipping (its authors clip), so that it gets every change
    # ours gets
    "vit_shapley_clip": {**BASELINE_HEAD, "clip_norm": 1.0},
}
DIAGNOSTIC_SIZES = {"unary": 16, "readout_unary": 16, "deeper_clip": 64,
                    "vit_shapley_clip": 64}                                 # players of each
BASE = {16: ("posthoc_vit_patches", 4, None), 64: ("posthoc_vit_patches64", 4, REFERENCE_BUDGET64),
        196: ("posthoc_vit_patches196", 2, REFERENCE_BUDGET196)}   # spec, images a class, reference
MULTIPLES = {16: (0.1, 0.3, 1.0, 3.0), 64: (0.1, 0.3, 0.6, 1.0), 196: (0.1, 0.3, 0.6, 1.0)}
SEEDS = (0, 1)
CARRIED = 2                         # candidates the screen carries into the curves (+ ViT-Shapley)
QUICK = {"multiples": (0.5, 1.0), "seeds": (0,), "per_class": 1,
         "reference": {64: 1024, 196: 1568}}


def base_spec(size: int) -> zoo.ModelSpec:
    return zoo.all_specs()[BASE[size][0]]


def n_train(spec: zoo.ModelSpec) -> int:
    return {**data.dataset_options(spec.dataset), **spec.data_options}["n_train"]


def spec_for(size: int, candidate: str, multiple: float, seed: int) -> zoo.ModelSpec:
    """The explainer of `candidate` at `multiple` x today's budget, registered in the zoo under
    its own name (trained and cached like every zoo model). The epochs are set so that its
    evaluations match the budget in full mode (quick mode keeps the base's one-epoch override)."""
    base = base_spec(size)
    head = BASELINE_HEAD if candidate == BASELINE else {**CANDIDATES, **DIAGNOSTICS}[candidate]
    per_image = objective_evals(size, head.get("coalitions", 32), head.get("objective", "kernel"))
    budget = multiple * base.epochs * n_train(base) * (PAIRS["coalitions"] + 1)
    epochs = max(1, round(budget / (n_train(base) * per_image)))
    spec = replace(base, name=f"posthoc_budget{size}-{candidate}-x{multiple:g}-s{seed}",
                   kind=spec_kind(head.get("kind", "harsanyi"), head.get("objective", "kernel")),
                   head=dict(head), epochs=epochs, train_seed=seed,
                   description=f"{candidate} explainer of the frozen {base.plain}, "
                               f"{multiple:g}x today's budget, training seed {seed}")
    zoo.register(spec)
    return spec


def score(size: int, candidate: str, multiple: float, seed: int, quick: bool,
          progress: bool) -> dict:
    spec = spec_for(size, candidate, multiple, seed)
    _, per_class, reference = BASE[size]
    if quick:
        per_class = QUICK["per_class"]
        reference = None if reference is None else QUICK["reference"][size]
    r = measure(spec.name, quick, progress, per_class=per_class, budget=reference)
    r.update(size=size, candidate=candidate, multiple=multiple, seed=seed)
    r.pop("examples", None)
    return r


def done(rows: list[dict], quick: bool) -> dict[str, dict]:
    """The rows that measured today's code: their checkpoint is the one their spec has now."""
    keep = {}
    for r in rows:
        spec = zoo.resolve(spec_for(r["size"], r["candidate"], r["multiple"], r["seed"]), quick)
        if r.get("fingerprint") == zoo.fingerprint(spec):
            keep[spec.name] = r
    return keep


def screen_points() -> list[tuple]:
    """(size, candidate, multiple, seed) of the screen: every candidate at 16 patches, 1x."""
    return [(16, c, 1.0, 0) for c in [*CANDIDATES, BASELINE]]


def curve_points(sizes: list[int], rows: dict[str, dict], quick: bool) -> list[tuple]:
    """The screen's best and ViT-Shapley at every budget and seed of each size; a budget that
    rounds to the epochs of a smaller one (an objective whose epoch costs more than a tenth of
    today's budget) is that point, not a second training."""
    multiples = (lambda n: QUICK["multiples"]) if quick else MULTIPLES.get
    seeds = QUICK["seeds"] if quick else SEEDS
    points, trainings = [], set()
    for n in sizes:
        for c in [*chosen(rows), BASELINE]:
            for m in multiples(n):
                for s in seeds:
                    training = (n, c, zoo.resolve(spec_for(n, c, m, s), quick).epochs, s)
                    if training not in trainings:
                        trainings.add(training)
                        points.append((n, c, m, s))
    return points


def diagnostic_points(sizes: list[int]) -> list[tuple]:
    """(size, candidate, multiple, seed) of the diagnostics among `sizes`: each at its own number
    of players (`DIAGNOSTIC_SIZES`), 1x, both seeds."""
    return [(DIAGNOSTIC_SIZES[c], c, 1.0, s) for c in DIAGNOSTICS for s in SEEDS
            if DIAGNOSTIC_SIZES[c] in sizes]


def chosen(rows: dict[str, dict]) -> list[str]:
    """The screen's best candidates (lowest mean phi error at 16 patches, 1x, seed 0)."""
    screen = [r for r in rows.values() if r["size"] == 16 and r["multiple"] == 1.0
              and r["seed"] == 0 and r["candidate"] in CANDIDATES]
    if len(screen) < len(CANDIDATES):
        raise SystemExit("the curves need the screen's results first: run --stage screen (or "
                         "all)")
    return [r["candidate"] for r in sorted(screen, key=lambda r: r["rel_l2"]["mean"])][:CARRIED]


def run(stage: str, sizes: list[int], quick: bool, out: Path, progress: bool = True) -> dict:
    """The stage's points, each trained and scored unless a row of its checkpoint exists."""
    path = out / "posthoc_budget.json"
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    rows = done(old, quick)
    if stage in ("screen", "all"):
        for point in screen_points():
            rows = compute(point, rows, quick, progress, path)
    if stage in ("curves", "all"):
        for point in curve_points(sizes, rows, quick):
            rows = compute(point, rows, quick, progress, path)
    if stage in ("diagnostics", "all") and not quick:
        for point in diagnostic_points(sizes):
            rows = compute(point, rows, quick, progress, path)
    screened = sum(1 for p in screen_points() if zoo.resolve(spec_for(*p), quick).name in rows)
    return write_json(path, {"quick": quick, "rows": sorted(rows.values(), key=order),
                             "chosen": chosen(rows) if screened == len(screen_points()) else []})


def compute(point: tuple, rows: dict, quick: bool, progress: bool, path: Path) -> dict:
    name = zoo.resolve(spec_for(*point), quick).name
    if name not in rows:
        rows = {**rows, name: score(*point, quick, progress)}
        write_json(path, {"quick": quick, "rows": sorted(rows.values(), key=order)})
    return rows


def order(r: dict) -> tuple:
    names = [*CANDIDATES, *DIAGNOSTICS, BASELINE]
    return (r["size"], names.index(r["candidate"]), r["multiple"], r["seed"])


def grouped(rows: list[dict]) -> dict[tuple, list[dict]]:
    """Rows by (size, candidate, multiple): one entry per training seed."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault((r["size"], r["candidate"], r["multiple"]), []).append(r)
    return out


def against_vit_shapley(rows: list[dict], seeds: int = len(SEEDS)) -> list[dict]:
    """At every (players, budget) where ViT-Shapley and at least one of our candidates have all
    `seeds` training seeds: ViT-Shapley's mean phi error over the seeds, our best candidate's
    (among `CANDIDATES`: the diagnostics are not explainers we offer),
    whether ours is below (the study's goal), and whether each error is resolved (its reference's
    noise at most a third of it at every seed; else the error is a bound, "≤")."""
    groups = grouped(rows)
    out = []
    for (size, candidate, multiple), rs in groups.items():
        if candidate != BASELINE or len(rs) < seeds:
            continue
        ours = {c: sum(r["rel_l2"]["mean"] for r in g) / len(g)
                for (n, c, m), g in groups.items()
                if (n, m) == (size, multiple) and c in CANDIDATES and len(g) >= seeds}
        if not ours:
            continue
        best = min(ours, key=ours.get)
        theirs = sum(r["rel_l2"]["mean"] for r in rs) / len(rs)
        resolved = {c: all(r["resolved"] for r in groups[(size, c, multiple)])
                    for c in (BASELINE, best)}
        out.append({"size": size, "multiple": multiple, "vit_shapley": theirs, "best": best,
                    "ours": ours[best], "ahead": ours[best] < theirs,
                    "vit_shapley_resolved": resolved[BASELINE], "ours_resolved": resolved[best]})
    return sorted(out, key=lambda r: (r["size"], r["multiple"]))


def markdown(results: dict) -> str:
    lines = ["| players | explainer | budget (x today's) | frozen evals | seeds | phi rel. L2: "
             "mean over seeds (min, max) | reference (max noise) | pairs vs Faith-Shap "
             "(Pearson) | train s | checkpoints |",
             "|---:|---|---:|---:|---:|---|---|---|---:|---|"]
    for (size, candidate, multiple), rs in grouped(results["rows"]).items():
        errors = [r["rel_l2"]["mean"] for r in rs]
        bound = "" if all(r["resolved"] for r in rs) else "≤ "
        noise = max(r["reference_noise"]["max"] for r in rs)
        pairs = [r["pair_pearson_faith"]["mean"] for r in rs if r.get("pair_pearson_faith")]
        lines.append(
            f"| {size} | {candidate} | {multiple:g} | {rs[0]['frozen_evals']:,} | {len(rs)} | "
            f"{bound}{sum(errors) / len(errors):.3f} ({min(errors):.3f}, {max(errors):.3f}) | "
            f"{rs[0]['reference']}" + (f" ({noise:.3f})" if noise else "") + " | "
            + (f"{sum(pairs) / len(pairs):.3f}" if pairs else "n/a") + " | "
            f"{sum(r['train_seconds'] for r in rs) / len(rs):.0f} | "
            + ", ".join(f"`{r['fingerprint']}`" for r in rs) + " |")
    return "\n".join(lines)


def figure(results: dict):
    """Error against training budget, one panel per player count: a line per explainer, each
    point the mean over training seeds with their range as the bar; one legend for all panels."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    groups = grouped(results["rows"])
    sizes = sorted({k[0] for k in groups})
    names = [*CANDIDATES, *DIAGNOSTICS, BASELINE]
    fig = Figure(figsize=(4.6 * len(sizes), 4.6), layout="constrained")
    axes = fig.subplots(1, len(sizes), squeeze=False)[0]
    legend = {}
    for ax, size in zip(axes, sizes):
        budgets = set()
        for i, name in enumerate(names):
            points = sorted((k[2], rs) for k, rs in groups.items() if k[:2] == (size, name))
            if not points:
                continue
            x = [rs[0]["frozen_evals"] for _, rs in points]
            y = [[r["rel_l2"]["mean"] for r in rs] for _, rs in points]
            mean = [sum(v) / len(v) for v in y]
            line = ax.errorbar(x, mean, yerr=[[m - min(v) for m, v in zip(mean, y)],
                                              [max(v) - m for m, v in zip(mean, y)]],
                               marker="os^Dv<>P"[i % 8], capsize=3, lw=1,
                               color="black" if name == BASELINE else f"C{i % 10}")
            legend.setdefault(name, line)
            budgets.update(x)
            noise = max(r["reference_noise"]["max"] for _, rs in points for r in rs)
            if noise:
                ax.axhline(noise, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = []                  # one tick per budget (objectives differ by < 2 % at 1x)
        for b in sorted(budgets):
            if not ticks or b > 1.1 * ticks[-1]:
                ticks.append(b)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:.2g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("frozen-model evaluations in training (millions)")
        ax.set_ylabel("phi rel. L2 against the reference")
        ax.set_title(f"{size} patches (dotted: reference noise)", fontsize=9)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center",
               ncol=min(6, len(legend)), fontsize=7)
    fig.suptitle("Post-hoc explainers of a frozen ViT: error against training budget")
    return fig


def main(argv: list[str] | None = None) -> dict:
    parser = experiment_parser(__doc__.splitlines()[0], "folder for posthoc_budget.json / .md / "
                               ".png (default shap_overlays/; quick: <cache>/posthoc-budget-quick/)")
    parser.add_argument("--stage", choices=("screen", "curves", "diagnostics", "all"), default="all")
    parser.add_argument("--sizes", nargs="+", type=int, default=list(BASE), choices=list(BASE))
    args = parser.parse_args(argv)
    quick, out = setup(args, OUT, "posthoc-budget-quick")
    results = run(args.stage, args.sizes, quick, out, not args.no_progress)
    table = markdown(results)
    publish(table, out, "posthoc_budget", figure(results), block="posthoc_budget",
            committed=not quick and out.resolve() == OUT.resolve())
    print(table)
    return results


if __name__ == "__main__":
    main()
