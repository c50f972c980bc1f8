"""One quick `make run` in a fresh copy of the repository, shared by every test that needs it.

The steps of the Makefile's `run` target (the LearnedSHAP report, the benchmark, every notebook
executed in place, the duration recorded) run in quick mode, in subprocesses whose working folder
is the copy, on the session's quick cache. Then the benchmark runs again into a second folder and
the figure notebooks again into a third, which is what a second `make run` on the same machine
would do. The reproducibility tests compare those runs; the benchmark's and the notebooks' tests
read the same outputs instead of running the benchmark and the notebooks once more each.
Permissions cannot show what a run writes (CI runs as root), so every file of the copy is hashed
before and after.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
README = "README.md"                      # it and the docs pages: only inside their
                                          # <!-- tag:begin --> ... :end --> blocks


def pages_text(root: Path) -> dict[str, str]:
    """The README and every docs page, by path relative to `root`."""
    return {p.relative_to(root).as_posix(): p.read_text()
            for p in [root / README, *sorted((root / "docs").glob("*.md"))]}


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


@dataclass
class QuickMakeRun:
    root: Path                     # the copy
    before: dict[str, str]         # file hashes before the run
    after: dict[str, str]          # and after it (before the reruns, which write outside it)
    final: dict[str, str]          # and after the reruns (which must not write into the copy)
    pages_before: dict[str, str]   # the README and docs pages before the run
    first: dict[str, bytes]        # the benchmark's folder right after its first run
    benchmark_out: Path            # that folder at the end (the comparison notebook reran it)
    rerun: Path                    # the benchmark's second run
    figures_rerun: Path            # the figure notebooks' second run


def quick_make_run(tmp_path_factory, quick_cache: Path) -> QuickMakeRun:
    """Run the pipeline once (the largest part of `make test-all`: see the README's timing table)."""
    root = copy_repository(tmp_path_factory.mktemp("repository"))
    reruns = tmp_path_factory.mktemp("reruns")
    env = {k: v for k, v in os.environ.items() if k not in ("LEARNEDSHAP_FIGURES", "PYTHONPATH")}
    env.update(LEARNEDSHAP_QUICK="1", LEARNEDSHAP_CACHE=str(quick_cache), MPLBACKEND="Agg",
               PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")

    def run(*args: str, **extra: str) -> None:
        done = subprocess.run([sys.executable, *args], cwd=root, env={**env, **extra},
                              capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, (args, done.stdout[-3000:] + done.stderr[-3000:])

    before, pages_before = hashes(root), pages_text(root)
    out = quick_cache / "benchmark-quick"            # the quick benchmark's default folder
    # the Makefile's `run` (its `results` target, the notebooks, the duration), quick mode
    run("-m", "studies.learned_report", "--threads", "1", "--no-progress")
    run("-m", "studies.benchmark", "--no-progress")
    first = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}
    run("-m", "tools.run_notebooks", "--inplace", *NOTEBOOKS)
    run("-m", "studies.benchmark", "--record-make-run", "1")
    after = hashes(root)
    # a second `make run` on this machine: the same cache, new output folders
    run("-m", "studies.benchmark", "--no-progress", "--out", str(reruns / "benchmark"))
    run("-m", "tools.run_notebooks", *FIGURE_NOTEBOOKS,
        LEARNEDSHAP_FIGURES=str(reruns / "figures"))
    return QuickMakeRun(root, before, after, hashes(root), pages_before, first, out,
                        reruns / "benchmark", reruns / "figures")
