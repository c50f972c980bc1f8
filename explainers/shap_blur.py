"""shap's blur-masked image workflow: `shap.Explainer(f, shap.maskers.Image("blur(k,k)", shape))`.

Called as image users call it (Lundberg & Lee's shap library): the model as a function of numpy
images (n, H, W, C) returning class probabilities, a blur masker, `max_evals`, and the top-k
classes explained at once. With an image masker shap picks its **Partition** explainer, which
computes Owen values of the pixels over shap's hierarchy of the image (axis-aligned halvings, the
longer side first; channels are split only below single pixels): `shap_partition`. The same call
with `algorithm="permutation"` averages marginal contributions over permutations that keep every
node of that hierarchy together (shap's `partition_tree_shuffle`), which again estimates Owen, not
Shapley, values, over every pixel and channel, so one permutation costs 2 x H x W x C + 1
evaluations: `shap_permutation`.

Clips: shap's image masker is 2-D only. `TubeletMasker` is a shap masker over the tubelets of a
clip (blurred frame by frame, or replaced by a value), with the same kind of hierarchy (halving
the longest of time, height and width), so the same two calls run on video; its features are
the tubelets themselves.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor, nn

from explainers.core import Players, Result, check_count, register
from shapley.game import tubelet_feature_mask
from shapley.owen import halving_tree

ALGORITHMS = {"shap_partition": "partition", "shap_permutation": "permutation"}


def default_kernel(x: Tensor) -> int:
    """The blur kernel's side: half the image side (the seed's blur(128,128) on 224 px images
    is 0.57 of it); large enough that a blurred patch no longer shows its object."""
    return max(int(max(x.shape[-2:])) // 2, 1)


def cv2_blur(image: np.ndarray, kernel: int) -> np.ndarray:
    """shap's blur: OpenCV's box filter of side `kernel` over an (H, W, C) float image."""
    import cv2

    return cv2.blur(image, (kernel, kernel))


def blurred_input(x: Tensor, kernel: int) -> Tensor:
    """The input with every pixel removed in shap's blur game: (C, H, W) or (C, T, H, W)."""
    if x.ndim == 3:
        hwc = x.permute(1, 2, 0).cpu().numpy().astype(np.float32)
        return torch.from_numpy(cv2_blur(hwc, kernel)).reshape(hwc.shape).permute(2, 0, 1).to(x)
    return torch.stack([blurred_input(frame, kernel) for frame in x.unbind(1)], 1)


def tubelet_masker(mask_value: str | float, grid: tuple[int, int, int], shape: tuple[int, ...]):
    """A shap masker over the tubelets of clips of `shape` (T, H, W, C): `mask_value` is
    "blur(k,k)" (each frame blurred as shap's image masker does) or a number that replaces the
    removed tubelets."""
    import shap

    class TubeletMasker(shap.maskers.Masker):
        """Masks a clip (T, H, W, C) tubelet by tubelet; a tree of halvings over the tubelets."""

        def __init__(self):
            self.grid, self.input_shape = tuple(grid), tuple(shape)
            self.cells = tubelet_feature_mask(*shape[:3], grid=self.grid).numpy()   # (T, H, W)
            n = int(np.prod(self.grid))
            self.shape = (1, n)
            self.clustering = halving_tree(self.grid)
            self.immutable_outputs = True
            self.kernel = None
            if isinstance(mask_value, str):
                if not (mask_value.startswith("blur(") and mask_value.endswith(")")):
                    raise ValueError(f"mask_value must be 'blur(k,k)' or a number, got "
                                     f"{mask_value!r}")
                self.kernel = int(mask_value[5:-1].split(",")[0])
            self._cache: tuple[int, np.ndarray] | None = None

        def mask_shapes(self, *args):                    # one value per tubelet, not per pixel
            return [(self.shape[1],)]

        def removed(self, x: np.ndarray) -> np.ndarray:
            if self.kernel is None:
                return np.full_like(x, float(mask_value))
            if self._cache is None or self._cache[0] != id(x):
                self._cache = (id(x), np.stack([cv2_blur(f, self.kernel) for f in x]))
            return self._cache[1]

        def __call__(self, mask, x):
            x = np.asarray(x).reshape(self.input_shape)
            keep = np.ones(self.shape[1], bool) if mask is None else np.asarray(mask, bool)
            out = np.where(keep[self.cells][..., None], x, self.removed(x))
            return (out[None],)

    return TubeletMasker()


def model_function(model: nn.Module, x: Tensor, output: str):
    """f(numpy (n, *S, C)) -> numpy (n, K): the model on channels-last inputs, as shap calls it."""
    dims = (0, x.ndim - 1, *range(1, x.ndim - 1))                  # (n, *S, C) -> (n, C, *S)

    def f(batch: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.asarray(batch), dtype=x.dtype, device=x.device).permute(*dims)
        with torch.no_grad():
            out = model(t.contiguous())
            out = out.softmax(-1) if output == "prob" else out
        return out.double().cpu().numpy()

    return f


@functools.cache
def _numba_seeder():
    import numba

    @numba.njit
    def seed(value: int) -> None:
        np.random.seed(value)

    return seed


def seed_numba(seed: int) -> None:
    """Seed numba's own generator, which shap's jitted `partition_tree_shuffle` draws from:
    `np.random.seed` (shap's `seed=`) does not reach it, so permutations would differ per run.
    (numba's generator is left seeded: numba offers no public way to save and restore it.)"""
    _numba_seeder()(seed % 2**32)


def minimum_evals(algorithm: str, n_features: int) -> int:
    """The fewest evaluations shap accepts: one permutation (forward and back) for
    `permutation`; the full and empty inputs plus one split for `partition`."""
    return 2 * n_features + 1 if algorithm == "permutation" else 4


def shap_blur(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
              algorithm: str, max_evals: int, blur: int | None, top_k: int, output: str,
              batch_size: int) -> Result:
    """Run shap's explainer on each input; values of `target`, the top-k classes in extras."""
    import shap

    max_evals, top_k = check_count("max_evals", max_evals), check_count("top_k", top_k)
    batch_size = check_count("batch_size", batch_size)
    if output not in ("prob", "logit"):
        raise ValueError(f"output must be 'prob' (shap users' softmax) or 'logit', got {output!r}")
    video = x.ndim == 5
    kernel = check_count("blur", blur) if blur is not None else default_kernel(x)
    channels_last = x.movedim(1, -1)                                    # (B, *S, C)
    shape = tuple(channels_last.shape[1:])
    if video:
        masker = tubelet_masker(f"blur({kernel},{kernel})", tuple(players.grid), shape)
        n_features = players.n
    else:
        masker = shap.maskers.Image(f"blur({kernel},{kernel})", shape)
        n_features = int(np.prod(shape))
    need = minimum_evals(algorithm, n_features)
    if max_evals < need:
        raise ValueError(f"max_evals={max_evals} is below what shap's {algorithm} explainer "
                         f"needs here: {need} (2 x {n_features} features + 1 for one "
                         "permutation); raise max_evals or use shap_partition")
    f = model_function(model, x, output)
    seed_numba(seed)
    explainer = shap.Explainer(f, masker, algorithm=algorithm, seed=seed) \
        if algorithm == "permutation" else shap.Explainer(f, masker, algorithm=algorithm)
    values, classes, probs, maps = [], [], [], []
    for xi, k in zip(channels_last, target.tolist(), strict=True):
        xi_np = xi.cpu().numpy()
        scores = f(xi_np[None])[0]                                              # (K,)
        # the classes of shap's `outputs=shap.Explanation.argsort.flip[:top_k]`, the target first
        order = [int(c) for c in np.argsort(-scores, kind="stable")]
        outs = [k] + [c for c in order if c != k][:min(top_k, len(order)) - 1]
        expl = explainer(xi_np[None], max_evals=max_evals, batch_size=batch_size,
                         outputs=np.asarray(outs), silent=True)
        v = torch.as_tensor(np.asarray(expl.values[0]), dtype=torch.float64)   # (*F, k or K)
        if algorithm == "permutation":          # shap's Permutation explains every class
            v = v[..., outs]
        if video:
            per_player = v.T                                                    # (k, N)
        else:
            per_pixel = v.movedim(-1, 0).movedim(-1, 1).sum(1)                  # (k, H, W)
            per_player = players.pool(per_pixel)                                # (k, N)
            maps.append(per_pixel)
        values.append(per_player)
        classes.append(torch.tensor(outs))
        p = scores if output == "prob" else torch.as_tensor(scores).softmax(-1).numpy()
        probs.append(torch.as_tensor(p[outs]))
    values_k = torch.stack(values).float().to(x.device)                         # (B, k, N)
    extras = {"top_k": {"classes": torch.stack(classes), "probabilities":
                        torch.stack(probs).float(), "values": values_k.cpu()},
              "blur": kernel, "algorithm": algorithm}
    if video:
        return Result(values=values_k[:, 0], extras=extras)
    pixel_maps = torch.stack(maps).float()                                      # (B, k, H, W)
    extras["top_k"]["pixel_maps"] = pixel_maps
    return Result(values=values_k[:, 0], pixel_map=pixel_maps[:, 0].to(x.device), extras=extras)


@register("shap_partition", gradients=False)
def shap_partition(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
                   max_evals: int = 500, blur: int | None = None, top_k: int = 1,
                   output: str = "prob", batch_size: int = 50) -> Result:
    """shap's Partition explainer on a blur masker: Owen values of pixels (of tubelets for clips)
    over shap's halving hierarchy, with at most `max_evals` model rows per input; values per
    player are the pixel values summed over each player's pixels and channels.

    `blur`: the box filter's side (default half the image side); `output`: "prob" (softmax, what
    shap users pass) or "logit"; `top_k`: also explain the k most probable classes (the seed's
    `outputs=shap.Explanation.argsort.flip[:k]`), returned in `extras["top_k"]` with their
    probabilities, the explained target first. Deterministic.
    """
    return shap_blur(model, x, target, players, seed=seed, algorithm="partition",
                     max_evals=max_evals, blur=blur, top_k=top_k, output=output,
                     batch_size=batch_size)


@register("shap_permutation", gradients=False)
def shap_permutation(model: nn.Module, x: Tensor, target: Tensor, players: Players, *, seed: int,
                     max_evals: int = 6200, blur: int | None = None, top_k: int = 1,
                     output: str = "prob", batch_size: int = 50) -> Result:
    """The same call with `algorithm="permutation"`: marginal contributions of pixels (tubelets)
    along permutations that keep shap's hierarchy together, forward and back; one permutation
    costs 2 x (pixels x channels) + 1 rows (6,145 for a 32 x 32 RGB image), so `max_evals` must
    reach it. Seeded by `seed`. Options as for `shap_partition`."""
    return shap_blur(model, x, target, players, seed=seed, algorithm="permutation",
                     max_evals=max_evals, blur=blur, top_k=top_k, output=output,
                     batch_size=batch_size)
