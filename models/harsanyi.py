"""LearnedSHAP: a Harsanyi-style head whose decomposition of the logits *is* a Shapley value.

The head reads one token per player (ViT patch tokens; for the 3D-ResNet, the feature grid pooled
to the tubelets the Shapley core uses) and writes every logit as a sum of interaction terms:

    logit_k = bias_k + sum_i c_ik + sum_{i<j} c_ijk

    c_ik  = w_ik * <u_k, t_i>                         unary: learnable per-player weights w (N, K)
    c_ijk = W_ij * sum_r s_kr p_ikr p_jkr             pairwise: learnable symmetric W (N, N), zero
            p_ik = relu(Q_k t_i)                      diagonal, times a rank-r form per class: r
                                                      non-negative pair detectors p with signs s

A game made only of unary and pairwise Harsanyi dividends has Shapley values

    phi_ik = c_ik + 1/2 sum_j c_ijk                   (each pair split in half between its players)

so efficiency (sum_i phi_i = logit - bias) holds by construction. This is the game of the head
evaluated on the full input's tokens; it is the *model's* Shapley value only if removing players
from the input removes exactly their terms. `consistency_loss` trains for that: on random
coalitions S, the model's output with only S present (the Shapley core's removal: token dropping
for the ViT, baseline replacement of tubelets for the 3D-ResNet) must match the decomposition of
the full input restricted to S.

Unlike the public prototype this idea came from, every weight is a parameter created in __init__
(its weights were created inside forward(), after the optimizer, and never trained), the whole
N x N pairwise tensor is used (not its diagonal), and pairs are split in half.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.train import random_keep
from shapley.game import DEFAULT_TUBELETS, make_baseline, tubelet_feature_mask
from shapley.sampling import kernel_coalitions


@dataclass
class HeadConfig:
    n_players: int        # players of the game: ViT patches or 3D-ResNet tubelets
    dim: int              # token width
    n_classes: int
    rank: int = 8         # rank of each class's bilinear pair form
    pairwise: bool = True  # ablation switch: False keeps unary terms only


@dataclass
class HeadOutput:
    logits: Tensor        # (B, K)
    shapley: Tensor       # (B, N, K) phi_i = c_i + 1/2 sum_j c_ij
    unary: Tensor         # (B, N, K) c_i
    pair: Tensor | None   # (B, N, N, K) c_ij, symmetric, zero diagonal (None without pair terms)
    bias: Tensor          # (K,)
    empty: Tensor | None = None   # (B, K) v(empty) of the model's game, when it is not `bias`

    def restrict(self, keep: Tensor) -> Tensor:
        """Logits of the decomposition restricted to coalitions `keep` (B, N) bool: (B, K)."""
        k = keep.to(self.unary.dtype)                                   # (B, N)
        out = self.bias + (self.unary * k[..., None]).sum(1)
        if self.pair is not None:
            both = (k[:, :, None] * k[:, None, :])[..., None]           # (B, N, N, 1)
            out = out + (self.pair * both).sum((1, 2)) / 2
        return out


class HarsanyiHead(nn.Module):
    """Unary + pairwise Harsanyi terms over player tokens (B, N, D)."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        N, D, K, R = config.n_players, config.dim, config.n_classes, config.rank
        self.config = config
        self.norm = nn.LayerNorm(D)
        # Player tokens are correlated (much of an image is background), so the sums over N
        # players grow like N: fixed factors 16 / N (unary) and 16 / N^2 (pairs) keep a training
        # step's change of the logits O(1) for any grid (1 and 1/N up to the default 16 players),
        # since a step moves the terms of every background token alike.
        # Every term starts at zero (u_k = 0 and the pair signs s_kr = 0, so the logits start at
        # the bias), the usual zero-initialised last layer: with random u and s the initial logits
        # varied across images with their background brightness (std 5 to 8 logits at 16 to 196
        # players), and the model first had to unlearn that noise. At 196 players that start cost
        # the head without consistency loss its training (81.9% on the test images, the plain ViT
        # 98.7%); zero-initialised it reaches 98.6%. The detectors Q stay random so that the
        # signs' first gradients p_ikr p_jkr are not zero.
        # The learnable per-player weights start at 1: initialised at the sizes of the fixed
        # factors (0.004 for 64 players), AdamW's per-parameter steps moved each W_ij by its own
        # size within a few steps, and W_ij, seen by about one example per epoch, learned noise.
        # Together with the relu detectors below, this took the 64-patch ViT from 72.5% to 99.3%
        # test accuracy (plain head: 99.2%).
        scale = min(1.0, 16 / N)
        self.unary_proj = nn.Linear(D, K, bias=False)              # u_k
        nn.init.zeros_(self.unary_proj.weight)
        self.unary_weight = nn.Parameter(torch.ones(N, K))         # w_ik, per player and class
        self.unary_scale = scale
        self.bias = nn.Parameter(torch.zeros(K))
        if config.pairwise:
            self.pair_proj = nn.Linear(D, K * R, bias=False)       # Q_k, rank R per class
            nn.init.normal_(self.pair_proj.weight, std=0.5 / D ** 0.5)
            # Non-negative detectors (relu) can be exactly zero on background tokens; with a plain
            # bilinear form <Q t_i, Q t_j>, the N^2 / 2 background pairs add noise that grows
            # with N^2, and the 64-patch ViT confused its pair and half-pair classes. The signs
            # are learned from zero.
            self.pair_sign = nn.Parameter(torch.zeros(K, R))       # s_kr (K, R)
            self.pair_weight = nn.Parameter(torch.ones(N, N))      # W_ij, symmetrised
            self.pair_scale = scale / N
            self.register_buffer("off_diagonal", 1 - torch.eye(N), persistent=False)

    def pair_weights(self) -> Tensor:
        """The effective pairwise weights (N, N): symmetric with a zero diagonal."""
        return self.pair_scale * (self.pair_weight + self.pair_weight.T) / 2 * self.off_diagonal

    def forward(self, tokens: Tensor, keep: Tensor | None = None) -> HeadOutput:
        """Decompose the logits of player tokens (B, N, D); absent players (`keep` False) add 0."""
        B, N, _ = tokens.shape
        if N != self.config.n_players:
            raise ValueError(f"the head was built for {self.config.n_players} players but got "
                             f"{N} tokens; build it with HeadConfig(n_players={N}, ...)")
        t = self.norm(tokens)
        unary = self.unary_proj(t) * (self.unary_scale * self.unary_weight)  # (B, N, K)
        pair = None
        if self.config.pairwise:
            K, R = self.config.n_classes, self.config.rank
            p = F.relu(self.pair_proj(t)).view(B, N, K, R)                  # (B, N, K, R)
            pair = torch.einsum("bikr,bjkr->bijk", p * self.pair_sign, p)   # (B, N, N, K)
            pair = pair * self.pair_weights()[..., None]
        if keep is not None:
            k = keep.to(unary.dtype)                                        # (B, N)
            unary = unary * k[..., None]
            if pair is not None:
                pair = pair * (k[:, :, None] * k[:, None, :])[..., None]
        logits = self.bias + unary.sum(1)
        shapley = unary
        if pair is not None:
            logits = logits + pair.sum((1, 2)) / 2
            shapley = unary + pair.sum(2) / 2
        return HeadOutput(logits, shapley, unary, pair, self.bias)


class LearnedShapViT(nn.Module):
    """A ViT whose patch tokens feed a HarsanyiHead; removal is token dropping."""

    removal = "drop"
    head_tokens = "patches"       # the head reads the patch tokens, never the class token

    def __init__(self, backbone: nn.Module, rank: int = 8, pairwise: bool = True):
        super().__init__()
        self.backbone = backbone          # models.vit.ViT
        self.head = HarsanyiHead(HeadConfig(backbone.n_players, backbone.dim,
                                            backbone.n_classes, rank, pairwise))

    # the token-dropping interface of models.vit.ViT, so the masking game drops tokens here too
    n_players = property(lambda self: self.backbone.n_players)
    patch_size = property(lambda self: self.backbone.patch_size)
    image_size = property(lambda self: self.backbone.image_size)
    grid = property(lambda self: self.backbone.grid)
    n_classes = property(lambda self: self.backbone.n_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.backbone.embed(x)

    def encode(self, seq: Tensor, keep: Tensor | None = None) -> Tensor:
        return self.backbone.encode(seq, keep)

    def forward_head(self, tokens: Tensor, keep: Tensor | None = None) -> Tensor:
        return self.decompose_tokens(tokens, keep).logits

    def decompose_tokens(self, tokens: Tensor, keep: Tensor | None = None) -> HeadOutput:
        return self.head(tokens[:, self.backbone.n_prefix:], keep)

    def explain(self, x: Tensor, keep: Tensor | None = None) -> HeadOutput:
        """Logits and their Shapley decomposition in one forward pass."""
        return self.decompose_tokens(self.backbone.forward_features(x, keep), keep)

    def shapley_values(self, x: Tensor) -> HeadOutput:
        """The decomposition as Shapley values of the model's own game, efficient by design.

        With every patch dropped the head sees no token and returns its bias, so
        v(empty) = bias and sum_i phi_i = v(N) - v(empty) holds exactly: one forward pass.
        """
        return self.explain(x)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        return self.explain(x, keep).logits

    def masked_logits(self, x: Tensor, keep: Tensor) -> Tensor:
        """The model's output with only the players in `keep` (B, N) present."""
        return self(x, keep)


class LearnedShapR3D(nn.Module):
    """A 3D-ResNet whose feature grid, pooled to tubelets, feeds a HarsanyiHead.

    Removal is baseline replacement of the tubelets' pixels (a 3D-ResNet cannot drop inputs),
    the same as the masking game's `removal="baseline"` with the same baseline and grid.
    """

    removal = "baseline"
    head_tokens = "patches"

    def __init__(self, backbone: nn.Module, tubelets: tuple[int, int, int] = DEFAULT_TUBELETS,
                 baseline: str = "blur", rank: int = 8, pairwise: bool = True):
        super().__init__()
        self.backbone = backbone          # models.resnet_3d.ResNet3D or TorchvisionR3D
        self.tubelets, self.baseline = tuple(tubelets), baseline
        width = backbone.head.in_features if hasattr(backbone, "head") else backbone.net.fc.in_features
        n = tubelets[0] * tubelets[1] * tubelets[2]
        self.head = HarsanyiHead(HeadConfig(n, width, backbone.n_classes, rank, pairwise))

    n_classes = property(lambda self: self.backbone.n_classes)
    feature_layer = property(lambda self: self.backbone.feature_layer)

    @property
    def n_players(self) -> int:
        return self.head.config.n_players

    def tokens(self, x: Tensor) -> Tensor:
        """Tubelet tokens (B, N, C): the feature grid average-pooled to the tubelet grid."""
        grid = self.backbone.forward_features(x)                           # (B, C, T', H', W')
        if any(g % t for g, t in zip(grid.shape[2:], self.tubelets)):
            raise ValueError(f"feature grid {tuple(grid.shape[2:])} cannot be pooled to tubelets "
                             f"{self.tubelets}; choose a tubelet grid that divides it")
        cells = F.adaptive_avg_pool3d(grid, self.tubelets)                # (B, C, gt, gh, gw)
        return cells.flatten(2).transpose(1, 2)                            # (B, N, C), time-major

    def explain(self, x: Tensor) -> HeadOutput:
        """Logits and the head's decomposition (B, N, K) in one forward pass."""
        return self.head(self.tokens(x))

    def shapley_values(self, x: Tensor) -> HeadOutput:
        """The decomposition made efficient for the model's own game: two forward rows per clip.

        Removing every tubelet leaves the baseline clip (a blur keeps the input's colours), whose
        output v(empty) depends on the input and is not the head's bias. One more forward row
        computes it, and the head's gap to it, bias - v(empty), is shared equally among the
        players (the additive efficient normalisation of FastSHAP and ViT-Shapley), so that
        sum_i phi_i = v(N) - v(empty) exactly.
        """
        B = len(x)
        both = self.explain(torch.cat([x, self.removed(x)]))               # one pass, 2B rows
        out = HeadOutput(both.logits[:B], both.shapley[:B], both.unary[:B],
                         None if both.pair is None else both.pair[:B], both.bias)
        empty = both.logits[B:]                                            # (B, K) v(empty)
        out.shapley = out.shapley + ((out.bias - empty) / self.n_players)[:, None, :]
        out.empty = empty
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.explain(x).logits

    def removed(self, x: Tensor) -> Tensor:
        """The clips (B, C, T, H, W) with every tubelet removed: their baselines."""
        return torch.stack([make_baseline(clip, self.baseline) for clip in x])

    def masked_logits(self, x: Tensor, keep: Tensor) -> Tensor:
        """The model's output with the tubelets outside `keep` (B, N) replaced by the baseline."""
        mask = tubelet_feature_mask(*x.shape[-3:], grid=self.tubelets).to(x.device)  # (T, H, W)
        present = keep[:, mask][:, None]                                   # (B, 1, T, H, W)
        return self(torch.where(present, x, self.removed(x)))


def consistency_loss(model: nn.Module, full: HeadOutput, x: Tensor, keep: Tensor) -> Tensor:
    """Mean squared gap between the model on x restricted to `keep` and the restricted decomposition."""
    return F.mse_loss(model.masked_logits(x, keep), full.restrict(keep))


SAMPLERS = ("uniform", "kernel", "kernel_paired")


def training_coalitions(sampler: str, batch: int, n_players: int, generator: torch.Generator,
                        device: torch.device | str = "cpu") -> Tensor:
    """One coalition per example (B, N) bool for the consistency loss.

    "uniform": a share of the players drawn uniformly, then each kept with that probability, so
    coalition sizes are uniform over 0..N (`random_keep`, ViT-Shapley's masking). "kernel" and
    "kernel_paired": sizes from the Shapley kernel over 1..N-1 and a uniform subset of that size
    (the paired sampler also trains on each coalition's complement). Under the kernel, with both
    ends exact (an empty input leaves the head's bias, the full input is the forward pass), the
    least-squares optimum of the consistency loss makes phi the exact Shapley values of the
    model's game whatever its higher-order terms (Charnes et al. 1988; Lundberg & Lee 2017).
    """
    if sampler == "uniform":
        return random_keep(batch, n_players, 1.0, generator, device)
    if sampler in ("kernel", "kernel_paired"):
        return kernel_coalitions(n_players, batch, generator).to(device)
    raise ValueError(f"unknown coalition sampler {sampler!r}; choose one of {SAMPLERS}")


def learned_shap_loss(consistency: float = 1.0, warmup_steps: int = 0, sampler: str = "uniform"):
    """Training loss: cross-entropy on full inputs + `consistency` x the consistency loss.

    Each step draws one coalition per example from `sampler` (`training_coalitions`; the paired
    sampler adds its complement), so the head is trained jointly with the backbone, on the
    model's game. The consistency weight ramps up linearly over the first `warmup_steps` steps:
    from the start it has a trivial minimum (every term zero, constant logits) that a strong
    weight would pull a still-untrained model into before the classifier has learned anything.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown coalition sampler {sampler!r}; choose one of {SAMPLERS}")
    step = 0

    def loss_fn(model: nn.Module, batch: dict[str, Tensor], gen: torch.Generator):
        nonlocal step
        weight = consistency * min(1.0, step / warmup_steps) if warmup_steps else consistency
        step += 1
        x, y = batch["x"], batch["y"]
        full = model.explain(x)
        loss = F.cross_entropy(full.logits, y)
        if weight > 0:
            keep = training_coalitions(sampler, len(x), model.n_players, gen, x.device)
            gap = consistency_loss(model, full, x, keep)
            if sampler == "kernel_paired":
                gap = (gap + consistency_loss(model, full, x, ~keep)) / 2
            loss = loss + weight * gap
        return loss, full.logits

    return loss_fn
