"""Notebooks: committed without outputs, thin first cell, and they run headless in quick mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
GRADIENT_SHAP = ROOT / "gradient_shap" / "gradient_shap.ipynb"
COMPARISON = ROOT / "analysis" / "comparison.ipynb"
LEARNED_SHAP = ROOT / "learned_shap" / "learned_shap.ipynb"
FIGURES = ["gradientSHAP_ViT.png", "attention_map.png", "gradientSHAP_3d-resnet.png"]
LEARNED_FIGURES = ["learnedSHAP_ViT.png", "learnedSHAP_3d-resnet.png", "learnedSHAP_pairs.png"]


def assert_committed_clean(path: Path) -> None:
    """No outputs, a QUICK flag read from the environment in the first cell, no absolute paths."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    first = code[0].source
    assert "QUICK = " in first and 'os.environ.get("LEARNEDSHAP_QUICK") == "1"' in first
    text = "\n".join(c.source for c in code)
    assert "os.chdir" not in text and "/work/" not in text


# (notebook, the figures it must write); the comparison notebook only reads the quick benchmark
NOTEBOOKS = [(GRADIENT_SHAP, FIGURES), (LEARNED_SHAP, LEARNED_FIGURES), (COMPARISON, [])]


@pytest.mark.parametrize("notebook", [nb for nb, _ in NOTEBOOKS], ids=lambda p: p.stem)
def test_notebook_is_committed_clean(notebook):
    assert_committed_clean(notebook)


@pytest.mark.slow
@pytest.mark.parametrize("notebook, figures", NOTEBOOKS, ids=[nb.stem for nb, _ in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(tmp_path, notebook, figures):
    env = {**os.environ, "LEARNEDSHAP_QUICK": "1", "LEARNEDSHAP_CACHE": str(tmp_path / "cache"),
           "LEARNEDSHAP_FIGURES": str(tmp_path / "figures"), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "tools.run_notebooks", str(notebook),
                           "--timeout", "600"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in figures:
        assert (tmp_path / "figures" / name).stat().st_size > 1000
    # executed in memory: the committed notebook keeps no outputs
    assert_committed_clean(notebook)


@pytest.mark.slow
def test_runner_names_the_failing_cell(tmp_path):
    from tools.run_notebooks import NotebookError, run_notebook

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("1 / 0")])
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(NotebookError, match=r"(?s)cell 2/2.*ZeroDivisionError"):
        run_notebook(path, timeout=60, log=lambda s: None)
    assert nbformat.read(path, as_version=4).cells[0].outputs == []   # nothing written back
