"""The committed results measured today's checkpoints: every results file that records the
fingerprint of the checkpoint behind a row is compared with the fingerprint the model's spec has
now, without training anything. A change to code that trains a model (its fingerprint) makes the
committed numbers stale; this fails until the study is rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation import sweep
from models import zoo

RESULTS = Path(__file__).resolve().parents[1] / "shap_overlays"


def rows_with_fingerprints(obj) -> list[dict]:
    if isinstance(obj, dict):
        found = [obj] if "fingerprint" in obj and ("model" in obj or "name" in obj) else []
        return found + [r for v in obj.values() for r in rows_with_fingerprints(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in rows_with_fingerprints(v)]
    return []


@pytest.mark.parametrize("study", ["parity", "patch_local", "video_pairs"])
def test_a_studys_rows_name_todays_checkpoints(study):
    rows = rows_with_fingerprints(json.loads((RESULTS / f"{study}.json").read_text()))
    assert rows, f"{study}.json records no fingerprints"
    stale = [(r.get("model") or r["name"], r["fingerprint"],
              zoo.fingerprint(zoo.resolve(r.get("model") or r["name"], False)))
             for r in rows]
    stale = [s for s in stale if s[1] != s[2]]
    assert not stale, (f"{study}.json measured other checkpoints than today's (model, measured, "
                       f"now): {stale}; rerun `make {study.replace('_', '-')}`")


def test_every_sweep_row_is_of_todays_checkpoints():
    rows = sweep.load_rows(RESULTS / "sweep.json")
    assert len(sweep.current(rows, quick=False)) == len(rows), \
        "sweep.json holds rows of other checkpoints than today's: rerun `make sweep`"


def test_the_report_and_the_benchmark_name_todays_checkpoints():
    """`make run`'s tables measured today's checkpoints: a code change that retrains a model
    fails this until `make run` has run again."""
    report = json.loads((RESULTS / "learned_shap.json").read_text())
    measured = {r["model"]: r.get("fingerprint") for r in report}
    measured |= json.loads((RESULTS / "results.json").read_text())["config"].get("checkpoints", {})
    assert {"learned_vit_patches", "vit_patches"} <= set(measured), \
        "learned_shap.json or results.json records no fingerprints: rerun `make run`"
    stale = [(name, fp, zoo.fingerprint(zoo.resolve(name, False)))
             for name, fp in sorted(measured.items())]
    stale = [s for s in stale if s[1] != s[2]]
    assert not stale, f"`make run` measured other checkpoints (model, measured, now): {stale}"
