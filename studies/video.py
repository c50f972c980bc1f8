"""The video study: is a LearnedSHAP 3D-ResNet the Shapley value of its own game, and why not?

LearnedSHAP 3D-ResNets on the motion clips, each scored like the scale study's co-trained rows
(`evaluation.games.co_trained`: the same stratified test clips, references of the model's own game,
every sampler on a doubling grid from 2n to 32n evaluations, break-even, remainder, seconds):

- `learned_r3d_video`, the whole-clip 3D-ResNet with a Harsanyi head on its feature grid pooled to
  8 tubelets; its game removes a tubelet by blurring its pixels; and five ablations of it, one
  cause at a time: tubelets removed to zeros (an empty clip that does not depend on the input),
  paired Shapley-kernel coalitions in the consistency loss, consistency weight 100, no warm-up,
  and pair forms of rank 32 (capacity);
- `learned_r3d_tubelets` and `learned_r3d_tubelets32`, the tubelet-local 3D-ResNet
  (`models.tubelet_r3d`) at 8 (2 x 2 x 2) and 32 (2 x 4 x 4) tubelets, whose game drops tubelet
  tokens and is pairwise by construction.

References: exact at 8 tubelets, antithetic permutation in two halves at 32 (own noise given).
The frozen plain 3D-ResNet (`r3d_video`, blurred tubelets) explained by post-hoc LearnedSHAP
(`models.posthoc_video`) at 8 and 32 tubelets, against the same references and samplers.
And the causes, measured on every co-trained model: **leakage** (removing one tubelet changes the other
tubelets' tokens: mean relative change over the other tubelets) and the **empty clip** (v(empty)
of the model's game against the head's bias: the mean absolute gap in the predicted class's logit,
and how much it varies between clips). Writes `video.json`, `video.md`, the figure
`video_error_vs_evals.png` and the block `video` in docs/video.md.

    python -m studies.video [--quick]

Measured here: 57 minutes on one thread of a busy 2-core machine, training four of the models
(`make video`; the two tubelet-local models had been trained before, 9 minutes).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from evaluation import break_even as be
from evaluation.cli import experiment_parser, setup
from evaluation.examples import load_examples
from evaluation.faithfulness import measure, references_for, stats
from evaluation.formatting import stat
from evaluation.games import (
    LARGEST,
    QUICK_LARGEST,
    QUICK_SAMPLERS,
    Setting,
    co_trained,
    co_trained_table,
    curves_for,
    frozen_table,
    sampler_table,
    saved_results,
    versus_samplers,
)
from evaluation.records import write_json, write_text
from evaluation.references import game_for
from explainers.core import model_device
from models import zoo
from models.zoo import QUICK_VIDEO, WHOLE_CLIP, ModelSpec
from shapley.game import make_baseline, tubelet_feature_mask
from tools.readme import replace_block
from viz.overlay import save_figure

# The video study's models: LearnedSHAP on a tubelet-local 3D-ResNet (models.tubelet_r3d), whose
# game drops tubelet tokens and is pairwise by construction, at 8 tubelets (2 x 2 x 2, exact
# references; the zoo's default `learned_r3d_tubelets`) and 32 (2 x 4 x 4, sampled references),
# without a consistency loss (it would be zero). The 32-tubelet model trains on 6,000 clips for 4
# epochs: each of its tubelets sees a sixteenth of the frames' area (the 8-tubelet model's a
# quarter), so it trains on more clips than the 2,000 of the 8-tubelet model.
SPECS: dict[str, ModelSpec] = {s.name: s for s in [
    # Ablations of a whole-clip head (consistency 10, uniform coalitions; the zoo's
    # learned_r3d_video takes weight 100 and the kernel), one cause at a time: an empty clip
    # that does not depend on the input (zeros instead of the blur), the coalitions of the
    # consistency loss (the Shapley kernel, each with its complement), its weight (100), its
    # warm-up (none instead of one epoch) and the head's capacity (rank 32 instead of 8).
    *(ModelSpec(f"learned_r3d_video_{tag}", "learned_r3d", "video", {"n_classes": 4}, epochs=6,
                batch_size=32, head={**WHOLE_CLIP, **change}, plain="r3d_video", quick=QUICK_VIDEO,
                description=f"LearnedSHAP 3D-ResNet (whole clip, 8 tubelets), {what}")
      for tag, change, what in [
          ("zeros", {"baseline": "zeros"}, "tubelets removed to zeros"),
          ("kernel", {"sampler": "kernel_paired"}, "paired Shapley-kernel coalitions"),
          ("w100", {"consistency": 100.0}, "consistency weight 100"),
          ("warm0", {"warmup_epochs": 0}, "no warm-up (consistency from the first step)"),
          ("rank32", {"rank": 32}, "pair forms of rank 32 (capacity)")]),
    # Post-hoc LearnedSHAP of the frozen plain 3D-ResNet (r3d_video) on its blurred-tubelet game,
    # at 8 and 32 tubelets: 16 coalitions a clip (8 kernel coalitions and their complements) plus
    # the two ends, so an epoch of 2,000 clips costs 36,000 frozen-model evaluations.
    *(ModelSpec(f"posthoc_r3d_video{suffix}", "posthoc_r3d", "video", {"n_classes": 4}, epochs=8,
                batch_size=32, head={"rank": 8, "pairwise": True, "coalitions": 16,
                                     "tubelets": grid}, plain="r3d_video", quick=QUICK_VIDEO,
                description=f"post-hoc LearnedSHAP (unary + pairs) of the frozen r3d_video, "
                            f"{n} tubelets")
      for suffix, grid, n in [("", (2, 2, 2), 8), ("32", (2, 4, 4), 32)]),
    ModelSpec("learned_r3d_tubelets32", "learned_tubelet_r3d", "video", {"n_classes": 4},
              epochs=4, batch_size=32, head={"consistency": 0.0, "tubelets": (2, 4, 4)},
              plain="r3d_video", data_options={"n_train": 6000}, quick=QUICK_VIDEO,
              description="LearnedSHAP tubelet-local 3D-ResNet, 32 tubelets (2x4x4), motion clips"),
]}


MODELS = ("learned_r3d_video", "learned_r3d_video_zeros", "learned_r3d_video_kernel",
          "learned_r3d_video_w100", "learned_r3d_video_warm0", "learned_r3d_video_rank32",
          "learned_r3d_tubelets", "learned_r3d_tubelets32")
FROZEN = ("posthoc_r3d_video", "posthoc_r3d_video32")    # explainers of the frozen r3d_video
REMAINDER_COALITIONS = 1000
REFERENCE_BUDGET32 = 8320       # 2 x 4,160 evaluations: 65 antithetic pairs of permutations a half
GOAL = 0.02                     # rel. L2 against the reference
GOAL_FROZEN = {8: 0.05, 32: 0.10}   # the scale study's frozen goals at 16 and 64 players
ACCURACY_TOLERANCE = 0.01       # within one point of the plain 3D-ResNet


def setting(model: nn.Module, quick: bool) -> Setting:
    """Exact references up to 16 players, else a sampled one (smaller in quick mode)."""
    budget = None if model.n_players <= 16 else (1024 if quick else REFERENCE_BUDGET32)
    return Setting((), "", (), 1 if quick else 4, budget, (0,) if quick else (0, 1),
                         GOAL, GOAL, ACCURACY_TOLERANCE)


@torch.no_grad()
def causes(model: nn.Module, x: Tensor) -> dict:
    """Leakage of one tubelet's pixels into the other tubelets' tokens, and the empty clip.

    x: clips (B, C, T, H, W). Leakage: for each clip and each tubelet i, the tokens the head reads
    when i's pixels are replaced by the blurred clip's (the whole-clip model's removal; for the
    tubelet-local model a check that its tokens are local), against the full clip's:
    ||t_j' - t_j|| / ||t_j||, averaged over the other tubelets j. Empty clip: v(empty) of each
    clip's own game against the head's bias, in the predicted class.
    """
    model.eval()
    x = x.to(model_device(model))
    n, leak, gaps, empties = model.n_players, [], [], []
    cells = tubelet_feature_mask(*x.shape[-3:], grid=tuple(model.tubelets)).to(x.device)
    others = ~torch.eye(n, dtype=torch.bool, device=x.device)                      # (N, N)
    for clip in x:
        blurred = make_baseline(clip, "blur")
        present = others[:, cells][:, None]                                  # (N, 1, T, H, W)
        full = pixel_tokens(model, clip[None])                               # (1, N, D)
        some = pixel_tokens(model, torch.where(present, clip, blurred))      # (N, N, D)
        change = (some - full).norm(dim=-1) / full.norm(dim=-1).clamp_min(1e-12)   # (N, N)
        leak.append(float(change[others].mean()))
        game = game_for(model, clip)
        target = int(game(torch.ones(1, n, dtype=torch.bool))[0].argmax())
        empty = game(torch.zeros(1, n, dtype=torch.bool))[0]                  # (K,)
        empties.append(empty.detach().cpu())
        gaps.append(float(empty[target] - model.head.bias[target]))
    g = torch.tensor(gaps)
    # how far v(empty) moves with the input: each class's spread over the clips, the largest
    # (per class, so that clips predicted as different classes do not count as a spread)
    spread = float(torch.stack(empties).std(0).max()) if len(empties) > 1 else 0.0
    return {"leakage": stats(leak), "empty_minus_bias": stats(g.abs().tolist()),
            "empty_spread": spread}


def pixel_tokens(model: nn.Module, clips: Tensor) -> Tensor:
    """The tokens (B, N, D) the model's head reads for clips (B, C, T, H, W)."""
    if hasattr(model, "embed"):                 # tubelet-local: one token per tubelet
        return model.encode(model.embed(clips))
    return model.tokens(clips)                  # whole clip: its feature grid pooled to tubelets


def run(models: list[str], quick: bool, progress: bool = True) -> dict:
    samplers = QUICK_SAMPLERS if quick else tuple(be.ALL_SAMPLERS)
    largest = QUICK_LARGEST if quick else LARGEST
    games = []
    for name in [m for m in models if m in MODELS]:
        model = zoo.load(name, quick=quick, progress=progress).model.eval()
        s = setting(model, quick)
        game = co_trained(name, s, quick, samplers, largest, progress)
        ex = load_examples(zoo.resolve(name, quick), model, s.per_class)
        entry = game["explainers"][0]
        entry["causes"] = causes(model, ex.x)
        entry["game"] = ("tubelet tokens dropped" if model.removal == "drop" else
                         f"{model.baseline} baseline on {tuple(model.tubelets)} tubelets")
        if model.removal != "drop":       # one pass over the clip and its removed (blurred) copy
            entry["evals_per_explanation"] = 2
        games.append(game)
    for name in [m for m in models if m in FROZEN]:
        games.append(frozen(name, quick, samplers, largest, progress))
    return {"models": models, "quick": quick, "samplers": list(samplers), "largest": largest,
            "games": games}


def frozen(name: str, quick: bool, samplers, largest: int, progress: bool) -> dict:
    """Post-hoc LearnedSHAP of the frozen plain 3D-ResNet against its blurred-tubelet game."""
    spec = zoo.resolve(name, quick)
    game = zoo.frozen_model(spec)                    # r3d_video with its tubelet game declared
    plain = zoo.load(spec.plain, quick=quick, progress=progress)
    s, n = setting(game, quick), game.n_players
    entry = measure(name, quick, progress, per_class=s.per_class, budget=s.reference_budget,
                    remainder_coalitions=REMAINDER_COALITIONS)
    entry.update(kind="frozen", goal=GOAL_FROZEN.get(n, 0.10), accuracy=plain.meta["accuracy"],
                 training_evals=entry["frozen_evals"],
                 game=f"{game.baseline} baseline on {game.tubelets} tubelets")
    entry["goal_met"] = entry["rel_l2"]["mean"] <= entry["goal"]
    ex = load_examples(spec, game, s.per_class)
    refs = references_for(game, ex, s.reference_budget, progress)
    targets = [r["target"] for r in entry["examples"]]
    curves = curves_for(game, ex.x, targets, refs, n, s.seeds, samplers, largest, progress)
    entry["break_even"] = versus_samplers(entry, curves, n)
    return {"kind": "frozen", "model": spec.plain, "n_players": n, "explainers": [entry],
            **curves}


def causes_table(results: dict) -> str:
    lines = ["| model | tubelets | game | leakage of one removal (mean, max) | "
             "abs. v(empty) - bias (mean, max) | v(empty), largest spread of a class over clips |",
             "|---|---:|---|---|---|---:|"]
    for g in results["games"]:
        e = g["explainers"][0]
        if "causes" not in e:
            continue
        c = e["causes"]
        lines.append(f"| `{e['name']}` | {e['n_players']} | {e['game']} | "
                     f"{stat(c['leakage'], 'mean', 3, 'g')}, {stat(c['leakage'], 'max', 3, 'g')} | "
                     f"{stat(c['empty_minus_bias'], 'mean', 3, 'g')}, "
                     f"{stat(c['empty_minus_bias'], 'max', 3, 'g')} | {c['empty_spread']:.3g} |")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    return ("**Each LearnedSHAP 3D-ResNet against the references of its own game**\n\n"
            + co_trained_table(results)
            + "\n\n**Why the whole-clip model is not exact: leakage and the empty clip**\n\n"
            + causes_table(results)
            + "\n\n**Frozen: the plain 3D-ResNet explained by post-hoc LearnedSHAP**\n\n"
            + frozen_table(results) + "\n\n**Every sampler's mean rel. L2 error by budget (model "
            "evaluations, in units of n players)**\n\n" + sampler_table(results))


def figure(results: dict):
    """Error against model evaluations, one panel per model: samplers as curves, the head as a
    point."""
    from matplotlib.figure import Figure

    games = results["games"]
    cols = min(4, len(games))
    rows = -(-len(games) // cols)
    fig = Figure(figsize=(4.4 * cols, 4.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(games):]:
        ax.set_visible(False)
    for ax, g in zip(axes, games):
        e = g["explainers"][0]
        for i, (name, curve) in enumerate(g["curves"].items()):
            curve = be.completed(curve)
            ax.plot([p["evals"] for p in curve], [max(p["rel_l2"], 1e-9) for p in curve],
                    "-" if i < 10 else "--", color=f"C{i % 10}", marker=".", lw=1, label=name)
        label = "post-hoc LearnedSHAP" if g["kind"] == "frozen" else "LearnedSHAP"
        ax.plot([e["evals_per_explanation"]], [max(e["rel_l2"]["mean"], 1e-9)], "o",
                color="black", ms=8, mfc="none", mew=1.5, label=f"{label} (one pass)")
        if e["reference_noise"]["max"]:
            ax.axhline(e["reference_noise"]["max"], color="grey", ls=":", lw=1)
        ax.axvline(2 * g["n_players"], color="#d62728", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("model evaluations per explanation")
        ax.set_ylabel("rel. L2 error of phi (predicted class)")
        ax.set_title(f"{e['name']}, {g['n_players']} tubelets\n{e['game']} (red: 2n; dotted: "
                     "reference noise)", fontsize=8)
        ax.set_xlim(left=0.7)
        ax.legend(fontsize=6, loc="lower left")
    fig.suptitle("Video: error against model evaluations (errors below 1e-9 drawn at 1e-9)")
    return fig


def merge_saved(results: dict, path: Path) -> dict:
    """This run's models over an earlier file's others (`--models` runs some of them)."""
    old = saved_results(results, path)
    if old is None:
        return results
    order = [*MODELS, *FROZEN]
    name = lambda g: g["explainers"][0]["name"]                # noqa: E731
    games = [g for g in old["games"] if name(g) not in results["models"]] + results["games"]
    games.sort(key=lambda g: order.index(name(g)) if name(g) in order else len(order))
    models = [name(g) for g in games]
    return {**results, "models": models, "games": games}


def main(argv: list[str] | None = None) -> dict:
    parser = experiment_parser(__doc__.splitlines()[0], "folder for video.json / .md / .png "
                               "(default shap_overlays/; in quick mode <cache>/video-quick/)")
    parser.add_argument("--models", nargs="*", default=[*MODELS, *FROZEN],
                        choices=[*MODELS, *FROZEN])
    args = parser.parse_args(argv)
    quick, out = setup(args, zoo.RESULTS_DIR, "video-quick")
    results = merge_saved(run(args.models, quick, not args.no_progress), out / "video.json")
    results = write_json(out / "video.json", results)
    table = markdown(results)
    write_text(out / "video.md", table + "\n")
    save_figure(figure(results), out / "video_error_vs_evals.png", dpi=80)
    if not quick and out.resolve() == zoo.RESULTS_DIR.resolve():
        replace_block("video", table)
    for g in results["games"]:
        e = g["explainers"][0]
        print(f"{e['name']} ({g['n_players']} tubelets): accuracy {e['accuracy']:.3f} (plain "
              f"{e.get('plain_accuracy', e['accuracy']):.3f}), rel L2 {e['rel_l2']['mean']:.3g}; best sampler "
              f"{e['break_even']['best']} breaks even at {e['break_even']['text']}")
    return results


if __name__ == "__main__":
    main()
