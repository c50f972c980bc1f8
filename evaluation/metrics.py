"""The metrics the benchmark reports on player values, each with its definition and source.

Attributions are per-player tensors, `values (N,)` for one example; ground truth is a bool `(N,)`
mask of the relevant players, pair truth a symmetric bool `(N, N)` mask. Five families:

1. agreement with exact Shapley values: `pearson`, `spearman`, `rel_l2`, `topk_overlap`;
2. ground truth from the data: `auroc`, `pointing_game`, `pair_auroc`;
3. faithfulness without ground truth: `insertion_deletion` (RISE) over players; Grad-CAM++'s
   Average Drop and Increase on inputs masked by a saliency map, raw and at equal mass, are in
   `evaluation.map_metrics`;
4. sanity: `cascading_randomization` (Adebayo et al. 2018);
5. cost: `forward_ratio`.

Metrics that perturb the model go through the masking game (`shapley.game.MaskingGame`), or build
their "removed" input with the game's own `make_baseline`, so removing a player means the same
thing here as for every explainer. Inputs are CPU tensors (anything `torch.as_tensor` takes);
scalars come back as python floats computed in float64. A metric that is undefined for valid
input (a constant vector's correlation, an AUROC with one class) returns nan, as documented per
function; malformed input raises a ValueError that says what to change.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from scipy.stats import rankdata
from torch import Tensor, nn

from shapley.exact import call_game

Game = Callable[[Tensor], Tensor]                      # (C, N) bool -> (C, K) float
ExplainFn = Callable[[nn.Module, Tensor, int], Tensor]  # (model, x, target) -> (N,) or a map


# --- input checks ---------------------------------------------------------------------------

def _finite(name: str, t: Tensor) -> Tensor:
    """`t` as float64 on CPU, refusing nan and inf."""
    t = torch.as_tensor(t).detach().cpu().double()
    if not torch.isfinite(t).all():
        bad = (~torch.isfinite(t)).nonzero().tolist()[:5]
        raise ValueError(f"{name} contains nan or inf (at {bad}); fix the explainer or drop "
                         "this example before scoring it")
    return t


def _vector(name: str, a: Tensor, min_len: int = 1) -> Tensor:
    """One example's per-player values as a float64 vector (N,)."""
    t = torch.as_tensor(a)
    if t.ndim != 1:
        hint = ("; for a batch (B, N) call the metric on each row and average"
                if t.ndim == 2 else "")
        raise ValueError(f"{name} must be one example's per-player values (N,), got shape "
                         f"{tuple(t.shape)}{hint}")
    if len(t) < min_len:
        raise ValueError(f"{name} has {len(t)} players but this metric needs at least {min_len}")
    return _finite(name, t)


def _two_vectors(a: Tensor, b: Tensor, min_len: int = 1,
                 names: tuple[str, str] = ("a", "b")) -> tuple[Tensor, Tensor]:
    """Two attributions of the same players, as float64 vectors (N,)."""
    a, b = _vector(names[0], a, min_len), _vector(names[1], b, min_len)
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} has {len(a)} players but {names[1]} has {len(b)}; both "
                         "must score the same players in the same order")
    return a, b


def _bool_mask(name: str, m: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A bool mask of the given shape, accepting bool or 0/1 numbers."""
    t = torch.as_tensor(m).detach().cpu()
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} to match the scores, got "
                         f"{tuple(t.shape)}")
    if t.dtype != torch.bool:
        if not ((t == 0) | (t == 1)).all():
            raise ValueError(f"{name} must be a bool mask (or 0/1), got values "
                             f"{t.unique().tolist()[:5]}; threshold it, e.g. {name} > 0.5")
        t = t == 1
    return t


def _ranks(t: Tensor) -> Tensor:
    """Ranks 1..N of a float64 vector, ties given their average rank."""
    return torch.from_numpy(rankdata(t.numpy(), method="average"))


# --- 1. agreement with exact Shapley values -------------------------------------------------

def pearson(a: Tensor, b: Tensor) -> float:
    """Pearson correlation of two attributions (N,); nan when either is constant."""
    a, b = _two_vectors(a, b, min_len=2)
    if a.max() == a.min() or b.max() == b.min():
        return math.nan                       # a constant vector has no direction to correlate
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b / (a.norm() * b.norm())).clamp(-1, 1))


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two attributions (N,), ties by average rank; nan if constant."""
    a, b = _two_vectors(a, b, min_len=2)
    return pearson(_ranks(a), _ranks(b))


def rel_l2(estimate: Tensor, reference: Tensor) -> float:
    """Relative L2 error ||estimate - reference|| / ||reference|| over all entries.

    Any shape works as long as both match (e.g. (N,) or (N, K)). A zero reference (a game in which
    no player matters) raises: the relative error is undefined there, report the absolute error
    `(estimate - reference).norm()` instead.
    """
    e = _finite("estimate", estimate)
    r = _finite("reference", reference)
    if e.shape != r.shape:
        raise ValueError(f"estimate has shape {tuple(e.shape)} but reference has "
                         f"{tuple(r.shape)}; compare the same players (and classes)")
    norm = r.norm()
    if norm == 0:
        raise ValueError("reference is all zeros, so the relative L2 error is undefined; report "
                         "the absolute error (estimate - reference).norm() for this example")
    return float((e - r).norm() / norm)


def topk_overlap(a: Tensor, b: Tensor, k: int) -> float:
    """|top-k(a) ∩ top-k(b)| / k: the share of a's k highest players that are among b's.

    Ranks raw values (pass `.abs()` to rank magnitudes); ties at the k-th place go to the lower
    player index (a stable sort), so the answer is deterministic.
    """
    a, b = _two_vectors(a, b)
    n = len(a)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in 1..{n} (the number of players), got {k!r}")
    top_a = set(a.sort(descending=True, stable=True).indices[:k].tolist())
    top_b = set(b.sort(descending=True, stable=True).indices[:k].tolist())
    return len(top_a & top_b) / k


# --- 2. ground truth from the data ----------------------------------------------------------

def auroc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve of `scores` (N,) for bool `labels` (N,), by Mann-Whitney U.

    AUROC = P(score of a random positive > score of a random negative), a tie counting half
    (average ranks). 1 is a perfect ranking, 0 an inverted one, 0.5 chance or constant scores.
    nan when the labels are all one class: there is no pair to rank, and the benchmark averages
    with nanmean so such examples drop out rather than count as chance.
    """
    s = _vector("scores", scores)
    y = _bool_mask("labels", labels, tuple(s.shape))
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    u = _ranks(s)[y].sum() - n_pos * (n_pos + 1) / 2        # wins of positives over negatives
    return float(u / (n_pos * n_neg))


def pointing_game(values: Tensor, relevant: Tensor) -> bool:
    """A hit when the top player is relevant: Zhang et al. 2016's pointing game, at player level.

    When several players tie for the top value, it is a hit only if all of them are relevant, so
    a constant map cannot score by luck. An example with no relevant player raises (Zhang et al.
    leave such images out): skip it.
    """
    v = _vector("values", values)
    rel = _bool_mask("relevant", relevant, tuple(v.shape))
    if not rel.any():
        raise ValueError("relevant marks no player, so the pointing game is undefined here; "
                         "skip examples without a relevant player")
    return bool(rel[v == v.max()].all())


def pair_auroc(pair_scores: Tensor, pair_truth: Tensor) -> float:
    """AUROC of interaction scores (N, N) for the truly interacting pairs, over pairs i < j.

    Uses the raw score, not its magnitude: the truth marks positive interactions (players that
    matter together), so a strongly negative score should rank low. Only the upper triangle is
    read; symmetrise asymmetric estimates first, e.g. (P + P.T) / 2. nan when every pair (or no
    pair) is marked.
    """
    s = torch.as_tensor(pair_scores)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        hint = ("; pick one class first, e.g. pairs[..., target]" if s.ndim == 3 else "")
        raise ValueError(f"pair_scores must be square (N, N), got shape {tuple(s.shape)}{hint}")
    n = s.shape[0]
    if n < 2:
        raise ValueError(f"pair_scores has {n} player(s); pairs need at least 2")
    s = _finite("pair_scores", s)
    truth = _bool_mask("pair_truth", pair_truth, (n, n))
    if not torch.equal(truth, truth.T):
        raise ValueError("pair_truth must be symmetric (pair {i, j} is unordered); use "
                         "pair_truth | pair_truth.T")
    i, j = torch.triu_indices(n, n, offset=1)
    return auroc(s[i, j], truth[i, j])


# --- 3. faithfulness without ground truth ---------------------------------------------------

def insertion_deletion(game: Game, values: Tensor, target: int, steps: int | None = None,
                       probabilities: bool | None = None) -> dict[str, float | Tensor]:
    """RISE's insertion and deletion curves (Petsiuk et al. 2018) over players, and their AUCs.

    Players are ordered by decreasing value (ties: lower index first, a stable sort). Insertion
    starts from no player and adds them in that order; deletion starts from all players and
    removes them in that order. The score is the target's softmax probability; the curves are
    sampled at `steps + 1` player counts (every count 0..N when `steps` is None) and evaluated in
    one batched game call; AUCs use the trapezoid rule over the fraction of players in [0, 1].
    A faithful ranking has a high insertion AUC and a low deletion AUC.

    Args:
        game: (C, N) bool coalitions -> (C, K) scores, e.g. a `shapley.game.MaskingGame`.
        probabilities: whether the game already returns probabilities. None follows a
            MaskingGame's `output` ("prob" or "logit") and otherwise assumes logits, which are
            turned into probabilities by a softmax over the K classes.

    Returns:
        insertion_auc, deletion_auc (floats); insertion_curve, deletion_curve and the player
        fractions they are sampled at (steps + 1,) float64.
    """
    v = _vector("values", values)
    n = len(v)
    n_game = getattr(game, "n_players", None)
    if n_game is not None and n_game != n:
        raise ValueError(f"values score {n} players but the game has {n_game}; explain the same "
                         "game the metric perturbs")
    target = _class_index(target)
    steps = n if steps is None else steps
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= n:
        raise ValueError(f"steps must be an integer in 1..{n} (the number of players) or None "
                         f"for every player, got {steps!r}")
    game_output = getattr(game, "output", None)
    if probabilities is None:
        probabilities = game_output == "prob"
    elif game_output in ("prob", "logit") and probabilities != (game_output == "prob"):
        raise ValueError(f"the game returns output={game_output!r} but probabilities="
                         f"{probabilities}; leave probabilities unset to follow the game")

    counts = torch.linspace(0, n, steps + 1, dtype=torch.float64).round().long()   # (S + 1,)
    order = v.sort(descending=True, stable=True).indices
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)                            # position of each player in order
    inserted = rank[None, :] < counts[:, None]               # (S + 1, N) the first counts present
    scores = call_game(game, torch.cat([inserted, ~inserted]))          # (2(S + 1), K) float64
    if not 0 <= target < scores.shape[1]:
        raise ValueError(f"target {target} is not a class of the game's {scores.shape[1]} "
                         "outputs")
    if probabilities:
        if scores.min() < -1e-6 or scores.max() > 1 + 1e-6:
            raise ValueError("probabilities=True but the game returned values outside [0, 1]; "
                             "if these are logits, pass probabilities=False")
        prob = scores[:, target]
    else:
        if scores.shape[1] == 1:
            raise ValueError("the game returns one logit, whose softmax is always 1; return "
                             "probabilities and pass probabilities=True")
        prob = scores.softmax(-1)[:, target]                                      # (2(S + 1),)
    insertion_curve, deletion_curve = prob.split(steps + 1)
    fractions = counts.double() / n
    return {
        "insertion_auc": float(torch.trapezoid(insertion_curve, fractions)),
        "deletion_auc": float(torch.trapezoid(deletion_curve, fractions)),
        "insertion_curve": insertion_curve,
        "deletion_curve": deletion_curve,
        "fractions": fractions,
    }


def _class_index(target: int | Tensor) -> int:
    """A class index given as an int or a one-element tensor."""
    if isinstance(target, Tensor) and target.numel() == 1 and not target.is_floating_point():
        return int(target)
    if isinstance(target, bool) or not isinstance(target, int):
        raise ValueError(f"target must be one class index (int), got {target!r}")
    return target


# --- 4. sanity ------------------------------------------------------------------------------

def cascading_randomization(model: nn.Module, explain_fn: ExplainFn, x: Tensor, target: int,
                            layers: list[str] | None = None,
                            seed: int = 0) -> list[dict[str, str | float]]:
    """Adebayo et al. 2018's cascading model randomisation: does the explanation follow the model?

    On a deep copy of the model (the original is untouched), parameters are randomised layer by
    layer from the output down, cumulatively, and the input re-explained after each step with
    `explain_fn(model_copy, x, target)` ((N,) values or a pixel map). Each step reports the
    similarity to the explanation of the intact copy: `spearman`, the rank correlation of
    absolute values (Adebayo et al.'s main measure), and `pearson`, the correlation of the
    signed values. A sane explainer's similarity falls towards 0; nan where a map turns constant.

    Each parameter is replaced by normal noise with the parameter's own standard deviation (its
    RMS when it is constant, e.g. LayerNorm weights; an all-zero parameter stays zero, having
    nothing to destroy), drawn from a torch.Generator seeded with `seed`. Buffers (BatchNorm
    statistics) are kept.

    Args:
        layers: module names (from `model.named_modules()`, "" for the model itself) in the order
            to randomise them; each step randomises the parameters under that module that earlier
            steps left. None: every module owning parameters, in reverse registration order
            (output first, for models that register layers in forward order).

    Returns:
        One dict per step, in order: layer (str), spearman, pearson (floats).
    """
    target = _class_index(target)
    work = copy.deepcopy(model)
    modules = dict(work.named_modules())
    if layers is None:
        layers = [name for name, m in modules.items()
                  if next(m.parameters(recurse=False), None) is not None][::-1]
    unknown = [name for name in layers if name not in modules]
    if unknown:
        raise ValueError(f"layers {unknown} are not modules of {type(model).__name__}; use names "
                         f"from model.named_modules(), e.g. {list(modules)[1:6]}")
    if not layers:
        raise ValueError(f"{type(model).__name__} has no parameters to randomise")

    reference = _explanation(explain_fn(work, x, target))
    generator = torch.Generator().manual_seed(seed)
    done: set[int] = set()
    results: list[dict[str, str | float]] = []
    for name in layers:
        params = [p for p in modules[name].parameters() if id(p) not in done]
        if not params:
            raise ValueError(f"layer {name!r} has no parameters left to randomise (none of its "
                             "own, or an earlier step took them); drop it from layers")
        with torch.no_grad():
            for p in params:
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float64)
                p.copy_((noise * _noise_scale(p)).to(p))
                done.add(id(p))
        explanation = _explanation(explain_fn(work, x, target))
        if explanation.shape != reference.shape:
            raise ValueError(f"explain_fn returned {tuple(explanation.shape)} after randomising "
                             f"{name!r} but {tuple(reference.shape)} before; it must return one "
                             "shape")
        results.append({"layer": name,
                        "spearman": spearman(explanation.abs(), reference.abs()),
                        "pearson": pearson(explanation, reference)})
    return results


def _explanation(e: Tensor) -> Tensor:
    """An explainer's output (N,) or map, flattened to float64 (N,)."""
    if not isinstance(e, Tensor):
        raise ValueError(f"explain_fn must return a tensor ((N,) values or a map), got "
                         f"{type(e).__name__}")
    return _finite("the explanation", e.flatten())


def _noise_scale(p: Tensor) -> float:
    """The size of a parameter's replacement noise: its std, else its RMS (constant params)."""
    q = p.detach().double()
    std = float(q.std()) if q.numel() > 1 else 0.0
    return std if std > 0 else float(q.pow(2).mean().sqrt())


# --- 5. cost --------------------------------------------------------------------------------

def forward_ratio(seconds: float, forward_seconds: float) -> float:
    """An explainer's cost in forward passes: its time over one forward pass of the model."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite time >= 0, got {seconds!r}")
    if not math.isfinite(forward_seconds) or forward_seconds <= 0:
        raise ValueError(f"forward_seconds must be a positive time (one forward pass), got "
                         f"{forward_seconds!r}; time the forward pass over several runs")
    return seconds / forward_seconds
