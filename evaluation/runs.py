"""What the benchmark runs: one method with its options on every example, one call per example.

A `RunSpec` names a method, its budget (samplers), a variant (a second way of running it, such as
GradientSHAP with the game's own blur reference) and the options that make it. `label` is the
one place where a run's display name is written: samplers are labelled with the evaluations they
actually made, not the budget asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from evaluation.examples import Examples
from evaluation.references import Reference
from evaluation.timing import timed_explain
from explainers.core import model_device
from explainers.core.inputs import make_players

SAMPLERS = ("permutation", "kernel")
# maps without the game's units (attention weights, CAMs scaled to [0, 1], gradient magnitudes):
# no relative L2
UNITLESS = {"attention", "attention_rollout", "gradcam_pp", "saliency", "smoothgrad"}
GAME_METHODS = {"learned_shap", "exact", *SAMPLERS}


@dataclass(frozen=True)
class RunSpec:
    method: str
    budget: int | None = None           # model evaluations asked for (samplers)
    variant: str = ""                   # "" for the method as its users run it by default
    options: tuple[tuple[str, object], ...] = ()
    explains: str = ""                  # what the values refer to, for the table

    @property
    def key(self) -> str:
        """A unique id among one model's runs."""
        return label(self.method, self.variant) + ("" if self.budget is None else f"@{self.budget}")

    def all_options(self) -> dict:
        out = dict(self.options)
        if self.budget is not None:
            out["budget"] = self.budget
        return out


def label(method: str, variant: str = "", evals: float | None = None) -> str:
    """A run's name in tables and figures: "kernel (254 evals)", "gradient_shap (blur)"."""
    parts = [variant] if variant else []
    if evals is not None:
        parts.append(f"{evals:,.0f} evals")
    return method + (f" ({', '.join(parts)})" if parts else "")


def row_label(row: dict) -> str:
    """The display name of a results row (samplers with their mean evaluations)."""
    evals = row.get("evals") if row.get("budget") is not None else None
    return label(row["method"], row.get("variant", ""), evals)


@dataclass
class Run:
    """One method's explanations of every example."""

    spec: RunSpec
    values: Tensor              # (B, N)
    pixel_map: Tensor           # (B, H, W) or (B, T, H, W)
    pairs: Tensor | None        # (B, N, N) pair terms, for methods that give them
    evals: list[int]            # model rows per explanation (forwards + backwards)
    seconds: list[float]
    forward_seconds: list[float | None]  # a forward timed beside each cheap explanation, else None
    extras: dict = field(default_factory=dict)   # non-tensor extras of the first call

    @property
    def method(self) -> str:
        return self.spec.method

    @property
    def label(self) -> str:
        evals = sum(self.evals) / len(self.evals) if self.spec.budget is not None else None
        return label(self.spec.method, self.spec.variant, evals)


def run_method(spec: RunSpec, model: nn.Module, ex: Examples, targets: Tensor, *,
               seed: int) -> Run:
    """Explain each example on its own (costs are per explanation) and stack the results."""
    options = spec.all_options()
    timed = [timed_explain(spec.method, model, ex.x[i:i + 1], targets[i:i + 1], seed=seed,
                           **options) for i in range(len(ex.x))]
    outs = [out for out, _ in timed]
    pairs = [o.extras.get("pairs") for o in outs]
    return Run(spec,
               values=torch.cat([o.values for o in outs]).double(),
               pixel_map=torch.cat([o.pixel_map for o in outs]).double(),
               pairs=torch.cat(pairs).double() if all(p is not None for p in pairs) else None,
               evals=[o.cost.evals for o in outs],
               seconds=[o.cost.seconds for o in outs],
               forward_seconds=[fwd for _, fwd in timed],
               extras={k: v for k, v in outs[0].extras.items() if not isinstance(v, Tensor)})


def exact_run(spec: RunSpec, model: nn.Module, ex: Examples, targets: Tensor,
              refs: list[Reference], *, seed: int, timed: int) -> Run:
    """The `exact` row without enumerating every example twice.

    The references the rows are scored against are the exact values of the same game, from the
    same enumeration, so the row takes its values and pair interactions from them (at the float32
    precision `explain` returns) and runs `explain("exact")` on the first `timed` examples only:
    for their seconds (its cost, 2^N model rows, is the same for every input, so the others get
    their mean) and as a check that explainer and references agree."""
    measured = run_method(spec, model, ex.head(timed), targets[:timed], seed=seed)
    t = [int(k) for k in targets]
    values = torch.stack([r.values[:, k] for r, k in zip(refs, t, strict=True)]).float().double()
    gap = float((measured.values - values[:timed]).abs().max())
    if gap > 1e-4 * max(float(values[:timed].abs().max()), 1e-6):
        raise AssertionError(f"explain('exact') differs from the exact references by {gap:.3g} on "
                             "the timed examples: the benchmark's game and the references' differ")
    device = model_device(model)
    players = make_players(model, ex.x[:1].to(device), None, None)
    pairs = torch.stack([r.pairs_sii[:, :, k] for r, k in zip(refs, t, strict=True)]).float()
    rest = len(ex) - timed
    mean_seconds = sum(measured.seconds) / timed
    return Run(spec, values=values, pixel_map=players.paint(values.float()).double().cpu(),
               pairs=pairs.double(), evals=measured.evals + [measured.evals[0]] * rest,
               seconds=measured.seconds + [mean_seconds] * rest,
               forward_seconds=measured.forward_seconds + [None] * rest, extras=measured.extras)
