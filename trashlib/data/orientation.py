"""EXIF orientation of photos: which pixel grid a photo's polygons refer to, and moving them onto the upright one.

A phone stores the sensor's pixels and an EXIF tag saying how to turn them for display. Annotation tools
differ: some drew on the displayed (upright) photo, some on the stored pixels. The annotation's width and
height tell which: `annotation_grid` compares them with both sizes. Output photos are always upright, so
polygons drawn on the stored grid are turned as the pixels are (`to_upright`).
"""
from __future__ import annotations

from PIL import Image

_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the PIL transpose that makes the stored pixels upright (as ImageOps.exif_transpose)
TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_90}


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation of an opened image, 1 (as stored) when absent or not one of 1..8."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a damaged EXIF block: the pixels are still the photo, shown as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """(width, height) of the displayed photo: orientations 5..8 swap the sides."""
    return (height, width) if orientation >= 5 else (width, height)


def annotation_grid(stored: tuple[int, int], orientation: int, annotated: tuple[int, int]) -> str | None:
    """"displayed" or "stored": the grid whose size the annotation states; None when it states neither.

    A square photo fits both; it is taken as displayed, as TACO's own loader rotates every photo by EXIF.
    """
    if tuple(annotated) == upright_size(*stored, orientation):
        return "displayed"
    if tuple(annotated) == tuple(stored):
        return "stored"
    return None


def to_upright(polygon: list[float], *, width: int, height: int, orientation: int) -> list[float]:
    """A flat [x0, y0, x1, y1, ...] polygon on the stored width x height grid, moved onto the upright grid."""
    xs, ys = polygon[0::2], polygon[1::2]
    w, h = width, height
    moved = {1: (xs, ys),
             2: ([w - x for x in xs], ys),
             3: ([w - x for x in xs], [h - y for y in ys]),
             4: (xs, [h - y for y in ys]),
             5: (ys, xs),
             6: ([h - y for y in ys], xs),
             7: ([h - y for y in ys], [w - x for x in xs]),
             8: (ys, [w - x for x in xs])}[orientation]
    return [v for point in zip(*moved) for v in point]
