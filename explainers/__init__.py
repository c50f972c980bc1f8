"""Every attribution method behind one signature: `explain(method, model, x, target)`.

    from explainers import explain
    att = explain("gradient_shap", model, x)          # att.values (B, N), att.pixel_map (B, H, W)

Methods (one file each, registered in EXPLAINERS): gradient_shap, captum_gradient_shap,
integrated_gradients, saliency, smoothgrad, deeplift_shap, gradcam_pp, attention,
attention_rollout, exact, hierarchical_shapley, permutation, kernel, shap_partition and
shap_permutation (shap's blur-masked image workflow), shap_cam (Shapley values of a CNN
layer's cells), learned_shap, and for
frozen ViTs the trained explainers learned_shap_posthoc and vit_shapley. The machinery they share (the verb, the registry, input
checks, isolation, row counting) is in `explainers.core`.
"""

from explainers import (  # noqa: F401  (each module registers its method)
    attention,
    attention_rollout,
    captum_gradient_shap,
    deeplift_shap,
    exact,
    gradcam_pp,
    gradient_shap,
    hierarchical_shapley,
    integrated_gradients,
    kernel,
    learned_shap,
    learned_shap_posthoc,
    permutation,
    saliency,
    shap_blur,
    shap_cam,
    smoothgrad,
    vit_shapley,
)
from explainers.core import (
    EXPLAINERS,
    Attribution,
    Cost,
    Explainer,
    Players,
    Result,
    explain,
    register,
)

__all__ = ["EXPLAINERS", "Attribution", "Cost", "Explainer", "Players", "Result", "explain",
           "register"]
