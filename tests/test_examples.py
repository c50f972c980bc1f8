"""The examples run as written (quick mode) and give what they promise."""

from __future__ import annotations

import pytest
import torch

from examples import explain_your_vit, train_and_explain


def test_explain_your_vit_says_how_to_run_it(capsys):
    with pytest.raises(SystemExit) as done:
        explain_your_vit.main(["--help"])
    assert done.value.code == 0 and "--budget" in capsys.readouterr().out


@pytest.mark.slow
def test_explain_your_vit_fits_a_posthoc_explainer_and_explains(quick_cache, monkeypatch):
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(quick_cache))
    out = explain_your_vit.main(["--quick"])
    values, exact = out["values"], out["exact"]
    assert values.shape == exact.shape == (4, 16) and out["checkpoint"].exists()
    # efficient for the model's game: the values add up to v(N) - v(empty), like the exact ones
    torch.testing.assert_close(values.sum(1), exact.sum(1), rtol=1e-4, atol=1e-4)
    errors = (values - exact).norm(dim=1) / exact.norm(dim=1)
    assert out["rel_l2"] == pytest.approx(float(errors.mean()))
    # a second run reads the fitted explainer back: the same values
    again = explain_your_vit.main(["--quick"])
    torch.testing.assert_close(again["values"], values)


def test_train_and_explain_says_how_to_run_it(capsys):
    with pytest.raises(SystemExit) as done:
        train_and_explain.main(["--help"])
    assert done.value.code == 0 and "--epochs" in capsys.readouterr().out


@pytest.mark.slow
def test_train_and_explain_trains_a_learnedshap_vit_and_explains_it():
    out = train_and_explain.main(["--quick"])
    values, exact = out["values"], out["exact"]
    assert values.shape == exact.shape == (4, 16) and len(out["history"]) == 1
    # phi is efficient for the model's own game whether or not training made it pairwise
    torch.testing.assert_close(values.sum(1), exact.sum(1), rtol=1e-4, atol=1e-4)
    errors = (values - exact).norm(dim=1) / exact.norm(dim=1)
    assert out["rel_l2"] == pytest.approx(float(errors.mean()))
    # the same seed, the same model: a rerun gives the same values
    again = train_and_explain.main(["--quick"])
    torch.testing.assert_close(again["values"], values)
