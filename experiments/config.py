"""One configuration per experiment: data, model, training, explainers and how to run them.

An `Experiment` is a dataclass loaded from a TOML file (`load`), with command-line overrides
(`--set train.epochs=3`, or the shortcuts `--data-root`, `--model`, `--pretrained`). The same
experiment runs on the offline default (generated patch-game images and a small ViT) and, by
changing the configuration only, on data on disk (an ImageNet / Imagenette layout of image
folders, a UCF101 layout of video folders) with a timm ViT (`pretrained = true` reads the Hugging
Face / torch hub cache only) or torchvision's r3d_18 (Kinetics-400 weights from the torch hub
cache). `specs()` turns it into the zoo's model specs, so every experiment trains, caches and
explains its models with the same code as the defaults:

- `<name>`: the classifier (kind vit or r3d);
- `<name>_surrogate` (ViT, when `explainer.surrogate_epochs > 0`): ViT-Shapley's surrogate, the
  classifier fine-tuned to accept held-out patches (random token dropping, KL to the classifier);
- `<name>_learned`: the LearnedSHAP model (`learned_vit` / `learned_r3d`);
- `<name>_vit_shapley` (ViT): ViT-Shapley's explainer of the surrogate (or of the classifier
  itself when it was trained with token dropping, `train.drop_prob > 0`).
"""

from __future__ import annotations

import argparse
import ast
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import data
from models import zoo

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
STAGES = ("classifier", "surrogate", "learned", "vit_shapley", "report", "benchmark")


@dataclass
class Data:
    dataset: str = "patch_game"          # a name of data.DATASETS
    root: str | None = None              # image_folder / video_folder: the folder on disk
    options: dict = field(default_factory=dict)   # the dataset's other options (image_size, ...)


@dataclass
class Model:
    kind: str = "vit"                    # "vit" or "r3d"
    name: str = ""                       # a timm ViT name or "r3d_18"; "" the small default
    pretrained: bool = False             # weights from the local cache only
    config: dict = field(default_factory=dict)   # ViTConfig / ResNet3DConfig fields


@dataclass
class Train:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    drop_prob: float = 0.5               # rows trained with random patches dropped (ViT)
    seed: int = 0


@dataclass
class Head:
    """The LearnedSHAP head and its consistency loss (models.harsanyi)."""

    consistency: float = 10.0
    sampler: str = "kernel_paired"
    warmup_epochs: int = 1
    rank: int = 8
    pairwise: bool = True
    epochs: int | None = None            # default: the classifier's


@dataclass
class Explainer:
    """ViT-Shapley's surrogate and explainer (models.posthoc, models.surrogate)."""

    epochs: int = 8
    coalitions: int = 32
    surrogate_epochs: int = 0            # 0: the classifier is its own surrogate


@dataclass
class Run:
    device: str = "auto"                 # "auto", "cpu", "cuda"
    amp: str = "none"                    # "none" or "bf16": autocast in training
    compile: bool = False                # torch.compile the training step
    threads: int | None = None
    per_class: int = 2                   # examples of each class in the report and benchmark
    reference_budget: int = 8320         # sampled reference beyond 16 players (two halves)
    remainder_coalitions: int = 1000     # the game's higher-order remainder (0: not measured)
    methods: list = field(default_factory=lambda: ["learned_shap", "vit_shapley", "permutation",
                                                  "kernel_shap", "gradient_shap"])
    budgets: list = field(default_factory=lambda: [2, 8])    # sampler budgets, in units of 2n
    out: str = ""                        # default: shap_overlays/experiments/<name>/


@dataclass
class Experiment:
    name: str = "default"
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    train: Train = field(default_factory=Train)
    head: Head = field(default_factory=Head)
    explainer: Explainer = field(default_factory=Explainer)
    run: Run = field(default_factory=Run)

    @property
    def out(self) -> Path:
        return Path(self.run.out) if self.run.out else ROOT / "shap_overlays" / "experiments" / self.name

    @property
    def video(self) -> bool:
        return self.model.kind == "r3d"


# --- reading ------------------------------------------------------------------------------------
def from_dict(cls, values: dict, where: str = ""):
    """A dataclass from nested dicts, naming any unknown key and the valid ones."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown setting(s) {[where + k for k in unknown]}; valid settings "
                         f"here are {sorted(where + k for k in known)}")
    out = {}
    for k, v in values.items():
        default = getattr(cls(), k)
        if is_dataclass(default):
            if not isinstance(v, dict):
                raise ValueError(f"{where}{k} is a table of settings, got {v!r}")
            out[k] = from_dict(type(default), v, f"{where}{k}.")
        else:
            out[k] = v
    return cls(**out)


def load(path: str | Path | None = None, overrides: list[str] = ()) -> Experiment:
    """The experiment in a TOML file (None: the defaults), then `key=value` overrides."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists() and (CONFIGS / path).exists():
            path = CONFIGS / path
        if not path.exists():
            raise FileNotFoundError(f"no experiment configuration at {path}; see the files in "
                                    f"{CONFIGS}")
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path} is not valid TOML: {err}") from err
    for item in overrides:
        key, value = parse_override(item)
        table = values
        *parents, last = key.split(".")
        for p in parents:
            table = table.setdefault(p, {})
        table[last] = value
    return check(from_dict(Experiment, values))


def parse_override(item: str) -> tuple[str, Any]:
    """`train.epochs=3` -> ("train.epochs", 3): a Python literal, else the text itself."""
    if "=" not in item:
        raise ValueError(f"an override is key=value, e.g. train.epochs=3; got {item!r}")
    key, text = item.split("=", 1)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = {"true": True, "false": False}.get(text.lower(), text)
    return key.strip(), value


def check(exp: Experiment) -> Experiment:
    """Errors that name the fix, before anything trains."""
    if exp.data.dataset not in data.DATASETS:
        raise ValueError(f"data.dataset {exp.data.dataset!r} is unknown; choose one of "
                         f"{sorted(data.DATASETS)}")
    if exp.data.dataset in ("image_folder", "video_folder") and not exp.data.root:
        raise ValueError(f"data.dataset {exp.data.dataset!r} reads a folder: give data.root "
                         "(or --data-root)")
    if exp.data.root and not Path(exp.data.root).is_dir():
        raise FileNotFoundError(f"data.root {exp.data.root} is not a folder")
    if exp.model.kind not in ("vit", "r3d"):
        raise ValueError(f"model.kind must be 'vit' or 'r3d', got {exp.model.kind!r}")
    video_data = exp.data.dataset in ("video", "video_folder", "digits_video")
    if video_data != exp.video:
        raise ValueError(f"model.kind {exp.model.kind!r} does not fit data.dataset "
                         f"{exp.data.dataset!r}; use r3d for clips and vit for images")
    if exp.run.amp not in ("none", "bf16", "fp16"):
        raise ValueError(f"run.amp must be 'none', 'bf16' or 'fp16', got {exp.run.amp!r}")
    if exp.run.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"run.device must be 'auto', 'cpu' or 'cuda', got {exp.run.device!r}")
    return exp


# --- the zoo's specs ----------------------------------------------------------------------------
def data_options(exp: Experiment) -> dict:
    opts = dict(exp.data.options)
    if exp.data.root:
        opts["root"] = str(Path(exp.data.root).resolve())
    if exp.data.dataset == "image_folder" and "patch_size" not in opts and not exp.video:
        opts["patch_size"] = exp.model.config.get("patch_size", 16)
    return opts


def n_classes(exp: Experiment) -> int:
    """The classes of the experiment's data (read from the folder for data on disk)."""
    ds = data.get_dataset(exp.data.dataset, "train", seed=exp.train.seed, **data_options(exp))
    return len(ds.classes)


def model_config(exp: Experiment) -> dict:
    config = {"n_classes": n_classes(exp), **exp.model.config}
    if exp.model.name:
        config["torchvision_name" if exp.video else "timm_name"] = exp.model.name
        if not exp.video:
            config.setdefault("image_size", data_options(exp).get("image_size", 224))
    if exp.model.pretrained:
        config["pretrained"] = True          # read by zoo.build_model, never a ViTConfig field
    return config


def specs(exp: Experiment) -> dict[str, zoo.ModelSpec]:
    """The experiment's models as zoo specs (registered, so zoo.load finds them by name)."""
    t, h, e = exp.train, exp.head, exp.explainer
    common = dict(dataset=exp.data.dataset, config=model_config(exp), lr=t.lr,
                  batch_size=t.batch_size, data_options=data_options(exp), seed=t.seed,
                  quick={"epochs": 1})
    plain_kind, learned_kind = ("r3d", "learned_r3d") if exp.video else ("vit", "learned_vit")
    head = {"consistency": h.consistency, "warmup_epochs": h.warmup_epochs, "sampler": h.sampler,
            "pairwise": h.pairwise, "rank": h.rank}
    if exp.video:
        head.update(tubelets=(2, 2, 2), baseline="blur")
    out = [zoo.ModelSpec(exp.name, plain_kind, epochs=t.epochs,
                         drop_prob=0.0 if exp.video else t.drop_prob,
                         description=f"{exp.name}: the classifier", **common),
           zoo.ModelSpec(f"{exp.name}_learned", learned_kind, epochs=h.epochs or t.epochs,
                         head=head, plain=exp.name,
                         description=f"{exp.name}: LearnedSHAP", **common)]
    if not exp.video:
        explained = exp.name
        if e.surrogate_epochs > 0:
            explained = f"{exp.name}_surrogate"
            out.append(zoo.ModelSpec(explained, "surrogate_vit", epochs=e.surrogate_epochs,
                                     head={"drop_prob": 0.5}, plain=exp.name,
                                     description=f"{exp.name}: ViT-Shapley's surrogate", **common))
        out.append(zoo.ModelSpec(f"{exp.name}_vit_shapley", "posthoc_vit", epochs=e.epochs,
                                 head={"kind": "vit_shapley", "coalitions": e.coalitions},
                                 plain=explained,
                                 description=f"{exp.name}: ViT-Shapley explainer", **common))
    found = {s.name: s for s in out}
    zoo.register(*found.values())
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="an experiment's TOML file (see configs/); default: the offline "
                             "patch-game ViT")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override one setting, e.g. train.epochs=3")
    parser.add_argument("--data-root", default=None, help="= --set data.root=...")
    parser.add_argument("--model", default=None, help="timm ViT name or r3d_18 (= model.name)")
    parser.add_argument("--pretrained", action="store_true", default=None,
                        help="= --set model.pretrained=true (local cache only)")


def from_args(args: argparse.Namespace) -> Experiment:
    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.model:
        overrides.append(f"model.name={args.model}")
    if args.pretrained:
        overrides.append("model.pretrained=true")
    return load(args.config, overrides)
