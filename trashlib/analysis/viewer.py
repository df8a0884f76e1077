"""An interactive image / mask browser for JupyterLab, built on ipywidgets.

`ImageViewer(dataset).show()` displays it. The state (which images pass the class filter, the current
one, the view mode, the opacity) lives in plain methods, so it is tested without a browser; the
widgets only call those methods and redraw.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image

from trashlib.classes import CLASSES, NUM_CLASSES
from trashlib.plots.images import colorize, overlay, present_classes


class ImageViewer:
    """Browse a dataset (anything with load_image, load_mask, annotations, file_names)."""

    MODES = ("overlay", "image", "mask")

    def __init__(self, dataset, *, indices: Sequence[int] | None = None, mode: str = "overlay",
                 alpha: float = 0.5, class_id: int | None = None):
        self.dataset = dataset
        self.indices = [int(i) for i in (range(len(dataset)) if indices is None else indices)]
        self._classes: dict[int, set[int]] | None = None
        self.mode = "overlay"
        self.alpha = 0.5
        self.class_id: int | None = None
        self.visible: list[int] = list(self.indices)
        self.position = 0
        self._widgets = None
        self.set_mode(mode)
        self.set_alpha(alpha)
        self.set_class(class_id)

    # --- state -----------------------------------------------------------------------------
    def classes_of(self, index: int) -> set[int]:
        """Class ids annotated in dataset image `index` (read from the annotations, not the pixels)."""
        if self._classes is None:
            self._classes = {i: {int(a["category_id"]) for a in self.dataset.annotations(i)} for i in self.indices}
        if index not in self._classes:
            self._classes[index] = {int(a["category_id"]) for a in self.dataset.annotations(index)}
        return self._classes[index]

    @property
    def current(self) -> int | None:
        """The dataset index shown now (None when the filter leaves no image)."""
        return self.visible[self.position] if self.visible else None

    def go(self, position: int) -> int | None:
        """Jump to a position in the filtered list (wraps around); returns the dataset index."""
        if self.visible:
            self.position = int(position) % len(self.visible)
        return self.current

    def next(self) -> int | None:
        """The next image of the filtered list, wrapping to the first after the last."""
        return self.go(self.position + 1)

    def prev(self) -> int | None:
        """The previous image of the filtered list, wrapping to the last before the first."""
        return self.go(self.position - 1)

    def set_class(self, class_id: int | None) -> int:
        """Show only images containing `class_id` (None or 0: all); returns how many images remain."""
        if class_id not in (None, 0) and not 0 < int(class_id) < NUM_CLASSES:
            raise ValueError(f"class_id must be None or 1..{NUM_CLASSES - 1}, got {class_id}")
        keep = self.current
        self.class_id = None if class_id in (None, 0) else int(class_id)
        self.visible = (list(self.indices) if self.class_id is None
                        else [i for i in self.indices if self.class_id in self.classes_of(i)])
        # stay on the same image when it passes the new filter
        self.position = self.visible.index(keep) if keep in self.visible else 0
        return len(self.visible)

    def set_mode(self, mode: str) -> None:
        """'overlay' (image with coloured mask), 'image' or 'mask'."""
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def set_alpha(self, alpha: float) -> None:
        """Mask opacity in the overlay, 0 (image only) to 1 (mask colours only)."""
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)

    def render(self) -> np.ndarray | None:
        """The picture for the current state, (H, W, 3) uint8; None when no image passes the filter."""
        i = self.current
        if i is None:
            return None
        image = self.dataset.load_image(i)
        if self.mode == "image":
            return image
        mask = self.dataset.load_mask(i)
        if mask is None:  # an unlabelled split (test): nothing to colour
            return image
        return colorize(mask) if self.mode == "mask" else overlay(image, mask, alpha=self.alpha)

    def caption(self) -> str:
        """A one-line description of the current image."""
        i = self.current
        if i is None:
            return "no image contains the chosen class"
        names = ", ".join(CLASSES[c].name for c in sorted(self.classes_of(i)) if 0 < c < NUM_CLASSES) or "no objects"
        return f"{self.position + 1}/{len(self.visible)}  {self.dataset.file_names[i]}  ({names})"

    # --- widgets ---------------------------------------------------------------------------
    def _png(self) -> bytes:
        picture = self.render()
        if picture is None:
            picture = np.full((64, 64, 3), 255, np.uint8)
        buf = io.BytesIO()
        Image.fromarray(picture).save(buf, format="png")
        return buf.getvalue()

    def _legend_html(self) -> str:
        i = self.current
        mask = self.dataset.load_mask(i) if i is not None and self.mode != "image" else None
        ids = present_classes(mask) if mask is not None else []
        swatches = "".join(
            f'<span style="display:inline-block;width:12px;height:12px;background:rgb{CLASSES[c].color};'
            f'border:1px solid #555;margin:0 4px 0 10px"></span>{CLASSES[c].name}' for c in ids)
        return f"<div style='font-size:12px'>{swatches}</div>"

    def _refresh(self) -> None:
        w = self._widgets
        w["syncing"] = True
        try:
            w["slider"].max = max(0, len(self.visible) - 1)
            w["slider"].value = self.position
            w["slider"].disabled = len(self.visible) < 2
        finally:
            w["syncing"] = False
        w["image"].value = self._png()
        w["caption"].value = self.caption()
        w["legend"].value = self._legend_html()

    def widget(self):
        """The ipywidgets box (built once): toggles, class filter, buttons, sliders, picture, legend."""
        if self._widgets is not None:
            return self._widgets["box"]
        import ipywidgets as W

        mode = W.ToggleButtons(options=list(self.MODES), value=self.mode, description="view")
        classes = W.Dropdown(options=[("all classes", 0)] + [(c.name, c.id) for c in CLASSES[1:]],
                             value=self.class_id or 0, description="class")
        prev_b, next_b = W.Button(description="◀ previous"), W.Button(description="next ▶")
        slider = W.IntSlider(min=0, max=max(0, len(self.visible) - 1), value=self.position, description="image",
                             continuous_update=False)
        alpha = W.FloatSlider(min=0, max=1, step=0.05, value=self.alpha, description="opacity",
                              continuous_update=False)
        image, caption, legend = W.Image(format="png"), W.Label(), W.HTML()
        self._widgets = {"slider": slider, "image": image, "caption": caption, "legend": legend, "syncing": False}

        def on(fn):
            def handler(change=None):
                fn(change)
                self._refresh()
            return handler

        mode.observe(on(lambda ch: self.set_mode(ch["new"])), names="value")
        classes.observe(on(lambda ch: self.set_class(ch["new"])), names="value")
        alpha.observe(on(lambda ch: self.set_alpha(ch["new"])), names="value")
        prev_b.on_click(on(lambda _: self.prev()))
        next_b.on_click(on(lambda _: self.next()))
        slider.observe(lambda ch: None if self._widgets["syncing"] else on(lambda c: self.go(c["new"]))(ch),
                       names="value")
        box = W.VBox([W.HBox([mode, classes]), W.HBox([prev_b, next_b, slider, alpha]), caption, image, legend])
        self._widgets["box"] = box
        self._refresh()
        return box

    def show(self):
        """Display the viewer in the notebook and return its widget box."""
        from IPython.display import display

        box = self.widget()
        display(box)
        return box
