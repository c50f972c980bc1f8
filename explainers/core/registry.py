"""The registry of attribution methods: `@register("name")` adds one, `lookup` finds it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

# fn(model, x (B, C, *S), target (B,), players: Players, *, seed, **options) -> Result
Explainer = Callable[..., Any]
EXPLAINERS: dict[str, Explainer] = {}


def register(name: str, *, gradients: bool = True,
             randomness: bool = True) -> Callable[[Explainer], Explainer]:
    """Decorator adding a method to EXPLAINERS under `name`.

    A method that declares `gradients=False` runs under torch.no_grad(); one that declares
    `randomness=False` is not reseeded and its call skips saving the global RNG states (the
    side-effect tests check both declarations). Both make a call cheaper, which matters for
    methods that cost one forward pass.
    """

    def add(fn: Explainer) -> Explainer:
        old = EXPLAINERS.get(name)
        if old is not None and qualified(old) != qualified(fn):     # re-imports may re-register
            raise ValueError(f"explainer {name!r} is already registered by {qualified(old)}; "
                             "register this one under another name")
        fn.needs_gradients, fn.uses_randomness = gradients, randomness
        EXPLAINERS[name] = fn
        return fn

    return add


def qualified(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def lookup(method: str) -> Explainer:
    """The registered function for `method`."""
    if not isinstance(method, str) or method not in EXPLAINERS:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(EXPLAINERS)}")
    return EXPLAINERS[method]


@functools.cache
def accepted_options(fn: Explainer) -> tuple[str, ...] | None:
    """The keyword options `fn` takes (None: any). Cached: inspecting a signature costs more
    than a millisecond explanation can spare."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "seed")


def check_options(method: str, fn: Explainer, options: dict) -> None:
    """Reject options the method does not take, listing the ones it does."""
    accepted = accepted_options(fn)
    if accepted is None:
        return
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"{method} got unknown option(s) {unknown}; it accepts "
                        f"{', '.join(accepted) or 'no options'}")
