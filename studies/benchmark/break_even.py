"""The benchmark's break-even: how many evaluations the samplers need to be as exact as
LearnedSHAP's one forward pass (phi), and shapiq's Faith-Shap approximators its pair terms."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from evaluation import break_even as be
from evaluation.examples import Examples
from evaluation.faithfulness import remainder
from evaluation.metrics import rel_l2
from evaluation.references import Reference
from explainers import explain
from studies.benchmark.settings import Settings

# the complete samplers of the speed-up table: one i.i.d. permutation is the cheapest run (n + 1
# evaluations), one antithetic pair the cheapest exact one on a pairwise game (2n)
BREAK_EVEN_SAMPLERS = ("permutation_iid", "permutation", "kernel")


def break_even_model(model: nn.Module, ex: Examples, targets: Tensor, refs: list[Reference],
                     settings: Settings, key: str, progress: bool = True) -> dict:
    """LearnedSHAP's mean error on these examples and the samplers' break-even against it."""
    n = model.n_players
    iu = torch.triu_indices(n, n, 1)
    learned, evals, remainders, pairs = [], [], [], []
    for i in range(len(ex)):
        k = int(targets[i])
        att = explain("learned_shap", model, ex.x[i], k)
        learned.append(rel_l2(att.values[0], refs[i].values[:, k]))
        evals.append(att.cost.evals)
        remainders.append(remainder(model, ex.x[i], k, settings.remainder_coalitions, seed=i))
        if "pairs" in att.extras and refs[i].pairs_faith is not None:
            exact = refs[i].pairs_faith[iu[0], iu[1], k]
            # an image whose exact pairs are all zero has no relative pair error: left out
            pairs.append(rel_l2(att.extras["pairs"][0][iu[0], iu[1]], exact)
                         if exact.norm() > 0 else None)
    noise = max(r.noise(int(t)) for r, t in zip(refs, targets, strict=True))
    curves = be.sampler_curves(model, list(ex.x), targets.tolist(), refs,
                               be.doubling_grid(n, settings.break_even_largest[key]),
                               seeds=settings.break_even_seeds, samplers=BREAK_EVEN_SAMPLERS,
                               progress=progress)
    out = be.break_even(curves, float(np.mean(learned)), noise, float(np.mean(evals)))
    result = {"n_players": n, "reference": refs[0].describe(),
              "n_examples": len(ex), "per_class": ex.per_class,
              "seeds": list(settings.break_even_seeds),
              "learned_evals": float(np.mean(evals)), "learned_rel_l2_per_example": learned,
              "remainder": float(np.mean(remainders)), **out}
    if len(pairs) == len(ex):               # exact Faith-Shap pairs: the pair terms' break-even
        result["pairs"] = pair_break_even(model, ex, targets, refs, pairs, float(np.mean(evals)),
                                          settings, progress)
    return result


def pair_break_even(model: nn.Module, ex: Examples, targets: Tensor, refs: list[Reference],
                    head_errors: list[float], head_evals: float, settings: Settings,
                    progress: bool = True) -> dict:
    """The head's pair terms against exact order-2 Faith-Shap, and the evaluations shapiq's
    Faith-Shap approximators need to match them, on the first `pair_per_class` examples of each
    class whose exact pairs are not all zero (`head_errors[i]` None)."""
    y = ex.y.numpy()
    usable = np.array([e is not None for e in head_errors])
    picked = sorted(i for c in np.unique(y)
                    for i in np.flatnonzero((y == c) & usable)[:settings.pair_per_class])
    errors = [head_errors[i] for i in picked]
    curves = be.pair_curves(model, [ex.x[i] for i in picked], [int(targets[i]) for i in picked],
                            [refs[i] for i in picked],
                            be.doubling_grid(model.n_players, settings.pair_largest),
                            seeds=settings.pair_seeds, progress=progress)
    out = be.break_even(curves, float(np.mean(errors)), 0.0, head_evals)
    return {"n_examples": len(picked), "seeds": list(settings.pair_seeds),
            "head_rel_l2_per_example": errors, **out}
