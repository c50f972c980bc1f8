"""Shapley values of batched games: the masking game, exact values and interactions, samplers."""

from .exact import (
    ExactResult,
    coalition_masks,
    evaluate_all,
    evaluate_coalitions,
    exact_shapley,
    harsanyi_pairs,
    moebius_transform,
    shapley_from_table,
    shapley_interaction_pairs,
)
from .game import MaskingGame, make_baseline, patch_feature_mask, tubelet_feature_mask
from .sampling import (
    SAMPLERS,
    SamplingResult,
    convergence_table,
    kernel_coalitions,
    kernel_shap,
    permutation_shapley,
)

__all__ = [
    "ExactResult", "coalition_masks", "evaluate_all", "evaluate_coalitions", "exact_shapley",
    "harsanyi_pairs", "moebius_transform", "shapley_from_table", "shapley_interaction_pairs",
    "MaskingGame", "make_baseline", "patch_feature_mask", "tubelet_feature_mask",
    "SAMPLERS", "SamplingResult", "convergence_table", "kernel_coalitions", "kernel_shap",
    "permutation_shapley",
]
