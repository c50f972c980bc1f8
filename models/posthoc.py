"""Post-hoc LearnedSHAP: a Shapley explainer network for a frozen classifier.

The setting of ViT-Shapley (Covert, Kim & Lee 2023): the classifier is given and never changes,
so its masking game keeps whatever higher-order terms it has. The explainer is a copy of the
classifier's own ViT (its features are a good start) with a Harsanyi head on the patch tokens,
fine-tuned on the frozen model's game alone:

- coalitions S from the Shapley kernel (sizes 1..n-1, p(s) ~ (n-1) / (s (n-s)), a uniform
  subset of that size), each with its complement (paired sampling cuts the variance);
- the empty end exact: with every patch dropped the frozen ViT sees only its class token, so
  v(empty) is one constant per class, computed once before training;
- the full end exact: the additive efficient normalisation shifts every unary term by
  (v(N) - v(empty) - sum of the head's terms) / n, so that the decomposition's full coalition
  is the frozen model's prediction v(N) (one forward pass of the model, at explanation time too).

The loss is the mean squared gap between g(S) = v(empty) + sum_{i in S} c_i + sum_{i<j in S} c_ij
and the frozen model's v(S). With free unary terms its least-squares optimum, under the kernel
with both ends exact, gives phi_i = c_i + 1/2 sum_j c_ij equal to the exact Shapley values of
the frozen game whatever its higher orders (Charnes et al. 1988; Lundberg & Lee 2017); the pair
terms are then its order-2 Faith-Shap indices (Tsai, Yeh & Ravikumar 2023). What a network
reaches in minutes of CPU training is the experiment.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.harsanyi import HarsanyiHead, HeadConfig, HeadOutput
from models.kinds import Kind, ModelSpec, frozen_model, head_options, register_kind
from models.train import LossFn
from shapley.sampling import paired_kernel_coalitions


class TokenShapleyHead(nn.Module):
    """ViT-Shapley's explainer head (Covert, Kim & Lee 2023): one more attention block over the
    patch tokens, then an MLP per token with one value per class. Unary terms only."""

    def __init__(self, dim: int, n_classes: int, heads: int = 2):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.block = Block(dim, heads, mlp_ratio=2.0)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, n_classes))

    def forward(self, tokens: Tensor) -> HeadOutput:                            # (B, N, D)
        unary = self.mlp(self.norm(self.block(tokens)))                          # (B, N, K)
        zero = unary.new_zeros(unary.shape[-1])
        return HeadOutput(unary.sum(1), unary, unary, None, zero)


class AttendedHarsanyiHead(nn.Module):
    """ViT-Shapley's extra attention block and norm, then the Harsanyi head (unary + pairs):
    its explainer architecture with our pair terms on top."""

    def __init__(self, dim: int, heads: int, config: HeadConfig):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.block = Block(dim, heads, mlp_ratio=2.0)
        self.norm = nn.LayerNorm(dim)
        self.harsanyi = HarsanyiHead(config)

    def forward(self, tokens: Tensor) -> HeadOutput:                            # (B, N, D)
        return self.harsanyi(self.norm(self.block(tokens)))


class ReadoutHarsanyiHead(nn.Module):
    """ViT-Shapley's whole head (attention block, norm, an MLP per token) writing unary terms,
    and the Harsanyi head's unary and pair terms on the same tokens beside it: ViT-Shapley's
    explainer with our pair terms on top. (`AttendedHarsanyiHead` keeps only its block, and
    reads the unary terms linearly.)"""

    def __init__(self, dim: int, heads: int, config: HeadConfig):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.block = Block(dim, heads, mlp_ratio=2.0)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, config.n_classes))
        self.harsanyi = HarsanyiHead(config)

    def forward(self, tokens: Tensor) -> HeadOutput:                            # (B, N, D)
        t = self.norm(self.block(tokens))
        out = self.harsanyi(t)
        readout = self.mlp(t)                                                    # (B, N, K)
        return HeadOutput(out.logits + readout.sum(1), out.shapley + readout,
                          out.unary + readout, out.pair, out.bias)


class PlusPairsHead(nn.Module):
    """ViT-Shapley's head for phi, as it is, and the Harsanyi head's pair terms beside it on the
    same tokens, detached: the pair terms learn what phi leaves of the game (`phi_first_loss`)
    without moving phi or the network that computes it. phi is then trained exactly as
    ViT-Shapley's, and the pair terms cost no frozen-model evaluation more. (The Harsanyi
    head's unary weights are not read, so they get no gradient.)"""

    def __init__(self, dim: int, heads: int, config: HeadConfig):
        super().__init__()
        self.vit_shapley = TokenShapleyHead(dim, config.n_classes, heads)
        self.pairs = HarsanyiHead(config)

    def forward(self, tokens: Tensor) -> HeadOutput:                            # (B, N, D)
        head = self.vit_shapley
        t = head.norm(head.block(tokens))
        phi = head.mlp(t)                                                        # (B, N, K)
        pair = self.pairs(t.detach()).pair                                       # (B, N, N, K)
        zero = phi.new_zeros(phi.shape[-1])
        return HeadOutput(phi.sum(1), phi, phi - pair.sum(2) / 2, pair, zero)


HEADS = ("harsanyi", "vit_shapley", "vit_shapley_pairs")
READOUT_HEAD = "vit_shapley_readout_pairs"     # ReadoutHarsanyiHead (ReadoutPostHocShap)
PLUS_PAIRS_HEAD = "vit_shapley_plus_pairs"     # PlusPairsHead (PlusPairsPostHocShap)
PAIR_HEADS = ("harsanyi", "vit_shapley_pairs", READOUT_HEAD,   # read by "learned_shap_posthoc"
              PLUS_PAIRS_HEAD)
ALL_HEADS = (*HEADS, READOUT_HEAD, PLUS_PAIRS_HEAD)


class PostHocShap(nn.Module):
    """An explainer for a frozen ViT: its copied backbone and a head on the patch tokens.

    `head="harsanyi"`: post-hoc LearnedSHAP, the Harsanyi head (unary + pairs, or unary only with
    `pairwise=False`); `head="vit_shapley"`: ViT-Shapley's head (`TokenShapleyHead`);
    `head="vit_shapley_pairs"`: ViT-Shapley's attention block with the Harsanyi head on top
    (`AttendedHarsanyiHead`). `extra_blocks` more transformer blocks of the backbone's width
    between the copied backbone and the head: an explainer deeper than the classifier. All are
    trained by `posthoc_loss`, the same objectives at the same cost.
    """

    head_tokens = "patches"

    def __init__(self, model: nn.Module, rank: int = 8, pairwise: bool = True,
                 head: str = "harsanyi", extra_blocks: int = 0):
        super().__init__()
        if not all(hasattr(model, a) for a in ("n_players", "encode", "forward_features")):
            raise TypeError(f"post-hoc LearnedSHAP explains ViTs that drop tokens "
                            f"(models.vit.ViT), not {type(model).__name__}")
        if head not in HEADS:
            raise ValueError(f"unknown explainer head {head!r}; choose one of {HEADS}")
        if extra_blocks < 0:
            raise ValueError(f"extra_blocks must be >= 0, got {extra_blocks}")
        from timm.models.vision_transformer import Block

        self.kind = head
        self.backbone = copy.deepcopy(model)             # models.vit.ViT, fine-tuned
        self.backbone.requires_grad_(True)               # even if the model's are frozen
        heads = getattr(model.config, "heads", 2)
        self.extra = nn.Sequential(*[Block(model.dim, heads, mlp_ratio=2.0)
                                     for _ in range(extra_blocks)])
        config = HeadConfig(model.n_players, model.dim, model.n_classes, rank, pairwise)
        if head == "harsanyi":
            self.head = HarsanyiHead(config)
        elif head == "vit_shapley_pairs":
            self.head = AttendedHarsanyiHead(model.dim, heads, config)
        else:
            self.head = TokenShapleyHead(model.dim, model.n_classes, heads)
        self.register_buffer("v_empty", torch.zeros(model.n_classes))   # set by `calibrate`
        # the explained model's weights, summarised: explaining another model is refused
        self.register_buffer("fitted_to", weight_signature(model))

    n_players = property(lambda self: self.backbone.n_players)
    n_classes = property(lambda self: self.backbone.n_classes)
    patch_size = property(lambda self: self.backbone.patch_size)
    image_size = property(lambda self: self.backbone.image_size)
    grid = property(lambda self: self.backbone.grid)

    @torch.no_grad()
    def calibrate(self, model: nn.Module, x: Tensor) -> Tensor:
        """Store the frozen model's v(empty) (K,): its output with every patch dropped."""
        keep = torch.zeros(1, self.n_players, dtype=torch.bool, device=x.device)
        was_training = model.training
        model.eval()
        try:
            self.v_empty.copy_(model(x[:1], keep)[0])
        finally:
            model.train(was_training)
        return self.v_empty

    def decompose(self, x: Tensor, v_full: Tensor) -> HeadOutput:
        """The head's terms made efficient for the frozen game: phi sums to v(N) - v(empty).

        x (B, C, H, W); v_full (B, K) the frozen model's logits on x. The returned `bias` is
        v(empty), and `restrict(keep)` is the decomposition's value of any coalition.
        """
        tokens = self.backbone.forward_features(x)[:, self.backbone.n_prefix:]   # (B, N, D)
        return efficient(self.head(self.extra(tokens)), v_full, self.v_empty)


class ReadoutPostHocShap(PostHocShap):
    """`PostHocShap` with `ReadoutHarsanyiHead`: ViT-Shapley's head (its block and MLP readout)
    and our pair terms, `head="vit_shapley_readout_pairs"`. A subclass rather than a fourth head
    of `PostHocShap`, so that the other explainers' checkpoints keep their keys."""

    def __init__(self, model: nn.Module, rank: int = 8, pairwise: bool = True,
                 extra_blocks: int = 0):
        super().__init__(model, rank, pairwise, "harsanyi", extra_blocks)
        self.kind = READOUT_HEAD
        config = HeadConfig(model.n_players, model.dim, model.n_classes, rank, pairwise)
        self.head = ReadoutHarsanyiHead(model.dim, getattr(model.config, "heads", 2), config)


class PlusPairsPostHocShap(PostHocShap):
    """`PostHocShap` with `PlusPairsHead`: ViT-Shapley's explainer with our pair terms beside it,
    `head="vit_shapley_plus_pairs"`, trained with `phi_first_loss` (a subclass for the reason
    `ReadoutPostHocShap` is one)."""

    def __init__(self, model: nn.Module, rank: int = 8, extra_blocks: int = 0):
        super().__init__(model, rank, True, "harsanyi", extra_blocks)
        self.kind = PLUS_PAIRS_HEAD
        config = HeadConfig(model.n_players, model.dim, model.n_classes, rank, True)
        self.head = PlusPairsHead(model.dim, getattr(model.config, "heads", 2), config)


def posthoc_explainer(model: nn.Module, head: str = "vit_shapley", rank: int = 8,
                      pairwise: bool = True, extra_blocks: int = 0) -> PostHocShap:
    """An untrained explainer of `model` with `head`: one of `HEADS` or `READOUT_HEAD`."""
    if head == READOUT_HEAD:
        return ReadoutPostHocShap(model, rank, pairwise, extra_blocks)
    if head not in HEADS:
        raise ValueError(f"unknown explainer head {head!r}; choose one of "
                         f"{(*HEADS, READOUT_HEAD)}")
    return PostHocShap(model, rank=rank, pairwise=pairwise, head=head, extra_blocks=extra_blocks)


def new_explainer(model: nn.Module, head: str = "vit_shapley", rank: int = 8,
                  pairwise: bool = True, extra_blocks: int = 0) -> PostHocShap:
    """An untrained explainer of `model` with any head: `ALL_HEADS`. (`posthoc_explainer`, which
    builds the others, keys the checkpoints of the studies' explainers, so it stays as it is.)"""
    if head not in ALL_HEADS:
        raise ValueError(f"unknown explainer head {head!r}; choose one of {ALL_HEADS}")
    if head == PLUS_PAIRS_HEAD:
        if not pairwise:
            raise ValueError(f"the {head} head is ViT-Shapley's with pair terms; for no pair "
                             "terms fit head='vit_shapley'")
        return PlusPairsPostHocShap(model, rank, extra_blocks)
    return posthoc_explainer(model, head, rank, pairwise, extra_blocks)


@torch.no_grad()
def weight_signature(model: nn.Module) -> Tensor:
    """Each parameter tensor's sum and sum of squares (P, 2), float64: equal for the same weights,
    different after any training step (cheaper than hashing, and device independent)."""
    rows = [torch.stack([p.double().sum(), p.double().square().sum()]).cpu()
            for p in model.parameters()]
    return torch.stack(rows) if rows else torch.zeros(0, 2, dtype=torch.float64)


def fitted_to(explainer: nn.Module, model: nn.Module) -> bool:
    """Whether `explainer` was fitted to these very weights of `model`."""
    recorded = explainer.fitted_to.cpu()
    now = weight_signature(model)
    return recorded.shape == now.shape and torch.allclose(now, recorded, rtol=1e-6, atol=1e-9)


def efficient(out: HeadOutput, v_full: Tensor, v_empty: Tensor) -> HeadOutput:
    """The additive efficient normalisation: every unary term shifted by the same share of the
    gap, so that phi sums to v(N) - v(empty); v_full (B, K), v_empty (K,) or (B, K) is the bias."""
    total = out.unary.sum(1) + (out.pair.sum((1, 2)) / 2 if out.pair is not None else 0)
    shift = (v_full - v_empty - total) / out.unary.shape[1]                     # (B, K)
    unary = out.unary + shift[:, None, :]
    shapley = unary + (out.pair.sum(2) / 2 if out.pair is not None else 0)
    return HeadOutput(v_full, shapley, unary, out.pair, v_empty)


def coalition_values(out: HeadOutput, keep: Tensor) -> Tensor:
    """The decomposition's g(S) for M coalitions of each of B inputs: keep (B, M, N) -> (B, M, K)."""
    k = keep.to(out.unary.dtype)
    g = out.bias + torch.einsum("bmn,bnk->bmk", k, out.unary)
    if out.pair is not None:
        partners = torch.einsum("bmi,bijk->bmjk", k, out.pair)                  # (B, M, N, K)
        g = g + (partners * k[..., None]).sum(2) / 2
    return g


@torch.no_grad()
def frozen_values(model: nn.Module, x: Tensor, keep: Tensor) -> Tensor:
    """The frozen ViT's v(S) for M coalitions of each input: x (B, ...), keep (B, M, N) -> (B, M, K).

    Each image is embedded once; coalitions of one size run together through the ViT's gathered
    path (shorter sequences, no attention mask), as in the masking game.
    """
    B, M, n = keep.shape
    seq = model.embed(x)                                                        # (B, P + N, D)
    flat = keep.reshape(B * M, n)
    owner = torch.arange(B, device=x.device).repeat_interleave(M)
    sizes = flat.sum(1)
    out = None
    for size in sizes.unique().tolist():
        rows = (sizes == size).nonzero().squeeze(1)
        tokens = model.encode(seq[owner[rows]], flat[rows])
        logits = model.forward_head(tokens, flat[rows])
        if out is None:
            out = logits.new_empty(B * M, logits.shape[1])
        out[rows] = logits
    return out.view(B, M, -1)


OBJECTIVES = ("kernel", "permutation", "mix")


def antithetic_prefixes(n: int, groups: int, pairs: int, generator: torch.Generator) -> Tensor:
    """The coalitions an antithetic-permutation estimate evaluates: for each of `groups` inputs,
    `pairs` random orders and their reverses, each as its n - 1 proper non-empty prefixes:
    (groups, pairs * 2 * (n - 1), n) bool, prefix t of order o at row o * (n - 1) + t - 1.
    (`shapley.sampling.permutation_shapley` estimates one game at a time; here the coalitions of
    a whole batch go through `frozen_values`' gathered path at once.)"""
    order = torch.argsort(torch.rand(groups, pairs, n, generator=generator), -1)   # (G, P, n)
    orders = torch.cat([order, order.flip(-1)], 1)                              # (G, 2P, n)
    rank = torch.argsort(orders, -1)                                            # (G, 2P, n)
    t = torch.arange(1, n)                                                      # (n - 1,)
    keep = rank[:, :, None, :] < t[None, None, :, None]                         # (G, 2P, n-1, n)
    return keep.flatten(1, 2)


def permutation_targets(keep: Tensor, v_keep: Tensor, v_full: Tensor, v_empty: Tensor) -> Tensor:
    """Unbiased Shapley estimates (B, n, K) from the values of `antithetic_prefixes`: each order's
    marginal contributions, averaged over the orders. keep (B, O * (n - 1), n), v_keep
    (B, O * (n - 1), K), v_full (B, K), v_empty (K,)."""
    B, rows, n = keep.shape
    orders = rows // (n - 1)
    K = v_keep.shape[-1]
    chain = v_keep.view(B, orders, n - 1, K)
    chain = torch.cat([v_empty.expand(B, orders, 1, K), chain,
                       v_full[:, None, None, :].expand(B, orders, 1, K)], 2)  # (B, O, n + 1, K)
    gains = chain.diff(dim=2)                                              # (B, O, n, K) step t
    prefix = keep.view(B, orders, n - 1, n)
    sizes = torch.cat([prefix.new_zeros(B, orders, 1, n), prefix,
                       prefix.new_ones(B, orders, 1, n)], 2).to(v_keep.dtype)
    joins = sizes.diff(dim=2)                                              # (B, O, n, n) one-hot
    return torch.einsum("botk,botn->bnk", gains, joins) / orders


def permutation_pairs(n: int, coalitions: int) -> int:
    """Antithetic pairs of orders an image gets for about `coalitions` evaluations (at least 1)."""
    return max(1, round(coalitions / (2 * (n - 1))))


def evals_per_image(n: int, coalitions: int, objective: str) -> int:
    """The frozen model's evaluations `posthoc_loss` spends on one image: v(N), then the kernel
    coalitions and / or the antithetic orders' prefixes."""
    evals = 1
    if objective in ("kernel", "mix"):
        evals += coalitions
    if objective in ("permutation", "mix"):
        evals += permutation_pairs(n, coalitions) * 2 * (n - 1)
    return evals


def posthoc_loss(model: nn.Module, coalitions: int = 32, counter: list[int] | None = None,
                 objective: str = "kernel"):
    """The training loss of a PostHocShap explainer on the frozen `model`'s game.

    `objective`:
    - "kernel": the decomposition fitted to the frozen game on `coalitions` coalitions per image
      (half drawn from the Shapley kernel, half their complements), both ends exact. With free
      terms its optimum is phi = the exact Shapley values and pairs = order-2 Faith-Shap.
    - "permutation": regression of phi onto unbiased noisy targets (Stochastic Amortization,
      Covert et al. 2024): antithetic pairs of random orders, about `coalitions` evaluations an
      image (at least one pair, 2 (n - 1) evaluations); the optimum is the Shapley values, the
      pair terms are left free (only phi is fitted).
    - "mix": both on the same images, the regression term scaled by n (phi is about 1/n of v).
    `counter`, if given, accumulates the frozen model's evaluations ([n]): the training cost
    that ViT-Shapley is compared at.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")
    if coalitions < 2 or coalitions % 2:
        raise ValueError(f"coalitions must be an even number >= 2 (pairs), got {coalitions}")
    model.eval()                          # the frozen model runs under no_grad, never trained

    def loss_fn(explainer: nn.Module, batch: dict[str, Tensor], gen: torch.Generator):
        x = batch["x"]
        B, n = len(x), explainer.n_players
        with torch.no_grad():
            v_full = model(x)                                                   # (B, K)
        loss = 0.0
        out = explainer.decompose(x, v_full)
        if objective in ("kernel", "mix"):
            keep = paired_kernel_coalitions(n, B, coalitions // 2, gen).to(x.device)  # (B, M, N)
            v_keep = frozen_values(model, x, keep)                              # (B, M, K)
            loss = loss + F.mse_loss(coalition_values(out, keep), v_keep)
        if objective in ("permutation", "mix"):
            keep = antithetic_prefixes(n, B, permutation_pairs(n, coalitions), gen).to(x.device)
            v_keep = frozen_values(model, x, keep)                              # (B, R, K)
            target = permutation_targets(keep, v_keep, v_full, explainer.v_empty)
            weight = n if objective == "mix" else 1.0
            loss = loss + weight * F.mse_loss(out.shapley, target)
        if counter is not None:
            counter[0] += B * evals_per_image(n, coalitions, objective)
        return loss, v_full

    return loss_fn


PHI_FIRST = "phi_first"          # `phi_first_loss`: the objective with phi fitted on its own


def phi_first_loss(model: nn.Module, coalitions: int = 32, counter: list[int] | None = None):
    """The kernel objective in two parts, on the same coalitions and frozen-model evaluations:

    1. phi alone as an additive game, v(empty) + sum_{i in S} phi_i against v(S): ViT-Shapley's
       loss, whose optimum under the Shapley kernel with both ends exact is the Shapley values;
    2. the pair terms against what phi leaves: g(S) with phi held fixed (unary = phi - 1/2 the
       pair sums), whose optimum given the Shapley values is the order-2 Faith-Shap index.

    The joint fit ("kernel" in `posthoc_loss`) has the same optimum, and in expectation its pair
    terms do not move phi either (what wrong pairs leave of a game has zero Shapley values). On
    the few coalitions of a step they do: phi's gradient there carries the pairs' error. Here it
    carries only what phi leaves, as ViT-Shapley's does. The cost is the kernel objective's
    (`evals_per_image(n, coalitions, "kernel")`)."""
    if coalitions < 2 or coalitions % 2:
        raise ValueError(f"coalitions must be an even number >= 2 (pairs), got {coalitions}")
    model.eval()

    def loss_fn(explainer: nn.Module, batch: dict[str, Tensor], gen: torch.Generator):
        x = batch["x"]
        B, n = len(x), explainer.n_players
        with torch.no_grad():
            v_full = model(x)                                                   # (B, K)
        out = explainer.decompose(x, v_full)
        keep = paired_kernel_coalitions(n, B, coalitions // 2, gen).to(x.device)  # (B, M, N)
        loss = phi_first_error(out, keep, frozen_values(model, x, keep))
        if counter is not None:
            counter[0] += B * evals_per_image(n, coalitions, "kernel")
        return loss, v_full

    return loss_fn


def phi_first_error(out: HeadOutput, keep: Tensor, v_keep: Tensor,
                    weight: Tensor | None = None) -> Tensor:
    """`phi_first_loss` on given coalitions keep (B, M, N) with the frozen model's values v_keep
    (B, M, K): the mean squared gap over them, or its expectation if `weight` (M,) gives each
    coalition's probability."""
    def gap(g: Tensor) -> Tensor:                                               # (B, M, K)
        per_coalition = (g - v_keep).square().mean((0, 2))                      # (M,)
        return per_coalition.mean() if weight is None else (weight * per_coalition).sum()

    additive = HeadOutput(out.logits, out.shapley, out.shapley, None, out.bias)
    loss = gap(coalition_values(additive, keep))
    if out.pair is not None:
        phi = out.shapley.detach()                                              # (B, N, K)
        held = HeadOutput(out.logits, phi, phi - out.pair.sum(2) / 2, out.pair, out.bias)
        loss = loss + gap(coalition_values(held, keep))
    return loss


def objective_loss(model: nn.Module, coalitions: int, counter: list[int] | None,
                   objective: str) -> LossFn:
    """The loss of `objective`: one of `OBJECTIVES` (`posthoc_loss`) or `PHI_FIRST`."""
    if objective == PHI_FIRST:
        return phi_first_loss(model, coalitions, counter)
    return posthoc_loss(model, coalitions, counter, objective)


def objective_evals(n: int, coalitions: int, objective: str) -> int:
    """The frozen model's evaluations an image costs under `objective` (`evals_per_image`;
    `PHI_FIRST` costs what "kernel" does)."""
    return evals_per_image(n, coalitions, "kernel" if objective == PHI_FIRST else objective)


def fit_posthoc(model: nn.Module, loader, *, budget: int | None = None,
                epochs: int | None = None, head: str = "vit_shapley", rank: int = 8,
                pairwise: bool = True, extra_blocks: int = 0, coalitions: int = 32,
                objective: str = "kernel", lr: float = 3e-3, clip_norm: float | None = None,
                seed: int = 0, checkpoint: str | Path | None = None,
                progress: bool = True) -> PostHocShap:
    """Fit a post-hoc explainer to a ViT you already trained, which stays frozen.

    model: a `models.vit.ViT`, or a timm VisionTransformer (wrap it once with `models.vit.as_vit`
    and explain that wrapped model). loader: its training images, batches of (x, y) or
    {"x", "y"} (the labels are not used). budget: the frozen model's evaluations to spend, each
    image costing `evals_per_image` an epoch (`coalitions` + 1 for the kernel objective), so
    budget / (images x that) epochs, rounded, at least one; or give `epochs` instead.

    The explainer (`PostHocShap`), by `head`:
    - "vit_shapley": ViT-Shapley's head, unary only; the default, the most exact phi at every
      budget `studies.posthoc_budget` measured;
    - "harsanyi": post-hoc LearnedSHAP, unary terms and, with `pairwise`, rank-`rank` pairs;
    - "vit_shapley_pairs": ViT-Shapley's attention block, then our unary and pair terms;
    - "vit_shapley_readout_pairs": its whole head (block and MLP readout) with our unary and pair
      terms beside it (`ReadoutPostHocShap`);
    - "vit_shapley_plus_pairs": ViT-Shapley's explainer as it is, our pair terms beside it on its
      detached tokens (`PlusPairsPostHocShap`; objective "phi_first"): its phi, with pairs.
    `extra_blocks` makes it deeper than the classifier. Trained by `posthoc_loss` with
    `objective` ("kernel": paired Shapley-kernel coalitions, both ends exact; "permutation":
    regression onto antithetic-permutation estimates; "mix": both) or `phi_first_loss`
    ("phi_first": the kernel objective with phi fitted alone and the pairs to what it leaves),
    AdamW with a cosine schedule (`models.train.train`), gradients clipped to `clip_norm` if
    given.

    checkpoint: a file to save the explainer to; a second call with the same arguments loads it
    instead of training, and a call killed mid-training resumes from `<checkpoint>.state.pt`.
    Then `explain("vit_shapley", model, x, target, explainer=explainer)` ("learned_shap_posthoc"
    for the heads with pair terms) gives the model's Shapley values in one explainer forward.
    """
    from models.train import as_batch_dict, load_checkpoint, save_checkpoint, seeded, train
    from models.vit import VisionTransformer

    if isinstance(model, VisionTransformer):
        raise TypeError("wrap the timm model first and explain the wrapped one: "
                        "model = models.vit.as_vit(timm_model); fit_posthoc(model, loader, ...)")
    if objective not in (*OBJECTIVES, PHI_FIRST):
        raise ValueError(f"unknown objective {objective!r}; choose one of "
                         f"{(*OBJECTIVES, PHI_FIRST)}")
    if head == PLUS_PAIRS_HEAD and objective != PHI_FIRST:
        raise ValueError(f"the {head} head learns its pair terms from what phi leaves: fit it "
                         f"with objective={PHI_FIRST!r}")
    if (budget is None) == (epochs is None):
        raise ValueError("give either budget= (frozen-model evaluations) or epochs=, not "
                         f"{'both' if budget is not None else 'neither'}")
    with seeded(seed):                                  # the head's initialisation
        explainer = new_explainer(model, head, rank, pairwise, extra_blocks)
    if epochs is None:
        images = len(loader.dataset) if hasattr(loader, "dataset") else None
        if not images:
            raise ValueError("budget= needs a loader over a sized dataset (len(loader.dataset)); "
                             "give epochs= instead")
        per_epoch = images * objective_evals(model.n_players, coalitions, objective)
        if budget < per_epoch / 2:
            raise ValueError(f"a budget of {budget:,} evaluations is less than half an epoch "
                             f"({per_epoch:,}: {images:,} images, "
                             f"{per_epoch // images} evaluations each); raise it or pass fewer "
                             "images")
        epochs = max(1, math.floor(budget / per_epoch + 0.5))
    run = {"head": head, "rank": rank, "pairwise": pairwise, "extra_blocks": extra_blocks,
           "coalitions": coalitions,
           "objective": objective, "lr": lr,
           "clip_norm": clip_norm, "seed": seed, "epochs": epochs,
           "n_players": model.n_players, "n_classes": model.n_classes}
    path = None if checkpoint is None else Path(checkpoint)
    if path is not None and path.exists():
        saved = load_checkpoint(path)["meta"]
        if saved.get("run") != run:
            raise ValueError(f"{path} holds an explainer fitted with other settings "
                             f"({saved.get('run')}); pass another checkpoint path or delete it")
        load_checkpoint(path, explainer)
        if not fitted_to(explainer, model):
            raise ValueError(f"{path} holds an explainer fitted to other weights than this "
                             "model's; pass another checkpoint path or delete it")
        return explainer.eval()
    device = next(model.parameters()).device            # the explainer trains beside the model
    explainer.to(device).calibrate(model, as_batch_dict(next(iter(loader)), device)["x"])
    counter = [0]
    start = time.perf_counter()
    state = None if path is None else path.with_name(path.name + ".state.pt")
    history = train(explainer, loader, epochs=epochs, lr=lr, seed=seed,
                    loss_fn=objective_loss(model, coalitions, counter, objective), device=device,
                    progress=progress, state_path=state, counter=counter, clip_norm=clip_norm)
    if path is not None:
        save_checkpoint(path, explainer, {"run": run, "history": history,
                                          "frozen_evals": counter[0],
                                          "train_seconds": time.perf_counter() - start})
    return explainer.eval()


# --- the zoo's kinds (models.kinds): how a spec builds this module's models, and their loss ---
def posthoc_vit(spec: ModelSpec) -> nn.Module:
    kind = spec.head.get("kind", "harsanyi")
    return PostHocShap(frozen_model(spec), head=kind,
                       extra_blocks=spec.head.get("extra_blocks", 0),
                       **({} if kind == "vit_shapley" else head_options(spec)))


def posthoc_vit_loss(spec: ModelSpec, steps_per_epoch: int, counter: list[int] | None) -> LossFn:
    return posthoc_loss(frozen_model(spec), spec.head.get("coalitions", 32), counter,
                        spec.head.get("objective", "kernel"))


def calibrate_posthoc(spec: ModelSpec, model: nn.Module, train_loader) -> None:
    """A post-hoc head's output scale, set from the frozen model on the first training batch."""
    model.calibrate(frozen_model(spec), next(iter(train_loader))["x"])


def posthoc_vit_readout(spec: ModelSpec) -> nn.Module:
    return ReadoutPostHocShap(frozen_model(spec), extra_blocks=spec.head.get("extra_blocks", 0),
                              **head_options(spec))


def posthoc_vit_phi_first(spec: ModelSpec) -> nn.Module:
    return posthoc_explainer(frozen_model(spec), spec.head.get("kind", "harsanyi"),
                             extra_blocks=spec.head.get("extra_blocks", 0), **head_options(spec))


def posthoc_vit_phi_first_loss(spec: ModelSpec, steps_per_epoch: int,
                               counter: list[int] | None) -> LossFn:
    return phi_first_loss(frozen_model(spec), spec.head.get("coalitions", 32), counter)


def posthoc_vit_plus_pairs(spec: ModelSpec) -> nn.Module:
    return PlusPairsPostHocShap(frozen_model(spec), spec.head.get("rank", 8),
                                spec.head.get("extra_blocks", 0))


def spec_kind(head: str, objective: str = "kernel") -> str:
    """The zoo kind of an explainer with `head` trained on `objective` (kinds of their own for
    `READOUT_HEAD`, `PHI_FIRST` and `PLUS_PAIRS_HEAD`, which came after the others' checkpoints
    and would otherwise change their keys)."""
    if head == PLUS_PAIRS_HEAD:
        if objective != PHI_FIRST:
            raise ValueError(f"the {PLUS_PAIRS_HEAD} head trains with objective {PHI_FIRST!r}")
        return "posthoc_vit_plus_pairs"
    if objective == PHI_FIRST:
        return "posthoc_vit_phi_first"
    return "posthoc_vit_readout" if head == READOUT_HEAD else "posthoc_vit"


register_kind("posthoc_vit", Kind(posthoc_vit, posthoc_vit_loss, calibrate_posthoc))
register_kind("posthoc_vit_readout", Kind(posthoc_vit_readout, posthoc_vit_loss, calibrate_posthoc))
register_kind("posthoc_vit_phi_first",
              Kind(posthoc_vit_phi_first, posthoc_vit_phi_first_loss, calibrate_posthoc))
register_kind("posthoc_vit_plus_pairs",
              Kind(posthoc_vit_plus_pairs, posthoc_vit_phi_first_loss, calibrate_posthoc))
