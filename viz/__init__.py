"""Figures: attribution overlays on images and clips (see viz.overlay)."""

from viz.overlay import (
    plot_attributions,
    plot_pairs,
    plot_top_classes,
    plot_video,
    save_figure,
    symmetric_limit,
)

__all__ = ["plot_attributions", "plot_pairs", "plot_top_classes", "plot_video", "save_figure",
           "symmetric_limit"]
