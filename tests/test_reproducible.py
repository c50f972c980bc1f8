"""A quick `make run` in a fresh copy of the repository (`tests.quick_make_run`, run once per
session): reruns give byte-identical results and figures, and the run writes only to the outputs
the README lists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evaluation.records import split_fields
from studies import benchmark
from tests.quick_make_run import (
    BENCHMARK_FIGURES,
    NOTEBOOK_FIGURES,
    NOTEBOOKS,
    OUTPUT_FILES,
    OUTPUT_FOLDERS,
    README,
    pages_text,
)

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- ([\w-]+):begin -->\n).*?(<!-- \2:end -->)", re.S)


def outside_blocks(readme: str) -> str:
    """A page with the text of its generated blocks removed (the markers stay)."""
    return BLOCK.sub(lambda m: m.group(1) + m.group(3), readme)


def keys_in(obj) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in keys_in(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in keys_in(v)}
    return set()


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
    page = path == README or (path.startswith("docs/") and path.endswith(".md"))
    return path.startswith(OUTPUT_FOLDERS) or path in OUTPUT_FILES or page


@pytest.mark.slow
def test_a_quick_make_run_writes_only_the_listed_outputs(quick_make_run):
    before, after = quick_make_run.before, quick_make_run.after
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert [p for p in changed if not allowed(p)] == [], "written outside the README's outputs"
    pages = pages_text(quick_make_run.root)
    assert pages.keys() == quick_make_run.pages_before.keys()
    for path, text in pages.items():
        assert outside_blocks(text) == outside_blocks(quick_make_run.pages_before[path]), \
            f"{path} changed outside its generated blocks"
    # the run did write its outputs: the executed notebooks and their figures in the copy
    assert set(NOTEBOOKS) <= set(changed)
    assert any(p.startswith("shap_overlays/") and p.endswith(".png") for p in changed)
    # a second run into other folders writes nothing into the copy
    assert quick_make_run.final == after


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
