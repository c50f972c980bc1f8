"""The committed results measured today's checkpoints: every results file that records the
fingerprint of the checkpoint behind a row is compared with the fingerprint the model's spec has
now, without training anything. A change to code that trains a model (its fingerprint) makes the
committed numbers stale; this fails until the study is rerun."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from models import zoo
from studies import posthoc_budget, sweep
from tools import readme

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


# generated block -> the committed results its table is written from (None: no model measured)
BLOCK_RESULTS = {"results": "results.json", "learned": "learned_shap.json", "parity": "parity.json",
                 "patch_local": "patch_local.json", "posthoc": "posthoc.json",
                 "posthoc_budget": "posthoc_budget.json", "scale": "scale.json",
                 "sweep": "sweep.json", "video": "video.json", "video_pairs": "video_pairs.json",
                 "blur_game": "blur_game.json", "layers": "layers.json", "models": "models.json",
                 "bad_inputs": None}
EARLIER = "measured earlier checkpoints"       # what a caption says of a table kept from them
FINGERPRINT = re.compile(r"`([0-9a-f]{12})`")


def measured_checkpoints(results) -> list[tuple[str, str]]:
    """(model, fingerprint) of every row of a committed results file that records one."""
    pairs = [(r.get("model") or r["name"], r["fingerprint"]) for r in rows_with_fingerprints(results)
             if r.get("fingerprint")]
    if isinstance(results, dict):
        pairs += sorted(results.get("config", {}).get("checkpoints", {}).items())
    return pairs


def current(name: str, fingerprint: str) -> bool:
    if name.startswith("posthoc_budget"):          # registered by the study when it builds them
        size, candidate, multiple, seed = re.fullmatch(
            r"posthoc_budget(\d+)-(\w+)-x([\d.]+)-s(\d+)", name).groups()
        posthoc_budget.spec_for(int(size), candidate, float(multiple), int(seed))
    try:
        return zoo.fingerprint(zoo.resolve(name, False)) == fingerprint
    except KeyError:                               # a model no longer in the zoo
        return False


def caption(page: str, tag: str) -> str:
    """The page's text between the previous heading or block and this block: its caption."""
    before = page[:page.index(f"<!-- {tag}:begin -->")]
    return re.split(r"\n#+ |<!-- \w+:end -->", before)[-1]


def test_every_generated_table_is_known_here():
    tags = {m for p in readme.pages() for m in re.findall(r"<!-- (\w+):begin -->", p.read_text())}
    assert tags - {"name"} == set(BLOCK_RESULTS), \
        "a generated block of README or docs is missing from BLOCK_RESULTS (or one is gone)"


@pytest.mark.parametrize("tag", [t for t, f in BLOCK_RESULTS.items() if f])
def test_every_table_names_todays_checkpoints_or_says_it_does_not(tag):
    """Each row's checkpoint is today's, or the table marks it "(earlier)" beside its fingerprint,
    or (a table that records none) its caption says it measured earlier checkpoints."""
    page = readme.block_file(tag).read_text()
    block = readme.block_text(tag)
    measured = measured_checkpoints(json.loads((RESULTS / BLOCK_RESULTS[tag]).read_text()))
    if not measured:
        assert EARLIER in caption(page, tag), \
            f"the {tag} table records no checkpoints: rerun its study, or say so in its caption"
        return
    if tag == "sweep":                 # rows name their task; the sweep knows their specs
        rows = sweep.load_rows(RESULTS / "sweep.json")
        today = {r["fingerprint"] for r in sweep.current(rows, quick=False)}
        stale = sorted({(n, fp) for n, fp in measured if fp not in today})
    else:
        stale = sorted({(n, fp) for n, fp in measured if not current(n, fp)})
    unmarked = [(n, fp) for n, fp in stale if f"`{fp}` (earlier)" not in block]
    assert not unmarked or EARLIER in caption(page, tag), (
        f"the {tag} table measured other checkpoints than today's (model, fingerprint): "
        f"{unmarked}; rerun its study, or mark them")


def test_the_front_page_table_names_todays_checkpoints():
    """The README's hand-written results table: every fingerprint in its checkpoint column is the
    current one of the model it names."""
    text = readme.README.read_text()
    table = text[text.index("| model (players) |"):].split("\n\n")[0].split("\n")
    column = table[0].split("|").index(" checkpoint ")
    cells = [row.split("|")[column] for row in table[2:]]
    today = {zoo.fingerprint(zoo.resolve(name, False)) for name in zoo.all_specs()}
    for cell in cells:
        found = FINGERPRINT.findall(cell)
        assert found or cell.strip() == "–", f"a front-page row names no checkpoint: {cell!r}"
        assert set(found) <= today, f"the front page names checkpoints that are not today's: {cell}"
