"""Notebooks: committed executed with their figures inline, a thin first cell, and they run
headless in quick mode without writing themselves back (in the session's quick `make run`)."""

from __future__ import annotations

import os
import re
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


def outputs(cell) -> list[dict]:
    return cell.get("outputs", [])


def assert_committed_executed(path: Path) -> None:
    """Every code cell ran (full mode) without an error, every figure shows inline as a PNG,
    the first cell reads QUICK from the environment, and no path of this machine leaks."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0].source
    assert "QUICK = " in first and 'os.environ.get("LEARNEDSHAP_QUICK") == "1"' in first
    source = "\n".join(c.source for c in code)
    assert "os.chdir" not in source and "/work/" not in source
    assert all(c.execution_count is not None for c in code), f"{path.name}: not executed"
    for c in code:
        for out in outputs(c):
            assert out["output_type"] != "error", (path.name, c.source[:60])
            text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
            assert "<Figure size" not in text, (path.name, "a figure shown as text")
            assert "/work/" not in text and "/tmp/" not in text, (path.name, text[:80])
            assert "Quick mode" not in text, (path.name, "committed from a quick run")
    if path == COMPARISON:
        assert any("full benchmark of" in o.get("text", "") for c in code for o in outputs(c))
    drawn = [c for c in code if c.source.rstrip().endswith("fig")
             or "display(Image(" in c.source]
    assert drawn, f"{path.name} draws no figure"
    for c in drawn:
        assert any("image/png" in out.get("data", {}) for out in outputs(c)), \
            (path.name, "figure cell without an inline PNG", c.source[:60])
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    assert len(markdown) >= len(code) // 2, f"{path.name}: code without explanation"


# (notebook, the figures it must write); the comparison notebook only reads the quick benchmark
NOTEBOOKS = [(GRADIENT_SHAP, FIGURES), (LEARNED_SHAP, LEARNED_FIGURES), (COMPARISON, [])]


@pytest.mark.parametrize("notebook", [nb for nb, _ in NOTEBOOKS], ids=lambda p: p.stem)
def test_notebook_is_committed_executed_with_inline_figures(notebook):
    assert_committed_executed(notebook)


# a number quoted in prose: a decimal (0.067, 1,234.5) or a percentage (5.6%, 12%)
QUOTED = re.compile(r"(?<![\w.^])(\d+(?:,\d{3})*\.\d+%?|\d+(?:\.\d+)?%)(?![\w.])")


def quoted_numbers(markdown: str) -> list[str]:
    """The numbers a markdown cell quotes, outside code spans and indented code."""
    prose = re.sub(r"`[^`]*`", "", markdown)
    prose = re.sub(r"^    .*$", "", prose, flags=re.M)
    return QUOTED.findall(prose)


def test_quoted_numbers_are_found_in_a_text():
    assert quoted_numbers("a gap of 5.6% at 200 samples; `0.25` and 1,234.5 and 3x") == \
        ["5.6%", "1,234.5"]


@pytest.mark.parametrize("notebook", [nb for nb, _ in NOTEBOOKS], ids=lambda p: p.stem)
def test_notebook_reads_as_a_paper_and_its_prose_quotes_what_its_cells_print(notebook):
    """It opens with its question and closes with what to conclude, and every number its
    markdown quotes is one a cell of the committed run printed (prose that drifts from the
    results fails here)."""
    nb = nbformat.read(notebook, as_version=4)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert "**Question.**" in markdown[0], f"{notebook.name} does not open with its question"
    assert markdown[-1].startswith("## What to conclude"), \
        f"{notebook.name} does not close with what to conclude"
    printed = "\n".join(out.get("text", "") + "".join(
        str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
        for c in nb.cells if c.cell_type == "code" for out in outputs(c))
    unprinted = [n for text in markdown for n in quoted_numbers(text) if n not in printed]
    assert not unprinted, f"{notebook.name} quotes numbers no cell printed: {unprinted}"


@pytest.mark.slow
@pytest.mark.parametrize("notebook, figures", NOTEBOOKS, ids=[nb.stem for nb, _ in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(quick_make_run, notebook, figures):
    """In the session's quick `make run` (a fresh copy of the repository): executed in place
    without an error, and run again headless into another folder, where it writes its figures
    and leaves the notebook file as it was (executed in memory)."""
    rel = notebook.relative_to(ROOT).as_posix()
    executed = nbformat.read(quick_make_run.root / rel, as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{rel}: not executed"
    assert not [o for c in code for o in outputs(c) if o["output_type"] == "error"]
    assert quick_make_run.final[rel] == quick_make_run.after[rel]      # the rerun wrote nothing
    for name in figures:
        assert (quick_make_run.figures_rerun / name).stat().st_size > 1000, name


@pytest.mark.parametrize("notebook", [nb for nb, _ in NOTEBOOKS], ids=lambda p: p.stem)
def test_notebook_finds_the_repository_from_its_own_folder(notebook):
    """Opened from Jupyter in its folder (no PYTHONPATH), the first cell finds the repository."""
    nb = nbformat.read(notebook, as_version=4)
    setup = [c for c in nb.cells if c.cell_type == "code"][0].source
    probe = setup + "\nimport explainers\nassert Path(explainers.__file__).parents[1] == ROOT\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=notebook.parent, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_runner_fails_on_a_missing_notebook_before_starting_a_kernel(tmp_path, capsys):
    from tools.run_notebooks import main

    assert main([str(tmp_path / "absent.ipynb")]) == 1
    assert "no notebook at" in capsys.readouterr().err


def test_runner_names_the_failing_cell(tmp_path):
    from tools.run_notebooks import NotebookError, run_notebook

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("1 / 0")])
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(NotebookError, match=r"(?s)cell 2/2.*ZeroDivisionError"):
        run_notebook(path, timeout=60, log=lambda s: None)
    assert nbformat.read(path, as_version=4).cells[0].outputs == []   # nothing written back
