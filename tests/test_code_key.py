"""Cache keys follow the code a result runs: refactors keep them, changes to the computation don't.

The refactors below are applied to a copy of the source tree and keyed there (`code_root`), so
each test shows what a real edit would do to the real checkpoint and reference keys.
"""

from __future__ import annotations

import ast
import shutil
import textwrap
from pathlib import Path

import pytest
import torch

from evaluation import references
from models import zoo
from models.harsanyi import LearnedShapViT
from tools.code_key import CodeGraph, code_key, local_names

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "models", "shapley", "tools", "evaluation", "explainers", "viz")
PLAIN = ("vit_patches", "vit_digits", "resnet_patches", "r3d_video", "vit_patches64")
LEARNED = ("learned_vit_patches", "learned_vit_digits", "learned_vit_patches64",
           "learned_r3d_video")


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def small_key(root: Path) -> str:
    return CodeGraph(root).key(["pkg.main:result"])


def test_a_small_tree_keys_code_not_files(tmp_path):
    files = {name: textwrap.dedent(text) for name, text in {
        "pkg/__init__.py": "",
        "pkg/main.py": """
            from pkg.helpers import scale, write

            def result(x):
                '''The result.'''
                y = scale(x)  # a comment
                write(y)
                return y
        """,
        "pkg/helpers.py": """
            from tools.code_key import outside_key

            FACTOR = 3

            def scale(x):
                return [FACTOR * v for v in x]

            @outside_key
            def write(y):
                print(y)
        """,
    }.items()}
    base = small_key(write_tree(tmp_path / "a", files))
    # docstrings, comments and layout are not code
    edited = {**files, "pkg/main.py": files["pkg/main.py"].replace("'''The result.'''", "")
              .replace("# a comment", "")}
    assert small_key(write_tree(tmp_path / "b", edited)) == base
    # a helper moved to another module (its users' imports updated) keeps the key
    moved = {**files,
             "pkg/main.py": files["pkg/main.py"].replace(
                 "from pkg.helpers import scale, write",
                 "from pkg.helpers import write\nfrom pkg.maths import scale"),
             "pkg/maths.py": "from pkg.helpers import FACTOR\n\ndef scale(x):\n"
                             "    return [FACTOR * v for v in x]\n"}
    assert small_key(write_tree(tmp_path / "c", moved)) == base
    # how a result is written is outside the key
    quiet = {**files, "pkg/helpers.py": files["pkg/helpers.py"].replace("print(y)", "pass")}
    assert small_key(write_tree(tmp_path / "d", quiet)) == base
    # a constant or a helper the result runs is inside it
    for old, new in (("FACTOR = 3", "FACTOR = 4"), ("FACTOR * v", "FACTOR * v + 1")):
        changed = {**files, "pkg/helpers.py": files["pkg/helpers.py"].replace(old, new)}
        assert small_key(write_tree(tmp_path / f"e{len(new)}", changed)) != base


def test_no_definition_shadows_a_project_name_it_also_uses():
    """`local_names` treats a name bound anywhere inside a definition as local there: sound only
    while no definition binds a local with the name of a project definition it also reads."""
    graph = CodeGraph(ROOT)
    clashes = []
    for package in PACKAGES + ("experiments",):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            for name, stmt in graph.parse(module).definitions.items():
                read = {n.id for n in ast.walk(stmt)
                        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
                clashes += [f"{module}:{name} binds {local!r}"
                            for local in sorted(local_names(stmt) & read)
                            if graph.resolve(module, local) is not None]
    assert clashes == []


def test_an_unknown_root_is_named():
    with pytest.raises(ValueError, match="not a definition of this project"):
        code_key(["models.train:no_such_function"])
    with pytest.raises(ValueError, match="not a definition of this project"):
        code_key([torch.nn.Linear])


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory):
    """A fresh copy of the source packages for each edit: copy(edits) -> its root."""
    base = tmp_path_factory.mktemp("sources")
    count = iter(range(1000))

    def copy(edits: dict[str, tuple[str, str]]) -> Path:
        root = base / f"tree{next(count)}"
        for package in PACKAGES:
            shutil.copytree(ROOT / package, root / package,
                            ignore=shutil.ignore_patterns("__pycache__"))
        for name, (old, new) in edits.items():
            path = root / name
            text = path.read_text()
            assert old in text, f"the edit of {name} no longer applies: {old!r} not found"
            path.write_text(text.replace(old, new, 1))
        return root

    return copy


def fingerprints(root: Path) -> dict[str, str]:
    return {name: zoo.fingerprint(spec, code_root=root) for name, spec in zoo.all_specs().items()}


def test_refactors_keep_every_checkpoint_key(source_copy):
    today = fingerprints(ROOT)
    assert fingerprints(source_copy({})) == today
    # checkpoints written by a helper of the training module (the code before it was folded
    # into tools.files.save_torch)
    unfolded = source_copy({"models/train.py": (
        "    save_torch(path, {\"state_dict\": state, \"meta\": meta})",
        "    atomic_save({\"state_dict\": state, \"meta\": meta}, Path(path))\n\n\n"
        "def atomic_save(obj, path):\n"
        "    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix='.tmp')\n"
        "    os.close(fd)\n"
        "    torch.save(obj, tmp)\n"
        "    os.replace(tmp, path)")})
    assert fingerprints(unfolded) == today
    # a helper of the training loop moved to a module of its own
    train_py = (ROOT / "models" / "train.py").read_text()
    helper = train_py[train_py.index("def random_keep("):train_py.index("def cross_entropy_loss(")]
    moved = source_copy({"models/train.py": (helper, "")})
    (moved / "models" / "masking.py").write_text("import torch\nfrom torch import Tensor\n\n\n"
                                                 + helper)
    text = (moved / "models" / "train.py").read_text()
    (moved / "models" / "train.py").write_text(text.replace(
        "from models import distributed\n",
        "from models import distributed\nfrom models.masking import random_keep\n"))
    assert fingerprints(moved) == today


def test_training_changes_change_the_keys_they_affect(source_copy):
    today = fingerprints(ROOT)
    clipped = fingerprints(source_copy({"models/train.py": (
        "                loss.backward()\n",
        "                loss.backward()\n"
        "                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n")}))
    assert all(clipped[name] != today[name] for name in today)       # every model trains so
    # a definition nothing calls changes nothing
    unused = source_copy({"models/harsanyi.py": (
        "def learned_shap_loss(", "def logit_penalty(logits):\n    return logits.pow(2).mean()"
                                  "\n\n\ndef learned_shap_loss(")})
    assert fingerprints(unused) == today
    # a term added to LearnedSHAP's loss: the co-trained models retrain, the plain ones do not
    added = source_copy({"models/harsanyi.py": (
        "        return loss, full.logits\n",
        "        return loss + 1e-4 * full.logits.pow(2).mean(), full.logits\n")})
    with_term = fingerprints(added)
    for name in LEARNED:
        assert with_term[name] != today[name], name
    for name in PLAIN:
        assert with_term[name] == today[name], name


def test_reference_keys_follow_the_computation_not_its_storage(source_copy):
    model = LearnedShapViT.__new__(LearnedShapViT)
    torch.nn.Module.__init__(model)
    x = torch.zeros(3, 32, 32)

    def key(root: Path) -> str:
        return references.fingerprint(model, x, "exact", None, 0, code_root=root)

    today = key(ROOT)
    efficiency = (ROOT / "evaluation" / "efficiency.py").read_text()
    start = efficiency.index("@outside_key\ndef check_efficient(")
    check = efficiency[start:]
    # the efficiency check moved into references.py (it lived there before): same key
    moved = source_copy({"evaluation/efficiency.py": (check, "")})
    ref_py = (moved / "evaluation" / "references.py").read_text()
    (moved / "evaluation" / "references.py").write_text(
        ref_py.replace("from evaluation.efficiency import check_efficient\n",
                       "from evaluation.efficiency import EFFICIENCY_RTOL, EfficiencyError\n")
        + "\n\n" + check.replace("Sequence[int]", "list[int]"))
    assert key(moved) == today
    stored = source_copy({"evaluation/references.py": (
        '    state["n_evals"] = torch.tensor(ref.n_evals)\n',
        '    state["n_evals"] = torch.tensor(ref.n_evals, dtype=torch.int64)\n')})
    assert key(stored) == today
    # the sampler a sampled reference runs is part of its key
    sampled = source_copy({"shapley/sampling.py": ("def permutation_shapley(",
                                                   "def permutation_shapley(*args, **kw):\n"
                                                   "    return _permutation(*args, **kw)\n\n\n"
                                                   "def _permutation(")})
    assert key(sampled) != today
