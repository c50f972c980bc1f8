"""The benchmark's markdown: tables rendered from `results.json` alone, so they can be rebuilt.

Numbers keep three significant digits; the best value of each column is bold (ties as shown all
win; in the columns against exact values the exact row is the reference, not a rival).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evaluation.break_even import describe, describe_speed_up
from evaluation.formatting import sig3
from evaluation.runs import row_label
from evaluation.scoring import METRIC_KEYS


@dataclass(frozen=True)
class Column:
    key: str            # field of a results row
    header: str
    better: str         # "max" or "min": which value is bold
    agreement: bool = False   # compares with exact: the exact row is the reference, not a rival


COLUMNS = [
    Column("pearson_exact", "Pearson vs exact ↑", "max", True),
    Column("spearman_exact", "Spearman vs exact ↑", "max", True),
    Column("rel_l2_exact", "rel. L2 vs exact ↓", "min", True),
    Column("efficiency_gap", "efficiency gap ↓", "min", True),
    Column("auroc_truth", "AUROC truth ↑", "max"),
    Column("pointing_game", "pointing ↑", "max"),
    Column("pair_auroc_truth", "pair AUROC ↑", "max"),
    Column("insertion_auc", "insertion ↑", "max"),
    Column("deletion_auc", "deletion ↓", "min"),
    Column("avg_drop", "Avg Drop % ↓", "min"),
    Column("avg_increase", "Increase % ↑", "max"),
    Column("avg_drop_rescaled", "Avg Drop % eq. mass ↓", "min"),
    Column("avg_increase_rescaled", "Increase % eq. mass ↑", "max"),
    Column("evals", "evals ↓", "min"),
    Column("seconds", "s / expl. ↓", "min"),
    Column("forward_ratio", "× forward ↓", "min"),
]
assert {c.key for c in COLUMNS} <= set(METRIC_KEYS)


def best_rows(rows: list[dict], column: Column, exclude: set[int] | None = None) -> set[int]:
    """Indices of the rows with the best value of a column, as shown (3 digits): ties all win.

    Rows in `exclude` and rows without a value compete with no one; with fewer than two
    competitors nothing is best.
    """
    exclude = exclude or set()
    shown = {i: float(sig3(r.get(column.key)).replace(",", ""))
             for i, r in enumerate(rows)
             if i not in exclude and r.get(column.key) is not None
             and not math.isnan(r[column.key])}
    if len(shown) < 2:
        return set()
    best = max(shown.values()) if column.better == "max" else min(shown.values())
    return {i for i, v in shown.items() if v == best}


def shortfalls(rows: list[dict], method: str = "learned_shap") -> list[dict]:
    """The columns of one model's rows where `method` is not the best, with the best value.

    The same rule as the bold in results.md: values compared as shown (3 digits), and in the
    columns against exact values the exact row is the reference, not a rival.
    """
    mine = next((i for i, r in enumerate(rows) if r["method"] == method), None)
    if mine is None:
        raise ValueError(f"no {method!r} row among the {len(rows)} rows given; pass the rows of "
                         "one model, e.g. [r for r in results['results'] if r['model'] == key]")
    reference = {i for i, r in enumerate(rows) if r["method"] == "exact"}
    out = []
    for c in COLUMNS:
        if rows[mine].get(c.key) is None:
            continue
        best = best_rows(rows, c, reference if c.agreement else None)
        if best and mine not in best:
            winner = rows[min(best)]
            out.append({"column": c.key, "header": c.header, "value": rows[mine][c.key],
                        "best": winner[c.key], "best_method": row_label(winner)})
    return out


def markdown_table(rows: list[dict], columns: list[Column] = COLUMNS) -> str:
    """Methods as rows, metrics as columns, 3 significant digits, the best per column in bold.

    The second column says what each row's values explain. Columns with no value in any row
    are left out.
    """
    columns = [c for c in columns if any(r.get(c.key) is not None for r in rows)]
    reference = {i for i, r in enumerate(rows) if r["method"] == "exact"}
    bold = {c.key: best_rows(rows, c, reference if c.agreement else None) for c in columns}
    lines = ["| method | explains | " + " | ".join(c.header for c in columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    for i, r in enumerate(rows):
        cells = []
        for c in columns:
            text = sig3(r.get(c.key))
            cells.append(f"**{text}**" if i in bold[c.key] else text)
        lines.append(f"| {row_label(r)} | {r.get('explains', '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_class_table(rows: list[dict], key: str, classes: list[str]) -> str:
    """One metric's mean over each class (columns) for every row that has it."""
    rows = [r for r in rows if r.get(key) is not None]
    lines = ["| method | all | " + " | ".join(classes) + " |",
             "|---|---:|" + "---:|" * len(classes)]
    for r in rows:
        per = r["per_class"][key]
        lines.append(f"| {row_label(r)} | {sig3(r[key])} | "
                     + " | ".join(sig3(per.get(c)) for c in classes) + " |")
    return "\n".join(lines)


def break_even_cell(b: dict, sampler: str) -> str:
    s = b["samplers"].get(sampler)
    return describe(s) if s else "–"


def break_even_table(break_even: dict) -> str:
    """One line per model: LearnedSHAP's error, the evaluations samplers need to match it, and
    the speed-up at equal error (the best sampler's evaluations over the head's)."""
    samplers = list(dict.fromkeys(s for b in break_even.values() for s in b["samplers"]))
    lines = ["| model | players | reference (its noise) | examples × seeds | LearnedSHAP rel. L2 "
             "| remainder 1 - R² | LearnedSHAP evals | "
             + " | ".join(f"{s} evals to match" for s in samplers)
             + " | best sampler | speed-up at equal error | resolved |",
             "|---|---:|---|---:|---:|---:|---:|" + "---:|" * len(samplers) + "---|---:|---|"]
    for key, b in break_even.items():
        noise = (f" ({sig3(b['reference_noise'])})" if b["reference_noise"] else "")
        lines.append(
            f"| {key} | {b['n_players']} | {b['reference']}{noise} | "
            f"{b['n_examples']} × {len(b['seeds'])} | {sig3(b['target_error'])} | "
            f"{sig3(b.get('remainder'))} | {b['learned_evals']:g} | "
            + " | ".join(break_even_cell(b, s) for s in samplers)
            + f" | {b['best']} | {describe_speed_up(b.get('speed_up'))} | "
            f"{'yes' if b['resolved'] else 'no: reference noise > 1/3 of the error'} |")
    return "\n".join(lines)


def pair_break_even_table(break_even: dict) -> str:
    """One line per model with exact Faith-Shap pairs: the head's pair error, the evaluations
    each Faith-Shap approximator needs to match it, and the speed-up at equal error."""
    rows = {k: b["pairs"] for k, b in break_even.items() if b.get("pairs")}
    if not rows:
        return ""
    names = list(dict.fromkeys(s for p in rows.values() for s in p["samplers"]))
    lines = ["| model | examples × seeds | head pairs rel. L2 vs exact Faith-Shap | head evals | "
             + " | ".join(f"{s} evals to match" for s in names)
             + " | best | speed-up at equal error | goal n²/4 |",
             "|---|---:|---:|---:|" + "---:|" * len(names) + "---|---:|---:|"]
    for key, p in rows.items():
        n = break_even[key]["n_players"]
        lines.append(f"| {key} | {p['n_examples']} × {len(p['seeds'])} | "
                     f"{sig3(p['target_error'])} | {p['explainer_evals']:g} | "
                     + " | ".join(break_even_cell(p, s) for s in names)
                     + f" | {p['best']} | {describe_speed_up(p.get('speed_up'))} | {n * n // 4} |")
    return "\n".join(lines)


def sanity_table(s: dict) -> str:
    """Spearman similarity of |attributions| to the intact model's after each randomised layer."""
    short = [name.split(".")[-2] + " " + name.split(".")[-1] if ".blocks." in name
             else name.split(".")[-1] for name in s["layers"]]
    lines = ["| method | " + " | ".join(f"+ {n}" for n in short) + " |",
             "|---|" + "---:|" * len(short)]
    for method, m in s["methods"].items():
        lines.append(f"| {method} | " + " | ".join(sig3(v) for v in m["spearman"]) + " |")
    return "\n".join(lines)


def models_table(models: dict) -> str:
    """The explained models: LearnedSHAP accuracy beside the plain-head twin's, and the game."""
    lines = ["| benchmark key | zoo model | accuracy | plain head accuracy | players | game |",
             "|---|---|---:|---:|---:|---|"]
    for key, m in models.items():
        lines.append(f"| {key} | `{m['zoo_model']}` | {m['accuracy']:.1%} | "
                     f"{m['plain_head_accuracy']:.1%} (`{m['plain_model']}`) | {m['n_players']} | "
                     f"{m['game']}{' (break-even only)' if m.get('break_even_only') else ''} |")
    return "\n".join(lines)


# the rows a reader compares first: the one-pass head, the reference, the samplers, the baseline
HEADLINE = ("learned_shap", "exact", "permutation", "kernel", "gradient_shap", "gradcam_pp")


def headline_table(rows: list[dict], methods: tuple[str, ...] = HEADLINE) -> str:
    """One line per model and method (a sampler at its largest budget): error against the exact
    Shapley values of the model's game, model rows per explanation, seconds over one forward pass,
    AUROC against the ground truth and deletion AUC; the full tables are in results.md."""
    lines = ["| model | method | rel. L2 vs exact | evals | × forward | AUROC vs truth | "
             "deletion AUC |", "|---|---|---:|---:|---:|---:|---:|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        for method in methods:
            mine = [r for r in rows if r["model"] == model and r["method"] == method]
            if not mine:
                continue
            r = max(mine, key=lambda r: r.get("budget") or 0)
            lines.append(f"| {model} | {row_label(r)} | {sig3(r.get('rel_l2_exact'))} | "
                         f"{sig3(r.get('evals'))} | {sig3(r.get('forward_ratio'))} | "
                         f"{sig3(r.get('auroc_truth'))} | {sig3(r.get('deletion_auc'))} |")
    return "\n".join(lines)
