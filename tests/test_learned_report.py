"""studies.learned_report: agreement of LearnedSHAP with the reference on known models."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from evaluation.examples import Examples
from evaluation.faithfulness import compare, references_for
from evaluation.metrics import auroc
from models.harsanyi import LearnedShapViT
from models.train import seeded
from models.vit import ViTConfig, create_vit
from studies.learned_report import markdown, per_class_markdown
from tests.conftest import away_from_init


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def local_model():
    """A LearnedSHAP ViT with no attention blocks: every patch token depends on its own patch
    only, so dropping patches removes exactly their terms and the decomposition IS the game."""
    with seeded(0):
        model = LearnedShapViT(create_vit(ViTConfig(image_size=16, patch_size=8, depth=0)),
                               rank=2)
        away_from_init(model)
    return model.eval()


def examples(n: int) -> Examples:
    gen = torch.Generator().manual_seed(5)
    pairs = torch.zeros(n, 4, 4, dtype=torch.bool)
    pairs[:, 0, 3] = pairs[:, 3, 0] = True
    return Examples(torch.rand(n, 3, 16, 16, generator=gen), torch.arange(n) % 4,
                    torch.zeros(n, 4, dtype=torch.bool), torch.zeros(n, 16, 16, dtype=torch.bool),
                    pairs, ["a", "b", "c", "d"], "test", list(range(n)))


def test_a_model_whose_game_is_its_decomposition_agrees_exactly(local_model):
    ex = examples(4)
    res = compare(local_model, ex, references_for(local_model, ex, None, progress=False))
    assert res["pearson"]["min"] > 1 - 1e-6
    assert res["rel_l2"]["max"] < 1e-5
    assert res["efficiency_gap"]["max"] < 1e-5
    assert res["pair_pearson_harsanyi"]["min"] > 1 - 1e-5
    # a pairwise game: its Faith-Shap pairs are its dividends, and nothing is left over
    assert res["pair_pearson_faith"]["min"] > 1 - 1e-5 and res["pair_rel_l2_faith"]["max"] < 1e-4
    assert res["remainder"]["max"] < 1e-8
    # with a true pair in every example, the true-pair column covers all of them
    assert res["pair_pearson_harsanyi_true_pair"]["n"] == 4
    assert set(res["per_class"]["rel_l2"]) == {"a", "b", "c", "d"} and res["resolved"]


def test_pairs_are_scored_against_the_truth_on_the_true_class(local_model):
    ex = examples(1)
    out = local_model.explain(ex.x)
    predicted = int(out.logits[0].argmax())
    label = (predicted + 1) % 4                      # as if the model got this example wrong
    wrong = replace(ex, y=torch.tensor([label]))
    (row,) = compare(local_model, wrong, references_for(local_model, wrong, None,
                                                        progress=False))["examples"]
    assert row["target"] == predicted and row["label"] == label
    i, j = torch.triu_indices(4, 4, 1)
    expected = auroc(out.pair[0, :, :, label][i, j].double(), ex.pairs[0][i, j])
    assert row["pair_auroc_truth"] == pytest.approx(expected)


def test_markdown_shows_missing_numbers_as_na_and_bounds_with_noise():
    stats = {"mean": 0.5, "min": 0.4, "max": 0.6, "n": 2}
    row = {"model": "m", "n_players": 4, "reference": "exact", "accuracy": 0.9,
           "plain_head_accuracy": 0.91, "cost": {"ratio": 1.1}, "per_class": 1,
           "classes": ["a", "b"],
           "agreement": {"pearson": stats, "rel_l2": stats, "pair_pearson_harsanyi": None,
                         "efficiency_gap": {"max": 2e-7}, "max_reference_noise": 0.0,
                         "resolved": True, "pair_pearson_harsanyi_true_pair": None,
                         "pair_auroc_truth": stats, "remainder": {"mean": 0.01234},
                         "per_class": {"rel_l2": {"a": 0.4, "b": 0.6},
                                       "pair_pearson_faith": {"a": 0.9, "b": None}}}}
    line = markdown([row]).splitlines()[2]
    assert "| n/a (n/a) |" in line and "90.0% (91.0%)" in line and "x1.10" in line
    assert "| 2.0e-07 | 0.0123 | n/a, n/a |" in line and "2 (1 per class)" in line
    noisy = {**row, "agreement": {**row["agreement"], "max_reference_noise": 0.2,
                                  "resolved": False}}
    line = markdown([noisy]).splitlines()[2]
    assert "exact (0.200)" in line and "| ≤ 0.5 (0.6) |" in line     # 3 significant digits
    table = per_class_markdown([row]).splitlines()
    assert table[2] == "| `m` | a | 0.4 | n/a | 0.900, n/a | n/a |"
    assert table[3] == "| `m` | b | 0.6 | n/a | n/a, n/a | n/a |"
