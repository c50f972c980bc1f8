"""The machinery behind `explain`: the verb, the registry, input checks, isolation, row counting.

Methods import what they need from here:

    from explainers.core import Players, Result, register
"""

from explainers.core.counting import count_rows, watch
from explainers.core.helpers import (
    background_for,
    cnn_blocks,
    default_background,
    games,
    per_input_values,
    resolve_layer,
    unsupported,
)
from explainers.core.inputs import Players, check_count
from explainers.core.isolation import HOOK_DICTS, leave_no_trace, reseed
from explainers.core.model_kind import (
    find_timm_vit,
    head_reads_class_token,
    is_video_model,
    is_vit,
    model_device,
    model_name,
)
from explainers.core.registry import EXPLAINERS, Explainer, lookup, register
from explainers.core.verb import Attribution, Cost, Result, explain

__all__ = [
    "EXPLAINERS", "HOOK_DICTS", "Attribution", "Cost", "Explainer", "Players", "Result",
    "background_for", "check_count", "cnn_blocks", "count_rows", "default_background", "explain",
    "find_timm_vit", "games", "head_reads_class_token", "is_video_model", "is_vit",
    "leave_no_trace", "lookup", "model_device", "model_name", "per_input_values", "register",
    "reseed", "resolve_layer", "unsupported", "watch",
]
