"""A ViT that reads every patch on its own, and its LearnedSHAP head: pairwise by construction.

A co-trained LearnedSHAP ViT whose consistency loss holds exactly computes, under token dropping,
b + sum_i u_i(x_i) + sum_{i<j} w_ij(x_i, x_j): a pairwise additive model over patches, whatever
its attention does in between. This model is that function class built directly, the image
analogue of the tubelet-local 3D-ResNet (`models.tubelet_r3d`): each patch token (its pixels and
its position embedding) runs through the same transformer blocks as a sequence of its own, so
attention sees one token and mixes nothing, and patches meet only in the Harsanyi head's pair
terms. Dropping a patch drops its token; the game is

    v(S) = bias + sum_{i in S} c_i + sum_{i<j in S} c_ij

so the head's phi_i = c_i + 1/2 sum_j c_ij are its exact Shapley values with no consistency loss,
and v(empty) = bias. Beside the attention ViT with the same head, it asks whether attention makes
the pairwise class easier to train or to generalise.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.harsanyi import HeadOutput, LearnedShapViT


class LearnedShapPatchViT(LearnedShapViT):
    """A patch-local ViT (each patch token through the blocks alone) with a HarsanyiHead."""

    def __init__(self, backbone: nn.Module, rank: int = 8, pairwise: bool = True):
        if not hasattr(backbone, "_blocks"):
            raise ValueError("the patch-local ViT runs the blocks of this project's models.vit.ViT "
                             f"on one token at a time; got {type(backbone).__name__}")
        super().__init__(backbone, rank, pairwise)

    def encode(self, seq: Tensor, keep: Tensor | None = None) -> Tensor:
        """Embedded tokens (B, P + N, D) -> (B, P + N, D): each patch token through the blocks
        and final norm alone, so a token depends on its own patch only (the prefix tokens, which
        the head never reads, come back as they went in). `keep` changes no token: the head
        drops absent patches."""
        P = self.backbone.n_prefix
        B, L, D = seq.shape
        patches = self.backbone._blocks(seq[:, P:].reshape(B * (L - P), 1, D))   # (B * N, 1, D)
        return torch.cat([seq[:, :P], patches.view(B, L - P, D)], 1)

    def explain(self, x: Tensor, keep: Tensor | None = None) -> HeadOutput:
        """Logits and their exact Shapley decomposition (B, N, K) in one forward pass."""
        return self.decompose_tokens(self.encode(self.embed(x)), keep)
