"""What the explainer tests share besides fixtures: the methods each kind of model runs, fast
options for them, `run` (explain with those options) and a linear model with known answers."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from explainers import Attribution, explain

TUBELETS = (2, 2, 2)                       # 8 players on a 4x16x16 clip
FAST = {                                   # small budgets: every test stays at seconds
    "gradient_shap": {"n_samples": 16},
    "captum_gradient_shap": {"n_samples": 16},
    "integrated_gradients": {"n_steps": 8},
    "smoothgrad": {"n_samples": 8},
    "permutation": {"budget": 128},
    "kernel": {"budget": 128},
    "shap_partition": {"max_evals": 64},
    "shap_permutation": {"max_evals": 1600},   # one permutation of 16 x 16 x 3 pixels: 1,537
}
VIT_METHODS = ["gradient_shap", "captum_gradient_shap", "integrated_gradients", "exact",
               "permutation", "kernel", "attention", "attention_rollout", "gradcam_pp",
               "saliency", "smoothgrad", "hierarchical_shapley", "shap_partition",
               "shap_permutation"]
VIDEO_METHODS = ["gradient_shap", "captum_gradient_shap", "integrated_gradients", "exact",
                 "permutation", "kernel", "gradcam_pp", "deeplift_shap", "saliency", "smoothgrad",
                 "hierarchical_shapley", "shap_partition", "shap_permutation"]


class Linear(nn.Module):
    """f(x) = W flatten(x) + b: every attribution method has a known answer on it."""

    def __init__(self, shape: tuple[int, ...], n_classes: int = 3):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, int(np.prod(shape))))
        self.bias = nn.Parameter(torch.randn(n_classes))
        self.n_classes = n_classes

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


def run(method: str, model: nn.Module, x: Tensor, **kw) -> Attribution:
    if x.ndim == 5 and "feature_mask" not in kw:
        kw.setdefault("tubelets", TUBELETS)
    return explain(method, model, x, **{**FAST.get(method, {}), **kw})
