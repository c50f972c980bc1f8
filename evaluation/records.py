"""Writing results: JSON without NaN, the versions of the libraries, atomic files."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
from torch import Tensor

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> dict:
    """`obj` made json-ready, written atomically with one-space indents; returns what was written."""
    ready = json_ready(obj)
    write_text(path, json.dumps(ready, indent=1, allow_nan=False) + "\n")
    return ready
