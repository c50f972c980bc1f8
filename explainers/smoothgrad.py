"""SmoothGrad (Smilkov et al. 2017) with captum: gradients averaged over noisy copies."""

from __future__ import annotations

from torch import Tensor, nn

from explainers.core import Players, Result, check_count, register


@register("smoothgrad")
def smoothgrad(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
               n_samples: int = 50, noise: float = 0.15, absolute: bool = True,
               batch_size: int = 64) -> Result:
    """captum.attr.NoiseTunnel(Saliency) with nt_type="smoothgrad": the mean over `n_samples`
    copies of x + N(0, noise^2) of |d logit_target / d x| (signed with `absolute=False`).

    `noise` is the standard deviation in the input's units; Smilkov et al. found 10-20% of the
    input's range best, and inputs here lie in [0, 1], so 0.15 is their middle. The noise comes
    from torch's global generator, reseeded from `seed` by the verb. `batch_size` bounds the
    noisy copies per pass (captum's nt_samples_batch_size).
    """
    from captum.attr import NoiseTunnel, Saliency

    n_samples = check_count("n_samples", n_samples)
    batch_size = check_count("batch_size", batch_size)
    if not noise > 0:
        raise ValueError(f"noise must be a positive standard deviation, got {noise!r}; 0.15 is "
                         "SmoothGrad's usual level for inputs in [0, 1]")
    x = x.detach().clone().requires_grad_(True)        # captum would warn and set it itself
    attr = NoiseTunnel(Saliency(model)).attribute(
        x, nt_type="smoothgrad", nt_samples=n_samples, stdevs=float(noise), target=target,
        abs=absolute, nt_samples_batch_size=batch_size)
    return Result(pixels=attr.detach())                                    # (B, C, *S)
