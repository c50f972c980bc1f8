"""Nothing here unpickles untrusted data or runs strings as code: a scan of every source file and
notebook cell. (torch.distributed's all_gather_object pickles between the ranks of one job, which
trust each other; it is not a file or network input.)"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", ".cache", ".git", "node_modules"}


def sources() -> list[tuple[str, str]]:
    """(where, Python source) of every .py file and every notebook code cell of the project."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if not SKIP & set(path.relative_to(ROOT).parts):
            found.append((str(path.relative_to(ROOT)), path.read_text()))
    for path in sorted(ROOT.rglob("*.ipynb")):
        if SKIP & set(path.relative_to(ROOT).parts):
            continue
        cells = json.loads(path.read_text())["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                found.append((f"{path.relative_to(ROOT)} cell {i}", "".join(cell["source"])))
    return found


def problems(source: str) -> list[str]:
    """Unsafe loading or dynamic code in one source text (a list of what and where)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib") for n in names):
                out.append(f"line {node.lineno}: imports a pickle module")
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        keywords = {k.arg: k.value for k in node.keywords}
        if isinstance(f, ast.Name) and name in ("eval", "exec"):
            out.append(f"line {node.lineno}: {name}() runs a string as code")
        if owner == "torch" and name == "load":
            safe = keywords.get("weights_only")
            if not (isinstance(safe, ast.Constant) and safe.value is True):
                out.append(f"line {node.lineno}: torch.load without weights_only=True")
        if owner == "np" and name == "load":
            allow = keywords.get("allow_pickle")
            if isinstance(allow, ast.Constant) and allow.value is True:
                out.append(f"line {node.lineno}: np.load with allow_pickle=True")
    return out


def test_the_scan_finds_what_it_looks_for():
    bad = ("import pickle\nx = torch.load(p)\ny = torch.load(p, weights_only=False)\n"
           "eval('1')\nexec('a = 1')\nz = np.load(p, allow_pickle=True)\n")
    assert len(problems(bad)) == 6
    good = "x = torch.load(p, weights_only=True)\nmodel.eval()\nnp.load(p)\n"
    assert problems(good) == []


@pytest.mark.parametrize("where,source", sources(), ids=lambda v: v if len(v) < 80 else "src")
def test_no_unsafe_loading_or_dynamic_code(where, source):
    if where == "tests/test_safety.py":
        return                              # its own examples of what is forbidden
    assert problems(source) == [], where
