"""The project's default models: what they are, how they train, where their checkpoints live.

`load("vit_patches")` returns a trained model, training it first if its checkpoint is missing or
stale. `python -m models.zoo build` trains every default model (what `make build` runs) and writes
their test accuracies to `shap_overlays/models.json`, `shap_overlays/models.md` and docs/reproduce.md.

Checkpoints are cached in `<cache>/models/` (git-ignored; `LEARNEDSHAP_CACHE` moves it) under a
fingerprint of the spec and of the code that trains it (`tools.code_key`: the definitions its
training reaches, not whole files), so a change to either retrains and nothing stale is loaded,
while moving a helper or changing how checkpoints are written retrains nothing. Each model kind
(`models.kinds`, registered by the module that defines the model) names how it is built, its loss
and any preparation before training.
Quick mode (`LEARNEDSHAP_QUICK=1`, used by the tests and CI) trains on less data for fewer epochs
and saves under separate names.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path

from torch import nn

import data

# importing a model's module registers its kinds (models.kinds): the zoo builds every kind
from models import (  # noqa: F401
    co_trained,
    distributed,
    posthoc,
    posthoc_video,
    surrogate,
)
from models.kinds import (  # noqa: F401 (re-exported: zoo.ModelSpec, zoo.frozen_model, ...)
    KINDS,
    RECIPE_CLIP_NORM,
    ModelSpec,
    clip_norm_of,
    frozen_model,
    head_options,
    kind_of,
)
from models.train import (
    LossFn,
    default_device,
    evaluate,
    load_checkpoint,
    save_checkpoint,
    seeded,
    train,
)
from models.vit import ViT
from tools.code_key import code_key, outside_key
from tools.files import locked, write_atomic
from tools.readme import replace_block

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "shap_overlays"


def co_trained_head(consistency: float, sampler: str = "uniform") -> dict:
    """A co-trained LearnedSHAP head's settings: pair terms, the consistency weight ramped in over
    one epoch, and the sampler of its coalitions."""
    return {"consistency": consistency, "warmup_epochs": 1, "sampler": sampler, "pairwise": True}


# the setting `studies.sweep` selected per ViT (its "chosen" in shap_overlays/sweep.json)
SWEEP_CHOICE = {"vit_patches": co_trained_head(1000.0, "kernel_paired"),
                "vit_digits": co_trained_head(1000.0, "kernel_paired"),
                "vit_patches64": co_trained_head(1000.0)}
VIT64 = {"n_classes": 4, "image_size": 64, "dim": 32, "depth": 3, "heads": 2}
# shared by the video models of the studies: quick mode, and the first whole-clip head
QUICK_VIDEO = {"epochs": 1, "data_options": {"n_train": 128, "n_test": 64}}
WHOLE_CLIP = {"consistency": 10.0, "tubelets": (2, 2, 2), "baseline": "blur"}
SPECS: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("vit_patches", "vit", "patch_game", {"n_classes": 4}, epochs=10, drop_prob=0.5,
              quick={"epochs": 2, "data_options": {"n_train": 256, "n_test": 128}},
              description="ViT, 16 patches of 8 px, on patch-game images"),
    ModelSpec("vit_digits", "vit", "digits", {"n_classes": 10}, epochs=24, batch_size=32,
              drop_prob=0.3, quick={"epochs": 1},
              description="ViT, 16 patches of 8 px, on scikit-learn digits (32x32)"),
    # torchvision's resnet18 topology, narrowed (widths 8..64): the architecture the shap and
    # Shap-CAM workflows are applied to, with 8 px patches as its players (a feature mask)
    ModelSpec("resnet_patches", "resnet", "patch_game", {"n_classes": 4}, epochs=6,
              quick={"epochs": 1, "data_options": {"n_train": 256, "n_test": 128}},
              description="2D ResNet (resnet18 topology, widths 8-64) on patch-game images"),
    ModelSpec("resnet_digits", "resnet", "digits", {"n_classes": 10}, epochs=12, batch_size=32,
              quick={"epochs": 1},
              description="2D ResNet (resnet18 topology, widths 8-64) on scikit-learn digits"),
    ModelSpec("r3d_video", "r3d", "video", {"n_classes": 4}, epochs=3, batch_size=32,
              quick={"epochs": 1, "data_options": {"n_train": 128, "n_test": 64}},
              description="3D-ResNet on synthetic motion clips (8x32x32)"),
    # The three LearnedSHAP ViTs train with the setting that `python -m studies.sweep` chose
    # under the co-trained recipe: the most faithful one whose accuracy (mean of 3 training seeds)
    # is within 0.5 point of the plain head's, no seed 1.5 points below. See docs/sweep.md
    # for what it costs.
    ModelSpec("learned_vit_patches", "learned_vit", "patch_game", {"n_classes": 4}, epochs=10,
              head=SWEEP_CHOICE["vit_patches"], plain="vit_patches",
              quick={"epochs": 2, "data_options": {"n_train": 256, "n_test": 128}},
              description="LearnedSHAP ViT (Harsanyi head), 16 patches, patch-game images"),
    ModelSpec("learned_vit_digits", "learned_vit", "digits", {"n_classes": 10}, epochs=24,
              batch_size=32, head=SWEEP_CHOICE["vit_digits"], plain="vit_digits",
              quick={"epochs": 1},
              description="LearnedSHAP ViT (Harsanyi head), 16 patches, digits"),
    # The 64-patch pair serves the break-even report (exact values are out of reach there); a
    # narrower, shallower ViT keeps its training inside a few minutes on 2 cores. Both train 28
    # epochs: at 14 the LearnedSHAP model's training loss was still falling (its pair classes
    # not yet learned) while the plain head had converged.
    ModelSpec("vit_patches64", "vit", "patch_game64", VIT64, epochs=28, drop_prob=0.5,
              quick={"epochs": 1, "data_options": {"n_train": 128, "n_test": 64}},
              description="ViT (dim 32, depth 3), 64 patches of 8 px, 64x64 patch-game images"),
    ModelSpec("learned_vit_patches64", "learned_vit", "patch_game64", VIT64, epochs=28,
              head=SWEEP_CHOICE["vit_patches64"], plain="vit_patches64",
              quick={"epochs": 1, "data_options": {"n_train": 128, "n_test": 64}},
              description="LearnedSHAP ViT (dim 32, depth 3), 64 patches, 64x64 patch-game images"),
    # Consistency 100 with paired Shapley-kernel coalitions: of four whole-clip heads trained
    # with the recipe (10 and 100 uniform, 100 and 1,000 paired kernel; one seed, 16 test clips,
    # exact references) the most faithful at the plain model's accuracy (phi rel. L2 0.077 at
    # 100%; 10 uniform 0.103, 100 uniform 0.166, 1,000 paired 0.167 at 96.6%).
    ModelSpec("learned_r3d_video", "learned_r3d", "video", {"n_classes": 4}, epochs=6,
              batch_size=32, head={"consistency": 100.0, "tubelets": (2, 2, 2), "baseline": "blur",
                                   "sampler": "kernel_paired"},
              plain="r3d_video", quick={"epochs": 1, "data_options": {"n_train": 128, "n_test": 64}},
              description="LearnedSHAP 3D-ResNet (Harsanyi head on 2x2x2 tubelets), motion clips"),
    # The report's, benchmark's and notebooks' LearnedSHAP video model: of the heads at the plain
    # 3D-ResNet's accuracy, the most faithful. Tubelet-local (models.tubelet_r3d), its game drops
    # tubelet tokens and is pairwise by construction, so its phi are exact; the whole-clip model
    # above stays as the ablation. Same clips and epochs as the whole-clip model (99.8% on the
    # test clips from the head's zero start; the plain 3D-ResNet 100%).
    ModelSpec("learned_r3d_tubelets", "learned_tubelet_r3d", "video", {"n_classes": 4}, epochs=6,
              batch_size=32, head={"consistency": 0.0, "tubelets": (2, 2, 2)}, plain="r3d_video",
              quick={"epochs": 1, "data_options": {"n_train": 128, "n_test": 64}},
              description="LearnedSHAP tubelet-local 3D-ResNet, 8 tubelets (2x2x2), motion clips"),
]}


# The studies that define models of their own (a module-level `SPECS`, or a `specs(known)` that
# derives them from the models defined before it): found on first use, so that building a default
# model imports no study.
STUDIES = ("studies.posthoc", "studies.scale", "studies.video", "studies.video_pairs",
           "studies.parity", "studies.patch_local")
# Models an experiment configuration adds (experiments.config.specs registers them by name).
REGISTERED: dict[str, ModelSpec] = {}


@cache
def study_specs() -> dict[str, ModelSpec]:
    """Every model a study defines, by name."""
    found: dict[str, ModelSpec] = {}
    for name in STUDIES:
        module = importlib.import_module(name)
        own = module.specs(SPECS | found) if hasattr(module, "specs") else module.SPECS
        clash = sorted(set(own) & (set(SPECS) | set(found)))
        if clash:
            raise ValueError(f"{name} defines {clash} again; give its models names of their own")
        found |= own
    return found


def register(*specs: ModelSpec) -> None:
    """Make specs loadable by name (`load`, `resolve`), e.g. an experiment's models."""
    for spec in specs:
        builtin = SPECS | study_specs()
        if spec.name in builtin and builtin[spec.name] != spec:
            raise ValueError(f"{spec.name!r} is a default model's name; give the experiment "
                             "another name")
        REGISTERED[spec.name] = spec


def all_specs() -> dict[str, ModelSpec]:
    """Every model the zoo knows: the defaults, the studies' (post-hoc explainers, the scale,
    video and parity studies', the patch-local ViTs), and any registered by an experiment."""
    return SPECS | study_specs() | REGISTERED


def quick_mode(quick: bool | None = None) -> bool:
    """Quick mode when asked, else when LEARNEDSHAP_QUICK is set to a true value."""
    if quick is not None:
        return quick
    return os.environ.get("LEARNEDSHAP_QUICK", "").lower() in {"1", "true", "yes"}


def resolve(spec: ModelSpec | str, quick: bool | None = None) -> ModelSpec:
    """The spec with quick-mode overrides applied."""
    if isinstance(spec, str):
        known = all_specs()
        if spec not in known:
            raise KeyError(f"no default model {spec!r}; choose one of {sorted(known)}")
        spec = known[spec]
    if not quick_mode(quick):
        return spec
    q = spec.quick
    return replace(spec, epochs=q.get("epochs", spec.epochs),
                   data_options={**spec.data_options, **q.get("data_options", {})},
                   name=spec.name + "-quick")


def build_model(spec: ModelSpec) -> nn.Module:
    """An untrained model for `spec`, initialised from its seed."""
    kind = kind_of(spec)
    with seeded(spec.init_seed):
        return kind.build(spec)


def loaders(spec: ModelSpec):
    """Train and test loaders for the spec's dataset."""
    kw = dict(batch_size=spec.batch_size, seed=spec.seed, **spec.data_options)
    return data.get_loader(spec.dataset, "train", **kw), data.get_loader(spec.dataset, "test", **kw)


def fingerprint(spec: ModelSpec, code_root: Path = ROOT) -> str:
    """Hash of what can change the spec's trained weights: the spec, and the code that trains it
    (`tools.code_key` from `train_spec` and the kind's build, loss and preparation: the model's
    definition, its data, its loss, the optimizer step). Code that cannot change the weights,
    such as how a checkpoint is written or which file a helper lives in, is not in it; other
    kinds' code is not either (the `KINDS` registry is cut, the spec's own entry followed).

    A post-hoc explainer also depends on the frozen model it explains (whose weights `load`
    returns: their fingerprint, not `load`'s code). `code_root` reads the code from another source
    tree (the tests key edited copies)."""
    kind = kind_of(spec)
    roots = [ModelSpec, train_spec, loaders, kind.build, kind.loss] + (
        [kind.prepare] if kind.prepare else [])
    h = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True, default=str).encode())
    h.update(f"clip_norm={clip_norm_of(spec)}".encode())    # a kind's default lives in KINDS (cut)
    h.update(code_key(roots, skip=["models.kinds:KINDS", "models.zoo:load"], root=code_root).encode())
    if spec.kind.startswith(("posthoc", "surrogate")):
        plain = resolve(spec.plain, spec.name.endswith("-quick"))
        h.update(fingerprint(plain, code_root).encode())
    if spec.init_from:                           # it starts from that model's trained weights
        h.update(fingerprint(resolve(spec.init_from, spec.name.endswith("-quick")),
                             code_root).encode())
    return h.hexdigest()[:12]


@outside_key
def cache_dir() -> Path:
    return Path(os.environ.get("LEARNEDSHAP_CACHE", ROOT / ".cache"))


@outside_key
def checkpoint_path(spec: ModelSpec) -> Path:
    return cache_dir() / "models" / f"{spec.name}-{fingerprint(spec)}.pt"


@dataclass
class Trained:
    model: nn.Module
    meta: dict        # accuracy, history, training seconds, spec, fingerprint
    path: Path


def loss_for(spec: ModelSpec, steps_per_epoch: int, counter: list[int] | None = None) -> LossFn:
    """The training loss of `spec` (`counter` counts frozen-model evaluations, post-hoc kinds)."""
    return kind_of(spec).loss(spec, steps_per_epoch, counter)


def load(name: str | ModelSpec, *, quick: bool | None = None, train_missing: bool = True,
         device=None, progress: bool = True, amp: str | None = None,
         compile: bool = False) -> Trained:
    """The trained model `name` (a default's name, or a spec), training it first when its
    checkpoint is missing; `amp` and `compile` only change how a missing one trains."""
    spec = resolve(name, quick)
    path = checkpoint_path(spec)
    model = build_model(spec)
    if not path.exists():
        if not train_missing:
            raise FileNotFoundError(f"{spec.name} is not trained yet (no {path}); run `make build`")
        # two runs missing the same model: one trains it, the other waits and reads it (under
        # torchrun the ranks train together, so no lock there)
        with locked(path.with_suffix(".lock")) if not distributed.active() else nullcontext():
            if not path.exists():
                return fit(spec, device=device, progress=progress, amp=amp, compile=compile)
    meta = load_checkpoint(path, model)["meta"]
    return Trained(model.to(device or default_device()).eval(), meta, path)


def start_from(model: nn.Module, spec: ModelSpec) -> None:
    """Copy the trained ViT `spec.init_from` into `model`'s ViT, all but its classifier (a
    curriculum: a task learned first gives the features a harder one needs)."""
    source = load(spec.init_from, quick=spec.name.endswith("-quick")).model
    vit = model if isinstance(model, ViT) else getattr(model, "backbone", None)
    if not isinstance(source, ViT) or not isinstance(vit, ViT):
        raise ValueError(f"{spec.name}: init_from={spec.init_from!r} needs a ViT to start a ViT "
                         f"from; got {type(source).__name__} for {type(model).__name__}")
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("backbone.head.")}
    try:
        missing, _ = vit.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ValueError(f"{spec.name}: the weights of {spec.init_from} do not fit its ViT (give "
                         f"both the same image size, patch size, width and depth): {err}") from err
    left = set(missing) - {"backbone.head.weight", "backbone.head.bias"}
    if left:
        raise ValueError(f"{spec.name}: {spec.init_from} has no weights for {sorted(left)}")


def train_spec(spec: ModelSpec, train_loader, *, device=None, progress: bool = True,
               amp: str | None = None, compile: bool = False, state_path: Path | None = None,
               counter: list[int] | None = None) -> tuple[nn.Module, list[dict]]:
    """A model of `spec` trained on `train_loader`, and its per-epoch history: everything that
    decides the weights (so `fingerprint` hashes this function's code, not `fit`'s)."""
    model = build_model(spec)
    if spec.init_from:
        start_from(model, spec)
    kind = kind_of(spec)
    if kind.prepare is not None:
        kind.prepare(spec, model, train_loader)
    history = train(model, train_loader, epochs=spec.epochs, lr=spec.lr, seed=spec.init_seed,
                    loss_fn=loss_for(spec, len(train_loader), counter), device=device,
                    progress=progress, amp=amp, compile=compile, state_path=state_path,
                    counter=counter, clip_norm=clip_norm_of(spec))
    return model, history


def fit(spec: ModelSpec, *, device=None, progress: bool = True, amp: str | None = None,
        compile: bool = False) -> Trained:
    """Train `spec` from scratch, evaluate it, and save its checkpoint (under torchrun: every
    rank trains its shard, rank 0 alone writes the checkpoint, atomically)."""
    say = print if distributed.is_main() else (lambda *a, **k: None)
    say(f"training {spec.name}: {spec.description}")
    train_loader, test_loader = loaders(spec)
    counter = [0]                          # frozen-model evaluations (post-hoc explainers)
    start = time.perf_counter()
    # killed mid-training, a rerun resumes from here (and ends with the same weights)
    state = checkpoint_path(spec).with_suffix(".state.pt")
    model, history = train_spec(spec, train_loader, device=device, progress=progress, amp=amp,
                                compile=compile, state_path=state, counter=counter)
    seconds = time.perf_counter() - start
    # a post-hoc explainer's "accuracy" would be its frozen model's: it is not measured here
    accuracy = None if spec.kind.startswith("posthoc") else evaluate(model, test_loader)
    meta = {"name": spec.name, "accuracy": accuracy,
            "train_seconds": seconds, "history": history, "fingerprint": fingerprint(spec),
            "spec": json.loads(json.dumps(asdict(spec), default=str)),
            "n_test": len(test_loader.dataset), "frozen_evals": counter[0],
            "processes": distributed.world_size()}
    path = checkpoint_path(spec)
    if distributed.is_main():
        save_checkpoint(path, model, meta)
    distributed.barrier()                  # no rank reads the checkpoint before it exists
    done = ("" if accuracy is None else f"test accuracy {accuracy:.3f} ") + f"after {seconds:.0f} s"
    say(f"{spec.name}: {done} -> {path}")
    return Trained(model.eval(), meta, path)


def accuracy_table(rows: list[dict]) -> str:
    lines = ["| model | data | test accuracy | test examples | training time (s) | checkpoint |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['name']}` | {r['description']} | {100 * r['accuracy']:.1f}% | "
                     f"{r['n_test']} | {r['train_seconds']:.0f} | `{r['fingerprint']}` |")
    return "\n".join(lines)


def write_results(rows: list[dict], out_dir: Path = RESULTS_DIR) -> None:
    """Save the accuracies (json + markdown) and refresh the table between its markers (docs/reproduce.md)."""
    write_atomic(out_dir / "models.json", json.dumps(rows, indent=2) + "\n")
    table = accuracy_table(rows)
    write_atomic(out_dir / "models.md", table + "\n")
    replace_block("models", table)


def build(names: list[str] | None = None, quick: bool | None = None, progress: bool = True):
    """Train whatever default model is missing or stale; report every model's accuracy."""
    rows = []
    for name in names or list(SPECS):
        trained = load(name, quick=quick, progress=progress)
        if trained.meta["accuracy"] is None:        # a post-hoc explainer: no accuracy of its own
            continue
        rows.append({**{k: trained.meta[k] for k in ("name", "accuracy", "train_seconds", "n_test",
                                                     "fingerprint")},
                     "description": all_specs()[name].description})
    print(accuracy_table(rows))
    if not quick_mode(quick) and names is None:     # the default models' table, never a subset
        write_results(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--models", nargs="*", default=None,
                        help=f"default models {sorted(SPECS)}, or any of {sorted(all_specs())}")
    parser.add_argument("--quick", action="store_true", default=None)
    args = parser.parse_args()
    build(args.models, args.quick)


if __name__ == "__main__":
    main()
