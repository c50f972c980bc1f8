"""A 3D-ResNet that reads every tubelet on its own, and its LearnedSHAP head: faithful by design.

Why the whole-clip LearnedSHAP 3D-ResNet (`models.harsanyi.LearnedShapR3D`) is not exact: its
game removes a tubelet by blurring its pixels, but a 3D-ResNet's receptive field spans the clip,
so the blurred pixels still feed every neighbouring tubelet's features through the convolutions
(and the blur keeps the input's colours), and the fully blurred clip has an output of its own that
depends on the input. Its game keeps higher-order terms that a pairwise head cannot absorb.

Here the same residual trunk (stem, stages) runs on each tubelet as a clip of its own,
(B * N, C, T/gt, H/gh, W/gw), and is average-pooled to one token per tubelet (B, N, C). A token
depends only on its own tubelet's pixels (the trunk's zero padding is the same for every
tubelet), so removing a tubelet means dropping its token, as a ViT drops a patch token
(ViT-Shapley's removal; `shapley.game.MaskingGame(removal="drop")`). The game the model defines is

    v(S) = bias + sum_{i in S} c_i + sum_{i<j in S} c_ij         (the Harsanyi head on S's tokens)

unary and pairwise dividends only, so the head's phi_i = c_i + 1/2 sum_j c_ij are its exact
Shapley values, v(empty) = bias without an extra forward, and efficiency holds by construction. No
consistency loss is needed: it would be zero. What the design gives up is context between
tubelets before the head: tubelets meet only in the pair terms. On the clips here an object's
motion is visible inside one tubelet (4 frames); a task that needs long-range motion would need
larger tubelets or a head with higher-order terms.
"""

from __future__ import annotations

from torch import Tensor, nn

from models.harsanyi import HarsanyiHead, HeadConfig, HeadOutput
from models.resnet_3d import ResNet3D, ResNet3DConfig, check_clip


class LearnedShapTubeletR3D(nn.Module):
    """A tubelet-local 3D-ResNet whose tubelet tokens feed a HarsanyiHead; removal drops tokens."""

    removal = "drop"
    head_tokens = "patches"

    def __init__(self, config: ResNet3DConfig, tubelets: tuple[int, int, int] = (2, 2, 2),
                 rank: int = 8, pairwise: bool = True):
        super().__init__()
        if config.torchvision_name:
            raise ValueError("the tubelet-local 3D-ResNet is built from ResNet3DConfig stages; "
                             f"torchvision_name={config.torchvision_name!r} is not supported here")
        if len(tubelets) != 3 or not all(isinstance(g, int) and g > 0 for g in tubelets):
            raise ValueError(f"tubelets must be three positive ints (t, h, w), got {tubelets!r}")
        self.tubelets = tuple(tubelets)
        # In training mode BatchNorm pools its statistics over all B * N tubelets of a batch;
        # in eval mode (every game and explanation) each token depends on its tubelet alone.
        self.trunk = ResNet3D(config)
        self.trunk.head = nn.Identity()            # the Harsanyi head replaces the linear head
        n = tubelets[0] * tubelets[1] * tubelets[2]
        self.head = HarsanyiHead(HeadConfig(n, config.widths[-1], config.n_classes, rank,
                                            pairwise))

    @property
    def n_players(self) -> int:
        return self.head.config.n_players

    @property
    def n_classes(self) -> int:
        return self.head.config.n_classes

    def cut(self, x: Tensor) -> Tensor:
        """Clips (B, C, T, H, W) -> tubelets (B * N, C, T/gt, H/gh, W/gw), time-major order."""
        check_clip(x)
        B, C, T, H, W = x.shape
        gt, gh, gw = self.tubelets
        if T % gt or H % gh or W % gw:
            raise ValueError(f"a {T}x{H}x{W} clip cannot be cut into a {gt}x{gh}x{gw} tubelet "
                             "grid; each grid size must divide the clip's size")
        x = x.reshape(B, C, gt, T // gt, gh, H // gh, gw, W // gw)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)                      # (B, gt, gh, gw, C, t, h, w)
        return x.reshape(B * gt * gh * gw, C, T // gt, H // gh, W // gw)

    def tile(self, cells: Tensor) -> Tensor:
        """Per-tubelet maps (B * N, C, t, h, w) -> one map of each clip (B, C, gt t, gh h, gw w):
        the inverse of `cut` at any layer's resolution (GradCAM++ reads the trunk this way)."""
        BN, C, t, h, w = cells.shape
        gt, gh, gw = self.tubelets
        x = cells.reshape(BN // self.n_players, gt, gh, gw, C, t, h, w)
        x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)                       # (B, C, gt, t, gh, h, gw, w)
        return x.reshape(len(x), C, gt * t, gh * h, gw * w)

    @property
    def feature_layer(self) -> nn.Module:
        """The trunk's last stage, which the tokens pool; its activations are per tubelet
        (B * N, C, t', h', w'): `tile` puts them back on the clip's grid."""
        return self.trunk.feature_layer

    def embed(self, x: Tensor) -> Tensor:
        """One token per tubelet (B, N, C), each computed from its own tubelet's pixels only."""
        cells = self.trunk.forward_features(self.cut(x))           # (B * N, C, t', h', w')
        return cells.mean((2, 3, 4)).view(len(x), self.n_players, -1)

    def encode(self, tokens: Tensor, keep: Tensor | None = None) -> Tensor:
        """Tubelet tokens do not mix before the head: dropping one leaves the others unchanged."""
        return tokens

    def forward_head(self, tokens: Tensor, keep: Tensor | None = None) -> Tensor:
        return self.head(tokens, keep).logits

    def explain(self, x: Tensor, keep: Tensor | None = None) -> HeadOutput:
        """Logits and their Shapley decomposition (B, N, K) in one forward pass."""
        return self.head(self.embed(x), keep)

    def shapley_values(self, x: Tensor) -> HeadOutput:
        """The exact Shapley values of the model's own game: with every tubelet dropped the head
        sees no token and returns its bias, so sum_i phi_i = v(N) - v(empty) holds exactly."""
        return self.explain(x)

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        return self.explain(x, keep).logits

    def masked_logits(self, x: Tensor, keep: Tensor) -> Tensor:
        """The model's output with only the tubelets in `keep` (B, N) present."""
        return self(x, keep)
