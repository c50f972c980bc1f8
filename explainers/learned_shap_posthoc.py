"""Post-hoc LearnedSHAP: Shapley values of a frozen ViT from a trained explainer network."""

from __future__ import annotations

from torch import Tensor, nn

from explainers.core import Players, Result, leave_no_trace, register, watch


def amortized(method: str, kinds: tuple[str, ...], model: nn.Module, x: Tensor, target: Tensor,
              players: Players, explainer: nn.Module | None, example: str) -> Result:
    """phi of the frozen `model`'s game from a trained post-hoc explainer with a head of `kinds`
    (`models.posthoc.PostHocShap` for a ViT, `models.posthoc_video.PostHocVideoShap` for a
    3D-ResNet)."""
    from models.posthoc import PostHocShap, fitted_to
    from models.posthoc_video import PostHocVideoShap

    amortizers = (PostHocShap, PostHocVideoShap)
    if isinstance(explainer, PostHocShap) and explainer.kind not in kinds:
        right = "vit_shapley" if explainer.kind == "vit_shapley" else "learned_shap_posthoc"
        raise ValueError(f"this explainer has a {explainer.kind} head, which {method} does not "
                         f"read: explain it with explain({right!r}, model, x, target, "
                         "explainer=...)")
    if not isinstance(explainer, amortizers) or explainer.kind not in kinds:
        got = type(explainer).__name__ + (f" with a {explainer.kind} head"
                                          if isinstance(explainer, amortizers) else "")
        raise ValueError(f"{method} needs the trained explainer of this model: "
                         f"explainer=models.zoo.load('{example}').model (got {got})")
    own = "tubelets" if isinstance(explainer, PostHocVideoShap) else "patches"
    if players.kind != own or tuple(players.grid) != tuple(explainer.grid) \
            or explainer.n_classes != getattr(model, "n_classes", explainer.n_classes):
        raise ValueError(f"the explainer was trained for a {explainer.grid} {own} grid and "
                         f"{explainer.n_classes} classes; it cannot explain these players "
                         f"({players.kind}, grid {players.grid}) of {type(model).__name__}")
    if isinstance(explainer, PostHocShap) and not fitted_to(explainer, model):
        raise ValueError(f"this explainer was fitted to other weights than this "
                         f"{type(model).__name__}'s (trained further, or another model): its "
                         "values would be another model's; fit one to this model with "
                         "models.posthoc.fit_posthoc(model, loader, budget=...)")
    with leave_no_trace(explainer, gradients=False, randomness=False):
        watch(explainer)                        # the explainer's rows count in the Cost too
        out = frozen_decomposition(explainer, model, x)
    k = target.view(-1, 1, 1)                                                 # (B, 1, 1)
    n = explainer.n_players
    values = out.shapley.gather(2, k.expand(-1, n, 1))[..., 0]               # (B, N)
    extras = {}
    if out.pair is not None:
        extras["pairs"] = out.pair.gather(3, k[..., None].expand(-1, n, n, 1))[..., 0]
    return Result(values=values, extras=extras)


def frozen_decomposition(explainer: nn.Module, model: nn.Module, x: Tensor):
    """The explainer's decomposition of the frozen model's game on x, efficient for it: v(N) is
    the model's own prediction, and for video v(empty) is its output on the removed clip."""
    if hasattr(explainer, "removed"):        # video: the empty clip has an output of its own
        return explainer.decompose(x, model(x), model(explainer.removed(x)))
    return explainer.decompose(x, model(x))


@register("learned_shap_posthoc", gradients=False, randomness=False)
def learned_shap_posthoc(model: nn.Module, x: Tensor, target: Tensor, players: Players, *,
                         seed: int, explainer: nn.Module | None = None) -> Result:
    """phi of the frozen `model`'s masking game from a post-hoc LearnedSHAP explainer.

    Cost: the model's own prediction v(N) (one forward row) and one explainer forward; the
    values are efficient for the model's token-dropping game (sum phi = v(N) - v(empty)). For a
    3D-ResNet (`models.posthoc_video`), one more row: v(empty) on the blurred clip.
    extras "pairs" (B, N, N) are the explainer's pair terms for the target class (unary-only
    explainers give none). Deterministic: `seed` is unused.
    """
    from models.posthoc import PAIR_HEADS

    return amortized("learned_shap_posthoc", PAIR_HEADS, model, x, target, players, explainer,
                     "posthoc_vit_patches")
