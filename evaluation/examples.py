"""The examples every evaluation scores: the same number from every class, in one seeded order.

`stratified_indices` draws `per_class` test examples of each class from a seeded permutation and
interleaves the classes (first of each class, then second of each, ...), so that any prefix of
m * K examples holds m of each of the K classes. The report, the benchmark, its break-even and
the notebooks' checks all draw through here, so per-class means are comparable and a smaller
evaluation scores a subset of a larger one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

import data
from models import zoo
from shapley.game import DEFAULT_TUBELETS

EXAMPLE_SEED = 1            # the order every evaluation draws its examples in


def stratified_indices(labels: Sequence[int], per_class: int, seed: int = EXAMPLE_SEED,
                       n_classes: int | None = None) -> list[int]:
    """`per_class` indices of every class, classes interleaved: (per_class * K,) ints."""
    labels = [int(y) for y in labels]
    K = n_classes if n_classes is not None else max(labels) + 1
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    by_class: list[list[int]] = [[] for _ in range(K)]
    for i in order:
        by_class[labels[i]].append(i)
    short = {c: len(ix) for c, ix in enumerate(by_class) if len(ix) < per_class}
    if short:
        raise ValueError(f"asked for {per_class} examples per class but classes {short} have "
                         "fewer (class: count); lower per_class or use a larger split")
    return [by_class[c][r] for r in range(per_class) for c in range(K)]


@dataclass
class Examples:
    """Stacked test examples of one model's dataset with their player-level ground truth."""

    x: Tensor                   # (B, C, H, W) images or (B, C, T, H, W) clips
    y: Tensor                   # (B,) true classes
    relevant: Tensor            # (B, N) bool: players the class depends on
    truth: Tensor               # (B, H, W) or (B, T, H, W) bool pixels of the evidence
    pairs: Tensor | None        # (B, N, N) bool true interacting pairs, when the data has them
    classes: list[str]
    truth_kind: str             # how `relevant` was made (the digits' is a weak ink mask)
    index: list[int]            # positions in the test split

    def __len__(self) -> int:
        return len(self.y)

    @property
    def per_class(self) -> int:
        """Examples of each class (the examples are stratified)."""
        return len(self) // len(self.classes)

    def first(self, per_class: int) -> Examples:
        """The first `per_class` examples of every class (a prefix of the interleaved order)."""
        if per_class > self.per_class:
            raise ValueError(f"these examples hold {self.per_class} per class, not {per_class}")
        return self.head(per_class * len(self.classes))

    def head(self, k: int) -> Examples:
        """The first `k` examples (not stratified unless k is a multiple of the classes)."""
        return replace(self, x=self.x[:k], y=self.y[:k], relevant=self.relevant[:k],
                       truth=self.truth[:k], pairs=None if self.pairs is None else self.pairs[:k],
                       index=self.index[:k])


def load_examples(spec: zoo.ModelSpec, model: nn.Module, per_class: int,
                  seed: int = EXAMPLE_SEED) -> Examples:
    """`per_class` test examples of each class of the spec's dataset, with relevant players."""
    ds = data.get_dataset(spec.dataset, "test", seed=spec.seed, **spec.data_options)
    labels = (ds.tensors["y"].tolist() if hasattr(ds, "tensors")     # generated data
              else [y for _, y in ds.samples])                         # folders on disk
    idx = stratified_indices(labels, per_class, seed, len(ds.classes))
    items = [ds[i] for i in idx]
    x = torch.stack([it["x"] for it in items])
    if "truth" not in items[0]:              # data on disk: no ground truth, nothing relevant
        n = model.n_players
        return Examples(x, torch.stack([it["y"] for it in items]),
                        torch.zeros(len(items), n, dtype=torch.bool),
                        torch.zeros(len(items), *x.shape[2:], dtype=torch.bool), None,
                        list(ds.classes), "none (data on disk has no ground truth)", idx)
    truth = torch.stack([it["truth"] for it in items]).bool()
    if "relevant" in items[0]:
        relevant, kind = torch.stack([it["relevant"] for it in items]), "relevant patches"
    elif x.ndim == 5:
        grid = tuple(getattr(model, "tubelets", DEFAULT_TUBELETS))
        relevant = data.cell_truth(truth, grid)
        kind = f"tubelets {grid} the moving object occupies"
    else:
        relevant = data.patch_truth(truth, model.patch_size)
        kind = "patches holding ink (weak truth: where ink is absent matters too)"
    pairs = torch.stack([it["pairs"] for it in items]).bool() if "pairs" in items[0] else None
    return Examples(x, torch.stack([it["y"] for it in items]), relevant.bool(), truth, pairs,
                    list(ds.classes), kind, idx)


def per_class_means(values: Sequence[float | None], labels: Sequence[int],
                    classes: Sequence[str]) -> dict[str, float | None]:
    """Mean of the defined values (None and nan drop out) of each class's examples."""
    out = {}
    for c, name in enumerate(classes):
        v = [float(a) for a, y in zip(values, labels, strict=True)
             if int(y) == c and a is not None and a == a]
        out[name] = sum(v) / len(v) if v else None
    return out
