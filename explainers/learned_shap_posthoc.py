"""Post-hoc LearnedSHAP: Shapley values of a frozen ViT from a trained explainer network."""

from __future__ import annotations

from torch import Tensor, nn

from explainers.core import Players, Result, leave_no_trace, register, watch


def amortized(method: str, kind: str, model: nn.Module, x: Tensor, target: Tensor,
              players: Players, explainer: nn.Module | None, example: str) -> Result:
    """phi of the frozen `model`'s game from a trained `models.posthoc.PostHocShap` of `kind`."""
    from models.posthoc import PostHocShap

    if not isinstance(explainer, PostHocShap) or explainer.kind != kind:
        got = type(explainer).__name__ + (f" with a {explainer.kind} head"
                                          if isinstance(explainer, PostHocShap) else "")
        raise ValueError(f"{method} needs the trained explainer of this model: "
                         f"explainer=models.zoo.load('{example}').model (got {got})")
    if players.kind != "patches" or tuple(players.grid) != tuple(explainer.grid) \
            or explainer.n_classes != getattr(model, "n_classes", explainer.n_classes):
        raise ValueError(f"the explainer was trained for a {explainer.grid} patch grid and "
                         f"{explainer.n_classes} classes; it cannot explain these players "
                         f"({players.kind}, grid {players.grid}) of {type(model).__name__}")
    with leave_no_trace(explainer, gradients=False, randomness=False):
        watch(explainer)                        # the explainer's rows count in the Cost too
        out = explainer.decompose(x, model(x))  # v(N): the model's own prediction
    k = target.view(-1, 1, 1)                                                 # (B, 1, 1)
    n = explainer.n_players
    values = out.shapley.gather(2, k.expand(-1, n, 1))[..., 0]               # (B, N)
    extras = {}
    if out.pair is not None:
        extras["pairs"] = out.pair.gather(3, k[..., None].expand(-1, n, n, 1))[..., 0]
    return Result(values=values, extras=extras)


@register("learned_shap_posthoc", gradients=False, randomness=False)
def learned_shap_posthoc(model: nn.Module, x: Tensor, target: Tensor, players: Players, *,
                         seed: int, explainer: nn.Module | None = None) -> Result:
    """phi of the frozen `model`'s masking game from a post-hoc LearnedSHAP explainer.

    Cost: the model's own prediction v(N) (one forward row) and one explainer forward; the
    values are efficient for the model's token-dropping game (sum phi = v(N) - v(empty)).
    extras "pairs" (B, N, N) are the explainer's pair terms for the target class (unary-only
    explainers give none). Deterministic: `seed` is unused.
    """
    return amortized("learned_shap_posthoc", "harsanyi", model, x, target, players, explainer,
                     "posthoc_vit_patches")
