"""Cache keys that follow the code a result runs, not the files that code happens to live in.

A cached result (a checkpoint, a reference, a study's game) must be recomputed when the code that
computes it changes, and only then. Hashing whole files gets both wrong: moving a helper out of a
file, or rewriting how a checkpoint is written, changes the file and so every key, while the
numbers cannot change. `code_key` instead starts from a few root definitions (the functions and
classes that compute the result) and follows, statically, every name they use that this project
defines: functions, classes, constants, through imports and `module.attr` chains, across files. It
hashes the syntax tree of each definition reached, without docstrings, comments or layout, and
keyed by its qualified name rather than by the file it is in, so:

- moving a definition to another module, renaming a file or editing a docstring changes no key;
- editing anything a root reaches (a loss term, an optimizer step, a sampler) changes the keys of
  exactly the results that reach it;
- a definition marked `@outside_key` (writing files, logging, checks that can only raise) is
  neither hashed nor followed: changing how a result is stored or validated keeps its key.

Third-party code (torch, numpy, ...) is not followed: its versions are pinned in requirements.txt.
The analysis is static (nothing is imported), so the tests can compute keys over an edited copy
of the source tree. Names reached only dynamically (a registry looked up by a string) are
followed when the registry's definition names them; pass `skip` to cut such a registry and list
the entries that matter as roots instead.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

Ref = str     # "package.module:name", e.g. "models.train:train"


def outside_key(fn: Callable) -> Callable:
    """Mark a function or class as unable to change any cached number (I/O, logging, checks that
    only raise): `code_key` neither hashes nor follows it. The marker itself does nothing."""
    return fn


def ref(obj) -> Ref:
    """The reference "module:name" of a module-level function or class (for `code_key` roots)."""
    module = obj.__module__
    if module == "__main__":             # run as `python -m package.module`: its real name
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else module
    return f"{module}:{obj.__qualname__.split('.')[0]}"


def code_ref(obj, root: Path = ROOT) -> Ref | None:
    """`ref(obj)` when this project defines `obj` (a model's own class), None for third-party
    code (a torch or timm module), which `code_key` does not follow."""
    if not getattr(obj, "__module__", None):
        return None
    reference = ref(obj)
    return reference if module_file(reference.partition(":")[0], root) is not None else None


@dataclass
class Module:
    """One parsed module: what each top-level name is bound to."""

    name: str
    is_package: bool
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # alias -> (module, attr)
    definitions: dict[str, ast.AST] = field(default_factory=dict)            # name -> statement


def module_file(name: str, root: Path) -> Path | None:
    """The file of project module `name` under `root`, or None (a third-party module)."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file() and ".venv" not in path.parts:
            return path
    return None


DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
# scopes whose names are their own (a class body's names are reached through the class instead)
LOCAL_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp, ast.SetComp,
                ast.DictComp, ast.GeneratorExp)


def walk_scope(node: ast.AST):
    """The nodes of `node`'s own scope: nested functions, classes and comprehensions excluded."""
    for child in ast.iter_child_nodes(node):
        yield child
        if not isinstance(child, LOCAL_SCOPES + (ast.ClassDef,)):
            yield from walk_scope(child)


def bound_names(stmt: ast.stmt) -> set[str]:
    """The module-level names a statement binds (a def, an assignment, names bound in if/try;
    not a comprehension's variables, which are its own)."""
    if isinstance(stmt, DEFS):
        return {stmt.name}
    nodes = [stmt, *walk_scope(stmt)]
    return ({n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            | {n.name for n in nodes if isinstance(n, DEFS)})


def local_names(stmt: ast.AST) -> set[str]:
    """Names bound inside the functions, lambdas and comprehensions of `stmt` (arguments,
    assignments, loop variables, nested definitions): a use of one of them is not a module-level
    name. Taken over the whole definition at once, so a module-level name that some nested scope
    also binds locally would be missed; `tests/test_code_key.py` checks that no definition of
    this project does that."""
    names = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, LOCAL_SCOPES):
            inner = [n for n in ast.walk(node) if n is not node]
            names |= {n.id for n in inner if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            names |= {n.name for n in inner if isinstance(n, DEFS)}
    return names


def executable(stmt: ast.AST) -> ast.AST:
    """A copy of `stmt` without what cannot change a result: docstrings and the type annotations
    of arguments and returns (a dataclass's field annotations stay: they make the fields)."""
    stmt = copy.deepcopy(stmt)
    for sub in ast.walk(stmt):
        if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
            sub.returns = None
            for arg in [*sub.args.posonlyargs, *sub.args.args, *sub.args.kwonlyargs,
                        sub.args.vararg, sub.args.kwarg]:
                if arg is not None:
                    arg.annotation = None
        body = getattr(sub, "body", None)
        if (isinstance(sub, DEFS) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            sub.body = body[1:] or [ast.Pass()]
    return stmt


def marked_outside(stmt: ast.AST) -> bool:
    decorators = getattr(stmt, "decorator_list", [])
    return any((isinstance(d, ast.Name) and d.id == "outside_key")
               or (isinstance(d, ast.Attribute) and d.attr == "outside_key") for d in decorators)


class CodeGraph:
    """The project's modules under `root`, parsed on demand, and the definitions they reach."""

    def __init__(self, root: Path = ROOT):
        self.root = Path(root)
        self.parse = cache(self._parse)
        self.definition = cache(self._definition)

    def _parse(self, name: str) -> Module | None:
        path = module_file(name, self.root)
        if path is None:
            return None
        module = Module(name, path.name == "__init__.py")
        package = name if module.is_package else name.rpartition(".")[0]
        for stmt in ast.parse(path.read_text()).body:
            if isinstance(stmt, ast.Import):
                for a in stmt.names:
                    if a.asname:
                        module.imports[a.asname] = (a.name, None)
                    else:                               # `import a.b` binds `a`
                        top = a.name.split(".")[0]
                        module.imports[top] = (top, None)
            elif isinstance(stmt, ast.ImportFrom):
                source = stmt.module or ""
                if stmt.level:                          # relative: from the package upwards
                    parts = package.split(".")[: len(package.split(".")) - stmt.level + 1]
                    source = ".".join(p for p in [*parts, source] if p)
                for a in stmt.names:
                    module.imports[a.asname or a.name] = (source, a.name)
            else:
                for n in bound_names(stmt):
                    module.definitions[n] = stmt
        return module

    def resolve(self, module: str, name: str, depth: int = 0) -> tuple[str, str | None] | None:
        """Where `name` in `module` is defined: (module, name) for a definition, (module, None) for
        a project module itself, None for anything outside the project."""
        parsed = self.parse(module)
        if parsed is None or depth > 20:
            return None
        if name in parsed.definitions:
            return module, name
        if name in parsed.imports:
            source, attr = parsed.imports[name]
            if attr is None:
                return (source, None) if self.parse(source) is not None else None
            if self.parse(f"{source}.{attr}") is not None:       # `from models import train`
                return f"{source}.{attr}", None
            return self.resolve(source, attr, depth + 1)
        if parsed.is_package and self.parse(f"{module}.{name}") is not None:
            return f"{module}.{name}", None
        return None

    def uses(self, module: str, stmt: ast.AST) -> set[tuple[str, str]]:
        """The project definitions a statement names: bare names and `module.attr` chains."""
        found: set[tuple[str, str]] = set()
        local = local_names(stmt)

        def chain(node: ast.AST) -> list[str] | None:
            if isinstance(node, ast.Name):
                return [node.id]
            if isinstance(node, ast.Attribute):
                head = chain(node.value)
                return None if head is None else [*head, node.attr]
            return None

        for node in ast.walk(stmt):
            parts = chain(node) if isinstance(node, ast.Name | ast.Attribute) else None
            if not parts or parts[0] in local:
                continue
            where = self.resolve(module, parts[0])
            for attr in parts[1:]:                       # data.get_loader, models.train.train
                if where is None or where[1] is not None:
                    break
                where = self.resolve(where[0], attr)
            if where is not None and where[1] is not None:
                found.add(where)
        return found

    def definitions(self, roots: Iterable[Ref], skip: Iterable[Ref] = ()) -> dict[Ref, str]:
        """Every project definition the roots reach ("module:name"), with the syntax tree that is
        hashed for it; `@outside_key` definitions and `skip` are neither listed nor followed."""
        skipped = set(skip)
        todo = []
        for r in roots:
            module, _, name = r.partition(":")
            where = self.resolve(module, name)
            if where is None or where[1] is None:
                raise ValueError(f"code_key root {r!r} is not a definition of this project under "
                                 f"{self.root}; give 'package.module:name' of a function or class")
            todo.append(where)
        seen: dict[Ref, str] = {}
        while todo:
            module, name = todo.pop()
            qualified = f"{module}:{name}"
            if qualified in seen or qualified in skipped:
                continue
            seen[qualified], uses = self.definition(module, name)
            todo.extend(uses)
        return {q: dump for q, dump in sorted(seen.items()) if dump}

    def _definition(self, module: str, name: str) -> tuple[str, set[tuple[str, str]]]:
        """What is hashed of one definition ('' when marked `@outside_key`) and what it uses."""
        stmt = self.parse(module).definitions[name]
        if marked_outside(stmt):
            return "", set()
        clean = executable(stmt)
        return ast.dump(clean, include_attributes=False), self.uses(module, clean)

    def key(self, roots: Iterable[Ref], skip: Iterable[Ref] = ()) -> str:
        """Hash of the roots' definitions and of every project definition they reach."""
        return self._key(tuple(roots), tuple(skip))

    @cache  # noqa: B019 (one graph per source tree, kept for the run)
    def _key(self, roots: tuple[Ref, ...], skip: tuple[Ref, ...]) -> str:
        h = hashlib.sha256()
        # by the name a definition is reached by, not the module it lives in: moving it to
        # another module keeps the key
        texts = sorted(f"{q.partition(':')[2]}\x00{dump}"
                       for q, dump in self.definitions(roots, skip).items())
        for text in texts:
            h.update(text.encode() + b"\x01")
        return h.hexdigest()[:16]


@cache
def graph(root: Path = ROOT) -> CodeGraph:
    return CodeGraph(root)


def code_key(roots: Iterable[Ref | object], skip: Iterable[Ref | object] = (),
             root: Path = ROOT) -> str:
    """Hash of the code that `roots` (functions, classes, or "module:name" strings) run.

    See the module docstring for what is followed and what is left out."""
    as_ref = [r if isinstance(r, str) else ref(r) for r in roots]
    return graph(Path(root)).key(as_ref, [s if isinstance(s, str) else ref(s) for s in skip])
