"""Every metric the benchmark reports, each with its definition and source.

Attributions are per-player tensors, `values (N,)` for one example; ground truth is a bool `(N,)`
mask of the relevant players, pair truth a symmetric bool `(N, N)` mask. Five families:

1. agreement with exact Shapley values: `pearson`, `spearman`, `rel_l2`, `topk_overlap`;
2. ground truth from the data: `auroc`, `pointing_game`, `pair_auroc`;
3. faithfulness without ground truth: `insertion_deletion` (RISE) over players, and Grad-CAM++'s
   `average_drop_increase` on inputs masked by a saliency map (`explanation_masked_input`,
   `masked_probabilities`), reported raw and after the equal-mass rescaling `equal_mass_rescale`
   (Domeniconi 2025, a reproduction of Shap-CAM by Zheng et al. 2022), which removes Average
   Drop's bias towards maps with more mass;
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
from scipy.optimize import brentq
from scipy.stats import rankdata
from torch import Tensor, nn

from shapley.exact import call_game
from shapley.game import make_baseline

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


def average_drop_increase(model_prob_full: Tensor,
                          model_prob_explained: Tensor) -> tuple[float, float]:
    """Average Drop and Increase in Confidence, in percent (Chattopadhyay et al. 2018, Grad-CAM++).

    With Y the target-class probability on each full input and O on the input masked by its
    explanation (see `explanation_masked_input`), over a batch (B,):
    Average Drop = mean(max(0, Y - O) / Y) * 100 (lower is better) and
    Increase in Confidence = mean(O > Y) * 100 (higher is better).
    Both favour maps with more mass (an all-ones map has Average Drop 0); compare maps after
    `equal_mass_rescale` too (Domeniconi 2025).
    """
    y = _finite("model_prob_full", model_prob_full)
    o = _finite("model_prob_explained", model_prob_explained)
    if y.ndim != 1 or y.shape != o.shape or len(y) == 0:
        raise ValueError(f"model_prob_full and model_prob_explained must be matching batches "
                         f"(B,), got shapes {tuple(y.shape)} and {tuple(o.shape)}")
    for name, p in (("model_prob_full", y), ("model_prob_explained", o)):
        if p.min() < 0 or p.max() > 1:
            raise ValueError(f"{name} must be probabilities in [0, 1]; apply softmax to logits "
                             "and take the target class")
    if (y <= 0).any():
        raise ValueError("model_prob_full has a zero probability, and Average Drop divides by "
                         "it; drop examples the model gives no chance to the target class")
    avg_drop = float(((y - o).clamp(min=0) / y).mean() * 100)
    increase = float((o > y).double().mean() * 100)
    return avg_drop, increase


def normalise_map(pixel_map: Tensor) -> Tensor:
    """A saliency map as a soft mask in [0, 1]: negatives clipped to 0, then divided by the max.

    A map with no positive value becomes all zeros (it keeps nothing of the input).
    """
    s = _finite("pixel_map", pixel_map).clamp(min=0)
    top = s.max()
    return s / top if top > 0 else s


def explanation_masked_input(x: Tensor, pixel_map: Tensor, baseline: str | Tensor, *,
                             normalise: bool = True) -> Tensor:
    """One input softly masked by its explanation: x * s + baseline * (1 - s), s the map in [0, 1].

    Grad-CAM++ and Shap-CAM (Zheng et al. 2022) mask "by point-wise multiplication of the image
    with the saliency map", which is `baseline="zeros"` here; Domeniconi 2025 notes the papers leave the
    map's scaling ambiguous. We fix it: s = normalise_map(pixel_map) (negatives clipped to 0,
    divided by the max), used as a soft mask towards the baseline. `baseline` is built by the
    masking game's `make_baseline` ("zeros", "mean", "blur" or a tensor), so with the game's
    baseline a zero in the map removes a pixel exactly as the game does. Pass
    `normalise=False` for a map already in [0, 1], e.g. after `equal_mass_rescale`.

    Args:
        x: one input (C, H, W) or (C, T, H, W).
        pixel_map: (H, W) or (T, H, W); from per-player values use `values[game.feature_mask]`.
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be one input (C, H, W) or (C, T, H, W), got shape "
                         f"{tuple(x.shape)}; index the batch, e.g. x[0]")
    s = torch.as_tensor(pixel_map)
    if tuple(s.shape) != tuple(x.shape[1:]):
        raise ValueError(f"pixel_map has shape {tuple(s.shape)} but the input's pixels are "
                         f"{tuple(x.shape[1:])}; upsample the map (F.interpolate) or turn player "
                         "values into a map with values[game.feature_mask]")
    if normalise:
        s = normalise_map(s)
    else:
        s = _finite("pixel_map", s)
        if s.min() < 0 or s.max() > 1:
            raise ValueError("with normalise=False the map must lie in [0, 1]; pass "
                             "normalise=True or use normalise_map first")
    s = s.to(x)[None]                                       # (1, H, W): one mask for all channels
    return x * s + make_baseline(x, baseline) * (1 - s)


def masked_probabilities(model: nn.Module, x: Tensor, pixel_maps: Tensor, targets: Tensor,
                         baseline: str | Tensor, *,
                         r: float | None = None) -> tuple[Tensor, Tensor]:
    """Y and O of `average_drop_increase`: the targets' probabilities on full and masked inputs.

    Each map is normalised to [0, 1] (`normalise_map`) and, when `r` is given, rescaled to mass
    `r * numel` with `equal_mass_rescale` before masking its input.

    Args:
        x: a batch of inputs (B, C, H, W) or (B, C, T, H, W).
        pixel_maps: one map per input (B, H, W) or (B, T, H, W).
        targets: class per input (B,).

    Returns:
        (Y, O), two (B,) float64 tensors of softmax probabilities.
    """
    targets = torch.as_tensor(targets).long().flatten()
    if x.ndim not in (4, 5) or len(targets) != len(x) or len(pixel_maps) != len(x):
        raise ValueError(f"need a batch x (B, C, ...), pixel_maps (B, ...) and targets (B,) of "
                         f"one size, got {tuple(x.shape)}, {tuple(pixel_maps.shape)} and "
                         f"{tuple(targets.shape)}")
    masks = [normalise_map(m) for m in pixel_maps]
    if r is not None:
        masks = [equal_mass_rescale(m, r) for m in masks]
    masked = torch.stack([explanation_masked_input(xi, m, baseline, normalise=False)
                          for xi, m in zip(x, masks, strict=True)])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            both = model(torch.cat([x, masked]).to(device)).double().softmax(-1).cpu()
    finally:
        model.train(was_training)
    if targets.min() < 0 or targets.max() >= both.shape[1]:
        raise ValueError(f"targets must be class indices in 0..{both.shape[1] - 1}, got "
                         f"{targets.tolist()[:10]}")
    prob = both[torch.arange(2 * len(x)), targets.repeat(2)]                 # (2B,)
    return prob[:len(x)], prob[len(x):]


def _unit_map(s: Tensor, r: float) -> Tensor:
    """A map with values in [0, 1] as float64, and a checked mass share r."""
    t = _finite("s", s)
    if t.numel() == 0 or t.min() < 0 or t.max() > 1:
        raise ValueError("s must be a non-empty map with values in [0, 1]; normalise it first "
                         "with normalise_map")
    if not isinstance(r, (int, float)) or not 0 < r <= 1:
        raise ValueError(f"r is the share of the map's maximum mass to keep, in (0, 1]; got {r!r}")
    return t


def equal_mass_exponent(s: Tensor, r: float = 0.3) -> float:
    """The exponent exp(alpha) > 0 with sum(s ** exp(alpha)) = r * s.numel() (Domeniconi 2025).

    sum(s ** p) falls from the number of positive entries (p -> 0) to the number of ones
    (p -> inf), so a solution exists iff #(s == 1) < r * numel < #(s > 0); otherwise this raises
    (`equal_mass_rescale` has fallbacks). Solved for alpha = log p by Brent's method.
    """
    flat = _unit_map(s, r).flatten()
    target = r * flat.numel()
    n_one, n_pos = int((flat == 1).sum()), int((flat > 0).sum())
    if not n_one < target < n_pos:
        raise ValueError(f"no exponent gives this map mass {target:g}: its mass lies between "
                         f"#(s == 1) = {n_one} and #(s > 0) = {n_pos}; choose r in "
                         f"({n_one / flat.numel():.3g}, {n_pos / flat.numel():.3g}) or use "
                         "equal_mass_rescale, which falls back")
    logs = flat[(flat > 0) & (flat < 1)].log()            # the only entries the exponent moves

    def excess(alpha: float) -> float:                     # decreasing in alpha
        p = math.exp(min(alpha, 709.0))                    # 709: the largest exp in float64
        return n_one + float(torch.exp(p * logs).sum()) - target

    lo, hi = -1.0, 1.0
    while excess(lo) <= 0:                                 # p -> 0 leaves mass n_pos > target
        lo *= 2
    while excess(hi) >= 0:                                 # p -> inf leaves mass n_one < target
        hi *= 2
    alpha = brentq(excess, lo, hi, xtol=1e-14, rtol=1e-15, maxiter=500)
    return math.exp(alpha)


def equal_mass_rescale(s: Tensor, r: float = 0.3) -> Tensor:
    """The equal-mass map s ** exp(alpha) of Domeniconi 2025, with sum r * s.numel(), order kept.

    Average Drop favours maps with more mass (all ones scores a perfect 0), so before comparing
    two explainers both maps get the same mass while their maxima stay at 1. Where no exponent
    reaches the mass, the closest fair map is returned instead:
    - too many entries already at 1 (e.g. the all-ones map): the power cannot lower them, so the
      map is scaled linearly, s * r * numel / sum(s): exact mass, order kept, max below 1;
    - too few positive entries (#(s > 0) <= r * numel): the exponent's limit at 0, the map's
      support (s > 0) as 0/1, whose mass #(s > 0) stays below the target (a sparse map keeps no
      advantage from this);
    - an all-zero map has no mass to rescale and raises.
    The result has the dtype of `s`.
    """
    t = _unit_map(s, r)
    target = r * t.numel()
    n_one, n_pos = int((t == 1).sum()), int((t > 0).sum())
    if n_pos == 0:
        raise ValueError("s is all zeros: no rescaling gives it mass; count the example as an "
                         "empty explanation or skip it")
    if target >= n_pos:
        out = (t > 0).double()
    elif target <= n_one:
        out = t * (target / t.sum())
    else:
        out = t ** equal_mass_exponent(t, r)
    dtype = s.dtype if isinstance(s, Tensor) and s.is_floating_point() else torch.float64
    return out.to(dtype)


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
