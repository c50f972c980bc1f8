"""How a trained LearnedSHAP model is judged by the studies that train many of them: accuracy on a
large fresh test split, and its head against the references of its own game (phi, pairs and the
game's higher-order remainder), on the same number of test images from every class."""

from __future__ import annotations

import numpy as np
import torch

import data
from evaluation.examples import load_examples
from evaluation.faithfulness import remainder
from evaluation.metrics import pearson, rel_l2
from evaluation.references import reference, resolved
from evaluation.scoring import efficiency_gap
from models import zoo
from models.harsanyi import consistency_loss, training_coalitions
from models.train import evaluate


def large_test_accuracy(spec: zoo.ModelSpec, model: torch.nn.Module,
                        n_test: int) -> tuple[float, int]:
    """Accuracy on `n_test` generated test images of the spec's dataset (a dataset with a fixed
    test split, such as the digits: that split), and the number of images."""
    options = dict(spec.data_options)
    if "n_test" in data.dataset_options(spec.dataset) and spec.dataset != "digits":
        options["n_test"] = n_test
    loader = data.get_loader(spec.dataset, "test", batch_size=256, seed=spec.seed, **options)
    return evaluate(model, loader), len(loader.dataset)


@torch.no_grad()
def head_faithfulness(spec: zoo.ModelSpec, model: torch.nn.Module, per_class: int,
                      reference_budget: int | None, remainder_coalitions: int = 1000) -> dict:
    """phi, pairs and remainder of one trained head against its own game's references (exact
    when `reference_budget` is None, else antithetic permutations with their noise), predicted
    class, `per_class` test images of every class."""
    ex = load_examples(spec, model, per_class)
    errors, pearsons, gaps, noises, remainders, pair_faith, pair_faith_l2, pair_harsanyi = \
        [], [], [], [], [], [], [], []
    iu = torch.triu_indices(model.n_players, model.n_players, 1)
    for i, x in enumerate(ex.x):
        ref = reference(model, x, reference_budget)
        out = model.shapley_values(x[None])
        k = int(out.logits[0].argmax())
        phi = out.shapley[0, :, k].double()
        errors.append(rel_l2(phi, ref.values[:, k]))
        pearsons.append(pearson(phi, ref.values[:, k]))
        gaps.append(abs(efficiency_gap(phi, ref, k)))
        noises.append(ref.noise(k))
        remainders.append(remainder(model, x, k, remainder_coalitions, seed=i))
        if out.pair is not None and ref.pairs_faith is not None:
            learned = out.pair[0, :, :, k].double()[iu[0], iu[1]]
            faith = ref.pairs_faith[iu[0], iu[1], k]
            pair_faith.append(pearson(learned, faith))
            pair_faith_l2.append(rel_l2(learned, faith) if faith.norm() > 0 else None)
            pair_harsanyi.append(pearson(learned, ref.pairs_harsanyi[iu[0], iu[1], k]))

    def mean(v):
        v = [a for a in v if a is not None and a == a]
        return float(np.mean(v)) if v else None

    return {"rel_l2": mean(errors), "rel_l2_max": max(errors), "pearson": mean(pearsons),
            "efficiency_gap_max": max(gaps), "reference_noise_max": max(noises),
            "resolved": all(resolved(e, r) for e, r in zip(errors, noises, strict=True)),
            "remainder": mean(remainders), "pair_pearson_faith": mean(pair_faith),
            "pair_rel_l2_faith": mean(pair_faith_l2), "pair_pearson_harsanyi": mean(pair_harsanyi),
            "n_examples": len(ex), "per_class": ex.per_class, "reference": ref.describe()}


@torch.no_grad()
def objective_terms(spec: zoo.ModelSpec, model: torch.nn.Module, batch: dict,
                    seed: int = 0) -> dict:
    """The co-trained LearnedSHAP objective of `spec` on one batch, term by term, at full weight
    (after the warm-up): cross-entropy of the full input, the consistency gap (mean squared
    difference between the model on one sampled coalition per example and the head's
    decomposition restricted to it; the paired sampler averages it with the complement's) and
    their weighted sum, the loss `models.harsanyi.learned_shap_loss` trains on."""
    model.eval()
    x, y = batch["x"], batch["y"]
    weight = float(spec.head.get("consistency", 1.0))
    sampler = spec.head.get("sampler", "uniform")
    full = model.explain(x)
    cross_entropy = float(torch.nn.functional.cross_entropy(full.logits, y))
    keep = training_coalitions(sampler, len(x), model.n_players,
                               torch.Generator().manual_seed(seed), x.device)       # (B, N)
    gap = consistency_loss(model, full, x, keep)
    if sampler == "kernel_paired":
        gap = (gap + consistency_loss(model, full, x, ~keep)) / 2
    logits = full.logits.gather(1, y[:, None])
    return {"cross_entropy": cross_entropy, "consistency_gap": float(gap), "weight": weight,
            "sampler": sampler, "loss": cross_entropy + weight * float(gap),
            "logit_scale": float(logits.abs().mean())}
