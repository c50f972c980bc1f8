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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.harsanyi import HarsanyiHead, HeadConfig, HeadOutput
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


HEADS = ("harsanyi", "vit_shapley")


class PostHocShap(nn.Module):
    """An explainer for a frozen ViT: its copied backbone and a head on the patch tokens.

    `head="harsanyi"`: post-hoc LearnedSHAP, the Harsanyi head (unary + pairs, or unary only with
    `pairwise=False`); `head="vit_shapley"`: ViT-Shapley's head (`TokenShapleyHead`). Both are
    trained by `posthoc_loss`, the same objective at the same cost.
    """

    head_tokens = "patches"

    def __init__(self, model: nn.Module, rank: int = 8, pairwise: bool = True,
                 head: str = "harsanyi"):
        super().__init__()
        if not all(hasattr(model, a) for a in ("n_players", "encode", "forward_features")):
            raise TypeError(f"post-hoc LearnedSHAP explains ViTs that drop tokens "
                            f"(models.vit.ViT), not {type(model).__name__}")
        if head not in HEADS:
            raise ValueError(f"unknown explainer head {head!r}; choose one of {HEADS}")
        self.kind = head
        self.backbone = copy.deepcopy(model)             # models.vit.ViT, fine-tuned
        self.backbone.requires_grad_(True)               # even if the model's are frozen
        if head == "harsanyi":
            self.head = HarsanyiHead(HeadConfig(model.n_players, model.dim, model.n_classes,
                                                rank, pairwise))
        else:
            self.head = TokenShapleyHead(model.dim, model.n_classes,
                                         getattr(model.config, "heads", 2))
        self.register_buffer("v_empty", torch.zeros(model.n_classes))   # set by `calibrate`

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
        return efficient(self.head(tokens), v_full, self.v_empty)


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


def posthoc_loss(model: nn.Module, coalitions: int = 32, counter: list[int] | None = None):
    """The training loss of a PostHocShap explainer on the frozen `model`'s game.

    Each image gets `coalitions` coalitions (half drawn from the Shapley kernel, half their
    complements). `counter`, if given, accumulates the frozen model's evaluations ([n]): the
    training cost that ViT-Shapley is compared at.
    """
    if coalitions < 2 or coalitions % 2:
        raise ValueError(f"coalitions must be an even number >= 2 (pairs), got {coalitions}")
    model.eval()                          # the frozen model runs under no_grad, never trained

    def loss_fn(explainer: nn.Module, batch: dict[str, Tensor], gen: torch.Generator):
        x = batch["x"]
        B, n = len(x), explainer.n_players
        keep = paired_kernel_coalitions(n, B, coalitions // 2, gen).to(x.device)  # (B, M, N)
        with torch.no_grad():
            v_full = model(x)                                                   # (B, K)
        v_keep = frozen_values(model, x, keep)                                  # (B, M, K)
        if counter is not None:
            counter[0] += B * (coalitions + 1)
        out = explainer.decompose(x, v_full)
        return F.mse_loss(coalition_values(out, keep), v_keep), v_full

    return loss_fn
