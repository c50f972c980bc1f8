"""evaluation.learned_report: agreement of LearnedSHAP with the reference on known models."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from evaluation.learned_report import Example, compare, markdown
from evaluation.metrics import auroc
from models.harsanyi import LearnedShapViT
from models.train import seeded
from models.vit import ViTConfig, create_vit


@pytest.fixture(scope="module")
def local_model():
    """A LearnedSHAP ViT with no attention blocks: every patch token depends on its own patch
    only, so dropping patches removes exactly their terms and the decomposition IS the game."""
    with seeded(0):
        model = LearnedShapViT(create_vit(ViTConfig(image_size=16, patch_size=8, depth=0)),
                               rank=2)
        with torch.no_grad():
            model.head.pair_weight.normal_()
            model.head.pair_sign.normal_()
    return model.eval()


def examples(n: int, label: int | None = None) -> list[Example]:
    gen = torch.Generator().manual_seed(5)
    pairs = torch.zeros(4, 4, dtype=torch.bool)
    pairs[0, 3] = pairs[3, 0] = True
    return [Example(torch.rand(3, 16, 16, generator=gen), label if label is not None else i % 4,
                    pairs) for i in range(n)]


def test_a_model_whose_game_is_its_decomposition_agrees_exactly(local_model):
    res = compare(local_model, examples(3), progress=False)
    assert res["pearson"]["min"] > 1 - 1e-6
    assert res["rel_l2"]["max"] < 1e-5
    assert res["pair_pearson_harsanyi"]["min"] > 1 - 1e-5
    # with a true pair in every example, the true-pair column covers all of them
    assert res["pair_pearson_harsanyi_true_pair"]["n"] == 3


def test_pairs_are_scored_against_the_truth_on_the_true_class(local_model):
    (ex,) = examples(1)
    out = local_model.explain(ex.x[None])
    predicted = int(out.logits[0].argmax())
    label = (predicted + 1) % 4                      # as if the model got this example wrong
    (row,) = compare(local_model, [replace(ex, y=label)], progress=False)["examples"]
    assert row["target"] == predicted and row["label"] == label
    i, j = torch.triu_indices(4, 4, 1)
    expected = auroc(out.pair[0, :, :, label][i, j].double(), ex.pairs[i, j])
    assert row["pair_auroc_truth"] == pytest.approx(expected)


def test_markdown_shows_missing_numbers_as_na():
    stats = {"mean": 0.5, "min": 0.4, "max": 0.6, "n": 2}
    row = {"model": "m", "n_players": 4, "reference": "exact", "accuracy": 0.9,
           "plain_head_accuracy": 0.91, "cost": {"ratio": 1.1},
           "agreement": {"pearson": stats, "rel_l2": stats, "pair_pearson_harsanyi": None,
                         "pair_pearson_harsanyi_true_pair": None, "pair_auroc_truth": stats}}
    line = markdown([row]).splitlines()[2]
    assert "| n/a (n/a) |" in line and "90.0% (91.0%)" in line and "x1.10" in line
