"""The one drawing module: attribution heat maps over images and clips, with the ground truth.

Every map is drawn with a diverging colormap centred at zero and symmetric limits: red raises the
explained class, blue lowers it, zero is transparent so the (grey) image shows through, as in
shap's image plots. Ground truth is outlined along pixel borders (a pixel mask, or the relevant
patches / tubelets painted from a player-level mask and its grid); patch grids are drawn as thin
lines. Functions take tensors and return a matplotlib Figure that is not registered with pyplot
(nothing piles up in notebooks or tests) but shows itself as a PNG when it is the value of a
notebook cell (`InlineFigure`); `save_figure` writes a small PNG.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.cm
import matplotlib.colors
import matplotlib.patches
import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from torch import Tensor

from tools.files import write_atomic

TRUTH_COLOUR = "#00e000"          # drawn over a black line: visible on any object colour
GRID_COLOUR = (1.0, 1.0, 1.0, 0.45)


def attribution_cmap() -> ListedColormap:
    """RdBu reversed (blue < 0 < red) whose opacity grows with |value|: zero is transparent."""
    colours = matplotlib.colormaps["RdBu_r"](np.linspace(0, 1, 256))      # (256, 4)
    colours[:, 3] = np.clip(np.abs(np.linspace(-1, 1, 256)) * 1.4, 0, 1)
    return ListedColormap(colours, name="attribution")


CMAP = attribution_cmap()
DPI = 100                         # figures and notebook images: small PNGs


class InlineFigure(Figure):
    """A Figure outside pyplot that Jupyter still draws: it renders itself as a PNG.

    Jupyter shows a Figure inline only through pyplot's backend hooks; a Figure built directly
    (so that nothing accumulates in pyplot's state) would print as `<Figure size ...>` instead.
    IPython asks any object for `_repr_png_`, so this one answers with its own picture.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        return buffer.getvalue()


def new_figure(**kwargs) -> InlineFigure:
    """A Figure that shows inline in notebooks; kwargs as for matplotlib's Figure."""
    return InlineFigure(**kwargs)


# --- pieces -----------------------------------------------------------------------------------
def to_numpy(t: Tensor | np.ndarray) -> np.ndarray:
    return t.detach().float().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t)


def symmetric_limit(maps: Sequence[Tensor | np.ndarray] | Tensor,
                    percentile: float = 99.0) -> float:
    """The colour limit m of the scale [-m, m]: a high percentile of |value| over all maps.

    As captum's visualiser does, a few extreme pixels (gradient maps are spiky) are clipped
    rather than allowed to wash out every other value; 100 gives the plain maximum.
    """
    if isinstance(maps, Tensor):
        maps = [maps]
    values = np.concatenate([np.abs(to_numpy(a)).ravel() for a in maps])
    m = float(np.percentile(values, percentile)) if values.size else 0.0
    return m if m > 0 else max(float(values.max(initial=0.0)), 1e-12)


def grey(image: Tensor) -> np.ndarray:
    """An image (3, H, W) in [0, 1] as luminance (H, W)."""
    return to_numpy(image.float().mean(0) if image.ndim == 3 else image)


def rgb(image: Tensor) -> np.ndarray:
    """An image (3, H, W) as (H, W, 3) clipped to [0, 1]."""
    return np.clip(to_numpy(image).transpose(1, 2, 0), 0, 1)


def pixel_truth(truth: Tensor | None, shape: tuple[int, ...],
                grid: tuple[int, ...] | None) -> np.ndarray | None:
    """A pixel mask of `shape` ((H, W) or (T, H, W)) from a pixel mask or a player mask (N,)."""
    if truth is None:
        return None
    truth = torch.as_tensor(truth).detach().cpu().bool()
    if tuple(truth.shape) == tuple(shape):
        return truth.numpy()
    if truth.ndim == 1 and grid is not None and int(np.prod(grid)) == len(truth):
        cells = truth.view(*grid)                                      # (gh, gw) or (gt, gh, gw)
        for dim, (g, s) in enumerate(zip(grid, shape, strict=True)):
            cells = cells.repeat_interleave(s // g, dim=dim)
        return cells.numpy()
    raise ValueError(f"truth has shape {tuple(truth.shape)}; give a pixel mask {tuple(shape)} or "
                     "a player mask (N,) together with grid=(gh, gw) / (gt, gh, gw)")


def truth_rows(truth: Tensor | None, batch: int, shape: tuple[int, ...],
               grid: tuple[int, ...] | None) -> list[np.ndarray | None]:
    """One pixel mask of `shape` per input from pixel masks (B, *shape) or player masks (B, N)."""
    if truth is None:
        return [None] * batch
    truth = torch.as_tensor(truth)
    if tuple(truth.shape) == tuple(shape) or truth.ndim == 1:
        truth = truth[None]
    if len(truth) != batch:
        raise ValueError(f"truth has shape {tuple(truth.shape)} but there are {batch} inputs; "
                         "give one mask per input")
    return [pixel_truth(t, shape, grid) for t in truth]


def outline(ax, mask: np.ndarray | None, colour: str = TRUTH_COLOUR, width: float = 1.6) -> None:
    """Draw the border of a pixel mask (H, W) along pixel edges."""
    if mask is None or not mask.any():
        return
    m = np.pad(mask.astype(bool), 1)
    r, c = np.nonzero(m[1:, 1:-1] != m[:-1, 1:-1])               # horizontal edges, above (r, c)
    horizontal = np.stack([c - 0.5, r - 0.5, c + 0.5, r - 0.5], 1)
    r, c = np.nonzero(m[1:-1, 1:] != m[1:-1, :-1])               # vertical edges, left of (r, c)
    vertical = np.stack([c - 0.5, r - 0.5, c - 0.5, r + 0.5], 1)
    segments = np.concatenate([horizontal, vertical]).reshape(-1, 2, 2)   # (E, 2 ends, xy)
    ax.add_collection(LineCollection(segments, colors="black", linewidths=width + 1.2))
    ax.add_collection(LineCollection(segments, colors=colour, linewidths=width))


def grid_lines(ax, shape: tuple[int, int], grid: tuple[int, int] | None) -> None:
    """Thin lines between the (gh, gw) cells of an (H, W) image."""
    if grid is None:
        return
    (H, W), (gh, gw) = shape, grid
    for i in range(1, gh):
        ax.axhline(i * H / gh - 0.5, color=GRID_COLOUR, lw=0.6)
    for j in range(1, gw):
        ax.axvline(j * W / gw - 0.5, color=GRID_COLOUR, lw=0.6)


def draw_overlay(ax, image: Tensor, heat: Tensor | None, vmax: float, *,
                 truth: np.ndarray | None = None, grid: tuple[int, int] | None = None,
                 title: str | None = None, colour_image: bool = False):
    """One panel: the image (grey under a heat map, colour without one), grid and truth."""
    H, W = image.shape[-2:]
    if heat is None or colour_image:
        ax.imshow(rgb(image), interpolation="nearest")
    else:
        ax.imshow(grey(image), cmap="gray", vmin=0, vmax=1, alpha=0.5, interpolation="nearest")
    mappable = None
    if heat is not None:
        mappable = ax.imshow(to_numpy(heat), cmap=CMAP, vmin=-vmax, vmax=vmax,
                             interpolation="nearest")
    grid_lines(ax, (H, W), grid)
    outline(ax, truth)
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return mappable


def batched(x: Tensor, ndim: int) -> Tensor:
    """Add the batch dimension to a single input of `ndim - 1` dimensions."""
    x = torch.as_tensor(x)
    return x[None] if x.ndim == ndim - 1 else x


def grid_of(grid: tuple[int, ...] | None, patch_size: int | None,
            shape: tuple[int, int]) -> tuple[int, ...] | None:
    if grid is None and patch_size:
        grid = (shape[0] // patch_size, shape[1] // patch_size)
    return tuple(grid) if grid is not None else None


def colorbar(fig: Figure, mappable, axes, label: str = "attribution"):
    if mappable is not None:
        cb = fig.colorbar(mappable, ax=axes, fraction=0.04, pad=0.02, shrink=0.9)
        cb.set_label(label, fontsize=7)
        cb.ax.tick_params(labelsize=6)


# --- figures ----------------------------------------------------------------------------------
def plot_attributions(images: Tensor, maps: Tensor | dict[str, Tensor], *,
                      truth: Tensor | None = None, grid: tuple[int, int] | None = None,
                      patch_size: int | None = None, titles: Sequence[str] | None = None,
                      suptitle: str | None = None, percentile: float = 99.0,
                      panel: float = 1.7) -> Figure:
    """Images (B, 3, H, W) on top, one row of overlays per map (B, H, W) below, colorbar per row.

    `maps` is a tensor or {row name: tensor}; each row shares one symmetric colour scale
    (its limit: the `percentile` of |value|, see `symmetric_limit`).
    `truth` is a pixel mask (B, H, W) or a player mask (B, N) with `grid` or `patch_size`.
    """
    images = batched(images, 4)
    rows = maps if isinstance(maps, dict) else {"": maps}
    rows = {name: batched(m, 3) for name, m in rows.items()}
    B, (H, W) = len(images), images.shape[-2:]
    grid = grid_of(grid, patch_size, (H, W))
    for name, m in rows.items():
        if tuple(m.shape) != (B, H, W):
            raise ValueError(f"map {name!r} has shape {tuple(m.shape)} but the images need "
                             f"({B}, {H}, {W})")
    fig = new_figure(figsize=(panel * B + 0.8, panel * (1 + len(rows))), layout="constrained")
    axes = np.asarray(fig.subplots(1 + len(rows), B, squeeze=False))
    masks = truth_rows(truth, B, (H, W), grid)
    for i in range(B):
        draw_overlay(axes[0, i], images[i], None, 1.0, truth=masks[i], grid=grid,
                     title=titles[i] if titles else None)
    for r, (name, m) in enumerate(rows.items(), start=1):
        vmax = symmetric_limit(m, percentile)
        mappable = None
        for i in range(B):
            mappable = draw_overlay(axes[r, i], images[i], m[i], vmax, truth=masks[i], grid=grid)
        if name:
            axes[r, 0].set_ylabel(name, fontsize=8)
        colorbar(fig, mappable, axes[r, :].tolist())
    axes[0, 0].set_ylabel("input", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def plot_top_classes(images: Tensor, maps: Tensor, labels: Sequence[Sequence[str]], *,
                     scores: Tensor | None = None, truth: Tensor | None = None,
                     grid: tuple[int, int] | None = None, patch_size: int | None = None,
                     percentile: float = 99.0, panel: float = 1.7) -> Figure:
    """Like shap's image plot: each row an input (B, 3, H, W) and its top-k class maps (B, k, H, W).

    `labels[b][j]` names class map j of input b (`scores` (B, k), e.g. probabilities, are added
    to the titles); one symmetric colour scale and one colorbar for the whole figure.
    """
    images, maps = batched(images, 4), batched(maps, 4)
    B, k, H, W = maps.shape
    if len(images) != B or len(labels) != B or any(len(lab) != k for lab in labels):
        raise ValueError(f"need one image and {k} labels per row of maps {tuple(maps.shape)}, got "
                         f"{len(images)} images and label rows of lengths "
                         f"{[len(lab) for lab in labels]}")
    grid = grid_of(grid, patch_size, (H, W))
    vmax = symmetric_limit(maps, percentile)
    fig = new_figure(figsize=(panel * (k + 1) + 0.8, panel * B + 0.3), layout="constrained")
    axes = np.asarray(fig.subplots(B, k + 1, squeeze=False))
    mappable = None
    masks = truth_rows(truth, B, (H, W), grid)
    for b in range(B):
        mask = masks[b]
        draw_overlay(axes[b, 0], images[b], None, 1.0, truth=mask, grid=grid,
                     title="input" if b == 0 else None)
        for j in range(k):
            title = labels[b][j] + (f" ({float(scores[b, j]):.2f})" if scores is not None else "")
            mappable = draw_overlay(axes[b, j + 1], images[b], maps[b, j], vmax, truth=mask,
                                    grid=grid, title=title)
    colorbar(fig, mappable, axes.ravel().tolist())
    return fig


def plot_video(clips: Tensor, maps: Tensor, *, truth: Tensor | None = None,
               grid: tuple[int, int, int] | None = None, titles: Sequence[str] | None = None,
               frames: Sequence[int] | None = None, suptitle: str | None = None,
               percentile: float = 99.0, panel: float = 1.3) -> Figure:
    """Each clip (B, 3, T, H, W) as two strips of frames: the frames, and the map (B, T, H, W).

    `grid` (gt, gh, gw) draws the tubelets' spatial borders and labels the time cells; `truth` is
    a pixel mask (B, T, H, W) or a tubelet mask (B, N) with `grid`. One colour scale per clip.
    """
    clips, maps = batched(clips, 5), batched(maps, 4)
    B, _, T, H, W = clips.shape
    if tuple(maps.shape) != (B, T, H, W):
        raise ValueError(f"maps have shape {tuple(maps.shape)} but the clips need ({B}, {T}, {H}, "
                         f"{W})")
    frames = list(frames) if frames is not None else list(range(T))
    spatial = tuple(grid[1:]) if grid is not None else None
    fig = new_figure(figsize=(panel * len(frames) + 0.8, 2 * panel * B + 0.3), layout="constrained")
    axes = np.asarray(fig.subplots(2 * B, len(frames), squeeze=False))
    masks = truth_rows(truth, B, (T, H, W), grid)
    for b in range(B):
        mask = masks[b]
        vmax = symmetric_limit(maps[b], percentile)
        mappable = None
        for j, t in enumerate(frames):
            cell = f" · cell {t * grid[0] // T}" if grid is not None else ""
            frame = clips[b, :, t]                                           # (3, H, W)
            draw_overlay(axes[2 * b, j], frame, None, 1.0, truth=None if mask is None else
                         mask[t], grid=spatial, title=f"t={t}{cell}")
            mappable = draw_overlay(axes[2 * b + 1, j], frame, maps[b, t], vmax,
                                    truth=None if mask is None else mask[t], grid=spatial)
        if titles:
            axes[2 * b, 0].set_ylabel(titles[b], fontsize=8)
        colorbar(fig, mappable, axes[2 * b: 2 * b + 2, :].ravel().tolist())
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write `fig` as a small PNG (parents created) and return the path."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return write_atomic(path, buffer.getvalue())      # never a half-written PNG


def plot_pairs(images: Tensor, pairs: Tensor, *, patch_size: int, chosen: Sequence[int],
               truth_pairs: Tensor | None = None, truth: Tensor | None = None, top: int = 5,
               titles: Sequence[str] | None = None, suptitle: str | None = None,
               panel: float = 1.9) -> Figure:
    """Pairwise relationships: per input (B, 3, H, W) and pair values (B, N, N), two panels.

    Left: the partners of patch `chosen[b]` (outlined in yellow), each painted with its pair
    value c_ij. Right: the `top` strongest pairs by |value| drawn as lines between patch centres
    (red raises the class, blue lowers it, width grows with |value|); true interacting pairs
    (`truth_pairs` (B, N, N)) are drawn as dashed green lines.
    """
    images, pairs = batched(images, 4), batched(pairs, 3)
    B, (H, W) = len(images), images.shape[-2:]
    gh, gw = H // patch_size, W // patch_size
    N = gh * gw
    if tuple(pairs.shape) != (B, N, N):
        raise ValueError(f"pairs have shape {tuple(pairs.shape)} but {B} images with a "
                         f"{gh}x{gw} patch grid need ({B}, {N}, {N})")
    masks = truth_rows(truth, B, (H, W), (gh, gw))
    centre = np.array([((k // gw + 0.5) * patch_size - 0.5, (k % gw + 0.5) * patch_size - 0.5)
                       for k in range(N)])                                   # (N, 2) row, col
    fig = new_figure(figsize=(panel * 2 * B + 0.8, panel + 0.5), layout="constrained")
    axes = np.asarray(fig.subplots(1, 2 * B, squeeze=False))[0]
    vmax = symmetric_limit(pairs, 100.0)
    mappable = None
    for b in range(B):
        p, i = to_numpy(pairs[b]), int(chosen[b])
        heat = torch.as_tensor(p[i]).view(gh, gw).repeat_interleave(patch_size, 0)
        heat = heat.repeat_interleave(patch_size, 1)                          # (H, W)
        name = titles[b] if titles else ""
        mappable = draw_overlay(axes[2 * b], images[b], heat, vmax, truth=masks[b],
                                grid=(gh, gw), title=f"{name}\npartners of patch {i}")
        r, c = divmod(i, gw)
        axes[2 * b].add_patch(matplotlib.patches.Rectangle(
            (c * patch_size - 0.5, r * patch_size - 0.5), patch_size, patch_size, fill=False,
            edgecolor="yellow", lw=2))
        draw_overlay(axes[2 * b + 1], images[b], None, 1.0, grid=(gh, gw),
                     title=f"top {top} pairs", colour_image=True)
        iu = np.triu_indices(N, 1)
        strongest = np.argsort(-np.abs(p[iu]), kind="stable")[:top]
        for s in strongest:
            a, z = iu[0][s], iu[1][s]
            v = p[a, z]
            axes[2 * b + 1].plot(centre[[a, z], 1], centre[[a, z], 0], "-o", ms=3,
                                 color="#d62728" if v > 0 else "#1f77b4",
                                 lw=1 + 3 * abs(v) / max(vmax, 1e-12))
        if truth_pairs is not None:
            for a, z in zip(*np.nonzero(np.triu(to_numpy(truth_pairs[b]) > 0, 1)), strict=True):
                axes[2 * b + 1].plot(centre[[a, z], 1], centre[[a, z], 0], "--",
                                     color=TRUTH_COLOUR, lw=1.5)
    colorbar(fig, mappable, axes.tolist(), label="pair contribution c_ij")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig


def plot_video_pairs(clips: Tensor, pairs: dict[str, Tensor], *, grid: tuple[int, int, int],
                     truth: Tensor | None = None, distractor: Tensor | None = None, top: int = 3,
                     titles: Sequence[str] | None = None, suptitle: str | None = None,
                     panel: float = 1.5) -> Figure:
    """The strongest pair terms of clips (B, 3, T, H, W), one column per source of pairs (B, N, N).

    Each panel shows the clip's time cells side by side (the mean frame of each of the grid's gt
    time cells) with the tubelet borders, the moving object outlined in green (`truth`
    (B, T, H, W)) and the distractor in orange (`distractor` (B, T, H, W)); the `top` pairs by
    |value| are lines between tubelet centres, coloured by value (red: the pair raises the class
    together, blue: lowers it). Each column has its own scale, its largest |value| (named in its
    title), because models differ in the size of their logits.
    """
    clips = batched(clips, 5)
    B, _, T, H, W = clips.shape
    gt, gh, gw = grid
    N = gt * gh * gw
    for name, p in pairs.items():
        if tuple(p.shape) != (B, N, N):
            raise ValueError(f"pairs {name!r} have shape {tuple(p.shape)}; {B} clips on a "
                             f"{gt}x{gh}x{gw} grid need ({B}, {N}, {N})")
    cells = torch.arange(T) * gt // T                                          # time cell of a frame

    def strip(v: Tensor) -> Tensor:               # (C, T, H, W) -> (C, H, gt * W): cells side by side
        return torch.cat([v[:, cells == c].float().mean(1) for c in range(gt)], dim=-1)

    centre = np.array([((h + 0.5) * H / gh - 0.5, t * W + (w + 0.5) * W / gw - 0.5)
                       for t in range(gt) for h in range(gh) for w in range(gw)])   # (N, 2)
    cmap = matplotlib.colormaps["RdBu_r"]
    norm = matplotlib.colors.Normalize(-1.0, 1.0)        # values over their column's limit
    fig = new_figure(figsize=(panel * gt * len(pairs) + 0.9, panel * B + 0.5),
                     layout="constrained")
    axes = np.asarray(fig.subplots(B, len(pairs), squeeze=False))
    for b in range(B):
        image = strip(clips[b])
        for k, (name, p) in enumerate(pairs.items()):
            ax, vmax = axes[b, k], symmetric_limit(p, 100.0)
            draw_overlay(ax, image, None, 1.0, grid=(gh, gw * gt), colour_image=True,
                         title=f"{name}\nscale: max |c_ij| = {vmax:.3g}" if b == 0 else None)
            for c in range(1, gt):
                ax.axvline(c * W - 0.5, color="white", lw=2)
            for mask, colour in ((truth, TRUTH_COLOUR), (distractor, "#ff9900")):
                if mask is not None:
                    outline(ax, strip(mask[b][None].float())[0].numpy() > 0, colour, 1.0)
            v = to_numpy(p[b])
            iu = np.triu_indices(N, 1)
            for s in np.argsort(-np.abs(v[iu]), kind="stable")[:top]:
                i, j = iu[0][s], iu[1][s]
                width = 1.2 + 2.5 * abs(v[i, j]) / vmax
                ax.plot(centre[[i, j], 1], centre[[i, j], 0], "-", color="black",
                        lw=width + 1.2)                        # visible where the value is pale
                ax.plot(centre[[i, j], 1], centre[[i, j], 0], "-o", ms=3,
                        color=cmap(norm(v[i, j] / vmax)), lw=width)
        if titles:
            axes[b, 0].set_ylabel(titles[b], fontsize=7)
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    colorbar(fig, mappable, axes.ravel().tolist(),
             label=f"pair term / its column's max |c_ij| (top {top} per clip)")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return fig
