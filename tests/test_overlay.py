"""viz.overlay: diverging symmetric colours, truth outlines, grids, figure layouts, small PNGs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from viz.overlay import (  # noqa: E402
    CMAP,
    pixel_truth,
    plot_attributions,
    plot_top_classes,
    plot_video,
    save_figure,
    symmetric_limit,
)

gen = torch.Generator().manual_seed(0)
IMAGES = torch.rand(2, 3, 16, 16, generator=gen)                      # (B, 3, H, W)
MAPS = torch.randn(2, 16, 16, generator=gen)                          # (B, H, W)
TRUTH = torch.zeros(2, 16, 16, dtype=torch.bool)
TRUTH[:, 2:6, 3:7] = True                                             # a 4x4 square


def heat_images(ax) -> list:
    """The heat-map layers of a panel (the ones drawn with the attribution colormap)."""
    return [im for im in ax.get_images() if im.get_cmap().name == "attribution"]


def outlines(ax) -> list[LineCollection]:
    return [c for c in ax.collections if isinstance(c, LineCollection)]


def test_colormap_is_red_up_blue_down_and_clear_at_zero():
    low, mid, high = CMAP(0.0), CMAP(0.5), CMAP(1.0)
    assert high[0] > high[2] and low[2] > low[0]          # red for positive, blue for negative
    assert mid[3] < 0.02 and low[3] == high[3] == 1.0     # zero is transparent


@pytest.mark.parametrize("percentile", [100.0, 99.0])
def test_limits_are_symmetric_and_shared_by_a_row(percentile):
    fig = plot_attributions(IMAGES, MAPS, truth=TRUTH, patch_size=8, percentile=percentile)
    assert isinstance(fig, Figure)
    m = np.percentile(MAPS.abs().numpy(), percentile)
    assert (m == MAPS.abs().max().item()) == (percentile == 100.0)
    for ax in fig.axes[2:4]:                               # the overlay row
        (im,) = heat_images(ax)
        lo, hi = im.get_clim()
        assert lo == pytest.approx(-m) and hi == pytest.approx(m)


def test_layout_one_row_per_map_and_a_colorbar_per_row():
    fig = plot_attributions(IMAGES, {"a": MAPS, "b": 2 * MAPS}, titles=["x", "y"])
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(panels) == 2 * 3 and len(colorbars) == 2
    assert [ax.get_title() for ax in panels[:2]] == ["x", "y"]


def test_truth_outline_follows_pixel_borders():
    fig = plot_attributions(IMAGES[:1], MAPS[:1], truth=TRUTH[:1])
    under, lines = outlines(fig.axes[0])                  # a black line under a green one
    assert len(lines.get_segments()) == 4 * 4             # a 4x4 square has 16 unit edges
    xs = np.concatenate([s[:, 0] for s in lines.get_segments()])
    assert xs.min() == 2.5 and xs.max() == 6.5             # along pixel edges, not centres


def test_limit_of_an_all_zero_map_is_positive():
    assert 0 < symmetric_limit(torch.zeros(4, 4)) < 1e-6
    assert symmetric_limit(torch.tensor([0.0] * 200 + [3.0]), 99.0) == 3.0   # never 0 if any


def test_player_truth_is_painted_on_its_patches():
    relevant = torch.tensor([False, True, False, False])  # patch 1 of a 2x2 grid
    mask = pixel_truth(relevant, (16, 16), (2, 2))
    assert mask[:8, 8:].all() and mask.sum() == 64
    tubes = pixel_truth(torch.arange(8) == 5, (4, 16, 16), (2, 2, 2))
    assert tubes[2:, :8, 8:].all() and tubes.sum() == 2 * 64
    with pytest.raises(ValueError, match="pixel mask"):
        pixel_truth(torch.ones(5, dtype=torch.bool), (16, 16), (2, 2))


def test_patch_grid_lines():
    fig = plot_attributions(IMAGES[:1], MAPS[:1], patch_size=4)
    ax = fig.axes[1]
    assert len(ax.get_lines()) == 3 + 3                    # a 4x4 grid has 3 + 3 inner lines


def test_top_classes_like_shap_image_plot():
    maps = torch.randn(2, 3, 16, 16, generator=gen)
    fig = plot_top_classes(IMAGES, maps, [["a", "b", "c"], ["d", "e", "f"]],
                           scores=torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]]),
                           truth=TRUTH, patch_size=8)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * 4
    assert panels[1].get_title() == "a (0.50)"
    limits = {heat_images(ax)[0].get_clim() for ax in panels if heat_images(ax)}
    assert len(limits) == 1                                # one colour scale for all maps
    with pytest.raises(ValueError, match="labels"):
        plot_top_classes(IMAGES, maps, [["a"], ["b"]])


def test_video_strip():
    clips = torch.rand(1, 3, 4, 16, 16, generator=gen)
    maps = torch.randn(1, 4, 16, 16, generator=gen)
    truth = torch.zeros(1, 4, 16, 16, dtype=torch.bool)
    truth[0, :, 4:8, 4:8] = True
    fig = plot_video(clips, maps, truth=truth, grid=(2, 2, 2), titles=["right"])
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * 4                            # frames, then overlays
    assert all(outlines(ax) for ax in panels)
    assert panels[0].get_title() == "t=0 · cell 0" and panels[3].get_title() == "t=3 · cell 1"
    with pytest.raises(ValueError, match="maps have shape"):
        plot_video(clips, maps[:, :2])


def test_bad_shapes_name_the_problem():
    with pytest.raises(ValueError, match="map '' has shape"):
        plot_attributions(IMAGES, MAPS[:1])
    with pytest.raises(ValueError, match="one mask per input"):
        plot_attributions(IMAGES, MAPS, truth=TRUTH[:1])


def test_save_figure_writes_a_small_png(tmp_path):
    path = save_figure(plot_attributions(IMAGES, MAPS, truth=TRUTH, patch_size=8),
                       tmp_path / "sub" / "fig.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 200_000


def test_figures_show_themselves_inline_in_notebooks():
    """Outside pyplot, Jupyter has no picture of a Figure unless it offers one: ours do."""
    from IPython.core.formatters import PNGFormatter

    fig = plot_attributions(IMAGES, MAPS, truth=TRUTH, patch_size=8)
    png = fig._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    shown = PNGFormatter()(fig)                         # what IPython's display would embed
    assert shown is not None and shown[:8] == b"\x89PNG\r\n\x1a\n"
