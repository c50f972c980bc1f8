"""Model kinds: what a `ModelSpec` is, and how each kind of model is built and trained.

A spec names its kind ("vit", "learned_vit", "posthoc_vit", ...). The module that defines a kind's
model registers it here with `register_kind`: how a spec builds the untrained model, the loss it
trains with, any preparation before the first step, and its default gradient clipping. The zoo
(`models.zoo`) imports those modules, so every kind is registered before a model is built; this
module holds only what every kind shares (the spec, the backbone, the head's options, the frozen
model a post-hoc explainer explains).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from models.resnet_2d import ResNet2DConfig, create_resnet2d
from models.resnet_3d import ResNet3DConfig, create_r3d
from models.train import LossFn, cross_entropy_loss
from models.tubelet_players import TubeletPlayers
from models.vit import ViTConfig, create_vit
from tools.code_key import outside_key


@dataclass(frozen=True)
class ModelSpec:
    """How one default model is built and trained."""

    name: str
    kind: str                     # "vit", "r3d", "learned_vit", "learned_r3d", ... (build_model)
    dataset: str                  # a name from data.DATASETS
    config: dict                  # fields of ViTConfig / ResNet3DConfig
    epochs: int
    lr: float = 3e-3
    batch_size: int = 64
    drop_prob: float = 0.0        # share of training rows with random patches dropped (ViT only)
    data_options: dict = field(default_factory=dict)
    quick: dict = field(default_factory=dict)   # overrides for quick mode (epochs, data_options)
    head: dict = field(default_factory=dict)    # LearnedSHAP head: rank, pairwise, consistency, ...
    plain: str = ""               # the plain-head model with the same backbone, for comparison
    seed: int = 0                 # the data's seed (and the training seed unless train_seed)
    train_seed: int | None = None  # initialisation and training randomness, when not `seed`
    init_from: str = ""           # a trained ViT whose weights (not its classifier) start this one
    description: str = ""

    @property
    def init_seed(self) -> int:
        return self.seed if self.train_seed is None else self.train_seed


def backbone(spec: ModelSpec) -> nn.Module:
    """The spec's ViT or 3D-ResNet: the small default, a timm ViT or torchvision's r3d_18
    (`pretrained` in the config: weights from the local cache only)."""
    config = dict(spec.config)
    pretrained = config.pop("pretrained", False)
    if "vit" in spec.kind:
        cfg = ViTConfig(**config)
        if not cfg.timm_name:
            return create_vit(cfg)
        return create_vit(cfg, pretrained=pretrained, n_classes=cfg.n_classes,
                          image_size=cfg.image_size)
    if spec.kind == "resnet":
        return create_resnet2d(ResNet2DConfig(**config), pretrained=pretrained)
    return create_r3d(ResNet3DConfig(**config), pretrained=pretrained)


def head_options(spec: ModelSpec) -> dict:
    """The head's constructor options among the spec's head settings (the rest set the loss)."""
    return {k: v for k, v in spec.head.items() if k in ("rank", "pairwise", "tubelets", "baseline")}


def plain_loss(spec: ModelSpec, steps_per_epoch: int, counter: list[int] | None) -> LossFn:
    return cross_entropy_loss(spec.drop_prob)


@dataclass(frozen=True)
class Kind:
    """How a model kind is built and trained: its modules and its loss."""

    build: Callable[[ModelSpec], nn.Module]                 # untrained (under the spec's seed)
    loss: Callable[[ModelSpec, int, list[int] | None], LossFn]   # (spec, steps/epoch, evals)
    prepare: Callable[[ModelSpec, nn.Module, object], None] | None = None   # before step one
    clip_norm: float | None = None          # gradient clipping (a head's "clip_norm" overrides)


# The co-trained LearnedSHAP recipe clips every step's gradient to norm 1 (as ViT-Shapley
# trains its explainer): without it a strong consistency weight trained exact and accurate at
# one seed and collapsed at another (docs/sweep.md measures both).
RECIPE_CLIP_NORM = 1.0


# kind name -> Kind, filled by the modules that define the models (`register_kind`)
KINDS: dict[str, Kind] = {}


@outside_key
def register_kind(name: str, kind: Kind) -> None:
    """Make `name` a model kind that specs can name (done once, by the module of its model)."""
    if name in KINDS and KINDS[name] != kind:
        raise ValueError(f"model kind {name!r} is registered twice; give the new kind its own name")
    KINDS[name] = kind


@outside_key
def load(name: str, **options):
    """The zoo's `load` (a trained model by name), reached when called: the zoo imports the
    modules that register kinds, so they cannot import it."""
    from models import zoo

    return zoo.load(name, **options)




def kind_of(spec: ModelSpec) -> Kind:
    """The spec's kind, as its module registered it."""
    if spec.kind not in KINDS:
        raise ValueError(f"unknown model kind {spec.kind!r}; expected one of {sorted(KINDS)}")
    return KINDS[spec.kind]


def clip_norm_of(spec: ModelSpec) -> float | None:
    """The gradient norm the spec's training clips to: its head's "clip_norm" if set (None: no
    clipping), else its kind's (the co-trained LearnedSHAP recipe: RECIPE_CLIP_NORM)."""
    return spec.head.get("clip_norm", kind_of(spec).clip_norm)


def frozen_model(spec: ModelSpec) -> nn.Module:
    """The trained plain model a post-hoc explainer explains (in the spec's quick mode); a video
    model comes with its game declared (`TubeletPlayers`: blurred tubelets on the spec's grid)."""
    model = load(spec.plain, quick=spec.name.endswith("-quick"), progress=False).model.eval()
    if spec.kind == "posthoc_r3d":
        return TubeletPlayers(model, spec.head.get("tubelets", (2, 2, 2)),
                              spec.head.get("baseline", "blur")).eval()
    return model


register_kind("vit", Kind(backbone, plain_loss))
register_kind("r3d", Kind(backbone, plain_loss))
register_kind("resnet", Kind(backbone, plain_loss))
