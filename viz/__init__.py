"""Figures: attribution overlays on images and clips (see viz.overlay)."""

from viz.overlay import (
    InlineFigure,
    new_figure,
    plot_attributions,
    plot_pairs,
    plot_top_classes,
    plot_video,
    save_figure,
    symmetric_limit,
)

__all__ = ["InlineFigure", "new_figure", "plot_attributions", "plot_pairs", "plot_top_classes", "plot_video", "save_figure",
           "symmetric_limit"]
