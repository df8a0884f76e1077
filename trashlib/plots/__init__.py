"""Every picture the project draws, and the one place that imports matplotlib and seaborn.

Notebooks call `plots.<function>`; each function takes arrays or tables (never a dataset or a run folder)
and returns a figure or an image:
- images: colour masks, overlays, the class legend, galleries, annotations and their crops;
- classes: per-class distributions, grouped bars, the confusion matrix;
- training: training and learning curves;
- stages: 05's stages coloured by verdict (verdicts: one colour per verdict);
- waterfall: the wrap-up page's waterfall and per-class heat map;
- pseudo: 06's pseudo-label quality curve;
- files: `write_png`, an atomic PNG.
"""
from trashlib.plots.classes import plot_class_bars, plot_class_distributions, plot_confusion_matrix
from trashlib.plots.files import write_png
from trashlib.plots.images import (add_class_legend, colorize, legend_handles, overlay, plot_annotation_crops,
                                   present_classes, show_annotations, show_gallery)
from trashlib.plots.pseudo import plot_quality_curve
from trashlib.plots.stages import plot_stages
from trashlib.plots.training import plot_learning_curve, plot_learning_curves, plot_training_curves
from trashlib.plots.verdicts import VERDICT_COLOURS, verdict_colour
from trashlib.plots.waterfall import plot_stage_classes, plot_waterfall

__all__ = ["VERDICT_COLOURS", "add_class_legend", "colorize", "legend_handles", "overlay", "plot_annotation_crops",
           "plot_class_bars", "plot_class_distributions", "plot_confusion_matrix", "plot_learning_curve",
           "plot_learning_curves", "plot_quality_curve", "plot_stage_classes", "plot_stages", "plot_training_curves",
           "plot_waterfall", "present_classes", "show_annotations", "show_gallery", "verdict_colour", "write_png"]
