"""Pictures: colour masks, overlays, galleries and run plots return the right shapes and colours."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # tests draw off-screen; notebooks keep the inline backend

import matplotlib.pyplot as plt
import numpy as np
import pytest

from trashlib import plots
from trashlib.classes import CLASS_NAMES, CLASSES, IGNORE_INDEX, PALETTE


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _image(h=6, w=8):
    return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)


def test_colorize_uses_palette():
    mask = np.array([[0, 2], [8, IGNORE_INDEX]], np.uint8)
    out = plots.colorize(mask)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert tuple(out[0, 1]) == CLASSES[2].color and tuple(out[1, 0]) == CLASSES[8].color
    assert tuple(out[1, 1]) == (255, 255, 255) and tuple(out[0, 0]) == (0, 0, 0)
    np.testing.assert_array_equal(out, PALETTE[mask])


def test_colorize_rejects_non_2d():
    with pytest.raises(ValueError, match="shape"):
        plots.colorize(np.zeros((2, 2, 3), np.uint8))


def test_overlay_of_background_is_the_image():
    img = _image()
    np.testing.assert_array_equal(plots.overlay(img, np.zeros(img.shape[:2], np.uint8)), img)


def test_overlay_blends_only_objects():
    img = np.full((2, 2, 3), 100, np.uint8)
    mask = np.array([[0, 4], [IGNORE_INDEX, 4]], np.uint8)
    out = plots.overlay(img, mask, alpha=0.5)
    # Metal (128, 0, 0) half over grey 100: (114, 50, 50)
    assert tuple(out[0, 1]) == (114, 50, 50)
    assert tuple(out[0, 0]) == (100, 100, 100) and tuple(out[1, 0]) == (100, 100, 100)
    np.testing.assert_array_equal(plots.overlay(img, mask, alpha=1.0)[1, 1], CLASSES[4].color)
    with pytest.raises(ValueError, match="does not match"):
        plots.overlay(img, np.zeros((3, 3), np.uint8))


def test_present_classes_skips_background_and_ignore():
    assert plots.present_classes(np.array([[0, 3, 255]]), None, np.array([[7, 3]])) == [3, 7]


def test_legend_handles_name_the_classes():
    labels = [h.get_label() for h in plots.legend_handles([2, 9])]
    assert labels == ["Paper", "Battery"]
    assert len(plots.legend_handles()) == len(CLASSES) - 1


@pytest.mark.parametrize("mode,panels", [("overlay", 3), ("side_by_side", 6), ("image", 3)])
def test_gallery_has_one_panel_per_picture(mode, panels):
    imgs = [_image() for _ in range(3)]
    masks = [np.full((6, 8), c, np.uint8) for c in (1, 2, 0)]
    fig = plots.show_gallery(imgs, masks, titles=["a", "b", "c"], mode=mode, ncols=4)
    used = [ax for ax in fig.axes if ax.images]
    assert len(used) == panels
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["General trash", "Paper"]


def test_gallery_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        plots.show_gallery([_image()], mode="sideways")


def test_annotation_crops_draw_outlines():
    crops = [_image(10, 10)] * 3
    outline = np.array([[1, 1], [8, 1], [8, 8]])
    fig = plots.plot_annotation_crops(crops, outlines=[outline, None, outline], titles=["x", "y", "z"],
                                      edgecolors=["red", None, "green"], ncols=2)
    assert sum(1 for ax in fig.axes if ax.images) == 3
    assert len(fig.axes[0].lines) == 1 and len(fig.axes[1].lines) == 0


def test_class_bars_and_log_scale():
    fig = plots.plot_class_bars({"here": [1, 10, 100], "there": [5, 5, 5]}, class_names=["a", "b", "c"], log=True)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.patches) == 6


def test_training_curves_panels_and_gaps():
    hist = {"step": [1, 2, 3, 4], "train_loss": [2.0, 1.5, 1.0, 0.8], "val_mIoU": [None, 0.2, None, 0.4]}
    fig = plots.plot_training_curves(hist, x="step")
    assert len(fig.axes) == 2
    assert fig.axes[0].get_yscale() == "log"
    xs, ys = fig.axes[1].lines[0].get_data()
    np.testing.assert_array_equal(xs, [2, 4])
    np.testing.assert_array_equal(ys, [0.2, 0.4])


def test_training_curves_of_several_runs_share_a_panel():
    import pandas as pd

    runs = {"swin": pd.DataFrame({"step": [1, 2, 3], "loss": [4.0, 2.0, 1.0], "lr": [1, 1, 1]}),
            "segformer": {"step": [2, 4], "loss": [0.5, 0.25]}}     # own x, own scale
    fig = plots.plot_training_curves(runs, x="step", groups={"relative loss": ["loss"]}, relative=True)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == ["swin", "segformer"]
    np.testing.assert_array_equal(ax.lines[0].get_data()[1], [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(ax.lines[1].get_data()[0], [2, 4])
    np.testing.assert_array_equal(ax.lines[1].get_data()[1], [1.0, 0.5])
    assert ax.get_yscale() == "log" and ax.get_legend() is not None


def test_training_curves_of_one_dataframe():
    import pandas as pd

    fig = plots.plot_training_curves(pd.DataFrame({"step": [1, 2], "loss": [2.0, 1.0], "lr": [0.1, 0.2]}), x="step")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "lr"]


def test_confusion_matrix_normalises_rows():
    cm = np.diag(np.arange(1, len(CLASS_NAMES) + 1))
    cm[0, 1] = 1
    fig = plots.plot_confusion_matrix(cm)
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == cm.shape
    np.testing.assert_allclose(shown[0, :2], [0.5, 0.5])
    with pytest.raises(ValueError, match="class names"):
        plots.plot_confusion_matrix(np.eye(3))
