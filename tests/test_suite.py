"""The fast suite (`make test`, every test not marked slow) still exercises every module.

Each module of the project's packages must be loaded by a test that runs in the fast suite:
imported at the top of a test file that holds at least one fast test, or inside a fast test
itself, or by a module those import (an explainer through the registry that loads it). A module
only the slow tests reach would go unchecked in a contributor's edit-test loop.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tools.code_key import CodeGraph

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "models", "shapley", "explainers", "evaluation", "tools", "viz",
            "experiments", "examples")


def is_slow(node: ast.AST) -> bool:
    return any("slow" in ast.unparse(d) for d in getattr(node, "decorator_list", []))


def imported(module: str, nodes: list[ast.AST], graph: CodeGraph) -> set[str]:
    """Project modules that these statements import (`from a import b`: a.b when b is a module)."""
    out = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                out |= {a.name for a in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
                for a in sub.names:
                    full = f"{sub.module}.{a.name}"
                    out.add(full if graph.parse(full) is not None else sub.module)
    return {m for m in out if graph.parse(m) is not None}


def fast_imports() -> set[str]:
    graph = CodeGraph(ROOT)
    found = set()
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        tests = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)
                 and n.name.startswith(("test", "Test"))]
        fast = [n for n in tests if not is_slow(n)]
        if not fast or any("pytestmark" in ast.unparse(n) and "slow" in ast.unparse(n)
                           for n in tree.body if isinstance(n, ast.Assign)):
            continue
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        helpers = [n for n in tree.body if isinstance(n, ast.FunctionDef)
                   and not n.name.startswith("test")]        # fixtures and helpers fast tests use
        found |= imported(path.stem, top + fast + helpers, graph)
    todo = list(found)
    while todo:                                  # and what those modules import in turn
        module = graph.parse(todo.pop())
        parents = [".".join(module.name.split(".")[:i]) for i in range(1, module.name.count(".") + 1)]
        for source, attr in [*module.imports.values(), *((p, None) for p in parents)]:
            full = f"{source}.{attr}" if attr else source
            name = full if graph.parse(full) is not None else source
            if graph.parse(name) is not None and name not in found:
                found.add(name)
                todo.append(name)
    return found


def project_modules() -> set[str]:
    out = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            if rel.name == "__init__" and not path.read_text().strip():
                continue                                   # an empty package marker
            out.add(".".join(parts))
    return out


def test_the_fast_suite_imports_every_module():
    missing = sorted(project_modules() - fast_imports())
    assert missing == [], (f"no fast test imports {missing}: add a test that runs in `make test` "
                           "(under 5 s) for each, or import it in one")


def test_the_readme_folder_map_names_every_folder():
    """Every top-level folder of the repository (but hidden ones and caches) has its line in the
    README's folder map, so a newcomer finds where each part lives."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Folder map")
    block = readme[start:readme.index("\n## ", start + 1)]
    listed = {line.split()[0].rstrip("/") for line in block.splitlines()
              if line[:1].isalpha() or line[:1] == "."}
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
               and p.name not in ("build", "dist") and any(p.iterdir())}
    missing = sorted(folders - listed)
    assert missing == [], f"the README's folder map has no line for {missing}/: add one"


def test_the_readme_is_a_front_page_and_every_link_resolves():
    """The README fits about two screens and links every docs page; no page links a missing
    file (a moved figure or page breaks a link silently otherwise)."""
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 250, "the README is a front page: move detail "\
        "to a docs/ page"
    pages = sorted((ROOT / "docs").glob("*.md"))
    linked = set(re.findall(r"\]\((docs/[^)#\s]+)\)", readme.read_text()))
    unlinked = [p.name for p in pages if f"docs/{p.name}" not in linked]
    assert unlinked == [], f"no README link to {unlinked}"
    broken = [(page.name, target) for page in [readme, *pages]
              for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", page.read_text())
              if "://" not in target and not (page.parent / target).exists()]
    assert broken == [], f"links to missing files (page, target): {broken}"
