"""A quick `make run` in a fresh copy of the repository: reruns give byte-identical results and
figures, and the run writes only to the outputs the README lists.

The pipeline runs once per module (`quick_make_run`): the steps of the Makefile's `run` target
(the LearnedSHAP report, the benchmark, every notebook executed in place, the duration recorded)
in quick mode, in a subprocess whose working folder is the copy, on the session's quick cache.
Then the benchmark runs again into a second folder and the figure notebooks again into a third,
which is what a second `make run` on the same machine would do. Permissions cannot show what a
run writes (CI runs as root), so every file of the copy is hashed before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from evaluation import benchmark
from evaluation.records import split_fields

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("gradient_shap/gradient_shap.ipynb", "learned_shap/learned_shap.ipynb",
             "analysis/comparison.ipynb")
FIGURE_NOTEBOOKS = NOTEBOOKS[:2]          # the comparison notebook only shows the benchmark's
NOTEBOOK_FIGURES = ("gradientSHAP_ViT.png", "attention_map.png", "gradientSHAP_3d-resnet.png",
                    "learnedSHAP_ViT.png", "learnedSHAP_3d-resnet.png", "learnedSHAP_pairs.png")
BENCHMARK_FIGURES = ("benchmark_grid_images.png", "benchmark_grid_video.png",
                     "benchmark_convergence.png", "benchmark_insertion_deletion.png")
# The outputs the README lists for `make run` ("the LearnedSHAP report, the benchmark, and the
# executed notebooks with their figures (`shap_overlays/`, the three `.ipynb`)"; checkpoints and
# reference values in `.cache/`; the tables between the README's generated-block markers). The
# cache is the session's (LEARNEDSHAP_CACHE), outside the copy, so nothing may appear in .cache/.
OUTPUT_FOLDERS = ("shap_overlays/",)
OUTPUT_FILES = NOTEBOOKS
README = "README.md"                      # only inside its <!-- tag:begin --> ... :end --> blocks
BLOCK = re.compile(r"(<!-- ([\w-]+):begin -->\n).*?(<!-- \2:end -->)", re.S)


def copy_repository(dest: Path) -> Path:
    """The working tree's files (tracked, and untracked ones git does not ignore) under `dest`."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], cwd=ROOT, capture_output=True, check=False)
    except FileNotFoundError:                   # no git on this machine
        listed = None
    if listed is not None and listed.returncode == 0:
        for rel in filter(None, listed.stdout.decode().split("\0")):
            if (ROOT / rel).is_file():          # a tracked file deleted in the tree stays deleted
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, dest / rel)
    else:                                       # not a git checkout: everything but the caches
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", ".cache", "__pycache__", ".pytest_cache", ".ruff_cache",
            ".hypothesis", ".ipynb_checkpoints"))
    return dest


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by path relative to it."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def outside_blocks(readme: str) -> str:
    """The README with the text of its generated blocks removed (the markers stay)."""
    return BLOCK.sub(lambda m: m.group(1) + m.group(3), readme)


def keys_in(obj) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in keys_in(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in keys_in(v)}
    return set()


@dataclass
class QuickMakeRun:
    root: Path                     # the copy
    before: dict[str, str]         # file hashes before the run
    after: dict[str, str]          # and after it (before the reruns, which write outside it)
    readme_before: str
    first: dict[str, bytes]        # the benchmark's folder right after its first run
    benchmark_out: Path            # that folder at the end (the comparison notebook reran it)
    rerun: Path                    # the benchmark's second run
    figures_rerun: Path            # the figure notebooks' second run


@pytest.fixture(scope="module")
def quick_make_run(tmp_path_factory, quick_cache) -> QuickMakeRun:
    root = copy_repository(tmp_path_factory.mktemp("repository"))
    reruns = tmp_path_factory.mktemp("reruns")
    env = {k: v for k, v in os.environ.items() if k not in ("LEARNEDSHAP_FIGURES", "PYTHONPATH")}
    env.update(LEARNEDSHAP_QUICK="1", LEARNEDSHAP_CACHE=str(quick_cache), MPLBACKEND="Agg",
               PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")

    def run(*args: str, **extra: str) -> None:
        done = subprocess.run([sys.executable, *args], cwd=root, env={**env, **extra},
                              capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, (args, done.stdout[-3000:] + done.stderr[-3000:])

    before, readme_before = hashes(root), (root / README).read_text()
    out = quick_cache / "benchmark-quick"            # the quick benchmark's default folder
    # the Makefile's `run` (its `results` target, the notebooks, the duration), quick mode
    run("-m", "evaluation.learned_report", "--threads", "1", "--no-progress")
    run("-m", "evaluation.benchmark", "--no-progress")
    first = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}
    run("-m", "tools.run_notebooks", "--inplace", *NOTEBOOKS)
    run("-m", "evaluation.benchmark", "--record-make-run", "1")
    after = hashes(root)
    # a second `make run` on this machine: the same cache, new output folders
    run("-m", "evaluation.benchmark", "--no-progress", "--out", str(reruns / "benchmark"))
    run("-m", "tools.run_notebooks", *FIGURE_NOTEBOOKS,
        LEARNEDSHAP_FIGURES=str(reruns / "figures"))
    return QuickMakeRun(root, before, after, readme_before, first, out, reruns / "benchmark",
                        reruns / "figures")


# --- identical reruns ---------------------------------------------------------------------------
@pytest.mark.slow
def test_a_rerun_writes_a_byte_identical_results_json_and_figures(quick_make_run):
    first, rerun = quick_make_run.first, quick_make_run.rerun
    assert set(first) == {p.name for p in rerun.iterdir()}
    for name in (benchmark.RESULTS, *BENCHMARK_FIGURES):
        assert (rerun / name).read_bytes() == first[name], f"{name} differs between two runs"
    # the comparison notebook's own run and --record-make-run leave results.json as it was
    final = quick_make_run.benchmark_out / benchmark.RESULTS
    assert final.read_bytes() == first[benchmark.RESULTS]
    assert json.loads((quick_make_run.benchmark_out / benchmark.TIMING).read_text())[
        "timings"]["make_run_seconds"] == 1


@pytest.mark.slow
def test_results_json_holds_no_timing_and_the_timing_file_holds_them(quick_make_run):
    results = json.loads(quick_make_run.first[benchmark.RESULTS])
    assert not keys_in(results) & benchmark.TIMING_FIELDS
    merged = benchmark.load_results(quick_make_run.rerun)
    assert merged["timings"]["benchmark_seconds"] > 0 and merged["config"]["date"][:2] == "20"
    assert all(row["seconds"] > 0 for row in merged["results"])


@pytest.mark.slow
def test_a_rerun_draws_byte_identical_notebook_figures(quick_make_run):
    figures = sorted(p.name for p in quick_make_run.figures_rerun.iterdir())
    assert set(NOTEBOOK_FIGURES) <= set(figures)
    for name in figures:
        first = quick_make_run.root / "shap_overlays" / name
        assert first.read_bytes() == (quick_make_run.figures_rerun / name).read_bytes(), name


# --- writes only to the listed outputs ----------------------------------------------------------
def allowed(path: str) -> bool:
    return path.startswith(OUTPUT_FOLDERS) or path in OUTPUT_FILES or path == README


@pytest.mark.slow
def test_a_quick_make_run_writes_only_the_listed_outputs(quick_make_run):
    before, after = quick_make_run.before, quick_make_run.after
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert [p for p in changed if not allowed(p)] == [], "written outside the README's outputs"
    readme = (quick_make_run.root / README).read_text()
    assert outside_blocks(readme) == outside_blocks(quick_make_run.readme_before), \
        "the README changed outside its generated blocks"
    # the run did write its outputs: the executed notebooks and their figures in the copy
    assert set(NOTEBOOKS) <= set(changed)
    assert any(p.startswith("shap_overlays/") and p.endswith(".png") for p in changed)


# --- fast: the split itself ---------------------------------------------------------------------
def test_timings_go_to_their_own_file_and_merge_back(tmp_path):
    """The committed results (timings inline if written before the split) round-trip."""
    committed = benchmark.load_results(ROOT / "shap_overlays")
    written = benchmark.write_results(committed, tmp_path / "a")
    assert written == committed == benchmark.load_results(tmp_path / "a")
    stable, timing = split_fields(committed, benchmark.TIMING_FIELDS)
    assert json.loads((tmp_path / "a" / benchmark.RESULTS).read_text()) == stable
    assert not keys_in(stable) & benchmark.TIMING_FIELDS and timing["timings"]
    slower = json.loads(json.dumps(committed))
    slower["timings"]["benchmark_seconds"] *= 2
    slower["results"][0]["seconds"] *= 2
    slower["config"]["date"] = "2000-01-01T00:00:00"
    benchmark.write_results(slower, tmp_path / "b")
    for name in (benchmark.RESULTS, benchmark.TIMING):
        same = (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert same == (name == benchmark.RESULTS), name
