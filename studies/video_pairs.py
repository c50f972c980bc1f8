"""What the pair terms see in motion: do video models and their explanations tie the moving object
to a local flicker?

Pairwise explanations of video classifiers were reported to highlight "extraneous regions of
movement, i.e. lighting changes". Here the motion clips carry one or two local flickering
squares (`data.video`, `local_flicker`: a fixed square whose brightness is drawn afresh in every
frame) that never decide the class, with pixel masks of the object and of the flicker. On 8
tubelets (2 x 2 x 2) a pair of tubelets is

- **object-object** when both hold the moving object: the motion itself (where the object is in
  the first half of the clip and where it is in the second), the pairs the class needs;
- **object-flicker** when one holds the object and the other only the flicker: the seed's
  "extraneous movement";
- **object-background** when one holds the object and the other neither.

For three models trained on these clips (the plain 3D-ResNet `r3d_video_flicker` with its
blurred-tubelet game; the whole-clip LearnedSHAP 3D-ResNet `learned_r3d_video_flicker`; the
tubelet-local one `learned_r3d_tubelets_flicker`) and each source of pair terms (the exact
Harsanyi pair dividends and order-2 Faith-Shap of the model's own game, from all 256 coalitions;
the learned head's c_ij), in the predicted class, on the same stratified test clips:

- AUROC of |pair| for object-object pairs against every other pair (1: motion pairs strongest);
- AUROC of |pair| for object-flicker against object-background pairs (0.5: the flicker is tied
  to the object no more than static background is; above: the pair terms see the flicker);
- the object-flicker pairs' share of the total |pair| mass, beside their share of the pairs;
- for a learned head, the relative L2 error of its pairs against the exact Harsanyi dividends.

Magnitudes, because a pair the model depends on may lower the class together as well as raise
it. Writes `video_pairs.json`, `video_pairs.md`, the figure `learnedSHAP_video_pairs.png` and the
block `video_pairs` in docs/video.md.

    python -m studies.video_pairs [--quick]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

import data
from evaluation.cli import experiment_parser, setup
from evaluation.examples import Examples, load_examples
from evaluation.faithfulness import stats
from evaluation.formatting import stat
from evaluation.metrics import auroc, rel_l2
from evaluation.records import write_json, write_text
from evaluation.references import reference
from models import zoo
from models.tubelet_players import TubeletPlayers
from models.zoo import QUICK_VIDEO, WHOLE_CLIP, ModelSpec
from tools.readme import replace_block
from viz.overlay import plot_video_pairs, save_figure

# The models of this study: the same clips with one or two local
# flickering squares (data.video's local_flicker), a plain 3D-ResNet, the whole-clip default
# head and the tubelet-local head trained on them, so that pair terms can be scored against
# object-object and object-flicker pairs.
FLICKER = {"local_flicker": (1, 2)}
SPECS: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("r3d_video_flicker", "r3d", "video", {"n_classes": 4}, epochs=3, batch_size=32,
              data_options=FLICKER, quick=QUICK_VIDEO,
              description="3D-ResNet on motion clips with local flickering squares"),
    ModelSpec("learned_r3d_video_flicker", "learned_r3d", "video", {"n_classes": 4}, epochs=6,
              batch_size=32, head=WHOLE_CLIP, plain="r3d_video_flicker", data_options=FLICKER,
              quick=QUICK_VIDEO,
              description="LearnedSHAP 3D-ResNet (whole clip, 8 tubelets), clips with flicker"),
    ModelSpec("learned_r3d_tubelets_flicker", "learned_tubelet_r3d", "video", {"n_classes": 4},
              epochs=4, batch_size=32, head={"consistency": 0.0, "tubelets": (2, 2, 2)},
              plain="r3d_video_flicker", data_options={**FLICKER, "n_train": 6000},
              quick=QUICK_VIDEO,
              description="LearnedSHAP tubelet-local 3D-ResNet, 8 tubelets, clips with flicker"),
]}


PLAIN = "r3d_video_flicker"
LEARNED = ("learned_r3d_video_flicker", "learned_r3d_tubelets_flicker")
GRID = (2, 2, 2)
PER_CLASS = 16
FIGURE = "learnedSHAP_video_pairs.png"


def pair_kinds(relevant: Tensor, flicker: Tensor) -> dict[str, Tensor]:
    """Masks (N, N) of the pair kinds from tubelet masks (N,) of the object and the flicker.

    A tubelet holding both counts as an object tubelet; "flicker" means flicker and no object.
    """
    obj = relevant.bool()
    flick = flicker.bool() & ~obj
    other = ~obj & ~flick
    off = ~torch.eye(len(obj), dtype=torch.bool)
    both = lambda a, b: ((a[:, None] & b[None]) | (b[:, None] & a[None])) & off   # noqa: E731
    return {"object_object": both(obj, obj), "object_flicker": both(obj, flick),
            "object_background": both(obj, other)}


def pair_scores(pairs: Tensor, kinds: dict[str, Tensor]) -> dict[str, float]:
    """The study's numbers for one clip's pair terms (N, N) of the predicted class."""
    n = len(pairs)
    i, j = torch.triu_indices(n, n, offset=1)
    size = pairs.abs().double()[i, j]                                        # (P,) |c_ij|
    k = {name: m[i, j] for name, m in kinds.items()}                          # (P,) bool each
    mass = float(size.sum())
    control = k["object_flicker"] | k["object_background"]
    return {
        "object_auroc": auroc(size, k["object_object"]),
        "flicker_auroc": (auroc(size[control], k["object_flicker"][control])
                          if control.any() else math.nan),
        "flicker_share": float(size[k["object_flicker"]].sum()) / mass if mass > 0 else math.nan,
        "flicker_chance": float(k["object_flicker"].double().mean()),
    }


def flicker_masks(spec: zoo.ModelSpec, ex: Examples) -> Tensor:
    """The flicker's pixels (B, T, H, W) of the examples' clips."""
    ds = data.get_dataset(spec.dataset, "test", seed=spec.seed, **spec.data_options)
    if "flicker" not in ds.tensors:
        raise ValueError(f"{spec.name} is trained on clips without local flicker; the pair study "
                         "needs data_options with local_flicker")
    return ds.tensors["flicker"][ex.index].bool()


def with_game(name: str, model: nn.Module) -> nn.Module:
    """A learned model as it is; the plain model with its blurred-tubelet game declared."""
    return model.eval() if name in LEARNED else TubeletPlayers(model, GRID, "blur").eval()


def measure(name: str, quick: bool, per_class: int, progress: bool) -> dict:
    """Pair scores of one model's exact dividends, Faith-Shap and (learned) head on the clips."""
    trained = zoo.load(name, quick=quick, progress=progress)      # trains it when not cached
    model = with_game(name, trained.model)
    spec = zoo.resolve(name, quick)
    ex = load_examples(spec, model, per_class)
    flicker = flicker_masks(spec, ex)
    relevant = data.cell_truth(ex.truth, GRID)
    flick = data.cell_truth(flicker, GRID)
    sources: dict[str, list[dict]] = {}
    clips = []
    for b in range(len(ex)):
        ref = reference(model, ex.x[b])
        target = int(ref.v_full.argmax())
        kinds = pair_kinds(relevant[b], flick[b])
        found = {"Harsanyi (exact)": ref.pairs_harsanyi[..., target],
                 "Faith-Shap (exact)": ref.pairs_faith[..., target]}
        if name in LEARNED:
            with torch.no_grad():
                found["LearnedSHAP"] = model.explain(ex.x[b:b + 1]).pair[0, ..., target].double()
        for source, p in found.items():
            row = pair_scores(p, kinds)
            if source == "LearnedSHAP":
                row["rel_l2_harsanyi"] = rel_l2(p.flatten(), found["Harsanyi (exact)"].flatten())
            sources.setdefault(source, []).append(row)
        clips.append({k: v.float() for k, v in found.items()})
    keys = ("object_auroc", "flicker_auroc", "flicker_share", "flicker_chance", "rel_l2_harsanyi")
    return {"model": name, "accuracy": trained.meta["accuracy"], "clips": len(ex),
            "per_class": per_class, "fingerprint": trained.meta.get("fingerprint"),
            "sources": {s: {k: spread([r.get(k) for r in rows]) for k in keys}
                        for s, rows in sources.items()},
            "_pairs": {s: torch.stack([c[s] for c in clips]) for s in clips[0]},
            "_examples": (ex, flicker)}


def spread(values: list) -> dict | None:
    """Mean, min, max, n and the standard error of the mean over the clips (nan and None out)."""
    out = stats(values)
    if out is not None:
        v = [a for a in values if a is not None and a == a]
        sd = math.sqrt(sum((a - out["mean"]) ** 2 for a in v) / (len(v) - 1)) if len(v) > 1 else 0.0
        out["se"] = sd / math.sqrt(len(v))
    return out


def mean_se(s: dict | None) -> str:
    return "n/a" if s is None else f"{s['mean']:.3f} ± {s['se']:.3f}"


def markdown(results: dict) -> str:
    lines = ["| model | accuracy | pairs from | object-object AUROC | object-flicker vs "
             "object-background AUROC | object-flicker share of pair mass (share of pairs) | "
             "rel. L2 to exact dividends |", "|---|---:|---|---:|---:|---:|---:|"]
    for m in results["models"]:
        for source, s in m["sources"].items():
            lines.append(f"| `{m['model']}` | {m['accuracy']:.3f} | {source} | "
                         f"{mean_se(s['object_auroc'])} | {mean_se(s['flicker_auroc'])} | "
                         f"{mean_se(s['flicker_share'])} ({stat(s['flicker_chance'], 'mean')}) | "
                         f"{stat(s['rel_l2_harsanyi'], 'mean')} |")
    return (f"{results['models'][0]['clips']} test clips ({results['per_class']} per class), "
            f"8 tubelets (2 x 2 x 2), predicted class; AUROCs of |c_ij|; mean ± standard error "
            f"over clips.\n\n"
            + "\n".join(lines))


def figure(measured: list[dict], clips_per_class: int = 1):
    """The strongest pairs on one clip of each class: exact beside learned, every model."""
    ex, flicker = measured[0]["_examples"]
    k = clips_per_class * len(ex.classes)                 # the interleaved order: one per class
    pairs = {}
    for m in measured:
        for source in ("LearnedSHAP", "Harsanyi (exact)"):
            if source in m["_pairs"]:
                pairs[f"{m['model']}\n{source}"] = m["_pairs"][source][:k]
    return plot_video_pairs(ex.x[:k], pairs, grid=GRID, truth=ex.truth[:k],
                            distractor=flicker[:k], titles=[ex.classes[int(y)] for y in ex.y[:k]],
                            suptitle="Strongest pair terms (top 3) on clips with a local flicker "
                                     "(green: moving object, orange: flicker; first and second "
                                     "half of each clip side by side)")


def run(models: list[str], quick: bool, per_class: int, progress: bool) -> tuple[dict, list]:
    measured = [measure(name, quick, per_class, progress) for name in models]
    public = [{k: v for k, v in m.items() if not k.startswith("_")} for m in measured]
    return {"quick": quick, "per_class": per_class, "grid": list(GRID), "models": public}, measured


def main(argv: list[str] | None = None) -> dict:
    parser = experiment_parser(__doc__.splitlines()[0], "folder for video_pairs.json / .md / .png "
                               "(default shap_overlays/; in quick mode <cache>/video-pairs-quick/)")
    parser.add_argument("--per-class", type=int, default=None,
                        help=f"test clips of each class (default {PER_CLASS}; quick: 2)")
    args = parser.parse_args(argv)
    quick, out = setup(args, zoo.RESULTS_DIR, "video-pairs-quick")
    per_class = args.per_class or (2 if quick else PER_CLASS)
    results, measured = run([PLAIN, *LEARNED], quick, per_class, not args.no_progress)
    results = write_json(out / "video_pairs.json", results)
    table = markdown(results)
    write_text(out / "video_pairs.md", table + "\n")
    save_figure(figure(measured), out / FIGURE, dpi=80)
    if not quick and out.resolve() == zoo.RESULTS_DIR.resolve():
        replace_block("video_pairs", table)
    print(table)
    return results


if __name__ == "__main__":
    main()
