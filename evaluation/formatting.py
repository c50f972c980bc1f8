"""How every table and sentence of the project writes a number: one place, so that the same value
reads the same in the benchmark, the studies, the notebooks and the experiment reports."""

from __future__ import annotations

import math


def missing(v) -> bool:
    """No value: None, or nan (a statistic over no examples)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def number(v: float | None, digits: int = 3, style: str = "f", empty: str = "–") -> str:
    """`v` with `digits` decimals (style "f") or significant digits (style "g", for values that
    may be tiny: errors, remainders); `empty` for a missing one."""
    return empty if missing(v) else f"{v:.{digits}{style}}"


def stat(summary: dict | None, key: str = "mean", digits: int = 3, style: str = "f") -> str:
    """One statistic of a summary ({"mean": ..., "min": ..., "max": ...}), or n/a."""
    return number(summary.get(key) if summary else None, digits, style, empty="n/a")


def sig3(v: float | None) -> str:
    """A number with 3 significant digits, thousands separated; an en dash for a missing value."""
    if missing(v):
        return "–"
    rounded = float(f"{float(v):.3g}")            # 9.996 -> 10.0 moves to the next decade
    if rounded == 0:
        return "0"
    digits = math.floor(math.log10(abs(rounded)))
    if digits >= 3:
        return f"{rounded:,.0f}"
    if digits < -3:
        return f"{rounded:.2e}"
    return f"{rounded:.{2 - digits}f}"


def checkpoints_sentence(checkpoints: dict | None) -> str:
    """Which checkpoint of each model the tables measured (their fingerprints)."""
    if not checkpoints:
        return ""
    return " Checkpoints: " + ", ".join(f"{name} `{fp}`" for name, fp in checkpoints.items()) + "."
