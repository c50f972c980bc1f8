"""Writing results: JSON without NaN, the versions of the libraries, atomic files, and fields
split off (timings) into a file of their own and merged back."""

from __future__ import annotations

import importlib.metadata
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from tools.files import write_atomic

PACKAGES = ("torch", "timm", "shap", "captum", "shapiq", "numpy")


def json_ready(obj):
    """Tensors to lists, nan and inf to None, recursively: what json can write."""
    if isinstance(obj, Tensor):
        return json_ready(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return json_ready(obj.item())
    return obj


def versions() -> dict[str, str | None]:
    out = {}
    for package in PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def write_text(path: Path, text: str) -> None:
    """Write a file atomically (a temporary file in the same folder, then a rename)."""
    write_atomic(path, text)


def publish(table: str, out: Path, name: str, fig=None, figure_name: str = "",
            block: str = "", committed: bool = False) -> None:
    """A study's outputs: `<name>.md` (and the figure as `<figure_name>` when given) in `out`, and
    the generated block `block` (in the README or the docs page holding its markers) when `out`
    is the committed folder (`committed`)."""
    from tools.readme import replace_block
    from viz.overlay import save_figure

    write_text(out / f"{name}.md", table + "\n")
    if fig is not None:
        save_figure(fig, out / (figure_name or f"{name}.png"), dpi=80)
    if committed and block:
        replace_block(block, table)


def write_json(path: Path, obj) -> dict:
    """`obj` made json-ready, written atomically with one-space indents; returns what was written."""
    ready = json_ready(obj)
    write_text(path, json.dumps(ready, indent=1, allow_nan=False) + "\n")
    return ready


def split_fields(obj: Any, keys: frozenset[str]) -> tuple[Any, Any]:
    """`obj` without the dict entries named in `keys` (at any depth), and those entries alone.

    The second value keeps the nesting of `obj` (lists position by position, None where a list
    item holds none of the keys) and is None when nothing was split off, so `merge_fields` puts
    every entry back where it was.
    """
    if isinstance(obj, dict):
        kept, taken = {}, {}
        for k, v in obj.items():
            if k in keys:
                taken[k] = v
                continue
            kept[k], inner = split_fields(v, keys)
            if inner is not None:
                taken[k] = inner
        return kept, taken or None
    if isinstance(obj, list):
        parts = [split_fields(v, keys) for v in obj]
        taken = [t for _, t in parts]
        return [k for k, _ in parts], taken if any(t is not None for t in taken) else None
    return obj, None


def merge_fields(base: Any, overlay: Any) -> Any:
    """`base` with the entries of `overlay` (a `split_fields` remainder) put back; base unchanged."""
    if overlay is None:
        return base
    if isinstance(base, dict) and isinstance(overlay, dict):
        return {**base, **{k: merge_fields(base.get(k), v) for k, v in overlay.items()}}
    if isinstance(base, list) and isinstance(overlay, list):
        if len(base) != len(overlay):
            raise ValueError(f"cannot merge a list of {len(overlay)} items into one of "
                             f"{len(base)}: the two files come from different runs; rerun the "
                             "command that wrote them")
        return [merge_fields(b, o) for b, o in zip(base, overlay, strict=True)]
    return overlay
