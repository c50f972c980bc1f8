"""The objective a co-trained LearnedSHAP model is trained on, read term by term."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import data
from evaluation.head_checks import objective_terms
from models import zoo
from models.harsanyi import learned_shap_loss


@pytest.mark.parametrize("sampler", ["uniform", "kernel_paired"])
def test_objective_terms_are_the_training_loss(sampler):
    """At full weight the terms add up to the loss `learned_shap_loss` trains on, drawn from the
    same coalitions; a head with random terms has a gap to close."""
    spec = zoo.resolve(replace(zoo.SPECS["learned_vit_patches"],
                               head={**zoo.SPECS["learned_vit_patches"].head, "sampler": sampler}),
                       quick=True)
    model = zoo.build_model(spec).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():                 # the head starts from zero: give it terms to check
        for name, p in model.named_parameters():
            if not name.startswith("backbone."):
                p.normal_(0, 0.1, generator=generator)
    loader = data.get_loader(spec.dataset, "train", batch_size=8, seed=spec.seed,
                             **spec.data_options)
    batch = next(iter(loader))
    terms = objective_terms(spec, model, batch, seed=3)
    loss, _ = learned_shap_loss(spec.head["consistency"], sampler=sampler)(
        model, batch, torch.Generator().manual_seed(3))
    assert terms["loss"] == pytest.approx(float(loss.detach()), rel=1e-5)
    assert terms["loss"] == pytest.approx(terms["cross_entropy"]
                                          + terms["weight"] * terms["consistency_gap"])
    assert terms["consistency_gap"] > 0 and terms["weight"] == 1000.0
