"""How much work the benchmark does: the full run fits `make run`, quick mode the tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from evaluation.faithfulness import REFERENCE_BUDGET64


# --- settings -----------------------------------------------------------------------------------
@dataclass
class Settings:
    """How much work the benchmark does: the full run fits `make run`, quick mode CI."""

    quick: bool
    seed: int = 0
    per_class: dict[str, int] = field(default_factory=dict)      # examples of each class
    n_samples: int = 200             # GradientSHAP samples per input (shap and captum)
    ig_steps: int = 50               # integrated-gradients steps
    budgets: dict[str, list[int]] = field(default_factory=dict)  # sampler rows, in units of 2n
    break_even_largest: dict[str, int] = field(default_factory=dict)
    break_even_per_class: dict[str, int] = field(default_factory=dict)
    break_even_seeds: tuple[int, ...] = (0, 1)
    # pair terms against shapiq's Faith-Shap approximators (16 players: exact Faith-Shap pairs),
    # on the first `pair_per_class` break-even examples of each class
    pair_largest: int = 2048
    pair_per_class: int = 1
    pair_seeds: tuple[int, ...] = (0, 1)
    reference_budget64: int = REFERENCE_BUDGET64
    remainder_coalitions: int = 1000   # Shapley-kernel coalitions per image for the remainder
    sanity_per_class: int = 1
    sanity_samples: int = 50         # GradientSHAP samples inside the randomisation check
    sanity_budget: int = 256         # permutation budget inside the randomisation check
    figure_examples: int = 6
    exact_timed: int = 2             # examples the exact row is timed on (its values: references)
    # Two threads: on an idle 2-core machine the exact enumeration of one 16-patch image takes
    # 2.9 s on two and 5.0 s on one. With another busy process on the machine two threads wait
    # for each other (many times slower): pass --threads 1 there. Results depend on the count
    # (float sums), so reruns compare at the same setting.
    threads: int = 2


def settings_for(quick: bool, seed: int = 0) -> Settings:
    """The full benchmark's settings (about five minutes on two CPU cores), or quick mode's."""
    if quick:
        return Settings(
            quick=True, seed=seed,
            per_class={"vit_patches": 1, "vit_digits": 1, "r3d_video": 1},
            n_samples=16, ig_steps=16,
            budgets={"vit_patches": [2, 8], "vit_digits": [2], "r3d_video": [2, 4]},
            break_even_largest={"vit_patches": 256, "vit_digits": 64, "r3d_video": 64,
                                "vit_patches64": 256},
            break_even_per_class={"vit_patches": 1, "vit_digits": 1, "r3d_video": 1,
                                  "vit_patches64": 1},
            break_even_seeds=(0,), reference_budget64=2048, remainder_coalitions=200,
            pair_largest=128, pair_seeds=(0,),
            sanity_per_class=1, sanity_samples=8, sanity_budget=64, figure_examples=3,
            exact_timed=1)
    return Settings(
        quick=False, seed=seed,
        per_class={"vit_patches": 4, "vit_digits": 1, "r3d_video": 2},
        budgets={"vit_patches": [2, 8, 32], "vit_digits": [2, 8, 32], "r3d_video": [2, 8, 32]},
        break_even_largest={"vit_patches": 2048, "vit_digits": 2048, "r3d_video": 256,
                            "vit_patches64": 2048},
        break_even_per_class={"vit_patches": 4, "vit_digits": 1, "r3d_video": 4,
                              "vit_patches64": 4})
