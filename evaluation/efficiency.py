"""Efficiency as a check: Shapley values that must sum to v(N) - v(empty) (exact references,
LearnedSHAP's) raise when they miss by more than rounding, instead of reaching a table."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from tools.code_key import outside_key

EFFICIENCY_RTOL = 1e-5      # exact and learned values must sum to v(N) - v(empty) this closely


class EfficiencyError(AssertionError):
    """Values that should sum to v(N) - v(empty) do not: a bug, never a footnote."""


@outside_key
def check_efficient(values: Tensor, v_empty: Tensor, v_full: Tensor, what: str,
                    classes: Sequence[int] | None = None) -> Tensor:
    """The efficiency gaps sum(phi) - (v(N) - v(empty)) of `values` (N, K), one per class (K,);
    raises EfficiencyError when one exceeds EFFICIENCY_RTOL of |v(N) - v(empty)| (or of sum |phi|,
    when that is larger). `classes` names the columns in the message (default 0..K-1). A check:
    it can only raise, so it is no part of a cached result's key."""
    values = values.double()
    span = (v_full.double() - v_empty.double()).reshape(-1)                       # (K,)
    gap = values.sum(0).reshape(-1) - span                                        # (K,)
    scale = span.abs().clamp_min(values.abs().sum(0).reshape(-1)).clamp_min(1e-12)
    worst = int((gap.abs() / scale).argmax())
    if gap[worst].abs() > EFFICIENCY_RTOL * scale[worst]:
        cls = worst if classes is None else classes[worst]
        raise EfficiencyError(f"{what}: the values of class {cls} sum to v(N) - v(empty) "
                              f"{float(gap[worst]):+.3g} off ({float(gap[worst].abs() / scale[worst]):.1e} "
                              f"relative, allowed {EFFICIENCY_RTOL:.0e}); efficient values cannot "
                              "miss by this much")
    return gap
