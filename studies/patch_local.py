"""The pairwise class built directly: a patch-local LearnedSHAP ViT beside the co-trained one.

A co-trained LearnedSHAP ViT whose consistency loss holds exactly is a pairwise additive model
over patches; the patch-local ViT (`models.patch_vit`: each patch token through the blocks
alone, patches meeting only in the head's pair terms) is that class by construction, exact with
no consistency loss. For each size, the plain ViT, the co-trained LearnedSHAP ViT (the default
at 16 and 64 patches; the scale study's at 196) and the patch-local ViT, trained on the same
images for the same epochs, are measured on

- accuracy: the model's test split, a large fresh one (4,000 generated images) and the last
  training epoch's, so that training and generalisation can be told apart;
- for the LearnedSHAP heads, phi against the references of the model's own game (exact at 16
  players, antithetic permutations with their noise beyond), pairs against exact Faith-Shap
  (16 players) and the game's remainder; training time.

Does attention make the pairwise class easier to train or to generalise? 196 patches train for
tens of minutes each on 2 cores, so they run only when asked (`--sizes 16 64 196`). The parity
task's patch-local model is measured by `studies.parity` beside the other parity models.

    python -m studies.patch_local [--sizes 16 64] [--quick]
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from evaluation.cli import experiment_parser, setup
from evaluation.faithfulness import REFERENCE_BUDGET64, REFERENCE_BUDGET196
from evaluation.formatting import number
from evaluation.head_checks import head_faithfulness, large_test_accuracy
from evaluation.records import write_json, write_text
from models import zoo
from tools.readme import replace_block

OUT = zoo.ROOT / "shap_overlays"
LARGE_TEST = 4000
# size -> (plain, co-trained, patch-local) zoo names
SIZES = {16: ("vit_patches", "learned_vit_patches", "learned_patch_vit_patches"),
         64: ("vit_patches64", "learned_vit_patches64", "learned_patch_vit_patches64"),
         196: ("vit_patches196", "learned_vit_patches196", "learned_patch_vit_patches196")}
DEFAULT_SIZES = (16, 64)
PER_CLASS = {16: 2, 64: 2, 196: 1}
ROLES = ("plain", "co-trained", "patch-local")
# task -> the co-trained ViT whose data, epochs and start a patch-local ViT shares, and its data
BASES = {"patches": ("learned_vit_patches", "16 patches, patch-game images"),
         "patches64": ("learned_vit_patches64", "64 patches, 64x64 patch-game images"),
         "patches196": ("learned_vit_patches196_w0", "196 patches, 112x112 patch-game images"),
         "parity": ("learned_vit_parity_w10", "16 patches, parity of three objects")}


def specs(known: dict[str, zoo.ModelSpec]) -> dict[str, zoo.ModelSpec]:
    """The patch-local LearnedSHAP ViTs (models.patch_vit: each patch token through the blocks
    alone, patches meeting only in the head's pair terms), exact by construction, each trained
    like the co-trained ViT of the same size and task in `known` (data, epochs, start) without
    the consistency loss."""
    out = {}
    for task, (base, what) in BASES.items():
        co = known[base]
        out[f"learned_patch_vit_{task}"] = zoo.ModelSpec(
            f"learned_patch_vit_{task}", "learned_patch_vit", co.dataset, co.config,
            epochs=co.epochs, batch_size=co.batch_size, head={"consistency": 0.0},
            plain=co.plain, data_options=co.data_options, quick=co.quick,
            init_from=co.init_from,
            description=f"LearnedSHAP patch-local ViT (each patch on its own), {what}")
    return out


def reference_budget(n_players: int, quick: bool) -> int | None:
    if n_players <= 16:
        return None
    if quick:
        return 2048
    return REFERENCE_BUDGET64 if n_players <= 64 else REFERENCE_BUDGET196


def measure(size: int, role: str, name: str, quick: bool, progress: bool) -> dict:
    """Train (or load) one model and measure it."""
    spec = zoo.resolve(name, quick)
    trained = zoo.load(spec, quick=False, progress=progress)      # resolved above
    model = trained.model.eval()
    accuracy_large, n_large = large_test_accuracy(spec, model, 256 if quick else LARGE_TEST)
    row = {"size": size, "role": role, "model": name, "fingerprint": trained.meta["fingerprint"],
           "accuracy": trained.meta["accuracy"], "accuracy_large": accuracy_large,
           "n_large": n_large, "train_accuracy": trained.meta["history"][-1]["train_acc"],
           "train_seconds": trained.meta["train_seconds"]}
    if role != "plain":
        row.update(head_faithfulness(spec, model, 1 if quick else PER_CLASS[size],
                                     reference_budget(model.n_players, quick),
                                     200 if quick else 1000))
    return row


def run(sizes: list[int], quick: bool, out: Path, progress: bool = True) -> dict:
    """Every model of every size, resuming from `out`/patch_local.json (a row is kept while its
    checkpoint's fingerprint is the model's current one)."""
    path = out / "patch_local.json"
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    current = {(size, name): zoo.fingerprint(zoo.resolve(name, quick))
               for size in SIZES for name in SIZES[size]}
    rows = [r for r in old if current.get((r["size"], r["model"])) == r["fingerprint"]]
    done = {(r["size"], r["model"]) for r in rows}
    todo = [(size, role, name) for size in sizes for role, name in zip(ROLES, SIZES[size],
                                                                        strict=True)]
    for size, role, name in tqdm(todo, desc="patch-local study", disable=not progress):
        if (size, name) in done:
            continue
        rows.append(measure(size, role, name, quick, progress))
        rows.sort(key=lambda r: (r["size"], ROLES.index(r["role"])))
        save(rows, quick, out)
    return save(rows, quick, out)


def save(rows: list[dict], quick: bool, out: Path) -> dict:
    results = write_json(out / "patch_local.json", {"quick": quick, "rows": rows})
    table = markdown(results)
    write_text(out / "patch_local.md", table + "\n")
    if not quick and out.resolve() == OUT.resolve():
        replace_block("patch_local", table)
    return results


def markdown(results: dict) -> str:
    lines = ["| players | model | role | accuracy (test / large / last train epoch) | phi rel. L2 "
             "mean (max) | pairs vs Faith-Shap Pearson | remainder 1 - R² | train s | "
             "checkpoint |", "|---:|---|---|---|---|---:|---:|---:|---|"]
    for r in results["rows"]:
        faithful = ""
        if "rel_l2" in r:
            bound = "" if r["resolved"] else "≤ "
            faithful = (f"{bound}{number(r['rel_l2'], 3, 'g')} "
                        f"({number(r['rel_l2_max'], 3, 'g')}) | "
                        f"{number(r['pair_pearson_faith'], 3, 'g')} | "
                        f"{number(r['remainder'], 3, 'g')}")
        else:
            faithful = " | | "
        lines.append(f"| {r['size']} | `{r['model']}` | {r['role']} | {r['accuracy']:.1%} / "
                     f"{r['accuracy_large']:.2%} / {r['train_accuracy']:.1%} | {faithful} | "
                     f"{r['train_seconds']:.0f} | `{r['fingerprint']}` |")
    references = sorted({r["reference"] for r in results["rows"] if r.get("reference")})
    return ("\n".join(lines) + "\n\nLarge test split: 4,000 generated images. phi against the "
            "references of each model's own game (" + "; ".join(references) + "), predicted "
            "class, the same number of test images from every class; \"≤\": the reference's "
            "noise is above a third of the error.")


def main(argv: list[str] | None = None) -> dict:
    parser = experiment_parser(__doc__.splitlines()[0], "folder for patch_local.json / .md "
                               "(default shap_overlays/; in quick mode <cache>/patch-local-quick/)")
    parser.add_argument("--sizes", nargs="*", type=int, default=list(DEFAULT_SIZES),
                        choices=list(SIZES), help="players per image (196: tens of minutes a "
                        "model on 2 cores)")
    args = parser.parse_args(argv)
    quick, out = setup(args, OUT, "patch-local-quick")
    results = run(args.sizes, quick, out, progress=not args.no_progress)
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
